"""Data: mnist5k split, keyed resumable batching, TFDS through array_record files and mocked data."""

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxspike import data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
        data.load("mnist5k", "valid")
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


@pytest.mark.slow
def test_celeb_a_streams_through_tf_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("tensorflow")  # the tf extra
    with tfds.testing.mock_data(num_examples=40):
        batch = next(data.stream("celeb_a", batch_size=4, seed=0, data_dir=str(tmp_path), image_size=32))
        assert batch["image"].shape == (4, 32, 32, 3) and batch["label"].shape == (4,)


# Real TFDS datasets written by the tests: array_record files that tfds.data_source reads,
# prepared without TensorFlow (images handed to TFDS already PNG-encoded), in generation order.
DIGITS, FACES = "jaxspike_test_digits", "jaxspike_test_faces"
NUM_DIGITS, NUM_FACES = 12, 5


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array.squeeze()).save(buffer, format="png")
    return buffer.getvalue()


def _digits(split: str):
    rng = np.random.default_rng(0 if split == "train" else 1)
    images = rng.integers(0, 256, (NUM_DIGITS, 28, 28, 1), dtype=np.uint8)
    return images, np.arange(NUM_DIGITS) % 10


def _faces(split: str):
    rng = np.random.default_rng(2 if split == "train" else 3)
    images = rng.integers(0, 256, (NUM_FACES, 20, 14, 3), dtype=np.uint8)  # not square: centre crop 14 x 14
    male, smiling = rng.integers(0, 2, (2, NUM_FACES)).astype(bool)
    return images, male, smiling


@pytest.fixture(scope="module")
def array_record_dir(tmp_path_factory):
    tfds = pytest.importorskip("tensorflow_datasets")

    class JaxspikeTestDigits(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = {
                "image": tfds.features.Image(shape=(28, 28, 1)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                         disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in ("train", "test")}

        def _generate_examples(self, split):
            images, labels = _digits(split)
            for i, (image, label) in enumerate(zip(images, labels)):
                yield i, {"image": _png(image), "label": int(label)}

    class JaxspikeTestFaces(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = {
                "image": tfds.features.Image(shape=(20, 14, 3)),
                "attributes": {"Male": np.bool_, "Smiling": np.bool_},
            }
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                         disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in ("train", "test")}

        def _generate_examples(self, split):
            images, male, smiling = _faces(split)
            for i in range(NUM_FACES):
                yield i, {"image": _png(images[i]), "attributes": {"Male": male[i], "Smiling": smiling[i]}}

    root = tmp_path_factory.mktemp("tfds")
    for builder in (JaxspikeTestDigits, JaxspikeTestFaces):
        builder(data_dir=str(root), file_format="array_record").download_and_prepare()
    return str(root)


@pytest.fixture
def test_sets(monkeypatch):
    """``mnist`` and ``celeb_a`` read from the test's own datasets."""
    monkeypatch.setitem(data._TFDS, "mnist", (DIGITS, 10, True, None))
    monkeypatch.setitem(data._TFDS, "celeb_a", (FACES, 4, False, 64))


def test_tfds_array_record_through_data_source(array_record_dir, test_sets):
    ds = data.load("mnist", "train", data_dir=array_record_dir)
    images, labels = _digits("train")
    np.testing.assert_array_equal(ds.images, images.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(ds.labels, labels)
    assert data.load("mnist", "test", data_dir=array_record_dir, max_examples=5).images.shape == (5, 28, 28, 1)
    binary = data.load("mnist", "train", data_dir=array_record_dir, binarize=True)
    np.testing.assert_array_equal(binary.images, (images > 127.5).astype(np.float32))

    faces = data.load("celeb_a", "train", data_dir=array_record_dir, max_examples=4, image_size=7)
    images, male, smiling = _faces("train")
    crop = images[:4, 3:17].astype(np.float32) / 255.0  # centre 14 x 14 of 20 x 14
    blocks = crop.reshape(4, 7, 2, 7, 2, 3).mean(axis=(2, 4))  # area resize by an integer factor
    np.testing.assert_allclose(faces.images, blocks, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(faces.labels, (male + 2 * smiling)[:4])
    gray = data.load("celeb_a", "test", data_dir=array_record_dir, max_examples=2, grayscale=True)
    assert gray.images.shape == (2, 64, 64, 1) and gray.num_classes == 4


def test_default_path_and_tfds_loading_never_import_tensorflow(array_record_dir):
    code = textwrap.dedent(f"""
        import sys
        import jaxspike, jaxspike.data as d, jaxspike.layers, jaxspike.nir
        import jaxspike.models.vae, jaxspike.models.gan
        assert d.load("mnist5k", "train").images.shape == (4000, 28, 28, 1)
        d._TFDS["mnist"] = ({DIGITS!r}, 10, True, None)
        d._TFDS["celeb_a"] = ({FACES!r}, 4, False, 64)
        assert d.load("mnist", "train", data_dir={array_record_dir!r}).images.shape == ({NUM_DIGITS}, 28, 28, 1)
        assert d.load("celeb_a", data_dir={array_record_dir!r}, max_examples=2).images.shape == (2, 64, 64, 3)
        loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_numpy_preprocessing_matches_the_tf_data_path():
    tf = pytest.importorskip("tensorflow")  # the tf extra
    rng = np.random.default_rng(5)
    for name, shape, size, gray in [("celeb_a", (218, 178, 3), 64, False), ("cifar10", (32, 32, 3), 16, True),
                                    ("mnist", (28, 28, 1), 20, False), ("mnist", (28, 28, 1), 32, False)]:
        images = rng.integers(0, 256, (3,) + shape, dtype=np.uint8)
        examples = [{"image": im, "label": 3, "attributes": {"Male": True, "Smiling": True}} for im in images]
        ours, labels = data._preprocess_np(name, examples, size, gray, False)
        fn = data._preprocess_fn(name, size, gray, False)
        theirs = [fn(tf.nest.map_structure(tf.constant, ex)) for ex in examples]
        np.testing.assert_allclose(ours, np.stack([t[0].numpy() for t in theirs]), atol=5e-6)
        np.testing.assert_array_equal(labels, [int(t[1]) for t in theirs])


def test_tfrecord_sets_need_the_tf_extra(array_record_dir, test_sets, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")  # writing tfrecord needs TensorFlow
    tfds = pytest.importorskip("tensorflow_datasets")
    builder_cls = type(tfds.builder(DIGITS, data_dir=array_record_dir))
    root = str(tmp_path)
    builder_cls(data_dir=root, file_format="tfrecord").download_and_prepare()
    via_tf = data.load("mnist", "train", data_dir=root)
    np.testing.assert_allclose(via_tf.images, data.load("mnist", "train", data_dir=array_record_dir).images)
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if TensorFlow were not installed
    with pytest.raises(ImportError, match=r"prepared as tfrecord.*jaxspike\[tf\].*--file_format=array_record"):
        data.load("mnist", "train", data_dir=root)


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


def test_mnist5k_validation_split_is_held_out_of_train():
    """train_fit + validation = train (the last 40 training digits of each class held out); test untouched."""
    train = data.load("mnist5k", "train")
    fit, val = data.load("mnist5k", "train_fit"), data.load("mnist5k", "validation")
    assert len(fit.labels) == 3600 and len(val.labels) == 400
    assert np.all(np.bincount(val.labels) == 40)
    for digit in range(10):
        rows = train.images[train.labels == digit]
        np.testing.assert_array_equal(fit.images[fit.labels == digit], rows[:360])
        np.testing.assert_array_equal(val.images[val.labels == digit], rows[360:])
    with pytest.raises(ValueError, match="mnist5k only"):
        data.load("mnist", "validation")
