"""Every registered activation, on every backend here, computes what its declaration says (`dnn/activations.py`).

Parametrized over the registry, so an activation added there is tested here with no edit: forward and backward
(from A and from Z, with db, in place) on numpy, array_api_strict, numba (serial and parallel kernels), the CUDA
sources run on the CPU (`tests/cuda_on_cpu`) and, where there is a GPU, on cupy, in
float32 and float64, against the declaration evaluated by NumPy in float64: random inputs at a few shapes
within `dnn.tolerances`, and special inputs (NaN, ±inf, ±0, at and near each kink, ±1e30, ±1e300, tiny and
subnormal) with NaN exactly where the reference has NaN and the same infinities. A numerical gradient check
of a small network per activation checks the declared derivative against the declared value.
"""

import numpy as np
import pytest

from cuda_on_cpu import build
from dnn import Network
from dnn.activations import ACTIVATIONS, REGISTRY
from dnn.backends import available_backends, get_backend
from dnn.backends.numpy_backend import NumpyBackend
from dnn.gradcheck import gradcheck
from dnn.tolerances import gradient_rtol, kernel_rtol, relative_difference

DTYPES = ["float32", "float64"]
SHAPES = [(1, 1), (5, 1), (7, 13), (33, 31), (1, 1025), (257, 1025)]  # the last: several CUDA blocks per row


def _numba(parallel=False):
    pytest.importorskip("numba")
    from dnn.backends.numba_backend import NumbaBackend

    backend = NumbaBackend()
    backend.parallel_min_elements = 0 if parallel else 1 << 62  # one code path for every size
    return backend


def _cuda_on_cpu():
    if build.compiler() is None:
        pytest.skip("no C++ compiler ($CXX, g++ or c++): CUDA kernels cannot run on the CPU")
    from cuda_on_cpu.fake_cupy import cpu_cupy_backend
    from dnn.kernels.cupy_activations import SOURCE

    build.builder().build_all([SOURCE])
    return cpu_cupy_backend()


def _array_api_strict():
    pytest.importorskip("array_api_strict")
    from dnn.backends.array_api_backend import ArrayApiBackend

    return ArrayApiBackend()


def _cupy():
    status = {s.name: s for s in available_backends()}["cupy"]
    if not status.available:
        pytest.skip(f"cupy backend unavailable: {status.reason}")
    return get_backend("cupy")


BACKENDS = {
    "numpy": NumpyBackend,
    "array_api_strict": _array_api_strict,
    "numba": _numba,
    "numba-parallel": lambda: _numba(parallel=True),
    "cuda_on_cpu": _cuda_on_cpu,
    "cupy": _cupy,  # the same CUDA sources on a GPU, where there is one
}


@pytest.fixture(scope="module", params=list(BACKENDS))
def backend(request):
    return BACKENDS[request.param]()


def _on(backend, a, dtype):
    return backend.asarray(np.array(a, dtype=dtype))  # a copy: the numpy backend would share `a`


def _poisoned(backend, shape, dtype):
    return backend.asarray(np.full(shape, np.nan, dtype=dtype))


def _reference_forward(name, z):
    """g(z) as the declaration says, evaluated by NumPy in float64 on the values the kernel saw."""
    out = np.empty(z.shape)
    REGISTRY[name].writers.forward(np, out, np.asarray(z, dtype=np.float64))
    return out


def _reference_backward(name, d, a=None, z=None):
    out, declared = np.empty(d.shape), REGISTRY[name]
    d = np.asarray(d, dtype=np.float64)
    if a is not None:
        declared.writers.backward(np, out, d, np.asarray(a, dtype=np.float64))
    else:
        declared.writers.backward_from_z(np, out, d, np.asarray(z, dtype=np.float64))
    return out


def _close(actual, expected, rtol, what):
    difference = relative_difference(actual, expected)
    assert difference <= rtol, f"{what}: relative difference {difference:.3g} > {rtol:g}"


# ---------------------------------------------------------------------------------------------- random inputs
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_forward_computes_the_declared_value(backend, name, shape, dtype, rng):
    Z, b = (rng.standard_normal(shape) * 3).astype(dtype), rng.standard_normal((shape[0], 1)).astype(dtype)
    expected = _reference_forward(name, Z + b)  # Z + b rounded to dtype, as the kernel adds it
    Zb, out = _on(backend, Z, dtype), _poisoned(backend, shape, dtype)
    backend.bias_activation_forward(Zb, _on(backend, b, dtype), name, out)
    _close(backend.to_numpy(out), expected, kernel_rtol(dtype), f"{name}(Z + b)")
    _close(backend.to_numpy(Zb), Z + b, 0, "Z + b kept in Z")
    Zb = _on(backend, Z, dtype)
    backend.bias_activation_forward(Zb, _on(backend, b, dtype), name, Zb)  # in place, as a network runs it
    _close(backend.to_numpy(Zb), expected, kernel_rtol(dtype), f"in-place {name}(Z + b)")
    out, Zb = _poisoned(backend, shape, dtype), _on(backend, Z, dtype)
    backend.activation_forward(Zb, name, out)
    _close(backend.to_numpy(out), _reference_forward(name, Z), kernel_rtol(dtype), f"{name}(Z)")
    np.testing.assert_array_equal(backend.to_numpy(Zb), Z, err_msg="activation_forward leaves Z alone")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("source", ["A", "Z"])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backward_computes_the_declared_derivative_and_db(backend, name, source, shape, dtype, rng):
    Z, dA = (rng.standard_normal(shape) * 3).astype(dtype), rng.standard_normal(shape).astype(dtype)
    A = _reference_forward(name, Z).astype(dtype)  # a layer output of the activation's range
    given = {"A": A} if source == "A" else {"Z": Z}
    expected = _reference_backward(name, dA, a=given.get("A"), z=given.get("Z"))  # (n, m)
    m = shape[1]
    on_backend = {key: _on(backend, value, dtype) for key, value in given.items()}
    out, db = _poisoned(backend, shape, dtype), _poisoned(backend, (shape[0], 1), dtype)
    backend.activation_backward(_on(backend, dA, dtype), name, out, db=db, db_scale=1 / m, **on_backend)
    rtol = gradient_rtol(dtype)  # 1 - a², a(1 - a) cancel: the gradient table's tolerance, as for any gradient
    _close(backend.to_numpy(out), expected, rtol, f"dA * {name}' from {source}")
    _close(backend.to_numpy(db), expected.sum(axis=1, keepdims=True) / m, rtol, f"db of {name} from {source}")
    dAb = _on(backend, dA, dtype)
    backend.activation_backward(dAb, name, dAb, **on_backend)  # in place, no db
    _close(backend.to_numpy(dAb), expected, rtol, f"in-place dA * {name}' from {source}")


# ---------------------------------------------------------------------------------------------- special inputs
def _special_z(name, dtype, backend) -> np.ndarray:
    """One special pre-activation per row: NaN, ±inf, ±0, ±1e30, ±1e300 (inf in float32), tiny and subnormal,
    and each kink of `name` with its neighbours one rounding step away."""
    info = np.finfo(dtype)
    values = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 1e300, -1e300, 1e-30, -1e-30, 1.0, -1.0]
    subnormal = [info.smallest_subnormal, -info.smallest_subnormal, info.tiny / 2]
    if not (type(backend).__name__ == "CupyBackend" and dtype == "float32"):
        values += subnormal  # CuPy compiles with -ftz=true: float32 subnormals are read as 0 on the GPU
    for kink in REGISTRY[name].kinks:
        k = np.asarray(kink, dtype=dtype)
        values += [kink, np.nextafter(k, k + 1), np.nextafter(k, k - 1), kink + 1e-7, kink - 1e-7]
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(dtype)[:, None]  # (K, 1)


def _special_d(dtype, columns, rng) -> np.ndarray:
    d = np.concatenate([[np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30], rng.standard_normal(columns - 6)])
    return d.astype(dtype)[None, :]  # (1, columns)


def _same_specials(actual, expected, rtol, what):
    """NaN exactly where `expected` has NaN, the same infinities, each row's finite values within rtol.

    `expected` is first rounded to the kernel's dtype: a float64 value beyond float32's range (0.01 times a
    subnormal) is not a difference of the kernel's arithmetic.
    """
    expected = expected.astype(actual.dtype).astype(np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaN positions")
    infinite = np.isinf(expected)
    np.testing.assert_array_equal(actual[infinite], expected[infinite], err_msg=f"{what}: infinities")
    finite = np.isfinite(expected)
    for i in range(expected.shape[0]):  # row i: one special input, several d: judged on its own scale
        _close(actual[i][finite[i]], expected[i][finite[i]], rtol, f"{what}, row {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_special_inputs_give_the_declared_nan_inf_and_values(backend, name, dtype, rng):
    z = _special_z(name, dtype, backend)
    Z = np.repeat(z, 9, axis=1)  # (K, 9): one special value per row
    dA = np.repeat(_special_d(dtype, 9, rng), Z.shape[0], axis=0)  # (K, 9): special gradients per column
    with np.errstate(all="ignore"):
        expected = _reference_forward(name, Z)
        out = _poisoned(backend, Z.shape, dtype)
        backend.activation_forward(_on(backend, Z, dtype), name, out)
        _same_specials(backend.to_numpy(out), expected, kernel_rtol(dtype), f"{name} {dtype} forward")
        A = expected.astype(dtype)
        for source, given in (("A", {"A": A}), ("Z", {"Z": Z})):
            expected_dZ = _reference_backward(name, dA, a=given.get("A"), z=given.get("Z"))
            out = _poisoned(backend, Z.shape, dtype)
            on_backend = {key: _on(backend, value, dtype) for key, value in given.items()}
            backend.activation_backward(_on(backend, dA, dtype), name, out, **on_backend)
            _same_specials(backend.to_numpy(out), expected_dZ, kernel_rtol(dtype), f"{name} {dtype} dZ from {source}")


# ---------------------------------------------------------------------------------------------- gradient check
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backpropagation_agrees_with_central_differences(name, rng):
    net = Network([4, 5, 3, 1], activations=name, dtype="float64", backend="numpy", seed=3)
    X, Y = rng.standard_normal((4, 7)), (rng.random((1, 7)) < 0.5).astype(np.float64)
    result = gradcheck(net, X, Y)
    assert result.passed, f"{name}: difference {result.difference:.3g}"


def test_an_unknown_activation_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="valid activations: " + ", ".join(ACTIVATIONS)):
        Network([2, 2, 1], activations="swish")
