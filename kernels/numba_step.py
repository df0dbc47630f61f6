"""One whole SGD training step (forward, cost, backward, finiteness check, update) in one compiled call.

For small networks a step through `Network.train_step` is dominated by Python: ~25 backend calls, each
checking its arrays and unboxing them into a kernel. `sgd_step` does the same step with the same
buffers inside one `@njit` function: the matrix products are `np.dot` (numba calls BLAS through scipy),
the elementwise passes are the serial row helpers of `numba_activations` and the output kernel of
`numba_output`, so every value is computed as the numba backend computes it (bit-identical on this
machine). The row helpers are inlined rather than the parallel kernels called: calling a `parallel=True`
kernel from here made a cold compile ~3x slower (~20 s instead of ~7 s per dtype and depth).

Per-layer arrays arrive as tuples of same-typed 2-D arrays (numba unboxes a homogeneous tuple cheaply; a
reflected list would cost far more per call). Nothing is allocated per call except the output kernel's
(n_L,) float64 row sums.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..backends.base import LEAKY_RELU_SLOPE
from .numba_activations import backward_row, forward_row, row_sum
from .numba_output import sigmoid_output


@njit(cache=True)
def sgd_step(X, Y, W, b, dW, db, A, ZL, D, cost, acts, theta, grad, lr):
    """One gradient-descent step of a sigmoid-output network on (X, Y); True when it was taken.

    X (n_0, m), Y (n_L, m): the batch. W, b, dW, db: tuples of the L layers' (n_l, n_{l-1}) and (n_l, 1)
    views into the flat vectors theta (P,) and grad (P,). A, D: tuples of the L (n_l, m) workspaces; ZL
    (n_L, m) keeps the logits, cost (1,) receives the mean cross-entropy. acts (L-1,): the hidden layers'
    activation codes (`numba_activations.ACTIVATION_CODES`). lr: the learning rate in theta's dtype.

    Mirrors `Network.compute_gradients` + `sgd_update` without L2 or dropout: D[l] holds (1/m)·dA[l], then
    (1/m)·dZ[l], so dW and db need no scaling. When the cost or a gradient is not finite, returns False
    and leaves theta as it was.
    """
    L = len(W)
    m = X.shape[1]
    slope = X.dtype.type(LEAKY_RELU_SLOPE)
    # forward: A[l] = g(W[l]·A[l-1] + b[l]) in place in A[l]; the last product goes to ZL
    for l in range(L):
        A_prev = X if l == 0 else A[l - 1]  # (n_{l-1}, m)
        Z = ZL if l == L - 1 else A[l]  # (n_l, m)
        np.dot(W[l], A_prev, Z)  # (n_l, n_{l-1})·(n_{l-1}, m)
        if l < L - 1:
            for i in range(Z.shape[0]):
                forward_row(i, Z, b[l], acts[l], Z, True, True, slope)
    # output: ZL ← ZL + b, A[L] = σ(ZL), cost, D[L] = (1/m)·(A[L] - Y)
    sigmoid_output(ZL, b[L - 1], A[L - 1], Y, D[L - 1], cost, True, True, X.dtype.type(1.0 / m))
    for i in range(D[L - 1].shape[0]):
        db[L - 1][i, 0] = row_sum(D[L - 1][i])  # db[L] = Σ D[L]: (n_L, 1)
    # backward
    for l in range(L - 1, -1, -1):
        if l < L - 1:
            # D[l] ← D[l] * g'(A[l]) in place, db[l] = Σ_columns D[l] in the same pass
            for i in range(D[l].shape[0]):
                backward_row(i, D[l], A[l], acts[l], True, D[l], db[l], 1.0, True, True, slope)
        A_prev = X if l == 0 else A[l - 1]  # (n_{l-1}, m)
        np.dot(D[l], A_prev.T, dW[l])  # dW[l] = D[l]·A[l-1]ᵀ: (n_l, m)·(m, n_{l-1})
        if l > 0:
            np.dot(W[l].T, D[l], D[l - 1])  # D[l-1] = W[l]ᵀ·D[l]: (n_{l-1}, n_l)·(n_l, m)
    if not np.isfinite(cost[0]):
        return False
    for k in range(grad.size):  # no fastmath here: it would let LLVM fold isfinite to True
        if not np.isfinite(grad[k]):
            return False
    step = -lr  # theta + (-lr)·grad is exactly theta - lr·grad, as `sgd_update` computes it
    for k in range(theta.size):
        theta[k] += step * grad[k]
    return True
