"""Numba kernels for finiteness: the non-finite count, and Σ|a|, the bound that proves products finite.

`count_non_finite` is compiled WITHOUT fastmath: fastmath's `nnan`/`ninf` flags let LLVM assume that no
value is NaN or infinite and fold its test to a constant. `abs_sum` allows reassociation only, which keeps
NaN and inf in the sum.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_activations import row_abs_sum

#: Elements per chunk of `abs_sum`: each chunk is summed by one thread in a fixed order.
ABS_SUM_CHUNK = 1 << 14


@njit(parallel=True, cache=True)
def count_non_finite(a, parallel):
    """How many elements of the C-contiguous array `a` are NaN or ±inf (elements in parallel when `parallel`)."""
    flat = a.reshape(a.size)
    count = 0
    if parallel:
        for k in prange(flat.size):
            count += 0 if np.isfinite(flat[k]) else 1
    else:
        for k in range(flat.size):
            count += 0 if np.isfinite(flat[k]) else 1
    return count


@njit(parallel=True, cache=True)
def abs_sum(a, parallel):
    """Σ|a| in float64 over the C-contiguous array `a`, chunks in parallel when `parallel`."""
    flat = a.reshape(a.size)
    chunks = (flat.size + ABS_SUM_CHUNK - 1) // ABS_SUM_CHUNK
    total = 0.0
    if parallel:
        for c in prange(chunks):
            total += row_abs_sum(flat[c * ABS_SUM_CHUNK : (c + 1) * ABS_SUM_CHUNK])
    else:
        for c in range(chunks):
            total += row_abs_sum(flat[c * ABS_SUM_CHUNK : (c + 1) * ABS_SUM_CHUNK])
    return total
