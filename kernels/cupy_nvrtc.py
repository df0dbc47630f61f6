"""Compile a CUDA source with NVRTC on any machine, GPU or not, through the `cuda-bindings` package.

NVRTC needs no device: given a virtual architecture (`compute_90`) it compiles to PTX on a CPU-only
machine, so CI can check that every kernel the CuPy backend would compile on a GPU compiles at all, with
the same options and the same name expressions (which make NVRTC instantiate each template, so a template
with an error in its body cannot pass unnoticed). Needs `cuda-bindings` and the NVRTC library
(`nvidia-cuda-nvrtc`), both in the `cuda-check` extra; cupy is not needed.
"""

from __future__ import annotations

from typing import NamedTuple

from .cupy_common import CUPY_APPENDED_OPTIONS, NVRTC_OPTIONS, KernelSource

#: The virtual architecture CI compiles for (Hopper: H100/H200).
CI_ARCHITECTURE = "compute_90"


class CompileResult(NamedTuple):
    """The PTX, each name expression's lowered (mangled) name, and NVRTC's log."""

    ptx: bytes
    lowered_names: dict[str, str]
    log: str


class NvrtcError(RuntimeError):
    """NVRTC failed; the message holds the source's name, the failing call and NVRTC's log."""


def _checked(result, call: str, source_name: str, log: str = ""):
    """Unpack a cuda-bindings result tuple (status, *values), raising NvrtcError unless the status is success."""
    from cuda.bindings import nvrtc

    status, *values = result
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise NvrtcError(f"{call} failed for CUDA source {source_name!r}: {status.name}\n{log}".rstrip())
    return values[0] if len(values) == 1 else values


def _program_log(program, source_name: str) -> str:
    from cuda.bindings import nvrtc

    size = _checked(nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize", source_name)
    buffer = b" " * size
    _checked(nvrtc.nvrtcGetProgramLog(program, buffer), "nvrtcGetProgramLog", source_name)
    return buffer.rstrip(b"\x00").decode(errors="replace")


def compile_source(source: KernelSource, architecture: str = CI_ARCHITECTURE) -> CompileResult:
    """Compile `source` to PTX for `architecture` with the options cupy.RawModule uses and every name expression.

    Raises NvrtcError (with NVRTC's log) when it does not compile or a name expression names no kernel.
    """
    from cuda.bindings import nvrtc

    program = _checked(
        nvrtc.nvrtcCreateProgram(source.code.encode(), f"{source.name}.cu".encode(), 0, [], []),
        "nvrtcCreateProgram",
        source.name,
    )
    try:
        expressions = source.name_expressions()
        for expression in expressions:
            _checked(nvrtc.nvrtcAddNameExpression(program, expression.encode()), "nvrtcAddNameExpression", source.name)
        options = [o.encode() for o in (*NVRTC_OPTIONS, *CUPY_APPENDED_OPTIONS, f"--gpu-architecture={architecture}")]
        status = nvrtc.nvrtcCompileProgram(program, len(options), options)
        log = _program_log(program, source.name)
        _checked(status, "nvrtcCompileProgram", source.name, log)
        lowered = {
            expression: _checked(
                nvrtc.nvrtcGetLoweredName(program, expression.encode()), "nvrtcGetLoweredName", source.name
            ).decode()
            for expression in expressions
        }
        size = _checked(nvrtc.nvrtcGetPTXSize(program), "nvrtcGetPTXSize", source.name)
        ptx = b" " * size
        _checked(nvrtc.nvrtcGetPTX(program, ptx), "nvrtcGetPTX", source.name)
        return CompileResult(ptx.rstrip(b"\x00"), lowered, log)
    finally:
        nvrtc.nvrtcDestroyProgram(program)
