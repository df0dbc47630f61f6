"""Scalar helpers that numba code rendered from declarations calls (`dnn/expressions.py`, SCALAR target).

`cast(value, like)` is `value` in the type of `like` (a number of the elements' dtype), so that a literal of a
declaration (0.01, 1) is rounded once to float32 in float32 code, as the NumPy reference's weak Python scalars
are, and the arithmetic stays in that dtype. `stable_sigmoid(z, one)` is the sigmoid every target provides.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import overload


def cast(value, like):
    """`value` as a number of `like`'s type (numba compiles the overload below; this is the Python meaning)."""
    return type(like)(value)


@overload(cast)
def _cast_in_compiled_code(value, like):
    to = like  # a numba type: calling it converts, and LLVM folds the conversion of a literal

    def impl(value, like):
        return to(value)

    return impl


@njit(cache=True)
def stable_sigmoid(z, one):
    """1/(1+e^-z) without overflow, in the dtype of z and `one` (1 of that dtype): exp(-|z|) ≤ 1 on both branches."""
    e = np.exp(-np.abs(z))
    return one / (one + e) if z >= 0 else e / (one + e)
