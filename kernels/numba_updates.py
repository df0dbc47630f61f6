"""Numba kernels for the in-place elementwise passes: SGD/axpy, momentum, Adam, a product.

`update_kernel(op, parallel)` builds one small compiled kernel per operation and variant, compiled on its
first call (and cached on disk): the operation code is a compile-time constant, so a kernel holds one
operation's loop only. The parallel variant processes chunks of CHUNK elements on numba's threads (large
arrays only: a thread launch costs more than a small pass), the serial one sweeps the array once on the
calling thread. Arrays arrive flattened to 1-D (C-contiguous); scalars arrive already cast to the arrays'
dtype, so each operation performs the reference's arithmetic (`backends/base.py`) in the reference's order
and dtype. Element k is read before it is written, so y may be x or m1.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit, prange

#: The operations by name; an operation's code (a compile-time constant of its kernel) is its index here.
OPERATIONS = ("axpy", "momentum", "adam", "multiply")
AXPY = OPERATIONS.index("axpy")
MOMENTUM = OPERATIONS.index("momentum")
ADAM = OPERATIONS.index("adam")
MULTIPLY = OPERATIONS.index("multiply")
#: The operation that takes each optimizer's update, by the optimizer's name (`dnn.optimizers.OPTIMIZERS`);
#: SGD's step is axpy with alpha = -lr.
OPTIMIZER_OPERATIONS = {"sgd": AXPY, "momentum": MOMENTUM, "adam": ADAM}
#: Elements per parallel task.
CHUNK = 1 << 14


@cache
def update_kernel(op: int, parallel: bool):
    """The compiled operation `op` as kernel(y, x, m1, m2, s) over 1-D arrays of one size, in place.

    s = (alpha or lr, β1, 1-β1, β2, 1-β2, c1, c2, eps) in the arrays' dtype; arrays and scalars an operation
    does not use are placeholders.
    """
    chunks = prange if parallel else range  # a constant of the kernel: part of its cache key, like op

    def update(y, x, m1, m2, s):
        n = y.size
        chunk = CHUNK if parallel else (n if n > 0 else 1)  # conditionals, not min/max: each compiles an overload
        for c in chunks((n + chunk - 1) // chunk):
            lo, hi = c * chunk, (c + 1) * chunk
            hi = hi if hi < n else n
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
            else:  # MULTIPLY: y ← x * m1
                for k in range(lo, hi):
                    y[k] = x[k] * m1[k]

    return njit(cache=True, parallel=parallel)(update)
