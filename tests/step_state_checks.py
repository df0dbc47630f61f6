"""Checks of the finiteness and step-state kernels that the GPU tests and their CPU twins share.

`gpu` is a CuPy backend: the real one (tests/test_cupy_kernels.py) or the one driving the CUDA sources on the
CPU (tests/test_cuda_on_cpu_kernels.py); the NumPy backend is the reference.
"""

import numpy as np

from dnn.backends.numpy_backend import NumpyBackend
from dnn.kernels.step_state import FINITE_STEPS, NONFINITE, STATE_SIZE, STEP_COST, STEP_EXAMPLES

REF = NumpyBackend()


def check_all_finite_finds_one_bad_element_anywhere(gpu, rng, size, dtype):
    """NaN, +inf or -inf at the first, middle or last element of `size` is found."""
    a = rng.standard_normal(size)
    assert gpu.all_finite(gpu.asarray(np.asarray(a, dtype=dtype)))
    for position in {0, size // 2, size - 1}:
        for bad in (np.nan, np.inf, -np.inf):
            b = a.copy()
            b[position] = bad
            assert not gpu.all_finite(gpu.asarray(np.asarray(b, dtype=dtype))), (
                f"{bad} at {position} of {size} not found"
            )


def check_guard_commit_and_begin_step(gpu, dtype, size, bad_at):
    """guard_step's flag is sticky, commit_step counts finite steps only, begin_step zeroes the step's slots: on
    the kernels as in the reference, slot for slot, with a gradient of `size` holding a NaN at `bad_at`."""
    start = np.arange(1.0, STATE_SIZE + 1)  # a distinct value in every slot
    start[NONFINITE] = 0.0
    ref, state = start.copy(), gpu.asarray(start)
    grad_ref = np.ones(size, dtype)
    grad = gpu.asarray(grad_ref.copy())

    def run(operation, with_grad=False):  # on the reference's state and on the kernel's, which must agree
        getattr(REF, operation)(ref, *([grad_ref] if with_grad else []))
        getattr(gpu, operation)(state, *([grad] if with_grad else []))
        np.testing.assert_array_equal(gpu.to_numpy(state), ref, err_msg=operation)

    run("guard_step", with_grad=True)
    run("commit_step")
    assert ref[FINITE_STEPS] == start[FINITE_STEPS] + 1
    grad_ref[bad_at] = grad[bad_at] = np.nan
    run("guard_step", with_grad=True)
    assert ref[NONFINITE] == 1.0
    grad_ref[bad_at] = grad[bad_at] = 1.0
    run("guard_step", with_grad=True)  # a finite gradient does not clear the flag
    run("commit_step")  # and the flagged step is not counted
    assert ref[FINITE_STEPS] == start[FINITE_STEPS] + 1
    ref[NONFINITE] = state[NONFINITE] = 0.0
    ref[STEP_COST] = state[STEP_COST] = np.inf
    run("guard_step")  # a non-finite cost sets it too, with no gradient given
    assert ref[NONFINITE] == 1.0
    run("begin_step")
    assert not ref[STEP_COST : STEP_EXAMPLES + 1].any() and ref[FINITE_STEPS] == start[FINITE_STEPS] + 1
