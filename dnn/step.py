"""The training step, made once and called per batch: forward → cost → backward → gradient ready → guard → update.

A `TrainStep` is built for a network, a batch size, an optimizer, L2, dropout and a gradient reducer (think of
Keras' `make_train_function` or a jitted step in JAX). Its strategy is chosen once, here, at construction:

- "compiled": the backend takes the whole step in one call (`Backend.compile_step`): numba's compiled step
  for small networks, a replayed CUDA graph on a GPU.
- "fused-update": the backend updates each W inside the GEMM that computes its gradient (alpha = -lr,
  beta = 1 - lr·λ/m), so the gradient is never stored (plain SGD, no dropout, no reducer).
- "phases": the phases one by one through the backend's operations; every optimizer, dropout and a reducer.

By default the first of these that the step's settings and the backend allow is taken. Every strategy takes
the same step (within `dnn.tolerances`), and none synchronises with the host: the cost, the correct count and
the non-finite flag go into the step state (`kernels/step_state.py`), a small vector on the backend
that the host reads when it logs (`TrainStep.read`). The flag is sticky: after a non-finite step nothing
moves (no parameter, no optimizer state, no step count) until the host has read it and raised DivergenceError.

The gradient reducer seam: `reducer(grad, state)` is called after backward with the flat (P,) gradient vector
holding the gradient *summed* over the local examples and the state's step slots (cost sum, correct count,
example count); it sums both across workers in place. The gradient is then divided by the global example
count and the L2 term added once, so uneven shards stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import DivergenceError
from .kernels.step_state import FINITE_STEPS, NONFINITE, STEP_EXAMPLES, TOTAL_CORRECT, TOTAL_COST, TOTAL_EXAMPLES
from .optimizers import make_optimizer
from .propagation import Batch, add_l2_gradient, backward, check_batch, forward
from .validation import check_count, check_dropout_rates, check_non_negative, check_positive

#: Every strategy, in the order a step tries them when none is asked for.
STRATEGIES = ("compiled", "fused-update", "phases")


@dataclass(frozen=True)
class StepPlan:
    """What a backend needs to build a whole step (`Backend.compile_step`): named fields, no positional tuples."""

    strategy: str  # "compiled" or "fused-update"
    requested: bool  # the caller asked for this strategy by name: build it now, never in the background
    layer_dims: tuple  # (n_0, ..., n_L)
    activations: tuple  # the hidden layers' activation names
    output: str  # "sigmoid" or "softmax"
    dtype: np.dtype
    m: int  # examples per batch
    optimizer: object  # the `dnn.optimizers.Optimizer`: its name, hyperparameters, state vectors, step_count
    l2: float  # λ
    dropout: bool  # some hidden layer drops units
    reduces: bool  # a gradient reducer runs between backward and the update
    params: object  # `dnn.parameters.Parameters`: theta, grad and their per-layer views W, b, dW, db
    workspace: object  # `dnn.propagation.Workspace` for m: A, ZL, D, cost
    state: object  # the (STATE_SIZE,) step state


class StepTotals(NamedTuple):
    """The finite steps since the last read: summed cost (mean cost × examples), correct predictions, examples."""

    cost_sum: float
    correct: float
    examples: float
    steps: int

    @property
    def cost(self) -> float:
        """The mean cost per example over the steps read (with the L2 penalty of each step)."""
        return self.cost_sum / self.examples


class StepState:
    """The step-state vector on the backend, shared by the steps of one training run, and its host reads."""

    def __init__(self, backend, optimizer):
        self.backend, self.optimizer = backend, optimizer
        self.vector = backend.new_step_state()  # (STATE_SIZE,) float64
        self._updates_at_read = optimizer.step_count

    def read(self) -> StepTotals:
        """The totals since the last read (then zeroed); DivergenceError when a step was not finite.

        The error's `step` attribute is the 1-based index, among the steps since the last read, of the first
        non-finite one; the parameters and the optimizer's state are those of the step before it.
        """
        host = self.backend.read_step_state(self.vector)  # the one synchronisation
        finite = int(host[FINITE_STEPS])
        if host[NONFINITE]:
            self.optimizer.step_count = self._updates_at_read + finite  # the skipped updates never happened
            error = DivergenceError(
                f"the cost or a gradient became non-finite in step {finite + 1} since the last read; the "
                "parameters are left as they were before that step; try a smaller learning rate"
            )
            error.step = finite + 1
            raise error
        self._updates_at_read = self.optimizer.step_count
        return StepTotals(float(host[TOTAL_COST]), float(host[TOTAL_CORRECT]), float(host[TOTAL_EXAMPLES]), finite)


def numpy_warnings_silenced():
    """A context in which NumPy's RuntimeWarnings (overflow, invalid value, divide by zero) are off.

    A diverging step overflows: its guard flags it and `read` raises one DivergenceError, so NumPy's own
    warnings would only be noise before it. Callers enter it once around many steps (`fit`: an epoch's),
    not per step, where it would cost ~1 µs of a ~100 µs step.
    """
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


class TrainStep:
    """One training step on batches of m examples, built once and called per batch.

    optimizer: a name of `dnn.optimizers.OPTIMIZERS` or an `Optimizer` (its state stays with it). l2: λ of
    the penalty (λ/2m)·Σ‖W‖². dropout: drop rate of the hidden layers (one float or one per hidden layer).
    reducer: a callable `reducer(grad, state)` run between backward and the update (see the module docstring);
    a step with a reducer may be given m = 0 (a worker with no examples in this batch contributes zero).
    strategy (advanced): "compiled", "fused-update" or "phases"; None takes the first the settings and the
    backend allow, and a strategy they do not allow is a ValueError saying why. state: a `StepState` shared
    with other steps of the same run (e.g. the last, shorter batch of an epoch); None makes one.
    accuracy: count the correct predictions of each step's forward pass into the step state (what `fit`
    reports as training accuracy); False spares the phases that pass (`read().correct` is then 0 for them).
    """

    def __init__(
        self,
        net,
        m: int,
        optimizer="sgd",
        l2: float = 0.0,
        dropout=None,
        reducer=None,
        strategy=None,
        state: StepState | None = None,
        accuracy: bool = True,
    ):
        self.net = net
        self.m = check_count(m, "m", minimum=0 if reducer is not None else 1)
        self.optimizer = make_optimizer(optimizer)
        self.l2 = check_non_negative(l2, "l2")
        self.dropout = check_dropout_rates(dropout, net.num_layers - 1)
        self.reducer = reducer
        self.accuracy = bool(accuracy)
        self.state = state if state is not None else StepState(net.backend, self.optimizer)
        if self.state.optimizer is not self.optimizer:
            raise ValueError("steps that share a StepState must share its optimizer")
        with net.busy:
            if self.m:  # refused with the figures before anything is allocated
                net.check_memory(self.m, self.optimizer, dropout=bool(self.dropout))
            self.workspace = net.workspace(self.m) if self.m else None
            self.strategy, self._whole_step = self._choose(strategy)
        # what every batch must be, compared in O(1) per call (`check_batch` words the error)
        self._expected = (
            (net.layer_dims[0], self.m),
            (net.layer_dims[-1], self.m),
            net.backend.native_dtype(net.dtype),
        )
        self._contiguous = net.backend.is_contiguous

    def _choose(self, requested):
        """(strategy, the backend's callable or None): the one decision of how this step runs."""
        if requested is not None and requested not in STRATEGIES:
            raise ValueError(f"unknown strategy {requested!r}; valid strategies: {', '.join(STRATEGIES)}")
        for strategy in (requested,) if requested else STRATEGIES:
            if strategy == "phases":
                return strategy, None
            why = self._why_not(strategy)
            run = None if why else self.net.backend.compile_step(self._plan(strategy, requested is not None))
            if run is not None:
                return strategy, run
            if requested:
                why = why or f"the {self.net.backend.name} backend cannot run it for this network and batch size"
                raise ValueError(f"strategy {strategy!r} is not available: {why}")
        raise AssertionError("'phases' is always available")

    def _why_not(self, strategy) -> str | None:
        if self.reducer is not None:
            return "a gradient reducer needs the gradient, which a whole-step strategy never stores"
        if self.m == 0:
            return "the batch has no examples"
        if strategy == "fused-update" and not self.optimizer.rule.is_plain_gradient_step:
            return f"the update inside the products is plain SGD without dropout, not optimizer {self.optimizer.name!r}"
        if strategy == "fused-update" and self.dropout:
            return "the update inside the products is plain SGD without dropout"
        return None

    def _plan(self, strategy, requested: bool) -> StepPlan:
        net = self.net
        return StepPlan(
            strategy,
            requested,
            tuple(net.layer_dims),
            tuple(net.activations),
            net.output,
            net.dtype,
            self.m,
            self.optimizer,
            self.l2,
            bool(self.dropout),
            self.reducer is not None,
            net.params,
            self.workspace,
            self.state.vector,
        )

    def __call__(self, batch, lr: float, rng=None) -> None:
        """Take one step on `batch` (made by `Network.batch`, m examples) at learning rate `lr`; no host sync.

        rng: the backend random generator that draws the dropout masks (with dropout). Read the cost, the
        accuracy and any divergence with `read()`.
        """
        check_positive(lr, "lr")  # once per step, never inside a kernel
        if not self._fits(batch):
            m = check_batch(self.net, batch) if self.m or batch is not None else 0
            if m != self.m:
                raise ValueError(f"this step was built for batches of {self.m} examples, got {m}")
        with self.net.busy:  # a second thread stepping this network is refused (ConcurrentUseError)
            if self._whole_step is not None:
                self.optimizer.step_count += 1
                self._whole_step(batch, lr)
            else:
                self._phases(batch, lr, rng)

    def _fits(self, batch) -> bool:
        """The fast test that `batch` has this step's shapes, dtype and layout (`check_batch` is the full one)."""
        try:
            X, Y = batch.X, batch.Y
            x_shape, y_shape, dtype = self._expected
            return (
                X.shape == x_shape
                and Y.shape == y_shape
                and X.dtype == dtype
                and Y.dtype == dtype
                and self._contiguous(X)
                and self._contiguous(Y)
                and type(batch) is Batch
            )
        except AttributeError:
            return False

    def _phases(self, batch, lr, rng) -> None:
        net, be, ws, state = self.net, self.net.backend, self.workspace, self.state.vector
        params = net.params
        be.begin_step(state)
        reduced = self.reducer is not None
        if self.m:
            # forward and cost; with a reducer D[L] = dZ[L] (sums), else (1/m)·dZ[L] (means)
            forward(net, batch, ws, dropout=self.dropout, rng=rng, with_grad=True, dZ_scale=1.0 if reduced else None)
            be.record_step(state, ws.cost, ws.A[net.num_layers], batch.Y if self.accuracy else None, net.output)
            backward(net, batch, ws)
        else:
            params.grad[...] = 0  # no examples here: this worker contributes zero
        if reduced:  # gradient ready: summed across workers, then the mean over the global batch
            self.reducer(params.grad, state)
            be.scale_gradient(params.grad, state)
        if self.l2:  # the penalty once, after any reduction
            add_l2_gradient(net, self.l2, float(state[STEP_EXAMPLES]) if reduced else self.m)
            be.add_l2_cost(state, params.W[1:], self.l2)
        be.guard_step(state, params.grad)
        self.optimizer.update(net, lr, state)
        be.commit_step(state)

    def read(self) -> StepTotals:
        """The totals of the steps since the last read (see `StepState.read`); raises DivergenceError."""
        return self.state.read()
