"""Without a GPU: the ctypes cuBLAS binding finds the right library, fails clearly, and maps row-major GEMMs right.

- Lookup: a libcublas already mapped into the process (the one CuPy loaded: a handle belongs to its
  library) comes before the nvidia-cublas wheel and the system's; libcublasLt is never taken for it.
- Missing library: BackendUnavailableError saying where it looked.
- With the nvidia-cublas wheel (in the `cuda-check` extra) and no device: cublasCreate_v2 answers
  CUBLAS_STATUS_NOT_INITIALIZED, raised as BackendUnavailableError.
- The row-major → column-major mapping of `Cublas.gemm` (operation flags, M, N, K, leading dimensions,
  α, β) checked against NumPy by standing a column-major GEMM written in NumPy in for cublas?gemm_v2.
"""

import ctypes
import ctypes.util
import os

import numpy as np
import pytest

from dnn.backends import cublas
from dnn.errors import BackendUnavailableError
from dnn.tolerances import gradient_rtol, relative_difference

MAPS = """\
7f00-7f01 r-xp 00000000 08:01 1 /opt/cuda/lib64/libcublasLt.so.12.4.5.8
7f02-7f03 r-xp 00000000 08:01 2 /site-packages/nvidia/cublas/lib/libcublas.so.12
7f04-7f05 r--p 00001000 08:01 2 /site-packages/nvidia/cublas/lib/libcublas.so.12
7f06-7f07 r-xp 00000000 00:00 0 [vdso]
7f08-7f09 rw-p 00000000 00:00 0
"""


def test_a_library_already_loaded_comes_first_and_lt_is_not_cublas(tmp_path):
    wheel = tmp_path / "nvidia" / "cu13" / "lib"
    wheel.mkdir(parents=True)
    (wheel / "libcublas.so.13").touch()
    (wheel / "libcublasLt.so.13").touch()
    found = cublas.library_candidates(maps_text=MAPS, search_paths=[str(tmp_path)], environ={})
    assert found[:2] == ["/site-packages/nvidia/cublas/lib/libcublas.so.12", str(wheel / "libcublas.so.13")]
    assert not any("cublasLt" in path for path in found)


def test_cuda_path_is_searched_after_the_wheels(tmp_path):
    lib = tmp_path / "lib64"
    lib.mkdir()
    (lib / "libcublas.so.12").touch()
    found = cublas.library_candidates(maps_text="", search_paths=[], environ={"CUDA_PATH": str(tmp_path)})
    assert found[0] == str(lib / "libcublas.so.12")


def test_no_library_anywhere_says_where_it_looked():
    with pytest.raises(
        BackendUnavailableError, match="libcublas not found: not loaded in this process, no nvidia-cublas wheel"
    ):
        cublas.load_cublas(candidates=[])


def test_a_file_that_is_not_cublas_is_refused_with_its_path(tmp_path):
    bogus = tmp_path / "libcublas.so.99"
    bogus.write_bytes(b"not a shared library")
    with pytest.raises(BackendUnavailableError, match=f"cannot load cuBLAS from {bogus}"):
        cublas.load_cublas(candidates=[str(bogus)])


def test_a_library_without_the_v2_entry_points_is_refused():
    libm = ctypes.util.find_library("m")
    with pytest.raises(BackendUnavailableError, match="has no cublasCreate_v2"):
        cublas.load_cublas(candidates=[libm])


def test_the_wheels_cublas_without_a_device_is_unavailable_not_a_crash():
    paths = cublas.wheel_libraries()
    if not paths:
        if os.environ.get("CI"):
            pytest.fail("CI installs the nvidia-cublas wheel with the cuda-check extra: pip install -e '.[cuda-check]'")
        pytest.skip("the nvidia-cublas wheel is not installed (pip install -e '.[cuda-check]')")
    library = cublas.load_cublas(candidates=paths)
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("a GPU is present: cublasCreate_v2 would succeed")
    with pytest.raises(BackendUnavailableError, match="cublasCreate_v2 returned CUBLAS_STATUS_NOT_INITIALIZED"):
        library.create_handle()


def test_status_codes_are_named():
    cublas.check_status(0, "cublasSgemm_v2")
    with pytest.raises(BackendUnavailableError, match="cublasSgemm_v2 returned CUBLAS_STATUS_INVALID_VALUE"):
        cublas.check_status(7, "cublasSgemm_v2")


class _ColumnMajorGemm:
    """cublas?gemm_v2's contract in NumPy, on host memory given by address (stands in for the library)."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def _matrix(self, address, rows, cols, ld):
        # column-major: element (i, j) at address[i + j·ld]
        flat = np.ctypeslib.as_array(
            ctypes.cast(address, ctypes.POINTER(np.ctypeslib.as_ctypes_type(self.dtype))), (cols * ld,)
        )
        return flat.reshape(cols, ld)[:, :rows].T

    def __call__(self, handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
        assert lda >= (k if transa else m) and ldb >= (n if transb else k) and ldc >= m
        op_a = self._matrix(A, k, m, lda).T if transa else self._matrix(A, m, k, lda)  # (m, k)
        op_b = self._matrix(B, n, k, ldb).T if transb else self._matrix(B, k, n, ldb)  # (k, n)
        c = self._matrix(C, m, n, ldc)
        c[...] = alpha._obj.value * (op_a.astype(np.float64) @ op_b) + beta._obj.value * c
        return 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_row_major_products_map_onto_column_major_cublas(dtype, trans_a, trans_b):
    library = object.__new__(cublas.Cublas)
    library._gemm = {dtype: (_ColumnMajorGemm(dtype), ctypes.c_float if dtype == "float32" else ctypes.c_double)}
    library._set_math_mode = lambda handle, tf32: None  # no handle without a device
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 3) if trans_a else (3, 5)).astype(dtype)  # op(a): (3, 5)
    b = rng.standard_normal((4, 5) if trans_b else (5, 4)).astype(dtype)  # op(b): (5, 4)
    out = rng.standard_normal((3, 4)).astype(dtype)
    expected = -0.5 * ((a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)) + 2.0 * out
    library.gemm(0, dtype, a.ctypes.data, b.ctypes.data, out.ctypes.data, a.shape, b.shape, trans_a, trans_b, -0.5, 2.0)
    assert relative_difference(out, expected) <= gradient_rtol(dtype)


class _RecordingLibrary:
    """Records each cuBLAS entry point called, with its integer arguments, and answers success."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name, *(a for a in args[1:] if isinstance(a, int))))
            return 0

        return call


@pytest.mark.parametrize("tf32", [False, True])
def test_each_call_sets_stream_then_workspace_and_tf32_only_for_that_product(tf32):
    """SetStream resets the workspace, so the workspace comes after it; the shared handle leaves in default math."""
    library = object.__new__(cublas.Cublas)
    library.library = _RecordingLibrary()
    library._gemm = {"float32": (library.library.cublasSgemm_v2, ctypes.c_float)}
    library.prepare(handle=1, stream=2, workspace=3, workspace_bytes=4)
    library.gemm(1, "float32", 10, 11, 12, (3, 5), (5, 4), False, False, 1.0, 0.0, tf32=tf32)
    names = [call[0] for call in library.library.calls]
    expected_modes = [cublas.TF32_TENSOR_OP_MATH, cublas.DEFAULT_MATH] if tf32 else [cublas.DEFAULT_MATH]
    assert names[:3] == ["cublasSetStream_v2", "cublasSetWorkspace_v2", "cublasSetPointerMode_v2"]
    assert library.library.calls[0][1:] == (2,) and library.library.calls[1][1:] == (3, 4)
    assert [call[1] for call in library.library.calls if call[0] == "cublasSetMathMode"] == expected_modes
    assert names.index("cublasSgemm_v2") == 4
