"""pytest-benchmark suites: one parametrisation over the backends available here, groups per case and dtype.

    pytest bench/ --benchmark-only                      # small sizes (what the test run checks)
    pytest bench/ --benchmark-only --bench-full         # the cases A–D at full size
    pytest bench/ --benchmark-only --bench-full --bench-cases A,B,C,D,E
    pytest bench/ --benchmark-only --bench-full --benchmark-save=base   # later: --benchmark-compare

DNN_BENCH_FULL=1 and DNN_BENCH_CASES=... do the same as the options. With --benchmark-disable (the normal
test run) every benchmarked function runs once, after its agreement check, so a broken benchmark fails CI.
"""

from __future__ import annotations

import functools
import os

import pytest
from cases import DTYPES, KERNEL_CASES, KERNEL_SHAPE_FULL, KERNEL_SHAPE_SMALL, step_cases
from machine import machine_summary

from dnn.backends import available_backends, get_backend
from dnn.perf import environment_info


def pytest_addoption(parser):
    group = parser.getgroup("dnn benchmarks")
    group.addoption(
        "--bench-full",
        action="store_true",
        default=False,
        help="full-size cases instead of the small test-run sizes (or DNN_BENCH_FULL=1)",
    )
    group.addoption(
        "--bench-cases",
        default=None,
        metavar="A,B,...",
        help="network cases to run (default A,B,C,D; E takes seconds per step; or DNN_BENCH_CASES)",
    )


def bench_full(config) -> bool:
    return bool(config.getoption("--bench-full", default=False)) or os.environ.get("DNN_BENCH_FULL") == "1"


def bench_case_names(config):
    names = config.getoption("--bench-cases", default=None) or os.environ.get("DNN_BENCH_CASES")
    return [name.strip() for name in names.split(",") if name.strip()] if names else None


def _backend_params(names=None):
    return [
        pytest.param(
            status.name, id=status.name, marks=pytest.mark.skipif(not status.available, reason=status.reason or "")
        )
        for status in available_backends()
        if names is None or status.name in names
    ]


def pytest_generate_tests(metafunc):
    config, full = metafunc.config, bench_full(metafunc.config)
    fixtures = metafunc.fixturenames
    if "bench_backend" in fixtures:
        metafunc.parametrize("bench_backend", _backend_params())
    if "floor_backend" in fixtures:  # the GEMM floor per array library: numpy's BLAS, and cuBLAS with a GPU
        metafunc.parametrize("floor_backend", _backend_params(("numpy", "cupy")))
    if "step_config" in fixtures:
        metafunc.parametrize(
            "step_config",
            [
                pytest.param(
                    (case, dtype),
                    id=f"{case.name}-{dtype}",
                    marks=pytest.mark.benchmark(group=f"step {case.name} {dtype}"),
                )
                for case in step_cases(full, bench_case_names(config))
                for dtype in DTYPES
            ],
        )
    if "kernel_config" in fixtures:  # (kernel, dtype, the shape it runs at)
        size = KERNEL_SHAPE_FULL if full else KERNEL_SHAPE_SMALL
        metafunc.parametrize(
            "kernel_config",
            [
                pytest.param(
                    (kernel, dtype, kernel.shape(*size)),
                    id=f"{kernel.name}-{dtype}",
                    marks=pytest.mark.benchmark(
                        group="kernel {} {} {}x{}".format(kernel.name, dtype, *kernel.shape(*size))
                    ),
                )
                for kernel in KERNEL_CASES
                for dtype in DTYPES
            ],
        )
    if "compile_config" in fixtures:  # cold: an empty compile cache; warm: the cache a previous process filled
        caches = ("cold", "warm") if full else ("warm",)
        dtypes = DTYPES if full else DTYPES[:1]
        metafunc.parametrize(
            "compile_config",
            [pytest.param((cache, dtype), id=f"{cache}-{dtype}") for cache in caches for dtype in dtypes],
        )


@functools.cache
def _machine(full: bool) -> dict:
    return machine_summary(get_backend("numpy"), full)


#: Wall time of `pytest bench --benchmark-only` on the project's 2-core machine (docs/benchmarks.md), by size.
EXPECTED_DURATION = {False: "about 8 min", True: "well over 10 min (C and E take seconds per step)"}


def pytest_report_header(config):
    full = bench_full(config)
    mode = "full sizes" if full else "small test-run sizes (--bench-full for the real cases)"
    summary = ", ".join(f"{key}={value}" for key, value in _machine(full).items())
    lines = [f"dnn benchmarks: {mode}", f"dnn machine: {summary}"]
    if config.getoption("benchmark_only", default=False):
        lines.insert(0, f"dnn benchmarks: expect {EXPECTED_DURATION[full]} on 2 cores")
    return lines


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["dnn"] = _machine(bench_full(config))


@pytest.fixture
def record_environment(benchmark):
    """Returns a function that writes the run's conditions (dtype, backend, threads, BLAS, TF32) and any
    further facts into the benchmark's extra_info."""

    def record(backend, dtype, **facts):
        benchmark.extra_info.update(environment_info(backend), dtype=str(dtype), **facts)

    return record
