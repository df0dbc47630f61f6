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

import numpy as np

from . import checkpoint, convert, data, distributed, sources
from .backends import available_backends, get_backend
from .backends.base import check_activation
from .errors import DataError, DnnError
from .network import Network
from .optimizers import OPTIMIZERS, make_optimizer
from .outputs import check_output_path, check_plot_path, replaced_atomically, save_figure
from .training import fit
from .validation import check_count, check_dropout_rates, check_non_negative, check_positive

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
    """argparse that reports a malformed command line in one line instead of usage text."""

    def error(self, message):
        self.exit(2, f"error: {_one_line(message)} (see '{self.prog} --help')\n")


def _one_line(message: str) -> str:
    """`message` with its line breaks (including those a user's argument may carry) turned into spaces."""
    return " ".join(message.splitlines())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dnn", description="Train, evaluate and use fully connected networks.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser("train", help="train a network (default: breast_cancer, standardised, fixed-seed split)")
    _data_options(train, default="breast_cancer")
    train.add_argument("--test", metavar="PATH", help="a separate test file or data directory (default: hold out 20%% of --data, fixed seed)")
    train.add_argument("--layers", default=DEFAULT_LAYERS, help=f"hidden layer sizes, comma separated; '' for none (default: {DEFAULT_LAYERS})")
    train.add_argument("--activation", default="relu", help="hidden activation: relu, leaky_relu, sigmoid, tanh, linear")
    train.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    train.add_argument("--batch-size", type=int, default=64, help="examples per mini-batch; 0 for the full batch (default: 64)")
    train.add_argument("--epochs", type=int, default=100)
    train.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.001 for adam, 0.0075 otherwise)")
    train.add_argument("--lr-decay", type=float, default=None, help="decay rate r: lr / (1 + r·epoch)")
    train.add_argument("--l2", type=float, default=0.0, help="L2 regularisation strength λ")
    train.add_argument("--dropout", default=None, help="drop rate of hidden layers: one value, or one per layer comma separated")
    train.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    train.add_argument("--seed", type=int, default=1, help="seed of initialisation, shuffling and dropout (default: 1)")
    train.add_argument("--no-standardize", dest="standardize", action="store_false", help="keep features as loaded")
    train.add_argument("--save", metavar="MODEL.npz", help="write the trained model here")
    train.add_argument("--checkpoint", metavar="PATH", help="save training state here every --checkpoint-every epochs")
    train.add_argument("--checkpoint-every", type=int, default=None, help=f"epochs between checkpoints (default: {CHECKPOINT_EVERY})")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint")
    train.add_argument("--plot", metavar="PNG", help="write the cost curve (train and test) to this image")
    train.add_argument("--quiet", action="store_true", help="print only the final accuracies")

    evaluate = commands.add_parser("evaluate", help="report a saved model's cost and accuracy on data")
    evaluate.add_argument("model")
    _data_options(evaluate)

    predict = commands.add_parser("predict", help="predict classes for data with a saved model")
    predict.add_argument("model")
    _data_options(predict)
    predict.add_argument("--out", metavar="CSV", help="write the predictions here (default: standard output)")

    commands.add_parser("backends", help="list the backends and whether each can run here")
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
        return {"evaluate": _evaluate, "predict": _predict, "backends": _backends, "convert": convert.run}[args.command](args)
    except (DnnError, ValueError, OSError, MemoryError) as exc:  # OSError covers FileNotFoundError and unwritable outputs
        message = f"not enough memory: {exc}" if isinstance(exc, MemoryError) else str(exc)
        _abort_alone(comm, exc, message)
        print(f"error: {_rank_prefix(comm)}{_one_line(message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        _abort_alone(comm, exc, "interrupted")
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: under MPI the other ranks must not wait for this one
        _abort_alone(comm, exc, f"{type(exc).__name__}: {exc}")
        raise


def _abort_alone(comm, exc: BaseException, message: str) -> None:
    """Under MPI, an error this rank may have met alone prints its line and aborts every rank (no return).

    Errors all ranks raise together (a disagreement found by a collective, a divergence of the shared
    parameters) return normally on every rank instead.
    """
    if comm is not None and not isinstance(exc, distributed.COLLECTIVE_ERRORS):
        distributed.abort(comm, message)


def _rank_prefix(comm) -> str:
    return "" if comm is None else f"rank {comm.Get_rank()} of {comm.Get_size()}: "


# ---------------------------------------------------------------------------------------------- train
def _train(args, comm=None) -> int:
    """Train as the options say; under MPI (`comm`) data-parallel, with rank 0 alone printing and writing."""
    hidden, rates = _checked_train_options(args)
    if sources.is_source(args.data):
        return _train_from_source(args, hidden, rates, comm)
    train = data.load(args.data, label_column=args.label_column)
    if args.test:
        test = data.load(args.test, label_column=args.label_column)
        split = None
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
    n_classes = max(train.n_classes, int(Y_test.max()) + 1)
    n_out = 1 if n_classes == 2 else n_classes
    net = Network([X_train.shape[0], *hidden, n_out], activations=args.activation, dtype=args.dtype, backend=args.backend, seed=args.seed)
    optimizer = make_optimizer(args.optimizer)
    history = _fit(args, net, optimizer, X_train, Y_train, rates, comm, validation=(X_test, Y_test),
                   described=f"{X_train.shape[1]} training and {X_test.shape[1]} test examples from {args.data}")
    if not _is_root(comm):  # every rank holds the same model; rank 0 reports and writes it
        return 0
    train_acc = net.evaluate(X_train, Y_train)["accuracy"]
    test_acc = net.evaluate(X_test, Y_test)["accuracy"]
    cli = {"split": split, "label_column": train.label_name, "classes": list(train.classes) if train.classes else None}
    return _report_and_save(args, net, optimizer, history, (train_acc, test_acc), extras, cli, train.feature_names)


def _is_root(comm) -> bool:
    """Whether this process prints and writes: the only one, or rank 0 of an MPI run."""
    return comm is None or comm.Get_rank() == 0


def _fit(args, net, optimizer, X, Y, rates, comm, described: str, callbacks=(), validation=None):
    """Say what is trained on what (`described`; rank 0, unless --quiet), then `fit` with the command line's
    options and a progress bar after the other callbacks; returns the History."""
    if not args.quiet and _is_root(comm):
        where = "" if comm is None else f" across {comm.Get_size()} MPI processes"
        print(f"training {net.layer_dims} ({args.activation}, {net.output} output) on {net.backend.name} {net.dtype.name}"
              f"{where}: {described}")
    progress = _Progress(args.epochs, quiet=args.quiet or not _is_root(comm))
    try:
        return fit(
            net, X, Y, epochs=args.epochs, batch_size=args.batch_size or None, optimizer=optimizer, lr=args.lr,
            l2=args.l2, dropout=rates, lr_decay=args.lr_decay, seed=args.seed, validation=validation,
            callbacks=[*callbacks, progress], checkpoint=args.checkpoint, resume=args.resume,
            checkpoint_every=CHECKPOINT_EVERY if args.checkpoint_every is None else args.checkpoint_every, comm=comm,
        )
    finally:
        progress.close()


def _report_and_save(args, net, optimizer, history, accuracies, extras: dict, cli: dict, feature_names) -> int:
    """Print the final (train, test) accuracies, then write the model (--save) and the cost curve (--plot) if asked.

    cli: what `evaluate`/`predict` need to prepare data as training did (split, label_column, classes).
    """
    print(f"train accuracy: {accuracies[0]:.4f}\ntest accuracy:  {accuracies[1]:.4f}")
    if args.save:
        extras["cli"] = dict(cli, data=_source_id(args.data), standardize=args.standardize)
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
        else:
            train_index, test_index = data.split_indices(source.m, TEST_FRACTION, SPLIT_SEED)
            train_rows, test_rows = sources.Rows(source, np.sort(train_index)), sources.Rows(source, np.sort(test_index))
            split = {"seed": SPLIT_SEED, "test_fraction": TEST_FRACTION}
        summary = sources.scan(train_rows)  # the one pass over the training rows: checks and statistics
        n_classes = max(summary.n_classes, sources.scan(test_rows).n_classes)
        extras = {}
        if args.standardize:
            scaler = summary.standardizer  # from the training rows only
            train_rows, test_rows = sources.Standardized(train_rows, scaler), sources.Standardized(test_rows, scaler)
            extras.update(input_mean=scaler.mean, input_std=scaler.std)
        net = Network([source.n_features, *hidden, 1 if n_classes == 2 else n_classes], activations=args.activation,
                      dtype=args.dtype, backend=args.backend, seed=args.seed)
        optimizer = make_optimizer(args.optimizer)
        scores = _StreamedTestScores(test_rows)
        history = _fit(args, net, optimizer, train_rows, None, rates, comm, callbacks=[scores],
                       described=f"{train_rows.m} training and {test_rows.m} test examples streamed from {args.data}")
        if not _is_root(comm):  # every rank holds the same model; rank 0 reports and writes it
            return 0
        resumed = [float("nan")] * (len(history) - len(scores.cost))  # epochs before a --resume were scored then
        history.val_cost, history.val_accuracy = resumed + scores.cost, resumed + scores.accuracy
        # the last epoch's test accuracy is the final network's (a --resume with no epoch left streams it here)
        test_accuracy = scores.accuracy[-1] if scores.accuracy else sources.evaluate(net, test_rows)["accuracy"]
        accuracies = sources.evaluate(net, train_rows)["accuracy"], test_accuracy
    cli = {"split": split, "label_column": source.label_name, "classes": None}
    return _report_and_save(args, net, optimizer, history, accuracies, extras, cli, source.feature_names)


def _test_source(args, train: sources.Source) -> sources.Source:
    """--test beside a training source: another source, or a file `dnn.data.load` reads (its columns matched by name)."""
    if sources.is_source(args.test):
        test = sources.open_source(args.test)
        named = test.feature_names and train.feature_names
        problem = f"are not those of {args.data}, in the same order" if named and test.feature_names != train.feature_names else None
    else:
        loaded = data.load(args.test, label_column=args.label_column)
        X = _columns_by_name(loaded.X, loaded.feature_names, train.feature_names, args.test, f"the training data {args.data}")
        test, problem = sources.InMemory(X.T, loaded.Y, args.test, train.feature_names), None  # X.T: (m, n_x) rows
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
    """Epoch progress: a tqdm bar with the cost on a terminal, a few printed lines otherwise, nothing when quiet."""

    def __init__(self, epochs: int, quiet: bool):
        self.epochs, self.bar, self.quiet = epochs, None, quiet
        self.every = max(1, epochs // 10)
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # the progress extra is optional: fall back to printed lines
                return
            self.bar = tqdm(total=epochs, unit="epoch", desc="train", file=sys.stderr)

    def __call__(self, net, epoch: int, logs: dict) -> bool:
        if self.bar is not None:
            if self.bar.n == 0 and epoch > 1:  # resumed from a checkpoint
                self.bar.update(epoch - 1)
            self.bar.set_postfix(cost=f"{logs['cost']:.4f}", test_acc=f"{logs.get('val_accuracy', float('nan')):.3f}", refresh=False)
            self.bar.update(1)
        elif not self.quiet and (epoch % self.every == 0 or epoch == self.epochs):
            print(f"epoch {epoch}/{self.epochs}: cost {logs['cost']:.6f}, train accuracy {logs['accuracy']:.4f}, "
                  f"test accuracy {logs.get('val_accuracy', float('nan')):.4f}", flush=True)
        return False

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
    if sources.is_source(args.data):
        saved, rows, where = _model_and_source(args)
        with rows:
            scores, m = sources.evaluate(saved.network, rows), rows.m  # streamed, chunk by chunk
    else:
        saved, X, Y, where = _model_and_data(args, labels=True)
        scores, m = saved.network.evaluate(X, Y), X.shape[1]
    print(f"{where}: {m} examples, cost {scores['cost']:.6f}, accuracy {scores['accuracy']:.4f}")
    return 0


def _predict(args) -> int:
    if args.out:
        check_output_path(args.out, "--out")
        _check_outputs_spare_inputs({"--out": args.out}, {"MODEL": args.model, "--data": args.data})
    if sources.is_source(args.data):
        saved, rows, _ = _model_and_source(args)
        with rows:
            count = _write_predictions(saved, (X.T for X in sources.checked_features(rows)), args.out)  # (n_x, k) each
    else:
        saved, X, _, _ = _model_and_data(args, labels=False)
        count = _write_predictions(saved, [X], args.out)
    if args.out:
        print(f"wrote {count} predictions to {args.out}")
    return 0


def _write_predictions(saved, inputs, out: str | None) -> int:
    """Write 'prediction,probability[,class]' lines for each X (n_x, k) of `inputs` to `out` (atomically) or stdout."""
    net, names = saved.network, (saved.extras.get("cli") or {}).get("classes")
    count = 0
    with contextlib.ExitStack() as stack:
        target = sys.stdout
        if out:  # written under a temporary name, renamed when complete
            target = stack.enter_context(open(stack.enter_context(replaced_atomically(out, ".tmp")), "w"))
        target.write("prediction,probability" + (",class" if names else "") + "\n")
        for X in inputs:
            A = net.forward(X)  # (n_L, k) on the backend: one forward pass serves both columns
            proba = net.backend.to_numpy(A)  # what `predict_proba` returns
            classes = net.backend.to_numpy(net.backend.predict_classes(A, net.output)).ravel().astype(int)  # (k,) as `predict`
            confidence = proba[0] if net.output == "sigmoid" else proba[classes, np.arange(classes.size)]  # (k,)
            target.writelines(f"{k},{p:.6g}" + (f",{names[k]}" if names else "") + "\n" for k, p in zip(classes, confidence))
            count += classes.size
    return count


def _model_and_source(args):
    """(checkpoint, source, description): --data opened as a source, prepared as the model's training data was.

    The held-out test rows when it is the source the model was trained on (split as `train` split it);
    standardised with the model's statistics. Its features must be the model's, in the same order.
    """
    saved = _saved_model(args)
    cli = saved.extras.get("cli") or {}
    rows = source = sources.open_source(args.data)
    where = args.data
    if saved.feature_names and source.feature_names and tuple(saved.feature_names) != source.feature_names:
        source.close()
        raise DataError(f"the features of {args.data} ({', '.join(source.feature_names)}) are not those of the model "
                        f"{args.model} ({', '.join(saved.feature_names)}), in the same order")
    split = cli.get("split")
    if split and _source_id(args.data) == cli.get("data"):
        _, test = data.split_indices(source.m, split["test_fraction"], split["seed"])
        rows, where = sources.Rows(source, np.sort(test)), f"{args.data} (the test split held out in training)"
    if "input_mean" in saved.extras:
        rows = sources.Standardized(rows, data.Standardizer(saved.extras["input_mean"], saved.extras["input_std"]))
    return saved, rows, where


def _saved_model(args):
    """The checkpoint named by MODEL, after checking that MODEL is not a data file given in its place."""
    if args.model in data.BUILTIN or os.path.splitext(args.model)[1].lower() in DATA_EXTENSIONS:
        raise ValueError(f"{args.model} is data, not a model file; the model comes first: "
                         f"python -m dnn {args.command} MODEL.npz --data {args.model}")
    _check_label_column(args.label_column, args.data)
    return checkpoint.load_checkpoint(args.model, backend=args.backend, network_class=Network)


def _model_and_data(args, labels: bool):
    """(checkpoint, X, Y, description) with the data prepared as the model's training data was.

    A CSV's columns are matched to the model's features by name and put in the model's order.
    """
    saved = _saved_model(args)
    cli = saved.extras.get("cli") or {}
    label_column = args.label_column or cli.get("label_column")
    loaded = data.load(args.data, label_column=label_column, labels=labels)
    X = _columns_by_name(loaded.X, loaded.feature_names, saved.feature_names, args.data, f"the model {args.model}")
    Y, where = loaded.Y, args.data
    split = cli.get("split")
    if split and _source_id(args.data) == cli.get("data"):
        # the training data itself: use the held-out part, split exactly as `train` split it
        _, test = data.split_indices(X.shape[1], split["test_fraction"], split["seed"])
        X, Y = X[:, test], (None if Y is None else Y[:, test])
        where = f"{args.data} (the test split held out in training)"
    if "input_mean" in saved.extras:
        X = data.Standardizer(saved.extras["input_mean"], saved.extras["input_std"]).transform(X)
    return saved, X, Y, where


# ---------------------------------------------------------------------------------------------- backends
def _backends(args) -> int:
    for status in available_backends():
        print(f"{status.name:<6} {'yes' if status.available else 'no ':<3}  {status.reason or ''}".rstrip())
        if status.name == "numba" and status.available:
            from .backends.numba_backend import kernel_cache_status  # imports numba: only when it can run

            cache = kernel_cache_status(QUICK_START_DIMS, "float32", optimizer="adam")
            state = "warm" if cache.warm else "cold" if cache.cached == 0 else "partly warm"
            print(f"       kernel cache for the quick-start network: {state} ({cache.cached} of the {cache.total} kernels "
                  f"its training may call are in {cache.directory}; dnn.get_backend('numba').warmup(net) compiles them)")
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
