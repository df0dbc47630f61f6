"""One Numba kernel for the in-place elementwise passes: SGD/axpy, momentum, Adam, a product.

The operation is an integer code (like the activations), so one compiled kernel per dtype serves them all.
Elements are processed in chunks in parallel when the caller passes `parallel=True` (large arrays only: a
thread launch costs more than a small pass), else in one sweep on the calling thread. Arrays are
C-contiguous and flattened to 1-D views; scalars arrive already cast to the arrays' dtype, so each operation
performs the reference's arithmetic (`backends/base.py`) in the reference's order and dtype.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

AXPY, MOMENTUM, ADAM, MULTIPLY = range(4)
#: Elements per parallel task.
CHUNK = 1 << 14


@njit(cache=True)
def _update_range(op, y, x, m1, m2, s, lo, hi):
    """Elements lo..hi of one operation; s = (alpha or lr, β1, 1-β1, β2, 1-β2, c1, c2, eps) in the dtype."""
    hi = min(hi, y.size)
    if op == AXPY:  # y ← y + s0·x; the SGD step is s0 = -lr (p + (-lr)·g is exactly p - lr·g)
        for k in range(lo, hi):
            y[k] += s[0] * x[k]
    elif op == MOMENTUM:  # m1 ← β·m1 + (1-β)·x; y ← y - lr·m1
        for k in range(lo, hi):
            vk = m1[k] * s[1] + s[2] * x[k]
            m1[k] = vk
            y[k] -= s[0] * vk
    elif op == ADAM:  # m1 ← β1·m1 + (1-β1)·x; m2 ← β2·m2 + (1-β2)·x²; y ← y - lr·(m1/c1) / (sqrt(m2/c2) + eps)
        for k in range(lo, hi):
            gk = x[k]
            mk = m1[k] * s[1] + s[2] * gk
            vk = m2[k] * s[3] + s[4] * (gk * gk)
            m1[k] = mk
            m2[k] = vk
            y[k] -= s[0] * (mk / s[5]) / (np.sqrt(vk / s[6]) + s[7])
    else:  # MULTIPLY: y ← x * m1 (y may be x or m1: element k is read before it is written)
        for k in range(lo, hi):
            y[k] = x[k] * m1[k]


@njit(parallel=True, cache=True)
def update(op, y, x, m1, m2, s, parallel):
    """Apply operation `op` to the flattened arrays (arrays an operation does not use are placeholders)."""
    yf, xf, m1f, m2f = y.reshape(y.size), x.reshape(x.size), m1.reshape(m1.size), m2.reshape(m2.size)
    if parallel:
        for c in prange((yf.size + CHUNK - 1) // CHUNK):
            _update_range(op, yf, xf, m1f, m2f, s, c * CHUNK, (c + 1) * CHUNK)
    else:
        _update_range(op, yf, xf, m1f, m2f, s, 0, yf.size)
