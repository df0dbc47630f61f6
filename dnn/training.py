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
from typing import NamedTuple

import numpy as np

from . import checkpoint as checkpoint_file
from .distributed import GlobalColumns, Ranks, checksum
from .errors import DivergenceError, ModelFileError
from .minibatches import MiniBatches
from .optimizers import Optimizer, make_optimizer
from .propagation import Batch
from .sources import Source, SourceBatches, epoch_order
from .sources import evaluate as evaluate_source
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


def fit(
    net,
    X,
    Y,
    epochs: int = 100,
    batch_size: int | None = None,
    optimizer="sgd",
    lr: float | None = None,
    l2: float = 0.0,
    dropout=None,
    lr_decay=None,
    shuffle: bool = True,
    seed: int | None = 0,
    validation=None,
    callbacks=(),
    checkpoint=None,
    checkpoint_every: int = 10,
    resume: bool = False,
    comm=None,
    fingerprint=None,
    extras=None,
    feature_names=None,
) -> History:
    """Train `net` in place on (X, Y) for `epochs` epochs and return the History.

    X may also be a `dnn.sources.Source` (with Y None): a data set on disk, checked in one streaming pass
    and read a mini-batch at a time (see `dnn.sources`).

    batch_size: examples per mini-batch (None: the full batch); the columns are shuffled every epoch when
    `shuffle`, and the last mini-batch may be smaller. optimizer: a name of `dnn.optimizers.OPTIMIZERS` or an
    `dnn.optimizers.Optimizer`. lr: learning rate (None: the optimizer's default). l2: λ of the penalty
    (λ/2m)·Σ‖W‖². dropout: drop rate of the hidden layers, one float for all or a list with one per hidden
    layer (inverted dropout; 0 keeps a layer whole). lr_decay: a float r for lr / (1 + r·epoch) (the course's
    decay, epoch counted from 0) or a callable (lr, epoch) -> lr. validation: (X_val, Y_val), or a
    `dnn.sources.Source` scored streamed, chunk by chunk; evaluated after every epoch into the History's
    val_cost and val_accuracy. callbacks: callables `callback(net, epoch, logs)` called after each epoch
    (epoch counted from 1, logs a dict of that epoch's numbers, validation's included); every callback runs
    every epoch, and training stops after the epoch when any of them returned True.
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
        run = _checked_run(
            net, epochs, optimizer, lr, l2, dropout, lr_decay, shuffle, seed, checkpoint, checkpoint_every, resume
        )
        data = _prepared_data(net, X, Y, batch_size, validation, share=ranks.share if ranks is not None else None)
        if fingerprint is None and (checkpoint is not None or ranks is not None):  # hashed only where it is compared
            fingerprint = _fingerprint(net, X, data)
        saves = _Checkpoints(
            run,
            _settings(run, data),
            _json(fingerprint, "fingerprint"),
            extras,
            feature_names,
            writes=ranks is None or ranks.is_root,
        )
        history, start = History(seed=run.seed), 0
        if run.resume:
            history, start = _resume(
                net,
                run.optimizer,
                checkpoint,
                saves.settings,
                run.seed,
                saves.fingerprint,
                validated=data.val is not None,
            )
        if ranks is not None:  # one small collective before the first step: a rank that differs fails them all
            ranks.check_agreement(_run_description(net, run, data, saves, start))
        steps = _Steps(net, run, ranks)  # after any resume: its state counts the optimizer's updates from there
        for epoch in range(start, run.epochs):
            epoch_lr, totals = _train_epoch(net, run, data, steps, epoch, ranks)
            # each mini-batch scored by its own step's forward pass (before its update), weighted by its size
            logs = _record(history, net, data.val, totals.cost_sum / data.m, totals.correct / data.m, epoch_lr)
            done = epoch + 1
            stop = _callbacks_ask_to_stop(callbacks, net, done, logs)
            if ranks is not None:  # parameters still bit-identical everywhere; a stop on one rank stops all
                stop = ranks.end_epoch(net.backend, net.params.theta, stop, done)
            saves.after_epoch(net, history, done, stop)
            if stop:
                break
        if ranks is not None:  # when fit returns on any rank, rank 0's checkpoint is on disk (a resume may read it)
            ranks.comm.Barrier()
    return history


# ---------------------------------------------------------------------------------------------- prepare
@dataclass(frozen=True)
class _Run:
    """fit's arguments that shape the run, after their checks."""

    epochs: int
    optimizer: Optimizer
    lr: float
    l2: float
    rates: list | None  # dropout rates of the hidden layers (None: no dropout)
    lr_decay: object  # None, a float r or a callable (lr, epoch) -> lr
    shuffle: bool
    seed: int
    checkpoint: object  # a path or None
    checkpoint_every: int
    resume: bool


def _checked_run(
    net, epochs, optimizer, lr, l2, dropout, lr_decay, shuffle, seed, checkpoint, checkpoint_every, resume
) -> _Run:
    """fit's arguments checked, in the order a user reads them, before any data is touched."""
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
        raise ModelFileError(
            f"cannot resume: the checkpoint {os.fspath(checkpoint)} does not exist "
            "(leave out resume=True to start a run that writes it)"
        )
    checkpoint_every = check_count(checkpoint_every, "checkpoint_every", minimum=1)
    if lr_decay is not None and not callable(lr_decay):
        check_non_negative(lr_decay, "lr_decay")
    return _Run(
        epochs, optimizer, lr, l2, rates, lr_decay, bool(shuffle), seed, checkpoint, checkpoint_every, bool(resume)
    )


class _Data(NamedTuple):
    """The run's data: its mini-batches, the placed arrays (None for a source), m, the batch size and validation."""

    batches: MiniBatches | SourceBatches
    placed: Batch | None
    m: int
    size: int
    val: Batch | Source | None  # placed arrays, or a source scored streamed


def _prepared_data(net, X, Y, batch_size, validation, share) -> _Data:
    """The training data placed on the backend (or opened for reading batch by batch) and the validation data."""
    if isinstance(X, Source):  # out of core: checked in one streaming pass, then read from disk batch by batch
        batches = SourceBatches(net, X, batch_size, share=share)  # each rank reads only its rows
        placed, m, size = None, batches.m, batches.size
    else:
        require_labels(Y, "fit")  # a source on disk brings its own labels; arrays need Y
        placed = net.batch(X, Y)
        m = placed.X.shape[1]
        size = m if batch_size is None else min(check_count(batch_size, "batch_size", minimum=1), m)
        batches = MiniBatches(net, placed, size, share=share)
    val = validation if isinstance(validation, Source) or validation is None else net.batch(*validation)
    return _Data(batches, placed, m, size, val)


def _fingerprint(net, X, data: _Data) -> dict:
    """Hashes of the training and validation data, as placed on the backend or as stored in a source."""
    return {
        "data hash": source_fingerprint(X) if data.placed is None else _batch_fingerprint(net, data.placed),
        "validation data hash": None if data.val is None else _validation_fingerprint(net, data.val),
    }


def _settings(run: _Run, data: _Data) -> dict:
    """The run's settings as JSON values: recorded in every checkpoint, and equal on resume."""
    return {
        "batch_size": data.size,
        "optimizer": run.optimizer.name,
        "optimizer_config": run.optimizer.config(),
        "lr": run.lr,
        "l2": run.l2,
        "dropout": run.rates,
        "lr_decay": "callable" if callable(run.lr_decay) else run.lr_decay,
        "shuffle": run.shuffle,
        "m": data.m,
    }


def _run_description(net, run: _Run, data: _Data, saves: "_Checkpoints", start: int) -> dict:
    """What every rank of a data-parallel run must agree on before its first step, as JSON values.

    Each entry of the fingerprint is a field of its own ("data hash", "preprocessing", ...), so that a
    disagreement names which one differs.
    """
    return {
        **saves.fingerprint,
        "network": [list(net.layer_dims), list(net.activations), net.output, net.dtype.name],
        "backend": net.backend.name,
        "data shapes (X, Y)": _shapes(data.placed)
        if data.placed is not None
        else ["source", data.m, net.layer_dims[0]],
        "validation shapes (X, Y)": _shapes(data.val),
        "settings": dict(saves.settings, checkpoint_every=run.checkpoint_every, resume=run.resume),
        "seed and epochs": [run.seed, run.epochs],
        "checkpoint": run.checkpoint and os.fspath(run.checkpoint),
        "epoch resumed from": start,
        "parameter checksum": checksum(net.backend.to_numpy(net.params.theta)),
        "optimizer state checksums": {name: checksum(value) for name, value in run.optimizer.state_dict(net).items()},
    }


def _shapes(data: Batch | Source | None):
    if isinstance(data, Source):
        return ["source", data.m, data.n_features]
    return None if data is None else [list(data.X.shape), list(data.Y.shape)]


# ---------------------------------------------------------------------------------------------- build steps
class _Steps:
    """The run's training steps, one per example count on this rank (the last short batch gets its own), all
    sharing one `StepState`: the optimizer's update count and the epoch's cost and accuracy sums."""

    def __init__(self, net, run: _Run, ranks: Ranks | None):
        self.net, self.run = net, run
        self.reducer = ranks.reducer if ranks is not None else None
        self.state = StepState(net.backend, run.optimizer)
        self.by_size: dict[int, TrainStep] = {}  # examples on this rank -> its step

    def __call__(self, batch: Batch | None, m: int, lr: float, rng) -> None:
        """One step on `batch` of m examples (None and 0 for a rank without any in this batch)."""
        if m not in self.by_size:
            run = self.run
            self.by_size[m] = TrainStep(
                self.net, m, run.optimizer, l2=run.l2, dropout=run.rates, reducer=self.reducer, state=self.state
            )
        self.by_size[m](batch, lr, rng=rng)


# ---------------------------------------------------------------------------------------------- epoch loop
def _train_epoch(net, run: _Run, data: _Data, steps: _Steps, epoch: int, ranks: Ranks | None):
    """(learning rate, totals): every mini-batch of `epoch` trained, then the epoch's one read of the backend.

    Raises DivergenceError naming the epoch, mini-batch and learning rate when a step diverged.
    """
    epoch_lr = _epoch_lr(run.lr, run.lr_decay, epoch)
    # (m,) permutation on the host; a full batch's gradient does not depend on the order, so it is not shuffled
    order = epoch_order(data.m, run.seed, epoch) if run.shuffle and data.size < data.m else None
    masks = net.backend.random_generator(_derived_seed(run.seed, epoch)) if run.rates else None
    with numpy_warnings_silenced():  # a divergence is one DivergenceError below, not NumPy's warnings too
        for batch, (lo, hi, m_b) in data.batches.epoch(order):
            rng = masks
            if ranks is not None and masks is not None:  # this rank's columns of the global batch's masks
                rng = GlobalColumns(masks, lo, hi, m_b)
                if hi == lo:
                    rng.skip(net.layer_dims, run.rates, net.dtype)
            steps(batch, hi - lo, epoch_lr, rng)
    try:
        return epoch_lr, steps.state.read()  # global totals under MPI
    except DivergenceError as exc:
        raise DivergenceError(
            f"training diverged in epoch {epoch + 1} (mini-batch {exc.step}) at learning rate {epoch_lr:g}: "
            f"{exc}; the parameters hold the last finite step"
        ) from exc


def _derived_seed(seed: int, epoch: int) -> int:
    """The dropout generator's seed for `epoch`: independent of the shuffle stream, same on every backend."""
    return int(np.random.SeedSequence([seed, epoch, 1]).generate_state(1)[0])


def _epoch_lr(lr: float, lr_decay, epoch: int) -> float:
    if lr_decay is None:
        return lr
    if callable(lr_decay):
        return check_positive(lr_decay(lr, epoch), f"lr_decay({lr}, {epoch})")
    return lr / (1.0 + lr_decay * epoch)  # the course's 1/(1 + decay·epoch)


def _callbacks_ask_to_stop(callbacks, net, epoch: int, logs: dict) -> bool:
    """Call every callback (each sees every epoch, whatever the others answer); whether any asked to stop."""
    answers = [callback(net, epoch, logs) for callback in callbacks]
    return any(answers)


# ---------------------------------------------------------------------------------------------- record
def _record(history: History, net, val: Batch | Source | None, cost: float, accuracy: float, lr: float) -> dict:
    """Append the epoch's numbers (and validation's scores) to `history`; returns them as the callbacks' logs."""
    history.cost.append(cost)
    history.accuracy.append(accuracy)
    history.lr.append(lr)
    logs = {"cost": cost, "accuracy": history.accuracy[-1], "lr": lr}
    if val is not None:
        scores = _validation_scores(net, val)
        history.val_cost.append(scores["cost"])
        history.val_accuracy.append(scores["accuracy"])
        logs.update(val_cost=scores["cost"], val_accuracy=scores["accuracy"])
    return logs


def _validation_scores(net, val: Batch | Source) -> dict:
    """{'cost', 'accuracy'} of `net` on validation data: placed arrays, or a source scored chunk by chunk."""
    return evaluate_source(net, val) if isinstance(val, Source) else net.evaluate(val, None)


# ---------------------------------------------------------------------------------------------- checkpoint
class _Checkpoints:
    """Writes the run's checkpoint every `checkpoint_every` epochs, at the last epoch and when training stops
    (by rank 0 alone under MPI), with what a resume compares: the settings, the seed and the fingerprint."""

    def __init__(self, run: _Run, settings: dict, fingerprint, extras, feature_names, writes: bool):
        self.run, self.settings, self.fingerprint, self.writes = run, settings, fingerprint, writes
        self.extras, self.feature_names = extras, feature_names

    def after_epoch(self, net, history: History, done: int, stop: bool) -> None:
        """Save after epoch `done` (counted from 1) when one is due."""
        run = self.run
        due = done % run.checkpoint_every == 0 or done == run.epochs or stop
        if run.checkpoint is None or not self.writes or not due:
            return
        record = {
            "epoch": done,
            "seed": run.seed,
            "settings": self.settings,
            "fingerprint": self.fingerprint,
            "history": history.as_dict(),
        }
        checkpoint_file.save(
            net,
            run.checkpoint,
            optimizer=run.optimizer,
            training=record,
            extras=self.extras,
            feature_names=self.feature_names,
        )


# ---------------------------------------------------------------------------------------------- resume
def _resume(
    net, optimizer: Optimizer, path, settings: dict, seed: int, fingerprint: dict, validated: bool
) -> tuple[History, int]:
    """Load parameters, optimizer state and history from the checkpoint at `path`; returns (history, epoch).

    validated: whether this run scores validation data; epochs of the checkpoint's history that have no
    validation scores (a run whose caller scored them outside `fit`) get NaN, so each list keeps an entry per epoch.

    Refused, naming the difference, when the checkpoint's network, settings or data fingerprint are not
    this run's. A checkpoint written before fingerprints were recorded is checked on network and settings only.
    """
    saved = checkpoint_file.load_checkpoint(path, backend=net.backend, network_class=type(net))
    if saved.kind != "checkpoint":
        raise ValueError(
            f"cannot resume from {path}: it is a model file (written by --save or Network.save), "
            "not a checkpoint; a run resumes from the file --checkpoint (fit's checkpoint=) wrote"
        )
    mine = (net.layer_dims, net.activations, net.output, net.dtype.name)
    theirs = (saved.network.layer_dims, saved.network.activations, saved.network.output, saved.network.dtype.name)
    if mine != theirs:
        raise ValueError(f"cannot resume from {path}: it holds a network {theirs}, this one is {mine}")
    recorded = saved.training.get("fingerprint")  # first: other data is why sizes in the settings differ too
    changed = _changes(recorded, fingerprint) if recorded is not None else []
    if changed:
        raise ValueError(
            f"cannot resume from {path}: the run was trained on other data or prepared it otherwise "
            f"({'; '.join(changed)})"
        )
    changed = _changes(dict(saved.training["settings"], seed=saved.training["seed"]), dict(settings, seed=seed))
    if changed:
        raise ValueError(f"cannot resume from {path}: the run used other settings ({'; '.join(changed)})")
    net.set_parameters(saved.network.get_parameters())
    optimizer.load_state_dict(net, saved.optimizer.state_dict(saved.network))
    start = int(saved.training["epoch"])
    history = History(**dict(saved.training["history"], resumed_from=start))
    if validated:
        for scores in (history.val_cost, history.val_accuracy):
            scores[:0] = [float("nan")] * (len(history) - len(scores))
    return history, start


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


def _validation_fingerprint(net, val: Batch | Source) -> str:
    return source_fingerprint(val) if isinstance(val, Source) else _batch_fingerprint(net, val)


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
