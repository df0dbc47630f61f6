"""Without a GPU: the backend's cuBLAS calls, through its own ctypes binding, obey cuBLAS's argument rules.

The library is `tests/cuda_on_cpu/cublas_standin.cpp`, loaded by `dnn.backends.cublas.Cublas` as it loads
libcublas: it refuses what cuBLAS refuses (op codes, negative sizes, leading dimensions below the rows a
column-major operand needs, a handle it did not create), checks every operand lies in one device
allocation, and computes op(A)·op(B) in float64 on the column-major reading of the row-major arrays.
"""

import ctypes

import numpy as np
import pytest

from cuda_on_cpu import build
from dnn.backends.cublas import check_status
from dnn.errors import BackendUnavailableError
from dnn.tolerances import gradient_rtol, relative_difference

pytestmark = pytest.mark.skipif(
    build.compiler() is None, reason="no C++ compiler ($CXX, g++ or c++): cuBLAS stand-in not built"
)

DTYPES = ["float32", "float64"]


@pytest.fixture(scope="module")
def gpu():
    from cuda_on_cpu.fake_cupy import cpu_cupy_backend

    return cpu_cupy_backend()


@pytest.fixture
def standin(gpu):
    return gpu.xp.standin


def _op(a, transposed):
    return a.T if transposed else a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (7, 13, 5), (33, 1, 31), (1, 1025, 3)])
def test_products_with_alpha_beta_and_transposes(gpu, standin, M, K, N, trans_a, trans_b, dtype):
    rng = np.random.default_rng(M * 100 + K)
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
    c = rng.standard_normal((M, N)).astype(dtype)
    expected = -0.25 * (_op(a, trans_a).astype(np.float64) @ _op(b, trans_b)) + 0.5 * c
    out = gpu.asarray(c)
    gpu.gemm(gpu.asarray(a), gpu.asarray(b), out, trans_a=trans_a, trans_b=trans_b, alpha=-0.25, beta=0.5)
    assert relative_difference(gpu.to_numpy(out), expected) <= gradient_rtol(dtype)
    out = gpu.empty((M, N), dtype)  # NaN: beta = 0 never reads it, as BLAS
    gpu.gemm(gpu.asarray(a), gpu.asarray(b), out, trans_a=trans_a, trans_b=trans_b)
    assert relative_difference(
        gpu.to_numpy(out), _op(a, trans_a).astype(np.float64) @ _op(b, trans_b)
    ) <= gradient_rtol(dtype)
    call = standin.calls[-1]
    # out = op(a)·op(b) row-major is outᵀ = op(b)ᵀ·op(a)ᵀ column-major: m = N, n = M, lda = b's columns, ldb = a's columns
    assert (call.m, call.n, call.k, call.transa, call.transb) == (N, M, K, int(trans_b), int(trans_a))
    assert (call.lda, call.ldb, call.ldc) == (b.shape[1], a.shape[1], N)


def test_tf32_is_asked_only_for_float32_products_of_a_tf32_backend(standin):
    from cuda_on_cpu.fake_cupy import cpu_cupy_backend

    tf32 = cpu_cupy_backend(tf32=True)
    for dtype in DTYPES:
        a = tf32.asarray(np.ones((4, 4), dtype))
        tf32.gemm(a, a, tf32.empty((4, 4), dtype))
    assert [call.math_mode for call in standin.calls[-2:]] == [3, 0]  # CUBLAS_TF32_TENSOR_OP_MATH, then default


@pytest.mark.parametrize(
    "change,status",
    [
        ({"lda": 2}, "INVALID_VALUE"),
        ({"transa": 5}, "INVALID_VALUE"),
        ({"k": -1}, "INVALID_VALUE"),
        ({"handle": 12345}, "NOT_INITIALIZED"),
    ],
)
def test_arguments_cuBLAS_refuses_are_refused(gpu, standin, change, status):
    a = gpu.asarray(np.ones((3, 4)))
    out = gpu.empty((3, 3), "float64")
    arguments = {
        "handle": standin.handle,
        "transa": 0,
        "transb": 1,
        "m": 3,
        "n": 3,
        "k": 4,
        "lda": 3,
        "ldb": 3,
        "ldc": 3,
    }
    arguments.update(change)
    function, scalar = gpu.cublas._gemm["float64"]
    result = function(
        arguments["handle"],
        arguments["transa"],
        arguments["transb"],
        arguments["m"],
        arguments["n"],
        arguments["k"],
        ctypes.byref(scalar(1.0)),
        a.data.ptr,
        arguments["lda"],
        a.data.ptr,
        arguments["ldb"],
        ctypes.byref(scalar(0.0)),
        out.data.ptr,
        arguments["ldc"],
    )
    with pytest.raises(BackendUnavailableError, match=f"cublasDgemm_v2 returned CUBLAS_STATUS_{status}"):
        check_status(result, "cublasDgemm_v2")


def test_an_operand_beyond_its_allocation_is_refused(gpu, standin):
    """A product told its operand is larger than the array (here: a transposed reading of too few rows)."""
    a, b = gpu.asarray(np.ones((2, 3))), gpu.asarray(np.ones((3, 2)))
    out = gpu.empty((4, 2), "float64")
    with pytest.raises(BackendUnavailableError, match="cublasDgemm_v2 returned CUBLAS_STATUS_INVALID_VALUE"):
        gpu.cublas.gemm(
            standin.handle, "float64", a.data.ptr, b.data.ptr, out.data.ptr, (4, 3), (3, 2), False, False, 1.0, 0.0
        )
    assert "B spans 96 bytes" in standin.refusals[-1]  # row-major a is cuBLAS's B: a (4, 3) reading of 6 doubles
