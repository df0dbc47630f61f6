"""The cuBLAS stand-in, loaded by the backend's own binding (`dnn.backends.cublas.Cublas`), and its memory rules.

`cublas_standin.cpp` applies cuBLAS's argument rules and hands each valid product to `CublasStandin._on_gemm`,
which checks what only the test runtime can see: every operand's column-major extent (ld·(columns-1) + rows
elements) lies inside one device allocation, and a product captured into a graph has a workspace set after
its stream (else cuBLAS would allocate from its own pool during capture). The product then runs on its
stream (recorded while that stream captures), in float64, and the guards of its operands are checked.
A refused call returns a non-success status, which the binding raises as BackendUnavailableError; the
reason is kept in `refusals`.
"""

from __future__ import annotations

import ctypes
from functools import partial
from pathlib import Path

from . import build, streams
from .device import CAPTURING, POOL, CaptureError, OutOfBoundsError

HERE = Path(__file__).resolve().parent
OP_N = 0
STATUS_INVALID_VALUE, STATUS_EXECUTION_FAILED, STATUS_NOT_SUPPORTED = 7, 13, 15


class GemmCall(ctypes.Structure):
    _fields_ = [
        ("element_bytes", ctypes.c_int),
        ("transa", ctypes.c_int),
        ("transb", ctypes.c_int),
        ("m", ctypes.c_int),
        ("n", ctypes.c_int),
        ("k", ctypes.c_int),
        ("alpha", ctypes.c_double),
        ("beta", ctypes.c_double),
        ("a", ctypes.c_void_p),
        ("lda", ctypes.c_int),
        ("b", ctypes.c_void_p),
        ("ldb", ctypes.c_int),
        ("c", ctypes.c_void_p),
        ("ldc", ctypes.c_int),
        ("stream", ctypes.c_void_p),
        ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_size_t),
        ("math_mode", ctypes.c_int),
    ]

    def describe(self) -> str:
        name = "cublasSgemm_v2" if self.element_bytes == 4 else "cublasDgemm_v2"
        return f"{name}(op {self.transa}/{self.transb}, m={self.m}, n={self.n}, k={self.k}, lda={self.lda}, ldb={self.ldb}, ldc={self.ldc})"


_HOOK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(GemmCall))


def _extent(rows: int, columns: int, ld: int) -> int:
    """Elements a column-major rows × columns operand with leading dimension `ld` spans."""
    return 0 if rows == 0 or columns == 0 else ld * (columns - 1) + rows


class CublasStandin:
    """The compiled stand-in library (its path, for `Cublas(path)`), with the calls it ran and the ones it refused."""

    def __init__(self):
        self.path = str(build.builder().library(HERE / "cublas_standin.cpp"))
        self.library = ctypes.CDLL(self.path)
        self.library.cublas_standin_run.argtypes = [ctypes.POINTER(GemmCall)]
        self.calls: list[GemmCall] = []
        self.refusals: list[str] = []
        self._hook = _HOOK(self._on_gemm)  # kept: the library holds only its address
        self.library.cublas_standin_set_hook(self._hook)
        handle = ctypes.c_void_p()
        self.library.cublasCreate_v2(ctypes.byref(handle))
        self.handle = handle.value  # what cupy.cuda.device.get_cublas_handle() answers

    def _on_gemm(self, pointer) -> int:
        call = GemmCall.from_buffer_copy(pointer.contents)  # by value: a captured graph keeps the arguments
        try:
            allocations = self._operands(call)
            if CAPTURING.stream is not None and not call.workspace:
                raise CaptureError(
                    f"{call.describe()} captured without a workspace set after cublasSetStream_v2 "
                    "(cuBLAS would allocate from its own pool during capture)"
                )
            self.calls.append(call)
            streams.submit(partial(self._run, call, allocations), streams.stream_at(call.stream or 0), call.describe())
        except (CaptureError, OutOfBoundsError, LookupError) as exc:
            self.refusals.append(str(exc))
            return (
                STATUS_NOT_SUPPORTED
                if isinstance(exc, CaptureError)
                else STATUS_INVALID_VALUE
                if isinstance(exc, LookupError)
                else STATUS_EXECUTION_FAILED
            )
        return 0

    def _operands(self, call: GemmCall) -> list:
        """The allocations holding A, B, C and the workspace; LookupError naming an operand outside every one."""
        a_rows, a_columns = (call.m, call.k) if call.transa == OP_N else (call.k, call.m)
        b_rows, b_columns = (call.k, call.n) if call.transb == OP_N else (call.n, call.k)
        operands = [
            ("A", call.a, _extent(a_rows, a_columns, call.lda) * call.element_bytes),
            ("B", call.b, _extent(b_rows, b_columns, call.ldb) * call.element_bytes),
            ("C", call.c, _extent(call.m, call.n, call.ldc) * call.element_bytes),
        ]
        if call.workspace:
            operands.append(("the workspace", call.workspace, call.workspace_bytes))
        allocations = []
        for name, address, nbytes in operands:
            if nbytes == 0:
                continue
            allocation = POOL.find(address or 0, nbytes)
            if allocation is None:
                raise LookupError(
                    f"{call.describe()}: {name} spans {nbytes} bytes from {address or 0:#x}, outside every device allocation"
                )
            allocations.append(allocation)
        return allocations

    def _run(self, call: GemmCall, allocations) -> None:
        self.library.cublas_standin_run(ctypes.byref(call))
        POOL.check_guards(allocations, call.describe())
