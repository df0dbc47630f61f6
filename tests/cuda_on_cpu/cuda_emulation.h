// CUDA C++ on the CPU: the subset of the CUDA language the project's kernels use, for the tests only.
//
// A kernel source is compiled by the system C++ compiler exactly as NVRTC receives it, with this header
// force-included (-include). Each CUDA thread of a block is a fiber (its own stack); the block's fibers run
// one at a time on the calling OS thread, so `__syncthreads` is a block barrier (the scheduler resumes the
// fibers waiting at it once every live thread of the block has arrived), warp shuffles and `__syncwarp` wait
// for the whole warp, and atomics are plain read-modify-writes (no fiber is preempted inside one). Blocks
// run one after another. Shared memory (`__shared__`, static or `extern` dynamic) is thread-local storage of
// this shared object, refilled with 0xFF bytes (NaN for float and double) before every block, so a thread
// that reads a slot no thread of its block wrote reads NaN. The launcher is `block_scheduler.h`.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __align__(n) alignas(n)
// Block-scope thread_local implies static storage: one array per block (blocks run one at a time on one OS
// thread), and an `extern __shared__ T name[]` declaration names the dynamic array the build defines.
#define __shared__ thread_local

// The math functions of the CUDA sources, overloaded for float and double as CUDA's are (expf for a float).
using std::abs;
using std::ceil;
using std::exp;
using std::fabs;
using std::floor;
using std::fmax;
using std::fmin;
using std::isfinite;
using std::isinf;
using std::isnan;
using std::log;
using std::log1p;
using std::pow;
using std::sqrt;
using std::tanh;

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
};

namespace cuda_on_cpu {
// Set by the scheduler before it resumes a fiber: the built-in variables of the thread that runs.
extern uint3 thread_index, block_index;
extern dim3 block_dim, grid_dim;
void block_barrier(int line);
void warp_barrier(unsigned mask, int line);
void warp_exchange(unsigned mask, const void* value, void* result, int source_lane, std::size_t size, int line);
}  // namespace cuda_on_cpu

#define threadIdx (cuda_on_cpu::thread_index)
#define blockIdx (cuda_on_cpu::block_index)
#define blockDim (cuda_on_cpu::block_dim)
#define gridDim (cuda_on_cpu::grid_dim)
#define warpSize 32

// The line is recorded so that threads of one block waiting at different barriers are an error, not a hang.
#define __syncthreads() cuda_on_cpu::block_barrier(__LINE__)
#define __syncwarp(...) cuda_on_cpu::warp_barrier(cuda_on_cpu::warp_mask(__VA_ARGS__), __LINE__)
#define __threadfence() ((void)0)
#define __threadfence_block() ((void)0)

namespace cuda_on_cpu {
inline unsigned warp_mask(unsigned mask = 0xffffffffu) { return mask; }
inline int lane() { return static_cast<int>(thread_index.x % 32); }

template <typename T>
T shuffle(unsigned mask, T value, int source_lane, int line) {
    T result;
    warp_exchange(mask, &value, &result, source_lane, sizeof(T), line);
    return result;
}
}  // namespace cuda_on_cpu

// Warp shuffles: every lane of the warp publishes its value, then reads the source lane's (its own when the
// source lies outside its `width`-lane segment, as CUDA does for the _up/_down variants).
#define __shfl_sync(mask, value, lane_, ...) cuda_on_cpu::shfl_idx(mask, value, lane_, __LINE__, ##__VA_ARGS__)
#define __shfl_down_sync(mask, value, delta, ...) cuda_on_cpu::shfl_down(mask, value, delta, __LINE__, ##__VA_ARGS__)
#define __shfl_up_sync(mask, value, delta, ...) cuda_on_cpu::shfl_up(mask, value, delta, __LINE__, ##__VA_ARGS__)
#define __shfl_xor_sync(mask, value, bits, ...) cuda_on_cpu::shfl_xor(mask, value, bits, __LINE__, ##__VA_ARGS__)

namespace cuda_on_cpu {
template <typename T>
T shfl_idx(unsigned mask, T value, int source, int line, int width = 32) {
    int base = lane() / width * width;
    return shuffle(mask, value, base + (source % width), line);
}
template <typename T>
T shfl_down(unsigned mask, T value, unsigned delta, int line, int width = 32) {
    int segment_end = lane() / width * width + width;
    int source = lane() + static_cast<int>(delta);
    return shuffle(mask, value, source < segment_end ? source : lane(), line);
}
template <typename T>
T shfl_up(unsigned mask, T value, unsigned delta, int line, int width = 32) {
    int segment_start = lane() / width * width;
    int source = lane() - static_cast<int>(delta);
    return shuffle(mask, value, source >= segment_start ? source : lane(), line);
}
template <typename T>
T shfl_xor(unsigned mask, T value, int bits, int line, int width = 32) {
    int source = lane() ^ bits;
    return shuffle(mask, value, source / width == lane() / width ? source : lane(), line);
}
}  // namespace cuda_on_cpu

// Atomics: fibers are never preempted, so a read-modify-write is atomic; each returns the old value.
template <typename T>
__device__ T atomicAdd(T* address, T value) {
    T old = *address;
    *address = old + value;
    return old;
}
template <typename T>
__device__ T atomicSub(T* address, T value) {
    T old = *address;
    *address = old - value;
    return old;
}
template <typename T>
__device__ T atomicMax(T* address, T value) {
    T old = *address;
    *address = old < value ? value : old;
    return old;
}
template <typename T>
__device__ T atomicMin(T* address, T value) {
    T old = *address;
    *address = value < old ? value : old;
    return old;
}
template <typename T>
__device__ T atomicExch(T* address, T value) {
    T old = *address;
    *address = value;
    return old;
}
template <typename T>
__device__ T atomicCAS(T* address, T compare, T value) {
    T old = *address;
    if (old == compare) *address = value;
    return old;
}
template <typename T>
__device__ T atomicOr(T* address, T value) {
    T old = *address;
    *address = old | value;
    return old;
}
template <typename T>
__device__ T __ldg(const T* address) {
    return *address;
}
