"""`python -m dnn train | evaluate | predict | backends | bench`: the command line.

A user's mistake (a missing file, a bad option value, a model that does not fit the data) prints one line,
``error: ...``, on stderr and exits with status 1 (2 for a malformed command line); no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from . import checkpoint, data
from .backends import available_backends
from .errors import DnnError
from .network import Network
from .optimizers import OPTIMIZERS, make_optimizer
from .training import fit

#: Held-out fraction and split seed when `train` gets no --test file (fixed, so evaluate can find the split).
TEST_FRACTION = 0.2
SPLIT_SEED = 0


class _Parser(argparse.ArgumentParser):
    """argparse that reports a malformed command line in one line instead of usage text."""

    def error(self, message):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dnn", description="Train, evaluate and use fully connected networks.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser("train", help="train a network (default: breast_cancer, standardised, fixed-seed split)")
    _data_options(train, default="breast_cancer")
    train.add_argument("--test", metavar="PATH", help="a separate test file (default: hold out 20%% of --data, fixed seed)")
    train.add_argument("--layers", default="20,7,5", help="hidden layer sizes, comma separated (default: 20,7,5)")
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
    train.add_argument("--checkpoint-every", type=int, default=10)
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
    commands.add_parser("bench", help="run the benchmarks (see 'python -m dnn bench --help')", add_help=False)
    return parser


def _data_options(parser, default=None) -> None:
    parser.add_argument("--data", default=default, required=default is None,
                        help=f"{', '.join(data.BUILTIN)}, or a .h5, .npz or .csv file" + (f" (default: {default})" if default else ""))
    parser.add_argument("--label-column", metavar="NAME", help="the label column of a CSV file (default: the last)")
    parser.add_argument("--backend", default=None, help="numpy, numba or cupy (default: DNN_BACKEND, else numpy)")


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"]:
            return _bench(argv[1:])
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, or a malformed command line already reported in one line
            return exc.code
        if args.command is None:
            build_parser().print_help()
            return 2
        return {"train": _train, "evaluate": _evaluate, "predict": _predict, "backends": _backends}[args.command](args)
    except (DnnError, ValueError, OSError) as exc:  # OSError covers FileNotFoundError and unwritable outputs
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _bench(argv) -> int:
    from . import benchmark  # written separately; imported only for this command

    parser = _Parser(prog="python -m dnn bench", description="Run the benchmarks.")
    benchmark.configure_parser(parser)
    return benchmark.run(parser.parse_args(argv))


# ---------------------------------------------------------------------------------------------- train
def _train(args) -> int:
    hidden = _int_list(args.layers, "--layers")
    train = data.load(args.data, label_column=args.label_column)
    if args.test:
        test = data.load(args.test, label_column=args.label_column)
        split = None
        X_train, Y_train, X_test, Y_test = train.X, train.Y, test.X, test.Y
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
    if not args.quiet:
        print(f"training {net.layer_dims} ({args.activation}, {net.output} output) on {net.backend.name} {net.dtype.name}: "
              f"{X_train.shape[1]} training and {X_test.shape[1]} test examples from {args.data}")
    progress = _Progress(args.epochs, quiet=args.quiet)
    try:
        history = fit(
            net, X_train, Y_train, epochs=args.epochs, batch_size=args.batch_size or None, optimizer=optimizer, lr=args.lr,
            l2=args.l2, dropout=_dropout(args.dropout), lr_decay=args.lr_decay, seed=args.seed,
            validation=(X_test, Y_test), callbacks=[progress], checkpoint=args.checkpoint,
            checkpoint_every=args.checkpoint_every, resume=args.resume,
        )
    finally:
        progress.close()
    train_acc = net.evaluate(X_train, Y_train)["accuracy"]
    test_acc = net.evaluate(X_test, Y_test)["accuracy"]
    print(f"train accuracy: {train_acc:.4f}\ntest accuracy:  {test_acc:.4f}")
    if args.save:
        extras["cli"] = {"data": _source_id(args.data), "split": split, "label_column": train.label_name,
                         "standardize": args.standardize, "classes": list(train.classes) if train.classes else None}
        checkpoint.save(net, args.save, optimizer=optimizer, extras=extras)
        if not args.quiet:
            print(f"saved the model to {args.save}")
    if args.plot:
        _plot(history, args.plot)
        if not args.quiet:
            print(f"wrote the cost curve to {args.plot}")
    return 0


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
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history) + 1)
    ax.plot(epochs, history.cost, label="train")
    if history.val_cost:
        ax.plot(epochs, history.val_cost, label="test")
    ax.set(xlabel="epoch", ylabel="cost", title="cost per epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- evaluate, predict
def _evaluate(args) -> int:
    saved, X, Y, where = _model_and_data(args, labels=True)
    scores = saved.network.evaluate(X, Y)
    print(f"{where}: {X.shape[1]} examples, cost {scores['cost']:.6f}, accuracy {scores['accuracy']:.4f}")
    return 0


def _predict(args) -> int:
    saved, X, _, _ = _model_and_data(args, labels=False)
    net = saved.network
    proba = net.predict_proba(X)  # (n_L, m)
    classes = net.predict(X).ravel().astype(int)  # (m,)
    confidence = proba[0] if net.output == "sigmoid" else proba[classes, np.arange(classes.size)]  # (m,)
    names = (saved.extras.get("cli") or {}).get("classes")
    lines = ["prediction,probability" + (",class" if names else "")]
    for k, p in zip(classes, confidence):
        lines.append(f"{k},{p:.6g}" + (f",{names[k]}" if names else ""))
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {classes.size} predictions to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _model_and_data(args, labels: bool):
    """(checkpoint, X, Y, description) with the data prepared as the model's training data was."""
    saved = checkpoint.load_checkpoint(args.model, backend=args.backend, network_class=Network)
    cli = saved.extras.get("cli") or {}
    label_column = args.label_column or cli.get("label_column")
    loaded = data.load(args.data, label_column=label_column, labels=labels)
    X, Y, where = loaded.X, loaded.Y, args.data
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
    return 0


# ---------------------------------------------------------------------------------------------- parsing helpers
def _source_id(source: str) -> str:
    return source if source in data.BUILTIN else os.path.abspath(source)


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{option} takes comma-separated integers like 20,7,5, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ValueError(f"{option}: layer sizes must be positive, got {text!r}")
    return values


def _dropout(text: str | None):
    if text is None:
        return None
    try:
        rates = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--dropout takes a rate like 0.2 or one per hidden layer like 0.2,0.1, got {text!r}") from None
    return rates[0] if len(rates) == 1 else rates
