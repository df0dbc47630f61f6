"""A data file's feature columns matched to those a model was trained on, by name."""

from __future__ import annotations

import sys

from ..errors import DataError


def columns_by_name(X, names, expected, source: str, trained_on: str):
    """X (n_x, m) with its rows put in the order of the feature names `expected`.

    Without names on either side the rows are taken by position, and a note on stderr says so.
    Missing or extra names raise DataError listing them.
    """
    if names is None or expected is None:
        if names is not None or expected is not None:
            unnamed = trained_on if expected is None else source
            print(
                f"note: {unnamed} has no feature names (an older model file, or data without a header), "
                f"so the columns of {source} are matched to {trained_on} by position",
                file=sys.stderr,
            )
        return X
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise DataError(f"{source} names more than one column {', '.join(duplicated)}; column names must be unique")
    missing = [name for name in expected if name not in names]
    extra = [name for name in names if name not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"not used by it: {', '.join(extra)}"] if extra else []
        )
        raise DataError(f"the columns of {source} do not match those of {trained_on}: {'; '.join(parts)}")
    return X[[names.index(name) for name in expected]]  # (n_x, m) in the model's feature order
