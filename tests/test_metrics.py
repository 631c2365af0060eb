"""Sample-quality metrics: behaviour on known cases, input checks, CLI errors.

One small feature network per space (fewer steps than the production ones) is
trained once per session into a temporary cache and shared by all tests.
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

TEST_STEPS = 150  # 96% test accuracy: plenty to check how metrics behave
TEST_STEPS2 = 100  # 91% (space 2, StridedCNN, costs ~4x more per step)


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jaxspike_cache"))


@pytest.fixture(scope="session")
def clf(cache):
    return metrics.get_classifier("mnist5k", cache=cache, num_steps=TEST_STEPS)


@pytest.fixture(scope="session")
def clf2(cache):
    return metrics.get_classifier("mnist5k", cache=cache, arch="strided", num_steps=TEST_STEPS2)


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


def test_mid_grey_share_is_strictly_inside():
    # 0.1 and 0.9 themselves are not mid-grey; 0.5, 0.3, 0.11, 0.89 are
    pixels = np.array([0.0, 0.1, 0.5, 0.9, 0.95, 1.0, 0.3, 0.05, 0.11, 0.89]).reshape(1, 10, 1, 1)
    assert metrics.pixel_stats(pixels)["mid_grey_frac"] == 0.4
    assert metrics.pixel_stats(np.zeros((2, 3, 3, 1)))["mid_grey_frac"] == 0.0


def test_memorisation_share_hand_made():
    # one-pixel images on a line: train at 0 and 10, test at 4, 20, 21
    train, test = np.array([[0.0], [10.0]]), np.array([[4.0], [20.0], [21.0]])
    # 1: train 1 < test 3 (yes); 3: 3 vs 1 (no); 15: 5 vs 5, a tie (no); 12: 2 vs 8 (yes)
    samples = np.array([[1.0], [3.0], [15.0], [12.0]])
    assert metrics.memorisation_share(samples, train, test) == 0.5
    # test digits scored leave-one-out: 4 -> train 4 < test 16 (yes); 20 -> 10 vs 1; 21 -> 11 vs 1
    assert metrics.memorisation_share(test, train, test, test_index=[0, 1, 2]) == pytest.approx(1 / 3)
    # without leaving themselves out every test digit finds itself at distance 0
    assert metrics.memorisation_share(test, train, test) == 0.0
    assert metrics.memorisation_share(train, train, test) == 1.0
    images = np.arange(2 * 3 * 2 * 2 * 1, dtype=np.float32).reshape(2, 3, 2, 2, 1)[0]  # any image shape
    assert metrics.memorisation_share(images, images, images + 0.5) == 1.0
    with pytest.raises(ValueError, match="image size"):
        metrics.memorisation_share(samples, np.zeros((2, 2)), test)
    with pytest.raises(ValueError, match="test_index"):
        metrics.memorisation_share(samples, train, test, test_index=[0])


def test_second_space_is_independent(clf, clf2, cache, test_feats, mnist):
    assert clf2.arch == "strided" and clf2.info["seed"] != clf.info["seed"]
    assert clf2.info["test_accuracy"] > 0.85
    assert os.path.exists(os.path.join(cache, "classifiers", f"mnist5k-strided-v{metrics.STRIDED_VERSION}",
                                       "params.msgpack"))
    probs2, feats2 = metrics.classify(clf2, mnist[1].images)
    _, feats1 = test_feats
    assert feats1.shape == (1000, 128) and feats2.shape == (1000, 256)
    assert (feats1 >= 0).all() and (feats2 < 0).mean() > 0.2  # ReLU features vs pre-activations

    def nearest(feats):
        dist = metrics._pairwise_dist(feats, feats)
        np.fill_diagonal(dist, np.inf)
        return dist.argmin(1)

    # Same digits, different geometry: most digits' nearest neighbour differs between the spaces
    # (about 40% agree with the production networks), while each space is a good classifier.
    agree = np.mean(nearest(feats1) == nearest(feats2))
    assert 0.05 < agree < 0.7, agree
    assert np.mean(probs2.argmax(1) == mnist[1].labels) == pytest.approx(clf2.info["test_accuracy"])


SPACE_KEYS = ("fid", "precision", "recall", "density", "coverage",
              "raw/precision", "raw/recall", "raw/density", "raw/coverage")


def test_evaluate_samples_end_to_end(clf, clf2, mnist):
    train, test = mnist
    samples = train.images[::13][:300, ..., 0]  # [N, H, W] accepted for one channel
    out = metrics.evaluate_samples(samples, "mnist5k", classifier=clf, classifier2=clf2, reconstructions=samples)
    json.dumps(out)
    for key in ("fid", "inception_score", "precision", "recall", "class_entropy", "class_histogram",
                "pixel_mean", "near_binary_frac", "recon_mse", "num_ref", "mid_grey_frac", "ref_mid_grey_frac",
                "memorisation", "memorisation_base", "space2/class_entropy", "space2/classifier_accuracy"):
        assert key in out
    for key in SPACE_KEYS:
        assert key in out and f"space2/{key}" in out
    # what the training loop can log: scalars, and the class histogram as a list
    for key, value in out.items():
        assert isinstance(value, (float, int, bool, list, str)), (key, value)
    assert out["recon_mse"] == 0.0 and out["num_ref"] == 1000 and out["num_samples"] == 300
    assert out["fid"] < 5.0 and out["recall"] > 0.5
    assert out["ref_mid_grey_frac"] == metrics.pixel_stats(test.images)["mid_grey_frac"]
    # training digits are their own nearest training image: all memorised; held-out digits are not
    assert out["memorisation"] == 1.0
    n = len(test.images)
    assert out["memorisation_base"] == metrics.memorisation_share(
        test.images, train.images, test.images, test_index=np.arange(n))
    assert 0.3 < out["memorisation_base"] < 0.95


def test_real_vs_real_high_recall_in_both_spaces(clf, clf2, mnist):
    out = metrics.evaluate_samples(mnist[0].images[::4], "mnist5k", classifier=clf, classifier2=clf2)
    for space in ("", "space2/"):
        for key in ("recall", "raw/recall", "precision", "coverage"):
            assert out[space + key] > 0.7, (space + key, out[space + key])


def test_64_prototypes_low_recall_in_both_spaces(clf, clf2, mnist):
    # the failure of a VAE that sits on few modes: 64 real digits, each repeated with
    # small pixel noise (as bench.calibrate_metrics builds it)
    rng = np.random.default_rng(0)
    protos = mnist[0].images[np.sort(rng.choice(len(mnist[0].images), 64, replace=False))]
    copies = protos[np.arange(1000) % 64]
    samples = np.clip(copies + 0.05 * rng.normal(size=copies.shape), 0, 1)
    out = metrics.evaluate_samples(samples, "mnist5k", classifier=clf, classifier2=clf2)
    for space in ("", "space2/"):
        assert out[space + "recall"] < 0.1 and out[space + "raw/recall"] < 0.1, out
        assert out[space + "precision"] > 0.6, out  # each sample is still a realistic digit
        assert out[space + "coverage"] < 0.4, out


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
def test_evaluate_samples_rejects_bad_input(clf, clf2, samples, match):
    with pytest.raises(ValueError, match=match):
        metrics.evaluate_samples(samples, "mnist5k", classifier=clf, classifier2=clf2)


def test_evaluate_samples_rejects_swapped_spaces(clf, clf2, mnist):
    with pytest.raises(ValueError, match="classifier2 must be a 'strided'"):
        metrics.evaluate_samples(mnist[1].images[:20], "mnist5k", classifier=clf, classifier2=clf)
    with pytest.raises(ValueError, match="unknown feature network"):
        metrics.get_classifier("mnist5k", arch="mlp")


def test_metric_functions_reject_bad_input():
    with pytest.raises(ValueError, match="feature sizes"):
        metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 4"):
        metrics.precision_recall(np.zeros((10, 3)), np.zeros((3, 3)), k=3)
    with pytest.raises(ValueError, match="NaN"):
        metrics.frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="probabilities"):
        metrics.inception_score(np.ones((5, 3)))


def test_cli_bad_input(tmp_path, cache, clf, clf2, monkeypatch):
    from launch import evaluate

    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((20, 32, 32), np.float32))
    with monkeypatch.context() as patch:
        patch.setenv("JAXSPIKE_CACHE", cache)  # the session classifiers, no retraining
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
