"""Without a GPU: the CPU runtime for CUDA C catches what it exists to catch, and emulates what the kernels use.

Small kernels written here, compiled and launched as the project's are: a write past an allocation, an
unwritten output, a barrier not reached by every thread, an argument of the wrong type, an impossible launch
and a read of shared memory no thread wrote each fail; barriers, shuffles, atomics and dynamic shared memory
compute what CUDA computes; a capturing stream refuses host reads, synchronisation and allocation.
"""

import numpy as np
import pytest

from cuda_on_cpu import build

pytestmark = pytest.mark.skipif(
    build.compiler() is None, reason="no C++ compiler ($CXX, g++ or c++): CUDA kernels cannot run on the CPU"
)

CODE = r"""
template <typename T>
__global__ void copy_n(const T* x, T* y, long long n, long long extra) {  // y[k] = x[k] for k < n + extra
    long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (k < n + extra) y[k] = x[k < n ? k : 0];
}

template <typename T>
__global__ void block_total(const T* x, T* out, int barrier_for_all) {  // out[block] = sum of its x (dynamic shared)
    extern __shared__ double scratch[];
    scratch[threadIdx.x] = (double)x[blockIdx.x * blockDim.x + threadIdx.x];
    if (barrier_for_all || threadIdx.x > 0) __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) scratch[threadIdx.x] += scratch[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = (T)scratch[0];
}

template <typename T>
__global__ void read_unwritten_shared(T* out) {
    __shared__ double slots[64];
    if (threadIdx.x < 32) slots[threadIdx.x] = 1.0;
    __syncthreads();
    out[threadIdx.x] = (T)slots[threadIdx.x];
}

template <typename T>
__global__ void warp_sum_and_count(const T* x, T* sums, int* count) {  // shuffles and an atomic
    T v = x[threadIdx.x];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffff, v, offset);
    if (threadIdx.x % 32 == 0) {
        sums[threadIdx.x / 32] = v;
        atomicAdd(count, 1);
    }
}
"""
NAMES = ("copy_n<double>", "block_total<double>", "read_unwritten_shared<double>", "warp_sum_and_count<double>")


@pytest.fixture(scope="module")
def cupy():
    from cuda_on_cpu.fake_cupy import cupy_module

    return cupy_module()


@pytest.fixture(scope="module")
def module(cupy):
    from dnn.kernels.cupy_common import NVRTC_OPTIONS

    return cupy.RawModule(code=CODE, options=NVRTC_OPTIONS, name_expressions=NAMES)


def test_a_write_one_element_past_the_end_fails_the_launch(cupy, module):
    from cuda_on_cpu.device import OutOfBoundsError

    x, y = cupy.asarray(np.arange(300.0)), cupy.empty((300,), np.float64)
    copy = module.get_function("copy_n<double>")
    copy((2,), (256,), (x, y, np.int64(300), np.int64(0)))
    np.testing.assert_array_equal(cupy.asnumpy(y), np.arange(300.0))
    with pytest.raises(
        OutOfBoundsError,
        match=r"kernel copy_n<double> .* wrote out of bounds: 8 byte\(s\) after a 2400-byte allocation",
    ):
        copy((2,), (256,), (x, y, np.int64(300), np.int64(1)))


def test_an_unwritten_output_element_stays_nan(cupy, module):
    y = cupy.empty((300,), np.float64)
    module.get_function("copy_n<double>")((2,), (256,), (cupy.asarray(np.ones(300)), y, np.int64(299), np.int64(0)))
    assert np.isnan(cupy.asnumpy(y)[299]) and not np.isnan(cupy.asnumpy(y)[:299]).any()


def test_barriers_and_dynamic_shared_memory_reduce_a_block(cupy, module):
    x = cupy.asarray(np.arange(512.0))
    out = cupy.empty((2,), np.float64)
    module.get_function("block_total<double>")((2,), (256,), (x, out, np.int32(1)), shared_mem=256 * 8)
    np.testing.assert_array_equal(cupy.asnumpy(out), [np.arange(256.0).sum(), np.arange(256.0, 512.0).sum()])


def test_a_barrier_some_threads_skip_is_an_error_not_a_hang(cupy, module):
    from cuda_on_cpu.kernels import LaunchError

    with pytest.raises(LaunchError, match="threads of one block wait at different __syncthreads"):
        module.get_function("block_total<double>")(
            (1,), (256,), (cupy.asarray(np.ones(256)), cupy.empty((1,), np.float64), np.int32(0)), shared_mem=256 * 8
        )


def test_shared_memory_no_thread_wrote_reads_nan(cupy, module):
    out = cupy.empty((64,), np.float64)
    module.get_function("read_unwritten_shared<double>")((1,), (64,), (out,))
    assert (cupy.asnumpy(out)[:32] == 1.0).all() and np.isnan(cupy.asnumpy(out)[32:]).all()


@pytest.mark.parametrize("reverse", [False, True])
def test_warp_shuffles_and_atomics(cupy, module, reverse):
    from cuda_on_cpu.kernels import reversed_thread_order

    x = cupy.asarray(np.arange(128.0))
    sums, count = cupy.empty((4,), np.float64), cupy.zeros((1,), np.int32)
    if reverse:
        with reversed_thread_order():
            module.get_function("warp_sum_and_count<double>")((1,), (128,), (x, sums, count))
    else:
        module.get_function("warp_sum_and_count<double>")((1,), (128,), (x, sums, count))
    np.testing.assert_array_equal(cupy.asnumpy(sums), np.arange(128.0).reshape(4, 32).sum(axis=1))
    assert int(count[0]) == 4


@pytest.mark.parametrize(
    "arguments,message",
    [
        (
            lambda cp: (cp.asarray(np.ones(4)), cp.empty((4,), np.float64), 4, np.int64(0)),
            r"argument 2 \(i8\) is a int64 scalar, launched with int",
        ),
        (
            lambda cp: (cp.asarray(np.ones(4, np.float32)), cp.empty((4,), np.float64), np.int64(4), np.int64(0)),
            "points to float64, launched with a float32",
        ),
        (
            lambda cp: (np.ones(4), cp.empty((4,), np.float64), np.int64(4), np.int64(0)),
            "is a pointer, launched with a host numpy array",
        ),
        (
            lambda cp: (cp.asarray(np.ones(4)), cp.empty((4,), np.float64), np.int64(4)),
            "takes 4 arguments, launched with 3",
        ),
    ],
)
def test_an_argument_the_signature_does_not_read_is_refused(cupy, module, arguments, message):
    with pytest.raises(TypeError, match=message):
        module.get_function("copy_n<double>")((1,), (32,), arguments(cupy))


@pytest.mark.parametrize("grid,block", [((1, 65536), (32,)), ((1,), (1025,)), ((0,), (32,))])
def test_a_launch_cuda_refuses_is_refused(cupy, module, grid, block):
    from cuda_on_cpu.kernels import LaunchError

    with pytest.raises(LaunchError, match="invalid launch configuration"):
        module.get_function("copy_n<double>")(
            grid, block, (cupy.asarray(np.ones(4)), cupy.empty((4,), np.float64), np.int64(4), np.int64(0))
        )


def test_a_capture_records_launches_and_refuses_what_cuda_refuses(cupy, module):
    from cuda_on_cpu.device import CaptureError

    x, y = cupy.asarray(np.arange(4.0)), cupy.zeros((4,), np.float64)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        module.get_function("copy_n<double>")((1,), (32,), (x, y, np.int64(4), np.int64(0)))
        for refused in (
            lambda: float(y[0]),
            lambda: cupy.asnumpy(y),
            stream.synchronize,
            lambda: cupy.empty((4,)),
            lambda: y.fill(1.0),
            lambda: y + 1,
        ):
            with pytest.raises(CaptureError):
                refused()
        graph = stream.end_capture()
    assert (cupy.asnumpy(y) == 0).all()  # recorded, not run
    graph.launch(stream=cupy.cuda.get_current_stream())
    np.testing.assert_array_equal(cupy.asnumpy(y), np.arange(4.0))
