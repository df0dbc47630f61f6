"""The array-backend interface.

`Backend` is written once against an array namespace `self.xp` (numpy or cupy); the NumPy backend is this
class with ``xp = numpy``. Faster backends subclass it and override only the operations they accelerate, so
every method here is both the interface and the reference implementation.

Conventions shared by every method:
- Examples are columns: activations are (n_l, m), weights (n_l, n_{l-1}), biases (n_l, 1).
- Results are written into caller-owned buffers (``out=`` and friends) so that a warmed-up training step
  allocates nothing on a backend that overrides these methods with fused kernels. Buffers may alias the
  inputs wherever a docstring says so (in-place use is how the network saves memory traffic).
- Scalars that a step produces (the cost, the correct count, the non-finite flag) are written into buffers
  on the backend (a (1,) cost, the step state laid out in `kernels/step_state.py`) instead of being
  returned, so a device backend never has to synchronise inside a step: the host reads the step state when
  it logs.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ..activations import activation as activation_declared
from ..expressions import stable_sigmoid
from ..optimizers import SGD
from ..kernels.step_state import (
    FINITE_STEPS,
    NONFINITE,
    STATE_SIZE,
    STEP_CORRECT,
    STEP_COST,
    STEP_EXAMPLES,
    TOTAL_COST,
    TOTAL_EXAMPLES,
)

#: Output layers every backend implements, each paired with its cross-entropy cost.
OUTPUTS = ("sigmoid", "softmax")


def check_output(name: str) -> None:
    if name not in OUTPUTS:
        raise ValueError(f"unknown output layer {name!r}; valid output layers: {', '.join(OUTPUTS)}")


def host_available_memory() -> int | None:
    """Bytes of host memory available to a new allocation, or None where the system does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass  # no /proc (macOS, some sandboxes): ask sysconf instead
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # a name this platform lacks, or no os.sysconf (Windows)
        return None


class Backend:
    """Array operations the propagation code needs, implemented with the array namespace ``xp``.

    Subclasses set ``name`` and ``xp`` and may override any method with a faster one that computes the
    same values. ``unavailable_reason()`` says why a backend cannot run on this machine (None when it can).

    Threads: a backend keeps no state between calls, so threads may call one backend instance at once on
    arrays of their own (two networks trained in two threads). Arrays are not locked: two threads writing the
    same buffers compute garbage, which is why a `Network` refuses a call from a second thread while one runs.
    """

    name: str = "base"
    xp: Any = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run here, or None when it can."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # ------------------------------------------------------------------ arrays and transfers
    def native_dtype(self, dtype):
        """The backend's own dtype for `dtype` (a name such as "float32", or a NumPy dtype)."""
        import numpy

        return numpy.dtype(dtype)

    def host_dtype(self, a):
        """The NumPy dtype of backend array `a` (what a host copy of it would have)."""
        return a.dtype

    def is_array(self, a) -> bool:
        """True when `a` is one of this backend's arrays."""
        return isinstance(a, self.xp.ndarray)

    def asarray(self, a, dtype=None):
        """`a` (host or backend array, nested lists) as a backend array of `dtype`; no copy when it already is one."""
        return self.xp.asarray(a, dtype=None if dtype is None else self.native_dtype(dtype))

    def to_numpy(self, a):
        """A host NumPy array holding the values of backend array `a`."""
        import numpy

        return numpy.asarray(a)

    def empty(self, shape, dtype):
        """An uninitialised backend array."""
        return self.xp.empty(shape, dtype=self.native_dtype(dtype))

    def zeros(self, shape, dtype):
        """A backend array of zeros."""
        return self.xp.zeros(shape, dtype=self.native_dtype(dtype))

    def reshape(self, a, shape):
        """`a` seen with `shape`: a view when `a` is contiguous (writing one writes the other), as the parameter
        vector's per-layer views need."""
        return a.reshape(shape)

    def copyto(self, dst, src) -> None:
        """dst[...] = src (same shape; dtypes may differ; `src` may be a host NumPy array)."""
        self.xp.copyto(dst, src, casting="same_kind")

    def is_contiguous(self, a) -> bool:
        """True when backend array `a` is laid out in C order (what a `Batch`'s arrays must be)."""
        return a.flags.c_contiguous

    def contiguous(self, a):
        """`a` itself when it is a C-contiguous, aligned, writeable array, else a copy that is.

        Results must not depend on how a caller's array is laid out: kernels and BLAS take other paths (and
        round differently) on strided or misaligned memory, so inputs are made contiguous where they enter.
        """
        flags = a.flags
        if flags.c_contiguous and getattr(flags, "aligned", True) and getattr(flags, "writeable", True):
            return a
        out = self.xp.empty(a.shape, dtype=a.dtype)
        self.xp.copyto(out, a)
        return out

    def take_columns(self, a, index, out) -> None:
        """out = a[:, index]: gathers the examples of a mini-batch into a reused buffer."""
        self.xp.take(a, index, axis=1, out=out)

    def synchronize(self) -> None:
        """Wait until queued work is finished (a no-op on the CPU)."""

    def available_memory(self) -> int | None:
        """Bytes this backend's arrays may still take (None: unknown, so nothing is refused).

        The host's: MemAvailable from /proc/meminfo (free memory plus what the kernel can reclaim), else
        free physical pages from os.sysconf. A device backend overrides it with its device's free memory.
        """
        return host_available_memory()

    def random_generator(self, seed):
        """A random generator living on the backend (used for dropout masks)."""
        return self.xp.random.default_rng(seed)

    # ------------------------------------------------------------------ linear algebra
    def gemm(
        self, a, b, out, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0
    ) -> None:
        """out ← alpha · op(a) · op(b) + beta · out, where op transposes when its flag is set.

        With beta = 0 the old contents of `out` are ignored (NaN included), as in BLAS. `out` must not alias a or b.
        """
        xp = self.xp
        op_a, op_b = (a.T if trans_a else a), (b.T if trans_b else b)
        if beta == 0.0:
            xp.matmul(op_a, op_b, out=out)
            if alpha != 1.0:
                xp.multiply(out, alpha, out=out)
            return
        product = xp.matmul(op_a, op_b)
        if beta != 1.0:
            xp.multiply(out, beta, out=out)
        out += xp.asarray(alpha, dtype=out.dtype) * product

    def matmul_into(self, a, b, out) -> None:
        """out ← a·b with the array library's own product (the GEMM floor of `dnn.perf`, whatever `gemm` is)."""
        self.xp.matmul(a, b, out=out)

    # ------------------------------------------------------------------ forward
    def bias_activation_forward(self, Z, b, activation: str, out) -> None:
        """Z ← Z + b in place, then out ← g(Z).  Z, out: (n, m); b: (n, 1). `out` may be Z itself."""
        Z += b  # (n, m) + (n, 1) broadcast over examples
        self.activation_forward(Z, activation, out)

    def activation_writers(self, activation: str):
        """The declared activation's array functions (`dnn.activations.ArrayWriters`), writing with ``out=``."""
        return activation_declared(activation).writers

    def activation_forward(self, Z, activation: str, out) -> None:
        """out ← g(Z) elementwise, g as `dnn/activations.py` declares it.  `out` may be Z itself."""
        self.activation_writers(activation).forward(self.xp, out, Z)

    # ------------------------------------------------------------------ backward
    def activation_backward(self, dA, activation: str, out, *, A=None, Z=None, db=None, db_scale: float = 1.0) -> None:
        """out ← dA * g'(·), and, when `db` is given, db ← db_scale · Σ_columns out.

        g' is the declared derivative (`dnn/activations.py`), evaluated from the layer's output `A` when given
        (sigmoid' = A(1-A), tanh' = 1-A², relu' from the sign of A: no exp), else from its pre-activation `Z`.
        An activation whose g' is constant (linear) needs neither. `out` may be dA.
        dA, A, Z, out: (n, m); db: (n, 1).
        """
        writers = self.activation_writers(activation)
        if A is not None:
            writers.backward(self.xp, out, dA, A)
        elif Z is not None:
            writers.backward_from_z(self.xp, out, dA, Z)
        elif activation_declared(activation).uses_output():
            raise ValueError(f"activation_backward({activation!r}) needs the layer's output A or pre-activation Z")
        else:
            writers.backward(self.xp, out, dA, dA)  # g' reads neither
        if db is not None:
            self.bias_grad(out, db, db_scale)

    def bias_grad(self, dZ, out, scale: float) -> None:
        """out ← scale · Σ_columns dZ.  dZ: (n, m); out: (n, 1)."""
        xp = self.xp
        xp.sum(dZ, axis=1, keepdims=True, out=out)
        if scale != 1.0:
            xp.multiply(out, scale, out=out)

    # ------------------------------------------------------------------ output layer and cost
    def output_layer(self, Z, b, output: str, A, Y=None, dZ=None, cost=None, dZ_scale: float = 1.0) -> None:
        """The last layer, its cost and its gradient in one call.

        Z ← Z + b in place (the logits are kept for the cost); A ← sigmoid(Z) or column-wise softmax(Z).
        When `cost` (a (1,) buffer) is given: cost[0] ← mean over examples of the cross-entropy of A against
        Y, computed stably from the logits. When `dZ` is given: dZ ← dZ_scale · (A - Y), the gradient of
        the summed cross-entropy with respect to Z, scaled (a caller passing 1/m gets the mean's gradient, so
        that no later GEMM or reduction needs the 1/m). Z, A, Y, dZ: (n_L, m); b: (n_L, 1).
        """
        xp = self.xp
        xp.add(Z, b, out=Z)  # (n_L, m) logits
        if output == "sigmoid":
            xp.copyto(A, stable_sigmoid(xp, Z))
        elif output == "softmax":
            shifted = Z - Z.max(axis=0, keepdims=True)  # (n_L, m), each column's max at 0
            xp.exp(shifted, out=A)
            xp.divide(A, A.sum(axis=0, keepdims=True), out=A)
        else:
            check_output(output)
        if cost is not None:
            m = Z.shape[1]
            if output == "sigmoid":
                # y·(-log σ(z)) + (1-y)·(-log(1-σ(z))) = max(z,0) - z·y + log1p(exp(-|z|))
                per_elem = xp.maximum(Z, 0) - Z * Y + xp.log1p(xp.exp(-xp.abs(Z)))
            else:
                # lse - z = (max - z) + log1p(Σ_{k≠argmax} exp(z_k - max)): for a confident column the cost is
                # tiny, and log of a sum that includes the top term's exact 1 would lose its digits.
                others = xp.exp(shifted)  # (C, m)
                others[xp.argmax(Z, axis=0), xp.arange(m)] = 0  # drop each column's top term (one, even on ties)
                per_elem = Y * (-shifted + xp.log1p(others.sum(axis=0, keepdims=True)))  # (C, m)
            cost[0] = per_elem.sum() / m
        if dZ is not None:
            xp.subtract(A, Y, out=dZ)
            if dZ_scale != 1.0:
                xp.multiply(dZ, dZ_scale, out=dZ)

    def cost_from_probabilities(self, AL, Y, output: str) -> float:
        """The course's cross-entropy computed from probabilities AL (not logits), as a host float.

        sigmoid: -(1/m) Σ (Y log AL + (1-Y) log(1-AL)); softmax: -(1/m) Σ Y log AL.
        """
        xp = self.xp
        m = AL.shape[1]
        if output == "sigmoid":
            total = (Y * xp.log(AL) + (1 - Y) * xp.log(1 - AL)).sum()
        else:
            check_output(output)
            total = (Y * xp.log(AL)).sum()
        return float(-total / m)

    def sigmoid_cross_entropy_grad(self, AL, Y, out) -> None:
        """out ← dL/dAL = -(Y/AL) + (1-Y)/(1-AL), the course's start of backpropagation."""
        xp = self.xp
        xp.copyto(out, -(Y / AL) + (1 - Y) / (1 - AL))

    def sum_of_squares(self, a) -> float:
        """Σ a², as a host float (the L2 penalty)."""
        return float((a * a).sum())

    # ------------------------------------------------------------------ parameter updates (in place)
    def axpy(self, alpha: float, x, y) -> None:
        """y ← y + alpha · x (adds the L2 term (λ/m)·W to dW)."""
        xp = self.xp
        y += xp.asarray(alpha, dtype=y.dtype) * x

    def optimizer_update(self, rule, param, grad, slots, lr, hyperparameters: dict, t, state=None) -> None:
        """One step of the optimizer declared by `rule` (a `dnn.optimizers.UpdateRule`), in place.

        param, grad and each of `slots` (the rule's state vectors, in `rule.slots` order) are (P,) arrays of one
        dtype; lr, the hyperparameters and the rule's scalars at step `t` are formed in double and cast to that
        dtype (as `asarray(x, dtype)` rounds), then the rule's statements run in the order declared. Nothing
        moves when the step `state` (if given) has its NONFINITE flag set.
        """
        if self._update_blocked(state):
            return
        # operands that do not change with t are cast once and kept (`cast_operands`); Adam's change every step
        if rule.reads_step_count:
            operands = cast_operands.__wrapped__(rule, self.xp, param.dtype, tuple(hyperparameters.values()), lr, t)
        else:
            operands = cast_operands(rule, self.xp, param.dtype, tuple(hyperparameters.values()), lr, 0)
        rule.array_update(self.xp, param, grad, *slots, *operands)

    def sgd_update(self, param, grad, lr: float, state=None) -> None:
        """param ← param - lr · grad (`dnn.optimizers.SGD`'s update); nothing when `state`'s NONFINITE is set."""
        self.optimizer_update(SGD.rule, param, grad, (), lr, {}, 0, state=state)

    def _update_blocked(self, state) -> bool:
        # the host reads the flag here; a device backend overrides the updates to read it on the device
        return state is not None and bool(state[NONFINITE])

    # ------------------------------------------------------------------ the step state (see STATE_SIZE)
    def new_step_state(self):
        """A zeroed (STATE_SIZE,) float64 step state on the backend."""
        return self.zeros((STATE_SIZE,), "float64")

    def begin_step(self, state) -> None:
        """Zero the slots of the step in progress (STEP_COST, STEP_CORRECT, STEP_EXAMPLES)."""
        state[STEP_COST : STEP_EXAMPLES + 1] = 0

    def record_step(self, state, cost, A, Y, output: str) -> None:
        """Add the (1,) mean `cost` × m to STEP_COST, count the correct predictions of A against Y, set m.

        A, Y: (n_L, m) output probabilities and labels; Y None skips the count (STEP_CORRECT 0). A sigmoid
        output with several units counts the fraction of its units predicted correctly per example, as
        `Network.evaluate`'s accuracy does.
        """
        xp, (n, m) = self.xp, A.shape
        if Y is None:
            correct = 0
        elif output == "sigmoid":
            correct = xp.count_nonzero((A > 0.5) == Y) / n  # the course's rule: class 1 where A > 0.5
        else:
            check_output(output)
            correct = xp.count_nonzero(xp.argmax(A, axis=0) == xp.argmax(Y, axis=0))  # Y one-hot
        state[STEP_COST] += cost[0].astype(state.dtype) * m  # in float64: cost·m is exact
        state[STEP_CORRECT] = correct
        state[STEP_EXAMPLES] = m

    def add_l2_cost(self, state, weights, l2: float) -> None:
        """STEP_COST += (λ/2)·Σ‖W‖² over `weights`, so that STEP_COST / m carries the penalty (λ/2m)·Σ‖W‖²."""
        state[STEP_COST] += l2 / 2 * sum(self.sum_of_squares(W) for W in weights)

    def scale_gradient(self, grad, state) -> None:
        """grad ← grad / STEP_EXAMPLES: a summed gradient (after a reduction across workers) made a mean."""
        grad *= self.xp.asarray(1.0 / float(state[STEP_EXAMPLES]), dtype=grad.dtype)

    def guard_step(self, state, grad=None) -> None:
        """Set NONFINITE (it stays set) when STEP_COST, or any element of `grad` when given, is not finite."""
        if not self.xp.isfinite(state[STEP_COST]) or (grad is not None and not self.all_finite(grad)):
            state[NONFINITE] = 1

    def commit_step(self, state) -> None:
        """Unless NONFINITE is set: add the step's slots into the totals and count the step."""
        if not state[NONFINITE]:
            state[TOTAL_COST : TOTAL_EXAMPLES + 1] += state[STEP_COST : STEP_EXAMPLES + 1]
            state[FINITE_STEPS] += 1

    def read_step_state(self, state):
        """A host float64 copy of the step state, then the state zeroed (flag included): one read, one sync."""
        import numpy

        host = numpy.array(self.to_numpy(state), dtype=numpy.float64)
        state[...] = 0
        return host

    # ------------------------------------------------------------------ whole steps
    def compile_step(self, plan):
        """A callable `run(batch, lr)` that takes a whole training step as `plan.strategy` describes, or None.

        `plan` is a `dnn.step.StepPlan`: the network's architecture, batch size, optimizer, L2, dropout, whether
        a gradient reducer runs, its parameter vectors and views, the workspace and the step state. The callable
        does everything the phases of `dnn.step.TrainStep` do, `begin_step` to `commit_step` included: forward,
        the cost and correct count into the step state (with the L2 penalty), backward and, unless NONFINITE is
        set or it finds a non-finite cost or gradient (then it sets NONFINITE and moves nothing), the update.
        It reads nothing back to the host. The default takes no step this way.
        """
        return None

    # ------------------------------------------------------------------ dropout
    def dropout_mask(self, rng, keep_prob: float, out) -> None:
        """out ← (u < keep_prob) / keep_prob with u uniform on [0, 1) from `rng` (inverted dropout's mask)."""
        xp = self.xp
        u = rng.random(out.shape, dtype=out.dtype)
        xp.copyto(out, (u < keep_prob) * (1.0 / keep_prob), casting="unsafe")

    def multiply(self, a, b, out) -> None:
        """out ← a * b elementwise (applies a dropout mask); `out` may alias a or b."""
        self.xp.multiply(a, b, out=out)

    def subtract(self, a, b, out) -> None:
        """out ← a - b elementwise; `out` may alias a or b."""
        self.xp.subtract(a, b, out=out)

    # ------------------------------------------------------------------ checks and summaries
    def all_finite(self, a) -> bool:
        """True when `a` holds no NaN or infinity."""
        return bool(self.xp.isfinite(a).all())

    def is_binary(self, a) -> bool:
        """True when every value of `a` is exactly 0 or 1."""
        return bool(((a == 0) | (a == 1)).all())

    def columns_sum_to_one(self, a) -> bool:
        """True when every column of `a` sums to 1 (a one-hot label matrix)."""
        return bool((a.sum(axis=0) == 1).all())

    def predict_classes(self, A, output: str):
        """Class predictions from output probabilities, as a (1, m) backend array.

        sigmoid: 1.0 where A > 0.5 else 0.0 (the course's rule); softmax: the row index of each column's max.
        """
        xp = self.xp
        if output == "sigmoid":
            return (A > 0.5).astype(A.dtype)
        check_output(output)
        return xp.argmax(A, axis=0)[None, :]


@functools.lru_cache(maxsize=64)
def cast_operands(rule, xp, dtype, hyperparameter_values: tuple, lr: float, t: int) -> tuple:
    """`rule`'s operands at step t as 0-d arrays of `dtype` (rounded as ``asarray(x, dtype)`` rounds), the same
    arrays for the same values: SGD's and momentum's operands change only with the learning rate, so the Python
    that forms and casts them runs once, not at every mini-batch. They are only read: updates multiply by them."""
    hyperparameters = dict(zip(rule.hyperparameters, hyperparameter_values))
    return tuple(xp.asarray(value, dtype=dtype) for value in rule.operand_values(hyperparameters, lr, t))
