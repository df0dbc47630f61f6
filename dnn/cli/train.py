"""`python -m dnn train`: load or open the data, prepare it, train with `fit`, report, save and plot."""

from __future__ import annotations

import contextlib
import time
from typing import NamedTuple

import numpy as np

from .. import checkpoint, data, distributed, sources
from ..errors import DataError
from ..labels import label_values
from ..network import Network
from ..optimizers import make_optimizer
from ..training import data_fingerprint, fit, source_fingerprint
from .features import columns_by_name
from .options import CHECKPOINT_EVERY, SPLIT_SEED, TEST_FRACTION, checked_train_options, source_id
from ..metrics_log import MetricsLog
from .progress import Progress, plot_costs


def run(args, comm=None) -> int:
    """Train as the options say; under MPI (`comm`) data-parallel, with rank 0 alone printing and writing.

    Every rank checks the options and loads the data; a mistake found by any rank fails them all together
    (`distributed.checked_together`), so it is reported once.
    """
    hidden, rates = distributed.checked_together(comm, checked_train_options, args)
    if sources.is_source(args.data):
        return _train_from_source(args, hidden, rates, comm)
    data_set = distributed.checked_together(comm, _prepared_data, args)
    train, (X_train, Y_train, X_test, Y_test) = data_set.train, data_set.arrays
    n_classes = max(train.n_classes, int(Y_test.max()) + 1)
    n_out = 1 if n_classes == 2 else n_classes
    net = Network(
        [X_train.shape[0], *hidden, n_out],
        activations=args.activation,
        dtype=args.dtype,
        backend=args.backend,
        seed=args.seed,
    )
    optimizer = make_optimizer(args.optimizer)
    cli = {
        "split": data_set.split,
        "label_column": train.label_name,
        "classes": list(train.classes) if train.classes else None,
    }
    extras = data_set.extras
    history = _fit(
        args,
        net,
        optimizer,
        X_train,
        Y_train,
        rates,
        comm,
        validation=(X_test, Y_test),
        described=f"{X_train.shape[1]} training and {X_test.shape[1]} test examples from {args.data}",
        cli=cli,
        extras=extras,
        feature_names=train.feature_names,
        hashes=data_set.hashes,
    )
    if not is_root(comm):  # every rank holds the same model; rank 0 reports and writes it
        return 0
    train_acc = net.evaluate(X_train, Y_train)["accuracy"]
    test_acc = net.evaluate(X_test, Y_test)["accuracy"]
    return _report_and_save(args, net, optimizer, history, (train_acc, test_acc), extras, train.feature_names)


class _PreparedData(NamedTuple):
    """`train`'s data in memory, ready to fit: what was loaded, the (X_train, Y_train, X_test, Y_test) arrays as
    the network sees them, the split made (None with --test), the standardisation (extras) and the fingerprints."""

    train: data.Dataset
    arrays: tuple
    split: dict | None
    extras: dict
    hashes: list


def _prepared_data(args) -> _PreparedData:
    """Load --data (and --test), split off the test examples unless --test names them, and standardise with the
    training examples' statistics (unless --no-standardize)."""
    train = data.load(args.data, label_column=args.label_column)
    hashes = [data_fingerprint(train.X, train.Y), None]  # of the data as loaded: before any split or standardisation
    if args.test:
        test = data.load(
            args.test, label_column=args.label_column, classes=train.classes
        )  # labels mapped as training's
        hashes[1], split = data_fingerprint(test.X, test.Y), None
        X_test = columns_by_name(
            test.X, test.feature_names, train.feature_names, args.test, f"the training data {args.data}"
        )
        X_train, Y_train, Y_test = train.X, train.Y, test.Y
    else:
        split = {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION}
        X_train, Y_train, X_test, Y_test = data.train_test_split(train.X, train.Y, TEST_FRACTION, SPLIT_SEED)
    extras = {}
    if args.standardize:
        scaler = data.Standardizer.fit(X_train)  # fitted on the training split only
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        extras.update(input_mean=scaler.mean, input_std=scaler.std)
    return _PreparedData(train, (X_train, Y_train, X_test, Y_test), split, extras, hashes)


def is_root(comm) -> bool:
    """Whether this process prints and writes: the only one, or rank 0 of an MPI run."""
    return comm is None or comm.Get_rank() == 0


def _fit(
    args, net, optimizer, X, Y, rates, comm, described: str, cli: dict, extras: dict, feature_names, hashes, validation
):
    """Say what is trained on what (`described`; rank 0, unless --quiet), then `fit` with the command line's
    options, scoring `validation` (the test examples: arrays or a source) after every epoch, with a progress
    bar; returns the History.

    cli: what `evaluate`/`predict` need to prepare data as training did (split, label_column, classes); it is
    completed (data, standardize) and put in `extras`, which every checkpoint holds with `feature_names`, as
    the model file does: a checkpoint prepares data as the model does. hashes: (data, test data or None) as
    loaded; with the preparation they are the run's fingerprint, which a resume and the MPI ranks must share.
    """
    extras["cli"] = dict(cli, data=source_id(args.data), standardize=args.standardize)
    preparation = {
        key: extras["cli"][key] for key in ("standardize", "split", "label_column")
    }  # not the path: a moved file is the same data
    fingerprint = {"data hash": hashes[0], "test data hash": hashes[1], "preprocessing": preparation}
    if not args.quiet and is_root(comm):
        where = "" if comm is None else f" across {comm.Get_size()} MPI processes"
        print(
            f"training {net.layer_dims} ({args.activation}, {net.output} output) on {net.backend.name} {net.dtype.name}"
            f"{where}: {described}"
        )
    _compile_numba_kernels(
        args,
        net,
        rates,
        examples=args.batch_size or getattr(X, "m", None) or X.shape[1],
        quiet=args.quiet or not is_root(comm),
    )
    progress = Progress(
        args.epochs, quiet=args.quiet or not is_root(comm), checkpoint=args.checkpoint if args.resume else None
    )
    callbacks = [progress]
    if args.log and is_root(comm):
        callbacks.append(MetricsLog(args.log, resume=args.resume))
    try:
        return fit(
            net,
            X,
            Y,
            epochs=args.epochs,
            batch_size=args.batch_size or None,
            optimizer=optimizer,
            lr=args.lr,
            l2=args.l2,
            dropout=rates,
            lr_decay=args.lr_decay,
            seed=args.seed,
            validation=validation,
            callbacks=callbacks,
            checkpoint=args.checkpoint,
            resume=args.resume,
            checkpoint_every=CHECKPOINT_EVERY if args.checkpoint_every is None else args.checkpoint_every,
            comm=comm,
            fingerprint=fingerprint,
            extras=extras,
            feature_names=feature_names,
        )
    finally:
        for callback in callbacks:
            callback.close()


def _compile_numba_kernels(args, net, rates, examples: int, quiet: bool) -> None:
    """On the numba backend, compile the kernels this run calls that numba's cache lacks, and say so and how long
    it took (a first run's wait is otherwise silent). The whole SGD step is left to `fit`'s helper process."""
    if net.backend.name != "numba":
        return
    from ..backends.numba_backend import kernel_cache_status  # numba is running already: its backend is in use

    configuration = dict(
        optimizer=args.optimizer, dropout=bool(rates), examples=examples, fit_only=not args.l2, whole_step=False
    )
    cache = kernel_cache_status(net, **configuration)
    if cache.warm:
        return
    if not quiet:
        print(
            f"numba: compiling {cache.total - cache.cached} kernels for this network (once: later runs load them "
            f"from {cache.directory}) ...",
            flush=True,
        )
    start = time.perf_counter()
    net.backend.warmup(net, **configuration)
    if not quiet:
        print(f"numba: compiled in {time.perf_counter() - start:.1f} s", flush=True)


def _report_and_save(args, net, optimizer, history, accuracies, extras: dict, feature_names) -> int:
    """Print the final (train, test) accuracies, then write the model (--save, with `extras` and `feature_names`
    as `_fit` completed them) and the cost curve (--plot) if asked."""
    if history.resumed_from == len(history) and not args.quiet:  # no epoch was left to train, so Progress said nothing
        print(f"resumed from {args.checkpoint} at epoch {history.resumed_from} of {args.epochs}: nothing left to train")
    print(f"train accuracy: {accuracies[0]:.4f}\ntest accuracy:  {accuracies[1]:.4f}")
    if args.save:
        checkpoint.save(net, args.save, optimizer=optimizer, extras=extras, feature_names=feature_names)
        if not args.quiet:
            print(f"saved the model to {args.save}")
    if args.plot:
        plot_costs(history, args.plot)
        if not args.quiet:
            print(f"wrote the cost curve to {args.plot}")
    return 0


def _train_from_source(args, hidden, rates, comm=None) -> int:
    """`train --data SOURCE`: train from an out-of-core data set (`dnn.sources`), never holding it in memory.
    Under MPI (`comm`) each rank reads only its rows of each batch, and rank 0 alone prints and writes.

    Without --test, the test rows are the held-out fraction `train` holds out of data in memory (the same
    row numbers), taken as views of the file in file order. One streaming pass over the training rows
    checks them and gives the standardisation statistics; the test rows get a checking pass of their own.
    `fit` scores the test rows after every epoch (they are its validation source) into the History, and both
    accuracies at the end are streamed too.
    """
    with sources.open_source(args.data) as source, contextlib.ExitStack() as opened:
        if args.test:
            train_rows, test_rows, split = source, opened.enter_context(_test_source(args, source)), None
            hashes = [source_fingerprint(source), source_fingerprint(test_rows)]
        else:
            hashes = [source_fingerprint(source), None]
            train_index, test_index = data.split_indices(source.m, TEST_FRACTION, SPLIT_SEED)
            train_rows, test_rows = (
                sources.Rows(source, np.sort(train_index)),
                sources.Rows(source, np.sort(test_index)),
            )
            split = {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION}
        summary = sources.scan(train_rows)  # the one pass over the training rows: checks and statistics
        n_classes = max(
            summary.n_classes, sources.scan(test_rows, classes=summary.classes).n_classes
        )  # mapped as training's
        extras = {}
        if args.standardize:
            scaler = summary.standardizer  # from the training rows only
            train_rows, test_rows = sources.Standardized(train_rows, scaler), sources.Standardized(test_rows, scaler)
            extras.update(input_mean=scaler.mean, input_std=scaler.std)
        net = Network(
            [source.n_features, *hidden, 1 if n_classes == 2 else n_classes],
            activations=args.activation,
            dtype=args.dtype,
            backend=args.backend,
            seed=args.seed,
        )
        optimizer = make_optimizer(args.optimizer)
        cli = {"split": split, "label_column": source.label_name, "classes": list(summary.classes) or None}
        history = _fit(
            args,
            net,
            optimizer,
            train_rows,
            None,
            rates,
            comm,
            validation=test_rows,
            described=f"{train_rows.m} training and {test_rows.m} test examples streamed from {args.data}",
            cli=cli,
            extras=extras,
            feature_names=source.feature_names,
            hashes=hashes,
        )
        if not is_root(comm):  # every rank holds the same model; rank 0 reports and writes it
            return 0
        # the last epoch's test accuracy is the final network's (a --resume with no epoch left streams it here)
        trained = len(history) > (history.resumed_from or 0)
        test_accuracy = history.val_accuracy[-1] if trained else sources.evaluate(net, test_rows)["accuracy"]
        accuracies = sources.evaluate(net, train_rows)["accuracy"], test_accuracy
    return _report_and_save(args, net, optimizer, history, accuracies, extras, source.feature_names)


def _test_source(args, train: sources.Source) -> sources.Source:
    """--test beside a training source: another source, or a file `dnn.data.load` reads (its columns matched by name)."""
    if sources.is_source(args.test):
        test = sources.open_source(args.test)
        named = test.feature_names and train.feature_names
        problem = (
            f"are not those of {args.data}, in the same order"
            if named and test.feature_names != train.feature_names
            else None
        )
    else:
        loaded = data.load(args.test, label_column=args.label_column)
        X = columns_by_name(
            loaded.X, loaded.feature_names, train.feature_names, args.test, f"the training data {args.data}"
        )
        y = label_values(loaded.Y[0], loaded.classes)  # (m,) the file's own labels: the training rows' classes map them
        test, problem = sources.InMemory(X.T, y, args.test, train.feature_names), None  # X.T: (m, n_x) rows
    if test.n_features != train.n_features:
        problem = f"are {test.n_features} a row, those of {args.data} {train.n_features}"
    if problem:
        test.close()
        raise DataError(f"the features of {args.test} {problem}")
    return test
