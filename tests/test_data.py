"""Data: mnist5k split, keyed resumable batching, TFDS path through mocked data."""

import numpy as np
import pytest

from jaxspike import data


@pytest.fixture(scope="module")
def mnist5k():
    return data.load("mnist5k", "train"), data.load("mnist5k", "test")


def test_mnist5k_split_sizes_and_disjoint(mnist5k):
    train, test = mnist5k
    assert train.images.shape == (4000, 28, 28, 1) and test.images.shape == (1000, 28, 28, 1)
    assert train.images.dtype == np.float32 and train.labels.dtype == np.int32
    assert train.images.min() >= 0.0 and train.images.max() == 1.0
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), [400] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=10), [100] * 10)
    rows = np.concatenate([train.images, test.images]).reshape(5000, -1)
    assert len(np.unique(rows, axis=0)) == 5000  # no test digit also in train
    assert train.num_classes == 10 and train.name == "mnist5k"


def test_mnist5k_split_follows_file_order(mnist5k):
    import gzip

    with gzip.open(data._mnist5k_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    first_zeros = table[table[:, -1] == 0][:, :-1] / 255.0
    train, test = mnist5k
    np.testing.assert_allclose(train.images[:400].reshape(400, -1), first_zeros[:400])
    np.testing.assert_allclose(test.images[:100].reshape(100, -1), first_zeros[400:])


def test_binarize():
    ds = data.load("mnist5k", "test", binarize=True)
    assert set(np.unique(ds.images)) <= {0.0, 1.0}


def test_batch_indices_pure_and_distinct():
    a = data.batch_indices(100, 32, seed=1, epoch=0)
    assert a.shape == (3, 32)
    np.testing.assert_array_equal(a, data.batch_indices(100, 32, seed=1, epoch=0))
    assert len(np.unique(a)) == 96  # a permutation, remainder dropped
    assert not np.array_equal(a, data.batch_indices(100, 32, seed=2, epoch=0))
    assert not np.array_equal(a, data.batch_indices(100, 32, seed=1, epoch=1))


def test_get_batch_resumes_iterate(mnist5k):
    train, _ = mnist5k
    spe = data.steps_per_epoch(len(train.labels), 512)  # 7 steps per epoch
    stream = data.iterate(train, 512, seed=3)
    batches = [next(stream) for _ in range(2 * spe + 3)]
    for step, batch in batches:
        again = data.get_batch(train, 512, 3, step)
        np.testing.assert_array_equal(batch["label"], again["label"])
        np.testing.assert_array_equal(batch["image"], again["image"])
    # resuming mid-epoch from a step number gives the same sequence
    resumed = data.iterate(train, 512, seed=3, start_step=spe + 2)
    for step, batch in batches[spe + 2 :]:
        r_step, r_batch = next(resumed)
        assert r_step == step
        np.testing.assert_array_equal(r_batch["image"], batch["image"])
    b = batches[0][1]
    assert b["image"].shape == (512, 28, 28, 1) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int32
    # Per-example extras (cached features) come with the same rows as the images.
    index = np.arange(len(train.labels))
    with_extra = data.get_batch(train, 512, 3, spe + 2, {"index": index})
    np.testing.assert_array_equal(train.images[with_extra["index"]], with_extra["image"])
    np.testing.assert_array_equal(with_extra["image"], batches[spe + 2][1]["image"])
    with pytest.raises(ValueError, match="'index' has 10 rows"):
        data.get_batch(train, 512, 3, 0, {"index": index[:10]})


def test_bad_arguments(mnist5k):
    train, _ = mnist5k
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("imagenet21k")
    with pytest.raises(ValueError, match="split"):
        data.load("mnist5k", "validation")
    with pytest.raises(ValueError, match="exceeds"):
        data.get_batch(train, 5000, 0, 0)
    with pytest.raises(ValueError, match="batch_size"):
        data.batch_indices(10, 0, 0, 0)


def test_tfds_not_prepared_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build mnist"):
        data.load("mnist", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load("mnist", data_dir=str(tmp_path / "missing"))


def test_tfds_mock_through_load_and_get_batch(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=40):
        ds = data.load("mnist", "train", data_dir=str(tmp_path))
        assert ds.images.shape == (40, 28, 28, 1) and ds.images.dtype == np.float32
        assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
        assert ds.labels.dtype == np.int32 and ds.num_classes == 10
        batch = data.get_batch(ds, 16, seed=0, step=3)
        assert batch["image"].shape == (16, 28, 28, 1)

        cifar = data.load("cifar10", "test", data_dir=str(tmp_path), image_size=16, grayscale=True)
        assert cifar.images.shape == (40, 16, 16, 1)

        with pytest.raises(ValueError, match="max_examples"):
            data.load("celeb_a", data_dir=str(tmp_path))
        faces = data.load("celeb_a", data_dir=str(tmp_path), max_examples=6)
        assert faces.images.shape == (6, 64, 64, 3) and faces.num_classes == 4
        batch = next(data.stream("celeb_a", batch_size=4, seed=0, data_dir=str(tmp_path), image_size=32))
        assert batch["image"].shape == (4, 32, 32, 3) and batch["label"].shape == (4,)


def test_shift_images_moves_pixels_and_fills_zeros():
    x = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5, 1) + 1
    down_right = data.shift_images(x, 1, 2)
    np.testing.assert_array_equal(down_right[:, 1:, 2:], x[:, :-1, :-2])
    assert not down_right[:, 0].any() and not down_right[:, :, :2].any()
    up_left = data.shift_images(x, -1, -1)
    np.testing.assert_array_equal(up_left[:, :-1, :-1], x[:, 1:, 1:])
    np.testing.assert_array_equal(data.shift_images(x, 0, 0), x)
    with pytest.raises(ValueError, match="not smaller"):
        data.shift_images(x, 4, 0)
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        data.shift_images(x[..., 0], 1, 0)
