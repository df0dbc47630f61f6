"""One training step per network case and dtype, each group holding NumPy, the other backends and the GEMM floor.

Before timing, every step benchmark asserts that the backend's whole-network gradients match NumPy float64
(dnn.perf.require_gradients_agree), so a fast wrong answer fails instead of being timed.
"""

from dnn.backends import get_backend
from dnn.perf import (
    GemmFloor,
    prepare_step,
    require_floor_agrees,
    require_gradients_agree,
    step_function,
    step_gemm_flops,
    warm_up,
)


def test_training_step(benchmark, record_environment, bench_backend, step_config):
    case, dtype = step_config
    backend = get_backend(bench_backend)
    bench = prepare_step(backend, case, dtype)
    difference = require_gradients_agree(bench)
    step = step_function(bench)
    warm_up(step)
    record_environment(backend, dtype, **case_facts(case), max_gradient_difference=difference)
    benchmark(step)


def test_gemm_floor(benchmark, record_environment, floor_backend, step_config):
    """The reference line: only the matrix products the step needs, with the array library's BLAS."""
    case, dtype = step_config
    backend = get_backend(floor_backend)
    floor = GemmFloor(backend, case.layer_dims, case.m, dtype)
    difference = require_floor_agrees(floor)
    warm_up(floor)
    record_environment(backend, dtype, **case_facts(case), max_product_difference=difference)
    benchmark(floor)


def case_facts(case) -> dict:
    """What every step benchmark records about its network case: name, layer sizes, batch and GEMM work."""
    return {
        "case": case.name,
        "layer_dims": list(case.layer_dims),
        "m": case.m,
        "gemm_flop": step_gemm_flops(case.layer_dims, case.m),
    }
