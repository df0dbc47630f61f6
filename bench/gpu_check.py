"""GPU check: every fused kernel and whole-network gradients against NumPy float64, the GPU tests, then timings.

    python bench/gpu_check.py                    # on a machine with a CUDA GPU, CuPy and (for its columns) PyTorch
    python bench/gpu_check.py --backend numpy --cases D --sizes small   # the same script on the CPU

In one run:
1. compiles every CUDA kernel (`warmup()`, timed);
2. each fused operation of bench/cases.py at several shapes (1x1, odd sizes, m = 1, a larger one), float32
   and float64, outputs poisoned with NaN first, within dnn.tolerances' kernel tolerance;
3. the whole network's gradients for small and full-size cases within the gradient tolerance;
4. the step `TrainStep(net, m)` takes by default (on cupy: captured in a CUDA graph and replayed) against the
   eager step (`strategy="phases"`) over several steps, SGD and Adam with L2, float32 and float64;
5. `pytest -k cupy` (every CUDA kernel, the step-state kernels, cuBLAS and the captured step; cupy only);
6. the card's GEMM rate (an 8192^3 float32 product through CuPy's cuBLAS);
7. one training step per case, float32, TF32 as the backend says, median after warm-up, timed with CUDA
   events, in every column of STEP_VARIANTS side by side: dnn eager (the step by phases), dnn captured (the
   step `TrainStep(net, m)` picks: "compiled", a replayed CUDA graph, on cupy), PyTorch eager and PyTorch +
   CUDA graph (the same network and update, written below); then TFLOP/s and the fraction of the GEMM rate
   of dnn's eager step.
Prints one table. Exit status: 0 only for a run that checked everything and found it right; 1 when a check
failed; 2 when it did not run ("skipped: no GPU", with the reason: no device, or no CuPy) or skipped a check
(`--no-pytest`), so a skipped run is never mistaken for a passed one. Meant to finish in under 4 minutes on
one H100/H200.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cases import KERNEL_CASES, kernel_difference
from machine import gemm_rate

from dnn import perf
from dnn.backends import available_backends, get_backend
from dnn.perf import CASES, LEARNING_RATE, SMALL_VERSION, case_data, step_gemm_flops
from dnn.step import TrainStep
from dnn.tolerances import gradient_rtol, kernel_rtol, relative_difference

DTYPES = ("float32", "float64")
KERNEL_SHAPES = {
    "small": ((1, 1), (7, 13), (33, 1), (65, 257)),
    "full": ((1, 1), (7, 13), (33, 1), (65, 257), (1000, 3001)),
}
GEMM_N = {"small": 256, "full": 8192}
TIMED_CASES = "A,B,D,E"  # the cases of the GPU performance targets
REFERENCE_LIMIT = 2e10  # FLOPs of one float64 reference step on the host above which a case is not gradient-checked
PYTEST_TIMEOUT_S = 150
SKIPPED = 2  # exit status of a run that did not check everything
REPO = Path(__file__).resolve().parents[1]


class NotAvailable(Exception):
    """A timing column that cannot run here; the message says why (printed once under the table)."""


def event_timer(cupy):
    """A timer(fn, repeat) -> median seconds measured with CUDA events around each call (on the legacy default
    stream, which orders work from CuPy and from PyTorch's default stream alike)."""

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
                    failures.append(
                        f"kernel {kernel.name} {dtype} {kernel.shape(*shape)}: difference {difference:.3g} > {kernel_rtol(dtype):g}"
                    )
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


def check_captured(backend, case_names, steps: int = 5) -> list[str]:
    """One line per (case, dtype, optimizer) where the default step (captured on cupy) leaves the eager one."""
    failures = []
    for name in case_names:
        case = CASES[name]
        for dtype in DTYPES:
            for optimizer in ("sgd", "adam"):
                default, eager = perf.prepare_step(backend, case, dtype), perf.prepare_step(backend, case, dtype)
                step = TrainStep(default.net, case.m, optimizer, l2=0.1)
                reference = TrainStep(eager.net, case.m, optimizer, l2=0.1, strategy="phases")
                for _ in range(steps):
                    step(default.batch, perf.LEARNING_RATE)
                    reference(eager.batch, perf.LEARNING_RATE)
                expected = eager.net.get_parameters()
                difference = max(
                    relative_difference(value, expected[key]) for key, value in default.net.get_parameters().items()
                )
                if not difference <= gradient_rtol(dtype):
                    failures.append(
                        f"{step.strategy} step {name} {dtype} {optimizer}: parameters after {steps} steps differ "
                        f"from the eager step's by {difference:.3g} > {gradient_rtol(dtype):g}"
                    )
    return failures


def run_gpu_tests() -> list[str]:
    """`pytest -k cupy` in a child process: [] when it passed, else its last lines."""
    command = [sys.executable, "-m", "pytest", str(REPO / "tests"), "-k", "cupy", "-q", "-p", "no:cacheprovider"]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=PYTEST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [f"pytest -k cupy did not finish in {PYTEST_TIMEOUT_S} s"]
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"pytest -k cupy: {summary}")
    return [] if done.returncode == 0 else [f"pytest -k cupy failed: {line}" for line in done.stdout.splitlines()[-15:]]


# ---------------------------------------------------------------------------------------------- timed steps
def _dnn_step(backend, case, strategy=None):
    """`perf.step_function` for the case in float32: the strategy named, else "compiled" (on cupy the step
    `TrainStep(net, m)` takes: a replayed CUDA graph) for the captured column."""
    bench = perf.prepare_step(backend, case, "float32")
    try:
        return perf.step_function(bench, strategy=strategy or "compiled")
    except ValueError as exc:  # "compiled" refused: the captured column has nothing to time
        raise NotAvailable(f"dnn captured: {exc}") from None


def dnn_eager_step(backend, case):
    """dnn's training step operation by operation on the backend (`TrainStep(strategy="phases")`), synchronised."""
    return _dnn_step(backend, case, strategy="phases")


def dnn_captured_step(backend, case):
    """The step `TrainStep(net, m)` picks: "compiled", a replayed CUDA graph, on cupy; synchronised."""
    return _dnn_step(backend, case)


def _torch_network(case, torch):
    """The case's network in PyTorch on the GPU: relu hidden layers, a sigmoid output, SGD at the course's rate."""
    X, Y = case_data(case)
    device, dtype = torch.device("cuda"), torch.float32
    X, Y = torch.tensor(X, dtype=dtype, device=device), torch.tensor(Y, dtype=dtype, device=device)  # (n_x, m), (1, m)
    gen = torch.Generator(device="cpu").manual_seed(0)
    dims = case.layer_dims
    Ws = [
        (torch.randn(n, n_prev, generator=gen) / n_prev**0.5).to(device).requires_grad_()
        for n_prev, n in zip(dims, dims[1:])
    ]
    bs = [torch.zeros(n, 1, device=device, requires_grad=True) for n in dims[1:]]
    optimizer = torch.optim.SGD(Ws + bs, lr=LEARNING_RATE)

    def step():
        A = X
        for W, b in zip(Ws[:-1], bs[:-1]):
            A = torch.relu(torch.addmm(b, W, A))  # (n_l, m)
        logits = torch.addmm(bs[-1], Ws[-1], A)  # (1, m)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, Y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    return step


def _torch(backend):
    try:
        import torch
    except ImportError as exc:
        raise NotAvailable(f"PyTorch: not installed ({exc})") from exc
    if not torch.cuda.is_available():
        raise NotAvailable("PyTorch: no CUDA device visible to torch")
    torch.backends.cuda.matmul.allow_tf32 = bool(getattr(backend, "tf32", False))  # the same TF32 choice as dnn's
    return torch


def torch_eager_step(backend, case):
    """The same step in PyTorch eager mode (autograd), synchronised."""
    torch = _torch(backend)
    step = _torch_network(case, torch)

    def synchronised():
        step()
        torch.cuda.synchronize()

    return synchronised


def torch_graph_step(backend, case):
    """The same step captured once in a torch.cuda.CUDAGraph and replayed."""
    torch = _torch(backend)
    step = _torch_network(case, torch)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch's capture recipe asks
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()

    def replay():
        graph.replay()
        torch.cuda.synchronize()

    return replay


#: The columns of the timing table, in order: name -> factory(backend, case) returning a step function.
STEP_VARIANTS = {
    "dnn eager": dnn_eager_step,
    "dnn captured": dnn_captured_step,
    "torch eager": torch_eager_step,
    "torch graph": torch_graph_step,
}


def time_steps(backend, case_names, timer, repeat, gemm_flops_per_s) -> list[str]:
    """The table of float32 training steps: ms per step in every STEP_VARIANTS column, then dnn eager's TFLOP/s
    and fraction of the GEMM rate; a column that cannot run here shows n/a and its reason once, below."""
    header = f"{'case':<5} {'layer_dims, m':<30}" + "".join(f" {name + ' ms':>16}" for name in STEP_VARIANTS)
    lines = [header + f" {'TFLOP/s':>8} {'of GEMM rate':>13}"]
    reasons = {}
    for name in case_names:
        case = CASES[name]
        cells, eager_seconds = [], None
        for variant, factory in STEP_VARIANTS.items():
            try:
                step = factory(backend, case)
            except NotAvailable as exc:
                reasons.setdefault(variant, str(exc))
                cells.append(f" {'n/a':>16}")
                continue
            perf.warm_up(step, calls=3)
            seconds = timer(step, repeat if name != "E" else max(3, repeat // 4))
            eager_seconds = seconds if variant == "dnn eager" else eager_seconds
            cells.append(f" {seconds * 1e3:>16.3f}")
        rate = step_gemm_flops(case.layer_dims, case.m) / eager_seconds
        shape = f"{list(case.layer_dims)}, {case.m}"
        lines.append(
            f"{name:<5} {shape:<30}" + "".join(cells) + f" {rate / 1e12:>8.3f} {rate / gemm_flops_per_s:>12.1%}"
        )
    lines += [f"  n/a: {reason}" for reason in dict.fromkeys(reasons.values())]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cupy", help="backend to check (default: cupy)")
    parser.add_argument("--cases", default=TIMED_CASES, help=f"cases to time (default: {TIMED_CASES})")
    parser.add_argument("--sizes", choices=("small", "full"), default="full", help="kernel shapes and GEMM size")
    parser.add_argument("--repeat", type=int, default=20, help="timed steps per case; the median is reported")
    parser.add_argument(
        "--no-pytest", action="store_true", help="skip the `pytest -k cupy` run (never run for other backends)"
    )
    args = parser.parse_args(argv)

    status = {s.name: s for s in available_backends()}.get(args.backend)
    if status is None or not status.available:
        reason = (
            status.reason if status else f"unknown backend (known: {', '.join(s.name for s in available_backends())})"
        )
        print(f"gpu_check: skipped: no GPU: the {args.backend} backend cannot run here: {reason}")
        return SKIPPED
    backend = get_backend(args.backend)
    timed = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in timed if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; valid cases: {', '.join(CASES)}")
    timer = perf.median_seconds if backend.xp.__name__ == "numpy" else event_timer(backend.xp)
    environment = perf.environment_info(backend)
    print(f"gpu_check on {backend.name}: TF32 {environment['tf32']}; host BLAS {environment['blas']}")
    warmup = getattr(backend, "warmup", None)
    if callable(warmup):
        start = time.perf_counter()
        warmup()
        print(f"warmup (compile or load every kernel): {time.perf_counter() - start:.2f} s")

    failures = check_kernels(backend, KERNEL_SHAPES[args.sizes])
    print(
        f"kernels: {len(KERNEL_CASES)} operations x {len(DTYPES)} dtypes x {len(KERNEL_SHAPES[args.sizes])} shapes, "
        f"{len(failures)} failed"
    )
    checked = list(dict.fromkeys(SMALL_VERSION[name] for name in SMALL_VERSION))
    checked += [name for name in timed if step_gemm_flops(CASES[name].layer_dims, CASES[name].m) <= REFERENCE_LIMIT]
    gradient_failures = check_gradients(backend, dict.fromkeys(checked))
    print(f"gradients vs NumPy float64: cases {', '.join(dict.fromkeys(checked))}, {len(gradient_failures)} failed")
    failures += gradient_failures
    captured_cases = list(dict.fromkeys(SMALL_VERSION.values()))
    captured_failures = check_captured(backend, captured_cases)
    print(
        f"default step (TrainStep(net, m)) vs eager step: cases {', '.join(captured_cases)}, {len(captured_failures)} failed"
    )
    failures += captured_failures
    skipped = args.backend == "cupy" and args.no_pytest
    if args.backend == "cupy" and not args.no_pytest:
        failures += run_gpu_tests()
    for line in failures:
        print(f"  FAILED {line}")

    gemm = gemm_rate(backend, "float32", GEMM_N[args.sizes], repeat=10, timer=timer)
    print(f"GEMM rate: {gemm / 1e12:.3f} TFLOP/s (float32, {GEMM_N[args.sizes]}^3, this run)")
    if failures:
        print("steps not timed: a backend that computes wrong answers is not benchmarked")
        return 1
    print("\n".join(time_steps(backend, timed, timer, args.repeat, gemm)))
    if skipped:
        print("gpu_check: skipped: pytest -k cupy (--no-pytest): not everything was checked")
        return SKIPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
