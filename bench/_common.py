"""Shared helpers for the benchmark scripts: timing, matmul roofline, memory."""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def time_fn(fn: Callable[[], object], repeats: int, warmup: int = 2) -> np.ndarray:
    """Wall-clock seconds of ``fn()`` (blocked until ready) over ``repeats`` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def matmul_floor(shapes: Sequence[tuple[int, int, int]], repeats: int = 10) -> tuple[float, float]:
    """Measured time of the workload's matmuls run alone, and their FLOPs.

    ``shapes`` lists ``(m, k, n)`` for each ``[m, k] x [k, n]`` product the
    workload needs. Each is timed as its own jitted fp32 GEMM; the sum of the
    medians is the floor a perfect implementation of the workload could hit
    on this machine (elementwise work counted as free).
    """
    total_s, flops = 0.0, 0.0
    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        a = jnp.asarray(rng.standard_normal((m, k), dtype=np.float32))
        b = jnp.asarray(rng.standard_normal((k, n), dtype=np.float32))
        f = jax.jit(lambda a, b: a @ b)
        total_s += float(np.median(time_fn(lambda: f(a, b), repeats)))
        flops += 2.0 * m * k * n
    return total_s, flops


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def temp_mb(jitted, *args) -> float | None:
    """XLA's temporary-buffer size for the compiled computation, MiB."""
    try:
        stats = jitted.lower(*args).compile().memory_analysis()
        return stats.temp_size_in_bytes / 2**20
    except Exception:  # memory_analysis is backend-dependent
        return None


def emit(record: dict) -> None:
    record = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in record.items()}
    print(json.dumps(record), flush=True)
    sys.stdout.flush()
