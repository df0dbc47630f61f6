"""Device memory on the CPU: guarded, poisoned allocations, and the array type standing in for `cupy.ndarray`.

Every allocation sits between two guard regions as large as itself (256 bytes to 1 MiB). The data starts
filled with 0xFF bytes (NaN in every float32 and float64 slot), so an output element a kernel never writes
stays NaN. The guards of a float array hold a signalling NaN whose payload is the allocation's own number:
a read past either end reads NaN, and any write there changes a guard, even a write of a value computed from
a guard (arithmetic quiets a signalling NaN) or copied from another array's guard (another payload); the
guards are checked after every launch (`check_guards`). In the AddressSanitizer run the guards are also made unaddressable,
so the first access to one stops the process with ASan's report.

`DeviceArray` is a NumPy array with CuPy's surface where the backend uses it (`a.data.ptr`, `set`, `get`,
0-d results of integer indexing) and CuPy's rules: no host array in a device computation, and while a stream
captures, no host read (float(), int(), bool(), item(), get(), asnumpy), no host write and no array
expression (this stand-in records kernels and cuBLAS calls only).
"""

from __future__ import annotations

import ctypes
import weakref
from typing import NamedTuple

import numpy as np

from . import build

POISON = 0xFF
ALIGNMENT = 256  # CuPy's allocations are 256-byte aligned; cuBLAS's workspace must be
MIN_GUARD, MAX_GUARD = 256, 1 << 20


class OutOfBoundsError(AssertionError):
    """A kernel or product wrote outside the allocation it was given (a guard region changed)."""


class CaptureError(RuntimeError):
    """An operation a real CUDA stream capture refuses, attempted while a stream captures."""


class Allocation(NamedTuple):
    base: weakref.ref  # to the uint8 array: guard, data, guard (the pool never keeps an allocation alive)
    start: int  # offset of the data in base
    nbytes: int
    guard: int
    address: int  # of the data
    word: np.ndarray  # the guards' repeated word (0-d)

    def damage(self) -> str | None:
        """Where a guard region was written, or None when both are intact."""
        base = self.base()
        if base is None:
            return None
        for side, region in (
            ("before", base[self.start - self.guard : self.start]),
            ("after", base[self.start + self.nbytes : self.start + self.nbytes + self.guard]),
        ):
            changed = np.flatnonzero(region.view(self.word.dtype) != self.word) * self.word.itemsize  # byte offsets
            if changed.size:
                offset = int(changed[-1]) - self.guard if side == "before" else int(changed[0])
                return f"{changed.size * self.word.itemsize} byte(s) {side} a {self.nbytes}-byte allocation changed, the nearest at byte {offset:+d} from its {'start' if side == 'before' else 'end'}"
        return None


class Pool:
    """The guarded allocations alive in this process, found by address."""

    def __init__(self):
        self._live: dict[int, Allocation] = {}
        self._count = 0

    def allocate(self, nbytes: int, dtype=np.uint8) -> np.ndarray:
        """A uint8 array of `nbytes` poisoned bytes between two guard regions (signalling NaNs for a float dtype)."""
        guard = min(MAX_GUARD, max(MIN_GUARD, -(-nbytes // ALIGNMENT) * ALIGNMENT))
        base = np.full(2 * guard + nbytes + 2 * ALIGNMENT, POISON, dtype=np.uint8)
        start = guard + ALIGNMENT - base.ctypes.data % ALIGNMENT
        self._count += 1
        word = _guard_word(np.dtype(dtype), self._count)
        for region in (base[start - guard : start], base[start + nbytes : start + nbytes + guard]):
            region.view(word.dtype)[...] = word
        allocation = Allocation(weakref.ref(base), start, nbytes, guard, base.ctypes.data + start, word)
        key = id(base)
        self._live[key] = allocation
        if build.sanitized():
            _asan("__asan_poison_memory_region", base.ctypes.data, start)
            _asan("__asan_poison_memory_region", allocation.address + nbytes, base.size - start - nbytes)
        weakref.finalize(base, self._release, key, base.ctypes.data, base.size)
        return base[start : start + nbytes]

    def _release(self, key: int, address: int, size: int) -> None:
        self._live.pop(key, None)
        if build.sanitized():
            _asan("__asan_unpoison_memory_region", address, size)

    def find(self, address: int, nbytes: int = 1) -> Allocation | None:
        """The allocation holding the `nbytes` bytes from `address`, or None when no single allocation does."""
        for allocation in self._live.values():
            if allocation.address <= address and address + nbytes <= allocation.address + allocation.nbytes:
                return allocation
        return None

    def check_guards(self, allocations, operation: str) -> None:
        """OutOfBoundsError naming `operation` when a guard of any of `allocations` changed (not in ASan runs:
        there the guards are unaddressable and ASan reports the access itself)."""
        if build.sanitized():
            return
        for allocation in {a.address: a for a in allocations}.values():
            damage = allocation.damage()
            if damage:
                raise OutOfBoundsError(f"{operation} wrote out of bounds: {damage}")


def _guard_word(dtype: np.dtype, number: int) -> np.ndarray:
    """A signalling NaN of `dtype` with payload `number` (quiet bit clear, payload non-zero), or 0xFF bytes."""
    if dtype == np.float64:
        return np.array(0x7FF0_0000_0000_0000 | (number % (1 << 50)) << 1 | 1, dtype=np.uint64)
    if dtype == np.float32:
        return np.array(0x7F80_0000 | (number % (1 << 21)) << 1 | 1, dtype=np.uint32)
    return np.array(POISON, dtype=np.uint8)


def _asan(function: str, address: int, size: int) -> None:
    getattr(ctypes.CDLL(None), function)(ctypes.c_void_p(address), ctypes.c_size_t(size))


POOL = Pool()


def pool_allocator(nbytes: int, dtype=np.uint8):
    """CuPy's default allocator here: guarded, poisoned memory from the pool."""
    return POOL.allocate(nbytes, dtype)


# ---------------------------------------------------------------------------------------------- capture state
class _Capturing:
    stream = None  # the stream capturing now, or None


CAPTURING = _Capturing()


def refuse_during_capture(what: str) -> None:
    """CaptureError when a stream is capturing: `what` is something a real capture refuses or this one cannot record."""
    if CAPTURING.stream is not None:
        raise CaptureError(
            f"{what} while a stream is capturing (a real capture fails with cudaErrorStreamCaptureUnsupported "
            "or invalidates the graph)"
        )


class MemoryPointer(NamedTuple):
    ptr: int


def _host(a):
    return a.view(np.ndarray) if isinstance(a, DeviceArray) else a


class DeviceArray(np.ndarray):
    """`cupy.ndarray` on the CPU: a NumPy array in pool memory with CuPy's surface and rules (module docstring)."""

    @property
    def data(self) -> MemoryPointer:
        return MemoryPointer(self.__array_interface__["data"][0])

    def set(self, host, stream=None) -> None:
        refuse_during_capture("a host-to-device copy (ndarray.set)")
        np.copyto(self.view(np.ndarray), host)

    def get(self, stream=None) -> np.ndarray:
        refuse_during_capture("a device-to-host copy (ndarray.get)")
        return np.array(self.view(np.ndarray))

    def item(self, *args):
        refuse_during_capture("a host read (ndarray.item)")
        return self.view(np.ndarray).item(*args)

    def tolist(self):
        refuse_during_capture("a host read (ndarray.tolist)")
        return self.view(np.ndarray).tolist()

    def __float__(self):
        refuse_during_capture("a host read (float())")
        return float(self.view(np.ndarray))

    def __int__(self):
        refuse_during_capture("a host read (int())")
        return int(self.view(np.ndarray))

    def __bool__(self):
        refuse_during_capture("a host read (bool())")
        return bool(self.view(np.ndarray))

    def __getitem__(self, key):
        result = super().__getitem__(key)
        if isinstance(result, np.ndarray):
            return result
        # CuPy answers integer indexing with a 0-d device array, not a host scalar
        return super().__getitem__((*key, Ellipsis) if isinstance(key, tuple) else (key, Ellipsis))

    def __setitem__(self, key, value):
        refuse_during_capture("a write into device memory by indexing")
        super().__setitem__(key, _host(value))

    def fill(self, value):
        refuse_during_capture("ndarray.fill")
        super().fill(value)

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        refuse_during_capture(f"an array expression (numpy.{ufunc.__name__})")
        for operand in (*inputs, *(out or ())):
            if isinstance(operand, np.ndarray) and not isinstance(operand, DeviceArray) and operand.ndim:
                raise TypeError(
                    f"a host numpy array in a device computation (numpy.{ufunc.__name__}): CuPy refuses to mix them"
                )
        if out is not None:
            kwargs["out"] = tuple(_host(o) for o in out)
        result = getattr(ufunc, method)(*(_host(i) for i in inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return to_device(result)


def to_device(result):
    """NumPy results as device arrays (CuPy's operations return device arrays), anything else as it is."""
    if isinstance(result, tuple):
        return tuple(to_device(r) for r in result)
    if isinstance(result, np.ndarray) and not isinstance(result, DeviceArray):
        return result.view(DeviceArray)
    return result


def device_empty(shape, dtype, allocator) -> DeviceArray:
    """A poisoned (NaN) device array of `shape` and `dtype` from `allocator` (the pool's, unless swapped)."""
    refuse_during_capture("an allocation (cudaMalloc in global capture mode; memory the graph would not own)")
    dtype = np.dtype(dtype)
    shape = (shape,) if np.isscalar(shape) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    memory = allocator(nbytes, dtype) if allocator is pool_allocator else allocator(nbytes)  # CuPy's take a size only
    return memory.view(dtype).reshape(shape).view(DeviceArray)
