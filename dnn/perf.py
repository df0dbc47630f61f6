"""Measuring a training step: the network cases, FLOP counts, the GEMM floor, timing, and the agreement check.

The one place for what `python -m dnn bench` (dnn/benchmark.py) and the pytest-benchmark suites in bench/
measure, so that both measure the same thing.

- One training step = forward, cost, backward, SGD update on a prepared `Batch` (`Network.train_step`),
  course convention (X is (n_x, m)), followed by `backend.synchronize()` so a device backend is timed to the
  end of its work.
- GEMM floor = the time of only the matrix products one step needs (per layer W·A, dZ·Aᵀ, and Wᵀ·dZ for
  every layer but the first), run with the backend's array namespace (numpy's BLAS on the CPU) in the same
  process on preallocated buffers. A step cannot be faster than its floor; the ratio step/floor is the
  overhead of everything else.
- Agreement: before anything is timed, the backend's whole-network gradients are compared with a float64
  NumPy network holding the same parameters, on the same inputs rounded to the backend's dtype, with the
  tolerance of dnn.tolerances for that dtype. The data has no example within KINK_MARGIN of a ReLU kink:
  there float32 rounding can flip relu' for one unit, which changes a gradient by about 1e-2 (seen on case
  C in float32, NumPy itself) and is no rounding error any tolerance could judge.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import NamedTuple

import numpy as np

from .backends import get_backend
from .gradcheck import float64_reference, kinked_pre_activations
from .network import Network
from .step import STRATEGIES, TrainStep
from .tolerances import gradient_rtol, relative_difference

#: The learning rate of every timed step (the course's).
LEARNING_RATE = 0.0075
#: Untimed steps run after compiling and before timing.
WARMUP_CALLS = 2
#: Smallest |pre-activation| of a hidden ReLU unit in the benchmark data: ~100x float32's rounding of a
#: 1000-term dot product of unit-sized values, and rare enough (~1e-4 of units) that few examples move.
KINK_MARGIN = 1e-4


class Case(NamedTuple):
    """A benchmark network: layer_dims and batch size m, trained with relu hidden layers and a sigmoid output."""

    name: str
    layer_dims: tuple[int, ...]
    m: int
    about: str


#: The benchmark network cases, and small versions with the same shape of layers for the test run.
CASES = {
    case.name: case
    for case in (
        Case("A", (12288, 20, 7, 5, 1), 209, "the course's cat classifier: skinny GEMMs"),
        Case("B", (784, 256, 128, 1), 256, "an MNIST-sized MLP"),
        Case("C", (1024, 1024, 1024, 1024, 1), 1024, "square layers: GEMM-bound"),
        Case("D", (64, 64, 64, 1), 64, "tiny: Python overhead dominates"),
        Case("E", (256, 4096, 4096, 1), 4096, "wide: about 2.5 s per NumPy step on 2 cores"),
        Case("A-small", (768, 20, 7, 5, 1), 24, "A's shape, test-run size"),
        Case("B-small", (98, 32, 16, 1), 32, "B's shape, test-run size"),
        Case("C-small", (128, 128, 128, 128, 1), 128, "C's shape, test-run size"),
        Case("E-small", (32, 256, 256, 1), 256, "E's shape, test-run size"),
    )
}
#: The full-size cases, in order.
FULL_CASES = ("A", "B", "C", "D", "E")
#: Each full case's test-run version (D is already small).
SMALL_VERSION = {"A": "A-small", "B": "B-small", "C": "C-small", "D": "D", "E": "E-small"}


def case_data(case: Case, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) on the host in float64: X (n_x, m) standard normal, Y (1, m) random 0/1 labels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((case.layer_dims[0], case.m))  # (n_x, m)
    Y = (rng.random((1, case.m)) < 0.5).astype(np.float64)  # (1, m)
    return X, Y


def step_gemm_flops(layer_dims, m: int) -> int:
    """FLOPs of the matrix products in one training step: 2·n_l·n_{l-1}·m for each of W·A, dZ·Aᵀ and Wᵀ·dZ
    (no Wᵀ·dZ for the first layer: dA0 is never needed)."""
    total = 0
    for l in range(1, len(layer_dims)):
        one_product = 2 * layer_dims[l] * layer_dims[l - 1] * m
        total += one_product * (3 if l > 1 else 2)
    return total


class StepBench(NamedTuple):
    """A network on a backend, its prepared batch, and the host data it was made from."""

    net: Network
    batch: object  # dnn.Batch on the backend
    X: np.ndarray  # (n_x, m) float64
    Y: np.ndarray  # (1, m) float64


def _rounded(X, dtype) -> np.ndarray:
    """X (float64) holding exactly the values it has after conversion to `dtype`."""
    return np.asarray(X).astype(dtype).astype(np.float64)


def _off_relu_kinks(net: Network, X, seed: int, max_rounds: int = 20) -> np.ndarray:
    """X rounded to `net`'s dtype, with every example that has a hidden pre-activation within KINK_MARGIN of
    0 moved slightly (computed in float64 from `net`'s parameters) until none has.

    Exact zeros are left alone: a unit whose whole input layer is dead sees only its bias (0 at
    initialisation), which every dtype computes exactly.
    """
    reference = float64_reference(net)
    rng = np.random.default_rng(seed)
    X = _rounded(X, net.dtype)
    for _ in range(max_rounds):
        near = np.zeros(X.shape[1], dtype=bool)
        for Z in kinked_pre_activations(reference, X).values():
            near |= ((np.abs(Z) < KINK_MARGIN) & (Z != 0)).any(axis=0)  # (m,): examples near a kink
        if not near.any():
            break
        X[:, near] = _rounded(X[:, near] + rng.standard_normal((X.shape[0], int(near.sum()))) * 1e-3, net.dtype)
    return X


def prepare_step(backend, case: Case, dtype, seed: int = 0) -> StepBench:
    """A `Network` for `case` on `backend` in `dtype` (same weights on every backend) and its batch, on data
    that keeps every ReLU unit off its kink (see the module docstring)."""
    net = Network(case.layer_dims, activations="relu", output="sigmoid", dtype=dtype, backend=backend, seed=1)
    X, Y = case_data(case, seed)
    X = _off_relu_kinks(net, X, seed)
    return StepBench(net, net.batch(X, Y), X, Y)


def gradient_difference(net: Network, X, Y) -> float:
    """Largest relative difference (dnn.tolerances.relative_difference) between `net`'s gradients on (X, Y)
    and those of a float64 NumPy network holding the same parameters, over every dW and db.

    The reference sees X rounded to `net`'s dtype first, so that only the arithmetic differs.
    """
    _, grads = net.backward(X, Y)
    _, ref_grads = float64_reference(net).backward(_rounded(X, net.dtype), Y)  # the same parameter values
    return max(relative_difference(net.backend.to_numpy(grads[key]), ref_grads[key]) for key in ref_grads)


def require_gradients_agree(bench: StepBench) -> float:
    """The gradient difference of `bench`'s network, after asserting it is within the dtype's tolerance."""
    difference = gradient_difference(bench.net, bench.X, bench.Y)
    tolerance = gradient_rtol(bench.net.dtype)
    assert difference <= tolerance, (
        f"{bench.net.backend.name} {bench.net.dtype.name} gradients differ from NumPy float64 by {difference:.3g} "
        f"(relative), more than the {tolerance:g} allowed: this backend computes a wrong answer, so it is not timed"
    )
    return difference


def step_function(bench: StepBench, lr: float = LEARNING_RATE, strategy: str | None = None):
    """The timed unit: one SGD step on the prepared batch as `fit` takes it (a `TrainStep`, which reads nothing
    back from the backend), then a device synchronisation. strategy: the one to time (None: the first the
    step allows, as `fit` takes it).

    The strategy is always asked for by name: a whole step that `fit` would compile in the background while a
    stand-in takes the first steps is then compiled (or loaded) at the first call, so that what is timed after
    the warm-up is the step a long run settles on. Asked for by name, a strategy the step cannot take raises
    ValueError before it builds anything.
    """
    batch, backend, m = bench.batch, bench.net.backend, bench.batch.X.shape[1]
    for candidate in (strategy,) if strategy else STRATEGIES:  # the order `TrainStep` tries them in
        try:
            step = TrainStep(bench.net, m, strategy=candidate, accuracy=False)
            break
        except ValueError:
            if strategy:
                raise

    def training_step():
        step(batch, lr)
        backend.synchronize()

    return training_step


class GemmFloor:
    """The matrix products one training step of `layer_dims` at batch size m needs, on preallocated buffers.

    Calling it runs every product once with `Backend.matmul_into` (the array library's own product: numpy's BLAS
    on the CPU) and synchronises the device. Weights are scaled as the course scales them so values stay near 1.
    """

    def __init__(self, backend, layer_dims, m: int, dtype, seed: int = 0):
        self.backend = backend
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        dims = list(layer_dims)
        L = len(dims) - 1

        def filled(shape, scale=1.0):
            return backend.asarray(rng.standard_normal(shape) * scale, dtype=self.dtype)

        A = [filled((n, m)) for n in dims]  # A[0] = X (n_0, m); A[l] (n_l, m)
        D = [None] + [filled((n, m)) for n in dims[1:]]  # dZ[l] / dA[l] (n_l, m)
        W = [None] + [filled((dims[l], dims[l - 1]), 1 / np.sqrt(dims[l - 1])) for l in range(1, L + 1)]
        dW = [None] + [backend.empty(W[l].shape, self.dtype) for l in range(1, L + 1)]
        self.products = []  # (a, b, out): out = a·b
        for l in range(1, L + 1):
            self.products.append((W[l], A[l - 1], A[l]))  # Z[l] = W[l]·A[l-1]: (n_l, m)
        for l in range(L, 0, -1):
            self.products.append((D[l], A[l - 1].T, dW[l]))  # dW[l] = dZ[l]·A[l-1]ᵀ: (n_l, n_{l-1})
            if l > 1:
                self.products.append((W[l].T, D[l], D[l - 1]))  # dA[l-1] = W[l]ᵀ·dZ[l]: (n_{l-1}, m)

    def __call__(self) -> None:
        matmul = self.backend.matmul_into
        for a, b, out in self.products:
            matmul(a, b, out)
        self.backend.synchronize()

    def max_difference(self) -> float:
        """Runs the products once and returns the largest relative difference of any of them from the
        float64 host product of the same inputs (each buffer is written at most once per call, before any
        product reads it, so every product's inputs are still in place afterwards)."""
        self()
        to_numpy = self.backend.to_numpy
        return max(
            relative_difference(to_numpy(out), to_numpy(a).astype(np.float64) @ to_numpy(b).astype(np.float64))
            for a, b, out in self.products
        )


def require_floor_agrees(floor: GemmFloor) -> float:
    """The floor's largest product difference, after asserting it is within the dtype's GEMM tolerance."""
    difference = floor.max_difference()
    tolerance = gradient_rtol(floor.dtype)
    assert difference <= tolerance, (
        f"the GEMM floor's products on {floor.backend.name} {floor.dtype.name} differ from float64 by "
        f"{difference:.3g}, more than {tolerance:g}: the BLAS computes a wrong answer"
    )
    return difference


def warm_up(fn, calls: int = WARMUP_CALLS) -> None:
    """Run `fn` `calls` times untimed: the first call compiles (or loads from the cache) what it needs."""
    for _ in range(calls):
        fn()


def median_seconds(fn, repeat: int) -> float:
    """Median wall time of `repeat` calls of `fn` (which synchronises the device itself)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_seconds(functions, repeat: int) -> list[float]:
    """Median wall time of each function over `repeat` rounds, each round calling every function once in turn.

    Timed side by side, the functions see the same drift of the machine's speed (up to 1.5x over minutes
    here), so the ratio of two medians means something even when the milliseconds do not.
    """
    times = [[] for _ in functions]
    for _ in range(repeat):
        for fn, spent in zip(functions, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


# ---------------------------------------------------------------------------------------------- the machine
def blas_libraries() -> list[dict]:
    """The BLAS libraries loaded in this process as threadpoolctl reports them, numpy's first, each with a
    "package" entry naming the installed package that ships it (empty without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    libraries = []
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            parts = os.path.normpath(lib.get("filepath", "")).split(os.sep)
            after = parts[parts.index("site-packages") + 1] if "site-packages" in parts[:-1] else "system"
            libraries.append(dict(lib, package=after.removesuffix(".libs")))
    return sorted(libraries, key=lambda lib: lib["package"] != "numpy")


def blas_description() -> str:
    """Which package's BLAS, its version, the CPU kernel it runs, its threading and thread count, numpy's first."""
    libraries = blas_libraries()
    if not libraries:
        return "unknown (threadpoolctl is not installed)"
    return "; ".join(
        f"{lib['package']}: {lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture', '?')} kernel, "
        f"{lib.get('threading_layer', '?')}, {lib.get('num_threads')} threads)"
        for lib in libraries
    )


def tf32_state(backend) -> str:
    """'on' or 'off' for a GPU backend's float32 GEMMs; 'n/a' on the CPU."""
    if backend.is_array(np.empty(0)):  # NumPy's arrays: the CPU
        return "n/a"
    flag = getattr(backend, "tf32", None)
    if flag is None:  # a backend without the option follows the environment
        flag = os.environ.get("DNN_TF32") == "1" or os.environ.get("CUPY_TF32") == "1"
    return "on" if flag else "off"


def numba_threads() -> str:
    """numba's thread count and threading layer when numba is loaded (never imports numba itself)."""
    numba = sys.modules.get("numba")
    if numba is None:
        return "not loaded"
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = "layer not chosen yet"
    return f"{numba.get_num_threads()} ({layer})"


def environment_info(backend=None) -> dict:
    """What a timing depends on besides the code: BLAS, threads, OpenBLAS core-type variables, TF32."""
    info = {
        "cpu_count": os.cpu_count(),
        # above cpu_count, threaded BLAS and numba calls wait for descheduled threads (seen: 300 ms for a 4 ms GEMM)
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "blas": blas_description(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "unset"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE", "unset"),
        "numba_threads": numba_threads(),
        "numpy": np.__version__,
    }
    if backend is not None:
        info["backend"] = backend.name
        info["tf32"] = tf32_state(backend)
    return info


# ---------------------------------------------------------------------------------------------- first call
def first_call_costs(backend_name: str, case_name: str, dtype: str) -> dict:
    """Seconds this process spends creating the backend (importing numba or cupy), on the first training step
    (which compiles, or loads from the cache, every kernel it needs) and on the second (steady state), and the
    gradient difference afterwards. Meant to run in a fresh process (bench/bench_compile.py starts one).
    """
    seconds = {}
    start = time.perf_counter()
    backend = get_backend(backend_name)
    seconds["backend_s"] = time.perf_counter() - start
    bench = prepare_step(backend, CASES[case_name], dtype)
    step = step_function(bench)
    for key in ("first_step_s", "second_step_s"):
        start = time.perf_counter()
        step()
        seconds[key] = time.perf_counter() - start
    seconds["first_call_overhead_s"] = seconds["first_step_s"] - seconds["second_step_s"]
    seconds["max_gradient_difference"] = gradient_difference(bench.net, bench.X, bench.Y)
    return seconds
