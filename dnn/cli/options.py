"""The command line's settings and the checks of its option values, made before anything is loaded."""

from __future__ import annotations

import os

from .. import data
from ..backends import get_backend
from ..activations import check_activation
from ..errors import DataError
from ..outputs import check_output_path, check_plot_path
from ..validation import check_count, check_dropout_rates, check_non_negative, check_positive

#: Held-out fraction and split seed when `train` gets no --test file (fixed, so evaluate can find the split).
TEST_FRACTION = 0.2
SPLIT_SEED = 0
#: Epochs between checkpoints when --checkpoint is given without --checkpoint-every.
CHECKPOINT_EVERY = 10
DEFAULT_LAYERS = "20,7,5"
#: `python -m dnn train` with no options: breast_cancer's 30 features, the default hidden layers, one sigmoid unit.
QUICK_START_DIMS = [30, *map(int, DEFAULT_LAYERS.split(",")), 1]


def checked_train_options(args) -> tuple[list[int], list | None]:
    """Check every option of `train` before anything is loaded; returns (hidden layer sizes, dropout rates)."""
    hidden = int_list(args.layers, "--layers")
    check_activation(args.activation)
    get_backend(args.backend)  # an unknown or unavailable backend is named before the data is loaded
    check_count(args.epochs, "--epochs", 0)
    check_count(args.batch_size, "--batch-size", 0)
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed must be an integer from 0 to 2**32 - 1, got {args.seed}")
    for option, value, check in (
        ("--lr", args.lr, check_positive),
        ("--lr-decay", args.lr_decay, check_non_negative),
        ("--l2", args.l2, check_non_negative),
    ):
        if value is not None:
            check(value, option)
    rates = check_dropout_rates(_dropout(args.dropout), len(hidden))
    if args.checkpoint is None and (args.resume or args.checkpoint_every is not None):
        raise ValueError(f"{'--resume' if args.resume else '--checkpoint-every'} needs --checkpoint PATH")
    if args.resume and not os.path.exists(
        args.checkpoint
    ):  # not a silent fresh start: the user meant to continue a run
        raise ValueError(
            f"--resume: the checkpoint {args.checkpoint} does not exist; leave out --resume to start a run that writes it"
        )
    if args.checkpoint_every is not None:
        check_count(args.checkpoint_every, "--checkpoint-every", 1)
    check_label_column(args.label_column, args.data, args.test)
    for option in ("--save", "--checkpoint", "--log"):
        if getattr(args, option[2:]):
            check_output_path(getattr(args, option[2:]), option)
    if args.plot:
        check_plot_path(args.plot, "--plot")
    outputs = {"--save": args.save, "--checkpoint": args.checkpoint, "--plot": args.plot, "--log": args.log}
    check_outputs_distinct(outputs)
    check_outputs_spare_inputs(outputs, {"--data": args.data, "--test": args.test})
    for option, source in (("--data", args.data), ("--test", args.test)):
        if source and source not in data.BUILTIN and not os.path.exists(source):
            raise DataError(f"{'data file' if option == '--data' else 'test file'} {source} does not exist")
    return hidden, rates


def _same_file(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def check_outputs_distinct(outputs: dict) -> None:
    """Two output options naming one file would write over each other: refuse before anything is written."""
    named = [(option, path) for option, path in outputs.items() if path]
    for i, (option, path) in enumerate(named):
        for other, other_path in named[i + 1 :]:
            if _same_file(path, other_path):
                raise ValueError(f"{option} and {other} name the same file {path}; each needs a file of its own")


def check_outputs_spare_inputs(outputs: dict, inputs: dict) -> None:
    """An output option naming an input file would destroy it: refuse before anything is read or written."""
    for output, target in outputs.items():
        for source_option, source in inputs.items():
            if target and source and _same_file(target, source):
                raise ValueError(
                    f"{output} {target} is also the {source_option} file; writing it would overwrite that input"
                )


def check_label_column(label_column, *sources) -> None:
    """--label-column names a CSV column, so at least one source must be a CSV file."""
    if label_column is not None and not any(source and is_csv(source) for source in sources):
        shown = " and ".join(source for source in sources if source)
        raise ValueError(f"--label-column applies to CSV files only, and {shown} is not one")


def is_csv(source: str) -> bool:
    """Whether `source` names a CSV file (by its extension)."""
    return os.path.splitext(source)[1].lower() == ".csv"


def source_id(source: str) -> str:
    """--data as a model records it: a built-in data set's name, or the file's absolute path."""
    return source if source in data.BUILTIN else os.path.abspath(source)


def comma_list(text: str, option: str | None = None) -> list[str]:
    """The comma-separated items of `text`, stripped; an empty item ('10,,5', '10,') is an error; '' is no items.

    The error names `option` when given (argparse names it itself for a `type=` function).
    """
    if not text.strip():
        return []
    items = [part.strip() for part in text.split(",")]
    if not all(items):
        raise ValueError(
            f"{option + ': ' if option else ''}{text!r} has an empty item; separate the values with single commas"
        )
    return items


def int_list(text: str, option: str) -> list[int]:
    """The positive integers of a comma-separated option value (layer sizes), or ValueError naming `option`."""
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
