"""numpy's own CBLAS GEMM, found and called from compiled code, computes alpha·op(a)·op(b) + beta·c.

Checked against numpy.matmul in float64 on fresh random inputs at several sizes (1x1, odd sizes, one
column), every transposition, and alpha/beta values that include beta = 0 over a NaN-poisoned output
(BLAS must not read it) and beta = 1 (the update a training step folds into its products).
"""

import os

import numpy as np
import pytest

pytest.importorskip("numba")

from dnn.backends.blas import CblasGemm, numpy_cblas_gemm  # noqa: E402
from dnn.kernels.numba_blas import gemm  # noqa: E402
from dnn.tolerances import gradient_rtol, relative_difference  # noqa: E402

SIZES = [(1, 1, 1), (1, 7, 3), (5, 1, 9), (13, 11, 1), (64, 33, 70), (300, 257, 129)]  # (M, N, K)
TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]


def _numpy_wheel_bundles_openblas() -> bool:
    return np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"] == "scipy-openblas"


@pytest.fixture(scope="module")
def cblas():
    found = numpy_cblas_gemm()
    if found is None:
        if _numpy_wheel_bundles_openblas():
            pytest.fail("numpy bundles scipy-openblas, but its cblas_?gemm was not found")
        pytest.skip("this numpy does not bundle its BLAS; the numba backend uses numpy.matmul")
    return found


def _operands(rng, M, N, K, trans_a, trans_b, dtype):
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
    return a, b


def _expected(a, b, c, trans_a, trans_b, alpha, beta):
    product = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    return alpha * product + (0.0 if beta == 0 else beta * c.astype(np.float64))


def test_numpy_cblas_is_the_library_numpy_loaded(cblas):
    assert isinstance(cblas, CblasGemm)
    assert cblas.sgemm and cblas.dgemm and cblas.sgemm != cblas.dgemm
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs Linux's /proc/self/maps to list the loaded libraries")
    with open("/proc/self/maps") as maps:  # a file numpy itself mapped: the same library, the same thread pool
        assert os.path.realpath(cblas.path) in maps.read()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("M,N,K", SIZES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.37, 1.0), (2.5, -0.5)])
def test_compiled_gemm_matches_matmul(cblas, rng, dtype, M, N, K, trans_a, trans_b, alpha, beta):
    a, b = _operands(rng, M, N, K, trans_a, trans_b, dtype)
    c = np.full((M, N), np.nan, dtype) if beta == 0 else rng.standard_normal((M, N)).astype(dtype)
    expected = _expected(a, b, c, trans_a, trans_b, alpha, beta)
    gemm(cblas.address(dtype), cblas.ilp64, a, b, c, trans_a, trans_b, c.dtype.type(alpha), c.dtype.type(beta))
    assert relative_difference(c, expected) <= gradient_rtol(dtype)  # sums of K products


def test_compiled_gemm_passes_32_bit_integers_to_an_lp64_library(rng):
    """scipy bundles an LP64 OpenBLAS (32-bit integers): the narrow branch of the call, exercised for real."""
    import ctypes
    import glob

    scipy = pytest.importorskip("scipy")
    libraries = glob.glob(
        os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs", "libscipy_openblas-*")
    )
    library = next((ctypes.CDLL(p) for p in libraries if hasattr(ctypes.CDLL(p), "scipy_cblas_dgemm")), None)
    if library is None:
        pytest.skip("no LP64 scipy-openblas beside scipy")
    address = ctypes.cast(library.scipy_cblas_dgemm, ctypes.c_void_p).value
    for trans_a, trans_b in TRANSPOSES:
        a, b = _operands(rng, 9, 7, 5, trans_a, trans_b, "float64")
        c = rng.standard_normal((9, 7))
        expected = _expected(a, b, c, trans_a, trans_b, 0.5, 1.0)
        gemm(address, False, a, b, c, trans_a, trans_b, 0.5, 1.0)
        assert relative_difference(c, expected) <= gradient_rtol("float64")
