"""Every registered optimizer (`dnn.optimizers.OPTIMIZERS`), on every backend, is tested by construction.

For each optimizer × backend (NumPy, array_api_strict, numba, the CUDA sources run on the CPU by tests/cuda_on_cpu, whose
default step is the captured graph) × dtype: one update and several follow the NumPy float64 reference within
the tolerance table; NaN, ±inf and huge gradients give what the reference gives in the same dtype, and nothing
at all moves while the step state's NONFINITE flag is set; a training step's guard catches a non-finite batch;
a checkpoint resumed continues the uninterrupted trajectory; each whole-step strategy either takes the
optimizer (agreeing with the phases) or refuses it by name. A new optimizer needs no edit here.
"""

import numpy as np
import pytest

import dnn
from cuda_on_cpu import build
from dnn import checkpoint
from dnn.backends import available_backends, get_backend
from dnn.errors import DivergenceError
from dnn.kernels.step_state import NONFINITE
from dnn.optimizers import OPTIMIZERS
from dnn.step import TrainStep
from dnn.tolerances import gradient_rtol, kernel_rtol, relative_difference

DTYPES = ["float32", "float64"]
#: Flat vectors: a serial pass, and one long enough for numba's parallel variant (PARALLEL_MIN_ELEMENTS).
SIZES = [999, 1 << 18]
#: Gradient values beyond the ordinary: non-finite, huge (their square overflows float32), tiny, zeros.
SPECIAL = [np.nan, np.inf, -np.inf, 1e30, -1e30, 3e38, 1e-30, 0.0, -0.0, 1.0]
#: The whole-step strategies each backend offers besides "phases".
WHOLE_STEPS = {"numpy": (), "array_api_strict": (), "numba": ("compiled", "fused-update"), "cuda-on-cpu": ("compiled",)}
REFERENCE = get_backend("numpy")
_AVAILABLE = {status.name: status for status in available_backends()}


@pytest.fixture(scope="module")
def cuda_on_cpu():
    if build.compiler() is None:
        pytest.skip("no C++ compiler ($CXX, g++ or c++): CUDA kernels cannot run on the CPU")
    from cuda_on_cpu.fake_cupy import cpu_cupy_backend

    return cpu_cupy_backend()


@pytest.fixture(params=list(WHOLE_STEPS))
def engine(request):
    """Each backend in turn; "cuda-on-cpu" is the CuPy backend driving its CUDA sources on the CPU."""
    if request.param == "cuda-on-cpu":
        return request.getfixturevalue("cuda_on_cpu")
    status = _AVAILABLE[request.param]
    if not status.available:
        pytest.skip(status.reason or f"{request.param} is not available")
    return get_backend(request.param)


@pytest.fixture(params=list(OPTIMIZERS))
def name(request):
    return request.param


def _engine_name(backend) -> str:
    return "cuda-on-cpu" if backend.name == "cupy" else backend.name


def _flat(backend, values, dtype):
    return backend.asarray(np.asarray(values, dtype=dtype), dtype=dtype)


def _update(backend, optimizer, param, grad, slots, lr, t, state=None):
    backend.optimizer_update(optimizer.rule, param, grad, slots, lr, optimizer.config(), t, state=state)


def _host(backend, arrays):
    return [np.asarray(backend.to_numpy(a), dtype=np.float64) for a in arrays]


# ---------------------------------------------------------------------------------------------- elementwise
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_update_and_several_follow_the_float64_reference(engine, name, dtype, size):
    rng = np.random.default_rng(7)
    optimizer = OPTIMIZERS[name]()
    start = np.asarray(rng.standard_normal(size), dtype=dtype)  # the values both sides start from
    arrays = [_flat(engine, start, dtype)] + [engine.zeros((size,), dtype) for _ in optimizer.slots]
    expected = [start.astype(np.float64)] + [np.zeros(size) for _ in optimizer.slots]
    for t in range(1, 6):
        grad = np.asarray(rng.standard_normal(size), dtype=dtype)
        _update(engine, optimizer, arrays[0], _flat(engine, grad, dtype), tuple(arrays[1:]), 0.01, t)
        _update(REFERENCE, optimizer, expected[0], grad.astype(np.float64), tuple(expected[1:]), 0.01, t)
        rtol = kernel_rtol(dtype) if t == 1 else gradient_rtol(dtype)  # one pass, then rounding carried along
        for label, got, want in zip(("param", *optimizer.slots), _host(engine, arrays), expected):
            assert relative_difference(got, want) <= rtol, f"{name} {label} after {t} updates"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's own overflow and invalid values
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_inf_and_huge_gradients_give_what_the_reference_gives(engine, name, dtype):
    optimizer = OPTIMIZERS[name]()
    grad = np.asarray(np.resize(SPECIAL, 257), dtype=dtype)
    param = np.asarray(np.linspace(-2, 2, 257), dtype=dtype)
    slots = [np.full(257, 0.5, dtype=dtype) for _ in optimizer.slots]  # a moment is never negative
    on = [_flat(engine, a, dtype) for a in (param, grad, *slots)]
    _update(engine, optimizer, on[0], on[1], tuple(on[2:]), 0.01, 3)
    _update(REFERENCE, optimizer, param, grad, tuple(slots), 0.01, 3)  # in place, in the same dtype
    for label, got, want in zip(("param", *optimizer.slots), _host(engine, [on[0], *on[2:]]), (param, *slots)):
        np.testing.assert_allclose(got, want, rtol=kernel_rtol(dtype), equal_nan=True, err_msg=f"{name} {label}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_nothing_moves_while_the_nonfinite_flag_is_set(engine, name, dtype):
    optimizer = OPTIMIZERS[name]()
    grad = _flat(engine, np.resize(SPECIAL, 257), dtype)
    arrays = [_flat(engine, np.linspace(-2, 2, 257), dtype)] + [
        _flat(engine, np.full(257, 0.5), dtype) for _ in optimizer.slots
    ]
    before = _host(engine, arrays)
    state = engine.new_step_state()
    state[NONFINITE] = 1
    _update(engine, optimizer, arrays[0], grad, tuple(arrays[1:]), 0.01, 3, state=state)
    for label, got, want in zip(("param", *optimizer.slots), _host(engine, arrays), before):
        np.testing.assert_array_equal(got, want, err_msg=f"{name} moved {label} with the flag set")


# ---------------------------------------------------------------------------------------------- training steps
def _network(backend, dtype="float64"):
    return dnn.Network([6, 5, 1], activations="tanh", dtype=dtype, backend=backend, seed=4)


def _batches(count, m=8):
    rng = np.random.default_rng(5)
    return [(rng.standard_normal((6, m)), rng.integers(0, 2, (1, m))) for _ in range(count)]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_non_finite_batch_is_caught_by_the_guard_and_moves_nothing(engine, name):
    net = _network(engine)
    optimizer = OPTIMIZERS[name]()
    step = TrainStep(net, 8, optimizer)
    for X, Y in _batches(2):
        step(net.batch(X, Y), 0.05)
    step.read()
    net.params.W[1][0, 0] = np.nan  # on the backend: the next step's cost and gradient are not finite
    parameters, state = net.get_parameters(), optimizer.state_dict(net)
    X, Y = _batches(1)[0]
    step(net.batch(X, Y), 0.05)
    with pytest.raises(DivergenceError):
        step.read()
    for key, value in parameters.items():
        np.testing.assert_array_equal(net.get_parameters()[key], value, err_msg=f"{name} moved {key}")
    for key, value in state.items():
        np.testing.assert_array_equal(optimizer.state_dict(net)[key], value, err_msg=f"{name} moved {key}")
    assert optimizer.step_count == 2  # the skipped update never happened


def test_a_resumed_checkpoint_continues_the_uninterrupted_trajectory(engine, name, tmp_path):
    batches = _batches(5)
    straight, optimizer = _network(engine), OPTIMIZERS[name]()
    step = TrainStep(straight, 8, optimizer)
    for X, Y in batches:
        step(straight.batch(X, Y), 0.05)
    step.read()

    first, first_optimizer = _network(engine), OPTIMIZERS[name]()
    step = TrainStep(first, 8, first_optimizer)
    for X, Y in batches[:2]:
        step(first.batch(X, Y), 0.05)
    step.read()
    checkpoint.save(first, tmp_path / "run.npz", optimizer=first_optimizer)
    resumed = checkpoint.load_checkpoint(tmp_path / "run.npz", backend=engine, network_class=dnn.Network)
    assert resumed.optimizer.step_count == 2 and resumed.optimizer.config() == optimizer.config()
    step = TrainStep(resumed.network, 8, resumed.optimizer)
    for X, Y in batches[2:]:
        step(resumed.network.batch(X, Y), 0.05)
    step.read()
    for key, value in straight.get_parameters().items():
        np.testing.assert_array_equal(resumed.network.get_parameters()[key], value, err_msg=f"{name} {key}")
    for key, value in optimizer.state_dict(straight).items():
        np.testing.assert_array_equal(resumed.optimizer.state_dict(resumed.network)[key], value, err_msg=key)


@pytest.mark.parametrize("dtype", DTYPES)
def test_each_whole_step_strategy_takes_the_optimizer_or_refuses_it_by_name(engine, name, dtype):
    strategies = WHOLE_STEPS[_engine_name(engine)]
    if not strategies:
        pytest.skip(f"{engine.name} has no whole-step strategy")
    for strategy in strategies:
        net, phased = _network(engine, dtype), _network(engine, dtype)
        try:
            step = TrainStep(net, 8, OPTIMIZERS[name](), strategy=strategy)
        except ValueError as refusal:
            assert f"optimizer {name!r}" in str(refusal), refusal
            continue
        assert step.strategy == strategy
        reference = TrainStep(phased, 8, OPTIMIZERS[name](), strategy="phases")
        for X, Y in _batches(3):
            step(net.batch(X, Y), 0.05)
            reference(phased.batch(X, Y), 0.05)
        for key, value in phased.get_parameters().items():
            difference = relative_difference(net.get_parameters()[key], value)
            assert difference <= gradient_rtol(dtype), f"{name} by {strategy}: {key} differs by {difference:.3g}"
