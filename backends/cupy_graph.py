"""The whole training step as a plan of launches, captured once in a CUDA graph and replayed (strategy "compiled").

The plan (`step_launches`) is plain Python: the ordered list of backend operations of one step, each naming the
buffers it uses. Forward, backward and the L2 gradient are traced from `dnn.propagation` itself (the code the
"phases" strategy runs), with the step-state operations and the update around them as `TrainStep._phases`
orders them. A `Capture` turns the plan, bound to its buffers, into something launched per step:
`CupyCapture` records it in a CUDA graph on a side stream; `HostCapture` keeps the bound calls and runs them,
which is how the same plan runs, and is tested, on the NumPy backend.

`CapturedStep` is the callable `Backend.compile_step` returns. Per call, with no host synchronisation:
1. the batch is copied into the step's own static inputs (device to device) unless it is them;
2. the learning rate, a float64 in device memory, is written (an async copy) only when it changed;
3. the step count (for an optimizer whose scalars read it: Adam), in device memory and advanced by a kernel predicated on the diverged flag, is written
   from the host only when the host's count moved under it (first call, another step or the phases strategy
   updated with the same optimizer, or the step state was read: after a read the host's count is exact);
4. the graph is recaptured when its O(1) fingerprint (pointers and shapes of θ, the gradient and the
   optimizer's state vectors) differs from the one it was captured on, so a stale graph never replays;
5. the graph is launched on the current stream.
Every buffer the graph touches is allocated before capture and referenced by the bound calls kept with it.
If capture fails, the step warns once and runs the same bound calls eagerly from then on.
"""

from __future__ import annotations

import warnings
from functools import partial
from types import SimpleNamespace
from typing import NamedTuple

import numpy

from ..kernels.step_state import NONFINITE
from ..optimizers import OPTIMIZERS, is_registered
from ..propagation import Batch, add_l2_gradient, backward, forward


class Ref(NamedTuple):
    """A buffer of the plan, by name (resolved when the plan is bound)."""

    name: str


class DeviceScalar(NamedTuple):
    """A (1,) float64 buffer of the plan that an update reads as a scalar: on the device where the backend can
    (a captured graph reads the current value), else read by the host each time the call runs."""

    name: str


class Launch(NamedTuple):
    """One backend operation of the step: `backend.<op>(*args, **kwargs)`, buffers given as Ref/DeviceScalar."""

    op: str
    args: tuple
    kwargs: dict

    def buffers(self) -> list[str]:
        """The names of the buffers this launch uses, in argument order."""
        found = []
        for value in (*self.args, *self.kwargs.values()):
            for item in value if isinstance(value, tuple) and not isinstance(value, (Ref, DeviceScalar)) else (value,):
                if isinstance(item, (Ref, DeviceScalar)):
                    found.append(item.name)
        return found


class StepStateReads:
    """Mixin for a backend whose steps keep Adam's count on the device: counts host reads of the step state.

    After a read the host's count of updates is exact (`dnn.step.StepState.read` corrects it after a diverged
    step), so a captured step rewrites its device count from the host when this number has moved.
    """

    step_state_reads = 0

    def read_step_state(self, state):
        self.step_state_reads += 1
        return super().read_step_state(state)


# ---------------------------------------------------------------------------------------------- the plan
class _Tracer:
    """Stands in for a backend: records each operation called on it as (op, args, kwargs), runs nothing."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, op):
        return lambda *args, **kwargs: self.calls.append((op, args, kwargs))


def plan_buffers(plan, inputs: Batch, optimizer_state: dict, lr, t) -> dict:
    """{name: array} of every buffer a step of `plan` touches: inputs, parameters, gradients, workspace, state."""
    p, ws, L = plan.params, plan.workspace, len(plan.layer_dims) - 1
    buffers = {
        "X": inputs.X,
        "Y": inputs.Y,
        "theta": p.theta,
        "grad": p.grad,
        "state": plan.state,
        "lr": lr,
        "t": t,
        "ZL": ws.ZL,
        "cost": ws.cost,
        **optimizer_state,
    }
    for l in range(1, L + 1):
        buffers.update(
            {f"W{l}": p.W[l], f"b{l}": p.b[l], f"dW{l}": p.dW[l], f"db{l}": p.db[l], f"A{l}": ws.A[l], f"D{l}": ws.D[l]}
        )
    return buffers


def step_launches(plan, optimizer, buffers: dict) -> list[Launch]:
    """The ordered launches of one step of `plan` (no dropout, no reducer) with `optimizer`, on `buffers`.

    The order is `TrainStep._phases`': begin_step, forward with the cost and dZ[L], record_step, backward,
    the L2 gradient and cost, guard_step, the update (predicated on the flag), commit_step.
    """
    L = len(plan.layer_dims) - 1
    names = {id(array): name for name, array in buffers.items()}
    tracer = _Tracer()
    net = SimpleNamespace(
        backend=tracer,
        params=plan.params,
        num_layers=L,
        activations=list(plan.activations),
        output=plan.output,
        dtype=plan.dtype,
    )
    batch = Batch(buffers["X"], buffers["Y"])
    forward(net, batch, plan.workspace, with_grad=True)
    propagation = tracer.calls[:]
    tracer.calls.clear()
    backward(net, batch, plan.workspace)
    if plan.l2:
        add_l2_gradient(net, plan.l2, plan.m)
    gradients = tracer.calls

    def launch(op, *args, **kwargs):
        return Launch(op, tuple(_as_ref(a, names) for a in args), {k: _as_ref(v, names) for k, v in kwargs.items()})

    state, W = Ref("state"), tuple(Ref(f"W{l}") for l in range(1, L + 1))
    launches = [launch("begin_step", state)]
    launches += [launch(op, *args, **kwargs) for op, args, kwargs in propagation]
    launches.append(launch("record_step", state, Ref("cost"), Ref(f"A{L}"), Ref("Y"), plan.output))
    launches += [launch(op, *args, **kwargs) for op, args, kwargs in gradients]
    if plan.l2:
        launches.append(launch("add_l2_cost", state, W, plan.l2))
    launches.append(launch("guard_step", state, Ref("grad")))
    launches += _update_launches(optimizer, launch, state)
    launches.append(launch("commit_step", state))
    return launches


def uncaptured_reason(optimizer) -> str | None:
    """Why a captured step cannot take `optimizer` (naming it), or None when it can: a captured step launches
    the generated kernel of any registered optimizer (`dnn.optimizers.OPTIMIZERS`), and no other."""
    if is_registered(optimizer.rule):
        return None
    captured = ", ".join(OPTIMIZERS)
    return f"a captured step has no update for optimizer {optimizer.name!r} (captured optimizers: {captured})"


def _update_launches(optimizer, launch, state) -> list[Launch]:
    """The optimizer's update, derived from its declaration: its slots are the plan buffers of those names; with
    a step count, t advances on the device first (unless the step diverged) and the update reads it there."""
    why = uncaptured_reason(optimizer)
    if why:
        raise ValueError(why)
    rule = optimizer.rule
    slots = tuple(Ref(slot) for slot in rule.slots)
    t = DeviceScalar("t") if rule.reads_step_count else 0
    update = launch(
        "optimizer_update",
        rule,
        Ref("theta"),
        Ref("grad"),
        slots,
        DeviceScalar("lr"),
        optimizer.config(),
        t,
        state=state,
    )
    return [launch("advance_step_count", Ref("t"), state), update] if rule.reads_step_count else [update]


def _as_ref(value, names: dict):
    """An argument with every array replaced by the Ref of the plan buffer it is; ValueError for an unknown array."""
    if isinstance(value, (list, tuple)) and not isinstance(value, (Ref, DeviceScalar)):
        return tuple(_as_ref(item, names) for item in value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        name = names.get(id(value))
        if name is None:
            raise ValueError(f"the step uses a {value.dtype} {tuple(value.shape)} buffer that is not one of the plan's")
        return Ref(name)
    return value


def advance_step_count(backend, t, state) -> None:
    """The plan's one operation that `Backend` lacks: t[0] += 1 unless the step diverged; the backend's own
    kernel where it has one (CupyBackend._advance_step_count), else on the host."""
    on_device = getattr(backend, "_advance_step_count", None)
    if on_device is not None:
        on_device(t, state)
    elif not state[NONFINITE]:
        t[0] += 1


#: The plan's operations that `Backend` does not define, by name: their host reference implementations.
PLAN_OPERATIONS = {"advance_step_count": advance_step_count}


def bind(backend, launches, buffers: dict, device_scalars: bool) -> list:
    """Zero-argument callables running `launches` on `backend` with `buffers` resolved now (as a graph records
    pointers); a DeviceScalar is the buffer itself with `device_scalars`, else read by the host at each run."""
    bound = []
    for launch in launches:
        method = getattr(backend, launch.op, None) or partial(PLAN_OPERATIONS[launch.op], backend)
        args = tuple(_resolve(a, buffers, device_scalars) for a in launch.args)
        kwargs = {k: _resolve(v, buffers, device_scalars) for k, v in launch.kwargs.items()}
        if any(isinstance(a, _HostRead) for a in (*args, *kwargs.values())):
            bound.append(partial(_call_with_host_reads, method, args, kwargs))
        else:
            bound.append(partial(method, *args, **kwargs))
    return bound


class _HostRead(NamedTuple):
    buffer: object


def _resolve(value, buffers, device_scalars):
    if isinstance(value, Ref):
        return buffers[value.name]
    if isinstance(value, DeviceScalar):
        return buffers[value.name] if device_scalars else _HostRead(buffers[value.name])
    if isinstance(value, tuple):
        return tuple(_resolve(item, buffers, device_scalars) for item in value)
    return value


def _call_with_host_reads(method, args, kwargs) -> None:
    def read(a):
        return float(a.buffer[0]) if isinstance(a, _HostRead) else a

    method(*map(read, args), **{k: read(v) for k, v in kwargs.items()})


def run_calls(calls) -> None:
    """Run bound calls in order: a plan executed operation by operation."""
    for call in calls:
        call()


# ---------------------------------------------------------------------------------------------- captures
class HostCapture:
    """A capture that keeps the bound calls and runs them in order: the plan on a host backend (NumPy)."""

    device_scalars = False

    def capture(self, calls):
        return tuple(calls)

    def launch(self, graph) -> None:
        run_calls(graph)

    def write_scalar(self, buffer, value: float) -> None:
        buffer[0] = value

    def pointer(self, array) -> int:
        return array.__array_interface__["data"][0]


class CupyCapture:
    """Records the bound calls in a CUDA graph on a side stream and launches it on the current stream.

    Before capture every kernel is compiled (`warmup`), and CuPy's allocator is swapped for one that refuses,
    so an operation that would allocate a temporary (memory the graph would not own) fails the capture
    instead of recording a pointer that a later allocation reuses.
    """

    device_scalars = True

    def __init__(self, backend):
        self.backend, self.cupy = backend, backend.xp
        self.stream = self.cupy.cuda.Stream(non_blocking=True)

    def capture(self, calls):
        cuda = self.cupy.cuda
        self.backend.warmup()  # no kernel is compiled or loaded while capturing
        allocator = cuda.get_allocator()
        cuda.set_allocator(_refuse_allocation)
        try:
            with self.stream:
                self.stream.begin_capture()
                try:
                    for call in calls:
                        call()
                except BaseException:
                    _end_failed_capture(self.stream)
                    raise
                graph = self.stream.end_capture()
        finally:
            cuda.set_allocator(allocator)
        return graph

    def launch(self, graph) -> None:
        graph.launch(stream=self.cupy.cuda.get_current_stream())

    def write_scalar(self, buffer, value: float) -> None:
        buffer.set(numpy.full((1,), value, numpy.float64), stream=self.cupy.cuda.get_current_stream())

    def pointer(self, array) -> int:
        return array.data.ptr


def _refuse_allocation(size):
    raise RuntimeError(
        f"an operation allocated {size} bytes during CUDA graph capture (a buffer the graph would not own)"
    )


def _end_failed_capture(stream) -> None:
    try:
        stream.end_capture()
    except Exception:  # the capture was invalidated by the failure being reported
        pass


# ---------------------------------------------------------------------------------------------- the step
def compile_captured_step(backend, plan, capture):
    """A `CapturedStep` for `plan` (see `Backend.compile_step`), or None when a captured step cannot take it.

    Not captured: other strategies, a gradient reducer (it needs the host between backward and the update),
    dropout (its masks come from the caller's generator each step: dropout steps run by phases, eagerly),
    dtypes other than float32/float64 and optimizers without a captured update: those are refused by name
    (ValueError) when the strategy was asked for, and left to the next strategy otherwise.
    """
    optimizer = plan.optimizer
    if (
        plan.strategy != "compiled"
        or plan.reduces
        or plan.dropout
        or numpy.dtype(plan.dtype) not in (numpy.float32, numpy.float64)
    ):
        return None
    why = uncaptured_reason(optimizer)
    if why and plan.requested:
        raise ValueError(f"strategy 'compiled' is not available: {why}")
    return None if why else CapturedStep(backend, plan, optimizer, capture)


class CapturedStep:
    """`run(batch, lr)`: one whole step of `plan`, replayed from a graph captured on the step's own buffers."""

    def __init__(self, backend, plan, optimizer, capture):
        self.backend, self.plan, self.optimizer, self.capture = backend, plan, optimizer, capture
        n_x, n_out = plan.layer_dims[0], plan.layer_dims[-1]
        self.inputs = Batch(backend.zeros((n_x, plan.m), plan.dtype), backend.zeros((n_out, plan.m), plan.dtype))
        self.lr, self.t = backend.zeros((1,), "float64"), backend.zeros((1,), "float64")
        self.graph = None
        self.fingerprint = None  # what `graph` was captured on
        self.eager = False  # capture failed: the bound calls run one by one
        self._lr_written = None
        self._count_expected = None  # (updates before the next call, step-state reads) that the device t matches

    def __call__(self, batch, lr) -> None:
        be, capture = self.backend, self.capture
        if batch.X is not self.inputs.X:
            be.copyto(self.inputs.X, batch.X)  # (n_x, m) device to device into the static input
        if batch.Y is not self.inputs.Y:
            be.copyto(self.inputs.Y, batch.Y)  # (n_L, m)
        if lr != self._lr_written:
            capture.write_scalar(self.lr, lr)
            self._lr_written = lr
        if self.optimizer.rule.reads_step_count:
            self._sync_step_count()
        fingerprint = self._current_fingerprint()
        if fingerprint != self.fingerprint:
            self._recapture(fingerprint)
        if self.eager:
            run_calls(self.graph)
        else:
            capture.launch(self.graph)

    def _sync_step_count(self) -> None:
        # TrainStep has counted this step already: the updates before it are step_count - 1
        before = self.optimizer.step_count - 1
        reads = getattr(self.backend, "step_state_reads", None)
        if self._count_expected != (before, reads):
            self.capture.write_scalar(self.t, before)
        self._count_expected = (before + 1, reads)

    def _current_fingerprint(self) -> tuple:
        """Pointers and shapes of the buffers that can be reallocated under a graph: θ, the gradient, the
        optimizer's state vectors (a resume, `set_parameters` on new storage, a first update)."""
        pointer, p = self.capture.pointer, self.plan.params
        arrays = [p.theta, p.grad] + [self.optimizer.state.get(slot) for slot in self.optimizer.slots]
        return tuple(None if a is None else (pointer(a), tuple(a.shape)) for a in arrays)

    def _recapture(self, fingerprint) -> None:
        self.graph = None  # the stale graph is dropped before anything else can run it
        optimizer_state = self._optimizer_state()
        buffers = plan_buffers(self.plan, self.inputs, optimizer_state, self.lr, self.t)
        calls = bind(
            self.backend, step_launches(self.plan, self.optimizer, buffers), buffers, self.capture.device_scalars
        )
        if not self.eager:
            try:
                self.graph = self.capture.capture(calls)
            except Exception as exc:
                warnings.warn(
                    f"CUDA graph capture of the training step failed ({type(exc).__name__}: {exc}); "
                    "this step runs its operations eagerly instead",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.eager = True
        if self.eager:
            self.graph = tuple(calls)
        self.fingerprint = self._current_fingerprint()

    def _optimizer_state(self) -> dict:
        """The optimizer's state vectors, allocated by the optimizer itself (as its first update would) before capture."""
        p = self.plan.params
        net = SimpleNamespace(backend=self.backend, dtype=self.plan.dtype, flat_buffers=lambda: (p.theta, p.grad))
        return {slot: self.optimizer.buffers(net, slot) for slot in self.optimizer.slots}
