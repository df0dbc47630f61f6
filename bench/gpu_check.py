"""GPU check: every fused kernel and whole-network gradients against NumPy float64, then one step timed per case.

    python bench/gpu_check.py                    # on a machine with a CUDA GPU and CuPy
    python bench/gpu_check.py --backend numpy --cases D --sizes small   # the same script on the CPU

In one run: (1) each fused operation of bench/cases.py at several shapes (1x1, odd sizes, m = 1, a larger
one), float32 and float64, outputs poisoned with NaN first, within dnn.tolerances' kernel tolerance;
(2) the whole network's gradients for small and full-size cases within the gradient tolerance; (3) the
card's GEMM rate (an 8192^2 float32 product); (4) one eager training step per case, float32, median after
warm-up, timed with CUDA events, as ms, TFLOP/s and the ratio to that GEMM rate. CUDA-graph capture is
not implemented yet, so there is no captured column. Exits 0 when every check passed, 1 otherwise, and 0
with a one-line message when the backend cannot run here (no GPU or no CuPy). Meant to finish in well under
3 minutes on one H100/H200.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from cases import KERNEL_CASES, kernel_difference
from machine import gemm_rate

from dnn import perf
from dnn.backends import available_backends, get_backend
from dnn.perf import CASES, SMALL_VERSION, step_gemm_flops
from dnn.tolerances import gradient_rtol, kernel_rtol

DTYPES = ("float32", "float64")
KERNEL_SHAPES = {"small": ((1, 1), (7, 13), (33, 1), (65, 257)), "full": ((1, 1), (7, 13), (33, 1), (65, 257), (1000, 3001))}
GEMM_N = {"small": 256, "full": 8192}
TIMED_CASES = "A,B,D,E"  # the cases of the CuPy issue's performance table
REFERENCE_LIMIT = 2e10  # FLOPs of one float64 reference step on the host above which a case is not gradient-checked


def event_timer(cupy):
    """A timer(fn, repeat) -> median seconds measured with CUDA events around each call."""

    def median_event_seconds(fn, repeat):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        times = []
        for _ in range(repeat):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)  # ms -> s
        return statistics.median(times)

    return median_event_seconds


def check_kernels(backend, shapes) -> list[str]:
    """One line per failed (kernel, dtype, shape); empty when all agree."""
    failures = []
    for kernel in KERNEL_CASES:
        for dtype in DTYPES:
            for shape in shapes:
                difference, _ = kernel_difference(kernel, backend, dtype, shape)
                if not difference <= kernel_rtol(dtype):
                    failures.append(f"kernel {kernel.name} {dtype} {kernel.shape(*shape)}: difference {difference:.3g} > {kernel_rtol(dtype):g}")
    return failures


def check_gradients(backend, case_names) -> list[str]:
    """One line per failed (case, dtype) whole-network gradient comparison; empty when all agree."""
    failures = []
    for name in case_names:
        case = CASES[name]
        for dtype in DTYPES:
            bench = perf.prepare_step(backend, case, dtype)
            difference = perf.gradient_difference(bench.net, bench.X, bench.Y)
            if not difference <= gradient_rtol(dtype):
                failures.append(f"gradients {name} {dtype}: difference {difference:.3g} > {gradient_rtol(dtype):g}")
    return failures


def time_steps(backend, case_names, timer, repeat, gemm_flops_per_s) -> list[str]:
    """The table of eager float32 training steps: ms, TFLOP/s, and the fraction of the GEMM rate."""
    lines = [f"{'case':<8} {'layer_dims, m':<34} {'eager ms':>9} {'TFLOP/s':>8} {'of GEMM rate':>13}"]
    for name in case_names:
        case = CASES[name]
        step = perf.step_function(perf.prepare_step(backend, case, "float32"))
        perf.warm_up(backend, step, calls=3)
        seconds = timer(step, repeat)
        rate = step_gemm_flops(case.layer_dims, case.m) / seconds
        shape = f"{list(case.layer_dims)}, {case.m}"
        lines.append(f"{name:<8} {shape:<34} {seconds * 1e3:>9.3f} {rate / 1e12:>8.3f} {rate / gemm_flops_per_s:>12.1%}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cupy", help="backend to check (default: cupy)")
    parser.add_argument("--cases", default=TIMED_CASES, help=f"cases to time (default: {TIMED_CASES})")
    parser.add_argument("--sizes", choices=("small", "full"), default="full", help="kernel shapes and GEMM size")
    parser.add_argument("--repeat", type=int, default=20, help="timed steps per case; the median is reported")
    args = parser.parse_args(argv)

    status = {s.name: s for s in available_backends()}.get(args.backend)
    if status is None or not status.available:
        reason = status.reason if status else f"unknown backend (known: {', '.join(s.name for s in available_backends())})"
        print(f"gpu_check: not run: the {args.backend} backend cannot run here: {reason}")
        return 0
    backend = get_backend(args.backend)
    timed = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in timed if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; valid cases: {', '.join(CASES)}")
    timer = perf.median_seconds if backend.xp.__name__ == "numpy" else event_timer(backend.xp)
    environment = perf.environment_info(backend)
    print(f"gpu_check on {backend.name}: TF32 {environment['tf32']}; host BLAS {environment['blas']}")

    failures = check_kernels(backend, KERNEL_SHAPES[args.sizes])
    print(f"kernels: {len(KERNEL_CASES)} operations x {len(DTYPES)} dtypes x {len(KERNEL_SHAPES[args.sizes])} shapes, "
          f"{len(failures)} failed")
    checked = list(dict.fromkeys(SMALL_VERSION[name] for name in SMALL_VERSION))
    checked += [name for name in timed if step_gemm_flops(CASES[name].layer_dims, CASES[name].m) <= REFERENCE_LIMIT]
    gradient_failures = check_gradients(backend, dict.fromkeys(checked))
    print(f"gradients vs NumPy float64: cases {', '.join(dict.fromkeys(checked))}, {len(gradient_failures)} failed")
    failures += gradient_failures
    for line in failures:
        print(f"  FAILED {line}")

    gemm = gemm_rate(backend, "float32", GEMM_N[args.sizes], repeat=10, timer=timer)
    print(f"GEMM rate: {gemm / 1e12:.3f} TFLOP/s (float32, {GEMM_N[args.sizes]}^3, this run)")
    if failures:
        print("steps not timed: a backend that computes wrong answers is not benchmarked")
        return 1
    print("\n".join(time_steps(backend, timed, timer, args.repeat, gemm)))
    print("captured (CUDA graph): not implemented yet, so only the eager column exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
