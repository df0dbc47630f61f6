"""What each rank runs under `mpiexec -n 2` for tests/test_distributed.py (one launch for many checks).

`python tests/distributed_worker.py OUT` trains every case of CASES data-parallel, runs the resume, stop and
mismatch scenarios, and writes OUT/rank{r}.npz (parameters per case) and OUT/rank{r}.json (messages, counts).
`python tests/distributed_worker.py cli ARGS... [--on-rank-1 MORE...]` runs `python -m dnn ARGS` on every rank,
with MORE appended on rank 1 (a --data file that does not exist there, another CSV, --no-standardize).
The cases are also imported by the test, which trains them in one process as the reference.
"""

from __future__ import annotations

import json
import os
import sys
from typing import NamedTuple

import numpy as np

import dnn
from dnn import checkpoint, sources
from dnn.backends import available_backends
from dnn.distributed import RanksDisagreeError
from dnn.optimizers import OPTIMIZERS


class Case(NamedTuple):
    backend: str
    dtype: str
    optimizer: str
    output_units: int = 3  # 3: softmax; 1: sigmoid
    dropout: float | None = None
    l2: float = 0.0

    @property
    def name(self) -> str:
        return "-".join(str(part) for part in self)


#: 29 examples in batches of 7: four batches split 3/4 between the ranks, then a last batch of 1 (rank 0 none).
EXAMPLES, BATCH, EPOCHS = 29, 7, 3
CASES = [
    Case(backend, dtype, optimizer)
    for backend in ("numpy", "numba")
    for dtype in ("float64", "float32")
    for optimizer in OPTIMIZERS
] + [
    Case("numpy", "float64", "adam", output_units=1, dropout=0.3, l2=0.1),
    Case("numba", "float64", "momentum", dropout=0.2, l2=0.05),
    Case("numba", "float32", "sgd", output_units=1, dropout=0.2),
]


def runnable(case: Case) -> bool:
    return any(status.name == case.backend and status.available for status in available_backends())


def data(n_x: int = 5, output_units: int = 3, m: int = EXAMPLES):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n_x, m))
    labels = rng.integers(0, 3 if output_units > 1 else 2, m)
    return X, (labels if output_units > 1 else labels[None, :].astype(float))


def train(case: Case, comm=None, epochs: int = EPOCHS, **options):
    """The case's network after `epochs` epochs of fit (data-parallel when comm is given) and its history."""
    net = dnn.Network([5, 6, 4, case.output_units], dtype=case.dtype, backend=case.backend, seed=2, init="he")
    X, Y = data(output_units=case.output_units)
    lr = 0.01 if case.optimizer == "adam" else 0.1
    history = net.fit(
        X,
        Y,
        epochs=epochs,
        batch_size=BATCH,
        optimizer=case.optimizer,
        lr=lr,
        l2=case.l2,
        dropout=case.dropout,
        seed=11,
        comm=comm,
        **options,
    )
    return net, history


def _disagreement(comm, build) -> str:
    """The RanksDisagreeError message this rank gets when `build(rank)` gives its (net, X, Y); '' if none."""
    net, X, Y = build(comm.Get_rank())
    try:
        net.fit(X, Y, epochs=1, batch_size=BATCH, comm=comm)
    except RanksDisagreeError as exc:
        return str(exc)
    return ""


def library_checks(out: str) -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    params, report = {}, {"cases": [], "histories": {}}
    for case in CASES:
        if runnable(case):
            net, history = train(case, comm)
            params[case.name] = net.params.theta
            report["cases"].append(case.name)
            report["histories"][case.name] = history.cost

    # files: count this rank's writes; an interrupted run resumed from its checkpoint equals an uninterrupted one
    saves = []
    original_save = checkpoint.save

    def counted_save(*args, **kwargs):
        saves.append(args[1])
        original_save(*args, **kwargs)

    checkpoint.save = counted_save
    case, path = Case("numpy", "float64", "adam", dropout=0.2), os.path.join(out, "run.npz")
    whole, _ = train(case, comm, epochs=4)
    train(case, comm, epochs=2, checkpoint=path, checkpoint_every=1)
    resumed, history = train(case, comm, epochs=4, checkpoint=path, checkpoint_every=1, resume=True)
    checkpoint.save = original_save
    params["uninterrupted"], params["resumed"] = whole.params.theta, resumed.params.theta
    report["saves"], report["resumed epochs"] = len(saves), len(history)

    # a callback that asks one rank to stop stops them all
    _, history = train(case, comm, epochs=4, callbacks=[lambda net, epoch, logs: rank == 1 and epoch == 2])
    report["epochs after a stop on rank 1"] = len(history)

    # mismatches: one rank with another architecture, one with another feature count
    def other_layers(r):
        net = dnn.Network([5, 6 if r == 0 else 7, 3], seed=2)
        return (net, *data())

    def other_features(r):
        n_x = 5 if r == 0 else 4
        return (dnn.Network([n_x, 6, 3], seed=2), *data(n_x=n_x))

    def other_values(r):  # the same shapes; one value differs on rank 1
        X, Y = data()
        X[2, 3] += r
        return dnn.Network([5, 6, 3], seed=2), X, Y

    # out of core: each rank reads only its rows of every batch from the files
    source_dir = os.path.join(out, "source")
    if rank == 0:
        X, Y = data(output_units=1)
        os.makedirs(source_dir)
        np.save(os.path.join(source_dir, "X.npy"), np.ascontiguousarray(X.T))  # examples as rows on disk
        np.save(os.path.join(source_dir, "Y.npy"), Y[0].astype(np.int64))
    comm.Barrier()
    case = Case("numba" if runnable(Case("numba", "", "")) else "numpy", "float64", "adam", output_units=1)
    with sources.open_source(source_dir) as source:
        rows_read, read_rows = [], source.read_rows
        source.read_rows = lambda index, *out: rows_read.append(len(index)) or read_rows(index, *out)
        net = dnn.Network([5, 6, 4, 1], dtype=case.dtype, backend=case.backend, seed=2, init="he")
        net.fit(source, None, epochs=EPOCHS, batch_size=BATCH, optimizer="adam", lr=0.01, seed=11, comm=comm)
    params["from source"] = net.params.theta
    report["source case"], report["rows read from the source"] = case.name, sum(rows_read)

    report["architecture mismatch"] = _disagreement(comm, other_layers)
    report["feature mismatch"] = _disagreement(comm, other_features)
    report["data mismatch"] = _disagreement(comm, other_values)

    np.savez(os.path.join(out, f"rank{rank}.npz"), **{name: np.asarray(value) for name, value in params.items()})
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)


def cli_with_more_on_rank_1(argv: list) -> int:
    from mpi4py import MPI

    from dnn import cli

    marker = argv.index("--on-rank-1") if "--on-rank-1" in argv else len(argv)
    common, more = argv[:marker], argv[marker + 1 :]
    return cli.main(common + (more if MPI.COMM_WORLD.Get_rank() == 1 else []))


if __name__ == "__main__":
    if sys.argv[1] == "cli":
        sys.exit(cli_with_more_on_rank_1(sys.argv[2:]))
    library_checks(sys.argv[1])
