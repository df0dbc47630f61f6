"""Numba kernels for finiteness: the non-finite count, and Σ|a|, the bound that proves products finite.

`count_non_finite_kernel(parallel)` and `abs_sum_kernel(parallel)` build the serial or the parallel variant,
each compiled on its first call (and cached on disk), over a 1-D C-contiguous array (the caller passes a
flat view). The count is compiled WITHOUT fastmath: fastmath's `nnan`/`ninf` flags let LLVM assume that no
value is NaN or infinite and fold its test to a constant. `abs_sum` allows reassociation only (in
`row_abs_sum`), which keeps NaN and inf in the sum.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit, prange

from .numba_activations import row_abs_sum

#: Elements per chunk of `abs_sum`: each chunk is summed by one thread in a fixed order.
ABS_SUM_CHUNK = 1 << 14


@cache
def count_non_finite_kernel(parallel: bool):
    """The compiled kernel(flat) -> how many elements of the 1-D array are NaN or ±inf."""
    elements = prange if parallel else range  # a constant of the kernel: part of its cache key

    def count_non_finite(flat):
        count = 0
        for k in elements(flat.size):
            count += 0 if np.isfinite(flat[k]) else 1
        return count

    return njit(cache=True, parallel=parallel)(count_non_finite)


@cache
def abs_sum_kernel(parallel: bool):
    """The compiled kernel(flat) -> Σ|flat| in float64, summed in chunks of ABS_SUM_CHUNK in a fixed order each."""
    chunks = prange if parallel else range

    def abs_sum(flat):
        total = 0.0
        for c in chunks((flat.size + ABS_SUM_CHUNK - 1) // ABS_SUM_CHUNK):
            total += row_abs_sum(flat[c * ABS_SUM_CHUNK : (c + 1) * ABS_SUM_CHUNK])
        return total

    return njit(cache=True, parallel=parallel)(abs_sum)
