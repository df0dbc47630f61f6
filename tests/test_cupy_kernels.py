"""On a GPU: every CUDA kernel of the CuPy backend computes what the NumPy reference computes in float64.

Each kernel runs on random inputs drawn on the host in float64 at several shapes (1x1, odd sizes, one
example, one unit, a large one), in float32 and float64, with every output buffer poisoned with NaN first
so an element a kernel leaves unwritten fails the comparison; tolerances from dnn/tolerances.py. Without
a usable CUDA device the whole module is skipped with the reason `python -m dnn backends` gives.
"""

import os

import numpy as np
import pytest

from dnn.backends import available_backends
from dnn.backends.numpy_backend import NumpyBackend
from dnn.kernels.step_state import NONFINITE, STATE_SIZE, STEP_CORRECT, STEP_COST, STEP_EXAMPLES
from dnn.optimizers import OPTIMIZERS
from dnn.tolerances import gradient_rtol, kernel_rtol, relative_difference
from optimizer_helpers import run_update
from step_state_checks import check_all_finite_finds_one_bad_element_anywhere, check_guard_commit_and_begin_step

_STATUS = {s.name: s for s in available_backends()}["cupy"]
pytestmark = pytest.mark.skipif(not _STATUS.available, reason=f"cupy backend unavailable: {_STATUS.reason}")

SHAPES = [(1, 1), (7, 13), (33, 1), (1, 300), (257, 1025)]
DTYPES = ["float32", "float64"]
REF = NumpyBackend()


@pytest.fixture(scope="module")
def gpu():
    from dnn.backends import get_backend

    return get_backend("cupy")


@pytest.fixture
def rng():
    return np.random.default_rng(20261127)


def _on(gpu, a, dtype):
    return gpu.asarray(np.asarray(a, dtype=dtype))


def _poisoned(gpu, shape, dtype):
    return gpu.asarray(np.full(shape, np.nan, dtype=dtype))


def _close(gpu, actual, expected, dtype, what, rtol=None):
    difference = relative_difference(gpu.to_numpy(actual), expected)
    limit = kernel_rtol(dtype) if rtol is None else rtol
    assert difference <= limit, f"{what} {dtype}: relative difference {difference:.3g} > {limit:g}"


# ---------------------------------------------------------------------------------------------- hidden layers
# The activations' kernels, on the GPU as on every backend: tests/test_activations.py.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_bias_grad_sums_rows(gpu, rng, shape, dtype):
    dZ = rng.standard_normal(shape).astype(dtype)
    db_ref = np.empty((shape[0], 1))
    REF.bias_grad(dZ.astype(np.float64), db_ref, 0.25)
    db = _poisoned(gpu, (shape[0], 1), dtype)
    gpu.bias_grad(_on(gpu, dZ, dtype), db, 0.25)
    _close(gpu, db, db_ref, dtype, "db", rtol=gradient_rtol(dtype))


# ---------------------------------------------------------------------------------------------- output layer
def _labels(rng, output, units, m):
    if output == "sigmoid":
        return (rng.random((units, m)) < 0.5).astype(np.float64)
    return np.eye(units)[:, rng.integers(0, units, m)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 7, 209, 4099])
@pytest.mark.parametrize("output,units", [("sigmoid", 1), ("sigmoid", 3), ("softmax", 2), ("softmax", 10)])
def test_output_layer_cost_and_gradient(gpu, rng, output, units, m, dtype):
    shape = (units, m)
    Z = (rng.standard_normal(shape) * 4).astype(dtype).astype(np.float64)
    b = rng.standard_normal((units, 1)).astype(dtype).astype(np.float64)
    Y = _labels(rng, output, units, m)
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


def test_a_confident_softmax_column_keeps_its_tiny_cost(gpu):
    """The log1p form: cost ≈ e^-40 for a column whose right class leads by 40, not 0 (float64)."""
    Z, Y = np.array([[40.0], [0.0]]), np.array([[1.0], [0.0]])
    cost = _poisoned(gpu, (1,), "float64")
    gpu.output_layer(
        _on(gpu, Z, "float64"),
        _on(gpu, np.zeros((2, 1)), "float64"),
        "softmax",
        _poisoned(gpu, (2, 1), "float64"),
        Y=_on(gpu, Y, "float64"),
        cost=cost,
    )
    assert relative_difference(gpu.to_numpy(cost), np.array([np.log1p(np.exp(-40.0))])) <= kernel_rtol("float64")


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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 255, 256, 1000003])
@pytest.mark.parametrize("kind", [*OPTIMIZERS, "axpy", "multiply"])
def test_updates_over_the_flat_vector(gpu, rng, kind, size, dtype):
    host = {k: v.astype(dtype).astype(np.float64) for k, v in _update_arrays(rng, size).items()}
    if kind == "multiply":
        host["param"][:] = np.nan  # the product's output, poisoned
    ref = {k: v.copy() for k, v in host.items()}
    _run_update(REF, kind, ref)
    dev = {k: _on(gpu, v, dtype) for k, v in host.items()}
    _run_update(gpu, kind, dev)
    for name in ("param", "m", "v"):
        _close(gpu, dev[name], ref[name], dtype, f"{kind} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_updates_read_lr_and_t_on_the_device_and_skip_a_diverged_step(gpu, rng, kind, dtype):
    host = {k: v.astype(dtype).astype(np.float64) for k, v in _update_arrays(rng, 999).items()}
    ref = {k: v.copy() for k, v in host.items()}
    _run_update(REF, kind, ref, lr=0.02, t=7)
    dev = {k: _on(gpu, v, dtype) for k, v in host.items()}
    state = gpu.zeros((STATE_SIZE,), "float64")
    lr, t = _on(gpu, [0.02], "float64"), _on(gpu, [7.0], "float64")
    _run_update(gpu, kind, dev, lr=lr, t=t, state=state)  # flag clear: the update happens
    for name in ("param", "m", "v"):
        _close(gpu, dev[name], ref[name], dtype, f"{kind} {name} with device lr and t")
    before = {k: gpu.to_numpy(v) for k, v in dev.items()}
    state[NONFINITE] = 1.0
    _run_update(gpu, kind, dev, lr=lr, t=t, state=state)  # flag set: nothing moves
    for name, value in before.items():
        np.testing.assert_array_equal(gpu.to_numpy(dev[name]), value, err_msg=f"{kind} changed {name} after divergence")


# ---------------------------------------------------------------------------------------------- checks, step state
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 300, 1000003])
def test_all_finite_finds_one_bad_element_anywhere(gpu, rng, size, dtype):
    check_all_finite_finds_one_bad_element_anywhere(gpu, rng, size, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_guard_step_is_sticky_and_commit_step_adds_only_finite_steps(gpu, dtype):
    check_guard_commit_and_begin_step(gpu, dtype, size=1000, bad_at=777)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output,units", [("sigmoid", 1), ("sigmoid", 3), ("softmax", 10)])
def test_record_step_counts_what_the_networks_accuracy_counts(gpu, rng, output, units, dtype):
    m = 1001
    A = rng.random((units, m))
    if output == "softmax":
        A /= A.sum(axis=0, keepdims=True)
    A = A.astype(dtype).astype(np.float64)  # the values the kernel compares, so no near-tie flips in rounding
    Y = _labels(rng, output, units, m)
    predicted = REF.predict_classes(A, output)
    truth = Y.argmax(axis=0)[None, :] if output == "softmax" else Y
    expected = float(np.mean(predicted == truth)) * m
    state = gpu.zeros((STATE_SIZE,), "float64")
    cost = _on(gpu, np.array([0.25]), dtype)
    gpu.record_step(state, cost, _on(gpu, A, dtype), _on(gpu, Y, dtype), output)
    assert gpu.to_numpy(state)[STEP_CORRECT] == pytest.approx(expected, rel=1e-12)
    assert gpu.to_numpy(state)[STEP_COST] == 0.25 * m and gpu.to_numpy(state)[STEP_EXAMPLES] == m


# ---------------------------------------------------------------------------------------------- cuBLAS
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (7, 13, 5), (209, 12288, 20), (1, 4096, 4096)])
def test_gemm_with_alpha_and_beta(gpu, rng, M, K, N, trans_a, trans_b, dtype):
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
    c = rng.standard_normal((M, N)).astype(dtype)
    expected = -0.25 * ((a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)) + 0.5 * c
    out = _on(gpu, c, dtype)
    gpu.gemm(_on(gpu, a, dtype), _on(gpu, b, dtype), out, trans_a=trans_a, trans_b=trans_b, alpha=-0.25, beta=0.5)
    _close(gpu, out, expected, dtype, "gemm", rtol=gradient_rtol(dtype))
    out = _poisoned(gpu, (M, N), dtype)  # beta = 0 ignores NaN in out, as BLAS does
    gpu.gemm(_on(gpu, a, dtype), _on(gpu, b, dtype), out, trans_a=trans_a, trans_b=trans_b)
    _close(
        gpu,
        out,
        (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b),
        dtype,
        "gemm beta=0",
        rtol=gradient_rtol(dtype),
    )


def test_gemm_runs_on_the_current_stream_and_tf32_is_off_by_default(gpu, rng):
    import cupy

    assert gpu.tf32 is (os.environ.get("DNN_TF32") == "1")
    a, b = rng.standard_normal((64, 64)).astype("float32"), rng.standard_normal((64, 64)).astype("float32")
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        out = gpu.zeros((64, 64), "float32")
        gpu.gemm(gpu.asarray(a), gpu.asarray(b), out)
        stream.synchronize()
    _close(gpu, out, a.astype(np.float64) @ b, "float32", "gemm on a side stream", rtol=gradient_rtol("float32"))


def test_inputs_no_kernel_covers_reach_the_reference(gpu, rng):
    Z = rng.standard_normal((5, 7))
    out = gpu.empty((7, 5), "float64")
    gpu.activation_forward(_on(gpu, Z, "float64").T, "relu", out)  # transposed view
    np.testing.assert_array_equal(gpu.to_numpy(out), np.maximum(Z.T, 0))
    half = _on(gpu, Z, "float16")
    assert gpu.all_finite(half)
