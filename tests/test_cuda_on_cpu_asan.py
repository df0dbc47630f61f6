"""Without a GPU, slow: the CUDA kernels on the CPU under AddressSanitizer, every access checked as it happens.

A child pytest runs the kernel tests at their small shapes with libasan preloaded and
DNN_CUDA_ON_CPU_ASAN=1: each source is compiled with -fsanitize=address and every guard region of a device
allocation is made unaddressable, so an out-of-bounds read (which the guards alone only turn into NaN) or
write stops the child with ASan's report. Deselect with -m "not slow".
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cuda_on_cpu import build

TESTS = Path(__file__).resolve().parent
#: Every kernel test but the large shapes (the same code paths; ASan's bookkeeping makes those minutes long).
SMALL_SHAPES = "not beyond_65535 and not 257 and not 1025 and not 100003 and not nan_inf"


def _libasan() -> str | None:
    cxx = build.compiler()
    if cxx is None:
        return None
    path = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.slow
def test_the_kernels_run_clean_under_address_sanitizer():
    libasan = _libasan()
    if libasan is None:
        pytest.skip("no C++ compiler with AddressSanitizer's runtime (libasan.so) here")
    env = {
        **os.environ,
        "LD_PRELOAD": libasan,
        build.SANITIZE_ENV: "1",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1",
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(TESTS / "test_cuda_on_cpu_kernels.py"),
        "-q",
        "-x",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-k",
        SMALL_SHAPES,
    ]
    done = subprocess.run(command, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "AddressSanitizer" not in output, output[-6000:]
    assert " passed" in done.stdout.splitlines()[-1], output[-2000:]
