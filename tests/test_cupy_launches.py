"""Without a GPU: every kernel launch the CuPy backend makes matches the CUDA signature it calls.

A CUDA kernel reads its arguments by the types its signature declares, so a Python argument of the wrong
width (an int where a double is declared, a missing pointer) gives silently wrong numbers, not an error.
Here the backend runs on NumPy arrays with a recorder in place of the compiled kernels: each launch is
checked against the kernel's C++ parameter list parsed from the very source NVRTC compiles (count, and per
parameter pointer or scalar, element type), and its launch shape against CUDA's limits and the block size
the reducing kernels are written for. Inputs no kernel covers must reach the reference implementation.
"""

import re

import numpy as np
import pytest

from dnn.activations import ACTIVATIONS
from dnn.backends.cupy_backend import CupyBackend
from dnn.backends.numpy_backend import NumpyBackend
from dnn.kernels.cupy_common import CUDA_TYPES, REDUCE_THREADS
from dnn.kernels.step_state import STATE_SIZE
from dnn.optimizers import OPTIMIZERS
from optimizer_helpers import run_update

DTYPES = ["float32", "float64"]
SCALAR_TYPES = {np.int64: "index_t", np.int32: "int", np.float64: "double", np.float32: "float"}
REDUCING_KERNELS = {"activation_backward", "sigmoid_output", "softmax_output", "record_step", "add_sum_of_squares"}


def kernel_parameters(code: str, kernel: str) -> list[str]:
    """The parameter types of `__global__ void kernel(...)` in `code`, e.g. ['T*', 'const T*', 'index_t']."""
    match = re.search(rf"__global__\s+void\s+{kernel}\s*\(([^)]*)\)", code)
    assert match, f"no kernel {kernel} in the source"
    types = []
    for parameter in match.group(1).split(","):
        words = parameter.replace("*", " * ").split()
        types.append(" ".join(words[:-1]).replace(" *", "*"))  # drop the parameter's name
    return types


def argument_matches(argument, declared: str, cuda_type: str | None) -> bool:
    """True when a launch argument is what the declared C++ parameter type reads."""
    declared = declared.replace("const ", "").replace("T", cuda_type or "T")
    if declared.endswith("*"):
        if isinstance(argument, np.uint64):  # the backend's null pointer
            return argument == 0
        return (
            isinstance(argument, np.ndarray)
            and {"float": "float32", "double": "float64", "int": "int32"}[declared[:-1]] == argument.dtype.name
        )
    return SCALAR_TYPES.get(type(argument)) == declared


class RecordingKernels:
    """Stands in for CompiledKernels: checks and records each launch instead of running it."""

    def __init__(self):
        self.launches = []

    def function(self, source, kernel, dtype=None):
        source.name_expression(
            kernel, dtype
        )  # KeyError when the source does not declare it: NVRTC would not compile it

        def launch(grid, block, args):
            parameters = kernel_parameters(source.code, kernel)
            cuda_type = CUDA_TYPES[dtype] if dtype else None
            assert len(args) == len(parameters), f"{kernel}: {len(args)} arguments for {len(parameters)} parameters"
            for position, (argument, declared) in enumerate(zip(args, parameters)):
                assert argument_matches(argument, declared, cuda_type), (
                    f"{kernel}<{cuda_type}> parameter {position} is {declared} but gets {type(argument).__name__} "
                    f"{getattr(argument, 'dtype', '')}"
                )
            assert all(1 <= g < 2**16 for g in grid[1:]) and 1 <= grid[0] < 2**31, f"{kernel}: grid {grid}"
            assert len(block) == 1 and 1 <= block[0] <= 1024, f"{kernel}: block {block}"
            if kernel in REDUCING_KERNELS:
                assert block == (REDUCE_THREADS,), (
                    f"{kernel} reduces over a block of {REDUCE_THREADS} threads, launched with {block}"
                )
            self.launches.append((kernel, dtype, args))

        return launch

    def kernels(self) -> list[str]:
        return [kernel for kernel, _, _ in self.launches]


@pytest.fixture
def recorded():
    """A CupyBackend on NumPy arrays whose kernel launches are checked and recorded, never run."""
    be = CupyBackend.__new__(CupyBackend)
    be._use_kernels(np, RecordingKernels(), tf32=False)
    be._flag = np.zeros((1,), np.int32)
    return be


def _arrays(dtype, *shapes):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (70000, 2), (1, 300)])
def test_hidden_layer_launches_match_their_kernels(recorded, dtype, shape):
    n, m = shape
    Z, out, dA = _arrays(dtype, shape, shape, shape)
    (b,) = _arrays(dtype, (n, 1))
    for activation in ACTIVATIONS:
        recorded.bias_activation_forward(Z, b, activation, out)
        recorded.activation_forward(Z, activation, Z)
        recorded.activation_backward(dA, activation, dA, A=out, db=b, db_scale=1 / m)
        recorded.activation_backward(dA, activation, out, Z=Z)
    recorded.bias_grad(dA, b, 0.5)
    expected = (["bias_activation_forward"] * 2 + ["activation_backward"] * 2) * len(ACTIVATIONS) + [
        "activation_backward"
    ]
    assert recorded._kernels.kernels() == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output,units", [("sigmoid", 1), ("softmax", 10)])
def test_output_layer_launches_match_their_kernels(recorded, dtype, output, units):
    Z, A, Y, dZ = _arrays(dtype, (units, 9), (units, 9), (units, 9), (units, 9))
    b, cost = _arrays(dtype, (units, 1), (1,))
    recorded.output_layer(Z, b, output, A, Y=Y, dZ=dZ, cost=cost, dZ_scale=1 / 9)
    recorded.output_layer(Z, b, output, A)  # prediction: no labels, no gradient, no cost (null pointers)
    recorded.record_step(np.zeros(STATE_SIZE), cost, A, Y, output)
    assert recorded._kernels.kernels() == [f"{output}_output"] * 2 + ["record_step"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_update_and_check_launches_match_their_kernels(recorded, dtype):
    p, g, v, m2 = _arrays(dtype, (50,), (50,), (50,), (50,))
    state = np.zeros(STATE_SIZE)
    recorded.axpy(0.5, g, p)
    recorded.sgd_update(p, g, 0.1)
    for name in OPTIMIZERS:
        run_update(recorded, name, p, g, (v, np.abs(m2)), 0.1, state=state)
    recorded.multiply(p, g, p)
    recorded.all_finite(p)
    recorded.begin_step(state)
    recorded.add_l2_cost(state, [p.reshape(5, 10), g.reshape(10, 5)], 0.1)
    recorded.guard_step(state, g)
    recorded._advance_step_count(np.zeros(1), state)
    recorded.commit_step(state)
    assert recorded._kernels.kernels() == [
        "axpy",
        "sgd_update",
        *(f"{name}_update" for name in OPTIMIZERS),
        "multiply",
        "flag_non_finite",
        "begin_step",
        "add_sum_of_squares",
        "add_sum_of_squares",
        "guard_step",
        "advance_step_count",
        "commit_step",
    ]
    assert recorded._kernels.launches[2][2][-1] is state  # the predicate is the state itself, read on the device


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_device_learning_rate_and_step_count_are_passed_as_pointers(recorded, name):
    """For a captured graph: lr and the step count t read from device memory, the host values unused."""
    p, g, m1, v = _arrays("float32", (8,), (8,), (8,), (8,))
    lr, t = np.full((1,), 0.1), np.full((1,), 4.0)
    run_update(recorded, name, p, g, (m1, np.abs(v)), lr, t)
    args = recorded._kernels.launches[0][2]
    assert args[-3] is lr and args[-2] is t  # (…, lr_device, t_device, state)


def test_a_device_learning_rate_must_be_one_float64(recorded):
    p, g = _arrays("float32", (8,), (8,))
    with pytest.raises(ValueError, match="learning rate on the device must be a float64 array of one element"):
        recorded.sgd_update(p, g, np.full((2,), 0.1))


def test_the_step_state_is_checked(recorded):
    (g,) = _arrays("float32", (8,))
    with pytest.raises(ValueError, match=r"step state must be a contiguous float64 .* shape \(8,\)"):
        recorded.guard_step(np.zeros(8, np.float32), g)
    with pytest.raises(ValueError, match="step state"):
        recorded.commit_step(None)


def test_inputs_no_kernel_covers_reach_the_reference(recorded):
    """float16, transposed views and partly overlapping buffers: no launch, the reference's values."""
    ref = NumpyBackend()
    Z16 = np.linspace(-2, 2, 12, dtype=np.float16).reshape(3, 4)
    b16 = np.ones((3, 1), np.float16)
    out, expected = np.empty_like(Z16), np.empty_like(Z16)
    recorded.bias_activation_forward(Z16.copy(), b16, "relu", out)
    ref.bias_activation_forward(Z16.copy(), b16, "relu", expected)
    np.testing.assert_array_equal(out, expected)

    (A,) = _arrays("float64", (4, 6))
    dZ = np.empty((6, 4))
    recorded.activation_backward(A.T, "relu", dZ, A=A.T)  # transposed view: not C-contiguous
    np.testing.assert_array_equal(dZ, A.T * (A.T > 0))

    (x,) = _arrays("float32", (10,))
    y, y_ref = x.copy(), x.copy()
    recorded.multiply(y[:-1], y[1:], y[1:])  # out overlaps an input shifted by one element
    ref.multiply(y_ref[:-1], y_ref[1:], y_ref[1:])
    np.testing.assert_array_equal(y, y_ref)
    assert recorded._kernels.launches == []


def test_tf32_is_off_unless_asked(monkeypatch):
    monkeypatch.delenv("DNN_TF32", raising=False)
    be = CupyBackend.__new__(CupyBackend)
    be._use_kernels(np, RecordingKernels(), tf32=None)
    assert be.tf32 is False
    monkeypatch.setenv("DNN_TF32", "1")
    be._use_kernels(np, RecordingKernels(), tf32=None)
    assert be.tf32 is True
    be._use_kernels(np, RecordingKernels(), tf32=False)  # the option wins over the environment
    assert be.tf32 is False
