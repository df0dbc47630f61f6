"""A saved model (or checkpoint) and data prepared as its training data was: the rows, columns and standardisation."""

from __future__ import annotations

import os

import numpy as np

from .. import checkpoint, data, sources
from ..errors import DataError, ModelFileError
from ..network import Network
from .features import columns_by_name
from .options import check_label_column, is_csv, source_id

#: Extensions of data files, which belong after --data, not in the MODEL position.
DATA_EXTENSIONS = (".csv", ".h5", ".hdf5")


def model_classes(saved) -> list:
    """The model's classes in class-index order, as its training data named them: label values (3, 7, 9) or
    names (cat, non-cat); class indices 0..C-1 for a model that does not record them (trained on indices)."""
    return (saved.extras.get("cli") or {}).get("classes") or list(range(max(2, saved.network.layer_dims[-1])))


def model_and_source(args):
    """(checkpoint, rows, ids, held out): --data opened as a source, prepared as the model's training data was.

    Its rows (`_rows_to_use`), standardised with the model's statistics; ids ("row", (k,) their row numbers);
    held out: whether they are the test rows held out in training. Its features must be the model's, in order.
    """
    saved, standardizer = _saved_model(args)
    rows = source = sources.open_source(args.data)
    if saved.feature_names and source.feature_names and tuple(saved.feature_names) != source.feature_names:
        source.close()
        raise DataError(
            f"the features of {args.data} ({', '.join(source.feature_names)}) are not those of the model "
            f"{args.model} ({', '.join(saved.feature_names)}), in the same order"
        )
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
        raise ValueError(
            f"{args.model} is data, not a model file; the model comes first: "
            f"python -m dnn {args.command} MODEL.npz --data {args.model}"
        )
    check_label_column(args.label_column, args.data)
    if args.id_column is not None and not is_csv(args.data):
        raise ValueError(f"--id-column applies to CSV files only, and {args.data} is not one")
    saved = checkpoint.load_checkpoint(args.model, backend=args.backend, network_class=Network)
    cli = saved.extras.get("cli")
    if cli is None and saved.kind == "checkpoint":
        raise ModelFileError(
            f"{args.model} is a checkpoint that does not record how its training data was prepared "
            "(written by fit() alone, or by an older `train --checkpoint`), so its answers could be wrong; "
            "use the model file `train --save` wrote, or resume the run to write a new checkpoint"
        )
    if not isinstance(cli, (dict, type(None))):
        raise ModelFileError(
            f"{args.model}: its record of how its data was prepared is not what dnn writes (a JSON object)"
        )
    if not (cli or {}).get("standardize", "input_mean" in saved.extras):
        return saved, None
    n_x = saved.network.layer_dims[0]
    mean, std = saved.extras.get("input_mean"), saved.extras.get("input_std")
    valid = all(
        isinstance(a, np.ndarray) and a.shape == (n_x, 1) and a.dtype.kind == "f" and np.isfinite(a).all()
        for a in (mean, std)
    )
    if not valid or not (std > 0).all():
        raise ModelFileError(
            f"{args.model} was trained on standardised inputs but lacks valid statistics to standardise "
            f"data with (input_mean and input_std: finite ({n_x}, 1) arrays, std > 0)"
        )
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
    trained_on = bool(split) and source_id(args.data) == cli.get("data")
    if args.split == "all" or (args.split is None and not trained_on):
        return None, False
    if not trained_on:
        reason = (
            (
                f"it was trained on {cli['data']}"
                if split
                else "it was trained with a separate --test file, holding out no rows"
            )
            if cli.get("data")
            else "it does not record the data it was trained on"
        )
        raise ValueError(
            f"--split test takes the rows held out when the model {args.model} was trained on --data, but {reason}"
        )
    _, test = data.split_indices(m, split["test_fraction"], split["seed"])  # split exactly as `train` split it
    return np.sort(test), True


def model_and_data(args, labels: bool):
    """(checkpoint, X, Y, ids, held out) with --data's rows (`_rows_to_use`) prepared as the model's training data was.

    A CSV's columns are matched to the model's features by name and put in the model's order; --id-column
    names one that identifies the rows instead of being a feature. ids: (column name, (k,) values): the id
    column's, or ("row", the row numbers).
    """
    saved, standardizer = _saved_model(args)
    label_column = args.label_column or (saved.extras.get("cli") or {}).get("label_column")
    loaded = data.load(
        args.data, label_column=label_column, labels=labels, classes=model_classes(saved)
    )  # never its own
    X, names = loaded.X, loaded.feature_names
    if args.id_column is not None:
        if args.id_column not in (names or ()):
            raise DataError(
                f"{args.data} has no column {args.id_column!r} to take the ids from; "
                f"its feature columns are: {', '.join(names or ())}"
            )
        j = names.index(args.id_column)
        X, names, id_values = np.delete(X, j, axis=0), names[:j] + names[j + 1 :], X[j]  # (n_x, m) without it, (m,)
    X = columns_by_name(X, names, saved.feature_names, args.data, f"the model {args.model}")
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
