"""CUDA kernels for the hidden layers: bias + activation forward, and dZ = dA·g'(·) with db in one pass.

Forward: threads over columns, blocks over rows (each block reads its row's bias once); writes Z + b and
g(Z + b). Backward: one block per row (rows strided over the grid), threads over its columns, writing dZ and
summing it in float64 for db with a fixed-order block reduction, so db is the same on every run. The
reference's g' from the layer's output A (sigmoid' = A(1-A), tanh' = 1-A², relu' from the sign of A) or
from its pre-activation Z. Passing no dZ buffer (out = nullptr) turns the backward kernel into db's row
sums alone (`Backend.bias_grad`). The device functions `activate` and `derivative` are generated from the
declarations of `dnn/activations.py` (C rendering of `dnn/expressions.py`).
"""

from __future__ import annotations

from ..activations import DECLARED, Activation
from ..expressions import C, Target, render
from .cupy_common import PRELUDE, KernelSource


def _c(declared: Activation, z: str = "z") -> Target:
    """C with `declared`'s parameters as their #defines (`cupy_common.ACTIVATION_DEFINES`) and z spelled `z`."""
    constants = {name: f"T({declared.constant(name)})" for name in declared.parameters}
    return C._replace(name=lambda name: constants.get(name, z if name == "z" else name))


def _case(declared: Activation, body: str) -> str:
    label = "default" if declared is DECLARED[-1] else f"case ACT_{declared.name.upper()}"
    return f"        {label}: {body}  // {declared.name}"


def _derivative_case(declared: Activation) -> str:
    derivative = f"return {render(declared.derivative_tree, _c(declared))};"
    if declared.derivative_from_z_tree is not None:
        from_z = render(declared.derivative_from_z_tree, _c(declared, "src"))
        return _case(declared, f"{{ if (from_output) {{ T a = src; {derivative} }} return {from_z}; }}")
    if not declared.uses_output():
        return _case(declared, derivative)
    value = render(declared.value_tree, _c(declared, "src"))
    return _case(declared, f"{{ T a = from_output ? src : {value}; {derivative} }}")


#: g(z) and g'(.) of every declared activation (`dnn/activations.py`), as switches over the codes; the last
#: declared is the default branch (the host only launches registered codes).
DEVICE_FUNCTIONS = "\n".join(
    [
        "template <typename T>",
        "__device__ __forceinline__ T activate(T z, int act) {",
        "    switch (act) {",
        *(_case(a, f"return {render(a.value_tree, _c(a))};") for a in DECLARED),
        "    }",
        "}",
        "",
        "// g'(.) from the layer's output a (from_output) or from its pre-activation.",
        "template <typename T>",
        "__device__ __forceinline__ T derivative(T src, int act, bool from_output) {",
        "    switch (act) {",
        *(_derivative_case(a) for a in DECLARED),
        "    }",
        "}",
    ]
)

CODE = (
    PRELUDE
    + DEVICE_FUNCTIONS
    + r"""

// Z <- Z + b (when with_bias), out <- g(Z).  Z, out: (n, m) row-major; b: (n,). out may be Z.
template <typename T>
__global__ void bias_activation_forward(T* Z, const T* b, T* out, index_t n, index_t m, int act, int with_bias) {
    for (index_t i = blockIdx.y; i < n; i += gridDim.y) {
        T bias = with_bias ? b[i] : T(0);
        for (index_t j = blockIdx.x * (index_t)blockDim.x + threadIdx.x; j < m; j += (index_t)gridDim.x * blockDim.x) {
            index_t k = i * m + j;
            T z = Z[k];
            if (with_bias) {
                z = z + bias;
                Z[k] = z;  // when out is Z the next store overwrites this one
            }
            out[k] = activate(z, act);
        }
    }
}

// out <- dA * g'(src) (when out is given), db <- db_scale * sum over columns of dA * g'(src) (when db is given).
// dA, src, out: (n, m); db: (n,). out may be dA. Launched with REDUCE_THREADS threads per block.
template <typename T>
__global__ void activation_backward(const T* dA, const T* src, T* out, T* db, index_t n, index_t m, int act,
                                    int from_output, double db_scale) {
    __shared__ double partial[REDUCE_THREADS];
    for (index_t i = blockIdx.x; i < n; i += gridDim.x) {
        double row_total = 0.0;
        for (index_t j = threadIdx.x; j < m; j += blockDim.x) {
            index_t k = i * m + j;
            T d = dA[k] * derivative(src[k], act, from_output != 0);
            if (out != nullptr) out[k] = d;
            row_total += (double)d;
        }
        if (db != nullptr) {  // the same for every thread of the block: block_sum's barriers are reached by all
            double total = block_sum(row_total, partial);
            if (threadIdx.x == 0) db[i] = (T)(total * db_scale);
        }
    }
}
"""
)

SOURCE = KernelSource("cupy_activations", CODE, templated=("bias_activation_forward", "activation_backward"))
