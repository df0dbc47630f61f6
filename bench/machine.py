"""The machine's own rates, measured in this process: GEMM FLOP/s and copy bandwidth, plus what they depend on.

The BLAS (threadpoolctl), thread counts and TF32 state come from dnn.perf.environment_info, the same lines
`python -m dnn bench` prints; this module adds the measured rates that put the benchmark numbers in scale.
"""

from __future__ import annotations

import functools

import numpy as np

from dnn.perf import environment_info, median_seconds


def gemm_rate(backend, dtype, n: int, repeat: int = 5, timer=median_seconds) -> float:
    """FLOP/s of an (n, n)·(n, n) product with `backend`'s matmul (numpy's BLAS on the CPU).

    `timer(fn, repeat)` returns seconds per call; gpu_check passes one that uses CUDA events.
    """
    rng = np.random.default_rng(0)
    a = backend.asarray(rng.standard_normal((n, n)), dtype=dtype)
    b = backend.asarray(rng.standard_normal((n, n)), dtype=dtype)
    out = backend.empty((n, n), dtype)
    matmul = backend.xp.matmul

    def product():
        matmul(a, b, out=out)
        backend.synchronize()

    product()  # first call: library loading, thread start-up
    return 2.0 * n**3 / timer(product, repeat)


def copy_bandwidth(backend, nbytes: int, repeat: int = 5, timer=median_seconds) -> float:
    """Bytes/s moved by a plain copy of `nbytes` bytes (read and write both counted) with `backend.copyto`."""
    src = backend.asarray(np.ones(nbytes // 8), dtype="float64")
    dst = backend.empty(src.shape, "float64")

    def copy():
        backend.copyto(dst, src)
        backend.synchronize()

    copy()
    return 2.0 * src.nbytes / timer(copy, repeat)


@functools.cache
def parallel_copy():
    """A numba function copying a C-contiguous array into another in chunks on all of numba's threads.

    The reference a parallel kernel's bandwidth is compared with (numpy's copyto runs on one thread).
    Built once per process and compiled on its first call; needs numba.
    """
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def copy(dst, src):
        d, s = dst.reshape(dst.size), src.reshape(src.size)
        chunk = 1 << 16
        for c in prange((s.size + chunk - 1) // chunk):
            d[c * chunk : (c + 1) * chunk] = s[c * chunk : (c + 1) * chunk]

    return copy


def machine_summary(backend, full: bool) -> dict:
    """environment_info plus the measured GEMM GFLOP/s per dtype and copy GB/s (small sizes unless `full`)."""
    n, nbytes = (2048, 256 * 2**20) if full else (256, 4 * 2**20)
    summary = environment_info(backend)
    for dtype in ("float32", "float64"):
        summary[f"gemm_gflops_{dtype}_n{n}"] = round(gemm_rate(backend, dtype, n) / 1e9, 1)
    summary[f"copy_gbps_{nbytes >> 20}MiB"] = round(copy_bandwidth(backend, nbytes) / 1e9, 1)
    return summary
