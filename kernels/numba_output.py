"""Numba kernels for the output layer: bias, sigmoid or softmax, the cross-entropy cost and dZ_L = A_L - Y in one pass.

Serial: the output layer (n_L, m) is small next to the hidden layers, and a thread launch would cost more
than it saves. The cost is summed in float64 per row (sigmoid) or per block of columns (softmax), and the
partial sums are added in index order as each is finished (what summing an array of them would do, without
compiling an allocation and a reduction into every kernel).
"""

from __future__ import annotations

import numpy as np
from numba import njit


#: Columns per block of the softmax kernel: the block's rows stay in cache between the passes over it.
SOFTMAX_BLOCK = 64


@njit(cache=True)
def sigmoid_output(Z, b, A, Y, dZ, cost, with_cost, with_dZ, dZ_scale):
    """Z ← Z + b; A ← σ(Z); cost[0] ← mean cross-entropy (with_cost); dZ ← dZ_scale·(A - Y) (with_dZ).

    Z, A, Y, dZ: (n, m); b: (n, 1); cost: (1,). Per element the cost is max(z,0) - z·y + log1p(exp(-|z|)),
    the stable form of -(y log σ(z) + (1-y) log(1-σ(z))); one exp serves σ and the cost.
    """
    n, m = Z.shape
    one = Z.dtype.type(1)
    zero = Z.dtype.type(0)
    cost_sum = 0.0  # the rows' partial sums, added in row order
    for i in range(n):
        bias = b[i, 0]
        total = 0.0
        for j in range(m):
            z = Z[i, j] + bias
            Z[i, j] = z
            e = np.exp(-np.abs(z))
            a = one / (one + e) if z >= zero else e / (one + e)
            A[i, j] = a
            if with_cost:
                y = Y[i, j]
                total += (z if z > zero else zero) - z * y + np.log1p(e)
            if with_dZ:
                dZ[i, j] = (a - Y[i, j]) * dZ_scale
        cost_sum += total
    if with_cost:
        cost[0] = cost_sum / m


@njit(cache=True)
def softmax_output(Z, b, A, Y, dZ, cost, with_cost, with_dZ, dZ_scale):
    """Z ← Z + b; A ← column-wise softmax(Z); cost[0] ← mean categorical cross-entropy; dZ ← dZ_scale·(A - Y).

    Z, A, Y, dZ: (n, m); b: (n, 1); cost: (1,). Columns in blocks of SOFTMAX_BLOCK; per column
    the cost is Σ_i y_i (lse - z_i) = Σ_i y_i (log1p(Σ_{k ≠ argmax} exp(z_k - max z)) + (max z - z_i)).
    """
    n, m = Z.shape
    one = Z.dtype.type(1)
    blocks = (m + SOFTMAX_BLOCK - 1) // SOFTMAX_BLOCK
    cost_sum = 0.0  # the blocks' partial sums, added in block order
    for k in range(blocks):
        total = 0.0
        stop = (k + 1) * SOFTMAX_BLOCK
        for j in range(k * SOFTMAX_BLOCK, stop if stop < m else m):  # not min(): it would compile an overload
            top, k_top = Z[0, j] + b[0, 0], 0
            for i in range(n):
                z = Z[i, j] + b[i, 0]
                Z[i, j] = z
                if z > top:
                    top, k_top = z, i
            rest = Z.dtype.type(0)  # Σ exp(z_i - top) over i ≠ k_top; the top term is exactly 1
            for i in range(n):
                e = np.exp(Z[i, j] - top)
                A[i, j] = e
                if i != k_top:
                    rest += e
            s = one + rest
            log_s = np.log1p(rest)  # lse - top; log1p keeps the digits of a confident column's tiny cost
            for i in range(n):
                a = A[i, j] / s
                A[i, j] = a
                if with_cost:
                    total += Y[i, j] * (log_s + (top - Z[i, j]))  # y·(lse - z), never adding to top first
                if with_dZ:
                    dZ[i, j] = (a - Y[i, j]) * dZ_scale
        cost_sum += total
    if with_cost:
        cost[0] = cost_sum / m
