"""One whole SGD training step (forward, cost, backward, update) in one compiled call.

For small networks a step through `Network.train_step` is dominated by Python: ~20 backend calls, each
checking its arrays and unboxing them into a kernel. `sgd_step` does the same step with the same
buffers inside one `@njit` function: the matrix products call numpy's own CBLAS GEMM (`numba_blas`, the
library and thread pool numpy uses), the elementwise passes are the serial row helpers of
`numba_activations` and the output kernels of `numba_output`, so every value is computed as the numba
backend computes it. The row helpers are inlined rather than the parallel kernels called: calling a
`parallel=True` kernel from here made a cold compile ~3x slower.

As in `Network._step_inside_products`, each W is updated by the GEMM that computes its gradient
(alpha = -lr, beta = 1) once Σ|A[l-1]|·Σ|D[l]| proves every gradient finite; otherwise the gradients are
stored, checked and applied. Per-layer arrays arrive as tuples of same-typed 2-D arrays (numba unboxes a
homogeneous tuple cheaply; a reflected list would cost far more per call).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..backends.base import LEAKY_RELU_SLOPE
from .numba_activations import backward_row, forward_row, row_abs_sum, row_sum
from .numba_blas import gemm
from .numba_output import sigmoid_output, softmax_output


@njit(cache=True)
def sgd_step(X, Y, x_abs_sum, W, b, dW, db, A, ZL, D, cost, acts, softmax, theta, grad, lr, limit, blas, ilp64):
    """One gradient-descent step on (X, Y); True when it was taken, False when it was not finite.

    X (n_0, m), Y (n_L, m): the batch; x_abs_sum: Σ|X|, or a negative number to compute it here. W, b, dW, db:
    tuples of the L layers' (n_l, n_{l-1}) and (n_l, 1) views into the flat vectors theta (P,) and grad (P,).
    A, D: tuples of the L (n_l, m) workspaces; ZL (n_L, m) keeps the logits, cost (1,) receives the mean
    cross-entropy. acts (L-1,): the hidden layers' activation codes (`numba_activations.ACTIVATION_CODES`);
    softmax: the output layer (else sigmoid). lr: the learning rate in theta's dtype. limit:
    `finite_product_limit(dtype)`. blas, ilp64: numpy's cblas_?gemm for the dtype (`numba_blas.gemm`).

    D[l] holds (1/m)·dA[l], then (1/m)·dZ[l], so dW and db need no scaling. When the cost or a gradient is
    not finite, returns False and leaves theta as it was.
    """
    L = len(W)
    m = X.shape[1]
    one, zero = X.dtype.type(1), X.dtype.type(0)
    slope = X.dtype.type(LEAKY_RELU_SLOPE)
    input_sums = np.empty(L)  # Σ|A[l-1]|, l = 1..L
    delta_sums = np.empty(L)  # Σ|D[l]|, l = 1..L
    input_sums[0] = x_abs_sum if x_abs_sum >= 0 else row_abs_sum(X.reshape(X.size))
    # forward: A[l] = g(W[l]·A[l-1] + b[l]) in place in A[l]; the last product goes to ZL
    for l in range(L):
        A_prev = X if l == 0 else A[l - 1]  # (n_{l-1}, m)
        Z = ZL if l == L - 1 else A[l]  # (n_l, m)
        gemm(blas, ilp64, W[l], A_prev, Z, False, False, one, zero)  # (n_l, n_{l-1})·(n_{l-1}, m)
        if l < L - 1:
            total = 0.0
            for i in range(Z.shape[0]):
                total += forward_row(i, Z, b[l], acts[l], Z, True, True, slope, True)
            input_sums[l + 1] = total
    # output: ZL ← ZL + b, A[L] = σ(ZL) or softmax(ZL), cost, D[L] = (1/m)·(A[L] - Y)
    if softmax:
        softmax_output(ZL, b[L - 1], A[L - 1], Y, D[L - 1], cost, True, True, X.dtype.type(1.0 / m))
    else:
        sigmoid_output(ZL, b[L - 1], A[L - 1], Y, D[L - 1], cost, True, True, X.dtype.type(1.0 / m))
    for i in range(D[L - 1].shape[0]):
        db[L - 1][i, 0] = row_sum(D[L - 1][i])  # db[L] = Σ D[L]: (n_L, 1)
    delta_sums[L - 1] = row_abs_sum(D[L - 1].reshape(D[L - 1].size))
    # backward: D[l-1] = W[l]ᵀ·D[l], then D[l-1] ← D[l-1] * g'(A[l-1]) in place with db[l-1] in the same pass
    for l in range(L - 1, 0, -1):
        gemm(blas, ilp64, W[l], D[l], D[l - 1], True, False, one, zero)  # (n_{l-1}, n_l)·(n_l, m)
        total = 0.0
        for i in range(D[l - 1].shape[0]):
            total += backward_row(i, D[l - 1], A[l - 1], acts[l - 1], True, D[l - 1], db[l - 1], 1.0, True, True, slope, True)
        delta_sums[l - 1] = total
    if not np.isfinite(cost[0]):
        return False
    step = -lr  # theta + (-lr)·grad is exactly theta - lr·grad, as `sgd_update` computes it
    bounded = True
    for l in range(L):
        if not input_sums[l] * delta_sums[l] <= limit:  # NaN fails too
            bounded = False
    if bounded:
        for l in range(L):
            A_prev = X if l == 0 else A[l - 1]  # (n_{l-1}, m)
            gemm(blas, ilp64, D[l], A_prev, W[l], False, True, step, one)  # W[l] ← W[l] - lr·D[l]·A[l-1]ᵀ
            for i in range(b[l].shape[0]):
                b[l][i, 0] += step * db[l][i, 0]
        return True
    for l in range(L):  # a gradient may not be finite: store and check them before anything is updated
        A_prev = X if l == 0 else A[l - 1]
        gemm(blas, ilp64, D[l], A_prev, dW[l], False, True, one, zero)  # dW[l] = D[l]·A[l-1]ᵀ
    for k in range(grad.size):  # no fastmath here: it would let LLVM fold isfinite to True
        if not np.isfinite(grad[k]):
            return False
    for k in range(theta.size):
        theta[k] += step * grad[k]
    return True
