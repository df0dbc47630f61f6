"""`python -m dnn train | evaluate | predict | backends | bench`: the command line.

A user's mistake (a missing file, a bad option value, a model that does not fit the data) prints one line,
``error: ...``, on stderr and exits with status 1 (2 for a malformed command line); no traceback. Every
option and output path is checked before data is loaded and before training or benchmarking starts.

Under an MPI launcher (``mpiexec -n 2 python -m dnn train ...``, srun) `train` trains one model data-parallel
(`dnn.distributed`): rank 0 alone prints, writes files and plots, and a rank that fails calls ``Abort`` after
its ``error:`` line, so the other ranks never wait for it in a collective.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import NamedTuple

import numpy as np

from . import __version__, checkpoint, convert, data, distributed, sources
from .backends import available_backends, get_backend
from .backends.base import ACTIVATIONS, check_activation
from .errors import DataError, DnnError, ModelFileError
from .labels import label_values
from .network import Network
from .optimizers import OPTIMIZERS, make_optimizer
from .outputs import check_output_path, check_plot_path, replaced_atomically, save_figure
from .training import data_fingerprint, fit, source_fingerprint
from .validation import FLOAT_DTYPES, check_count, check_dropout_rates, check_non_negative, check_positive

#: Held-out fraction and split seed when `train` gets no --test file (fixed, so evaluate can find the split).
TEST_FRACTION = 0.2
SPLIT_SEED = 0
#: Epochs between checkpoints when --checkpoint is given without --checkpoint-every.
CHECKPOINT_EVERY = 10
DEFAULT_LAYERS = "20,7,5"
#: `python -m dnn train` with no options: breast_cancer's 30 features, the default hidden layers, one sigmoid unit.
QUICK_START_DIMS = [30, *map(int, DEFAULT_LAYERS.split(",")), 1]
#: Extensions of data files, which belong after --data, not in the MODEL position.
DATA_EXTENSIONS = (".csv", ".h5", ".hdf5")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a malformed command line in one line, and shows each option's default in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"error: {_one_line(message)} (see '{self.prog} --help')\n")


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help when it has a default worth showing and does not state it."""

    def _get_help_string(self, action):
        text = action.help or ""
        takes_value = action.option_strings and action.nargs != 0  # not a flag: its "default" would read as True/False
        shown = takes_value and action.default not in (None, argparse.SUPPRESS)
        if shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _one_line(message: str) -> str:
    """`message` with its line breaks (including those a user's argument may carry) turned into spaces."""
    return " ".join(message.splitlines())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dnn", description="Train, evaluate and use fully connected networks.")
    parser.add_argument("--version", action="version", version=f"dnn-engine {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser("train", help="train a network (default: breast_cancer, standardised, fixed-seed split)")
    _data_options(train, default="breast_cancer")
    train.add_argument("--test", metavar="PATH", help="a separate test file or data directory (default: hold out 20%% of --data, fixed seed)")
    train.add_argument("--layers", default=DEFAULT_LAYERS, help=f"hidden layer sizes, comma separated; '' for none (default: {DEFAULT_LAYERS})")
    train.add_argument("--activation", default="relu", help=f"hidden activation: {', '.join(ACTIVATIONS)}")
    train.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="the update rule")
    train.add_argument("--batch-size", type=int, default=64, help="examples per mini-batch; 0 for the full batch")
    train.add_argument("--epochs", type=int, default=100, help="passes over the training data")
    train.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.001 for adam, 0.0075 otherwise)")
    train.add_argument("--lr-decay", type=float, default=None, help="decay rate r: lr / (1 + r·epoch)")
    train.add_argument("--l2", type=float, default=0.0, help="L2 regularisation strength λ; 0 for none")
    train.add_argument("--dropout", default=None, help="drop rate of hidden layers: one value, or one per layer comma separated")
    train.add_argument("--dtype", default="float32", choices=FLOAT_DTYPES, help="the network's floating-point type")
    train.add_argument("--seed", type=int, default=1, help="seed of initialisation, shuffling and dropout")
    train.add_argument("--no-standardize", dest="standardize", action="store_false", help="keep features as loaded")
    train.add_argument("--save", metavar="MODEL.npz", help="write the trained model here")
    train.add_argument("--checkpoint", metavar="PATH", help="save training state here every --checkpoint-every epochs")
    train.add_argument("--checkpoint-every", type=int, default=None, help=f"epochs between checkpoints (default: {CHECKPOINT_EVERY})")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint")
    train.add_argument("--plot", metavar="PNG", help="write the cost curve (train and test) to this image")
    train.add_argument("--quiet", action="store_true", help="print only the final accuracies")

    evaluate = commands.add_parser("evaluate", help="report a saved model's (or checkpoint's) cost and accuracy on data")
    evaluate.add_argument("model")
    _data_options(evaluate)
    evaluate.add_argument("--split", choices=("all", "test"), default=None,
                          help="score every row of --data, or the test rows held out when the model was trained on it "
                               "(default: test for the file the model was trained on, all for any other)")
    evaluate.add_argument("--id-column", metavar="NAME", help="a CSV column that identifies the rows: left out of the features")

    predict = commands.add_parser("predict", help="predict classes for data with a saved model (or checkpoint)")
    predict.add_argument("model")
    _data_options(predict)
    predict.add_argument("--out", metavar="CSV", help="write the predictions here (default: standard output)")
    predict.add_argument("--split", choices=("all", "test"), default="all",
                         help="predict every row of --data, or only the test rows held out when the model was trained on it")
    predict.add_argument("--id-column", metavar="NAME",
                         help="a CSV column that identifies each row: written as its prediction's id, not used as a feature "
                              "(default: the row number, counted from 0)")

    commands.add_parser("backends", help="list the backends and whether each can run here")
    warmup = commands.add_parser("warmup", help="compile and cache the numba kernels a network needs, kernel by kernel")
    warmup.add_argument("--features", type=int, default=QUICK_START_DIMS[0], help="input features n_x (the quick-start data has 30)")
    warmup.add_argument("--layers", default=DEFAULT_LAYERS, help="hidden layer sizes, comma separated")
    warmup.add_argument("--outputs", type=int, default=1, help="output units: 1 (sigmoid) or the number of classes (softmax)")
    warmup.add_argument("--activation", default="relu", help=f"hidden activation: {', '.join(ACTIVATIONS)}")
    warmup.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="the update rule")
    warmup.add_argument("--dtype", default="float32", choices=FLOAT_DTYPES, help="the network's floating-point type")
    warmup.add_argument("--batch-size", type=int, default=64, help="examples per mini-batch (decides which kernels run in parallel)")
    convert.add_parser(commands)
    commands.add_parser("bench", help="run the benchmarks (see 'python -m dnn bench --help')", add_help=False)
    return parser


def _data_options(parser, default=None) -> None:
    parser.add_argument("--data", default=default, required=default is None,
                        help=f"{', '.join(data.BUILTIN)}, a .h5, .npz or .csv file, or data on disk read in batches: a directory of "
                             "X.npy/Y.npy or shards, an X.npy, an .h5 with X and Y datasets" + (f" (default: {default})" if default else ""))
    parser.add_argument("--label-column", metavar="NAME", help="the label column of a CSV file (default: the last); CSV only")
    parser.add_argument("--backend", default=None, help="numpy, numba or cupy (default: DNN_BACKEND, else numpy)")


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    comm = None  # the MPI communicator of a data-parallel `train`, else None
    try:
        bench = argv[:1] == ["bench"]
        if bench:
            from . import benchmark  # written separately; imported only for this command

            parser, argv = _Parser(prog="python -m dnn bench", description="Run the benchmarks."), argv[1:]
            benchmark.configure_parser(parser)
        else:
            parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, or a malformed command line already reported in one line
            return exc.code
        if bench:
            return benchmark.run(args)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "train":
            comm = distributed.launch_world()  # before any backend starts its threads
            return _train(args, comm)
        commands = {"evaluate": _evaluate, "predict": _predict, "backends": _backends, "warmup": _warmup, "convert": convert.run}
        return commands[args.command](args)
    except BrokenPipeError:  # the reader went away (`python -m dnn predict ... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush at exit is silent too
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe ended
    except (DnnError, ValueError, OSError, MemoryError) as exc:  # OSError covers FileNotFoundError and unwritable outputs
        _report_error(comm, exc, f"not enough memory: {exc}" if isinstance(exc, MemoryError) else str(exc))
        return 1
    except KeyboardInterrupt as exc:
        _report_error(comm, exc, "interrupted")
        return 130
    except Exception as exc:  # a bug: under MPI the other ranks must not wait for this one
        if comm is not None:
            distributed.abort(comm, f"{type(exc).__name__}: {exc}")
        raise


def _report_error(comm, exc: BaseException, message: str) -> None:
    """One `error:` line for a failure. Under MPI, an error every rank raised together (COLLECTIVE_ERRORS: found
    by a collective) is printed by rank 0 alone; one this rank may have met alone is printed by it, and every
    rank is aborted (`distributed.abort`), so none waits for it."""
    if comm is None:
        print(f"error: {_one_line(message)}", file=sys.stderr)
    elif isinstance(exc, distributed.COLLECTIVE_ERRORS):
        if _is_root(comm):
            print(f"error: {_one_line(message)}", file=sys.stderr)
    else:
        distributed.abort(comm, message)


# ---------------------------------------------------------------------------------------------- train
def _train(args, comm=None) -> int:
    """Train as the options say; under MPI (`comm`) data-parallel, with rank 0 alone printing and writing.

    Every rank checks the options and loads the data; a mistake found by any rank fails them all together
    (`distributed.checked_together`), so it is reported once.
    """
    hidden, rates = distributed.checked_together(comm, _checked_train_options, args)
    if sources.is_source(args.data):
        return _train_from_source(args, hidden, rates, comm)
    data_set = distributed.checked_together(comm, _prepared_data, args)
    train, (X_train, Y_train, X_test, Y_test) = data_set.train, data_set.arrays
    n_classes = max(train.n_classes, int(Y_test.max()) + 1)
    n_out = 1 if n_classes == 2 else n_classes
    net = Network([X_train.shape[0], *hidden, n_out], activations=args.activation, dtype=args.dtype, backend=args.backend, seed=args.seed)
    optimizer = make_optimizer(args.optimizer)
    cli = {"split": data_set.split, "label_column": train.label_name, "classes": list(train.classes) if train.classes else None}
    extras = data_set.extras
    history = _fit(args, net, optimizer, X_train, Y_train, rates, comm, validation=(X_test, Y_test),
                   described=f"{X_train.shape[1]} training and {X_test.shape[1]} test examples from {args.data}",
                   cli=cli, extras=extras, feature_names=train.feature_names, hashes=data_set.hashes)
    if not _is_root(comm):  # every rank holds the same model; rank 0 reports and writes it
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
        test = data.load(args.test, label_column=args.label_column, classes=train.classes)  # labels mapped as training's
        hashes[1], split = data_fingerprint(test.X, test.Y), None
        X_test = _columns_by_name(test.X, test.feature_names, train.feature_names, args.test, f"the training data {args.data}")
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


def _is_root(comm) -> bool:
    """Whether this process prints and writes: the only one, or rank 0 of an MPI run."""
    return comm is None or comm.Get_rank() == 0


def _fit(args, net, optimizer, X, Y, rates, comm, described: str, cli: dict, extras: dict, feature_names, hashes,
         callbacks=(), validation=None):
    """Say what is trained on what (`described`; rank 0, unless --quiet), then `fit` with the command line's
    options and a progress bar after the other callbacks; returns the History.

    cli: what `evaluate`/`predict` need to prepare data as training did (split, label_column, classes); it is
    completed (data, standardize) and put in `extras`, which every checkpoint holds with `feature_names`, as
    the model file does: a checkpoint prepares data as the model does. hashes: (data, test data or None) as
    loaded; with the preparation they are the run's fingerprint, which a resume and the MPI ranks must share.
    """
    extras["cli"] = dict(cli, data=_source_id(args.data), standardize=args.standardize)
    preparation = {key: extras["cli"][key] for key in ("standardize", "split", "label_column")}  # not the path: a moved file is the same data
    fingerprint = {"data hash": hashes[0], "test data hash": hashes[1], "preprocessing": preparation}
    if not args.quiet and _is_root(comm):
        where = "" if comm is None else f" across {comm.Get_size()} MPI processes"
        print(f"training {net.layer_dims} ({args.activation}, {net.output} output) on {net.backend.name} {net.dtype.name}"
              f"{where}: {described}")
    _compile_numba_kernels(args, net, rates, examples=args.batch_size or getattr(X, "m", None) or X.shape[1],
                           quiet=args.quiet or not _is_root(comm))
    progress = _Progress(args.epochs, quiet=args.quiet or not _is_root(comm), checkpoint=args.checkpoint if args.resume else None)
    try:
        return fit(
            net, X, Y, epochs=args.epochs, batch_size=args.batch_size or None, optimizer=optimizer, lr=args.lr,
            l2=args.l2, dropout=rates, lr_decay=args.lr_decay, seed=args.seed, validation=validation,
            callbacks=[*callbacks, progress], checkpoint=args.checkpoint, resume=args.resume,
            checkpoint_every=CHECKPOINT_EVERY if args.checkpoint_every is None else args.checkpoint_every, comm=comm,
            fingerprint=fingerprint, extras=extras, feature_names=feature_names,
        )
    finally:
        progress.close()


def _compile_numba_kernels(args, net, rates, examples: int, quiet: bool) -> None:
    """On the numba backend, compile the kernels this run calls that numba's cache lacks, and say so and how long
    it took (a first run's wait is otherwise silent). The whole SGD step is left to `fit`'s helper process."""
    if net.backend.name != "numba":
        return
    from .backends.numba_backend import kernel_cache_status  # numba is running already: its backend is in use

    configuration = dict(optimizer=args.optimizer, dropout=bool(rates), examples=examples, fit_only=not args.l2,
                         whole_step=False)
    cache = kernel_cache_status(net, **configuration)
    if cache.warm:
        return
    if not quiet:
        print(f"numba: compiling {cache.total - cache.cached} kernels for this network (once: later runs load them "
              f"from {cache.directory}) ...", flush=True)
    start = time.perf_counter()
    net.backend.warmup(net, **configuration)
    if not quiet:
        print(f"numba: compiled in {time.perf_counter() - start:.1f} s", flush=True)


def _report_and_save(args, net, optimizer, history, accuracies, extras: dict, feature_names) -> int:
    """Print the final (train, test) accuracies, then write the model (--save, with `extras` and `feature_names`
    as `_fit` completed them) and the cost curve (--plot) if asked."""
    if history.resumed_from == len(history) and not args.quiet:  # no epoch was left to train, so _Progress said nothing
        print(f"resumed from {args.checkpoint} at epoch {history.resumed_from} of {args.epochs}: nothing left to train")
    print(f"train accuracy: {accuracies[0]:.4f}\ntest accuracy:  {accuracies[1]:.4f}")
    if args.save:
        checkpoint.save(net, args.save, optimizer=optimizer, extras=extras, feature_names=feature_names)
        if not args.quiet:
            print(f"saved the model to {args.save}")
    if args.plot:
        _plot(history, args.plot)
        if not args.quiet:
            print(f"wrote the cost curve to {args.plot}")
    return 0


def _train_from_source(args, hidden, rates, comm=None) -> int:
    """`train --data SOURCE`: train from an out-of-core data set (`dnn.sources`), never holding it in memory.
    Under MPI (`comm`) each rank reads only its rows of each batch, and rank 0 alone prints and writes.

    Without --test, the test rows are the held-out fraction `train` holds out of data in memory (the same
    row numbers), taken as views of the file in file order. One streaming pass over the training rows
    checks them and gives the standardisation statistics; the test rows get a checking pass of their own;
    the cost and accuracy on the test rows after every epoch, and both accuracies at the end, are streamed.
    """
    with sources.open_source(args.data) as source, contextlib.ExitStack() as opened:
        if args.test:
            train_rows, test_rows, split = source, opened.enter_context(_test_source(args, source)), None
            hashes = [source_fingerprint(source), source_fingerprint(test_rows)]
        else:
            hashes = [source_fingerprint(source), None]
            train_index, test_index = data.split_indices(source.m, TEST_FRACTION, SPLIT_SEED)
            train_rows, test_rows = sources.Rows(source, np.sort(train_index)), sources.Rows(source, np.sort(test_index))
            split = {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION}
        summary = sources.scan(train_rows)  # the one pass over the training rows: checks and statistics
        n_classes = max(summary.n_classes, sources.scan(test_rows, classes=summary.classes).n_classes)  # mapped as training's
        extras = {}
        if args.standardize:
            scaler = summary.standardizer  # from the training rows only
            train_rows, test_rows = sources.Standardized(train_rows, scaler), sources.Standardized(test_rows, scaler)
            extras.update(input_mean=scaler.mean, input_std=scaler.std)
        net = Network([source.n_features, *hidden, 1 if n_classes == 2 else n_classes], activations=args.activation,
                      dtype=args.dtype, backend=args.backend, seed=args.seed)
        optimizer = make_optimizer(args.optimizer)
        scores = _StreamedTestScores(test_rows)
        cli = {"split": split, "label_column": source.label_name, "classes": list(summary.classes) or None}
        history = _fit(args, net, optimizer, train_rows, None, rates, comm, callbacks=[scores],
                       described=f"{train_rows.m} training and {test_rows.m} test examples streamed from {args.data}",
                       cli=cli, extras=extras, feature_names=source.feature_names, hashes=hashes)
        if not _is_root(comm):  # every rank holds the same model; rank 0 reports and writes it
            return 0
        resumed = [float("nan")] * (len(history) - len(scores.cost))  # epochs before a --resume were scored then
        history.val_cost, history.val_accuracy = resumed + scores.cost, resumed + scores.accuracy
        # the last epoch's test accuracy is the final network's (a --resume with no epoch left streams it here)
        test_accuracy = scores.accuracy[-1] if scores.accuracy else sources.evaluate(net, test_rows)["accuracy"]
        accuracies = sources.evaluate(net, train_rows)["accuracy"], test_accuracy
    return _report_and_save(args, net, optimizer, history, accuracies, extras, source.feature_names)


def _test_source(args, train: sources.Source) -> sources.Source:
    """--test beside a training source: another source, or a file `dnn.data.load` reads (its columns matched by name)."""
    if sources.is_source(args.test):
        test = sources.open_source(args.test)
        named = test.feature_names and train.feature_names
        problem = f"are not those of {args.data}, in the same order" if named and test.feature_names != train.feature_names else None
    else:
        loaded = data.load(args.test, label_column=args.label_column)
        X = _columns_by_name(loaded.X, loaded.feature_names, train.feature_names, args.test, f"the training data {args.data}")
        y = label_values(loaded.Y[0], loaded.classes)  # (m,) the file's own labels: the training rows' classes map them
        test, problem = sources.InMemory(X.T, y, args.test, train.feature_names), None  # X.T: (m, n_x) rows
    if test.n_features != train.n_features:
        problem = f"are {test.n_features} a row, those of {args.data} {train.n_features}"
    if problem:
        test.close()
        raise DataError(f"the features of {args.test} {problem}")
    return test


class _StreamedTestScores:
    """A `fit` callback: the cost and accuracy on a test source after every epoch, streamed, put in the epoch's logs."""

    def __init__(self, test: sources.Source):
        self.test, self.cost, self.accuracy = test, [], []

    def __call__(self, net, epoch: int, logs: dict) -> bool:
        scores = sources.evaluate(net, self.test)
        self.cost.append(scores["cost"])
        self.accuracy.append(scores["accuracy"])
        logs.update(val_cost=scores["cost"], val_accuracy=scores["accuracy"])
        return False


def _checked_train_options(args) -> tuple[list[int], list | None]:
    """Check every option of `train` before anything is loaded; returns (hidden layer sizes, dropout rates)."""
    hidden = _int_list(args.layers, "--layers")
    check_activation(args.activation)
    get_backend(args.backend)  # an unknown or unavailable backend is named before the data is loaded
    check_count(args.epochs, "--epochs", 0)
    check_count(args.batch_size, "--batch-size", 0)
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed must be an integer from 0 to 2**32 - 1, got {args.seed}")
    for option, value, check in (("--lr", args.lr, check_positive), ("--lr-decay", args.lr_decay, check_non_negative),
                                 ("--l2", args.l2, check_non_negative)):
        if value is not None:
            check(value, option)
    rates = check_dropout_rates(_dropout(args.dropout), len(hidden))
    if args.checkpoint is None and (args.resume or args.checkpoint_every is not None):
        raise ValueError(f"{'--resume' if args.resume else '--checkpoint-every'} needs --checkpoint PATH")
    if args.resume and not os.path.exists(args.checkpoint):  # not a silent fresh start: the user meant to continue a run
        raise ValueError(f"--resume: the checkpoint {args.checkpoint} does not exist; leave out --resume to start a run that writes it")
    if args.checkpoint_every is not None:
        check_count(args.checkpoint_every, "--checkpoint-every", 1)
    _check_label_column(args.label_column, args.data, args.test)
    for option in ("--save", "--checkpoint"):
        if getattr(args, option[2:]):
            check_output_path(getattr(args, option[2:]), option)
    if args.save and args.checkpoint and _same_file(args.save, args.checkpoint):
        raise ValueError(f"--save and --checkpoint name the same file {args.save}; the saved model would replace the training state")
    if args.plot:
        check_plot_path(args.plot, "--plot")
    _check_outputs_spare_inputs({"--save": args.save, "--checkpoint": args.checkpoint, "--plot": args.plot},
                                {"--data": args.data, "--test": args.test})
    for option, source in (("--data", args.data), ("--test", args.test)):
        if source and source not in data.BUILTIN and not os.path.exists(source):
            raise DataError(f"{'data file' if option == '--data' else 'test file'} {source} does not exist")
    return hidden, rates


def _same_file(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def _check_outputs_spare_inputs(outputs: dict, inputs: dict) -> None:
    """An output option naming an input file would destroy it: refuse before anything is read or written."""
    for output, target in outputs.items():
        for source_option, source in inputs.items():
            if target and source and _same_file(target, source):
                raise ValueError(f"{output} {target} is also the {source_option} file; writing it would overwrite that input")


def _check_label_column(label_column, *sources) -> None:
    """--label-column names a CSV column, so at least one source must be a CSV file."""
    if label_column is not None and not any(source and _is_csv(source) for source in sources):
        shown = " and ".join(source for source in sources if source)
        raise ValueError(f"--label-column applies to CSV files only, and {shown} is not one")


def _is_csv(source: str) -> bool:
    return os.path.splitext(source)[1].lower() == ".csv"


class _Progress:
    """Epoch progress: a line every tenth of the run (and at its end), above a tqdm bar when tqdm is installed and
    stderr is a terminal; nothing when quiet. The cost is printed to 6 significant digits, never rounded to 0.
    A run resumed from `checkpoint` first says the epoch it resumed from."""

    def __init__(self, epochs: int, quiet: bool, checkpoint: str | None = None):
        self.epochs, self.bar, self.quiet, self.checkpoint, self.started = epochs, None, quiet, checkpoint, False
        self.every = max(1, epochs // 10)
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # the progress extra is optional: the lines alone
                return
            self.bar = tqdm(total=epochs, unit="epoch", desc="train", file=sys.stderr)

    def __call__(self, net, epoch: int, logs: dict) -> bool:
        if self.quiet:
            return False
        test = logs.get("val_accuracy", float("nan"))
        if not self.started and epoch > 1:  # the first epoch of a run resumed from a checkpoint
            self._print(f"resumed from {self.checkpoint} at epoch {epoch - 1} of {self.epochs}")
            if self.bar is not None:
                self.bar.update(epoch - 1)
        self.started = True
        if self.bar is not None:
            self.bar.set_postfix(cost=f"{logs['cost']:.6g}", test_acc=f"{test:.4f}", refresh=False)
            self.bar.update(1)
        if epoch % self.every == 0 or epoch == self.epochs:
            self._print(f"epoch {epoch}/{self.epochs}: cost {logs['cost']:.6g}, train accuracy {logs['accuracy']:.4f}, "
                        f"test accuracy {test:.4f}")
        return False

    def _print(self, line: str) -> None:
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line, file=sys.stdout)  # above the bar, which stays at the bottom of the terminal

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _plot(history, path: str) -> None:
    from matplotlib.figure import Figure  # no pyplot, so no GUI backend is involved

    fig = Figure(figsize=(6, 4), layout="tight")
    ax = fig.add_subplot()
    epochs = range(1, len(history) + 1)
    ax.plot(epochs, history.cost, label="train")
    if history.val_cost:
        ax.plot(epochs, history.val_cost, label="test")
    ax.set(xlabel="epoch", ylabel="cost", title="cost per epoch")
    ax.legend()
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------- evaluate, predict
def _evaluate(args) -> int:
    """Print MODEL's cost and accuracy on --data, saying which rows it scored: by default the test rows held
    out in training when --data is the file the model was trained on, else all of them (--split all|test)."""
    if sources.is_source(args.data):
        saved, rows, ids, held_out = _model_and_source(args)
        with rows:
            scores = sources.evaluate(saved.network, rows, classes=_model_classes(saved))  # streamed, chunk by chunk
    else:
        saved, X, Y, ids, held_out = _model_and_data(args, labels=True)
        scores = saved.network.evaluate(X, Y)
    m = len(ids[1])
    scored = f"the {m} held-out test rows of {args.data} (the test split held out in training)" if held_out else f"all {m} rows of {args.data}"
    print(f"scored {scored}: {m} examples, cost {scores['cost']:.6f}, accuracy {scores['accuracy']:.4f}")
    return 0


def _predict(args) -> int:
    """Write one prediction per row of --data, in its order, each with its id (the row number, or --id-column's
    value); with --split test only the test rows held out in training, of the file the model was trained on."""
    if args.out:
        check_output_path(args.out, "--out")
        _check_outputs_spare_inputs({"--out": args.out}, {"MODEL": args.model, "--data": args.data})
    if sources.is_source(args.data):
        saved, rows, ids, held_out = _model_and_source(args)
        with rows:
            count = _write_predictions(saved, (X.T for X in sources.checked_features(rows)), ids, args.out)  # (n_x, k) each
    else:
        saved, X, _, ids, held_out = _model_and_data(args, labels=False)
        count = _write_predictions(saved, [X], ids, args.out)
    # on stderr, so that predictions written to standard output stay one CSV table
    print(f"wrote {count} predictions{f' to {args.out}' if args.out else ''}, one per "
          f"{'held-out test row' if held_out else 'row'} of {args.data}", file=sys.stderr)
    return 0


def _write_predictions(saved, inputs, ids, out: str | None) -> int:
    """Write 'ID,prediction,probability' lines for each X (n_x, k) of `inputs` to `out` (atomically) or stdout.

    ids: (column name, (m,) values: an array or a range), one per example of `inputs` in order. prediction: the class as the
    training data named it (`_model_classes`);
    probability: the sigmoid output (of class index 1), or the softmax probability of the predicted class.
    Returns the number of lines written after the header.
    """
    net, labels = saved.network, [_cell(label) for label in _model_classes(saved)]
    name, values = ids
    count = 0
    with contextlib.ExitStack() as stack:
        target = sys.stdout
        if out:  # written under a temporary name, renamed when complete
            target = stack.enter_context(open(stack.enter_context(replaced_atomically(out, ".tmp")), "w"))
        target.write(f"{_cell(name)},prediction,probability\n")
        for X in inputs:
            A = net.forward(X)  # (n_L, k) on the backend: one forward pass serves both columns
            proba = net.backend.to_numpy(A)  # what `predict_proba` returns
            predicted = net.backend.to_numpy(net.backend.predict_classes(A, net.output)).ravel().astype(int)  # (k,) as `predict`
            confidence = proba[0] if net.output == "sigmoid" else proba[predicted, np.arange(predicted.size)]  # (k,)
            target.writelines(f"{_cell(value)},{labels[k]},{p:.6g}\n"
                              for value, k, p in zip(values[count : count + predicted.size], predicted, confidence))
            count += predicted.size
    return count


def _model_classes(saved) -> list:
    """The model's classes in class-index order, as its training data named them: label values (3, 7, 9) or
    names (cat, non-cat); class indices 0..C-1 for a model that does not record them (trained on indices)."""
    return (saved.extras.get("cli") or {}).get("classes") or list(range(max(2, saved.network.layer_dims[-1])))


def _cell(value) -> str:
    """A label, id or column name as a CSV cell: a whole float as an integer (a CSV's numbers are read as floats),
    text quoted when it holds a comma, a quote or a line break."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


def _model_and_source(args):
    """(checkpoint, rows, ids, held out): --data opened as a source, prepared as the model's training data was.

    Its rows (`_rows_to_use`), standardised with the model's statistics; ids ("row", (k,) their row numbers);
    held out: whether they are the test rows held out in training. Its features must be the model's, in order.
    """
    saved, standardizer = _saved_model(args)
    rows = source = sources.open_source(args.data)
    if saved.feature_names and source.feature_names and tuple(saved.feature_names) != source.feature_names:
        source.close()
        raise DataError(f"the features of {args.data} ({', '.join(source.feature_names)}) are not those of the model "
                        f"{args.model} ({', '.join(saved.feature_names)}), in the same order")
    try:
        index, held_out = _rows_to_use(args, saved, source.m)
    except ValueError:
        source.close()
        raise
    if held_out:
        rows = sources.Rows(source, index)
    if standardizer is not None:
        rows = sources.Standardized(rows, standardizer)
    return saved, rows, ("row", index if held_out else range(source.m)), held_out


def _saved_model(args):
    """(checkpoint, standardizer or None): the model file MODEL and the input standardisation its training used,
    after checking that MODEL is not a data file given in its place and that the file says how to prepare data.

    A model or checkpoint that `train` wrote records how its data was prepared (the "cli" extras and, when
    standardised, the statistics); a model file saved from Python takes its inputs as given. Refused with
    ModelFileError, since their answers would be silently wrong: a file standardised in training that lacks
    valid statistics, and a checkpoint that records no preparation (written by `fit` alone, or by a
    `train --checkpoint` from before checkpoints held it).
    """
    if args.model in data.BUILTIN or os.path.splitext(args.model)[1].lower() in DATA_EXTENSIONS:
        raise ValueError(f"{args.model} is data, not a model file; the model comes first: "
                         f"python -m dnn {args.command} MODEL.npz --data {args.model}")
    _check_label_column(args.label_column, args.data)
    if args.id_column is not None and not _is_csv(args.data):
        raise ValueError(f"--id-column applies to CSV files only, and {args.data} is not one")
    saved = checkpoint.load_checkpoint(args.model, backend=args.backend, network_class=Network)
    cli = saved.extras.get("cli")
    if cli is None and saved.kind == "checkpoint":
        raise ModelFileError(f"{args.model} is a checkpoint that does not record how its training data was prepared "
                             "(written by fit() alone, or by an older `train --checkpoint`), so its answers could be wrong; "
                             "use the model file `train --save` wrote, or resume the run to write a new checkpoint")
    if not isinstance(cli, (dict, type(None))):
        raise ModelFileError(f"{args.model}: its record of how its data was prepared is not what dnn writes (a JSON object)")
    if not (cli or {}).get("standardize", "input_mean" in saved.extras):
        return saved, None
    n_x = saved.network.layer_dims[0]
    mean, std = saved.extras.get("input_mean"), saved.extras.get("input_std")
    valid = all(isinstance(a, np.ndarray) and a.shape == (n_x, 1) and a.dtype.kind == "f" and np.isfinite(a).all() for a in (mean, std))
    if not valid or not (std > 0).all():
        raise ModelFileError(f"{args.model} was trained on standardised inputs but lacks valid statistics to standardise "
                             f"data with (input_mean and input_std: finite ({n_x}, 1) arrays, std > 0)")
    return saved, data.Standardizer(mean, std)


def _rows_to_use(args, saved, m: int):
    """(rows, held out): the row numbers ((k,) increasing) of the m rows of --data to evaluate or predict on,
    None for all of them; held out: whether they are the test rows held out in training.

    --split test: the test rows `train` held out, which needs --data to be the file the model was trained on
    with a held-out split; --split all: every row. Without --split (evaluate's default): the held-out rows of
    that file, all rows of any other.
    """
    cli = saved.extras.get("cli") or {}
    split = cli.get("split")
    trained_on = bool(split) and _source_id(args.data) == cli.get("data")
    if args.split == "all" or (args.split is None and not trained_on):
        return None, False
    if not trained_on:
        reason = (f"it was trained on {cli['data']}" if split else "it was trained with a separate --test file, holding out no rows"
                  ) if cli.get("data") else "it does not record the data it was trained on"
        raise ValueError(f"--split test takes the rows held out when the model {args.model} was trained on --data, but {reason}")
    _, test = data.split_indices(m, split["test_fraction"], split["seed"])  # split exactly as `train` split it
    return np.sort(test), True


def _model_and_data(args, labels: bool):
    """(checkpoint, X, Y, ids, held out) with --data's rows (`_rows_to_use`) prepared as the model's training data was.

    A CSV's columns are matched to the model's features by name and put in the model's order; --id-column
    names one that identifies the rows instead of being a feature. ids: (column name, (k,) values): the id
    column's, or ("row", the row numbers).
    """
    saved, standardizer = _saved_model(args)
    label_column = args.label_column or (saved.extras.get("cli") or {}).get("label_column")
    loaded = data.load(args.data, label_column=label_column, labels=labels, classes=_model_classes(saved))  # never its own
    X, names = loaded.X, loaded.feature_names
    if args.id_column is not None:
        if args.id_column not in (names or ()):
            raise DataError(f"{args.data} has no column {args.id_column!r} to take the ids from; "
                            f"its feature columns are: {', '.join(names or ())}")
        j = names.index(args.id_column)
        X, names, id_values = np.delete(X, j, axis=0), names[:j] + names[j + 1 :], X[j]  # (n_x, m) without it, (m,)
    X = _columns_by_name(X, names, saved.feature_names, args.data, f"the model {args.model}")
    index, held_out = _rows_to_use(args, saved, X.shape[1])
    Y = loaded.Y
    if held_out:
        X, Y = X[:, index], (None if Y is None else Y[:, index])  # (n_x, k), (1, k)
    if args.id_column is None:
        ids = ("row", index if held_out else range(X.shape[1]))
    else:
        ids = (args.id_column, id_values[index] if held_out else id_values)
    if standardizer is not None:
        X = standardizer.transform(X)
    return saved, X, Y, ids, held_out


# ---------------------------------------------------------------------------------------------- backends
def _backends(args) -> int:
    for status in available_backends():
        print(f"{status.name:<6} {'yes' if status.available else 'no ':<3}  {status.reason or ''}".rstrip())
        if status.name == "numba" and status.available:
            from .backends.numba_backend import kernel_cache_status  # imports numba: only when it can run

            cache = kernel_cache_status(QUICK_START_DIMS, "float32", optimizer="adam", examples=64, fit_only=True)
            state = "warm" if cache.warm else "cold" if cache.cached == 0 else "partly warm"
            print(f"       kernel cache for `python -m dnn train`: {state} ({cache.cached} of the {cache.total} kernels it "
                  f"calls are in {cache.directory}; `python -m dnn warmup` compiles them)")
    return 0


# ---------------------------------------------------------------------------------------------- warmup
def _warmup(args) -> int:
    """Compile (or load from the cache) the numba kernels of the network the options describe, one line each."""
    dims = [args.features, *_int_list(args.layers, "--layers"), args.outputs]
    check_activation(args.activation)
    check_count(args.batch_size, "--batch-size", 1)
    backend = get_backend("numba")  # BackendUnavailableError says why when numba cannot run here
    print(f"numba: the kernels training {dims} ({args.activation}, {args.optimizer}, {args.dtype}, batch size "
          f"{args.batch_size}) calls", flush=True)

    def report(done, total, name, seconds, cached):
        print(f"[{done:>2}/{total}] {name:<44} {'cached' if cached else 'compiled'} in {seconds:.2f} s", flush=True)

    start = time.perf_counter()
    backend.warmup(dims, args.dtype, activations=args.activation, optimizer=args.optimizer, examples=args.batch_size,
                   progress=report)
    print(f"ready in {time.perf_counter() - start:.1f} s; later runs load them from numba's cache")
    return 0


# ---------------------------------------------------------------------------------------------- parsing helpers
def _source_id(source: str) -> str:
    return source if source in data.BUILTIN else os.path.abspath(source)


def _columns_by_name(X, names, expected, source: str, trained_on: str):
    """X (n_x, m) with its rows put in the order of the feature names `expected`.

    Without names on either side the rows are taken by position, and a note on stderr says so.
    Missing or extra names raise DataError listing them.
    """
    if names is None or expected is None:
        if names is not None or expected is not None:
            unnamed = trained_on if expected is None else source
            print(f"note: {unnamed} has no feature names (an older model file, or data without a header), "
                  f"so the columns of {source} are matched to {trained_on} by position", file=sys.stderr)
        return X
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise DataError(f"{source} names more than one column {', '.join(duplicated)}; column names must be unique")
    missing = [name for name in expected if name not in names]
    extra = [name for name in names if name not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"not used by it: {', '.join(extra)}"] if extra else [])
        raise DataError(f"the columns of {source} do not match those of {trained_on}: {'; '.join(parts)}")
    return X[[names.index(name) for name in expected]]  # (n_x, m) in the model's feature order


def comma_list(text: str, option: str | None = None) -> list[str]:
    """The comma-separated items of `text`, stripped; an empty item ('10,,5', '10,') is an error; '' is no items.

    The error names `option` when given (argparse names it itself for a `type=` function).
    """
    if not text.strip():
        return []
    items = [part.strip() for part in text.split(",")]
    if not all(items):
        raise ValueError(f"{option + ': ' if option else ''}{text!r} has an empty item; separate the values with single commas")
    return items


def _int_list(text: str, option: str) -> list[int]:
    items = comma_list(text, option)
    try:
        values = [int(item) for item in items]
    except ValueError:
        raise ValueError(f"{option} takes comma-separated integers like 20,7,5, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ValueError(f"{option}: layer sizes must be positive, got {text!r}")
    return values


def _dropout(text: str | None):
    if text is None:
        return None
    items = comma_list(text, "--dropout")
    try:
        rates = [float(item) for item in items]
    except ValueError:
        rates = []
    if not rates:
        raise ValueError(f"--dropout takes a rate like 0.2 or one per hidden layer like 0.2,0.1, got {text!r}")
    return rates[0] if len(rates) == 1 else rates
