"""Compiled pieces of a training step: SGD with W updated inside its gradient's GEMM, the step state, a whole step.

`update_inside_products` is the one place where the update inside the products and its finiteness proof are
written: W[l] ← decay·W[l] - lr·D[l]·A[l-1]ᵀ is one GEMM (alpha = -lr, beta = decay = 1 - lr·λ/m), so the
gradient is never stored, once Σ|A[l-1]|·Σ|D[l]| below `limit` proves every entry of it finite
(|Σ_k D_ik·A_jk| ≤ max|A|·Σ|D| ≤ Σ|A|·Σ|D|; a NaN or inf makes a sum non-finite). When the bound cannot prove
it, nothing is updated here: the caller stores the gradients, checks and applies them (`FusedUpdateStep.
update_stored` in `backends/numba_steps.py`), and nothing moves if one is not finite. Both whole-step
strategies of the numba backend end with it.

`sgd_step_kernel(act, softmax)` builds a whole SGD step (forward, cost, backward, update, step state) in one
call, for networks small enough that ~20 backend calls would cost more in Python than in arithmetic. It calls
the functions the numba backend's own kernels call (the row helpers of `numba_activations`, the output kernels
of `numba_output`, `numba_blas.gemm`, `update_inside_products`) with arguments of the same types, so it
computes every value as the backend's "fused-update" strategy does, bit for bit, and shares their compiled
code: a constant True or False passed to a compiled function is typed as a literal and compiles a version of its
own, so the step takes `on` and `off` (True and False) as arguments. Per-layer arrays arrive as tuples of
same-typed 2-D arrays (numba unboxes a homogeneous tuple cheaply; a reflected list would cost far more).
The step-state slots are named in `kernels/step_state.py` (STEP_COST ... FINITE_STEPS).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit

from .numba_activations import GENERATED, activate_row, derivative_row, row_abs_sum, row_sum
from .numba_blas import gemm
from .numba_output import sigmoid_output, softmax_output
from .step_state import (
    FINITE_STEPS,
    NONFINITE,
    STEP_CORRECT,
    STEP_COST,
    STEP_EXAMPLES,
    TOTAL_CORRECT,
    TOTAL_COST,
    TOTAL_EXAMPLES,
)


@njit(cache=True)
def update_inside_products(X, A, D, W, b, db, input_sums, delta_sums, lr, decay, limit, blas, ilp64, on, off):
    """One SGD update from the deltas D[l] = (1/m)·dZ[l] when the bound proves every gradient finite: True when
    taken; False when it proves nothing, and then nothing was updated (the caller stores the gradients, checks
    and applies them: `backends/numba_steps.py`, `FusedUpdateStep.update_stored`).

    X (n_0, m) and A (tuple of L (n_l, m)): the layer inputs are X, A[0], ..., A[L-2]. W, b, db: tuples of the
    layers' views into theta and grad; db already holds the bias gradients. input_sums[l] bounds Σ|input of
    layer l|, delta_sums[l] = Σ|D[l]| (float64). lr, decay = 1 - lr·λ/m: the dtype's scalars. limit:
    `finite_product_limit(dtype)`. blas, ilp64: numpy's cblas_?gemm (`numba_blas.gemm`). on, off: True and
    False, see `sgd_step_kernel`.
    """
    L = len(W)
    for l in range(L):
        if not input_sums[l] * delta_sums[l] <= limit:  # NaN fails too
            return False
    step = -lr  # p + (-lr)·g is exactly p - lr·g, as `sgd_update` computes it
    for l in range(L):
        A_prev = X if l == 0 else A[l - 1]  # (n_{l-1}, m)
        gemm(blas, ilp64, D[l], A_prev, W[l], off, on, step, decay)  # W ← decay·W - lr·D·A_prevᵀ
        for i in range(b[l].shape[0]):
            b[l][i, 0] += step * db[l][i, 0]
    return True


@njit(cache=True)
def correct_predictions(A, Y, softmax):
    """Examples of A (n_L, m) classified as Y says: argmax per column for softmax; for sigmoid (A > 0.5) == Y
    counted per unit, divided by n_L (a one-unit output counts examples)."""
    n, m = A.shape
    if softmax:
        hits = 0.0
        for j in range(m):
            best_a, best_y = 0, 0
            for i in range(1, n):  # the first maximum, as numpy.argmax takes it
                if A[i, j] > A[best_a, j]:
                    best_a = i
                if Y[i, j] > Y[best_y, j]:
                    best_y = i
            hits += 1.0 if best_a == best_y else 0.0
        return hits
    hits = 0.0
    half = A.dtype.type(0.5)
    for i in range(n):
        for j in range(m):
            hits += 1.0 if (A[i, j] > half) == (Y[i, j] == 1) else 0.0
    return hits / n


@njit(cache=True)
def record_step(state, cost, A, Y, softmax):
    """STEP_COST += cost·m (float64), STEP_CORRECT = correct predictions of A against Y, STEP_EXAMPLES = m."""
    m = A.shape[1]
    state[STEP_COST] += np.float64(cost[0]) * m
    state[STEP_CORRECT] = correct_predictions(A, Y, softmax)
    state[STEP_EXAMPLES] = m


@njit(cache=True)
def commit_step(state):
    """Unless NONFINITE is set: totals += the step's slots, one more finite step."""
    if state[NONFINITE] == 0:
        state[TOTAL_COST] += state[STEP_COST]
        state[TOTAL_CORRECT] += state[STEP_CORRECT]
        state[TOTAL_EXAMPLES] += state[STEP_EXAMPLES]
        state[FINITE_STEPS] += 1


#: `sgd_step_kernel`'s activation argument for networks whose hidden layers differ: codes read per layer.
MIXED = -1


@cache
def sgd_step_kernel(act: int, softmax: bool):
    """The compiled whole SGD step for hidden layers that all use activation code `act` (MIXED: each layer's code
    from `acts`) and a softmax (else sigmoid) output.

    `act` and `softmax` are constants of the kernel (part of numba's cache key), so numba prunes every other
    activation's and output's code before compiling: a uniform network's step compiles a fraction of the code.
    """
    digest = (
        GENERATED.DIGEST
    )  # the activations' version: part of the cache key (see kernels/numba_activation_source.py)

    def sgd_step(X, Y, x_abs_sum, W, b, db, A, ZL, D, cost, acts, lr, limit, blas, ilp64, state, on, off):
        """One gradient-descent step on (X, Y) with its step state; nothing moves when NONFINITE is or becomes set.
        Returns True when the bound proved nothing and the caller must finish the step with stored gradients
        (`update_inside_products`), else False.

        X (n_0, m), Y (n_L, m): the batch; x_abs_sum: Σ|X| (any upper bound on max|X|). W, b, db: tuples of the
        L layers' (n_l, n_{l-1}) and (n_l, 1) views into the flat parameters and gradient. A, D: tuples
        of the L (n_l, m) workspaces; ZL (n_L, m) keeps the logits, cost (1,) receives the mean cross-entropy.
        acts (L-1,): the hidden layers' activation codes, read when act is MIXED. lr: the learning rate in
        theta's dtype; limit, blas, ilp64: see `update_inside_products`. state: the (STATE_SIZE,) float64 step state.
        on, off: True and False. D[l] holds (1/m)·dA[l], then (1/m)·dZ[l].
        """
        digest  # noqa: B018 - read, so that it is a closure constant of the step
        state[STEP_COST] = 0.0
        state[STEP_CORRECT] = 0.0
        state[STEP_EXAMPLES] = 0.0
        if state[NONFINITE] != 0:  # sticky: a step after a non-finite one moves nothing until the host has seen it
            return False
        L = len(W)
        m = X.shape[1]
        one, zero = X.dtype.type(1), X.dtype.type(0)
        input_sums = np.empty(L)  # Σ|A[l-1]|, l = 1..L
        delta_sums = np.empty(L)  # Σ|D[l]|, l = 1..L
        input_sums[0] = x_abs_sum
        # forward: A[l] = g(W[l]·A[l-1] + b[l]) in place in A[l]; the last product goes to ZL
        for l in range(L):
            A_prev = X if l == 0 else A[l - 1]  # (n_{l-1}, m)
            Z = ZL if l == L - 1 else A[l]  # (n_l, m)
            gemm(blas, ilp64, W[l], A_prev, Z, off, off, one, zero)  # (n_l, n_{l-1})·(n_{l-1}, m)
            if l < L - 1:
                total = 0.0
                for i in range(Z.shape[0]):
                    if act == MIXED:
                        total += activate_row(Z[i], b[l][i, 0], acts[l], one, on)
                    else:
                        total += activate_row(Z[i], b[l][i, 0], act, one, on)
                input_sums[l + 1] = total
        # output: ZL ← ZL + b, A[L] = σ(ZL) or softmax(ZL), cost, D[L] = (1/m)·(A[L] - Y)
        if softmax:
            softmax_output(ZL, b[L - 1], A[L - 1], Y, D[L - 1], cost, on, on, X.dtype.type(1.0 / m))
        else:
            sigmoid_output(ZL, b[L - 1], A[L - 1], Y, D[L - 1], cost, on, on, X.dtype.type(1.0 / m))
        record_step(state, cost, A[L - 1], Y, softmax)
        for i in range(D[L - 1].shape[0]):
            db[L - 1][i, 0] = row_sum(D[L - 1][i])  # db[L] = Σ D[L]: (n_L, 1)
        delta_sums[L - 1] = row_abs_sum(D[L - 1].reshape(D[L - 1].size))
        # backward: D[l-1] = W[l]ᵀ·D[l], then D[l-1] ← D[l-1] * g'(A[l-1]) in place with db[l-1] in the same pass
        for l in range(L - 1, 0, -1):
            gemm(blas, ilp64, W[l], D[l], D[l - 1], on, off, one, zero)  # (n_{l-1}, n_l)·(n_l, m)
            total = 0.0
            for i in range(D[l - 1].shape[0]):
                if act == MIXED:
                    total += derivative_row(D[l - 1][i], A[l - 1][i], acts[l - 1], True, one, on)
                else:
                    total += derivative_row(D[l - 1][i], A[l - 1][i], act, True, one, on)
                db[l - 1][i, 0] = row_sum(D[l - 1][i])  # the row just written, still in cache
            delta_sums[l - 1] = total
        if not np.isfinite(state[STEP_COST]):
            state[NONFINITE] = 1
            return False
        if not update_inside_products(X, A, D, W, b, db, input_sums, delta_sums, lr, one, limit, blas, ilp64, on, off):
            return True
        commit_step(state)
        return False

    return njit(cache=True)(sgd_step)
