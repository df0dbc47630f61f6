"""The `cupy` module on the CPU, as far as the CuPy backend and its fallbacks use it, and the real backend on it.

`cpu_cupy_backend()` constructs `dnn.backends.cupy_backend.CupyBackend` itself, through its own `__init__`,
with this module importable as `cupy` and the cuBLAS binding loading the stand-in library; both are put
back as they were as soon as the backend exists (it keeps the module as `xp`). From then on every launch
the backend computes (grid, block, arguments) runs the project's CUDA source compiled for the CPU, and
every product goes through `backends/cublas.py` into the stand-in.

NumPy functions not defined here are NumPy's, with CuPy's answers (device arrays) and the capture rules of
`device.refuse_during_capture`; `random.default_rng` gives device arrays as CuPy's does.
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace
from unittest import mock

import numpy as np

from dnn.backends import cublas as cublas_binding
from dnn.backends.cupy_backend import CupyBackend

from . import kernels, streams
from .cublas import CublasStandin
from .device import DeviceArray, _host, device_empty, refuse_during_capture, to_device

#: NumPy functions that only look at array metadata: allowed while a stream captures.
METADATA_FUNCTIONS = frozenset({"may_share_memory", "shares_memory", "result_type", "isscalar", "ndim", "shape"})


class _DeviceGenerator:
    """`cupy.random.Generator`: NumPy's generator, answering with device arrays."""

    def __init__(self, seed):
        self._generator = np.random.default_rng(seed)

    def __getattr__(self, name):
        method = getattr(self._generator, name)
        return lambda *args, **kwargs: to_device(method(*args, **kwargs))


class FakeCupy(types.ModuleType):
    """The module object; attributes it does not define are NumPy's (see the module docstring)."""

    ndarray = DeviceArray
    RawModule = kernels.RawModule

    def __init__(self):
        super().__init__("cupy", __doc__)
        self.__file__ = __file__
        self.standin = CublasStandin()
        self.random = SimpleNamespace(default_rng=_DeviceGenerator)
        self.cuda = SimpleNamespace(
            Stream=streams.Stream,
            get_current_stream=streams.get_current_stream,
            get_allocator=streams.get_allocator,
            set_allocator=streams.set_allocator,
            device=SimpleNamespace(get_cublas_handle=lambda: self.standin.handle),
            runtime=SimpleNamespace(getDeviceCount=lambda: 1),
        )

    def __getattr__(self, name):
        attribute = getattr(np, name)
        if isinstance(attribute, type) or not callable(attribute):
            return attribute

        def device_function(*args, **kwargs):
            if name not in METADATA_FUNCTIONS:
                refuse_during_capture(f"an array function (numpy.{name})")
            return to_device(attribute(*args, **kwargs))

        return device_function

    # ------------------------------------------------------------------ allocation: through the allocator
    def empty(self, shape, dtype=np.float64):
        return device_empty(shape, dtype, streams.get_allocator())

    def zeros(self, shape, dtype=np.float64):
        return self.full(shape, 0, dtype)

    def ones(self, shape, dtype=np.float64):
        return self.full(shape, 1, dtype)

    def full(self, shape, fill_value, dtype=np.float64):
        out = self.empty(shape, dtype)
        out.view(np.ndarray).fill(fill_value)
        return out

    def empty_like(self, a, dtype=None):
        return self.empty(a.shape, a.dtype if dtype is None else dtype)

    def zeros_like(self, a, dtype=None):
        return self.zeros(a.shape, a.dtype if dtype is None else dtype)

    def array(self, a, dtype=None, copy=True):
        host = np.asarray(_host(a), dtype=dtype)
        out = self.empty(host.shape, host.dtype)
        np.copyto(out.view(np.ndarray), host)
        return out

    def asarray(self, a, dtype=None):
        if isinstance(a, DeviceArray) and (dtype is None or a.dtype == np.dtype(dtype)):
            return a
        return self.array(a, dtype=dtype)

    def ascontiguousarray(self, a, dtype=None):
        if isinstance(a, DeviceArray) and a.flags.c_contiguous and (dtype is None or a.dtype == np.dtype(dtype)):
            return a
        return self.array(a, dtype=dtype)

    def asnumpy(self, a, stream=None):
        refuse_during_capture("a device-to-host copy (cupy.asnumpy)")
        return np.array(_host(a))


_MODULE: FakeCupy | None = None


def cupy_module() -> FakeCupy:
    """The process's one stand-in module (one cuBLAS stand-in and handle, like CuPy's per-thread handle)."""
    global _MODULE
    if _MODULE is None:
        _MODULE = FakeCupy()
    return _MODULE


def cpu_cupy_backend(tf32: bool | None = False, cuda_graphs: bool | None = None) -> CupyBackend:
    """The CuPy backend, built by its own constructor on the CPU stand-ins (module docstring)."""
    module = cupy_module()
    with (
        mock.patch.dict(sys.modules, {"cupy": module}),
        mock.patch.object(
            cublas_binding, "load_cublas", lambda candidates=None: cublas_binding.Cublas(module.standin.path)
        ),
    ):
        return CupyBackend(tf32=tf32, cuda_graphs=cuda_graphs)
