"""Numba kernels for hidden layers: forward `A = g(Z + b)` and backward `dZ = dA * g'(.)` with its bias gradient.

Each kernel is one pass over memory. `forward_kernel(act, parallel)`, `backward_kernel(act, parallel)` and
`bias_grad_kernel(parallel)` build one small compiled kernel per activation and per variant, compiled on its
first call (and cached on disk): the activation code and the row loop are compile-time constants, so a kernel
holds one activation's loop and nothing else, and only a run that meets an array large enough to go
parallel (`parallel=True`: rows on numba's threads) pays for compiling the parallel variant. A row's
bias-gradient sum is taken by the one thread that wrote the row, in a fixed order, so results do not depend
on the number of threads. Arithmetic stays in the arrays' dtype and mirrors the NumPy reference in
`backends/base.py` operation for operation (relu, leaky_relu, linear and the derivatives from A are
bit-identical to it; exp and tanh come from libm instead of numpy's SIMD code); no fastmath except
`row_sum`'s reassociation.

The row helpers (`forward_row`, `backward_row`) take the activation as an integer code (`ACTIVATION_CODES`):
inside a kernel built here it is a constant and numba prunes the other activations' branches before typing;
`kernels/numba_step.py` passes it at run time. `inplace=True` means the output buffer is the input buffer:
the kernel then writes through the input so that LLVM sees one pointer and vectorises without run-time
alias checks. The row helpers are inlined by numba (`inline="always"`) for the same reason: as separate
functions their two array arguments could alias, and the loop ran ~4x slower. Keep each helper's parameter
names equal to the caller's names for the same values: numba 0.68.1 miscompiled an inlined helper inside
`prange` whose parameter `m` was bound to a caller variable other than the caller's own `m` (wrong Adam
results).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit, prange

from ..backends.base import LEAKY_RELU_SLOPE

RELU, LEAKY_RELU, SIGMOID, TANH, LINEAR = range(5)
ACTIVATION_CODES = {"relu": RELU, "leaky_relu": LEAKY_RELU, "sigmoid": SIGMOID, "tanh": TANH, "linear": LINEAR}


@njit(cache=True, fastmath={"reassoc"})
def row_sum(row):
    """Σ row in float64. Reassociation lets LLVM vectorise the sum; the order is fixed by the compiled code."""
    total = 0.0
    for j in range(row.shape[0]):
        total += row[j]
    return total


@njit(cache=True, fastmath={"reassoc"})
def row_abs_sum(row):
    """Σ|row| in float64: NaN when the row holds a NaN, inf when it holds an inf (the terms are never negative).

    An upper bound on max|row| that is finite exactly when the row is (float32 rows cannot overflow it);
    `Network.train_step` uses it to prove a weight gradient finite without a pass over the gradient.
    """
    total = 0.0
    for j in range(row.shape[0]):
        total += np.abs(row[j])
    return total


@njit(cache=True)
def stable_sigmoid(z, one):
    """1/(1+e^-z) without overflow, in the dtype of z and `one` (1 of that dtype): exp(-|z|) ≤ 1 on both branches."""
    e = np.exp(-np.abs(z))
    return one / (one + e) if z >= 0 else e / (one + e)


@njit(cache=True, inline="always")
def _activate_row(z_row, out_row, act, slope, bias):
    """out_row ← g(z_row + bias); out_row may be z_row.

    The bias is added inside each loop (not in a pass of its own) so that an in-place store always writes a
    new value: an in-place relu of unchanged values compiles to masked stores, ~4x slower on this CPU.
    """
    zero = z_row.dtype.type(0)
    one = z_row.dtype.type(1)
    if act == RELU:
        for j in range(z_row.shape[0]):
            z = z_row[j] + bias
            out_row[j] = zero if z < zero else z  # like np.maximum: NaN stays NaN
    elif act == LEAKY_RELU:
        for j in range(z_row.shape[0]):
            z = z_row[j] + bias
            out_row[j] = z if z > zero else z * slope
    elif act == SIGMOID:
        for j in range(z_row.shape[0]):
            out_row[j] = stable_sigmoid(z_row[j] + bias, one)
    elif act == TANH:
        for j in range(z_row.shape[0]):
            out_row[j] = np.tanh(z_row[j] + bias)
    else:
        for j in range(z_row.shape[0]):
            out_row[j] = z_row[j] + bias


@njit(cache=True, inline="always")
def _add_bias_row(z_row, bias):
    for j in range(z_row.shape[0]):
        z_row[j] = z_row[j] + bias


@njit(cache=True, inline="always")
def forward_row(i, Z, b, act, out, with_bias, inplace, slope, with_abs):
    """Row i of the forward pass; returns Σ|out[i]| when with_abs (the row is still in cache), else 0."""
    bias = b[i, 0] if with_bias else Z.dtype.type(0)  # + 0 leaves every value as it is, -0.0 aside
    if inplace:
        _activate_row(Z[i], Z[i], act, slope, bias)
    else:
        _activate_row(Z[i], out[i], act, slope, bias)
        if with_bias:
            _add_bias_row(Z[i], bias)  # Z ← Z + b as well: the row is still in cache
    return row_abs_sum(out[i]) if with_abs else 0.0


@cache
def forward_kernel(act: int, parallel: bool):
    """The compiled forward pass for activation code `act`, its rows in parallel (`prange`) when `parallel`.

    kernel(Z, b, out, with_bias, inplace, with_abs): Z ← Z + b (when with_bias), out ← g(Z); returns Σ|out| in
    float64 when with_abs, else 0. Z, out: (n, m); b: (n, 1).
    """
    rows = prange if parallel else range  # a constant of the kernel: part of its cache key, like act

    def bias_activation_forward(Z, b, out, with_bias, inplace, with_abs):
        slope = Z.dtype.type(LEAKY_RELU_SLOPE)
        total = 0.0
        for i in rows(Z.shape[0]):
            total += forward_row(i, Z, b, act, out, with_bias, inplace, slope, with_abs)
        return total

    return njit(cache=True, parallel=parallel)(bias_activation_forward)


@njit(cache=True, inline="always")
def _derivative_row(dA_row, src_row, out_row, act, from_output, slope):
    """out_row ← dA_row * g'(.), g' from the layer's output (from_output) or its pre-activation."""
    zero = dA_row.dtype.type(0)
    one = dA_row.dtype.type(1)
    if act == RELU:
        for j in range(dA_row.shape[0]):
            out_row[j] = dA_row[j] * (one if src_row[j] > zero else zero)  # a product, so dA=NaN stays NaN
    elif act == LEAKY_RELU:
        for j in range(dA_row.shape[0]):
            out_row[j] = dA_row[j] * (one if src_row[j] > zero else slope)
    elif act == SIGMOID:
        for j in range(dA_row.shape[0]):
            s = src_row[j] if from_output else stable_sigmoid(src_row[j], one)
            out_row[j] = dA_row[j] * (s * (one - s))
    elif act == TANH:
        for j in range(dA_row.shape[0]):
            t = src_row[j] if from_output else np.tanh(src_row[j])
            out_row[j] = dA_row[j] * (one - t * t)
    else:
        for j in range(dA_row.shape[0]):
            out_row[j] = dA_row[j]


@njit(cache=True, inline="always")
def backward_row(i, dA, src, act, from_output, out, db, db_scale, with_db, inplace, slope, with_abs):
    """Row i of the backward pass; returns Σ|out[i]| when with_abs, else 0."""
    if inplace:
        _derivative_row(dA[i], src[i], dA[i], act, from_output, slope)
    else:
        _derivative_row(dA[i], src[i], out[i], act, from_output, slope)
    if with_db:
        db[i, 0] = row_sum(out[i]) * db_scale  # the row just written, still in cache
    return row_abs_sum(out[i]) if with_abs else 0.0


@cache
def backward_kernel(act: int, parallel: bool):
    """The compiled backward pass for activation code `act`, its rows in parallel (`prange`) when `parallel`.

    kernel(dA, src, from_output, out, db, db_scale, with_db, inplace, with_abs): out ← dA * g'(src), g' from the
    layer's output (from_output) or its pre-activation, and, when with_db, db ← db_scale · Σ_columns out.
    dA, src, out: (n, m); db: (n, 1). Returns Σ|out| in float64 when with_abs, else 0.
    """
    rows = prange if parallel else range

    def activation_backward(dA, src, from_output, out, db, db_scale, with_db, inplace, with_abs):
        slope = dA.dtype.type(LEAKY_RELU_SLOPE)
        total = 0.0
        for i in rows(dA.shape[0]):
            total += backward_row(i, dA, src, act, from_output, out, db, db_scale, with_db, inplace, slope, with_abs)
        return total

    return njit(cache=True, parallel=parallel)(activation_backward)


@cache
def bias_grad_kernel(parallel: bool):
    """The compiled bias gradient kernel(dZ, out, scale): out ← scale · Σ_columns dZ.  dZ: (n, m); out: (n, 1)."""
    rows = prange if parallel else range

    def bias_grad(dZ, out, scale):
        for i in rows(dZ.shape[0]):
            out[i, 0] = row_sum(dZ[i]) * scale

    return njit(cache=True, parallel=parallel)(bias_grad)
