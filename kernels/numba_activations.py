"""Numba kernels for hidden layers: forward `A = g(Z + b)` and backward `dZ = dA * g'(.)` with its bias gradient.

Each kernel is one pass over memory. `forward_kernel(act, parallel)`, `backward_kernel(act, parallel)` and
`bias_grad_kernel(parallel)` build one small compiled kernel per activation and per variant, compiled on its
first call (and cached on disk): the activation code and the row loop are compile-time constants, so a kernel's
machine code holds one activation's loop and nothing else, and only a run that meets an array large enough to go
parallel (`parallel=True`: rows on numba's threads) pays for compiling the parallel variant. A row's
bias-gradient sum is taken by the one thread that wrote the row, in a fixed order, so results do not depend
on the number of threads. Arithmetic stays in the arrays' dtype and mirrors the NumPy reference in
`backends/base.py` operation for operation (relu, leaky_relu, linear and the derivatives from A are
bit-identical to it; exp and tanh come from libm instead of numpy's SIMD code); no fastmath except
`row_sum`'s reassociation.

The activation is an integer code (`dnn/activations.py`, ACTIVATION_CODES, which the CUDA kernels share). A
kernel built here passes it to the scalar functions `activate` and `derivative` (generated from the
declarations: `kernels/numba_activation_source.py`) as a constant, so numba compiles one version of them per code
(the argument is typed as a literal), and LLVM folds the other codes' branches away and inlines the function
into the loop.
`kernels/numba_step.py` calls the same row helpers (`activate_row`, `derivative_row`) with arguments of the
same types, so the two share compiled code. Nothing here uses numba's own inlining (`inline="always"`): it
deep-copies the callee's IR, every branch included, at each call site, which made the cold compile of a
backward kernel take about twice as long.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit, prange

from .numba_activation_source import load

#: `activate(z, act, one)` and `derivative(d, src, act, from_output, one)`, generated from the declarations.
GENERATED = load()
activate, derivative = GENERATED.activate, GENERATED.derivative


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


# The row helpers are not cached on their own: a cached copy would outlive a change of the declarations they
# inline. Their cached callers (the kernels below, `numba_step.sgd_step_kernel`) carry GENERATED.DIGEST.
@njit
def activate_row(row, bias, act, one, with_abs):
    """row ← g(row + bias) in place; returns Σ|row| (float64) when with_abs (the row is still in cache), else 0.

    One array, so LLVM sees one pointer and vectorises without a run-time alias check (an in-place loop over
    two arguments that are the same row fails that check and runs scalar, ~4x slower). The bias is added
    inside the loop so that every store writes a new value: an in-place relu of unchanged values compiles
    to masked stores, ~4x slower on this CPU.
    """
    for j in range(row.shape[0]):
        row[j] = activate(row[j] + bias, act, one)
    return row_abs_sum(row) if with_abs else 0.0


@njit
def derivative_row(d_row, src_row, act, from_output, one, with_abs):
    """d_row ← d_row * g'(src_row) in place (src_row: another array's row); returns Σ|d_row| when with_abs, else 0."""
    for j in range(d_row.shape[0]):
        d_row[j] = derivative(d_row[j], src_row[j], act, from_output, one)
    return row_abs_sum(d_row) if with_abs else 0.0


@cache
def forward_kernel(act: int, parallel: bool):
    """The compiled forward pass for activation code `act`, its rows in parallel (`prange`) when `parallel`.

    kernel(Z, b, out, with_bias, inplace, with_abs): Z ← Z + b (when with_bias), out ← g(Z); returns Σ|out| in
    float64 when with_abs, else 0. Z, out: (n, m); b: (n, 1). inplace: out is Z.
    """
    rows = prange if parallel else range  # a constant of the kernel: part of its cache key, like act
    digest = GENERATED.DIGEST  # so is the declarations' version (see kernels/numba_activation_source.py)

    def bias_activation_forward(Z, b, out, with_bias, inplace, with_abs):
        digest  # noqa: B018 - read, so that it is a closure constant of the kernel
        one = Z.dtype.type(1)
        total = 0.0
        for i in rows(Z.shape[0]):
            bias = b[i, 0] if with_bias else one - one  # + 0 leaves every value as it is, -0.0 aside
            z_row = Z[i]
            if inplace:
                row_total = activate_row(z_row, bias, act, one, with_abs)
            else:
                out_row = out[i]
                for j in range(z_row.shape[0]):
                    out_row[j] = activate(z_row[j] + bias, act, one)
                if with_bias:
                    for j in range(z_row.shape[0]):
                        z_row[j] = z_row[j] + bias  # Z ← Z + b as well: the row is still in cache
                row_total = row_abs_sum(out_row) if with_abs else 0.0
            total += row_total  # one reduction statement: prange sums it per thread
        return total

    return njit(cache=True, parallel=parallel)(bias_activation_forward)


@cache
def backward_kernel(act: int, parallel: bool, from_output: bool = True):
    """The compiled backward pass for activation code `act`, its rows in parallel (`prange`) when `parallel`, g'
    taken from the layer's output A (`from_output`) or from its pre-activation Z.

    kernel(dA, src, out, db, db_scale, with_db, inplace, with_abs): out ← dA * g'(src) and, when with_db,
    db ← db_scale · Σ_columns out. dA, src, out: (n, m); db: (n, 1); inplace: out is dA. Returns Σ|out| in
    float64 when with_abs, else 0.
    """
    rows = prange if parallel else range
    digest = GENERATED.DIGEST

    def activation_backward(dA, src, out, db, db_scale, with_db, inplace, with_abs):
        digest  # noqa: B018 - a closure constant: part of the kernel's cache key
        one = dA.dtype.type(1)
        total = 0.0
        for i in rows(dA.shape[0]):
            if inplace:
                row_total = derivative_row(dA[i], src[i], act, from_output, one, with_abs)
            else:
                d_row, src_row, out_row = dA[i], src[i], out[i]
                for j in range(d_row.shape[0]):
                    out_row[j] = derivative(d_row[j], src_row[j], act, from_output, one)
                row_total = row_abs_sum(out_row) if with_abs else 0.0
            if with_db:
                db[i, 0] = row_sum(out[i]) * db_scale  # the row just written, still in cache
            total += row_total
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
