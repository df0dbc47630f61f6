"""Compile a CUDA source of the project for the CPU: one shared object per source and dtype, cached per session.

The translation unit is the source's own text (written unchanged to `<name>.cu` and #included) with
`cuda_emulation.h` force-included before it, then `block_scheduler.h` and the generated table of the kernels
the source declares (its NVRTC name expressions for the dtype, and its plain kernels). NVRTC's options map to
the C++ compiler's: `--fmad=false` is `-ffp-contract=off` (no a·b + c contracted into one FMA); CuPy's
`-ftz=true` has no CPU equivalent and is not emulated (float32 subnormals are kept: docs/cupy.md).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dnn.kernels.cupy_common import CUDA_TYPES, CUPY_APPENDED_OPTIONS, NVRTC_OPTIONS

HERE = Path(__file__).resolve().parent
HEADERS = ("cuda_emulation.h", "block_scheduler.h")
#: NVRTC option -> the C++ compiler's equivalent (None: not emulated on the CPU).
OPTION_EQUIVALENTS = {"--fmad=false": "-ffp-contract=off", "-ftz=true": None}
# -fno-extern-tls-init: `extern __shared__` arrays (thread_local) have no dynamic initialiser to call
FLAGS = (
    "-std=c++17",
    "-O2",
    "-fPIC",
    "-shared",
    "-fno-fast-math",
    "-fno-extern-tls-init",
    "-U_FORTIFY_SOURCE",
    "-D_FORTIFY_SOURCE=0",
)
#: AddressSanitizer builds (the slow test): every access checked against guard regions poisoned for it.
SANITIZER_FLAGS = ("-fsanitize=address", "-fno-omit-frame-pointer", "-O1")
SANITIZE_ENV = "DNN_CUDA_ON_CPU_ASAN"
_DYNAMIC_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w\s]*?)\s+(\w+)\s*\[\s*\]"
)


class BuildError(RuntimeError):
    """The C++ compiler refused a source; the message holds its command and output."""


def compiler() -> str | None:
    """The C++ compiler to use ($CXX, else g++, else c++), or None when there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def sanitized() -> bool:
    """True in the AddressSanitizer run (the test process was started with libasan preloaded)."""
    return os.environ.get(SANITIZE_ENV) == "1"


def compiler_flags() -> tuple[str, ...]:
    """The flags every source is compiled with: the fixed ones, NVRTC's options mapped, the sanitizer's if on."""
    mapped = []
    for option in (*NVRTC_OPTIONS, *CUPY_APPENDED_OPTIONS):
        if option not in OPTION_EQUIVALENTS:
            raise BuildError(f"NVRTC option {option!r} has no CPU equivalent in tests/cuda_on_cpu/build.py")
        if OPTION_EQUIVALENTS[option]:
            mapped.append(OPTION_EQUIVALENTS[option])
    return (*FLAGS, *mapped, *(SANITIZER_FLAGS if sanitized() else ()))


def kernel_table(source, dtype: str) -> list[str]:
    """The name expressions compiled into the shared object of `source` for `dtype`: templated, then plain."""
    return [source.name_expression(kernel, dtype) for kernel in source.templated] + list(source.plain)


def translation_unit(source, dtype: str) -> str:
    """The generated C++ that includes the source unchanged and lists its kernels for the launcher."""
    shared = "".join(
        f"alignas(16) thread_local {element} {name}[CUDA_ON_CPU_DYNAMIC_SHARED_BYTES / sizeof({element})];\n"
        for element, name in dict.fromkeys(_DYNAMIC_SHARED.findall(source.code))
    )
    entries = ",\n".join(
        f'        cuda_on_cpu::entry("{expression}", &{expression})' for expression in kernel_table(source, dtype)
    )
    return (
        f'#include "{source.name}.cu"\n#include "block_scheduler.h"\n{shared}'
        "std::vector<cuda_on_cpu::Entry>& cuda_on_cpu::entries() {\n"
        f"    static std::vector<cuda_on_cpu::Entry> table = {{\n{entries}\n    }};\n    return table;\n}}\n"
    )


class Builder:
    """Compiles sources into a temporary directory kept for the process; each (source, dtype) once."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="dnn-cuda-on-cpu-"))
        atexit.register(shutil.rmtree, self.directory, ignore_errors=True)

    def shared_object(self, source, dtype: str) -> Path:
        """The compiled shared object of `source` for `dtype` ('float32'/'float64'), built on first request."""
        if dtype not in CUDA_TYPES:
            raise ValueError(f"no CUDA type for dtype {dtype!r}; the kernels are compiled for {', '.join(CUDA_TYPES)}")
        unit = translation_unit(source, dtype)
        flags = compiler_flags()
        digest = hashlib.sha256(
            "\0".join([source.code, unit, *flags, *((HERE / h).read_text() for h in HEADERS)]).encode()
        ).hexdigest()
        folder = self.directory / f"{source.name}-{dtype}-{digest[:16]}"
        target = folder / f"{source.name}.so"
        if not target.exists():
            folder.mkdir(exist_ok=True)
            self._compile(source, unit, flags, target)
        return target

    def library(self, cpp: Path) -> Path:
        """A plain C++ file (the cuBLAS stand-in) compiled as a shared object, once per process."""
        flags = (*FLAGS, *(SANITIZER_FLAGS if sanitized() else ()))
        text = cpp.read_text()
        folder = self.directory / f"{cpp.stem}-{hashlib.sha256(chr(0).join([text, *flags]).encode()).hexdigest()[:16]}"
        target = folder / f"lib{cpp.stem}.so"
        if not target.exists():
            folder.mkdir(exist_ok=True)
            self._run_compiler([*flags, str(cpp), "-o"], target, cpp.stem)
        return target

    def build_all(self, sources, dtypes=tuple(CUDA_TYPES)) -> None:
        """Compile every (source, dtype) not built yet, as many at once as the machine has cores."""
        pairs = [(s, d) for s in sources for d in dtypes]
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            for future in [pool.submit(self.shared_object, s, d) for s, d in pairs]:
                future.result()

    def _compile(self, source, unit: str, flags, target: Path) -> None:
        (target.parent / f"{source.name}.cu").write_text(source.code)  # the text NVRTC compiles, unchanged
        unit_path = target.with_suffix(".cpp")
        unit_path.write_text(unit)
        arguments = [
            *flags,
            "-include",
            str(HERE / "cuda_emulation.h"),
            "-I",
            str(HERE),
            "-I",
            str(target.parent),
            str(unit_path),
            "-o",
        ]
        self._run_compiler(arguments, target, f"CUDA source {source.name!r}")

    def _run_compiler(self, arguments, target: Path, what: str) -> None:
        cxx = compiler()
        if cxx is None:
            raise BuildError("no C++ compiler found (set CXX, or install g++)")
        partial = target.with_suffix(".partial")
        command = [cxx, *arguments, str(partial), "-ldl"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"compiling {what} for the CPU failed:\n{' '.join(command)}\n{done.stderr}")
        os.replace(partial, target)  # complete or absent: a failed build never leaves a half-written object


_BUILDER: Builder | None = None


def builder() -> Builder:
    """The process's one Builder (its directory is removed when the process exits)."""
    global _BUILDER
    if _BUILDER is None:
        _BUILDER = Builder()
    return _BUILDER
