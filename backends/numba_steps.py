"""The numba backend's whole training steps (`Backend.compile_step`): SGD with each W updated inside its GEMM.

Two strategies, both ending in `kernels.numba_step.update_inside_products` (the update and its finiteness proof,
written once) and, when the proof fails, in `FusedUpdateStep.update_stored` (the fallback, written once):
- "compiled": the whole step in one compiled call (`kernels.numba_step.sgd_step_kernel`), for networks whose every
  elementwise pass would run on one thread anyway (each layer's n_l·m below the parallel size) and that need
  no L2: it saves the Python between ~20 operations and loses no parallelism.
- "fused-update": the layers' passes through the backend's own (parallel) kernels, which return Σ|A| and Σ|D|
  from the passes they make anyway, then the update inside the products.
Both need numpy's own CBLAS (alpha and beta on numpy's BLAS), plain SGD, no dropout and no gradient reducer
(the gradient must exist for a reducer; the update inside the products never stores it).
"""

from __future__ import annotations

import warnings
import weakref

import numpy

from ..kernels.step_state import NONFINITE, STATE_SIZE
from ..activations import ACTIVATION_CODES
from .base import check_output
from .numba_background import BackgroundCompile, can_compile_in_background, is_cached

#: Strategies this module builds.
STRATEGIES = ("compiled", "fused-update")


def finite_product_limit(dtype) -> float:
    """The largest Σ|A|·Σ|D| for which every entry (and partial sum) of D·Aᵀ in `dtype` is proven finite.

    |Σ_k D_ik·A_jk| ≤ max|A|·Σ|D| ≤ Σ|A|·Σ|D|; the margin of 2⁴ below the dtype's largest value covers the
    rounding of the products and of their accumulation.
    """
    return float(numpy.finfo(dtype).max) / 16


def compile_step(backend, plan):
    """A callable for `plan` (see `Backend.compile_step`), or None when this backend cannot take it that way;
    an optimizer whose update is not the plain gradient step (`UpdateRule.is_plain_gradient_step`), asked for by
    name, is refused by name (ValueError)."""
    check_output(plan.output)
    plain = plan.optimizer.rule.is_plain_gradient_step
    if plan.requested and plan.strategy in STRATEGIES and not plain:
        why = f"numba's whole steps are plain SGD, not optimizer {plan.optimizer.name!r}"
        raise ValueError(f"strategy {plan.strategy!r} is not available: {why}")
    if (
        plan.strategy not in STRATEGIES
        or backend.cblas is None
        or numpy.dtype(plan.dtype) not in (numpy.float32, numpy.float64)
        or not plain
        or plan.dropout
        or plan.reduces
    ):
        return None
    if plan.strategy == "fused-update":
        return FusedUpdateStep(backend, plan)
    small = all(n * plan.m < backend.parallel_min_elements for n in plan.layer_dims[1:])
    if plan.l2 or not small:
        return None
    return CompiledStep(backend, plan)


def _uniform_code(backend, activations) -> int:
    """The one activation code of every hidden layer, or MIXED (also for no hidden layer: nothing to prune)."""
    codes = {ACTIVATION_CODES[name] for name in activations}
    return codes.pop() if len(codes) == 1 else backend.step_kernels.MIXED


def warmup_calls(backend, dims, dtype, output, compiled: bool, activations=()):
    """[(kernel, arguments)] that compile the whole-step kernels for a network of `dims` in `dtype` (tuples of
    per-layer arrays are typed by their length, so each depth has its own compiled step)."""
    dtype, L = numpy.dtype(dtype), len(dims) - 1
    two, col, one, sums = numpy.zeros((2, 2), dtype), numpy.zeros((2, 1), dtype), dtype.type(1), numpy.zeros(L)
    layers, workspace = ((two,) * L, (col,) * L, (col,) * L), ((two,) * L, two, (two,) * L)
    blas = (finite_product_limit(dtype), backend.cblas.address(dtype), backend.cblas.ilp64)
    calls = [
        (
            backend.step_kernels.update_inside_products,
            (two, workspace[0], workspace[2], *layers, sums, sums, one, one, *blas, True, False),
        )
    ]
    if compiled:
        codes = numpy.zeros(max(1, L - 1), numpy.int64)
        kernel = backend.step_kernels.sgd_step_kernel(_uniform_code(backend, activations), output == "softmax")
        calls.append(
            (
                kernel,
                (
                    two,
                    two,
                    1.0,
                    *layers,
                    *workspace,
                    numpy.zeros(1, dtype),
                    codes,
                    one,
                    *blas,
                    numpy.zeros(STATE_SIZE),
                    True,
                    False,
                ),
            )
        )
    return calls


#: Σ|X| of each live batch, taken once: a batch's arrays do not change (see `Batch`), and a batch that is gone
#: leaves (weak keys), so no bound outlives its batch or is read for another.
_INPUT_BOUNDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _input_bound(backend, batch) -> float:
    """Σ|X| of the batch, taken on its first step and kept for the next ones."""
    bound = _INPUT_BOUNDS.get(batch)
    if bound is None:
        bound = _INPUT_BOUNDS[batch] = backend.abs_sum(batch.X)
    return bound


class CompiledStep:
    """Strategy "compiled": the kernel of `kernels.numba_step.sgd_step_kernel` on the network's own buffers.

    Its cold compile takes seconds, more than a short job's whole training. So unless the strategy was asked
    for by name, a kernel that is neither compiled nor in numba's cache is compiled in a helper process
    (`BackgroundCompile`), and until it is ready the steps are taken by `FusedUpdateStep(like_compiled=True)`,
    which computes the same values bit for bit (tests/test_step_strategies.py): when the switch happens depends
    on the cache and on timing, and changes nothing in a run's history.
    """

    def __init__(self, backend, plan):
        self.stand_in = FusedUpdateStep(backend, plan, like_compiled=True)  # its per-layer views serve the kernel too
        ws = plan.workspace
        self.buffers = (self.stand_in.activations, ws.ZL, self.stand_in.deltas, ws.cost)
        self.codes = numpy.array([ACTIVATION_CODES[a] for a in plan.activations] or [0], numpy.int64)
        self.kernel = backend.step_kernels.sgd_step_kernel(
            _uniform_code(backend, plan.activations), plan.output == "softmax"
        )
        # False until the kernel is known to be compiled or cached; True at once where no helper can be started
        self.ready = plan.requested or not can_compile_in_background()
        self._background = None  # the helper compiling the kernel once started; False if it failed

    def _arguments(self, batch, lr) -> tuple:
        s = self.stand_in
        return (
            batch.X,
            batch.Y,
            _input_bound(s.backend, batch),
            *s.layers,
            *self.buffers,
            self.codes,
            s.dtype.type(lr),
            *s.blas,
            s.plan.state,
            True,
            False,
        )

    def __call__(self, batch, lr) -> None:
        if not self.ready and self._background is None and is_cached(self.kernel, self._arguments(batch, lr)):
            self.ready = True  # the first call: compiled in this process already, or in numba's cache
        if self.ready:
            if self.kernel(*self._arguments(batch, lr)):  # the bound proved nothing
                self.stand_in.update_stored(batch, lr)
            return
        self.stand_in(batch, lr)
        if self._background is None:  # after the stand-in's first step, whose kernels the helper then loads
            self._background = self._start_background_compile()
        elif self._background is not False and self._background.done():
            self.ready = is_cached(self.kernel, self._arguments(batch, lr))  # what the helper left in the cache
            if not self.ready:
                self._background = _gave_up(f"the helper process ended with exit status {self._background.returncode}")

    def _start_background_compile(self):
        """The helper compiling the kernel, or False when it cannot be started (the stand-in then goes on)."""
        plan = self.stand_in.plan
        try:
            return BackgroundCompile.shared(
                list(plan.layer_dims),
                self.stand_in.dtype.name,
                activations=list(plan.activations),
                output=plan.output,
                optimizer=plan.optimizer.name,
            )
        except OSError as error:
            return _gave_up(f"no helper process could be started ({error})")


def _gave_up(why: str) -> bool:
    """Say once, for this step, that its kernel will not be ready, and why; False (`CompiledStep._background`)."""
    warnings.warn(
        f"numba's whole training step could not be compiled aside: {why}. Training goes on kernel by "
        "kernel (the same numbers, more time per step); warmup(net) compiles it here.",
        RuntimeWarning,
        stacklevel=4,
    )
    return False


class FusedUpdateStep:
    """Strategy "fused-update": the backend's kernels layer by layer, then the update inside the products.

    It runs its own layer loop rather than `dnn.propagation`'s because its kernels also return Σ|A| and Σ|D|
    from their passes (the proof's inputs), which the backend interface does not carry. like_compiled: compute
    exactly what `CompiledStep`'s kernel computes (its tanh is libm's, not numpy's faster SIMD tanh).
    """

    def __init__(self, backend, plan, like_compiled: bool = False):
        self.backend, self.plan, self.like_compiled = backend, plan, like_compiled
        self.dtype = numpy.dtype(plan.dtype)
        p = plan.params
        self.layers = (tuple(p.W[1:]), tuple(p.b[1:]), tuple(p.db[1:]))
        self.activations, self.deltas = (
            tuple(plan.workspace.A[1:]),
            tuple(plan.workspace.D[1:]),
        )  # made once, not per step
        self.blas = (finite_product_limit(self.dtype), backend.cblas.address(self.dtype), backend.cblas.ilp64)
        self.input_sums = numpy.empty(len(plan.layer_dims) - 1)  # Σ|A[l-1]|, l = 1..L
        self.delta_sums = numpy.empty(len(plan.layer_dims) - 1)  # Σ|D[l]|, l = 1..L

    def __call__(self, batch, lr) -> None:
        be, plan, state = self.backend, self.plan, self.plan.state
        ws, p, L, m = plan.workspace, plan.params, len(plan.layer_dims) - 1, plan.m
        be.begin_step(state)
        if plan.l2:
            be.add_l2_cost(state, p.W[1:], plan.l2)  # with the W about to be updated
            be.guard_step(state)
        if state[NONFINITE]:
            return  # nothing moves until the host has seen it
        self.input_sums[0] = _input_bound(be, batch)
        A_in = batch.X
        for l in range(1, L):
            be.gemm(p.W[l], A_in, out=ws.A[l])  # Z[l] = W[l]·A[l-1]
            self.input_sums[l] = be.bias_activation_forward_abs_sum(
                ws.A[l], p.b[l], plan.activations[l - 1], ws.A[l], self.like_compiled
            )
            A_in = ws.A[l]
        be.gemm(p.W[L], A_in, out=ws.ZL)
        be.output_layer(ws.ZL, p.b[L], plan.output, ws.A[L], Y=batch.Y, dZ=ws.D[L], cost=ws.cost, dZ_scale=1.0 / m)
        be.record_step(state, ws.cost, ws.A[L], batch.Y, plan.output)
        be.bias_grad(ws.D[L], out=p.db[L], scale=1.0)  # db[L] = Σ D[L]
        self.delta_sums[L - 1] = be.abs_sum(ws.D[L])
        for l in range(L, 1, -1):
            be.gemm(p.W[l], ws.D[l], out=ws.D[l - 1], trans_a=True)  # dA[l-1] = W[l]ᵀ·D[l]
            self.delta_sums[l - 2] = be.activation_backward_abs_sum(
                ws.D[l - 1], plan.activations[l - 2], ws.D[l - 1], ws.A[l - 1], p.db[l - 1]
            )
        be.guard_step(state)
        if state[NONFINITE]:
            return
        dt = self.dtype.type
        if be.step_kernels.update_inside_products(
            batch.X,
            self.activations,
            self.deltas,
            *self.layers,
            self.input_sums,
            self.delta_sums,
            dt(lr),
            dt(1.0 - lr * plan.l2 / m),
            *self.blas,
            True,
            False,
        ):
            be.commit_step(state)
        else:
            self.update_stored(batch, lr)

    def update_stored(self, batch, lr) -> None:
        """Finish a step whose gradients the bound could not prove finite: dW[l] = D[l]·A[l-1]ᵀ (+ (λ/m)·W[l]) stored,
        every gradient checked, then θ ← θ - lr·g; nothing moves, and NONFINITE is set, when one is not finite."""
        be, plan, state = self.backend, self.plan, self.plan.state
        p, ws, L = plan.params, plan.workspace, len(plan.layer_dims) - 1
        for l in range(1, L + 1):
            be.gemm(ws.D[l], batch.X if l == 1 else ws.A[l - 1], out=p.dW[l], trans_b=True)  # dW[l] = D[l]·A[l-1]ᵀ
            if plan.l2:
                be.axpy(plan.l2 / plan.m, p.W[l], p.dW[l])  # + (λ/m)·W[l]
        if not be.all_finite(p.grad):
            state[NONFINITE] = 1
            return
        be.sgd_update(p.theta, p.grad, lr)
        be.commit_step(state)
