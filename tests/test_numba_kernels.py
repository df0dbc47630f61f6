"""The Numba backend's fused kernels compute what the NumPy reference (Backend's own code, in float64) computes.

Every kernel runs on fresh random inputs at several shapes (1x1, odd sizes, one example), in float32 and
float64, on the serial path and on the parallel path (forced with parallel_min_elements = 0); outputs are
poisoned with NaN first so that an element the kernel forgot to write fails the comparison. Inputs the
kernels do not cover (other dtypes, transposed views, overlapping buffers) must reach the reference code.
"""

import numpy as np
import pytest

pytest.importorskip("numba")

import numba  # noqa: E402

import dnn  # noqa: E402
from dnn.activations import ACTIVATION_CODES, ACTIVATIONS  # noqa: E402
from dnn.backends.base import OUTPUTS  # noqa: E402
from dnn.backends.numba_backend import NumbaBackend  # noqa: E402
from dnn.backends.numpy_backend import NumpyBackend  # noqa: E402
from dnn.errors import DivergenceError  # noqa: E402
from dnn.optimizers import OPTIMIZERS  # noqa: E402
from dnn.tolerances import gradient_rtol, kernel_rtol, relative_difference  # noqa: E402
from optimizer_helpers import run_update  # noqa: E402

SHAPES = [(1, 1), (7, 13), (5, 1), (1, 9), (33, 17)]
DTYPES = ["float32", "float64"]
REF = NumpyBackend()


def _backend(path):
    be = NumbaBackend()
    be.parallel_min_elements = 0 if path == "parallel" else 1 << 62
    return be


@pytest.fixture(params=["serial", "parallel"])
def nb(request):
    """A numba backend that takes one code path for every array size."""
    return _backend(request.param)


def _random(rng, shape, dtype, low=None):
    a = rng.standard_normal(shape) * 3
    if low is not None:
        a = np.maximum(a, low)
    return a.astype(dtype)


def _poisoned(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def _f64(*arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


def _assert_close(actual, expected, dtype, what):
    rd = relative_difference(actual, expected)
    assert rd <= kernel_rtol(dtype), f"{what}: relative difference {rd:.3g} > {kernel_rtol(dtype):.1g}"


# ---------------------------------------------------------------------------------------------- hidden layers
# Every activation's forward and backward kernels, serial and parallel: tests/test_activations.py.
def test_activation_backward_without_a_or_z_raises(nb):
    dA = np.ones((2, 3))
    with pytest.raises(ValueError, match="needs the layer's output A or pre-activation Z"):
        nb.activation_backward(dA, "relu", dA)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_bias_grad_matches_reference(nb, rng, dtype, shape):
    dZ = _random(rng, shape, dtype)
    out = _poisoned((shape[0], 1), dtype)
    nb.bias_grad(dZ, out, 1.0 / shape[1])
    expected = np.empty((shape[0], 1))
    REF.bias_grad(dZ.astype(np.float64), expected, 1.0 / shape[1])
    _assert_close(out, expected, dtype, "db")


# ---------------------------------------------------------------------------------------------- output layer
def _labels(rng, output, shape, dtype):
    if output == "sigmoid":
        return (rng.random(shape) > 0.5).astype(dtype)
    Y = np.zeros(shape, dtype)
    Y[rng.integers(0, shape[0], shape[1]), np.arange(shape[1])] = 1
    return Y


OUTPUT_SHAPES = [(1, 1), (1, 13), (2, 1), (3, 7), (10, 130)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "output, shape",
    [(o, s) for o in OUTPUTS for s in OUTPUT_SHAPES if o == "sigmoid" or s[0] >= 2],  # softmax: ≥ 2 units
)
@pytest.mark.parametrize("wanted", ["cost+dZ", "cost", "dZ", "A only"])
def test_output_layer_matches_reference(nb, rng, dtype, shape, output, wanted):
    Z, b = _random(rng, shape, dtype), _random(rng, (shape[0], 1), dtype)
    Y = _labels(rng, output, shape, dtype)
    Z64, b64, Y64 = _f64(Z, b, Y)
    A = _poisoned(shape, dtype)
    dZ = _poisoned(shape, dtype) if "dZ" in wanted else None
    cost = _poisoned((1,), dtype) if "cost" in wanted else None
    nb.output_layer(Z, b, output, A, Y=None if wanted == "A only" else Y, dZ=dZ, cost=cost)
    A64 = np.empty(shape)
    REF.output_layer(Z64, b64, output, A64)
    _assert_close(Z, Z64, dtype, "logits Z + b")
    _assert_close(A, A64, dtype, f"{output}(Z)")
    if dZ is not None:  # exactly A - Y of the A just checked (near-saturated A loses digits in the difference)
        np.testing.assert_array_equal(dZ, A - Y)
    if cost is not None:
        _assert_close(cost, _cross_entropy_oracle(Z64, Y64, output), dtype, "cost")


def _cross_entropy_oracle(Z, Y, output):
    """The mean cross-entropy from logits Z in extended precision.

    Extended precision, straight from the definition: for a confident softmax column a float64
    log(Σ exp(z - max)) + max - z keeps only ~5 digits of a cost near 1e-5, which is why the kernels (and
    the reference) use the log1p form and are checked against this instead.
    """
    Z, Y = Z.astype(np.longdouble), Y.astype(np.longdouble)
    if output == "sigmoid":
        per_elem = np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))
    else:
        top = Z.max(axis=0, keepdims=True)
        per_elem = Y * (np.log(np.exp(Z - top).sum(axis=0, keepdims=True)) + (top - Z))
    return np.array([float(per_elem.sum() / Z.shape[1])])


def test_output_layer_is_stable_for_huge_logits(nb):
    Z = np.array([[800.0, -800.0, 0.0]])
    b = np.zeros((1, 1))
    Y = np.array([[1.0, 0.0, 1.0]])
    A, dZ, cost = np.empty_like(Z), np.empty_like(Z), np.empty(1)
    nb.output_layer(Z, b, "sigmoid", A, Y=Y, dZ=dZ, cost=cost)
    np.testing.assert_allclose(A, [[1.0, 0.0, 0.5]])
    np.testing.assert_allclose(cost, [np.log(2) / 3])


# ---------------------------------------------------------------------------------------------- updates, gemm
def _update_case(rng, dtype, shape, n):
    return [_random(rng, shape, dtype) for _ in range(n)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", [*OPTIMIZERS, "axpy", "multiply"])
def test_elementwise_updates_match_reference(nb, rng, dtype, shape, method):
    arrays = _update_case(rng, dtype, shape, 4)
    arrays[2:] = [np.abs(a) for a in arrays[2:]]  # slots such as Adam's second moment are never negative
    refs = _f64(*arrays)
    calls = {
        "axpy": lambda be, p, g, m, v: be.axpy(0.3, g, p),
        "multiply": lambda be, p, g, m, v: be.multiply(p, g, p),
    }
    call = calls.get(method, lambda be, p, g, m, v: run_update(be, method, p, g, (m, v), 0.01))
    call(nb, *arrays)
    call(REF, *refs)
    for name, actual, expected in zip(("param", "grad", "m", "v"), arrays, refs):
        _assert_close(actual, expected, dtype, f"{method}: {name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_multiply_into_a_separate_buffer(nb, rng, dtype):
    a, b = _random(rng, (4, 9), dtype), _random(rng, (4, 9), dtype)
    out = _poisoned(a.shape, dtype)
    nb.multiply(a, b, out)
    _assert_close(out, a.astype(np.float64) * b, dtype, "a * b")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans", [(False, False), (False, True), (True, False)])
def test_gemm_with_alpha_matches_reference(nb, rng, dtype, trans):
    a = _random(rng, (5, 7) if not trans[0] else (7, 5), dtype)
    b = _random(rng, (7, 3) if not trans[1] else (3, 7), dtype)
    out = _poisoned((5, 3), dtype)
    nb.gemm(a, b, out, trans_a=trans[0], trans_b=trans[1], alpha=1 / 7)
    expected = np.empty((5, 3))
    REF.gemm(*_f64(a, b), expected, trans_a=trans[0], trans_b=trans[1], alpha=1 / 7)
    assert relative_difference(out, expected) <= gradient_rtol(dtype)  # a GEMM: a sum of 7 products


# ---------------------------------------------------------------------------------------------- non-finite check
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (600, 700)])
def test_all_finite_sees_every_nan_and_infinity(nb, rng, dtype, bad, shape):
    a = _random(rng, shape, dtype)
    assert nb.all_finite(a)
    for index in [(0, 0), (shape[0] - 1, shape[1] - 1), (shape[0] // 2, shape[1] // 3)]:
        poisoned = a.copy()
        poisoned[index] = bad
        assert not nb.all_finite(poisoned), f"{bad} at {index} went unseen"


def test_training_into_nan_raises_divergence_under_numba(rng):
    net = dnn.Network([4, 3, 1], dtype="float64", backend="numba")
    batch = net.batch(rng.standard_normal((4, 8)), (rng.random(8) > 0.5).astype(float))
    net.parameters["W1"][0, 0] = np.nan  # what a diverged step leaves behind
    with pytest.raises(DivergenceError):
        net.train_step(batch, lr=0.1)


# ---------------------------------------------------------------------------------------------- fallbacks
class _NoKernels:
    def __getattr__(self, name):
        raise AssertionError(f"kernel {name} was called for inputs it does not cover")


@pytest.fixture
def nb_without_kernels():
    """A numba backend whose kernels fail when touched: anything that works went to the reference code."""
    be = NumbaBackend()
    be._act = be._out = be._upd = be._chk = _NoKernels()
    return be


@pytest.mark.parametrize("layout", ["float16", "transposed", "mixed dtypes"])
def test_uncovered_inputs_fall_back_to_the_reference(nb_without_kernels, rng, layout):
    """float16 and transposed views never reach a kernel. With mixed dtypes the reference's own
    bias_activation_forward still hands its float64 activation to the numba kernel, so only the values are
    checked there."""

    def make(shape):
        if layout == "float16":
            return _random(rng, shape, "float16")
        if layout == "transposed":
            return np.ascontiguousarray(_random(rng, shape[::-1], "float64")).T
        return _random(rng, shape, "float64")

    Z = make((4, 6))
    if layout == "mixed dtypes":  # float64 activations next to float32 gradients and biases
        dA, b = _random(rng, (4, 6), "float32"), _random(rng, (4, 1), "float32")
    else:
        dA, b = make((4, 6)), make((4, 1))

    def results(be):
        values = []
        for activation in ACTIVATIONS:
            z, out, db = Z.copy(order="K"), np.empty_like(Z), np.empty((4, 1), b.dtype)
            be.bias_activation_forward(z, b, activation, out)
            be.activation_backward(dA, activation, z, A=out, db=db, db_scale=0.5)
            values += [out, z, db]
        p = Z.copy(order="K")
        be.sgd_update(p, dA, 0.1)
        values.append(p)
        if layout != "mixed dtypes":
            values.append(np.array([be.all_finite(Z)]))
        return values

    candidate = nb_without_kernels if layout != "mixed dtypes" else NumbaBackend()
    for actual, expected in zip(results(candidate), results(REF), strict=True):
        if layout == "mixed dtypes":
            _assert_close(actual, expected, "float64", "mixed dtypes")
        else:
            np.testing.assert_array_equal(actual, expected)


def test_overlapping_but_different_buffers_fall_back_to_the_reference(nb_without_kernels, rng):
    a = rng.standard_normal((1, 10))
    expected = a[:, :8] * a[:, 2:]
    nb_without_kernels.multiply(a[:, :8], a[:, 2:], a[:, 2:])  # out overlaps input a shifted by 2
    np.testing.assert_array_equal(a[:, 2:], expected)


def test_mismatched_bias_shape_raises_instead_of_reading_past_the_end(nb):
    Z, b = np.ones((4, 3)), np.ones((2, 1))
    with pytest.raises(ValueError):
        nb.bias_activation_forward(Z, b, "relu", Z)


# ---------------------------------------------------------------------------------------------- whole network
NETWORKS = [
    ([12, 9, 7, 1], "relu", None),
    ([12, 9, 7, 1], "tanh", None),
    ([12, 9, 7, 1], ["sigmoid", "leaky_relu"], None),
    ([12, 5, 4], "relu", "softmax"),
    ([12, 6, 1], "linear", None),
]


def _data(rng, dims, m=23):
    X = rng.standard_normal((dims[0], m))
    Y = (rng.random(m) > 0.5).astype(float) if dims[-1] == 1 else rng.integers(0, dims[-1], m)
    return X, Y


@pytest.mark.parametrize("path", ["serial", "parallel"])
@pytest.mark.parametrize("dims, activations, output", NETWORKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_network_gradients_match_numpy_float64(rng, path, dims, activations, output, dtype):
    X, Y = _data(rng, dims)
    ref = dnn.Network(dims, activations, output, dtype="float64", backend="numpy")
    net = dnn.Network(dims, activations, output, dtype=dtype, backend=_backend(path))
    cost_ref, grads_ref = ref.backward(X, Y, l2=0.3)
    cost, grads = net.backward(X, Y, l2=0.3)
    assert relative_difference([cost], [cost_ref]) <= gradient_rtol(dtype)
    for key, expected in grads_ref.items():
        rd = relative_difference(grads[key], expected)
        assert rd <= gradient_rtol(dtype), f"{key}: relative difference {rd:.3g}"


def _history(backend, steps=15):
    rng = np.random.default_rng(3)
    dims = [30, 40, 20, 1]
    X, Y = _data(rng, dims, m=50)
    net = dnn.Network(dims, "relu", dtype="float32", backend=backend)
    batch = net.batch(X, Y)
    costs = [net.train_step(batch, lr=0.05) for _ in range(steps)]
    return costs, net.get_parameters()


def test_training_is_bit_identical_run_to_run_and_across_thread_counts():
    costs, params = _history(_backend("parallel"))
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        costs_1, params_1 = _history(_backend("parallel"))
    finally:
        numba.set_num_threads(previous)
    costs_again, params_again = _history(_backend("parallel"))
    assert costs == costs_1 == costs_again
    for key in params:
        np.testing.assert_array_equal(params[key], params_1[key])
        np.testing.assert_array_equal(params[key], params_again[key])


# ---------------------------------------------------------------------------------------------- compile on demand
@pytest.fixture
def compiles(monkeypatch):
    """The Python functions numba compiles from now on (each call of its compiler, cache loads excluded)."""
    import numba.core.compiler as compiler

    compiled, original = [], compiler.compile_extra
    monkeypatch.setattr(
        compiler, "compile_extra", lambda *a, **k: compiled.append(a[2].__qualname__) or original(*a, **k)
    )
    return compiled


def test_warmup_of_a_network_compiles_everything_its_training_and_evaluation_call(compiles):
    rng = np.random.default_rng(5)
    nb = NumbaBackend()
    net = dnn.Network([6, 5, 4, 1], ["tanh", "leaky_relu"], dtype="float32", backend=nb)
    X, Y = _data(rng, [6, 5, 4, 1], m=40)
    nb.warmup(net, optimizer="momentum")
    compiles.clear()
    net.fit(X, Y, epochs=2, batch_size=16, optimizer="momentum", l2=0.1, seed=0)
    net.train_step(net.batch(X, Y), lr=0.1, l2=0.1)  # SGD with the update inside the products: bias updates
    net.evaluate(X, Y)
    assert compiles == [], "training compiled kernels that warmup(net) did not"


def test_warmup_compiles_only_the_layers_activations_on_the_serial_path():
    from dnn.kernels import numba_activations

    nb = NumbaBackend()
    calls = nb._kernel_calls([8, 3, 1], "float64", "sigmoid", None, "adam", False, None)
    built = {kernel for kernel, _ in calls}
    assert numba_activations.backward_kernel(ACTIVATION_CODES["sigmoid"], False) in built
    for name in ACTIVATIONS:
        code = ACTIVATION_CODES[name]
        assert numba_activations.backward_kernel(code, True) not in built, "a parallel kernel for a tiny network"
        if name != "sigmoid":
            assert numba_activations.backward_kernel(code, False) not in built, f"{name} is not in the network"
    wide = {k for k, _ in nb._kernel_calls([8, 3, 1], "float64", "sigmoid", None, "adam", False, 1 << 17)}
    assert numba_activations.backward_kernel(ACTIVATION_CODES["sigmoid"], True) in wide, "3 x 2^17 elements go parallel"


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(dtype="float16"), "float32 or float64"),
        (dict(activations="swish"), "swish"),
        (dict(activations=["relu"]), "2 hidden layer"),
        (dict(optimizer="no_such_optimizer"), "unknown optimizer 'no_such_optimizer'"),
        (dict(examples=0), "examples"),
        (dict(output="softplus"), "softplus"),
    ],
)
def test_warmup_names_a_bad_configuration(bad, message):
    config = dict(dtype="float32", activations="relu", output=None, optimizer=None, examples=None) | bad
    with pytest.raises(ValueError, match=message):
        NumbaBackend().warmup([4, 3, 2, 1], config.pop("dtype"), **config)


_CACHE_STATUS = """
import json, sys
from dnn.backends.numba_backend import NumbaBackend, kernel_cache_status
nb = NumbaBackend()
config = dict(activations="relu", optimizer="adam")
before = kernel_cache_status([5, 4, 1], "float32", **config)
if sys.argv[1] == "warm up":
    nb.warmup([5, 4, 1], "float32", **config)
print(json.dumps([before.cached, before.total, before.warm]))
"""


def test_cache_status_is_cold_in_an_empty_cache_and_warm_in_the_next_process(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def status(action):
        done = subprocess.run(
            [sys.executable, "-c", _CACHE_STATUS, action], env=env, check=True, capture_output=True, text=True
        )
        return json.loads(done.stdout)

    cached, total, warm = status("warm up")
    assert (cached, warm) == (0, False) and total > 0
    assert status("look") == [total, total, True]


_COMPILES_IN_A_WARM_PROCESS = """
import numba.core.compiler as compiler
compiles = []
original = compiler.compile_extra
compiler.compile_extra = lambda *args, **kwargs: compiles.append(args[2]) or original(*args, **kwargs)
import numpy as np, dnn
net = dnn.Network([5, 4, 1], "relu", dtype="float32", backend="numba")
X, Y = np.random.default_rng(0).standard_normal((5, 30)), np.arange(30) % 2
net.fit(X, Y, epochs=2, batch_size=8, optimizer="adam", seed=0)
net.evaluate(X, Y)
print(len(compiles), [getattr(f, "__qualname__", f) for f in compiles])
"""


def test_a_second_process_loads_every_kernel_from_the_cache_without_compiling(tmp_path):
    """Not even type inference: a cached kernel is loaded by its argument types alone."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    run = [sys.executable, "-c", _COMPILES_IN_A_WARM_PROCESS]
    first = subprocess.run(run, env=env, check=True, capture_output=True, text=True).stdout
    assert int(first.split()[0]) > 0, "the first process compiled nothing: the cache was not empty"
    second = subprocess.run(run, env=env, check=True, capture_output=True, text=True).stdout
    assert second.split()[0] == "0", f"the second process compiled: {second}"


# ------------------------------------------------------------------------------- the compiled step, compiled aside
_TRAIN_UNTIL_THE_KERNEL_RUNS = """
import json, sys, time
import numba.core.compiler as compiler
compiled = []
original = compiler.compile_extra
compiler.compile_extra = lambda *args, **kwargs: compiled.append(args[2].__qualname__) or original(*args, **kwargs)
import numpy as np, dnn
from dnn.step import TrainStep
steps = int(sys.argv[1])  # 0: until the kernel is ready and has taken two steps
rng = np.random.default_rng(0)
net = dnn.Network([8, 6, 4, 1], "tanh", dtype="float32", backend="numba", seed=0)
step, batch = TrainStep(net, 40), net.batch(rng.standard_normal((8, 40)), np.arange(40) % 2)
ready, costs, deadline = [], [], time.monotonic() + 300
while (len(costs) < steps) if steps else (ready[-3:] != [True] * 3 and time.monotonic() < deadline):
    step(batch, 0.05)
    ready.append(step._whole_step.ready)  # True: the next step runs the compiled kernel
    costs.append(step.read().cost)
    time.sleep(0 if steps else 0.01)  # leave the other core to the helper
print(json.dumps({"ready": ready, "costs": costs, "theta": net.flat_buffers()[0].tolist(),
                  "compiled_the_step_here": any("sgd_step" in name for name in compiled)}))
"""


def test_a_cold_compiled_step_switches_to_the_kernel_a_helper_compiled_and_keeps_the_history(tmp_path):
    """Cold cache: the stand-in takes the steps, a helper process compiles the kernel into the cache, the step
    switches to it without compiling it here; a warm run takes the kernel from the start, and both histories
    are the same bit for bit (the switch point depends on timing, the numbers must not)."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def run(steps):
        done = subprocess.run(
            [sys.executable, "-c", _TRAIN_UNTIL_THE_KERNEL_RUNS, str(steps)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=420,
        )
        return json.loads(done.stdout)

    cold = run(0)
    assert not cold["ready"][0] and cold["ready"][-3:] == [True] * 3, "the kernel never became ready"
    assert not cold["compiled_the_step_here"], "the training process compiled the whole step itself"
    warm = run(len(cold["costs"]))
    assert all(warm["ready"]) and not warm["compiled_the_step_here"]
    assert warm["costs"] == cold["costs"] and warm["theta"] == cold["theta"]


_START_A_HELPER_AND_EXIT = """
from dnn.backends.numba_background import BackgroundCompile
print(BackgroundCompile([784, 512, 256, 128, 10], "float64", activations="sigmoid", optimizer="sgd").pid)
"""


def test_no_background_compile_outlives_the_process_that_started_it():
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _START_A_HELPER_AND_EXIT], check=True, capture_output=True, text=True, timeout=60
    )
    with pytest.raises(ProcessLookupError):
        os.kill(int(done.stdout), 0)
