"""The one table of numerical tolerances, per dtype, that every comparison in tests and benchmarks uses.

`relative_difference(a, ref)` = max|a - ref| / max|ref|: the error measured against the size of the
reference array, so that entries near zero are judged on the array's scale rather than their own.
"""

from __future__ import annotations

import numpy as np

#: Largest relative difference allowed between a backend's gradients and NumPy float64's.
GRADIENT_RTOL = {
    "float64": 1e-12,  # same math, other summation orders: rounding differences only
    "float32": 1e-4,  # float32 rounding (2^-24 ≈ 6e-8) grown through a few layers of GEMMs and reductions
}

#: Largest relative difference between a kernel's output and the NumPy float64 reference (one pass, no GEMM).
KERNEL_RTOL = {"float64": 1e-13, "float32": 2e-6}

#: The course's threshold for ||g - g_approx|| / (||g|| + ||g_approx||) with ε = 1e-7 in float64.
GRADCHECK_THRESHOLD = 1e-7


def relative_difference(a, ref) -> float:
    """max|a - ref| / max|ref| in float64 (0 when both are all zero; inf when only ref is)."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        raise ValueError(f"shapes differ: {a.shape} vs reference {ref.shape}")
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = float(np.max(np.abs(a - ref))) if ref.size else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def gradient_rtol(dtype) -> float:
    """The gradient tolerance for `dtype` (a name or dtype-like)."""
    return GRADIENT_RTOL[np.dtype(dtype).name]


def kernel_rtol(dtype) -> float:
    """The single-kernel tolerance for `dtype`."""
    return KERNEL_RTOL[np.dtype(dtype).name]
