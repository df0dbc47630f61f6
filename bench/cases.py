"""What the benchmarks run: which network cases (dnn.perf.CASES) at which size, and the fused-kernel cases.

Network cases: the test run uses the small version of each case; full sizes are opt-in (`--bench-full` or
DNN_BENCH_FULL=1) and then cover A–D, with E (seconds per step) added only when named (`--bench-cases` or
DNN_BENCH_CASES=A,B,C,D,E).

Kernel cases: each fused backend operation with inputs drawn on the host in float64 and its output buffers
poisoned with NaN, so an element a kernel leaves unwritten shows up as a difference. `kernel_difference`
runs one on a backend and on NumPy float64 and compares every buffer the operation writes.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from dnn.backends import get_backend
from dnn.optimizers import OPTIMIZERS
from dnn.perf import CASES, SMALL_VERSION
from dnn.tolerances import relative_difference

DTYPES = ("float32", "float64")
#: Full-size cases run by default with --bench-full (E is opt-in: seconds per step).
DEFAULT_FULL_CASES = ("A", "B", "C", "D")
#: The memory-bound kernel size, and the test-run size (odd, not a multiple of a vector).
KERNEL_SHAPE_FULL = (4096, 4096)
KERNEL_SHAPE_SMALL = (67, 129)


def step_cases(full: bool, names=None) -> list:
    """The dnn.perf.Case objects to run: `names` (default A–D), at full size or their small versions."""
    names = list(names or (DEFAULT_FULL_CASES if full else SMALL_VERSION))
    unknown = [name for name in names if name not in SMALL_VERSION]
    if unknown:
        raise ValueError(f"unknown benchmark case(s) {', '.join(unknown)}; valid cases: {', '.join(SMALL_VERSION)}")
    return [CASES[name if full else SMALL_VERSION[name]] for name in names]


class KernelCase(NamedTuple):
    """One fused operation: how to draw its buffers, how to call it, and which buffers it writes."""

    name: str
    arrays_touched: int  # (n, m) arrays read or written per call: the bytes a plain copy must move to compare
    make: Callable  # (rng, n, m) -> {name: float64 host array}; outputs filled with NaN
    call: Callable  # (backend, {name: backend array}) -> None
    written: tuple[str, ...]  # buffers compared with the reference after one call
    rows: int = 0  # fixed row count (an output layer's units), 0 for any

    def shape(self, n: int, m: int) -> tuple[int, int]:
        """The shape this kernel runs at in place of (n, m): as many elements, its fixed row count if it has one."""
        return (self.rows, max(1, n * m // self.rows)) if self.rows else (n, m)


def _poison(shape) -> np.ndarray:
    return np.full(shape, np.nan)


def _forward(activation: str) -> KernelCase:
    def make(rng, n, m):
        return {"Z": rng.standard_normal((n, m)), "b": rng.standard_normal((n, 1)), "out": _poison((n, m))}

    def call(be, a):
        be.bias_activation_forward(a["Z"], a["b"], activation, out=a["out"])  # Z += b; out = g(Z)

    return KernelCase(f"forward-{activation}", 3, make, call, ("Z", "out"))


_ACTIVATION_OUTPUT = {  # a layer's output A for random pre-activations z, as the backward kernels receive it
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
}


def _backward(activation: str, inplace: bool = False) -> KernelCase:
    """dZ = dA * g'(A) with db; `inplace` writes dZ over dA, as `Network` does (no separate output buffer)."""

    def make(rng, n, m):
        A = _ACTIVATION_OUTPUT[activation](rng.standard_normal((n, m)))
        arrays = {"dA": rng.standard_normal((n, m)), "A": A, "db": _poison((n, 1))}
        if not inplace:
            arrays["out"] = _poison((n, m))
        return arrays

    def call(be, a):
        m = a["dA"].shape[1]  # dZ = dA * g'(A); db = (1/m)·Σ_columns dZ
        out = a["dA"] if inplace else a["out"]  # in place, a repeated call sees dZ as dA: the same mask again for relu
        be.activation_backward(a["dA"], activation, out, A=a["A"], db=a["db"], db_scale=1.0 / m)

    name = f"backward-{activation}" + ("-inplace" if inplace else "")
    return KernelCase(name, 3, make, call, ("dA" if inplace else "out", "db"))


def _output_layer(output: str, units: int) -> KernelCase:
    def make(rng, n, m):
        if output == "sigmoid":
            Y = (rng.random((n, m)) < 0.5).astype(np.float64)  # multi-label 0/1
        else:
            Y = np.eye(n)[:, rng.integers(0, n, m)]  # one-hot columns (n, m)
        return {
            "Z": rng.standard_normal((n, m)) * 3,
            "b": rng.standard_normal((n, 1)),
            "Y": Y,
            "A": _poison((n, m)),
            "dZ": _poison((n, m)),
            "cost": _poison((1,)),
        }

    def call(be, a):
        be.output_layer(a["Z"], a["b"], output, a["A"], Y=a["Y"], dZ=a["dZ"], cost=a["cost"])

    return KernelCase(f"output-{output}", 5, make, call, ("Z", "A", "dZ", "cost"), rows=units)


def _update(name: str) -> KernelCase:
    """A registered optimizer's update (`dnn.optimizers.OPTIMIZERS`), its slots non-negative (a second moment is)."""
    optimizer = OPTIMIZERS[name]()
    slots = optimizer.slots

    def make(rng, n, m):
        arrays = {"param": rng.standard_normal((n, m)), "grad": rng.standard_normal((n, m))}
        return arrays | {slot: rng.random((n, m)) * 0.01 for slot in slots}

    def call(be, a):
        be.optimizer_update(
            optimizer.rule, a["param"], a["grad"], tuple(a[s] for s in slots), 0.01, optimizer.config(), 10
        )

    # passes over memory: param and grad read, param written, each slot read and written
    return KernelCase(f"update-{name}", 3 + 2 * len(slots), make, call, ("param", *slots))


#: Every fused operation the Numba and CuPy backends provide.
KERNEL_CASES = (
    [_forward(name) for name in ("relu", "sigmoid", "tanh")]
    + [_backward(name) for name in ("relu", "sigmoid", "tanh")]
    + [_backward("relu", inplace=True)]  # the backward pass as the network runs it
    # an output layer has few units: one sigmoid unit, ten softmax classes (a float32 softmax over thousands of
    # classes sums thousands of terms per column, beyond what the one-pass kernel tolerance covers)
    + [_output_layer("sigmoid", 1), _output_layer("softmax", 10)]
    + [_update(name) for name in OPTIMIZERS]
)


def kernel_difference(case: KernelCase, backend, dtype, shape, seed: int = 0) -> tuple[float, dict]:
    """(largest relative difference over the written buffers, the backend's buffers after the call), with the
    kernel run at `case.shape(*shape)`.

    The reference is the same call on NumPy in float64, on the inputs rounded to `dtype`. A NaN left in a
    poisoned buffer makes the difference NaN, which no tolerance accepts.
    """
    host = case.make(np.random.default_rng(seed), *case.shape(*shape))
    arrays = {key: backend.asarray(value, dtype=dtype) for key, value in host.items()}
    reference = {key: value.astype(dtype).astype(np.float64) for key, value in host.items()}
    case.call(backend, arrays)
    case.call(get_backend("numpy"), reference)
    backend.synchronize()
    differences = [relative_difference(backend.to_numpy(arrays[key]), reference[key]) for key in case.written]
    return max(differences, key=lambda d: np.inf if np.isnan(d) else d), arrays
