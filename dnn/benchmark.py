"""`python -m dnn bench`: time one training step per case, backend and dtype, and print one table.

For users who do not read pytest-benchmark's output (the full suites are in bench/). For each case and
dtype, in this process: a check of each array library's GEMM floor (dnn.perf.GemmFloor), then for each
backend a check of the whole network's gradients against NumPy float64 (a backend that disagrees is
reported WRONG, is not timed, and makes the command exit with status 1), a warm-up, and the medians of
--repeat steps and --repeat floors timed in alternation (so that both see the same machine speed).
NumPy, the baseline of the xNumPy ratios, is measured unless --backends leaves it out. Before measuring, the
command prints how long it expects to take, from this machine's own GEMM rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time

import numpy as np

from .backends import available_backends, backend_names, get_backend
from .perf import (
    CASES,
    GemmFloor,
    environment_info,
    gradient_difference,
    interleaved_median_seconds,
    median_seconds,
    prepare_step,
    step_function,
    step_gemm_flops,
    warm_up,
)
from .outputs import check_plot_path, save_figure
from .tolerances import GRADIENT_RTOL, gradient_rtol
from .validation import FLOAT_DTYPES

#: Finishes in a few seconds on 2 cores; C takes ~0.1-0.3 s a step and E ~2.5-5 s, so they are opt-in.
DEFAULT_CASES = "A,B,D"
DEFAULT_REPEAT = 15
#: The table's widest line, in characters; --json has everything at full length.
TABLE_WIDTH = 100


def _name_list(text: str, valid, what: str) -> list[str]:
    """Comma-separated names matched case-insensitively against `valid`; unknown names and empty items are an error."""
    from .cli import comma_list  # the command line's list syntax; cli imports this module only for `bench`

    by_lower = {name.lower(): name for name in valid}
    try:
        names = comma_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    unknown = [name for name in names if name.lower() not in by_lower]
    if unknown or not names:
        shown = ", ".join(repr(name) for name in unknown) or "none given"
        raise argparse.ArgumentTypeError(f"unknown {what} {shown}; valid {what}s: {', '.join(valid)}")
    return [by_lower[name.lower()] for name in names]


def _cases(text):
    return _name_list(text, list(CASES), "case")


def _backends(text):
    return _name_list(text, backend_names(), "backend")


def _dtypes(text):
    return _name_list(text, FLOAT_DTYPES, "dtype")


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of `python -m dnn bench` to `parser`."""
    cases = "; ".join(f"{case.name} {list(case.layer_dims)} m={case.m}" for case in CASES.values())
    parser.add_argument(
        "--cases",
        type=_cases,
        default=DEFAULT_CASES,
        help=f"comma-separated cases (default: {DEFAULT_CASES}). Known: {cases}",
    )
    parser.add_argument(
        "--backends",
        type=_backends,
        default=None,
        help="comma-separated backends (default: every one available here); the GEMM floor is always "
        "measured, numpy (the xNumPy baseline) only when listed",
    )
    parser.add_argument(
        "--dtype", type=_dtypes, default="float32,float64", help="comma-separated dtypes (default: both)"
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=DEFAULT_REPEAT,
        help=f"timed steps per measurement; the median is reported (default: {DEFAULT_REPEAT})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as JSON instead of a table (every column, and the environment in full)",
    )
    parser.add_argument(
        "--plot", metavar="FILE.png", help="also draw ms per step as a bar chart into this image (png, svg, pdf, ...)"
    )


def _chosen_backends(names):
    """Backends to measure, numpy first when measured. Without names: every available one, the others reported
    as skipped."""
    if names:
        return [get_backend(name) for name in sorted(dict.fromkeys(names), key=lambda name: name != "numpy")], []
    statuses = available_backends()
    skipped = [f"{status.name}: {status.reason}" for status in statuses if not status.available]
    return [get_backend(status.name) for status in statuses if status.available], skipped


def _checked_floor(backend, case, dtype):
    """The case's GEMM floor on `backend`'s array library, warmed up; None if its products are wrong."""
    floor = GemmFloor(backend, case.layer_dims, case.m, dtype)
    if not floor.max_difference() <= gradient_rtol(dtype):
        return None
    warm_up(floor)
    return floor


def _measure(backend, case, dtype, repeat, floor, progress) -> dict:
    progress(f"measuring {case.name} {dtype} on {backend.name}")
    bench = prepare_step(backend, case, dtype)
    difference = gradient_difference(bench.net, bench.X, bench.Y)
    row = {
        "backend": backend.name,
        "case": case.name,
        "layer_dims": list(case.layer_dims),
        "m": case.m,
        "dtype": dtype,
        "max_gradient_difference": difference,
        "tolerance": gradient_rtol(dtype),
        "agrees": difference <= gradient_rtol(dtype),
        "ms_per_step": None,
        "gflops": None,
        "floor_ms": None,
        "vs_floor": None,
        "vs_numpy": None,
    }
    if row["agrees"]:  # a wrong answer is not timed
        step = step_function(bench)
        warm_up(step)
        if floor is None:
            seconds = median_seconds(step, repeat)
        else:  # the floor is timed alongside the step, round by round, so both see the same machine speed
            seconds, floor_s = interleaved_median_seconds([step, floor], repeat)
            row["floor_ms"], row["vs_floor"] = floor_s * 1e3, seconds / floor_s
        row["ms_per_step"] = seconds * 1e3
        row["gflops"] = step_gemm_flops(case.layer_dims, case.m) / seconds / 1e9
    return row


def measure(case_names, backend_names_, dtypes, repeat, progress=lambda message: None) -> tuple[list[dict], list[str]]:
    """(one result row per backend, case and dtype; lines naming the backends skipped and why)."""
    backends, skipped = _chosen_backends(backend_names_)
    rows = []
    for case in (CASES[name] for name in case_names):
        for dtype in dtypes:
            floors = {}  # array library -> its GemmFloor for this case (None: its products were wrong)
            group = []
            for backend in backends:
                library = backend.xp.__name__
                if library not in floors:
                    floors[library] = _checked_floor(backend, case, dtype)
                group.append(_measure(backend, case, dtype, repeat, floors[library], progress))
            numpy_ms = (
                group[0]["ms_per_step"] if group[0]["backend"] == "numpy" else None
            )  # numpy comes first, if measured
            for row in group:
                if row["ms_per_step"] is not None and numpy_ms:
                    row["vs_numpy"] = row["ms_per_step"] / numpy_ms
            rows.extend(group)
    return rows, skipped


#: Step-equivalents one (case, dtype, backend) costs besides its timed steps: the float64 gradient check, the
#: warm-up of the step and of the floor, the floor's own check.
_UNTIMED_STEPS = 8
#: Each step is timed beside its GEMM floor, which costs about as much again.
_TIMED_PER_REPEAT = 2
#: Seconds a backend needs per dtype and case before its first step: data, networks, the float64 reference,
#: kernels loaded from (or, the first time, compiled into) numba's cache. Measured 2-4 s on 2 cores.
_SETUP_SECONDS = 3.0


def estimated_seconds(case_names, backend_count: int, dtypes, repeat: int) -> float:
    """How long `measure` will take, from this machine's GEMM rate in each dtype and the cases' products.

    A step costs about its products' time at that rate; the estimate is the order of magnitude a person needs
    to decide whether to wait, not a measurement.
    """
    total = 0.0
    for dtype in dtypes:
        seconds_per_flop = 1 / _gemm_rate(dtype)
        for name in case_names:
            step = step_gemm_flops(CASES[name].layer_dims, CASES[name].m) * seconds_per_flop
            total += backend_count * ((_UNTIMED_STEPS + _TIMED_PER_REPEAT * repeat) * step + _SETUP_SECONDS)
    return total


def _gemm_rate(dtype, n: int = 384) -> float:
    """FLOP/s of one n×n×n product through numpy in `dtype`, best of three (a quick probe, ~10 ms)."""
    a = np.ones((n, n), dtype)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def format_table(rows, environment, repeat, skipped) -> str:
    """The human-readable report: conditions, one line per result, and what the columns mean."""
    lines = [
        f"dnn bench: median of {repeat} training steps after warm-up (forward, cost, backward, SGD update)",
        f"BLAS: {environment['blas']}; OPENBLAS_CORETYPE={environment['OPENBLAS_CORETYPE']}, "
        f"OPENBLAS_L2_SIZE={environment['OPENBLAS_L2_SIZE']}",
        f"numpy {environment['numpy']}; numba threads: {environment['numba_threads']}; CPUs: {environment['cpu_count']}; "
        f"load average: {environment['load_average']}",
    ]
    if (environment["load_average"] or 0) > (environment["cpu_count"] or 1):
        lines.append("warning: the machine is busier than it has CPUs; threaded timings are unreliable")
    lines += [f"skipped {line}" for line in skipped]
    lines = [wrapped for line in lines for wrapped in textwrap.wrap(line, TABLE_WIDTH, subsequent_indent="  ")]
    width = max([len("backend")] + [len(row["backend"]) for row in rows])  # the names decide the first column
    header = f"{'backend':<{width}} {'case':<8} {'dtype':<8} {'ms/step':>9} {'GFLOP/s':>8} {'xNumPy':>7} {'xfloor':>7} {'floor ms':>9} {'grad diff':>10}"
    lines += ["", header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['backend']:<{width}} {row['case']:<8} {row['dtype']:<8} {_fmt(row['ms_per_step'], '9.3f', 'WRONG'):>9} "
            f"{_fmt(row['gflops'], '8.1f'):>8} {_fmt(row['vs_numpy'], '7.2f'):>7} {_fmt(row['vs_floor'], '7.2f'):>7} "
            f"{_fmt(row['floor_ms'], '9.3f'):>9} {row['max_gradient_difference']:>10.1e}"
        )
    tolerances = ", ".join(f"{dtype} {tol:g}" for dtype, tol in GRADIENT_RTOL.items())
    legend = [
        "xNumPy: time / NumPy's time (below 1 is faster; - when numpy was not measured). xfloor: time / the GEMM "
        "floor, the time of only the step's matrix products with the same array library's BLAS, timed in "
        "alternation with the step (floor ms). GFLOP/s counts those products' FLOPs.",
        f"grad diff: largest relative difference of the gradients from NumPy float64 (allowed: {tolerances}); "
        "WRONG: above that, so not timed. Timings on a shared machine are noisy: compare ratios within one run.",
    ]
    lines += [""] + [line for paragraph in legend for line in textwrap.wrap(paragraph, TABLE_WIDTH)]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    """A rough duration for a person: "20 s", "3 min"."""
    return f"{max(1, round(seconds))} s" if seconds < 90 else f"{round(seconds / 60)} min"


def write_plot(rows, path, title: str) -> None:
    """ms per step as grouped bars (one group per case and dtype, one bar per backend), GEMM floors as dashes."""
    from matplotlib.figure import Figure  # imported only for --plot; no pyplot, so no GUI backend is involved

    groups = list(dict.fromkeys((row["case"], row["dtype"]) for row in rows))
    backends = list(dict.fromkeys(row["backend"] for row in rows))
    width = 0.8 / len(backends)
    fig = Figure(figsize=(max(6.0, 1.3 * len(groups)), 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, backend in enumerate(backends):
        points = [
            (groups.index((r["case"], r["dtype"])), r["ms_per_step"])
            for r in rows
            if r["backend"] == backend and r["ms_per_step"] is not None
        ]
        ax.bar([x - 0.4 + (i + 0.5) * width for x, _ in points], [ms for _, ms in points], width, label=backend)
    floors = {groups.index((r["case"], r["dtype"])): r["floor_ms"] for r in rows if r["floor_ms"] is not None}
    ax.hlines(
        list(floors.values()),
        [x - 0.45 for x in floors],
        [x + 0.45 for x in floors],
        colors="black",
        linestyles="dashed",
        label="GEMM floor",
    )
    ax.set_xticks(range(len(groups)), [f"{case}\n{dtype}" for case, dtype in groups])
    ax.set_yscale("log")
    ax.set_ylabel("ms per training step (log scale)")
    ax.set_title(title, fontsize=9)
    fig.legend(loc="outside lower center", ncols=len(backends) + 1, fontsize=8)
    fig.set_dpi(120)
    save_figure(fig, path)  # in the format its extension names, written whole then renamed


def run(args) -> int:
    """Run `python -m dnn bench` with parsed `args`; 0 when every backend agreed with NumPy, else 1."""
    # argparse converts string defaults with `type`, so every list option is a list of valid names here.
    if args.plot:
        check_plot_path(args.plot, "--plot")  # before measuring: a plot that cannot be written is known now
    backend_count = len(args.backends) if args.backends else sum(status.available for status in available_backends())
    expected = estimated_seconds(args.cases, backend_count, args.dtype, args.repeat)
    print(
        f"dnn bench: cases {','.join(args.cases)}, {', '.join(args.dtype)}, {backend_count} backend(s), "
        f"{args.repeat} timed steps each: expect about {_duration(expected)}",
        file=sys.stderr,
        flush=True,
    )
    rows, skipped = measure(
        args.cases,
        args.backends,
        args.dtype,
        args.repeat,
        progress=lambda message: print(message, file=sys.stderr, flush=True),
    )
    environment = environment_info()
    if args.json:
        print(
            json.dumps(
                {"environment": environment, "repeat": args.repeat, "skipped": skipped, "results": rows}, indent=2
            )
        )
    else:
        print(format_table(rows, environment, args.repeat, skipped))
    if args.plot:
        numpy_blas = environment["blas"].split(";")[0]
        write_plot(rows, args.plot, f"python -m dnn bench (median of {args.repeat} steps)\n{numpy_blas}")
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0 if all(row["agrees"] for row in rows) else 1
