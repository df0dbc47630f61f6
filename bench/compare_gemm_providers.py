"""Is oneMKL (the `mkl` wheel, cblas_?gemm through ctypes) faster than numpy's BLAS on a step's GEMMs?

Runs the matrix products of one training step of each case (dnn.perf.GemmFloor) with numpy's matmul and
with MKL's cblas_sgemm/cblas_dgemm on the same buffers, checks that both agree, and prints medians and
the ratio. Usage (MKL outside the project's environment, e.g. `python -m venv /tmp/mkl && /tmp/mkl/bin/pip
install mkl`):

    LD_LIBRARY_PATH=/tmp/mkl/lib python bench/compare_gemm_providers.py /tmp/mkl/lib/libmkl_rt.so.3 A,B,C,D
"""

import ctypes
import statistics
import sys
import time

import numpy as np

import dnn
from dnn.perf import CASES, GemmFloor
from dnn.tolerances import gradient_rtol, relative_difference

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _operand(a):
    """(C-contiguous array, transpose flag) for a C-contiguous array or the transpose of one."""
    return (a, NO_TRANS) if a.flags.c_contiguous else (a.T, TRANS)


def mkl_products(mkl, floor):
    """A function running every product of `floor` through MKL's cblas_?gemm into the same outputs."""
    single = floor.dtype == np.float32
    gemm, scalar = (mkl.cblas_sgemm, ctypes.c_float) if single else (mkl.cblas_dgemm, ctypes.c_double)
    calls = []
    for a, b, out in floor.products:
        (a0, ta), (b0, tb) = _operand(a), _operand(b)
        M, N = out.shape
        K = a.shape[1]
        ptr = lambda x: x.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
        calls.append(
            (
                ROW_MAJOR,
                ta,
                tb,
                M,
                N,
                K,
                scalar(1.0),
                ptr(a0),
                a0.shape[1],
                ptr(b0),
                b0.shape[1],
                scalar(0.0),
                ptr(out),
                N,
            )
        )

    def run():
        for args in calls:
            gemm(*args)

    return run


def main(library, cases):
    mkl = ctypes.CDLL(library)
    numpy_backend = dnn.get_backend("numpy")
    for name in cases.split(","):
        case = CASES[name]
        for dtype in ("float32", "float64"):
            floor = GemmFloor(numpy_backend, case.layer_dims, case.m, dtype)
            via_mkl = mkl_products(mkl, floor)
            floor()
            expected = [out.copy() for _, _, out in floor.products]
            via_mkl()
            error = max(relative_difference(out, ref) for (_, _, out), ref in zip(floor.products, expected))
            assert error <= gradient_rtol(dtype), f"MKL and numpy disagree by {error:.2g} on {name} {dtype}"
            times = {"numpy": [], "mkl": []}
            for _ in range(5 if name in ("C", "E") else 30):
                for label, run in (("numpy", floor), ("mkl", via_mkl)):
                    start = time.perf_counter()
                    run()
                    times[label].append(time.perf_counter() - start)
            a, b = statistics.median(times["numpy"]), statistics.median(times["mkl"])
            print(
                f"{name} {dtype}: numpy {a * 1e3:8.3f} ms   mkl {b * 1e3:8.3f} ms   mkl/numpy {b / a:.2f}   max rel diff {error:.1e}"
            )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "A,B,C,D")
