"""Train on a data set larger than the memory allowed, and check that it learns what training from memory learns.

    python bench/train_larger_than_memory.py [--gigabytes 2] [--limit-mb 600] [--epochs 3] [--features 512] [--dir DIR]

1. Writes X.npy (m, n) float64 (N(0, 1) features) and Y.npy (m,) int8 (1 where a fixed linear score is
   positive) of about --gigabytes into DIR (default: a temporary directory, removed at the end), in slices,
   then drops X.npy from the page cache (posix_fadvise DONTNEED), so that the limited run reads from the disk.
2. Trains [n, 64, 1] float64 (numpy backend, Adam, batches of 1024, seed 0) from the files with
   `fit(net, open_source(DIR), None, ...)` in a fresh process under a memory limit of --limit-mb (a memory
   cgroup when root may create one, else RLIMIT_AS: see bench/memory_limit.py), and reports its time, its
   peak (the cgroup's peak usage, or ru_maxrss) and its final cost.
3. Trains the same network on the same rows from memory (`fit(net, X.T, Y, ...)`, same seed, so the same
   shuffles) in this process without a limit, and compares the per-epoch costs and final parameters with
   dnn/tolerances.py's float64 gradient tolerance. When the machine's available memory cannot hold the
   in-memory run (about 2.2 times the file), both runs use the largest prefix of the rows that it can
   (the limited run reading it through `sources.Rows`), and the report says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time

import numpy as np

from memory_limit import run_limited

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from dnn import Network  # noqa: E402 -- the repository's dnn, as the limited process imports it
from dnn.tolerances import gradient_rtol, relative_difference  # noqa: E402
from dnn.training import fit  # noqa: E402

HIDDEN, BATCH, LR, SEED = 64, 1024, 1e-3, 0
_SLICE_BYTES = 64 << 20

_LIMITED = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
import numpy as np
from dnn import Network, sources
from dnn.training import fit
source = sources.open_source({directory!r})
if {rows} < source.m:
    source = sources.Rows(source, np.arange({rows}))
net = Network([source.n_features, {hidden}, 1], dtype="float64", backend="numpy", seed=1)
start = time.perf_counter()
history = fit(net, source, None, epochs={epochs}, batch_size={batch}, optimizer="adam", lr={lr}, seed={seed})
seconds = time.perf_counter() - start
np.savez({params!r}, **net.get_parameters())
print(json.dumps(dict(seconds=seconds, cost=history.cost, maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)))
"""


def write_data(directory: str, gigabytes: float, n: int) -> int:
    """X.npy (m, n) float64 and Y.npy (m,) int8 of about `gigabytes` GB in `directory`, written a slice at a time; returns m."""
    m = int(gigabytes * 1e9) // (8 * n)
    rng, w = (
        np.random.default_rng(SEED),
        np.random.default_rng(SEED + 1).standard_normal(n),
    )  # w: (n,) the labels' direction
    X = np.lib.format.open_memmap(os.path.join(directory, "X.npy"), mode="w+", dtype=np.float64, shape=(m, n))
    Y = np.empty(m, np.int8)
    step = max(1, _SLICE_BYTES // (8 * n))
    for start in range(0, m, step):
        rows = rng.standard_normal((min(step, m - start), n))  # (k, n)
        X[start : start + len(rows)] = rows
        Y[start : start + len(rows)] = rows @ w > 0
    X.flush()
    del X
    np.save(os.path.join(directory, "Y.npy"), Y)
    evict_from_page_cache(os.path.join(directory, "X.npy"))
    return m


def evict_from_page_cache(path: str) -> None:
    """Drop `path`'s pages from the page cache, so that the limited process reads them from the disk itself.

    Written pages are charged to the writer's (this process's) memory cgroup; left in the cache, the limited
    process would read them without ever holding them against its own limit.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # only clean pages can be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rows_in_memory(m: int, n: int) -> int:
    """The rows the in-memory run can hold: all, unless ~2.2 copies (X placed on the backend, a batch, slack) exceed MemAvailable."""
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    return min(m, int(available / 2.2) // (8 * n))


def train_in_memory(directory: str, rows: int, epochs: int):
    """(history, parameters, seconds) of the same run from memory, on the first `rows` rows."""
    X = np.load(os.path.join(directory, "X.npy"), mmap_mode="r")[:rows]  # (rows, n): copied once, by net.batch
    Y = np.load(os.path.join(directory, "Y.npy"))[:rows].reshape(1, -1)  # (1, rows)
    net = Network([X.shape[1], HIDDEN, 1], dtype="float64", backend="numpy", seed=1)
    start = time.perf_counter()
    history = fit(net, X.T, Y, epochs=epochs, batch_size=BATCH, optimizer="adam", lr=LR, seed=SEED)
    return history, net.get_parameters(), time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=2.0, help="size of X.npy (default: 2)")
    parser.add_argument("--limit-mb", type=int, default=600, help="the limited process's memory limit (default: 600)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--features", type=int, default=512, help="n: one row is n float64 (default 512: 4 KiB rows)")
    parser.add_argument("--dir", help="where to write the data (default: a temporary directory, removed afterwards)")
    args = parser.parse_args(argv)
    directory = args.dir or tempfile.mkdtemp(prefix="dnn-larger-than-memory-")
    try:
        start = time.perf_counter()
        m = write_data(directory, args.gigabytes, args.features)
        size = os.path.getsize(os.path.join(directory, "X.npy"))
        print(
            f"X.npy: {m} x {args.features} float64, {size / 1e9:.2f} GB, written in {time.perf_counter() - start:.1f} s"
        )
        rows = rows_in_memory(m, args.features)
        if rows < m:
            print(
                f"the in-memory run cannot hold all {m} rows here: both runs train on the first {rows} "
                f"({rows * args.features * 8 / 1e9:.2f} GB)"
            )
        params_path = os.path.join(directory, "limited_params.npz")
        code = _LIMITED.format(
            repo=_REPO,
            directory=directory,
            rows=rows,
            hidden=HIDDEN,
            epochs=args.epochs,
            batch=BATCH,
            lr=LR,
            seed=SEED,
            params=params_path,
        )
        limited = run_limited(textwrap.dedent(code), args.limit_mb << 20)
        if limited.done.returncode != 0:
            print(f"the limited run failed under {limited.how} ({args.limit_mb} MB):\n{limited.done.stderr[-3000:]}")
            return 1
        report = json.loads(limited.done.stdout.splitlines()[-1])
        peak = limited.peak if limited.peak is not None else report["maxrss"]
        print(
            f"from the file under {limited.how} = {args.limit_mb} MB: {args.epochs} epochs in {report['seconds']:.1f} s, "
            f"peak {peak / 2**20:.0f} MB ({'cgroup peak usage' if limited.peak is not None else 'ru_maxrss'}; "
            f"ru_maxrss {report['maxrss'] / 2**20:.0f} MB), costs {', '.join(f'{c:.6f}' for c in report['cost'])}"
        )
        history, reference, seconds = train_in_memory(directory, rows, args.epochs)
        print(
            f"from memory, no limit: {args.epochs} epochs in {seconds:.1f} s, costs {', '.join(f'{c:.6f}' for c in history.cost)}"
        )
        with np.load(params_path) as saved:
            differences = {name: relative_difference(saved[name], value) for name, value in reference.items()}
        differences["cost"] = relative_difference(report["cost"], history.cost)
        worst = max(differences.values())
        tolerance = gradient_rtol("float64")
        print(
            f"largest relative difference (parameters, per-epoch costs): {worst:.3g} (tolerance {tolerance:g}): "
            f"{'equal within tolerance' if worst <= tolerance else 'DIFFERENT'}"
        )
        return 0 if worst <= tolerance else 1
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
