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


def time_against_floor(
    fn: Callable[[], object], shapes: Sequence[tuple[int, int, int]], repeats: int, warmup: int = 2
) -> dict:
    """Times ``fn`` and its matmul floor in alternating rounds.

    ``shapes`` lists ``(m, k, n)`` for each ``[m, k] x [k, n]`` product the
    workload needs; the floor is those products run alone as jitted fp32
    GEMMs, the time a perfect implementation could hit on this machine
    (elementwise work counted as free).

    These machines share their cores with other virtual machines, so their
    speed drifts within seconds. Timing the workload for a while and then the
    floor for a while lets the drift land in the ratio. Here each round times
    ``fn()`` once and then every GEMM warm and back to back (one untimed call,
    median of three timed ones, their operands in cache); ``x_floor`` is the
    median over rounds of the per-round ratio, ``median_s``/``floor_s`` the
    medians of the two series.
    """
    rng = np.random.default_rng(0)
    gemm = jax.jit(lambda a, b: a @ b)
    operands = [
        (jnp.asarray(rng.standard_normal((m, k), dtype=np.float32)), jnp.asarray(rng.standard_normal((k, n), dtype=np.float32)))
        for m, k, n in shapes
    ]
    flops = sum(2.0 * m * k * n for m, k, n in shapes)
    for _ in range(warmup):
        jax.block_until_ready(fn())
    step_t, floor_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        step_t.append(time.perf_counter() - t0)
        floor_t.append(sum(float(np.median(time_fn(lambda: gemm(a, b), 3, warmup=1))) for a, b in operands))
    step_t, floor_t = np.asarray(step_t), np.asarray(floor_t)
    return {
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
