"""CUDA kernels for the in-place elementwise passes: axpy, SGD, momentum, Adam over the flat vectors, a product.

Grid-stride loops over the flattened C-contiguous arrays. Each update performs the reference's arithmetic
(`backends/base.py`) in the reference's order and dtype: hyperparameters arrive as doubles and are rounded
to the arrays' dtype on the device exactly as the reference's `asarray(x, dtype)` rounds them (1 - β is
formed in double first, as in Python).

The updates are written for a later CUDA-graph capture, where one recorded launch must serve every step:
- `state` (the float64 step-state vector, or nullptr): when state[NONFINITE] != 0 the kernel returns
  without writing, so a diverged step leaves the parameters and optimizer moments as they were. The flag is
  read on the device; the host never waits for it.
- `lr_device` (a float64 scalar in device memory, or nullptr): read in place of `lr` when given.
- `t_device` (Adam's step count as a float64 in device memory, or nullptr): when given, the bias
  corrections 1 - β^t are formed on the device in double, else the host's `c1`, `c2` are used.
- `advance_step_count`: t += 1 unless the step diverged, so a replayed graph counts Adam's steps itself.
"""

from __future__ import annotations

from .cupy_common import PRELUDE, KernelSource

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

// param <- param - lr * grad, unless the step diverged.
template <typename T>
__global__ void sgd_update(index_t size, T* param, const T* grad, double lr, const double* lr_device, const double* state) {
    if (step_diverged(state)) return;
    T a = (T)learning_rate(lr, lr_device);
    GRID_STRIDE(k, size) { param[k] -= a * grad[k]; }
}

// velocity <- beta * velocity + (1 - beta) * grad; param <- param - lr * velocity, unless the step diverged.
template <typename T>
__global__ void momentum_update(index_t size, T* param, const T* grad, T* velocity, double lr, double beta,
                                const double* lr_device, const double* state) {
    if (step_diverged(state)) return;
    T a = (T)learning_rate(lr, lr_device);
    T b = (T)beta;
    T one_minus_b = (T)(1.0 - beta);
    GRID_STRIDE(k, size) {
        T v = velocity[k] * b + one_minus_b * grad[k];
        velocity[k] = v;
        param[k] -= a * v;
    }
}

// m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2; param <- param - lr (m/c1) / (sqrt(v/c2) + eps), unless diverged.
template <typename T>
__global__ void adam_update(index_t size, T* param, const T* grad, T* m, T* v, double lr, double beta1, double beta2,
                            double eps, double c1, double c2, const double* lr_device, const double* t_device,
                            const double* state) {
    if (step_diverged(state)) return;
    if (t_device != nullptr) {
        c1 = 1.0 - pow(beta1, t_device[0]);
        c2 = 1.0 - pow(beta2, t_device[0]);
    }
    T a = (T)learning_rate(lr, lr_device);
    T b1 = (T)beta1, one_minus_b1 = (T)(1.0 - beta1);
    T b2 = (T)beta2, one_minus_b2 = (T)(1.0 - beta2);
    T correction1 = (T)c1, correction2 = (T)c2, epsilon = (T)eps;
    GRID_STRIDE(k, size) {
        T g = grad[k];
        T mk = m[k] * b1 + one_minus_b1 * g;
        T vk = v[k] * b2 + one_minus_b2 * (g * g);
        m[k] = mk;
        v[k] = vk;
        param[k] -= a * (mk / correction1) / (sqrt(vk / correction2) + epsilon);
    }
}

// t <- t + 1 (Adam's step count in device memory), unless the step diverged; one thread, before adam_update.
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
)

SOURCE = KernelSource(
    "cupy_updates",
    CODE,
    templated=("axpy", "sgd_update", "momentum_update", "adam_update", "multiply"),
    plain=("advance_step_count",),
)
