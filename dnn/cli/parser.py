"""The command line's grammar: argparse parsers of every command, errors in one line, defaults shown in --help."""

from __future__ import annotations

import argparse

from .. import __version__, convert, data
from ..activations import ACTIVATIONS, describe
from ..backends import backend_names
from ..optimizers import OPTIMIZERS
from ..validation import FLOAT_DTYPES
from .options import CHECKPOINT_EVERY, DEFAULT_LAYERS, QUICK_START_DIMS

#: The --activation help: every registered activation with its one-line description.
ACTIVATION_HELP = "hidden activation: " + ", ".join(describe(name) for name in ACTIVATIONS).replace("%", "%%")


class Parser(argparse.ArgumentParser):
    """argparse that reports a malformed command line in one line, and shows each option's default in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"error: {one_line(message)} (see '{self.prog} --help')\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help when it has a default worth showing and does not state it."""

    def _get_help_string(self, action):
        text = action.help or ""
        takes_value = action.option_strings and action.nargs != 0  # not a flag: its "default" would read as True/False
        shown = takes_value and action.default not in (None, argparse.SUPPRESS)
        if shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


def one_line(message: str) -> str:
    """`message` with its line breaks (including those a user's argument may carry) turned into spaces."""
    return " ".join(message.splitlines())


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m dnn` and every command but `bench` (which `dnn.benchmark` configures)."""
    parser = Parser(prog="python -m dnn", description="Train, evaluate and use fully connected networks.")
    parser.add_argument("--version", action="version", version=f"dnn-engine {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    train = commands.add_parser(
        "train", help="train a network (default: breast_cancer, standardised, fixed-seed split)"
    )
    _data_options(train, default="breast_cancer")
    train.add_argument(
        "--test",
        metavar="PATH",
        help="a separate test file or data directory (default: hold out 20%% of --data, fixed seed)",
    )
    train.add_argument(
        "--layers",
        default=DEFAULT_LAYERS,
        help=f"hidden layer sizes, comma separated; '' for none (default: {DEFAULT_LAYERS})",
    )
    train.add_argument("--activation", default="relu", help=ACTIVATION_HELP)
    train.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="the update rule")
    train.add_argument("--batch-size", type=int, default=64, help="examples per mini-batch; 0 for the full batch")
    train.add_argument("--epochs", type=int, default=100, help="passes over the training data")
    train.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: 0.001 for adam, 0.0075 otherwise)"
    )
    train.add_argument("--lr-decay", type=float, default=None, help="decay rate r: lr / (1 + r·epoch)")
    train.add_argument("--l2", type=float, default=0.0, help="L2 regularisation strength λ; 0 for none")
    train.add_argument(
        "--dropout", default=None, help="drop rate of hidden layers: one value, or one per layer comma separated"
    )
    train.add_argument("--dtype", default="float32", choices=FLOAT_DTYPES, help="the network's floating-point type")
    train.add_argument("--seed", type=int, default=1, help="seed of initialisation, shuffling and dropout")
    train.add_argument("--no-standardize", dest="standardize", action="store_false", help="keep features as loaded")
    train.add_argument("--save", metavar="MODEL.npz", help="write the trained model here")
    train.add_argument("--checkpoint", metavar="PATH", help="save training state here every --checkpoint-every epochs")
    train.add_argument(
        "--checkpoint-every", type=int, default=None, help=f"epochs between checkpoints (default: {CHECKPOINT_EVERY})"
    )
    train.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint")
    train.add_argument("--plot", metavar="PNG", help="write the cost curve (train and test) to this image")
    train.add_argument(
        "--log", metavar="METRICS.csv", help="write each epoch's cost, accuracy, lr and test scores to this CSV file"
    )
    train.add_argument("--quiet", action="store_true", help="print only the final accuracies")

    evaluate = commands.add_parser(
        "evaluate", help="report a saved model's (or checkpoint's) cost and accuracy on data"
    )
    evaluate.add_argument("model")
    _data_options(evaluate)
    evaluate.add_argument(
        "--split",
        choices=("all", "test"),
        default=None,
        help="score every row of --data, or the test rows held out when the model was trained on it "
        "(default: test for the file the model was trained on, all for any other)",
    )
    evaluate.add_argument(
        "--id-column", metavar="NAME", help="a CSV column that identifies the rows: left out of the features"
    )

    predict = commands.add_parser("predict", help="predict classes for data with a saved model (or checkpoint)")
    predict.add_argument("model")
    _data_options(predict)
    predict.add_argument("--out", metavar="CSV", help="write the predictions here (default: standard output)")
    predict.add_argument(
        "--split",
        choices=("all", "test"),
        default="all",
        help="predict every row of --data, or only the test rows held out when the model was trained on it",
    )
    predict.add_argument(
        "--id-column",
        metavar="NAME",
        help="a CSV column that identifies each row: written as its prediction's id, not used as a feature "
        "(default: the row number, counted from 0)",
    )

    commands.add_parser("backends", help="list the backends and whether each can run here")
    warmup = commands.add_parser("warmup", help="compile and cache the numba kernels a network needs, kernel by kernel")
    warmup.add_argument(
        "--backend",
        default="numba",
        help=f"the backend to warm up: {', '.join(backend_names())} (default: numba; those compiling nothing say so)",
    )
    warmup.add_argument(
        "--features", type=int, default=QUICK_START_DIMS[0], help="input features n_x (the quick-start data has 30)"
    )
    warmup.add_argument("--layers", default=DEFAULT_LAYERS, help="hidden layer sizes, comma separated")
    warmup.add_argument(
        "--outputs", type=int, default=1, help="output units: 1 (sigmoid) or the number of classes (softmax)"
    )
    warmup.add_argument("--activation", default="relu", help=ACTIVATION_HELP)
    warmup.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="the update rule")
    warmup.add_argument("--dtype", default="float32", choices=FLOAT_DTYPES, help="the network's floating-point type")
    warmup.add_argument(
        "--batch-size", type=int, default=64, help="examples per mini-batch (decides which kernels run in parallel)"
    )
    convert.add_parser(commands)
    commands.add_parser("bench", help="run the benchmarks (see 'python -m dnn bench --help')", add_help=False)
    return parser


def _data_options(parser, default=None) -> None:
    parser.add_argument(
        "--data",
        default=default,
        required=default is None,
        help=f"{', '.join(data.BUILTIN)}, a .h5, .npz or .csv file, or data on disk read in batches: a directory of "
        "X.npy/Y.npy or shards, an X.npy, an .h5 with X and Y datasets" + (f" (default: {default})" if default else ""),
    )
    parser.add_argument(
        "--label-column", metavar="NAME", help="the label column of a CSV file (default: the last); CSV only"
    )
    parser.add_argument(
        "--backend", default=None, help=f"{', '.join(backend_names())} (default: DNN_BACKEND, else numpy)"
    )
