"""Every CUDA source the CuPy backend compiles, and the compiled kernels, built on first use.

`SOURCES` is the one list: the backend takes kernels only through `CompiledKernels.function`, which
refuses a kernel no source declares, and the CI test compiles every source of this list with NVRTC
(`tests/test_cupy_nvrtc.py`). Importing this module imports no cupy; `CompiledKernels` compiles a source
with `cupy.RawModule` the first time one of its kernels is asked for, and CuPy caches the binary on disk.
"""

from __future__ import annotations

from . import cupy_activations, cupy_checks, cupy_output, cupy_updates
from .cupy_common import CUDA_TYPES, NVRTC_OPTIONS, KernelSource

#: Every CUDA source of the CuPy backend.
SOURCES: tuple[KernelSource, ...] = (
    cupy_activations.SOURCE,
    cupy_output.SOURCE,
    cupy_updates.SOURCE,
    cupy_checks.SOURCE,
)


class CompiledKernels:
    """The kernels of `SOURCES`, each source compiled by `cupy.RawModule` when first needed."""

    def __init__(self, cupy):
        self._cupy = cupy
        self._modules: dict[str, object] = {}
        self._functions: dict[tuple[str, str, str | None], object] = {}

    def function(self, source: KernelSource, kernel: str, dtype: str | None = None):
        """The `cupy.RawKernel` of `kernel` in `source`, instantiated for `dtype` ('float32'/'float64') if templated."""
        key = (source.name, kernel, dtype)
        found = self._functions.get(key)
        if found is None:
            expression = source.name_expression(kernel, dtype)
            module = self._modules.get(source.name)
            if module is None:
                module = self._modules[source.name] = self._cupy.RawModule(
                    code=source.code, options=NVRTC_OPTIONS, name_expressions=source.name_expressions()
                )
            found = self._functions[key] = module.get_function(expression)
        return found

    def compile_all(self) -> None:
        """Compile (or load from CuPy's cache) every kernel of every source now, not on first use."""
        for source in SOURCES:
            for kernel in source.templated:
                for dtype in CUDA_TYPES:
                    self.function(source, kernel, dtype)
            for kernel in source.plain:
                self.function(source, kernel)
