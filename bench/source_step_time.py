"""Step time of training from a file in the page cache against training from memory, on case B's shapes.

    python bench/source_step_time.py [--rows 20480] [--repeats 7] [--backends numpy,numba] [--profile]

Case B: [784, 256, 128, 1], mini-batches of 256, float32. X.npy (rows, 784) float32 and Y.npy (or float64, as
`python -m dnn convert` writes by default: --file-dtype; or an .h5: --format h5) are written to a temporary directory and read once, so every later read comes from the page cache. Each variant runs the loop
`fit` runs for one epoch (the shuffled epoch order, one `TrainStep` per batch size, one read of the step state
at the end) over the same rows: from memory (`fit`'s gather from data placed on the backend), and from the
file with read-ahead on and off, as it is and standardised (`Standardized`, as `train --data DIR` reads it;
training from memory on standardised data costs what it costs on raw data, so "memory" is the baseline of both). Variants alternate within each repeat, so a slower period of this shared
machine falls on all of them; the table gives the median time per step and its ratio to memory. --profile
runs the file variant without read-ahead under cProfile instead and prints the top of the profile.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time

import numpy as np

from dnn import Network, sources
from dnn.optimizers import make_optimizer
from dnn.step import StepState, TrainStep
from dnn.minibatches import MiniBatches

DIMS, BATCH, DTYPE = [784, 256, 128, 1], 256, "float32"


def write_data(directory: str, rows: int, file_dtype: str, kind: str) -> str:
    """X (rows, 784) of N(2, 3) features in `file_dtype` and Y (rows,) 0/1 labels, in the page cache; returns the source's path.

    kind "npy": X.npy and Y.npy in `directory`; "h5": d.h5 with datasets X and Y in ~1 MiB chunks of whole
    rows, as `python -m dnn convert` writes them.
    """
    rng = np.random.default_rng(0)
    X = rng.normal(2.0, 3.0, (rows, DIMS[0])).astype(file_dtype)
    Y = (X[:, 0] > 0).astype(np.int64)
    if kind == "npy":
        np.save(os.path.join(directory, "X.npy"), X)
        np.save(os.path.join(directory, "Y.npy"), Y)
        return directory
    import h5py

    path = os.path.join(directory, "d.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X, chunks=(max(1, (1 << 20) // X[0].nbytes), X.shape[1]))
        f.create_dataset("Y", data=Y)
    return path


def epoch_seconds(net, batches, order) -> float:
    """Wall time of one epoch of `fit`'s loop over `batches` (SGD, lr 1e-3)."""
    state, steps = StepState(net.backend, make_optimizer("sgd")), {}
    start = time.perf_counter()
    for batch, _ in batches.epoch(order):
        m_b = batch.X.shape[1]
        if m_b not in steps:
            steps[m_b] = TrainStep(net, m_b, state.optimizer, state=state)
        steps[m_b](batch, 1e-3)
    state.read()  # the epoch's one synchronisation
    return time.perf_counter() - start


def variants(net, path: str) -> dict:
    """name -> the mini-batches that variant trains on."""
    source = sources.open_source(path)
    standardized = sources.Standardized(source, sources.scan(source).standardizer)
    X, Y = np.empty((source.m, source.n_features), source.dtype), np.empty(source.m)
    source.read_rows(np.arange(source.m), X, Y)
    X, Y = X.T, Y.reshape(1, -1)  # (n_x, m), (1, m)
    return {
        "memory": MiniBatches(net, net.batch(X, Y), BATCH),
        "file, read-ahead": sources.SourceBatches(net, source, BATCH, prefetch=True),
        "file, no read-ahead": sources.SourceBatches(net, source, BATCH, prefetch=False),
        "file standardised, read-ahead": sources.SourceBatches(net, standardized, BATCH, prefetch=True),
        "file standardised, no read-ahead": sources.SourceBatches(net, standardized, BATCH, prefetch=False),
    }


def measure(backend: str, path: str, rows: int, repeats: int) -> dict:
    """name -> median seconds per step over `repeats` alternating epochs (after one warm-up epoch each)."""
    net = Network(DIMS, dtype=DTYPE, backend=backend, seed=1)
    runs = variants(net, path)
    order = sources.epoch_order(rows, seed=0, epoch=0)
    times = {name: [] for name in runs}
    for name, batches in runs.items():
        epoch_seconds(net, batches, order)  # warm-up: compilation, workspaces, buffers
    for _ in range(repeats):
        for name, batches in runs.items():
            times[name].append(epoch_seconds(net, batches, order))
    steps = -(-rows // BATCH)
    return {name: statistics.median(values) / steps for name, values in times.items()}


def profile(backend: str, path: str, rows: int) -> None:
    net = Network(DIMS, dtype=DTYPE, backend=backend, seed=1)
    batches = sources.SourceBatches(net, sources.open_source(path), BATCH, prefetch=False)
    order = sources.epoch_order(rows, seed=0, epoch=0)
    epoch_seconds(net, batches, order)
    profiler = cProfile.Profile()
    profiler.runcall(epoch_seconds, net, batches, order)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=80 * BATCH, help="examples in the file (default: 80 batches)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backends", default="numpy,numba")
    parser.add_argument("--file-dtype", choices=("float32", "float64"), default="float32", help="X's dtype on disk")
    parser.add_argument(
        "--format", choices=("npy", "h5"), default="npy", help="X.npy + Y.npy, or an .h5 (default: npy)"
    )
    parser.add_argument("--profile", action="store_true", help="profile the file variant without read-ahead instead")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = write_data(directory, args.rows, args.file_dtype, args.format)
        if args.profile:
            for backend in args.backends.split(","):
                profile(backend, path, args.rows)
            return 0
        print(
            f"case B {DIMS}, batches of {BATCH}, {DTYPE} ({args.format}, X {args.file_dtype}), {args.rows} rows; median of {args.repeats} epochs, ms per step\n"
        )
        print("| backend | variant | ms/step | / memory |\n|---|---|---|---|")
        for backend in args.backends.split(","):
            result = measure(backend, path, args.rows, args.repeats)
            for name, seconds in result.items():
                print(f"| {backend} | {name} | {seconds * 1e3:.3f} | {seconds / result['memory']:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
