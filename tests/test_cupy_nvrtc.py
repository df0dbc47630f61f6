"""Without a GPU: every CUDA source the CuPy backend compiles builds with NVRTC, every kernel instantiated.

The sources are compiled exactly as `cupy.RawModule` compiles them on a GPU (same text, options and name
expressions), for compute_90, through `cuda-bindings` and the `nvidia-cuda-nvrtc` wheel of the
`cuda-check` extra. CI (CI=true) fails when those are missing instead of skipping, so a kernel that does not compile
can never pass unnoticed there.
"""

import os

import pytest

from dnn.kernels.cupy_common import CUDA_TYPES, KernelSource
from dnn.kernels.cupy_modules import SOURCES


def _nvrtc_or_skip():
    try:
        from cuda.bindings import nvrtc

        status, *_ = nvrtc.nvrtcVersion()
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"nvrtcVersion returned {status}")
    except Exception as exc:  # not installed, or the NVRTC library is missing
        if os.environ.get("CI"):
            pytest.fail(f"NVRTC is required in CI (pip install -e '.[cuda-check]'): {exc}")
        pytest.skip(f"NVRTC is not available here ({exc}); pip install -e '.[cuda-check]'")


@pytest.fixture(scope="module")
def compile_source():
    _nvrtc_or_skip()
    from dnn.kernels.cupy_nvrtc import compile_source

    return compile_source


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_every_source_compiles_with_every_kernel_instantiated(compile_source, source):
    result = compile_source(source)
    assert result.ptx.startswith(b"//") and b".target sm_90" in result.ptx
    assert set(result.lowered_names) == set(source.name_expressions())
    for expression, lowered in result.lowered_names.items():
        assert f".entry {lowered}(" in result.ptx.decode(), f"{expression} ({lowered}) has no kernel in the PTX"


def test_every_templated_kernel_exists_for_both_dtypes():
    for source in SOURCES:
        for kernel in source.templated:
            assert [source.name_expression(kernel, dt) for dt in CUDA_TYPES] == [
                f"{kernel}<float>",
                f"{kernel}<double>",
            ]


def test_a_kernel_that_does_not_compile_fails_with_nvrtcs_log(compile_source):
    from dnn.kernels.cupy_nvrtc import NvrtcError

    broken = KernelSource("broken", "template <typename T> __global__ void k(T* a) { a[0] = undeclared_name; }", ("k",))
    with pytest.raises(NvrtcError, match=r"(?s)nvrtcCompileProgram failed for CUDA source 'broken'.*undeclared_name"):
        compile_source(broken)


def test_an_error_inside_a_template_is_caught_by_its_instantiation(compile_source):
    """Without the name expressions NVRTC would never instantiate the body, and this error would pass."""
    from dnn.kernels.cupy_nvrtc import NvrtcError

    broken = KernelSource(
        "broken_template", "template <typename T> __global__ void k(T* a) { a[0] = T::no_such_member; }", ("k",)
    )
    with pytest.raises(NvrtcError, match="no_such_member"):
        compile_source(broken)


def test_importing_the_kernels_imports_no_cupy():
    import subprocess
    import sys

    code = "import dnn.kernels.cupy_modules, dnn.kernels.cupy_nvrtc, dnn.backends.cupy_backend, sys; print(sorted(sys.modules))"
    modules = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "'cupy'" not in modules and "'cuda.bindings.nvrtc'" not in modules
