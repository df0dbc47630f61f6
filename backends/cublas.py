"""cuBLAS GEMM through ctypes, on CuPy's own handle, with α, β, the stream, a fixed workspace and TF32 opt-in.

Why not CuPy's binding: it refuses cuBLAS during CUDA stream capture (its `setStream` raises), while cuBLAS
itself captures fine given a stream set before capture begins and a fixed workspace (`cublasSetWorkspace_v2`);
calling the library directly is what lets a captured step include its GEMMs.

A cuBLAS handle belongs to the library that created it, so the binding must load the libcublas CuPy loaded:
`library_candidates` lists, in order, the libcublas already mapped into this process (/proc/self/maps),
the one inside the `nvidia-cublas` wheels, then the system's (CUDA_PATH, /usr/local/cuda, the loader's
search path). Every failure to find, load or initialise cuBLAS raises `BackendUnavailableError` saying what
and where; without a device, `cublasCreate_v2` answers CUBLAS_STATUS_NOT_INITIALIZED.

Row-major arrays are column-major transposes, so out = op(a)·op(b) is computed as outᵀ = op(b)ᵀ·op(a)ᵀ.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys

from ..errors import BackendUnavailableError, install_hint

OP_N, OP_T = 0, 1
DEFAULT_MATH, TF32_TENSOR_OP_MATH = 0, 3
POINTER_MODE_HOST = 0
#: Workspace given to cuBLAS for every call: NVIDIA's recommendation for Hopper is 32 MiB.
WORKSPACE_BYTES = 32 << 20
STATUS_NAMES = {
    0: "CUBLAS_STATUS_SUCCESS",
    1: "CUBLAS_STATUS_NOT_INITIALIZED",
    3: "CUBLAS_STATUS_ALLOC_FAILED",
    7: "CUBLAS_STATUS_INVALID_VALUE",
    8: "CUBLAS_STATUS_ARCH_MISMATCH",
    11: "CUBLAS_STATUS_MAPPING_ERROR",
    13: "CUBLAS_STATUS_EXECUTION_FAILED",
    14: "CUBLAS_STATUS_INTERNAL_ERROR",
    15: "CUBLAS_STATUS_NOT_SUPPORTED",
    16: "CUBLAS_STATUS_LICENSE_ERROR",
}


def _is_cublas(path: str) -> bool:
    """True for libcublas.so[.N...] (not libcublasLt, which holds no cublas*_v2 entry points)."""
    return os.path.basename(path).startswith("libcublas.so")


def loaded_libraries(maps_text: str | None = None) -> list[str]:
    """The libcublas files mapped into this process, in the order /proc/self/maps lists them ([] elsewhere)."""
    if maps_text is None:
        try:
            with open("/proc/self/maps") as maps:
                maps_text = maps.read()
        except OSError:
            return []
    found = []
    for line in maps_text.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and _is_cublas(fields[5]) and fields[5] not in found:
            found.append(fields[5])
    return found


def wheel_libraries(search_paths=None) -> list[str]:
    """libcublas inside the `nvidia-cublas` wheels (nvidia/cu13/lib, nvidia/cublas/lib) on `search_paths` (sys.path)."""
    found = []
    for folder in search_paths if search_paths is not None else sys.path:
        for pattern in ("nvidia/cu*/lib/libcublas.so*", "nvidia/cublas/lib/libcublas.so*"):
            found += sorted(p for p in glob.glob(os.path.join(folder, pattern)) if _is_cublas(p))
    return found


def system_libraries(environ=None) -> list[str]:
    """libcublas under CUDA_PATH or /usr/local/cuda, then the loader's own `libcublas.so` name if it has one."""
    environ = os.environ if environ is None else environ
    roots = [environ[var] for var in ("CUDA_PATH", "CUDA_HOME") if environ.get(var)] + ["/usr/local/cuda"]
    found = []
    for root in roots:
        found += sorted(p for p in glob.glob(os.path.join(root, "lib*", "libcublas.so*")) if _is_cublas(p))
    by_name = ctypes.util.find_library("cublas")
    if by_name:
        found.append(by_name)
    return found


def library_candidates(maps_text=None, search_paths=None, environ=None) -> list[str]:
    """Where to load libcublas from, best first: already loaded (CuPy's), the wheels, the system; no repeats."""
    ordered = loaded_libraries(maps_text) + wheel_libraries(search_paths) + system_libraries(environ)
    return list(dict.fromkeys(ordered))


def check_status(status: int, call: str) -> None:
    """Raise BackendUnavailableError naming `call` and the status unless `status` is CUBLAS_STATUS_SUCCESS."""
    if status != 0:
        name = STATUS_NAMES.get(status, f"status {status}")
        hint = " (no usable CUDA device or driver)" if status == 1 else ""
        raise BackendUnavailableError(f"cuBLAS {call} returned {name}{hint}")


class Cublas:
    """The cuBLAS entry points the backend calls, from one loaded library."""

    def __init__(self, path: str):
        try:
            self.library = ctypes.CDLL(path)
        except OSError as exc:
            raise BackendUnavailableError(f"cannot load cuBLAS from {path}: {exc}") from exc
        self.path = path
        lib = self.library
        void_p, c_int, size_t = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        signatures = {
            "cublasCreate_v2": (ctypes.POINTER(void_p),),
            "cublasDestroy_v2": (void_p,),
            "cublasSetStream_v2": (void_p, void_p),
            "cublasSetWorkspace_v2": (void_p, void_p, size_t),
            "cublasSetMathMode": (void_p, c_int),
            "cublasSetPointerMode_v2": (void_p, c_int),
        }
        for dtype, scalar in (("S", ctypes.c_float), ("D", ctypes.c_double)):
            pointer = ctypes.POINTER(scalar)
            signatures[f"cublas{dtype}gemm_v2"] = (
                void_p,
                c_int,
                c_int,
                c_int,
                c_int,
                c_int,
                pointer,
                void_p,
                c_int,
                void_p,
                c_int,
                pointer,
                void_p,
                c_int,
            )
        for name, argtypes in signatures.items():
            try:
                function = getattr(lib, name)
            except AttributeError as exc:
                raise BackendUnavailableError(
                    f"{path} has no {name}: not a cuBLAS library of CUDA 11 or later"
                ) from exc
            function.argtypes, function.restype = argtypes, c_int
        self._gemm = {"float32": (lib.cublasSgemm_v2, ctypes.c_float), "float64": (lib.cublasDgemm_v2, ctypes.c_double)}

    def create_handle(self) -> int:
        """A new cuBLAS handle (BackendUnavailableError without a device); release it with `destroy_handle`."""
        handle = ctypes.c_void_p()
        check_status(self.library.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate_v2")
        return handle.value

    def destroy_handle(self, handle: int) -> None:
        check_status(self.library.cublasDestroy_v2(handle), "cublasDestroy_v2")

    def prepare(self, handle: int, stream: int, workspace: int, workspace_bytes: int) -> None:
        """Point `handle` at `stream` and the fixed `workspace`, with scalars read from the host.

        cublasSetStream_v2 resets the workspace to cuBLAS's own pool, so the workspace is set after it; CuPy
        sets the stream on the same handle for its own calls, so this runs before each of ours.
        """
        lib = self.library
        check_status(lib.cublasSetStream_v2(handle, stream), "cublasSetStream_v2")
        check_status(lib.cublasSetWorkspace_v2(handle, workspace, workspace_bytes), "cublasSetWorkspace_v2")
        check_status(lib.cublasSetPointerMode_v2(handle, POINTER_MODE_HOST), "cublasSetPointerMode_v2")

    def gemm(
        self,
        handle: int,
        dtype: str,
        a,
        b,
        out,
        a_shape,
        b_shape,
        trans_a: bool,
        trans_b: bool,
        alpha: float,
        beta: float,
        tf32: bool = False,
    ) -> None:
        """out ← alpha·op(a)·op(b) + beta·out for row-major C-contiguous device arrays given by address.

        a, b, out: device pointers; a_shape, b_shape: the stored (rows, columns) of a and b. `tf32` lets a
        float32 product use TF32 tensor cores; the handle is shared with CuPy, so its default math mode is
        set back afterwards.
        """
        function, scalar = self._gemm[dtype]
        M = a_shape[1] if trans_a else a_shape[0]
        K = a_shape[0] if trans_a else a_shape[1]
        N = b_shape[0] if trans_b else b_shape[1]
        # column-major: outᵀ (N, M) = op(b)ᵀ (N, K) · op(a)ᵀ (K, M); a row-major matrix's leading dimension is its columns
        self._set_math_mode(handle, tf32)
        try:
            status = function(
                handle,
                OP_T if trans_b else OP_N,
                OP_T if trans_a else OP_N,
                N,
                M,
                K,
                ctypes.byref(scalar(alpha)),
                b,
                b_shape[1],
                a,
                a_shape[1],
                ctypes.byref(scalar(beta)),
                out,
                N,
            )
        finally:
            if tf32:
                self._set_math_mode(handle, False)
        check_status(status, f"cublas{'S' if dtype == 'float32' else 'D'}gemm_v2")

    def _set_math_mode(self, handle: int, tf32: bool) -> None:
        check_status(
            self.library.cublasSetMathMode(handle, TF32_TENSOR_OP_MATH if tf32 else DEFAULT_MATH), "cublasSetMathMode"
        )


def load_cublas(candidates=None) -> Cublas:
    """The first of `candidates` (default `library_candidates()`) that loads as cuBLAS.

    BackendUnavailableError lists every place looked at when none does.
    """
    candidates = library_candidates() if candidates is None else list(candidates)
    problems = []
    for path in candidates:
        try:
            return Cublas(path)
        except BackendUnavailableError as exc:
            problems.append(str(exc))
    if not candidates:
        raise BackendUnavailableError(
            "libcublas not found: not loaded in this process, no nvidia-cublas wheel on sys.path, none under "
            f"CUDA_PATH or /usr/local/cuda, none on the loader's path; {install_hint('cuda12')} (or cuda13)"
        )
    raise BackendUnavailableError("no usable libcublas: " + "; ".join(problems))
