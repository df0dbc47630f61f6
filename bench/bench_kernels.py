"""Each fused kernel at a memory-bound size, with a plain copy of the same number of bytes in its group.

Before timing, each kernel's written buffers (poisoned with NaN first) are compared with NumPy float64
(bench/cases.kernel_difference) within dnn.tolerances' kernel tolerance.
"""

import numpy as np
import pytest

from cases import KERNEL_CASES, kernel_difference
from machine import parallel_copy

from dnn.backends import get_backend
from dnn.backends.numpy_backend import NumpyBackend
from dnn.perf import warm_up
from dnn.tolerances import kernel_rtol


def test_kernel(benchmark, record_environment, bench_backend, kernel_config):
    kernel, dtype, shape = kernel_config
    backend = get_backend(bench_backend)
    difference, arrays = kernel_difference(kernel, backend, dtype, shape)
    assert difference <= kernel_rtol(dtype), (
        f"{kernel.name} on {backend.name} {dtype} differs from NumPy float64 by {difference:.3g} (relative; NaN means "
        f"an element was left unwritten), more than the {kernel_rtol(dtype):g} allowed: a wrong answer is not timed"
    )

    def run():
        kernel.call(backend, arrays)
        backend.synchronize()

    warm_up(run)
    nbytes = kernel.arrays_touched * shape[0] * shape[1] * np.dtype(dtype).itemsize
    record_environment(
        backend, dtype, kernel=kernel.name, shape=list(shape), bytes_moved=nbytes, max_kernel_difference=difference
    )
    benchmark(run)


def test_copy_of_same_bytes(benchmark, record_environment, bench_backend, kernel_config):
    """The reference line: backend.copyto moving as many bytes (read + written) as the kernel does."""
    kernel, dtype, shape = kernel_config
    backend = get_backend(bench_backend)
    count = kernel.arrays_touched * shape[0] * shape[1] // 2  # elements read = elements written
    src = backend.asarray(np.random.default_rng(0).standard_normal(count), dtype=dtype)
    dst = backend.zeros((count,), dtype)

    def copy():
        backend.copyto(dst, src)
        backend.synchronize()

    copy()
    assert np.array_equal(backend.to_numpy(dst), backend.to_numpy(src)), f"copyto on {backend.name} did not copy"
    warm_up(copy)
    record_environment(backend, dtype, kernel="copy", shape=[count], bytes_moved=2 * count * np.dtype(dtype).itemsize)
    benchmark(copy)


def test_parallel_copy_of_same_bytes(benchmark, record_environment, kernel_config):
    """The other reference line for the numba kernels: a copy of the same bytes on all of numba's threads."""
    pytest.importorskip("numba")
    kernel, dtype, shape = kernel_config
    count = kernel.arrays_touched * shape[0] * shape[1] // 2  # elements read = elements written
    src = np.random.default_rng(0).standard_normal(count).astype(dtype)
    dst = np.zeros(count, dtype)
    copy = parallel_copy()
    copy(dst, src)
    assert np.array_equal(dst, src), "the parallel copy did not copy"
    warm_up(lambda: copy(dst, src))
    record_environment(get_backend("numba"), dtype, kernel="parallel copy", shape=[count], bytes_moved=2 * src.nbytes)
    benchmark(copy, dst, src)


class _LeavesLastColumnUnwritten(NumpyBackend):
    """A forward kernel that forgets the last example: the poisoned output must expose it."""

    name = "unwritten"

    def bias_activation_forward(self, Z, b, activation, out):
        super().bias_activation_forward(Z[:, :-1], b, activation, out[:, :-1])


def test_an_element_a_kernel_leaves_unwritten_fails_the_agreement_check():
    forward_relu = next(kernel for kernel in KERNEL_CASES if kernel.name == "forward-relu")
    difference, _ = kernel_difference(forward_relu, _LeavesLastColumnUnwritten(), "float64", (5, 7))
    assert not difference <= kernel_rtol("float64")
