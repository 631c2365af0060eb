"""Test setup: CPU only, four fake devices, one XLA compilation cache per test session."""

import os
import shutil
import tempfile

# Must happen before jax is imported anywhere.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests' programs are small and each is compiled once, so compiling, not running, takes most
# of their time: the tests turn XLA's CPU backend optimisation off (benchmarks and real runs keep
# it). Equalities in the tests compare runs made under the same flags.
_TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    _flags += " --xla_force_host_platform_device_count=4"
os.environ["XLA_FLAGS"] = " ".join([_flags] + [f for f in _TEST_XLA_FLAGS if f.split("=")[0] not in _flags]).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A persistent XLA compilation cache made fresh for this session (by the first process to import
# this file: the xdist controller, whose environment the workers and the CLI subprocesses
# inherit). A program that several tests build (the reference runs, a resumed run, a sweep's
# single-seed twin, a CLI re-run) is compiled once; every program is still compiled and run here.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxspike-xla-cache-")
    os.environ["JAXSPIKE_TEST_OWNS_XLA_CACHE"] = str(os.getpid())
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import jax  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env(devices: int = 1) -> dict:
    """The environment of a test's subprocess (a launch script, a helper): CPU, ``devices``
    fake devices, the repository importable, and this session's other XLA flags, so that it
    compiles at the tests' optimisation level and shares their compilation cache."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS=" ".join(flags + [f"--xla_force_host_platform_device_count={devices}"]))
    env["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env


@pytest.fixture
def key():
    return jax.random.key(0)


def pytest_sessionfinish(session):
    # Only the process that made the cache removes it (not an xdist worker, not a user's own dir).
    if os.environ.get("JAXSPIKE_TEST_OWNS_XLA_CACHE") == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
