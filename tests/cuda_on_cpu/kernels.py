"""`cupy.RawModule` and `cupy.RawKernel` on the CPU: the compiled source launched by the block scheduler.

A launch is checked as a GPU would need it and more strictly than CuPy checks it: the argument count, each
argument against the C++ parameter type the compiled kernel reports (a device array of the pointee's dtype
or the null pointer `numpy.uint64(0)` for a pointer, a NumPy scalar of exactly the declared type for a
scalar: a Python int or float would be passed at a width the kernel may not read), every pointer inside one
pool allocation, and the configuration within CUDA's limits (the scheduler's check). After the launch the
guards of every allocation it was given are checked. While a stream captures, a launch on it is recorded,
with its arguments as they are now (as a CUDA graph records kernel parameters), and runs only on replay.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np

from dnn.kernels.cupy_common import CUDA_TYPES, NVRTC_OPTIONS, KernelSource
from dnn.kernels.cupy_modules import SOURCES

from . import build, streams
from .device import POOL, DeviceArray

SCALAR_CODES = {
    "f4": np.float32,
    "f8": np.float64,
    "i4": np.int32,
    "u4": np.uint32,
    "i8": np.int64,
    "u8": np.uint64,
    "b1": np.bool_,
    "u1": np.uint8,
}
POINTEE_DTYPES = {code: np.dtype(t) for code, t in SCALAR_CODES.items()}
ERROR_BYTES = 1024


class LaunchError(RuntimeError):
    """The scheduler refused a launch or stopped it (configuration, barrier divergence)."""


class _Order(threading.local):
    reverse = False


ORDER = _Order()


@contextmanager
def reversed_thread_order():
    """Within the block, run each block's threads last to first (a race a first-to-last order hides may show)."""
    ORDER.reverse = True
    try:
        yield
    finally:
        ORDER.reverse = False


class CompiledSource:
    """One shared object: its kernels by name expression, with their C++ signatures."""

    def __init__(self, path: Path):
        lib = self.library = ctypes.CDLL(str(path))
        lib.cuda_on_cpu_kernel_name.restype = lib.cuda_on_cpu_kernel_signature.restype = ctypes.c_char_p
        lib.cuda_on_cpu_launch.argtypes = [
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        self.kernels = {
            lib.cuda_on_cpu_kernel_name(k).decode(): (k, lib.cuda_on_cpu_kernel_signature(k).decode().split(","))
            for k in range(lib.cuda_on_cpu_kernel_count())
        }
        self.sanitized = bool(lib.cuda_on_cpu_sanitized())


def _source_of(code: str, name_expressions) -> KernelSource:
    """The project's KernelSource with this code, else one made from the name expressions (a test's own kernel)."""
    for source in SOURCES:
        if source.code == code:
            return source
    templated = tuple(dict.fromkeys(e.split("<")[0] for e in name_expressions if "<" in e))
    plain = tuple(e for e in name_expressions if "<" not in e)
    return KernelSource(f"module_{abs(hash(code)):x}", code, templated, plain)


class RawModule:
    """`cupy.RawModule(code=..., options=..., name_expressions=...)`: compiled per dtype on first use."""

    def __init__(self, code: str, options=(), name_expressions=()):
        if tuple(options) != NVRTC_OPTIONS:
            raise ValueError(f"the CPU build maps NVRTC_OPTIONS {NVRTC_OPTIONS}, not {tuple(options)}")
        self.source = _source_of(code, name_expressions)
        self.name_expressions = tuple(name_expressions)

    def get_function(self, expression: str) -> RawKernel:
        if expression not in self.name_expressions:
            raise KeyError(
                f"{expression!r} is not one of the module's name expressions (NVRTC would not have lowered it)"
            )
        dtype = next((d for d, t in CUDA_TYPES.items() if expression.endswith(f"<{t}>")), "float64")
        compiled = compiled_source(self.source, dtype)
        if expression not in compiled.kernels:
            raise KeyError(f"{expression!r} is not a kernel of {self.source.name} built for {dtype}")
        return RawKernel(compiled, expression)


_COMPILED: dict[Path, CompiledSource] = {}


def compiled_source(source: KernelSource, dtype: str) -> CompiledSource:
    """The loaded shared object of `source` for `dtype` (built once per process)."""
    path = build.builder().shared_object(source, dtype)
    if path not in _COMPILED:
        _COMPILED[path] = CompiledSource(path)
        if _COMPILED[path].sanitized != build.sanitized():
            raise build.BuildError(
                f"{path} was built {'with' if _COMPILED[path].sanitized else 'without'} AddressSanitizer, this run is "
                f"{'' if build.sanitized() else 'not '}sanitized"
            )
    return _COMPILED[path]


class RawKernel:
    """`RawKernel(grid, block, args, shared_mem=0, stream=None)`: checked, then run (or recorded while capturing)."""

    def __init__(self, compiled: CompiledSource, name: str):
        self.compiled, self.name = compiled, name
        self.index, self.signature = compiled.kernels[name]

    def __call__(self, grid, block, args, shared_mem: int = 0, stream=None) -> None:
        grid, block = _dims(grid), _dims(block)
        values, allocations = self._marshal(tuple(args))
        run = partial(self._run, grid, block, int(shared_mem), values, allocations)
        streams.submit(run, stream, f"kernel {self.name}")

    def _marshal(self, args):
        if len(args) != len(self.signature):
            raise TypeError(f"{self.name} takes {len(self.signature)} arguments, launched with {len(args)}")
        values, allocations = [], []
        for position, (argument, code) in enumerate(zip(args, self.signature)):
            where = f"{self.name} argument {position} ({code})"
            if code.lstrip("c").startswith("p"):
                address, allocation = _pointer(argument, POINTEE_DTYPES[code.lstrip("c")[1:]], where)
                values.append(np.uint64(address).tobytes())
                if allocation is not None:
                    allocations.append(allocation)
            else:
                expected = SCALAR_CODES[code]
                if type(argument) is not expected:
                    raise TypeError(
                        f"{where} is a {np.dtype(expected).name} scalar, launched with {type(argument).__name__} {argument!r}"
                    )
                values.append(argument.tobytes())
        return values, allocations

    def _run(self, grid, block, shared_mem, values, allocations) -> None:
        buffers = [ctypes.create_string_buffer(v, 16) for v in values]  # 16-byte aligned slots, like kernelParams
        pointers = (ctypes.c_void_p * max(1, len(buffers)))(*[ctypes.addressof(b) for b in buffers])
        error = ctypes.create_string_buffer(ERROR_BYTES)
        status = self.compiled.library.cuda_on_cpu_launch(
            self.index,
            (ctypes.c_uint * 3)(*grid),
            (ctypes.c_uint * 3)(*block),
            shared_mem,
            pointers,
            int(ORDER.reverse),
            error,
            ERROR_BYTES,
        )
        if status:
            raise LaunchError(f"{self.name}: {error.value.decode()}")
        POOL.check_guards(allocations, f"kernel {self.name} (grid {grid}, block {block})")


def _dims(value) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def _pointer(argument, dtype: np.dtype, where: str):
    """(address, allocation) of a pointer argument: a device array of `dtype` in the pool, or null."""
    if isinstance(argument, np.uint64) and argument == 0:
        return 0, None
    if not isinstance(argument, DeviceArray):
        kind = "a host numpy array" if isinstance(argument, np.ndarray) else type(argument).__name__
        raise TypeError(f"{where} is a pointer, launched with {kind}")
    if argument.dtype != dtype:
        raise TypeError(f"{where} points to {dtype.name}, launched with a {argument.dtype.name} array")
    if not argument.flags.c_contiguous:
        raise TypeError(f"{where}: a kernel reads a {argument.shape} array as contiguous, launched with a strided view")
    address = argument.data.ptr
    allocation = POOL.find(address, max(1, argument.nbytes))
    if allocation is None:
        raise TypeError(f"{where}: its {argument.nbytes} bytes are not inside one device allocation of the pool")
    return address, allocation
