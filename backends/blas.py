"""numpy's own CBLAS GEMM, found in the library numpy already loaded, for products with alpha and beta.

`numpy.matmul` computes out = a·b only; BLAS computes C ← alpha·op(A)·op(B) + beta·C in the same time.
With beta = 1 and alpha = -lr a training step folds the SGD update of W into the product that computes
its gradient, so the update needs no pass of its own (see `Network.train_step`). Calling numpy's copy of
the library, not another one (scipy bundles its own OpenBLAS), keeps one BLAS thread pool: two pools on
the same cores slowed each other's next calls.

Found by symbol name in the shared libraries shipped inside numpy's wheel (numpy.libs, .dylibs): the
scipy-openblas builds export ``scipy_cblas_sgemm64_`` (64-bit integers) or ``scipy_cblas_sgemm``; a plain
``cblas_sgemm`` is accepted too. Each candidate is checked against `numpy.matmul` on small products of
both dtypes before it is used. numpy linked to a system BLAS (no library inside the wheel) gives None,
and callers fall back to `numpy.matmul`.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from typing import NamedTuple

import numpy

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
#: (symbol prefix, symbol suffix, 64-bit integers) tried in this order in each candidate library.
_SYMBOLS = (("scipy_cblas_", "64_", True), ("cblas_", "64_", True), ("scipy_cblas_", "", False), ("cblas_", "", False))


class CblasGemm(NamedTuple):
    """Addresses of cblas_sgemm and cblas_dgemm in the library numpy uses, and their integer width."""

    sgemm: int
    dgemm: int
    ilp64: bool  # True: M, N, K and leading dimensions are 64-bit integers
    path: str

    def address(self, dtype) -> int:
        """The GEMM for `dtype` (float32 or float64)."""
        return self.sgemm if numpy.dtype(dtype) == numpy.float32 else self.dgemm


def _candidate_libraries() -> list[str]:
    root = os.path.dirname(numpy.__file__)
    found = []
    for folder in (os.path.join(os.path.dirname(root), "numpy.libs"), os.path.join(root, ".dylibs")):
        found += sorted(glob.glob(os.path.join(folder, "*blas*")))
    return found


def _gemm_through_ctypes(
    function, ilp64: bool, a, b, out, trans_a: bool, trans_b: bool, alpha: float, beta: float
) -> None:
    """out ← alpha·op(a)·op(b) + beta·out with C-contiguous a, b, out, through a ctypes CBLAS function."""
    integer = ctypes.c_int64 if ilp64 else ctypes.c_int32
    scalar = ctypes.c_float if out.dtype == numpy.float32 else ctypes.c_double
    M, N = out.shape
    K = a.shape[0] if trans_a else a.shape[1]
    function.restype = None
    function(
        ctypes.c_int(ROW_MAJOR),
        ctypes.c_int(TRANS if trans_a else NO_TRANS),
        ctypes.c_int(TRANS if trans_b else NO_TRANS),
        integer(M),
        integer(N),
        integer(K),
        scalar(alpha),
        ctypes.c_void_p(a.ctypes.data),
        integer(a.shape[1]),
        ctypes.c_void_p(b.ctypes.data),
        integer(b.shape[1]),
        scalar(beta),
        ctypes.c_void_p(out.ctypes.data),
        integer(N),
    )


def _agrees_with_matmul(sgemm, dgemm, ilp64: bool) -> bool:
    """True when both functions compute alpha·op(a)·op(b) + beta·out like numpy on small transposed products."""
    rng = numpy.random.default_rng(0)
    for function, dtype in ((sgemm, numpy.float32), (dgemm, numpy.float64)):
        for trans_a, trans_b in ((False, False), (False, True), (True, False), (True, True)):
            a = rng.standard_normal((5, 3) if trans_a else (3, 5)).astype(dtype)  # op(a): (3, 5)
            b = rng.standard_normal((4, 5) if trans_b else (5, 4)).astype(dtype)  # op(b): (5, 4)
            out = rng.standard_normal((3, 4)).astype(dtype)
            expected = -0.5 * ((a.T if trans_a else a).astype(numpy.float64) @ (b.T if trans_b else b)) + 2.0 * out
            _gemm_through_ctypes(function, ilp64, a, b, out, trans_a, trans_b, -0.5, 2.0)
            if not numpy.allclose(out, expected, rtol=1e-5, atol=1e-5):
                return False
    return True


@functools.lru_cache(maxsize=None)
def numpy_cblas_gemm() -> CblasGemm | None:
    """numpy's own cblas_sgemm/cblas_dgemm, checked against numpy.matmul; None when not found or wrong."""
    for path in _candidate_libraries():
        try:
            library = ctypes.CDLL(path)  # already loaded by numpy: the same handle, the same thread pool
        except OSError:
            continue
        for prefix, suffix, ilp64 in _SYMBOLS:
            try:
                sgemm, dgemm = getattr(library, f"{prefix}sgemm{suffix}"), getattr(library, f"{prefix}dgemm{suffix}")
            except AttributeError:
                continue
            if _agrees_with_matmul(sgemm, dgemm, ilp64):
                as_int = lambda f: ctypes.cast(f, ctypes.c_void_p).value  # noqa: E731
                return CblasGemm(as_int(sgemm), as_int(dgemm), ilp64, path)
    return None
