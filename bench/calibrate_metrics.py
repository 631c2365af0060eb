r"""Calibrates the sample-quality metrics on sets whose quality is known.

    python -m bench.calibrate_metrics --dataset mnist5k --out results/calibration.md

Every "sample set" is built from real data or simple corruptions of it, and
scored against the test split with :func:`jaxspike.metrics.evaluate_samples`
(the production feature networks of both spaces from the cache; trained on
first use). A metric that cannot tell these sets apart cannot rank
generative models either. Two sets imitate the failure of a VAE whose
samples are blurred and sit on few modes: Gaussian-blurred real digits, and
"64 prototypes" (64 training digits, each repeated with small pixel noise),
which must score a low recall in both feature spaces. Writes markdown tables
(with this command and the classifiers' accuracies) to ``--out`` and prints
them. Deterministic for a given ``--seed``; about a minute on 2 CPU cores
once the feature networks are cached.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
from absl import app, flags
from scipy import ndimage

from jaxspike import data, metrics

_DATASET = flags.DEFINE_string("dataset", "mnist5k", "Dataset to calibrate on (single-channel sets).")
_OUT = flags.DEFINE_string("out", "results/calibration.md", "Markdown file to write.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of subsets and corruptions.")
_N = flags.DEFINE_integer("num_samples", 1000, "Images per sample set.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir for TFDS datasets.")

PROTOTYPES = 64
PROTOTYPE_NOISE = 0.05  # pixel noise std of each copy: small next to a stroke (~1)

SPACE_COLUMNS = [
    ("fid", "FID", "{:.2f}"),
    ("precision", "prec", "{:.3f}"),
    ("recall", "rec", "{:.3f}"),
    ("density", "dens", "{:.3f}"),
    ("coverage", "cov", "{:.3f}"),
    ("raw/precision", "raw prec", "{:.3f}"),
    ("raw/recall", "raw rec", "{:.3f}"),
    ("raw/density", "raw dens", "{:.3f}"),
    ("raw/coverage", "raw cov", "{:.3f}"),
]
TABLES = [
    ("Space 1: FeatureCNN (128-d ReLU features, the original keys)",
     SPACE_COLUMNS + [("class_entropy", "H(class) nats", "{:.3f}")]),
    ("Space 2: StridedCNN (256-d pre-activation features, `space2/` keys)",
     [(f"space2/{key}", head, fmt) for key, head, fmt in SPACE_COLUMNS]
     + [("space2/class_entropy", "H(class) nats", "{:.3f}")]),
    ("Classifier and pixel statistics",
     [
         ("inception_score", "IS", "{:.2f}"),
         ("max_class_share", "top class", "{:.2f}"),
         ("mean_confidence", "conf", "{:.3f}"),
         ("pixel_mean", "px mean", "{:.3f}"),
         ("pixel_std", "px std", "{:.3f}"),
         ("near_binary_frac", "near-binary", "{:.3f}"),
         ("mid_grey_frac", "mid-grey", "{:.3f}"),
         ("memorisation", "memorisation", "{:.3f}"),
     ]),
]


def prototypes(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` images: :data:`PROTOTYPES` of ``real`` (all classes) cycled, each copy with
    its own clipped Gaussian pixel noise (std :data:`PROTOTYPE_NOISE`). Few modes, each
    sharp and realistic: high precision, low recall."""
    protos = real[np.sort(rng.choice(len(real), PROTOTYPES, replace=False))]
    copies = protos[np.arange(n) % PROTOTYPES]
    return np.clip(copies + PROTOTYPE_NOISE * rng.normal(size=copies.shape), 0, 1)


def sample_sets(train: data.Dataset, n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``(description, images [n', H, W, C])`` for each calibration case."""
    rng = np.random.default_rng(seed)
    # train is sorted by class: a random subset keeps all classes
    real = train.images[np.sort(rng.choice(len(train.images), n, replace=False))]
    shape = real.shape
    sets = [
        (f"real train images (N={n}): the floor", real),
        ("real train images (N=200): small-N bias", real[rng.choice(n, 200, replace=False)]),
        ("Gaussian blur sigma=1 px", ndimage.gaussian_filter(real, sigma=(0, 1, 1, 0))),
        ("Gaussian blur sigma=2 px", ndimage.gaussian_filter(real, sigma=(0, 2, 2, 0))),
        (f"{PROTOTYPES} prototypes: {PROTOTYPES} train digits repeated, + noise sigma={PROTOTYPE_NOISE}",
         prototypes(real, n, np.random.default_rng([seed, PROTOTYPES]))),  # own stream: other sets unchanged
        ("binarised at 0.5", (real > 0.5).astype(np.float32)),
        ("+ Gaussian noise sigma=0.1 (clipped)", np.clip(real + 0.1 * rng.normal(size=shape), 0, 1)),
        ("+ Gaussian noise sigma=0.3 (clipped)", np.clip(real + 0.3 * rng.normal(size=shape), 0, 1)),
    ]
    salt = real.copy()
    mask = rng.random(shape) < 0.1
    salt[mask] = rng.integers(0, 2, size=int(mask.sum())).astype(np.float32)
    sets.append(("salt-and-pepper 10% of pixels", salt))
    pixels = real.reshape(n, -1)
    sets.append(("pixels shuffled within each image", rng.permuted(pixels, axis=1).reshape(shape)))
    labels = train.labels
    half = np.flatnonzero(labels < 5)
    sets.append(("classes 0-4 only (half the modes)", train.images[np.sort(rng.choice(half, n, replace=False))]))
    one = train.images[labels == 1]
    sets.append((f"class 1 only (mode collapse, N={len(one)})", one))
    sets.append(("one real image repeated", np.repeat(real[:1], n, axis=0)))
    sets.append(("train mean image repeated", np.repeat(train.images.mean(0, keepdims=True), n, axis=0)))
    sets.append(("uniform noise U[0, 1]", rng.random(shape)))
    sets.append(("all black", np.zeros(shape)))
    return [(name, np.asarray(x, np.float32)) for name, x in sets]


def main(argv) -> None:
    del argv
    start = time.time()
    clf = metrics.get_classifier(_DATASET.value, data_dir=_DATA_DIR.value, verbose=True)
    clf2 = metrics.get_classifier(_DATASET.value, data_dir=_DATA_DIR.value, arch="strided", verbose=True)
    train = data.load(_DATASET.value, "train", data_dir=_DATA_DIR.value)
    rows = []
    for name, images in sample_sets(train, _N.value, _SEED.value):
        res = metrics.evaluate_samples(
            images, _DATASET.value, classifier=clf, classifier2=clf2, data_dir=_DATA_DIR.value
        )
        res["max_class_share"] = max(res["class_histogram"])
        rows.append((name, res))
        print(name, {k: round(res[k], 4) for _, cols in TABLES for k, _, _ in cols}, file=sys.stderr, flush=True)
    ref = rows[0][1]
    argv_cmd = "python -m bench.calibrate_metrics " + " ".join(
        f"--{f}={getattr(flags.FLAGS, f)}" for f in ("dataset", "out", "seed", "num_samples")
    )
    lines = [
        f"# Metric calibration on {_DATASET.value}",
        "",
        "Produced by",
        "",
        "```",
        argv_cmd,
        "```",
        "",
        f"Reference: the {ref['num_ref']} `test` images of {_DATASET.value}. Two independent feature spaces "
        f"(see `jaxspike/metrics.py`): space 1, {metrics.FeatureCNN.__name__} v{metrics.CLASSIFIER_VERSION}, "
        f"test accuracy {clf.info['test_accuracy']:.4f} ({clf.info['num_steps']} steps, seed {clf.info['seed']}); "
        f"space 2, {metrics.StridedCNN.__name__} v{metrics.STRIDED_VERSION}, test accuracy "
        f"{clf2.info['test_accuracy']:.4f} ({clf2.info['num_steps']} steps, seed {clf2.info['seed']}). "
        f"k = {ref['k']} for precision/recall/density/coverage, computed on unit-normalised features "
        f"(`raw ...` columns: on the raw features); FID on the raw features. FID values of the two spaces "
        f"are on different scales. Reference split itself: IS {ref['ref_inception_score']:.2f}, "
        f"H(class) {ref['ref_class_entropy']:.3f} nats, px mean {ref['ref_pixel_mean']:.3f}, "
        f"px std {ref['ref_pixel_std']:.3f}, near-binary {ref['ref_near_binary_frac']:.3f}, "
        f"mid-grey {ref['ref_mid_grey_frac']:.3f}; memorisation base rate (test digits, leave-one-out) "
        f"{ref['memorisation_base']:.3f}.",
    ]
    for title, columns in TABLES:
        lines += [
            "",
            f"## {title}",
            "",
            "| sample set | N | " + " | ".join(h for _, h, _ in columns) + " |",
            "|---|---:|" + "---:|" * len(columns),
        ]
        for name, res in rows:
            cells = " | ".join(fmt.format(res[key]) for key, _, fmt in columns)
            lines.append(f"| {name} | {res['num_samples']} | {cells} |")
    lines += [
        "",
        (
            "Memorisation: share of samples whose nearest training digit (pixel L2) is closer than their "
            "nearest test digit; every set here is made from training digits, so copies (even blurred or "
            f"noisy ones) score near 1 against the base rate {ref['memorisation_base']:.3f} of held-out real digits."
        ),
        "",
        f"seed {_SEED.value}; {time.time() - start:.0f} s on {os.cpu_count()} CPU cores "
        f"({platform.machine()}), python {platform.python_version()}, jax {__import__('jax').__version__}. "
        "Columns: see results/README.md.",
        "",
    ]
    text = "\n".join(lines)
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    app.run(main)
