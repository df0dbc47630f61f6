"""CUDA kernels for the output layer: bias, sigmoid or softmax, the cross-entropy cost and dZ_L in one pass.

Each runs as ONE block of REDUCE_THREADS threads: the output layer (n_L, m) is small next to the hidden
layers, and one block can sum the cost in a fixed order (float64 partial sums, then the block's tree
reduction) without atomics or a second launch, so the cost is the same on every run. The cost is the
reference's stable form from the logits: per element max(z,0) - z·y + log1p(exp(-|z|)) for sigmoid, per
column Σ_i y_i (log1p(Σ_{k≠top} exp(z_k - z_top)) + (z_top - z_i)) for softmax (the log1p form keeps the
digits of a confident column's tiny cost). Y, dZ and cost may each be absent (nullptr) when not asked for.
"""

from __future__ import annotations

from .cupy_common import PRELUDE, KernelSource

CODE = (
    PRELUDE
    + r"""
// Z <- Z + b; A <- sigmoid(Z); cost[0] <- mean cross-entropy; dZ <- dZ_scale * (A - Y).  (n, m); b: (n,).
template <typename T>
__global__ void sigmoid_output(T* Z, const T* b, T* A, const T* Y, T* dZ, T* cost, index_t n, index_t m, T dZ_scale) {
    __shared__ double partial[REDUCE_THREADS];
    double total = 0.0;
    for (index_t k = threadIdx.x; k < n * m; k += blockDim.x) {
        T z = Z[k] + b[k / m];
        Z[k] = z;
        T e = exp(-fabs(z));  // one exp serves the sigmoid and the cost
        T a = z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
        A[k] = a;
        if (cost != nullptr) total += (double)((z > T(0) ? z : T(0)) - z * Y[k] + log1p(e));
        if (dZ != nullptr) dZ[k] = (a - Y[k]) * dZ_scale;
    }
    if (cost != nullptr) {
        double sum = block_sum(total, partial);
        if (threadIdx.x == 0) cost[0] = (T)(sum / (double)m);
    }
}

// Z <- Z + b; A <- column-wise softmax(Z); cost[0] <- mean categorical cross-entropy; dZ <- dZ_scale * (A - Y).
// One thread per column (consecutive threads read consecutive columns of each row).
template <typename T>
__global__ void softmax_output(T* Z, const T* b, T* A, const T* Y, T* dZ, T* cost, index_t n, index_t m, T dZ_scale) {
    __shared__ double partial[REDUCE_THREADS];
    double total = 0.0;
    for (index_t j = threadIdx.x; j < m; j += blockDim.x) {
        T top = Z[j] + b[0];
        index_t k_top = 0;
        for (index_t i = 0; i < n; ++i) {
            T z = Z[i * m + j] + b[i];
            Z[i * m + j] = z;
            if (z > top) {  // the first of equal maxima, like numpy.argmax
                top = z;
                k_top = i;
            }
        }
        T rest = T(0);  // sum of exp(z_i - top) over i != k_top; the top term is exactly 1
        for (index_t i = 0; i < n; ++i) {
            T e = exp(Z[i * m + j] - top);
            A[i * m + j] = e;
            if (i != k_top) rest += e;
        }
        T s = A[k_top * m + j] + rest;  // the top term: exactly 1, or NaN for a +inf top logit (NaN column, as the reference)
        T log_s = log1p(rest);  // lse - top
        for (index_t i = 0; i < n; ++i) {
            index_t k = i * m + j;
            T a = A[k] / s;
            A[k] = a;
            if (cost != nullptr) total += (double)(Y[k] * (log_s + (top - Z[k])));  // y (lse - z)
            if (dZ != nullptr) dZ[k] = (a - Y[k]) * dZ_scale;
        }
    }
    if (cost != nullptr) {
        double sum = block_sum(total, partial);
        if (threadIdx.x == 0) cost[0] = (T)(sum / (double)m);
    }
}
"""
)

SOURCE = KernelSource("cupy_output", CODE, templated=("sigmoid_output", "softmax_output"))
