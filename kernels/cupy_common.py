"""What every CUDA source of the CuPy backend shares: the source record, the common prelude, the NVRTC options.

A `KernelSource` is plain text plus the kernel names it defines, so the exact source that runs on the GPU
(compiled by `cupy.RawModule` on first use, `kernels/cupy_modules.py`) is also compiled on a CPU-only
machine by NVRTC (`kernels/cupy_nvrtc.py`, in CI). Kernels are C++ templates over the element type,
instantiated for float and double through NVRTC name expressions (``"name<float>"``); kernels that do not
depend on a dtype are plain functions named as they are. Nothing here imports cupy.

Arithmetic mirrors the NumPy reference (`backends/base.py`) operation for operation: `--fmad=false` keeps
NVRTC from contracting a·b + c into one fused multiply-add, which would round differently from the
reference's separate product and sum; no fast-math option is given, so isfinite() and IEEE division and
square root stay exact. CuPy adds `-ftz=true` (float32 subnormals read and written as 0); the CPU test
compiles with it too. The sources use C++11 only, whichever standard the compiler defaults to.
"""

from __future__ import annotations

from typing import NamedTuple

from ..activations import ACTIVATION_CODES, DECLARED
from . import step_state

#: The element types every templated kernel is instantiated for, by numpy dtype name.
CUDA_TYPES = {"float32": "float", "float64": "double"}
#: Options every source is compiled with, on the GPU and in the CPU test (which adds the architecture).
NVRTC_OPTIONS = ("--fmad=false",)
#: What cupy.RawModule appends to those options itself (cupy.cuda.compiler), so the CPU test compiles with
#: the same: float32 subnormals flush to zero, a difference below 1.2e-38 in absolute terms.
CUPY_APPENDED_OPTIONS = ("-ftz=true",)
#: Threads per block of the kernels that reduce (a power of two: the tree reduction halves it).
REDUCE_THREADS = 256


class KernelSource(NamedTuple):
    """One CUDA translation unit: its name, its code, the templated kernels (per dtype) and the plain ones."""

    name: str
    code: str
    templated: tuple[str, ...]
    plain: tuple[str, ...] = ()

    def name_expression(self, kernel: str, dtype: str | None = None) -> str:
        """The NVRTC name expression of `kernel` (for `dtype` when templated); KeyError when it is not declared."""
        if kernel in self.templated:
            return f"{kernel}<{CUDA_TYPES[dtype]}>"
        if kernel in self.plain:
            return kernel
        raise KeyError(f"{kernel!r} is not a kernel of CUDA source {self.name!r}")

    def name_expressions(self) -> tuple[str, ...]:
        """Every instantiation this source is compiled with: each templated kernel per dtype, then the plain ones."""
        return tuple(self.name_expression(k, dt) for k in self.templated for dt in CUDA_TYPES) + self.plain


#: `#define ACT_<NAME> <code>` for every activation (`dnn/activations.py`, ACTIVATION_CODES): the kernels' switch
#: cases; then `#define <NAME>_<PARAMETER> <value>` for every activation's parameter.
ACTIVATION_DEFINES = "\n".join(
    [f"#define ACT_{name.upper()} {code}" for name, code in ACTIVATION_CODES.items()]
    + [f"#define {a.constant(name)} {value!r}" for a in DECLARED for name, value in a.parameters.items()]
)
#: `#define <SLOT> <index>` for every step-state slot, and its size (`kernels/step_state.py`).
STATE_DEFINES = "\n".join(
    [f"#define {name} {index}" for name, index in step_state.SLOTS.items()]
    + [f"#define STATE_SIZE {step_state.STATE_SIZE}", f"#define STEP_SLOTS {step_state.STEP_SLOTS}"]
)

#: Shared device code: activation codes, the step-state indices, the stable sigmoid, a block reduction.
PRELUDE = f"""
{ACTIVATION_DEFINES}
{STATE_DEFINES}
#define REDUCE_THREADS {REDUCE_THREADS}

typedef long long index_t;

// 1/(1+e^-z) without overflow: exp(-|z|) <= 1 on both branches, each exact to rounding for its sign of z.
template <typename T>
__device__ __forceinline__ T stable_sigmoid(T z) {{
    T e = exp(-fabs(z));
    return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}}

// The sum of one value per thread of a REDUCE_THREADS block, in a fixed tree order (deterministic), returned
// to every thread. `shared` holds REDUCE_THREADS doubles; it may be reused as soon as this returns.
__device__ __forceinline__ double block_sum(double value, double* shared) {{
    shared[threadIdx.x] = value;
    __syncthreads();
    for (int half = REDUCE_THREADS / 2; half > 0; half >>= 1) {{
        if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }}
    double total = shared[0];
    __syncthreads();
    return total;
}}

// True when the step state says this step diverged: updates predicated on it read it on the device.
__device__ __forceinline__ bool step_diverged(const double* state) {{
    return state != nullptr && state[NONFINITE] != 0.0;
}}
"""
