"""Without a GPU: the training step captured in a (stand-in) CUDA graph and replayed takes the eager step.

`TrainStep(net, m)` on the CuPy backend built on the CPU stand-ins captures the whole step: the stand-in
stream records every kernel launch and cuBLAS call (refusing host reads, synchronisation, allocation and
array expressions while capturing) and the graph replays them. Over several steps, for every optimizer,
with and without L2, both outputs and both dtypes, the replayed step equals `TrainStep(strategy="phases")`
on the same backend and on NumPy; after a non-finite step the parameters stay bit for bit as they were.
"""

import numpy as np
import pytest

from cuda_on_cpu import build
from dnn import Network
from dnn.errors import DivergenceError
from dnn.optimizers import OPTIMIZERS, make_optimizer
from dnn.step import TrainStep
from dnn.tolerances import gradient_rtol, relative_difference

pytestmark = pytest.mark.skipif(
    build.compiler() is None, reason="no C++ compiler ($CXX, g++ or c++): CUDA kernels cannot run on the CPU"
)

DIMS = (12, 9, 5)
STEPS = 3


@pytest.fixture(scope="module")
def gpu():
    from cuda_on_cpu.fake_cupy import cpu_cupy_backend

    return cpu_cupy_backend()


def _networks(gpu, output, units, dtype):
    """(captured, eager on the same backend, NumPy): the same seed, so the same parameters."""
    layers, activations = [*DIMS, units], ["relu", "tanh"]
    return tuple(
        Network(layers, activations=activations, output=output, dtype=dtype, backend=backend, seed=3)
        for backend in (gpu, gpu, "numpy")
    )


def _batches(m, units, count):
    rng = np.random.default_rng(11)
    return [
        (rng.standard_normal((DIMS[0], m)), rng.integers(0, 2, (1, m)) if units == 1 else rng.integers(0, units, m))
        for _ in range(count)
    ]


def _assert_same(net, expected, optimizer, expected_optimizer, dtype, what):
    for name, value in expected.get_parameters().items():
        difference = relative_difference(net.get_parameters()[name], value)
        assert difference <= gradient_rtol(dtype), f"{what}: {name} differs by {difference:.3g}"
    for key, value in expected_optimizer.state_dict(expected).items():
        assert relative_difference(optimizer.state_dict(net)[key], value) <= gradient_rtol(dtype), (
            f"{what}: optimizer {key}"
        )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output,units", [("sigmoid", 1), ("softmax", 4)])
@pytest.mark.parametrize("l2", [0.0, 0.2])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_the_replayed_graph_takes_the_phases_step(gpu, optimizer, l2, output, units, dtype):
    captured, eager, reference = _networks(gpu, output, units, dtype)
    optimizers = [make_optimizer(optimizer) for _ in range(3)]
    step = TrainStep(captured, 16, optimizers[0], l2=l2)
    assert step.strategy == "compiled"  # the CuPy backend's default: a captured graph
    others = [
        TrainStep(net, 16, opt, l2=l2, strategy="phases")
        for net, opt in ((eager, optimizers[1]), (reference, optimizers[2]))
    ]
    for k, (X, Y) in enumerate(_batches(16, units, STEPS)):
        lr = 0.05 if k < 2 else 0.02
        step(captured.batch(X, Y), lr)
        for net, other in zip((eager, reference), others):
            other(net.batch(X, Y), lr)
    assert not step._whole_step.eager, "the capture failed and the step ran its operations eagerly"
    graph = step._whole_step.graph
    assert any(d.startswith("kernel ") for d in graph.descriptions()) and any(
        d.startswith("cublas") for d in graph.descriptions()
    )
    totals = step.read()
    for net, other, opt in zip((eager, reference), others, optimizers[1:]):
        expected = other.read()
        assert (totals.steps, totals.examples, totals.correct) == (expected.steps, expected.examples, expected.correct)
        assert relative_difference(totals.cost_sum, expected.cost_sum) <= gradient_rtol(dtype)
        _assert_same(captured, net, optimizers[0], opt, dtype, f"captured vs phases on {net.backend.name}")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_the_divergence_guard_leaves_the_parameters_bit_for_bit(gpu, optimizer, dtype):
    captured, eager, _ = _networks(gpu, "sigmoid", 1, dtype)
    opt, eager_opt = make_optimizer(optimizer), make_optimizer(optimizer)
    step, expected = TrainStep(captured, 8, opt, l2=0.1), TrainStep(eager, 8, eager_opt, l2=0.1, strategy="phases")
    batches = _batches(8, 1, 5)
    for X, Y in batches[:2]:
        step(captured.batch(X, Y), 0.1)
        expected(eager.batch(X, Y), 0.1)
    captured.params.W[1][0, 0] = np.inf  # written on the device: the next step's cost is not finite
    before = captured.get_parameters()
    state_before = {
        k: v for k, v in opt.state_dict(captured).items() if k != "step_count"
    }  # the host's count: corrected at the read
    for X, Y in batches[2:]:
        step(captured.batch(X, Y), 0.1)
    after = captured.get_parameters()
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=f"{name} moved after a non-finite step")
    for key, value in state_before.items():
        np.testing.assert_array_equal(opt.state_dict(captured)[key], value, err_msg=f"optimizer {key} moved")
    with pytest.raises(DivergenceError):
        step.read()
    assert opt.step_count == 2
