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


def _gemms(shapes: Sequence[tuple[int, int, int]]):
    """One jitted fp32 GEMM with its operands for each ``(m, k, n)``, and the total FLOPs."""
    rng = np.random.default_rng(0)
    calls, flops = [], 0.0
    for m, k, n in shapes:
        a = jnp.asarray(rng.standard_normal((m, k), dtype=np.float32))
        b = jnp.asarray(rng.standard_normal((k, n), dtype=np.float32))
        f = jax.jit(lambda a, b: a @ b)
        calls.append(lambda f=f, a=a, b=b: f(a, b))
        flops += 2.0 * m * k * n
    return calls, flops


def matmul_floor(shapes: Sequence[tuple[int, int, int]], repeats: int = 10) -> tuple[float, float]:
    """Measured time of the workload's matmuls run alone, and their FLOPs.

    ``shapes`` lists ``(m, k, n)`` for each ``[m, k] x [k, n]`` product the
    workload needs. Each is timed as its own jitted fp32 GEMM; the sum of the
    medians is the floor a perfect implementation of the workload could hit
    on this machine (elementwise work counted as free).
    """
    calls, flops = _gemms(shapes)
    total_s = sum(float(np.median(time_fn(c, repeats))) for c in calls)
    return total_s, flops


def time_against_floor(
    fn: Callable[[], object], shapes: Sequence[tuple[int, int, int]], repeats: int, warmup: int = 2
) -> dict:
    """Times ``fn`` and its matmul floor in alternating rounds.

    These machines share their cores with other virtual machines, so their
    speed drifts within seconds. Timing the workload for a while and then the
    floor for a while lets the drift land in the ratio. Here each round times
    ``fn()`` once and then the floor (every GEMM as :func:`matmul_floor` times
    it, warm and back to back: one untimed call, median of three timed ones);
    ``x_floor`` is the median over rounds of the per-round ratio,
    ``median_s``/``floor_s`` the medians of the two series.
    """
    calls, flops = _gemms(shapes)
    for _ in range(warmup):
        jax.block_until_ready(fn())
        for c in calls:
            jax.block_until_ready(c())
    step_t, floor_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        step_t.append(time.perf_counter() - t0)
        total = 0.0
        for c in calls:  # each GEMM back to back, as matmul_floor does: its operands in cache
            total += float(np.median(time_fn(c, 3, warmup=1)))
        floor_t.append(total)
    step_t, floor_t = np.asarray(step_t), np.asarray(floor_t)
    return {
        "times": step_t,
        "median_s": float(np.median(step_t)),
        "p10_s": float(np.percentile(step_t, 10)),
        "p90_s": float(np.percentile(step_t, 90)),
        "floor_s": float(np.median(floor_t)),
        "flops": flops,
        "x_floor": float(np.median(step_t / floor_t)),
    }


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
