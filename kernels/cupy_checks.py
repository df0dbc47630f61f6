"""CUDA kernels for finiteness and the float64 step-state vector (slots named in `kernels/step_state.py`).

- `flag_non_finite`: sets *flag = 1 when any element is NaN or ±inf (every writer writes the same 1, so
  the race is benign); the host clears the flag before and reads it after.
- `guard_step`: sets state[NONFINITE] = 1 when this step's cost sum or any gradient element is not
  finite. Sticky: it only ever writes 1, so once set the flag stays until the host resets it.
- `commit_step`: when the step did not diverge, adds this step's cost, correct predictions and examples
  into the totals and counts the step; one thread, so it is one launch a graph can replay.
- `begin_step`: zeroes the slots of the step in progress (cost sum, correct count, examples); one thread.
- `record_step`: state[STEP_COST] += cost[0]·m (in double), state[STEP_EXAMPLES] = m, and
  state[STEP_CORRECT] = the number of examples classified correctly (sigmoid: A > 0.5 against the 0/1
  labels, averaged over the output units, which for one unit is the count of columns; softmax: the first
  argmax of A against the first argmax of the one-hot Y, a NaN counting as the maximum as in
  numpy.argmax). One block, so the count is summed in a fixed order; counts are exact in float64.
- `add_sum_of_squares`: state[STEP_COST] += scale·Σ x² (the L2 penalty of one weight matrix), one block,
  summed in double in a fixed order.

Every kernel here writes only device memory and takes its scalars as arguments, so none needs the host
inside a step and each is one launch a CUDA graph can replay.
"""

from __future__ import annotations

from .cupy_common import PRELUDE, KernelSource

CODE = (
    PRELUDE
    + r"""
template <typename T>
__global__ void flag_non_finite(index_t size, const T* a, int* flag) {
    for (index_t k = blockIdx.x * (index_t)blockDim.x + threadIdx.x; k < size; k += (index_t)gridDim.x * blockDim.x) {
        if (!isfinite(a[k])) *flag = 1;
    }
}

template <typename T>
__global__ void guard_step(index_t size, const T* grad, double* state) {
    if (blockIdx.x == 0 && threadIdx.x == 0 && !isfinite(state[STEP_COST])) state[NONFINITE] = 1.0;
    for (index_t k = blockIdx.x * (index_t)blockDim.x + threadIdx.x; k < size; k += (index_t)gridDim.x * blockDim.x) {
        if (!isfinite(grad[k])) state[NONFINITE] = 1.0;
    }
}

__global__ void commit_step(double* state) {
    if (blockIdx.x != 0 || threadIdx.x != 0 || state[NONFINITE] != 0.0) return;
    for (int i = 0; i < STEP_SLOTS; ++i) state[TOTAL_COST + i] += state[STEP_COST + i];
    state[FINITE_STEPS] += 1.0;
}

__global__ void begin_step(double* state) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    for (int i = 0; i < STEP_SLOTS; ++i) state[STEP_COST + i] = 0.0;
}

// True when x takes the argmax from the current best, as numpy.argmax decides: the first NaN, else the first maximum.
template <typename T>
__device__ __forceinline__ bool after_argmax(T x, T best) {
    return !isnan(best) && (isnan(x) || x > best);
}

// A, Y: (n, m); cost: (1,); launched as one block of REDUCE_THREADS threads.
template <typename T>
__global__ void record_step(const T* A, const T* Y, const T* cost, index_t n, index_t m, int softmax, double* state) {
    __shared__ double partial[REDUCE_THREADS];
    double correct = 0.0;
    for (index_t j = threadIdx.x; j < m; j += blockDim.x) {
        if (softmax) {
            index_t predicted = 0, truth = 0;
            for (index_t i = 1; i < n; ++i) {
                if (after_argmax(A[i * m + j], A[predicted * m + j])) predicted = i;
                if (after_argmax(Y[i * m + j], Y[truth * m + j])) truth = i;
            }
            correct += predicted == truth ? 1.0 : 0.0;
        } else {
            for (index_t i = 0; i < n; ++i) {
                T predicted = A[i * m + j] > T(0.5) ? T(1) : T(0);
                correct += predicted == Y[i * m + j] ? 1.0 : 0.0;
            }
        }
    }
    double total = block_sum(correct, partial);
    if (threadIdx.x == 0) {
        state[STEP_CORRECT] = softmax ? total : total / (double)n;
        state[STEP_COST] += (double)cost[0] * (double)m;  // the mean cost times m, in double as the reference
        state[STEP_EXAMPLES] = (double)m;
    }
}

// state[STEP_COST] += scale * sum(x^2), x: (size,); launched as one block of REDUCE_THREADS threads.
template <typename T>
__global__ void add_sum_of_squares(index_t size, const T* x, double scale, double* state) {
    __shared__ double partial[REDUCE_THREADS];
    double sum = 0.0;
    for (index_t k = threadIdx.x; k < size; k += blockDim.x) sum += (double)(x[k] * x[k]);
    double total = block_sum(sum, partial);
    if (threadIdx.x == 0) state[STEP_COST] += scale * total;
}
"""
)

SOURCE = KernelSource(
    "cupy_checks",
    CODE,
    templated=("flag_non_finite", "guard_step", "record_step", "add_sum_of_squares"),
    plain=("begin_step", "commit_step"),
)
