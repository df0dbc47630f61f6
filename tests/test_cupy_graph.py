"""Without a GPU: the captured step's plan, run on the NumPy backend, is the "phases" step.

The CUDA-graph step (`backends/cupy_graph.py`) is a plan of launches bound to its buffers when captured, as a
graph records pointers. Here `HostCapture` stands in for the CUDA graph: it keeps the bound calls and runs
them, so a graph that replayed on stale buffers would update arrays the network no longer uses and the
results would leave those of `TrainStep(strategy="phases")`, which runs on the live buffers.
"""

import warnings

import numpy as np
import pytest

from dnn import Network
from dnn.backends.cupy_backend import CupyBackend
from dnn.backends.cupy_graph import (
    DeviceScalar,
    HostCapture,
    Ref,
    StepStateReads,
    bind,
    compile_captured_step,
    plan_buffers,
    step_launches,
)
from dnn.backends.numpy_backend import NumpyBackend
from dnn.errors import DivergenceError
from dnn.optimizers import OPTIMIZERS, Optimizer, UpdateRule, make_optimizer
from dnn.step import TrainStep
from dnn.tolerances import gradient_rtol, relative_difference

from test_cupy_launches import RecordingKernels

CAPTURED = list(OPTIMIZERS)
DTYPES = ["float32", "float64"]
OUTPUTS = [("sigmoid", 1), ("softmax", 3)]


class CountingCapture(HostCapture):
    """HostCapture that counts captures and remembers which graph each launch ran."""

    def __init__(self):
        self.captured, self.launched = [], []

    def capture(self, calls):
        graph = super().capture(calls)
        self.captured.append(graph)
        return graph

    def launch(self, graph):
        self.launched.append(graph)
        super().launch(graph)


class FailingCapture(HostCapture):
    def capture(self, calls):
        raise RuntimeError("operation not permitted when stream is capturing")


class PlannedNumpy(StepStateReads, NumpyBackend):
    """The NumPy backend answering compile_step("compiled") with the captured step's plan on `capture`."""

    def __init__(self, capture=None):
        self.capture = capture or CountingCapture()

    def compile_step(self, plan):
        return compile_captured_step(self, plan, self.capture)


def _pair(output, units, dtype, capture=None, dims=(6, 5, 4)):
    """(network on the planned backend, the same network on NumPy), same seed."""
    layers = [*dims, units]
    planned = Network(
        layers, activations=["relu", "tanh"][: len(dims) - 1], output=output, dtype=dtype, backend=PlannedNumpy(capture)
    )
    reference = Network(
        layers, activations=["relu", "tanh"][: len(dims) - 1], output=output, dtype=dtype, backend="numpy"
    )
    return planned, reference


def _batches(net, m, count, seed=0):
    rng = np.random.default_rng(seed)
    n_x, units = net.layer_dims[0], net.layer_dims[-1]
    batches = []
    for _ in range(count):
        X = rng.standard_normal((n_x, m))
        Y = rng.integers(0, 2, (1, m)) if units == 1 else rng.integers(0, units, m)
        batches.append((X, Y))
    return batches


def _assert_same(planned, reference, opt_planned, opt_reference, dtype):
    rtol = gradient_rtol(dtype)
    for name, value in reference.get_parameters().items():
        difference = relative_difference(planned.get_parameters()[name], value)
        assert difference <= rtol, f"{name}: relative difference {difference:.3g} > {rtol:g}"
    for key, value in opt_reference.state_dict(reference).items():
        difference = relative_difference(opt_planned.state_dict(planned)[key], value)
        assert difference <= rtol, f"optimizer {key}: relative difference {difference:.3g} > {rtol:g}"


def _assert_same_totals(totals, expected, dtype):
    assert (
        totals.steps == expected.steps and totals.examples == expected.examples and totals.correct == expected.correct
    )
    assert relative_difference(totals.cost_sum, expected.cost_sum) <= gradient_rtol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output,units", OUTPUTS)
@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("optimizer", CAPTURED)
def test_the_plan_takes_the_phases_step(optimizer, l2, output, units, dtype):
    planned, reference = _pair(output, units, dtype)
    opt_p, opt_r = make_optimizer(optimizer), make_optimizer(optimizer)
    step = TrainStep(planned, 8, opt_p, l2=l2, strategy="compiled")
    expected_step = TrainStep(reference, 8, opt_r, l2=l2, strategy="phases")
    lrs = [0.1, 0.1, 0.05, 0.05, 0.2, 0.2]  # lr is written to the device only when it changes
    for k, (X, Y) in enumerate(_batches(planned, 8, len(lrs))):
        step(planned.batch(X, Y), lrs[k])
        expected_step(reference.batch(X, Y), lrs[k])
        if k % 2:
            _assert_same_totals(step.read(), expected_step.read(), dtype)
    _assert_same(planned, reference, opt_p, opt_r, dtype)
    assert opt_p.step_count == opt_r.step_count == len(lrs)
    assert len(planned.backend.capture.captured) == 1  # one graph served every step


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", CAPTURED)
def test_after_a_non_finite_step_nothing_moves_until_the_read(optimizer, dtype):
    planned, reference = _pair("sigmoid", 1, dtype)
    opt_p, opt_r = make_optimizer(optimizer), make_optimizer(optimizer)
    step = TrainStep(planned, 8, opt_p, l2=0.1, strategy="compiled")
    expected_step = TrainStep(reference, 8, opt_r, l2=0.1, strategy="phases")
    batches = [(planned.batch(X, Y), reference.batch(X, Y)) for X, Y in _batches(planned, 8, 7)]
    for b_p, b_r in batches[:2]:
        step(b_p, 0.1)
        expected_step(b_r, 0.1)
    kept = planned.params.W[1][0, 0].copy()
    planned.params.W[1][0, 0] = reference.params.W[1][0, 0] = np.inf  # the next step's cost is not finite
    before = planned.get_parameters()
    for b_p, b_r in batches[2:4]:
        step(b_p, 0.1)
        expected_step(b_r, 0.1)
    after = planned.get_parameters()
    assert all(np.array_equal(after[k], before[k]) for k in before)  # the sticky flag held every update
    with pytest.raises(DivergenceError) as error:
        step.read()
    with pytest.raises(DivergenceError) as expected_error:
        expected_step.read()
    assert error.value.step == expected_error.value.step == 3
    assert opt_p.step_count == opt_r.step_count == 2  # the skipped updates never happened (Adam's t too)
    planned.params.W[1][0, 0] = reference.params.W[1][0, 0] = kept
    for b_p, b_r in batches[4:]:
        step(b_p, 0.1)
        expected_step(b_r, 0.1)
    _assert_same_totals(step.read(), expected_step.read(), dtype)
    _assert_same(planned, reference, opt_p, opt_r, dtype)


@pytest.mark.parametrize("optimizer", [name for name, cls in OPTIMIZERS.items() if cls.slots])
def test_a_resume_recaptures_and_a_stale_graph_never_replays(optimizer):
    """load_state_dict reallocates the optimizer's vectors: the graph bound to the old ones must not run again."""
    planned, reference = _pair("sigmoid", 1, "float64")
    capture = planned.backend.capture
    opt_p, opt_r = make_optimizer(optimizer), make_optimizer(optimizer)
    step = TrainStep(planned, 8, opt_p, strategy="compiled")
    expected_step = TrainStep(reference, 8, opt_r, strategy="phases")
    batches = [(planned.batch(X, Y), reference.batch(X, Y)) for X, Y in _batches(planned, 8, 6)]
    for b_p, b_r in batches[:3]:
        step(b_p, 0.05)
        expected_step(b_r, 0.05)
    step.read(), expected_step.read()
    saved = opt_r.state_dict(reference)
    opt_p.load_state_dict(planned, saved)  # a resume: new state vectors with the same values
    opt_r.load_state_dict(reference, saved)
    stale = capture.captured[0]
    for b_p, b_r in batches[3:]:
        step(b_p, 0.05)
        expected_step(b_r, 0.05)
    assert len(capture.captured) == 2
    assert capture.launched.count(stale) == 3  # only before the resume
    _assert_same(planned, reference, opt_p, opt_r, "float64")


def test_set_parameters_and_an_evicted_workspace_keep_the_graph_valid():
    """set_parameters copies into θ (the graph reads the new values); the graph keeps its workspace alive."""
    planned, reference = _pair("softmax", 3, "float32")
    opt_p, opt_r = make_optimizer("sgd"), make_optimizer("sgd")
    step = TrainStep(planned, 8, opt_p, strategy="compiled")
    expected_step = TrainStep(reference, 8, opt_r, strategy="phases")
    batches = [(planned.batch(X, Y), reference.batch(X, Y)) for X, Y in _batches(planned, 8, 4)]
    step(batches[0][0], 0.1)
    expected_step(batches[0][1], 0.1)
    fresh = Network(planned.layer_dims, activations=planned.activations, output="softmax", dtype="float32", seed=7)
    planned.set_parameters(fresh.get_parameters())
    reference.set_parameters(fresh.get_parameters())
    for m in (1, 2, 3, 4, 5):  # more batch sizes than the network keeps workspaces for: m = 8's is evicted
        planned.evaluate(*_batches(planned, m, 1)[0])
    assert 8 not in planned._workspaces
    for b_p, b_r in batches[1:]:
        step(b_p, 0.1)
        expected_step(b_r, 0.1)
    assert len(planned.backend.capture.captured) == 1
    _assert_same(planned, reference, opt_p, opt_r, "float32")


def test_steps_of_two_batch_sizes_share_the_optimizer_and_the_state():
    """The last short batch of an epoch gets its own graph; Adam's count stays right across both."""
    planned, reference = _pair("sigmoid", 1, "float32")
    opt_p, opt_r = make_optimizer("adam"), make_optimizer("adam")
    full, short = TrainStep(planned, 8, opt_p, strategy="compiled"), None
    short = TrainStep(planned, 3, opt_p, state=full.state, strategy="compiled")
    expected_full = TrainStep(reference, 8, opt_r, strategy="phases")
    expected_short = TrainStep(reference, 3, opt_r, state=expected_full.state, strategy="phases")
    for epoch in range(3):
        for (X, Y), (Xs, Ys) in zip(_batches(planned, 8, 2, seed=epoch), _batches(planned, 3, 1, seed=epoch)):
            full(planned.batch(X, Y), 0.01)
            expected_full(reference.batch(X, Y), 0.01)
            short(planned.batch(Xs, Ys), 0.01)
            expected_short(reference.batch(Xs, Ys), 0.01)
        _assert_same_totals(full.read(), expected_full.read(), "float32")
    assert len(planned.backend.capture.captured) == 2
    _assert_same(planned, reference, opt_p, opt_r, "float32")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_adams_count_on_the_device_follows_a_read_after_a_divergence():
    """A read lowers the host's count by the skipped steps, another step raises it back: the device count is
    rewritten after every read, not only when the host's count looks unexpected."""
    planned, reference = _pair("sigmoid", 1, "float64")
    opt_p, opt_r = make_optimizer("adam"), make_optimizer("adam")
    full = TrainStep(planned, 8, opt_p, strategy="compiled")
    short = TrainStep(planned, 3, opt_p, state=full.state, strategy="compiled")
    expected_full = TrainStep(reference, 8, opt_r, strategy="phases")
    expected_short = TrainStep(reference, 3, opt_r, state=expected_full.state, strategy="phases")
    (X, Y), (Xs, Ys) = _batches(planned, 8, 1)[0], _batches(planned, 3, 1)[0]
    b_p, b_r, s_p, s_r = planned.batch(X, Y), reference.batch(X, Y), planned.batch(Xs, Ys), reference.batch(Xs, Ys)
    for _ in range(2):
        full(b_p, 0.01)
        expected_full(b_r, 0.01)
    kept = planned.params.b[1][0, 0].copy()
    planned.params.b[1][0, 0] = reference.params.b[1][0, 0] = np.nan
    full(b_p, 0.01)
    expected_full(b_r, 0.01)
    for step in (full, expected_full):
        with pytest.raises(DivergenceError):
            step.read()
    planned.params.b[1][0, 0] = reference.params.b[1][0, 0] = kept
    short(s_p, 0.01)  # the host's count is back where the full step last saw it
    expected_short(s_r, 0.01)
    full(b_p, 0.01)
    expected_full(b_r, 0.01)
    _assert_same(planned, reference, opt_p, opt_r, "float64")


def test_a_failed_capture_warns_once_and_runs_the_step_eagerly():
    planned, reference = _pair("sigmoid", 1, "float64", capture=FailingCapture())
    opt_p, opt_r = make_optimizer("momentum"), make_optimizer("momentum")
    step = TrainStep(planned, 8, opt_p, l2=0.2, strategy="compiled")
    expected_step = TrainStep(reference, 8, opt_r, l2=0.2, strategy="phases")
    batches = _batches(planned, 8, 3)
    with pytest.warns(RuntimeWarning, match="capture of the training step failed .*runs its operations eagerly"):
        step(planned.batch(*batches[0]), 0.1)
    expected_step(reference.batch(*batches[0]), 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        for X, Y in batches[1:]:
            step(planned.batch(X, Y), 0.1)
            expected_step(reference.batch(X, Y), 0.1)
    _assert_same_totals(step.read(), expected_step.read(), "float64")
    _assert_same(planned, reference, opt_p, opt_r, "float64")


@pytest.mark.parametrize("settings", [{"dropout": 0.2}, {"reducer": lambda grad, state: None}])
def test_dropout_and_reducer_steps_are_not_captured(settings):
    planned, _ = _pair("sigmoid", 1, "float32")
    step = TrainStep(planned, 8, "sgd", **settings)
    assert step.strategy == "phases"
    assert planned.backend.capture.captured == []


# ---------------------------------------------------------------------------------------------- the plan itself
def _plan_of(optimizer="adam", l2=0.5):
    planned, _ = _pair("softmax", 3, "float32")
    step = TrainStep(planned, 8, optimizer, l2=l2, strategy="compiled")
    captured = step._whole_step
    buffers = plan_buffers(captured.plan, captured.inputs, captured._optimizer_state(), captured.lr, captured.t)
    return captured, buffers, step_launches(captured.plan, step.optimizer, buffers)


def test_the_plan_is_the_phases_order_on_named_buffers():
    _, buffers, launches = _plan_of()
    ops = [launch.op for launch in launches]
    assert ops[0] == "begin_step" and ops[-1] == "commit_step"
    assert ops.index("output_layer") < ops.index("record_step") < ops.index("bias_grad")
    assert ops[-5:] == ["add_l2_cost", "guard_step", "advance_step_count", "optimizer_update", "commit_step"]
    assert ops.count("gemm") == 3 + 2 + 3  # forward, dA through two layers, dW
    assert ops.count("axpy") == 3  # the L2 gradient, once per layer
    for launch in launches:
        assert set(launch.buffers()) <= set(buffers), launch
    adam = launches[-2]
    assert (
        adam.args[4] == DeviceScalar("lr")
        and adam.args[6] == DeviceScalar("t")
        and adam.kwargs["state"] == Ref("state")
    )


class Unregistered(Optimizer):
    """An optimizer declared but not registered: no captured step implements it."""

    rule = UpdateRule("unregistered", hyperparameters={}, slots=(), scalars={}, update=("param = param - lr * grad",))


@pytest.mark.parametrize("optimizer", [*OPTIMIZERS, Unregistered()], ids=str)
def test_every_optimizer_is_captured_or_refused_by_name(optimizer):
    planned, _ = _pair("sigmoid", 1, "float32")
    name = getattr(optimizer, "name", optimizer)
    if name in OPTIMIZERS:
        assert TrainStep(planned, 8, optimizer, strategy="compiled").strategy == "compiled"
        return
    with pytest.raises(ValueError, match=f"strategy 'compiled' is not available: .*no update for optimizer '{name}'"):
        TrainStep(planned, 8, optimizer, strategy="compiled")
    assert TrainStep(planned, 8, optimizer).strategy == "phases"  # not asked for: the next strategy takes it


def test_a_plan_refuses_an_optimizer_without_a_captured_update_by_name():
    captured, buffers, _ = _plan_of("sgd")
    with pytest.raises(ValueError, match="no update for optimizer 'unregistered'"):
        step_launches(captured.plan, Unregistered(), buffers)  # never another optimizer's update in its place


def test_a_plan_refuses_a_buffer_it_does_not_own():
    captured, buffers, _ = _plan_of()
    del buffers["A1"]
    with pytest.raises(ValueError, match=r"float32 \(5, 8\) buffer that is not one of the plan's"):
        step_launches(captured.plan, captured.optimizer, buffers)


@pytest.mark.parametrize("optimizer", CAPTURED)
def test_every_launch_but_the_products_is_one_cuda_kernel(optimizer):
    """Through CupyBackend (kernels recorded), no operation of the plan falls back to CuPy expressions, which
    would allocate temporaries or read the device from the host in the middle of a captured graph."""
    _, buffers, launches = _plan_of(optimizer)
    gpu = CupyBackend.__new__(CupyBackend)
    gpu._use_kernels(np, RecordingKernels(), tf32=False)
    products = []
    gpu.gemm = lambda *args, **kwargs: products.append(args)
    for call in bind(gpu, launches, buffers, device_scalars=True):
        call()
    # the kernel each operation launches where its name differs: the softmax output, db[L], one L2 sum per W,
    # the optimizer's generated update
    kernels_of = {
        "output_layer": ["softmax_output"],
        "bias_grad": ["activation_backward"],
        "add_l2_cost": ["add_sum_of_squares"] * 3,
        "optimizer_update": [f"{optimizer}_update"],
    }
    expected = [
        kernel for launch in launches if launch.op != "gemm" for kernel in kernels_of.get(launch.op, [launch.op])
    ]
    assert gpu._kernels.kernels() == expected
    assert len(products) == 8


def test_cuda_graphs_are_on_unless_switched_off(monkeypatch):
    gpu = CupyBackend.__new__(CupyBackend)
    monkeypatch.delenv("DNN_CUDA_GRAPHS", raising=False)
    gpu._use_kernels(np, RecordingKernels(), tf32=False)
    assert gpu.cuda_graphs is True
    monkeypatch.setenv("DNN_CUDA_GRAPHS", "0")
    gpu._use_kernels(np, RecordingKernels(), tf32=False)
    assert gpu.cuda_graphs is False
    planned, _ = _pair("sigmoid", 1, "float32")
    plan = TrainStep(planned, 8, "sgd", strategy="compiled")._plan("compiled", True)
    assert gpu.compile_step(plan) is None  # switched off: TrainStep takes the next strategy
    gpu._use_kernels(np, RecordingKernels(), tf32=False, cuda_graphs=True)  # the option wins over the environment
    assert gpu.cuda_graphs is True
