"""CUDA kernels for the in-place elementwise passes: every optimizer's update (generated), axpy, a product.

Grid-stride loops over the flattened C-contiguous arrays. Each registered optimizer (`dnn.optimizers`) gets
the kernel ``<name>_update``, its statements rendered as C (`dnn.expressions`) on element k, read before
anything is written:

    <name>_update<T>(size, param, grad, *slots, lr, *hyperparameters, *scalars, lr_device, t_device, state)

It performs the reference's arithmetic (`backends/base.py`) in the reference's order and dtype: lr, the
hyperparameters and the scalars arrive as doubles formed on the host (1 - β, 1 - β^t in Python's double) and
are rounded to the arrays' dtype on the device exactly as the reference's `asarray(x, dtype)` rounds them.

The updates are written for a CUDA-graph capture, where one recorded launch must serve every step:
- `state` (the float64 step-state vector, or nullptr): when state[NONFINITE] != 0 the kernel returns
  without writing, so a diverged step leaves the parameters and optimizer slots as they were. The flag is
  read on the device; the host never waits for it.
- `lr_device` (a float64 scalar in device memory, or nullptr): read in place of `lr` when given.
- `t_device` (the step count as a float64 in device memory, or nullptr): when given, the scalars that depend
  on t (Adam's 1 - β^t) are formed on the device in double from it, else the host's values are used.
- `advance_step_count`: t += 1 unless the step diverged, so a replayed graph counts the steps itself.
"""

from __future__ import annotations

from ..expressions import C, render, render_assignments
from ..optimizers import GRAD, LR, OPTIMIZERS, PARAM, STEP_COUNT
from .cupy_common import PRELUDE, KernelSource

#: C for the scalars formed in double from the hyperparameters (``<name>_host``) and the device's t.
DOUBLE = C._replace(
    number=lambda text: repr(float(text)), name=lambda name: "t" if name == STEP_COUNT else f"{name}_host"
)

_KERNEL = """
// {name}'s update (dnn.optimizers), unless the step diverged.
template <typename T>
__global__ void {name}_update(index_t size, {parameters},
    const double* lr_device, const double* t_device, const double* state) {{
    if (step_diverged(state)) return;{step_scalars}
{operands}
    GRID_STRIDE(k, size) {{
{body}
    }}
}}
"""


def kernel_arguments(rule) -> tuple[str, ...]:
    """The doubles an optimizer's kernel takes after its arrays, in order: lr, the hyperparameters, the scalars."""
    return (LR, *rule.hyperparameters, *rule.scalars)


def update_kernel_source(rule) -> str:
    """The CUDA template ``<name>_update`` of optimizer `rule` (`dnn.optimizers.UpdateRule`)."""
    arrays = (PARAM, GRAD, *rule.slots)
    element = C._replace(name=lambda name: f"{name}_k" if name in arrays else name)
    pointers = [f"{'const ' * (a == GRAD)}T* {a}" for a in arrays]
    step_scalars = "".join(
        f"\n        {name}_host = {render(rule.scalar_trees[name], DOUBLE)};" for name in rule.step_scalars
    )
    if step_scalars:
        step_scalars = f"\n    if (t_device != nullptr) {{\n        const double t = t_device[0];{step_scalars}\n    }}"
    operands = [
        f"    const T {name} = (T){'learning_rate(lr_host, lr_device)' if name == LR else f'{name}_host'};"
        for name in rule.operands
    ]
    body = [f"{'const ' * (a == GRAD)}T {a}_k = {a}[k];" for a in arrays]
    body += [f"{line};" for line in render_assignments(rule.statements, element)]
    body += [f"{a}[k] = {a}_k;" for a in dict.fromkeys(s.target for s in rule.statements)]
    return _KERNEL.format(
        name=rule.name,
        parameters=", ".join(pointers + [f"double {name}_host" for name in kernel_arguments(rule)]),
        step_scalars=step_scalars,
        operands="\n".join(operands),
        body="\n".join(f"        {line}" for line in body),
    )


CODE = (
    PRELUDE
    + r"""
#define GRID_STRIDE(k, size) \
    for (index_t k = blockIdx.x * (index_t)blockDim.x + threadIdx.x; k < (size); k += (index_t)gridDim.x * blockDim.x)

__device__ __forceinline__ double learning_rate(double lr, const double* lr_device) {
    return lr_device != nullptr ? lr_device[0] : lr;
}

// y <- y + alpha * x
template <typename T>
__global__ void axpy(index_t size, double alpha, const T* x, T* y) {
    T a = (T)alpha;
    GRID_STRIDE(k, size) { y[k] += a * x[k]; }
}

// t <- t + 1 (the step count in device memory), unless the step diverged; one thread, before the update.
__global__ void advance_step_count(double* t, const double* state) {
    if (blockIdx.x != 0 || threadIdx.x != 0 || step_diverged(state)) return;
    t[0] += 1.0;
}

// out <- a * b (a dropout mask applied); out may be a or b.
template <typename T>
__global__ void multiply(index_t size, const T* a, const T* b, T* out) {
    GRID_STRIDE(k, size) { out[k] = a[k] * b[k]; }
}
"""
    + "".join(update_kernel_source(cls.rule) for cls in OPTIMIZERS.values())
)

SOURCE = KernelSource(
    "cupy_updates",
    CODE,
    templated=("axpy", *(f"{name}_update" for name in OPTIMIZERS), "multiply"),
    plain=("advance_step_count",),
)
