"""Sample-quality metrics: behaviour on known cases, input checks, CLI errors.

One small classifier (fewer steps than the production one) is trained once
per session into a temporary cache and shared by all tests.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxspike import data, metrics

# One worker runs this module (pyproject: --dist loadgroup), so its session-scoped
# classifier is trained once per test run.
pytestmark = pytest.mark.xdist_group("classifier")

TEST_STEPS = 250  # ~96% test accuracy: plenty to check how metrics behave


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jaxspike_cache"))


@pytest.fixture(scope="session")
def clf(cache):
    return metrics.get_classifier("mnist5k", cache=cache, num_steps=TEST_STEPS)


@pytest.fixture(scope="session")
def mnist():
    return data.load("mnist5k", "train"), data.load("mnist5k", "test")


@pytest.fixture(scope="session")
def test_feats(clf, mnist):
    return metrics.classify(clf, mnist[1].images)


def test_classifier_cached_on_disk(clf, cache):
    assert clf.info["test_accuracy"] > 0.9
    root = os.path.join(cache, "classifiers", "mnist5k-v%d" % metrics.CLASSIFIER_VERSION)
    with open(os.path.join(root, "info.json")) as f:
        assert json.load(f)["test_accuracy"] == clf.info["test_accuracy"]
    again = metrics.get_classifier("mnist5k", cache=cache, num_steps=TEST_STEPS)
    np.testing.assert_array_equal(
        again.params["params"]["Dense_0"]["kernel"], clf.params["params"]["Dense_0"]["kernel"]
    )


def test_fid_self_zero_and_monotone_in_noise(clf, mnist, test_feats):
    _, ref_feats = test_feats
    assert metrics.frechet_distance(ref_feats, ref_feats) == pytest.approx(0.0, abs=1e-6)
    images = mnist[0].images[::4]  # train is sorted by digit: stride to cover all
    rng = np.random.default_rng(0)
    noise = rng.normal(size=images.shape).astype(np.float32)
    fids = []
    for sigma in (0.0, 0.1, 0.3, 0.6):
        _, feats = metrics.classify(clf, np.clip(images + sigma * noise, 0, 1))
        fids.append(metrics.frechet_distance(ref_feats, feats))
    assert all(a < b for a, b in zip(fids, fids[1:])), fids


def test_frechet_distance_gaussian_closed_form():
    # N(0, I) vs N(m, 4 I) in D dims: |m|^2 + D (1 + 4 - 2 * 2) = |m|^2 + D.
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    b = 2.0 * rng.normal(size=(20000, 3)) + 1.0
    assert metrics.frechet_distance(a, b) == pytest.approx(3 + 3, rel=0.05)


def test_precision_recall_mode_collapse(clf, mnist, test_feats):
    train, _ = mnist
    _, ref_feats = test_feats
    _, real_feats = metrics.classify(clf, train.images[::4])  # 1000 real, all digits
    _, ones_feats = metrics.classify(clf, train.images[train.labels == 1])  # 400 real "1"s
    real = metrics.precision_recall(ref_feats, real_feats, k=3)
    collapsed = metrics.precision_recall(ref_feats, ones_feats, k=3)
    assert real["precision"] > 0.6 and real["recall"] > 0.6, real
    assert collapsed["precision"] > 0.6, collapsed  # each sample still realistic
    assert collapsed["recall"] < 0.25, collapsed  # but 9 digits never produced


def test_class_entropy_and_inception_score(clf, mnist, test_feats):
    ref_probs, _ = test_feats
    assert metrics.class_entropy(ref_probs) == pytest.approx(math.log(10), abs=0.05)
    one_hot = np.eye(10)[np.full(50, 7)]
    assert metrics.class_entropy(one_hot) == 0.0
    assert metrics.inception_score(one_hot) == pytest.approx(1.0)
    sevens, _ = metrics.classify(clf, mnist[0].images[mnist[0].labels == 7])
    assert metrics.class_entropy(sevens) < 0.3
    assert metrics.inception_score(ref_probs) > 7.0
    assert metrics.inception_score(sevens) < 1.5
    np.testing.assert_allclose(metrics.class_histogram(one_hot)[7], 1.0)


def test_reconstruction_mse_and_pixel_stats():
    x = np.zeros((4, 2, 2, 1))
    assert metrics.reconstruction_mse(x, x + 0.5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.reconstruction_mse(x, x[:3])
    stats = metrics.pixel_stats(np.array([0.0, 1.0, 0.5, 0.98]))
    assert stats["near_binary_frac"] == pytest.approx(0.75)


def test_evaluate_samples_end_to_end(clf, mnist):
    samples = mnist[0].images[::13][:300, ..., 0]  # [N, H, W] accepted for one channel
    out = metrics.evaluate_samples(samples, "mnist5k", classifier=clf, reconstructions=samples)
    json.dumps(out)
    for key in ("fid", "inception_score", "precision", "recall", "class_entropy", "class_histogram",
                "pixel_mean", "near_binary_frac", "recon_mse", "num_ref"):
        assert key in out
    assert out["recon_mse"] == 0.0 and out["num_ref"] == 1000 and out["num_samples"] == 300
    assert out["fid"] < 5.0 and out["recall"] > 0.5


@pytest.mark.parametrize(
    "samples, match",
    [
        (np.full((20, 28, 28, 1), np.nan, np.float32), "NaN"),
        (np.zeros((20, 32, 32, 1), np.float32), "image shape"),
        (np.zeros((20, 784), np.float32), "shape"),
        (np.zeros((5, 28, 28), np.float32), "at least"),
        (np.full((20, 28, 28), 2.0, np.float32), r"\[0, 1\]"),
    ],
)
def test_evaluate_samples_rejects_bad_input(clf, samples, match):
    with pytest.raises(ValueError, match=match):
        metrics.evaluate_samples(samples, "mnist5k", classifier=clf)


def test_metric_functions_reject_bad_input():
    with pytest.raises(ValueError, match="feature sizes"):
        metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 4"):
        metrics.precision_recall(np.zeros((10, 3)), np.zeros((3, 3)), k=3)
    with pytest.raises(ValueError, match="NaN"):
        metrics.frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="probabilities"):
        metrics.inception_score(np.ones((5, 3)))


def test_cli_bad_input(tmp_path, cache, clf, monkeypatch):
    from launch import evaluate

    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((20, 32, 32), np.float32))
    with monkeypatch.context() as patch:
        patch.setenv("JAXSPIKE_CACHE", cache)  # the session classifier, no retraining
        with pytest.raises(evaluate.InputError, match="image shape"):
            evaluate.evaluate_file(str(wrong), "mnist5k")
    with pytest.raises(evaluate.InputError, match="does not exist"):
        evaluate.evaluate_file(str(tmp_path / "missing.npy"))

    bad = tmp_path / "nan.npy"
    np.save(bad, np.full((20, 28, 28), np.nan, np.float32))
    env = dict(os.environ, JAXSPIKE_CACHE=cache)
    proc = subprocess.run(
        [sys.executable, "-m", "launch.evaluate", "--dataset", "mnist5k", "--samples", str(bad)],
        capture_output=True, text=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)), timeout=120,
    )
    assert proc.returncode == 2
    assert "NaN" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
