"""Without a GPU: every CUDA kernel the CuPy backend launches, executed on the CPU, computes what NumPy computes.

The backend is the real `CupyBackend` (its own launch code: grid, block, arguments) on the CPU stand-ins of
`tests/cuda_on_cpu`: each kernel source compiled unchanged as C++, one fiber per CUDA thread, allocations
poisoned with NaN and guarded (a write outside one fails the launch). Random inputs are compared with NumPy
float64 within dnn/tolerances.py; NaN, ±inf, ±0 and overflowing inputs with NumPy in the kernel's own dtype,
NaN for NaN and inf for inf. Shapes: 1×1, 1×1025, 33×31, 257×1025, vectors of 1, 255, 256 and 100 003, and
grids beyond 65 535 blocks.
"""

import numpy as np
import pytest

from cuda_on_cpu import build
from dnn.backends.numpy_backend import NumpyBackend
from dnn.kernels.cupy_modules import SOURCES
from dnn.kernels.step_state import NONFINITE, STATE_SIZE
from dnn.optimizers import OPTIMIZERS
from dnn.tolerances import gradient_rtol, kernel_rtol, relative_difference
from optimizer_helpers import run_update
from step_state_checks import check_all_finite_finds_one_bad_element_anywhere, check_guard_commit_and_begin_step

pytestmark = pytest.mark.skipif(
    build.compiler() is None, reason="no C++ compiler ($CXX, g++ or c++): CUDA kernels cannot run on the CPU"
)

DTYPES = ["float32", "float64"]
MATRICES = [(1, 1), (1, 1025), (33, 31), (257, 1025)]
VECTORS = [1, 255, 256, 100003]
BEYOND_Y_GRID = (65537, 1)  # forward: 65 537 rows on a grid of 65 535 in y; backward: 65 536 blocks, rows strided
BEYOND_X_GRID = 65536 * 256 + 3  # elementwise: 65 536 blocks of 256 threads, each thread striding
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 100.0, -100.0, 1.0]
REF = NumpyBackend()


@pytest.fixture(scope="module")
def gpu():
    from cuda_on_cpu.fake_cupy import cpu_cupy_backend

    build.builder().build_all(SOURCES)  # every source for both dtypes, compiled in parallel
    return cpu_cupy_backend()


@pytest.fixture
def rng():
    return np.random.default_rng(20261127)


def _on(gpu, a, dtype):
    return gpu.asarray(np.asarray(a, dtype=dtype))


def _poisoned(gpu, shape, dtype):
    return gpu.empty(shape, dtype)  # the pool fills fresh memory with NaN


def _as(a, dtype):
    """`a` rounded to `dtype`, then widened to float64: the values the kernel sees, in the reference's dtype."""
    return np.asarray(a, dtype=dtype).astype(np.float64)


def _close(gpu, actual, expected, dtype, what, rtol=None):
    actual = gpu.to_numpy(actual)
    limit = kernel_rtol(dtype) if rtol is None else rtol
    difference = relative_difference(actual, expected)
    assert difference <= limit, f"{what} {dtype}: relative difference {difference:.3g} > {limit:g}"


def _same_specials(gpu, actual, expected, dtype, what, rtol=None):
    """NaN exactly where `expected` has NaN, the same infinities, finite values within the tolerance."""
    actual, expected = gpu.to_numpy(actual).astype(np.float64), np.asarray(expected, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what} {dtype}: NaN positions")
    infinite = np.isinf(expected)
    np.testing.assert_array_equal(actual[infinite], expected[infinite], err_msg=f"{what} {dtype}: infinities")
    finite = np.isfinite(expected)
    limit = kernel_rtol(dtype) if rtol is None else rtol
    difference = relative_difference(actual[finite], expected[finite])
    assert difference <= limit, f"{what} {dtype}: relative difference {difference:.3g} > {limit:g} on finite values"


def _specials(shape, dtype, rng):
    """An array of `shape` drawing from SPECIAL and random values (overflowing ones become ±inf in float32)."""
    values = np.where(rng.random(shape) < 0.5, rng.choice(SPECIAL, shape), rng.standard_normal(shape) * 3)
    with np.errstate(over="ignore"):
        return values.astype(dtype)


# ---------------------------------------------------------------------------------------------- hidden layers
# Every activation's kernels at each shape, with NaN, ±inf and overflowing inputs: tests/test_activations.py.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MATRICES, ids=str)
def test_bias_grad_is_the_backward_kernel_without_dz(gpu, rng, shape, dtype):
    dA = _as(rng.standard_normal(shape), dtype)
    db = _poisoned(gpu, (shape[0], 1), dtype)
    gpu.bias_grad(_on(gpu, dA, dtype), db, 0.25)
    db_ref = np.empty((shape[0], 1))
    REF.bias_grad(dA, db_ref, 0.25)
    _close(gpu, db, db_ref, dtype, "bias_grad", rtol=gradient_rtol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_hidden_layer_kernels_on_grids_beyond_65535_blocks(gpu, rng, dtype):
    """65 537 rows: the forward grid stops at 65 535 in y and the backward at 65 536 blocks; rows past them are strided."""
    shape = BEYOND_Y_GRID
    Z, b, dA = (
        _as(rng.standard_normal(shape), dtype),
        _as(rng.standard_normal((shape[0], 1)), dtype),
        _as(rng.standard_normal(shape), dtype),
    )
    out_ref, Z_ref = np.empty(shape), Z.copy()
    REF.bias_activation_forward(Z_ref, b, "tanh", out_ref)
    out = _poisoned(gpu, shape, dtype)
    gpu.bias_activation_forward(_on(gpu, Z, dtype), _on(gpu, b, dtype), "tanh", out)
    _close(gpu, out, out_ref, dtype, "forward tanh")
    dZ_ref = np.empty(shape)
    REF.activation_backward(dA, "tanh", dZ_ref, A=out_ref)
    dZ = _poisoned(gpu, shape, dtype)
    gpu.activation_backward(_on(gpu, dA, dtype), "tanh", dZ, A=out)
    _close(gpu, dZ, dZ_ref, dtype, "backward tanh", rtol=gradient_rtol(dtype))


# ---------------------------------------------------------------------------------------------- output layer
def _labels(rng, output, units, m):
    if output == "sigmoid":
        return (rng.random((units, m)) < 0.5).astype(np.float64)
    return np.eye(units)[:, rng.integers(0, units, m)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "output,units,m",
    [
        ("sigmoid", 1, 1),
        ("sigmoid", 1, 1025),
        ("sigmoid", 33, 31),
        ("softmax", 1, 1),
        ("softmax", 2, 1025),
        ("softmax", 33, 31),
        ("softmax", 10, 257),
    ],
)
def test_output_layer_cost_and_gradient(gpu, rng, output, units, m, dtype):
    shape = (units, m)
    Z, b, Y = (
        _as(rng.standard_normal(shape) * 4, dtype),
        _as(rng.standard_normal((units, 1)), dtype),
        _labels(rng, output, units, m),
    )
    Z_ref, A_ref, dZ_ref, cost_ref = Z.copy(), np.empty(shape), np.empty(shape), np.empty(1)
    REF.output_layer(Z_ref, b, output, A_ref, Y=Y, dZ=dZ_ref, cost=cost_ref, dZ_scale=1 / m)
    Zg, A, dZ, cost = (
        _on(gpu, Z, dtype),
        _poisoned(gpu, shape, dtype),
        _poisoned(gpu, shape, dtype),
        _poisoned(gpu, (1,), dtype),
    )
    gpu.output_layer(Zg, _on(gpu, b, dtype), output, A, Y=_on(gpu, Y, dtype), dZ=dZ, cost=cost, dZ_scale=1 / m)
    _close(gpu, Zg, Z_ref, dtype, "logits")
    _close(gpu, A, A_ref, dtype, f"{output} A")
    _close(gpu, dZ, dZ_ref, dtype, f"{output} dZ")
    _close(gpu, cost, cost_ref, dtype, f"{output} cost", rtol=gradient_rtol(dtype))  # a sum of m·units terms
    A_only = _poisoned(gpu, shape, dtype)
    gpu.output_layer(_on(gpu, Z, dtype), _on(gpu, b, dtype), output, A_only)  # prediction: no Y, dZ or cost
    _close(gpu, A_only, A_ref, dtype, f"{output} A without cost")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_output_layer_with_nan_inf_zero_and_overflow(gpu, rng, output, dtype):
    """Columns with a NaN, a +inf or -inf logit, ±0 and overflow: NumPy's values in the same dtype, NaN for NaN."""
    units, m = 4, 40
    Z, b, Y = (
        _specials((units, m), dtype, rng),
        np.zeros((units, 1), dtype),
        _labels(rng, output, units, m).astype(dtype),
    )
    Z[:, 0] = [np.inf, 1.0, 2.0, 3.0]  # a +inf top logit
    Z[:, 1] = [-np.inf, -np.inf, -np.inf, -np.inf]
    Z[:, 2] = [np.nan, 1.0, 2.0, 3.0]
    Z[:, 3] = [0.0, -0.0, 0.0, -0.0]
    with np.errstate(all="ignore"):
        Z_ref, A_ref, dZ_ref, cost_ref = Z.copy(), np.empty_like(Z), np.empty_like(Z), np.empty(1, dtype)
        REF.output_layer(Z_ref, b, output, A_ref, Y=Y, dZ=dZ_ref, cost=cost_ref)
    Zg, A, dZ, cost = (
        _on(gpu, Z, dtype),
        _poisoned(gpu, Z.shape, dtype),
        _poisoned(gpu, Z.shape, dtype),
        _poisoned(gpu, (1,), dtype),
    )
    gpu.output_layer(Zg, _on(gpu, b, dtype), output, A, Y=_on(gpu, Y, dtype), dZ=dZ, cost=cost)
    _same_specials(gpu, A, A_ref, dtype, f"{output} A")
    _same_specials(gpu, dZ, dZ_ref, dtype, f"{output} dZ")
    _same_specials(gpu, cost, cost_ref, dtype, f"{output} cost")


def test_a_softmax_column_with_a_plus_inf_logit_is_nan_as_in_numpy(gpu):
    """NumPy's softmax of [inf, 1] is [NaN, NaN] (inf - inf); the kernel once gave [NaN, 0]."""
    Z = np.array([[np.inf, 0.0], [1.0, 2.0]])
    A = _poisoned(gpu, (2, 2), "float64")
    gpu.output_layer(_on(gpu, Z, "float64"), _on(gpu, np.zeros((2, 1)), "float64"), "softmax", A)
    result = gpu.to_numpy(A)
    assert np.isnan(result[:, 0]).all(), result
    np.testing.assert_allclose(result[:, 1], np.exp([0.0, 2.0]) / np.exp([0.0, 2.0]).sum(), rtol=kernel_rtol("float64"))


# ---------------------------------------------------------------------------------------------- updates
def _update_arrays(rng, size):
    return {
        "param": rng.standard_normal(size),
        "grad": rng.standard_normal(size),
        "m": rng.random(size) * 0.1,  # every slot non-negative: it may be a second moment (RMSprop's first)
        "v": rng.random(size) * 0.01,
    }


def _run_update(be, kind, a, lr=0.01, t=10, **state):
    if kind in OPTIMIZERS:
        run_update(be, kind, a["param"], a["grad"], (a["m"], a["v"]), lr, t, **state)
    elif kind == "axpy":
        be.axpy(-0.3, a["grad"], a["param"])
    else:
        be.multiply(a["grad"], a["m"], a["param"])


UPDATES = [*OPTIMIZERS, "axpy", "multiply"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", VECTORS)
@pytest.mark.parametrize("kind", UPDATES)
def test_updates_over_the_flat_vector(gpu, rng, kind, size, dtype):
    host = {k: _as(v, dtype) for k, v in _update_arrays(rng, size).items()}
    if kind == "multiply":
        host["param"][:] = np.nan  # the product's output, poisoned
    ref = {k: v.copy() for k, v in host.items()}
    _run_update(REF, kind, ref)
    dev = {k: _on(gpu, v, dtype) for k, v in host.items()}
    _run_update(gpu, kind, dev)
    for name in ("param", "m", "v"):
        _close(gpu, dev[name], ref[name], dtype, f"{kind} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_update_on_a_grid_beyond_65535_blocks(gpu, rng, dtype):
    x, y = _as(rng.standard_normal(BEYOND_X_GRID), dtype), _as(rng.standard_normal(BEYOND_X_GRID), dtype)
    expected = y.copy()
    REF.axpy(0.5, x, expected)
    out = _on(gpu, y, dtype)
    gpu.axpy(0.5, _on(gpu, x, dtype), out)
    _close(gpu, out, expected, dtype, "axpy")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", UPDATES)
def test_updates_with_nan_inf_zero_and_overflow(gpu, rng, kind, dtype):
    host = {k: _specials(v.shape, dtype, rng) for k, v in _update_arrays(rng, 257).items()}
    host["v"] = np.abs(host["v"])  # a second moment is never negative
    ref = {k: v.copy() for k, v in host.items()}
    with np.errstate(all="ignore"):
        _run_update(REF, kind, ref)
    dev = {k: _on(gpu, v, dtype) for k, v in host.items()}
    _run_update(gpu, kind, dev)
    for name in ("param", "m", "v"):
        _same_specials(gpu, dev[name], ref[name], dtype, f"{kind} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_updates_read_lr_and_t_on_the_device_and_skip_a_diverged_step(gpu, rng, kind, dtype):
    host = {k: _as(v, dtype) for k, v in _update_arrays(rng, 999).items()}
    ref = {k: v.copy() for k, v in host.items()}
    _run_update(REF, kind, ref, lr=0.02, t=7)
    dev = {k: _on(gpu, v, dtype) for k, v in host.items()}
    state, lr, t = gpu.zeros((STATE_SIZE,), "float64"), _on(gpu, [0.02], "float64"), _on(gpu, [6.0], "float64")
    counts = OPTIMIZERS[kind].rule.reads_step_count  # its update forms scalars from t (Adam's 1 - β^t)
    if counts:
        gpu._advance_step_count(t, state)  # t: 6 -> 7 on the device
    _run_update(gpu, kind, dev, lr=lr, t=t, state=state)
    for name in ("param", "m", "v"):
        _close(gpu, dev[name], ref[name], dtype, f"{kind} {name} with device lr and t")
    before = {k: gpu.to_numpy(v) for k, v in dev.items()}
    state[NONFINITE] = 1.0
    gpu._advance_step_count(t, state)
    _run_update(gpu, kind, dev, lr=lr, t=t, state=state)  # flag set: nothing moves, t included
    for name, value in before.items():
        np.testing.assert_array_equal(gpu.to_numpy(dev[name]), value, err_msg=f"{kind} changed {name} after divergence")
    assert gpu.to_numpy(t)[0] == (7.0 if counts else 6.0)


# ---------------------------------------------------------------------------------------------- checks, step state
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", VECTORS)
def test_all_finite_finds_one_bad_element_anywhere(gpu, rng, size, dtype):
    check_all_finite_finds_one_bad_element_anywhere(gpu, rng, size, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_guard_commit_and_begin_step(gpu, dtype):
    check_guard_commit_and_begin_step(gpu, dtype, size=100003, bad_at=77777)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "output,units,m", [("sigmoid", 1, 1), ("sigmoid", 3, 1025), ("softmax", 10, 1025), ("softmax", 33, 31)]
)
def test_record_step_counts_what_numpy_counts(gpu, rng, output, units, m, dtype):
    A = rng.random((units, m))
    A[0, : m // 3] = np.nan  # a diverged step's probabilities: NaN counts as numpy.argmax counts it
    A = _as(A, dtype)
    Y = _labels(rng, output, units, m)
    state_ref, state = np.zeros(STATE_SIZE), gpu.zeros((STATE_SIZE,), "float64")
    REF.record_step(state_ref, np.array([0.25], dtype), A, Y, output)
    gpu.record_step(state, _on(gpu, [0.25], dtype), _on(gpu, A, dtype), _on(gpu, Y, dtype), output)
    np.testing.assert_array_equal(gpu.to_numpy(state), state_ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", MATRICES, ids=str)
def test_add_l2_cost_sums_squares_in_float64(gpu, rng, shape, dtype):
    weights = [_as(rng.standard_normal(shape), dtype), _as(rng.standard_normal(shape[::-1]), dtype)]
    state_ref, state = np.zeros(STATE_SIZE), gpu.zeros((STATE_SIZE,), "float64")
    REF.add_l2_cost(state_ref, weights, 0.3)
    gpu.add_l2_cost(state, [_on(gpu, W, dtype) for W in weights], 0.3)
    _close(gpu, state, state_ref, dtype, "L2 cost", rtol=gradient_rtol(dtype))
