"""On a GPU: the step captured in a CUDA graph takes the eager ("phases") step, and a stale graph never replays.

Skipped, with the reason `python -m dnn backends` gives, without a usable CUDA device.
"""

import numpy as np
import pytest

from dnn import Network
from dnn.backends import available_backends
from dnn.optimizers import OPTIMIZERS, make_optimizer
from dnn.step import TrainStep
from dnn.tolerances import gradient_rtol, relative_difference

_STATUS = {s.name: s for s in available_backends()}["cupy"]
pytestmark = pytest.mark.skipif(not _STATUS.available, reason=f"cupy backend unavailable: {_STATUS.reason}")


def _pair(dtype, output="sigmoid", units=1):
    dims = [20, 16, 8, units]
    return (
        Network(dims, activations=["relu", "tanh"], output=output, dtype=dtype, backend="cupy"),
        Network(dims, activations=["relu", "tanh"], output=output, dtype=dtype, backend="cupy"),
    )


def _batches(net, m, count):
    rng = np.random.default_rng(3)
    units = net.layer_dims[-1]
    return [
        net.batch(
            rng.standard_normal((net.layer_dims[0], m)),
            rng.integers(0, 2, (1, m)) if units == 1 else rng.integers(0, units, m),
        )
        for _ in range(count)
    ]


def _assert_same(captured, eager, opt_c, opt_e, dtype):
    for name, value in eager.get_parameters().items():
        assert relative_difference(captured.get_parameters()[name], value) <= gradient_rtol(dtype), name
    for key, value in opt_e.state_dict(eager).items():
        assert relative_difference(opt_c.state_dict(captured)[key], value) <= gradient_rtol(dtype), key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output,units", [("sigmoid", 1), ("softmax", 4)])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_the_captured_step_takes_the_eager_step(optimizer, output, units, dtype):
    captured, eager = _pair(dtype, output, units)
    opt_c, opt_e = make_optimizer(optimizer), make_optimizer(optimizer)
    step = TrainStep(captured, 32, opt_c, l2=0.2)
    assert step.strategy == "compiled"  # the default on cupy: a CUDA graph
    expected = TrainStep(eager, 32, opt_e, l2=0.2, strategy="phases")
    for k, batch in enumerate(_batches(captured, 32, 6)):
        lr = 0.05 if k < 3 else 0.02
        step(batch, lr)
        expected(batch, lr)
    totals, expected_totals = step.read(), expected.read()
    assert totals.steps == expected_totals.steps == 6 and totals.correct == expected_totals.correct
    assert relative_difference(totals.cost_sum, expected_totals.cost_sum) <= gradient_rtol(dtype)
    _assert_same(captured, eager, opt_c, opt_e, dtype)
    assert not step._whole_step.eager, "the capture failed and the step ran eagerly"


def test_a_resume_recaptures_and_the_stale_graph_never_replays():
    captured, eager = _pair("float64")
    opt_c, opt_e = make_optimizer("adam"), make_optimizer("adam")
    step, expected = TrainStep(captured, 16, opt_c), TrainStep(eager, 16, opt_e, strategy="phases")
    batches = _batches(captured, 16, 4)
    for batch in batches[:2]:
        step(batch, 0.01)
        expected(batch, 0.01)
    stale = step._whole_step.graph
    saved = opt_e.state_dict(eager)
    opt_c.load_state_dict(captured, saved)  # new moment vectors: a graph on the old ones would update those
    opt_e.load_state_dict(eager, saved)
    for batch in batches[2:]:
        step(batch, 0.01)
        expected(batch, 0.01)
    assert step._whole_step.graph is not stale
    _assert_same(captured, eager, opt_c, opt_e, "float64")


def test_cuda_graphs_switched_off_run_the_step_by_phases():
    from dnn.backends.cupy_backend import CupyBackend

    net = Network([5, 4, 1], dtype="float32", backend=CupyBackend(cuda_graphs=False))
    assert TrainStep(net, 8).strategy == "phases"
