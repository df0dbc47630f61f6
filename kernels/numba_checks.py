"""Numba kernel for the non-finite check. Compiled WITHOUT fastmath: fastmath's `nnan`/`ninf` flags let LLVM
assume that no value is NaN or infinite and fold the test below to a constant."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


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
