r"""Scores generated samples against a real split; prints one JSON line.

    python -m launch.evaluate --dataset mnist5k --samples samples.npy

``samples.npy``: float32 in [0, 1], shape ``(N, H, W)`` or ``(N, H, W, C)``,
``N >= 10``. The first call per dataset trains the two feature networks
(~1 and ~2 min for mnist5k on 2 CPU cores) into ``$JAXSPIKE_CACHE`` (default
``~/.cache/jaxspike``); progress goes to stderr, the metrics of both feature
spaces (see ``results/README.md``) to stdout. Bad input exits with status 2 and a
one-line message.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

_DATASET = flags.DEFINE_string("dataset", "mnist5k", "Dataset the samples imitate (jaxspike.data.DATASETS).")
_SAMPLES = flags.DEFINE_string("samples", None, "Path of a .npy (or .npz with 'samples') of shape (N,H,W[,C]) in [0,1].")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir for TFDS datasets.")
_REFERENCE = flags.DEFINE_enum("reference", "test", ["test", "train"], "Real split to compare against.")
_NUM_REF = flags.DEFINE_integer("num_ref", None, "Use a seeded random subset of this many reference images.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the reference subset.")
_K = flags.DEFINE_integer("k", 3, "Neighbourhood size of precision/recall.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Resize the dataset (as in training).")
_GRAYSCALE = flags.DEFINE_bool("grayscale", False, "Grayscale the dataset (as in training).")
_INPUTS = flags.DEFINE_string("inputs", None, "Optional .npy of the inputs the samples reconstruct: adds recon_mse.")


class InputError(ValueError):
    """A problem with the user's files or flags, reported without a traceback."""


def load_array(path: str, what: str = "samples"):
    """Reads a .npy / .npz file into a float32 array with cheap checks first."""
    import numpy as np

    if not path:
        raise InputError(f"--{what} is required (a .npy file of shape (N, H, W[, C]) in [0, 1])")
    if not os.path.exists(path):
        raise InputError(f"{what} file {path!r} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error
        raise InputError(f"cannot read {what} file {path!r} as .npy/.npz: {err}") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        if "samples" not in arr.files and len(arr.files) != 1:
            raise InputError(f"{path!r} is an .npz with arrays {arr.files}; name the samples 'samples'")
        arr = arr["samples" if "samples" in arr.files else arr.files[0]]
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if arr.ndim not in (3, 4):
        raise InputError(f"{what} must have shape (N, H, W) or (N, H, W, C), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contain {int((~np.isfinite(arr)).sum())} NaN/inf values")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise InputError(f"{what} must lie in [0, 1]; got values in [{arr.min():.4g}, {arr.max():.4g}]")
    return arr


def evaluate_file(
    samples_path: str,
    dataset: str = "mnist5k",
    *,
    data_dir: str | None = None,
    reference: str = "test",
    num_ref: int | None = None,
    seed: int = 0,
    k: int = 3,
    image_size: int | None = None,
    grayscale: bool = False,
    inputs_path: str | None = None,
) -> dict:
    """Loads, validates and scores a samples file; raises :class:`InputError` on bad input."""
    samples = load_array(samples_path)
    inputs = load_array(inputs_path, "inputs") if inputs_path else None
    from jaxspike import data, metrics  # after the cheap checks: JAX import takes seconds

    if dataset not in data.DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; supported: {', '.join(data.DATASETS)}")
    if samples.shape[0] < max(metrics.MIN_SAMPLES, k + 1):
        raise InputError(f"need at least {max(metrics.MIN_SAMPLES, k + 1)} samples, got {samples.shape[0]}")
    try:
        clf, clf2 = (
            metrics.get_classifier(
                dataset, data_dir=data_dir, image_size=image_size, grayscale=grayscale, arch=arch, verbose=True
            )
            for arch in ("cnn", "strided")
        )
        return metrics.evaluate_samples(
            samples,
            dataset,
            reference=reference,
            data_dir=data_dir,
            num_ref=num_ref,
            seed=seed,
            k=k,
            image_size=image_size,
            grayscale=grayscale,
            classifier=clf,
            classifier2=clf2,
            reconstructions=inputs,
        )
    except (ValueError, FileNotFoundError) as err:
        raise InputError(str(err)) from None


def main(argv) -> int:
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    try:
        result = evaluate_file(
            _SAMPLES.value,
            _DATASET.value,
            data_dir=_DATA_DIR.value,
            reference=_REFERENCE.value,
            num_ref=_NUM_REF.value,
            seed=_SEED.value,
            k=_K.value,
            image_size=_IMAGE_SIZE.value,
            grayscale=_GRAYSCALE.value,
            inputs_path=_INPUTS.value,
        )
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    # Progress of first-time classifier training goes to stderr; keep TF quiet.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
