"""`fit`: mini-batch training with an optimizer, L2, dropout, learning-rate decay, validation and checkpoints.

Reproducibility: every epoch draws its shuffle (on the host) and its dropout masks (on the backend) from
generators seeded with (seed, epoch), so the same seed gives the same run on a backend, and a run resumed
from a checkpoint at epoch k continues exactly as the uninterrupted run would have: a checkpoint only
needs the parameters, the optimizer's state, the seed and the epoch count. It also records the run's
settings and a fingerprint of its data (`data_fingerprint`, `source_fingerprint`) and how the data was
prepared, so that a resume with other data, preprocessing or settings is refused instead of continuing a
different run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from . import checkpoint as checkpoint_file
from .distributed import GlobalColumns, Ranks, checksum
from .errors import DivergenceError, ModelFileError
from .optimizers import Optimizer, make_optimizer
from .propagation import Batch
from .sources import Source, SourceBatches, epoch_order
from .step import StepState, TrainStep, numpy_warnings_silenced
from .validation import check_count, check_dropout_rates, check_non_negative, check_positive, require_labels


@dataclass
class History:
    """Per-epoch record of a run: index e holds the values after epoch e + 1."""

    cost: list = field(default_factory=list)  # mean cost of the epoch's mini-batches, weighted by their size
    accuracy: list = field(default_factory=list)  # training accuracy during the epoch: each mini-batch scored
    # by the forward pass of its own step (before that step's update), weighted by its size -- no extra pass
    val_cost: list = field(default_factory=list)  # validation cost after the epoch (empty without validation)
    val_accuracy: list = field(default_factory=list)
    lr: list = field(default_factory=list)  # learning rate used in the epoch
    seed: int | None = None  # the seed the run used (drawn from the OS when fit got seed=None)
    # the epoch of the checkpoint a resumed run continued from (None: it started at epoch 0); not part of the
    # run's record, so a resumed run's History equals the uninterrupted one's
    resumed_from: int | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.cost)

    def as_dict(self) -> dict:
        return asdict(self)


def fit(net, X, Y, epochs: int = 100, batch_size: int | None = None, optimizer="sgd", lr: float | None = None,
        l2: float = 0.0, dropout=None, lr_decay=None, shuffle: bool = True, seed: int | None = 0, validation=None,
        callbacks=(), checkpoint=None, checkpoint_every: int = 10, resume: bool = False, comm=None, fingerprint=None,
        extras=None, feature_names=None) -> History:
    """Train `net` in place on (X, Y) for `epochs` epochs and return the History.

    X may also be a `dnn.sources.Source` (with Y None): a data set on disk, checked in one streaming pass
    and read a mini-batch at a time (see `dnn.sources`).

    batch_size: examples per mini-batch (None: the full batch); the columns are shuffled every epoch when
    `shuffle`, and the last mini-batch may be smaller. optimizer: "sgd", "momentum", "adam" or an
    `dnn.optimizers.Optimizer`. lr: learning rate (None: the optimizer's default). l2: λ of the penalty
    (λ/2m)·Σ‖W‖². dropout: drop rate of the hidden layers, one float for all or a list with one per hidden
    layer (inverted dropout; 0 keeps a layer whole). lr_decay: a float r for lr / (1 + r·epoch) (the course's
    decay, epoch counted from 0) or a callable (lr, epoch) -> lr. validation: (X_val, Y_val) evaluated after
    every epoch. callbacks: callables `callback(net, epoch, logs)` called after each epoch (epoch counted from
    1, logs a dict of that epoch's numbers); one that returns True stops training.
    checkpoint: a path saved every `checkpoint_every` epochs and at the end; with `resume=True` the checkpoint
    there (it must exist) is loaded first and training continues from it, ending exactly where an uninterrupted
    run with the same settings ends. A checkpoint from a run with other settings, another network or other
    data is refused, naming what differs. fingerprint: JSON values that identify the data and how it was
    prepared, as the caller knows them (the command line: a hash of the file it read, its standardisation,
    split and label column); None: a hash of the data as placed on the backend (`data_fingerprint`, or
    `source_fingerprint` of a source) and of `validation`. It is stored in every checkpoint, compared on
    resume and across MPI ranks. extras, feature_names: stored with every checkpoint as `dnn.checkpoint.save`
    stores them (the command line keeps its input standardisation there), so a checkpoint serves as a model file.
    comm: an MPI communicator (e.g. mpi4py's MPI.COMM_WORLD) to train data-parallel across its ranks: every
    rank calls fit with the same network, data and settings, trains on its share of each global batch of
    `batch_size` examples and ends with the parameters one process would have (see `dnn.distributed`); only
    rank 0 writes the checkpoint. A communicator of one rank trains as without one.

    Raises DivergenceError naming the epoch and mini-batch when the cost or a gradient becomes non-finite; the
    parameters then hold the values of the last finite step. Each epoch's steps run without reading anything
    back from the backend; the cost, accuracy and divergence flag are read once, at the end of the epoch.
    """
    ranks = Ranks(comm) if comm is not None and comm.Get_size() > 1 else None
    # a rank that fails alone (bad input, an unwritable checkpoint) aborts the job: the others would wait forever
    with ranks.abort_on_failure() if ranks is not None else contextlib.nullcontext():
        epochs = check_count(epochs, "epochs", minimum=0)
        optimizer = make_optimizer(optimizer)
        lr = optimizer.default_lr if lr is None else check_positive(lr, "lr")
        l2 = check_non_negative(l2, "l2")
        rates = check_dropout_rates(dropout, net.num_layers - 1)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        seed = check_count(seed, "seed", minimum=0)
        if resume and checkpoint is None:
            raise ValueError("resume=True needs checkpoint=PATH to resume from")
        if resume and not os.path.exists(checkpoint):  # a fresh start would silently train from epoch 0
            raise ModelFileError(f"cannot resume: the checkpoint {os.fspath(checkpoint)} does not exist "
                                 "(leave out resume=True to start a run that writes it)")
        checkpoint_every = check_count(checkpoint_every, "checkpoint_every", minimum=1)
        if lr_decay is not None and not callable(lr_decay):
            check_non_negative(lr_decay, "lr_decay")

        share = ranks.share if ranks is not None else None
        if isinstance(X, Source):  # out of core: checked in one streaming pass, then read from disk batch by batch
            data, batches = None, SourceBatches(net, X, batch_size, share=share)  # each rank reads only its rows
            m, size = batches.m, batches.size
        else:
            require_labels(Y, "fit")  # a source on disk brings its own labels; arrays need Y
            data = net.batch(X, Y)
            m = data.X.shape[1]
            size = m if batch_size is None else min(check_count(batch_size, "batch_size", minimum=1), m)
            batches = _MiniBatches(net, data, size, share=share)
        val = net.batch(*validation) if validation is not None else None
        if fingerprint is None and (checkpoint is not None or ranks is not None):  # hashed only where it is compared
            fingerprint = {"data hash": source_fingerprint(X) if data is None else _batch_fingerprint(net, data),
                           "validation data hash": None if val is None else _batch_fingerprint(net, val)}
        fingerprint = _json(fingerprint, "fingerprint")
        settings = {
            "batch_size": size, "optimizer": optimizer.name, "optimizer_config": optimizer.config(), "lr": lr, "l2": l2,
            "dropout": rates, "lr_decay": "callable" if callable(lr_decay) else lr_decay, "shuffle": bool(shuffle), "m": m,
        }
        history, start = History(seed=seed), 0
        if resume:
            history, start = _resume(net, optimizer, checkpoint, settings, seed, fingerprint)
        if ranks is not None:  # one small collective before the first step: a rank that differs fails them all
            run = dict(settings, checkpoint_every=checkpoint_every, resume=bool(resume))
            ranks.check_agreement(_run_description(net, optimizer, data, m, val, run, seed, epochs, start, checkpoint, fingerprint))

        reducer = ranks.reducer if ranks is not None else None
        state = StepState(net.backend, optimizer)  # after any resume: it counts the optimizer's updates from here
        steps: dict[int, TrainStep] = {}  # examples on this rank -> its step; the last short batch gets its own
        for epoch in range(start, epochs):
            epoch_lr = _epoch_lr(lr, lr_decay, epoch)
            # (m,) permutation on the host; a full batch's gradient does not depend on the order, so it is not shuffled
            order = epoch_order(m, seed, epoch) if shuffle and size < m else None
            mask_rng = net.backend.random_generator(_derived_seed(seed, epoch)) if rates else None
            with numpy_warnings_silenced():  # a divergence is one DivergenceError below, not NumPy's warnings too
                for batch, (lo, hi, m_b) in batches.epoch(order):
                    if hi - lo not in steps:
                        steps[hi - lo] = TrainStep(net, hi - lo, optimizer, l2=l2, dropout=rates, reducer=reducer, state=state)
                    rng = mask_rng
                    if ranks is not None and mask_rng is not None:  # this rank's columns of the global batch's masks
                        rng = GlobalColumns(mask_rng, lo, hi, m_b)
                        if hi == lo:
                            rng.skip(net.layer_dims, rates, net.dtype)
                    steps[hi - lo](batch, epoch_lr, rng=rng)
            try:
                totals = state.read()  # the epoch's one read of the backend (global totals under MPI)
            except DivergenceError as exc:
                raise DivergenceError(
                    f"training diverged in epoch {epoch + 1} (mini-batch {exc.step}) at learning rate {epoch_lr:g}: "
                    f"{exc}; the parameters hold the last finite step"
                ) from exc
            # each mini-batch scored by its own step's forward pass (before its update), weighted by its size
            logs = _record(history, net, val, totals.cost_sum / m, totals.correct / m, epoch_lr)
            done = epoch + 1
            stop = any(callback(net, done, logs) for callback in callbacks)
            if ranks is not None:  # parameters still bit-identical everywhere; a stop on one rank stops all
                stop = ranks.end_epoch(net.backend, net.params.theta, stop, done)
            writes = ranks is None or ranks.is_root
            if checkpoint is not None and writes and (done % checkpoint_every == 0 or done == epochs or stop):
                record = {"epoch": done, "seed": seed, "settings": settings, "fingerprint": fingerprint, "history": history.as_dict()}
                checkpoint_file.save(net, checkpoint, optimizer=optimizer, training=record, extras=extras, feature_names=feature_names)
            if stop:
                break
        if ranks is not None:  # when fit returns on any rank, rank 0's checkpoint is on disk (a resume may read it)
            ranks.comm.Barrier()
    return history


def _run_description(net, optimizer, data, m, val, settings, seed, epochs, start, checkpoint, fingerprint) -> dict:
    """What every rank of a data-parallel run must agree on before its first step, as JSON values.

    Each entry of the fingerprint is a field of its own ("data hash", "preprocessing", ...), so that a
    disagreement names which one differs.
    """
    return {
        **fingerprint,
        "network": [list(net.layer_dims), list(net.activations), net.output, net.dtype.name],
        "backend": net.backend.name,
        "data shapes (X, Y)": _shapes(data) if data is not None else ["source", m, net.layer_dims[0]],
        "validation shapes (X, Y)": _shapes(val),
        "settings": settings,
        "seed and epochs": [seed, epochs],
        "checkpoint": checkpoint and os.fspath(checkpoint),
        "epoch resumed from": start,
        "parameter checksum": checksum(net.backend.to_numpy(net.params.theta)),
        "optimizer state checksums": {name: checksum(value) for name, value in optimizer.state_dict(net).items()},
    }


def _shapes(batch: Batch | None):
    return None if batch is None else [list(batch.X.shape), list(batch.Y.shape)]


class _MiniBatches:
    """Gathers mini-batches from the placed data set into buffers reused every epoch (one per batch size).

    share: a callable m_b -> (lo, hi) naming the positions of each global batch of m_b examples this process
    trains on (`dnn.distributed.Ranks.share`); None takes them all. Only those columns are gathered.
    """

    def __init__(self, net, data: Batch, size: int, share=None):
        self.backend, self.data, self.size = net.backend, data, size
        self.m = data.X.shape[1]
        self.dtype = net.dtype
        self.share = share or (lambda m_b: (0, m_b))
        self.buffers: dict[int, Batch] = {}

    def epoch(self, order):
        """(batch, (lo, hi, m_b)) for the epoch's global batches of m_b examples, in `order` (a host permutation
        of the columns, or None for 0..m-1): this process's columns [lo, hi) of each, or None where it has none.
        """
        if order is None and self.size == self.m and self.share(self.m) == (0, self.m):
            yield self.data, (0, self.m, self.m)  # full batch, no shuffling: the data itself, no gather
            return
        # the epoch's column order, placed on the backend once: each batch gathers through a slice of it
        order = self.backend.asarray(np.arange(self.m) if order is None else order)  # (m,)
        for start in range(0, self.m, self.size):
            m_b = min(self.size, self.m - start)
            lo, hi = self.share(m_b)
            if hi == lo:
                yield None, (lo, hi, m_b)
                continue
            index = order[start + lo : start + hi]  # (hi - lo,) column indices of this process's share
            out = self._buffers(index.shape[0])
            self.backend.take_columns(self.data.X, index, out=out.X)  # (n_x, m_b)
            self.backend.take_columns(self.data.Y, index, out=out.Y)  # (n_L, m_b)
            out._x_bound = None  # new contents in the reused buffer: a bound kept for the previous batch is stale
            yield out, (lo, hi, m_b)

    def _buffers(self, m_b: int) -> Batch:
        if m_b not in self.buffers:
            be, X, Y = self.backend, self.data.X, self.data.Y
            self.buffers[m_b] = Batch(be.empty((X.shape[0], m_b), self.dtype), be.empty((Y.shape[0], m_b), self.dtype))
        return self.buffers[m_b]


def _record(history: History, net, val: Batch | None, cost: float, accuracy: float, lr: float) -> dict:
    history.cost.append(cost)
    history.accuracy.append(accuracy)
    history.lr.append(lr)
    logs = {"cost": cost, "accuracy": history.accuracy[-1], "lr": lr}
    if val is not None:
        scores = net.evaluate(val, None)
        history.val_cost.append(scores["cost"])
        history.val_accuracy.append(scores["accuracy"])
        logs.update(val_cost=scores["cost"], val_accuracy=scores["accuracy"])
    return logs


def _derived_seed(seed: int, epoch: int) -> int:
    """The dropout generator's seed for `epoch`: independent of the shuffle stream, same on every backend."""
    return int(np.random.SeedSequence([seed, epoch, 1]).generate_state(1)[0])


def _epoch_lr(lr: float, lr_decay, epoch: int) -> float:
    if lr_decay is None:
        return lr
    if callable(lr_decay):
        return check_positive(lr_decay(lr, epoch), f"lr_decay({lr}, {epoch})")
    return lr / (1.0 + lr_decay * epoch)  # the course's 1/(1 + decay·epoch)


# ---------------------------------------------------------------------------------------------- checkpoints
def _resume(net, optimizer: Optimizer, path, settings: dict, seed: int, fingerprint: dict) -> tuple[History, int]:
    """Load parameters, optimizer state and history from the checkpoint at `path`; returns (history, epoch).

    Refused, naming the difference, when the checkpoint's network, settings or data fingerprint are not
    this run's. A checkpoint written before fingerprints were recorded is checked on network and settings only.
    """
    saved = checkpoint_file.load_checkpoint(path, backend=net.backend, network_class=type(net))
    if saved.kind != "checkpoint":
        raise ValueError(f"cannot resume from {path}: it is a model file (written by --save or Network.save), "
                         "not a checkpoint; a run resumes from the file --checkpoint (fit's checkpoint=) wrote")
    mine = (net.layer_dims, net.activations, net.output, net.dtype.name)
    theirs = (saved.network.layer_dims, saved.network.activations, saved.network.output, saved.network.dtype.name)
    if mine != theirs:
        raise ValueError(f"cannot resume from {path}: it holds a network {theirs}, this one is {mine}")
    recorded = saved.training.get("fingerprint")  # first: other data is why sizes in the settings differ too
    changed = _changes(recorded, fingerprint) if recorded is not None else []
    if changed:
        raise ValueError(f"cannot resume from {path}: the run was trained on other data or prepared it otherwise "
                         f"({'; '.join(changed)})")
    changed = _changes(dict(saved.training["settings"], seed=saved.training["seed"]), dict(settings, seed=seed))
    if changed:
        raise ValueError(f"cannot resume from {path}: the run used other settings ({'; '.join(changed)})")
    net.set_parameters(saved.network.get_parameters())
    optimizer.load_state_dict(net, saved.optimizer.state_dict(saved.network))
    start = int(saved.training["epoch"])
    return History(**dict(saved.training["history"], resumed_from=start)), start


def _changes(recorded: dict, asked: dict, prefix: str = "") -> list[str]:
    """'key=recorded there, asked here' for each entry that differs, nested dicts named by dotted keys."""
    changed = []
    for key in sorted(set(recorded) | set(asked)):
        there, here = recorded.get(key), asked.get(key)
        if isinstance(there, dict) and isinstance(here, dict):
            changed += _changes(there, here, f"{prefix}{key}.")
        elif there != here:
            changed.append(f"{prefix}{key}={there!r} there, {here!r} here")
    return changed


# ---------------------------------------------------------------------------------------------- fingerprints
#: Bytes of float64 features up to which `source_fingerprint` hashes every row; above, a sample of rows.
FINGERPRINT_ALL_ROWS_BYTES = 64 << 20
#: Rows `source_fingerprint` reads from a larger source, spread evenly from the first to the last.
FINGERPRINT_SAMPLE_ROWS = 1024


def data_fingerprint(*arrays) -> str:
    """A 128-bit BLAKE2b hash (hex) of the arrays' shapes, dtypes and values, None counted as absent.

    The same values give the same hash in any memory layout (the bytes hashed are those of a C-ordered copy).
    """
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        if array is None:
            digest.update(b"None;")
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def source_fingerprint(source: Source) -> str:
    """A hash (as `data_fingerprint`) of a data set on disk, read as float64 rows and labels.

    Up to `FINGERPRINT_ALL_ROWS_BYTES` of features every row is hashed; a larger set hashes its size and
    `FINGERPRINT_SAMPLE_ROWS` rows spread evenly through it, which costs a few reads at any size and tells
    data sets apart unless they differ only in rows it does not read.
    """
    digest = hashlib.blake2b(f"{source.m}x{source.n_features}".encode(), digest_size=16)
    if source.m * source.n_features * 8 <= FINGERPRINT_ALL_ROWS_BYTES:
        for _, X, y in source.chunks():
            digest.update(data_fingerprint(X, y).encode())  # (k, n_x), (k,)
        return digest.hexdigest()
    index = np.unique(np.linspace(0, source.m - 1, FINGERPRINT_SAMPLE_ROWS).astype(np.int64))  # (k,) increasing
    X, y = np.empty((index.size, source.n_features)), np.empty(index.size)  # (k, n_x), (k,)
    source.read_rows(index, X, y)
    digest.update(data_fingerprint(index, X, y).encode())
    return digest.hexdigest()


def _batch_fingerprint(net, batch: Batch) -> str:
    """`data_fingerprint` of a placed batch (X (n_x, m) and Y (n_L, m) in the network's dtype), read back once."""
    return data_fingerprint(net.backend.to_numpy(batch.X), net.backend.to_numpy(batch.Y))


def _json(value, name: str):
    """`value` after checking that it is made of JSON values (it is written into checkpoints' metadata)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be JSON values (dicts, lists, strings, numbers), got {value!r}: {exc}") from None
    return value
