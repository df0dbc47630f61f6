"""Data-parallel scaling: steps per second, the gradient reduction's share of a step, and its bandwidth.

    python bench/scaling.py --cases B,C --ranks 1,2 --backend numba --dtype float32 --repeat 20

For each rank count R it launches `mpiexec -n R` (the one beside this Python) on this script. Every rank
gets cores // R BLAS and numba threads (`dnn.distributed.limit_threads`), takes its share of the case's
global batch of m examples and runs `TrainStep` with the MPI reducer; one rank runs the plain step a single
process takes. Reported, per case (the slowest rank's medians):

- ms/step and global steps/s;
- reduce ms and share: time inside the reducer per step (it includes waiting for the slower rank);
- GB/s of the reduction within the step, of the reducer alone (reduce to rank 0 + broadcast, after a
  barrier) and of a plain in-place `Allreduce` of the same vector: gradient bytes / time.

On one machine the ranks talk through shared memory; a cluster's network is slower by an order of
magnitude or more, so what carries over is the structure (one message per step, its size), not the share.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from dnn.errors import install_hint


def worker(args) -> None:
    """One rank's measurements; rank 0 prints one JSON line per case."""
    from mpi4py import MPI

    from dnn.distributed import MPIReducer, limit_threads, share
    from dnn.perf import CASES, prepare_step

    comm = MPI.COMM_WORLD
    rank, ranks = comm.Get_rank(), comm.Get_size()
    threads = limit_threads(comm)
    for name in args.cases.split(","):
        case = CASES[name]
        bench = prepare_step(args.backend, case, args.dtype)
        net = bench.net
        lo, hi = share(case.m, rank, ranks)
        batch = net.batch(bench.X[:, lo:hi], bench.Y[:, lo:hi])  # this rank's columns of the global batch
        # one rank: the step a single process takes, and its phases strategy (what a reducer forces) beside it
        for strategy in (None, "phases") if ranks == 1 else (None,):
            row = _measure(comm, net, batch, strategy, args.repeat, MPIReducer(comm) if ranks > 1 else None)
            row.update(case=name, dtype=args.dtype, backend=args.backend, ranks=ranks, threads=threads)
            slowest = comm.gather(row, root=0)  # a few numbers per rank, once: pickle is fine outside the step
            if rank == 0:
                print(json.dumps(max(slowest, key=lambda r: r["step"])), flush=True)


def _measure(comm, net, batch, strategy, repeat: int, reducer) -> dict:
    """Median step time, reducer time in the step, and the reducer's and a plain Allreduce's time alone."""
    from mpi4py import MPI

    from dnn.step import TrainStep

    timed = TimedReducer(reducer) if reducer is not None else None
    step = TrainStep(net, batch.X.shape[1], "sgd", reducer=timed, strategy=strategy)
    for _ in range(3):
        step(batch, 1e-3)
    step.read()
    if timed is not None:
        timed.seconds.clear()
    comm.Barrier()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step(batch, 1e-3)
        times.append(time.perf_counter() - start)
    step.read()  # a diverged step raises here: no timing of a broken run
    grad = net.params.grad
    row = {
        "strategy": step.strategy,
        "step": float(np.median(times)),
        "bytes": grad.nbytes,
        "reduce": None,
        "alone": None,
        "allreduce": None,
    }
    if timed is not None:
        row["reduce"] = float(np.median(timed.seconds))
        row["alone"] = _collective_seconds(comm, lambda: reducer.sum_to_all(grad), repeat)
        row["allreduce"] = _collective_seconds(comm, lambda: comm.Allreduce(MPI.IN_PLACE, grad, op=MPI.SUM), repeat)
    return row


class TimedReducer:
    """The reducer with the wall time of each call recorded."""

    def __init__(self, reducer):
        self.reducer, self.seconds = reducer, []

    def __call__(self, grad, state) -> None:
        start = time.perf_counter()
        self.reducer(grad, state)
        self.seconds.append(time.perf_counter() - start)


def _collective_seconds(comm, collective, repeat: int) -> float:
    """Median time of `collective` over `repeat` calls, each started together after a barrier (slowest rank)."""
    from mpi4py import MPI

    times = []
    for _ in range(repeat):
        comm.Barrier()
        start = time.perf_counter()
        collective()
        times.append(time.perf_counter() - start)
    return comm.allreduce(float(np.median(times)), op=MPI.MAX)


def driver(args) -> int:
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if mpiexec is None:
        print(f"error: no mpiexec: {install_hint('mpi')}", file=sys.stderr)
        return 1
    rows = []
    for ranks in [int(r) for r in args.ranks.split(",")]:
        command = [
            mpiexec,
            "-n",
            str(ranks),
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            "--cases",
            args.cases,
            "--backend",
            args.backend,
            "--dtype",
            args.dtype,
            "--repeat",
            str(args.repeat),
        ]
        run = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        if run.returncode:
            print(f"error: {' '.join(command)} failed:\n{run.stderr}", file=sys.stderr)
            return 1
        rows += [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    print(table(rows))
    return 0


def _gb_per_s(nbytes: int, seconds: float | None) -> str:
    return "-" if seconds is None else f"{nbytes / seconds / 1e9:.2f}"


def table(rows) -> str:
    header = (
        f"{'case':<9}{'dtype':<9}{'ranks x threads':>16}{'strategy':>14}{'ms/step':>10}{'steps/s':>9}{'reduce ms':>11}"
        f"{'share':>7}{'GB/s step':>11}{'GB/s alone':>12}{'GB/s Allreduce':>16}{'grad MB':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        reduce_ms = "-" if r["reduce"] is None else f"{r['reduce'] * 1e3:.3f}"
        share = "-" if r["reduce"] is None else f"{r['reduce'] / r['step']:.1%}"
        lines.append(
            f"{r['case']:<9}{r['dtype']:<9}{str(r['ranks']) + ' x ' + str(r['threads']):>16}{r['strategy']:>14}"
            f"{r['step'] * 1e3:>10.3f}{1 / r['step']:>9.1f}{reduce_ms:>11}{share:>7}{_gb_per_s(r['bytes'], r['reduce']):>11}"
            f"{_gb_per_s(r['bytes'], r['alone']):>12}{_gb_per_s(r['bytes'], r['allreduce']):>16}{r['bytes'] / 1e6:>9.2f}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="B,C", help="comma-separated cases of dnn.perf.CASES (default: B,C)")
    parser.add_argument("--ranks", default="1,2", help="rank counts to launch (default: 1,2)")
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeat", type=int, default=20, help="timed steps per case (default: 20)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one launch may take")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
