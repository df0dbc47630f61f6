"""One streaming pass over a source: every value checked, the classes found, the standardisation computed."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..data import Standardizer
from ..errors import DataError
from ..labels import MAX_CLASSES, ClassTally, LabelMap, first_not_whole, shown
from .base import Source


class SourceSummary(NamedTuple):
    """What one pass over a source found: its size, its number of classes (at least 2), statistics, and the
    classes themselves (the label values in class-index order)."""

    m: int
    n_classes: int
    standardizer: Standardizer
    classes: tuple = ()


def scan(
    source: Source, n_classes: int | None = None, rows: int | None = None, classes=None, max_classes: int = MAX_CLASSES
) -> SourceSummary:
    """Check every value of `source` and compute its standardisation statistics, one chunk at a time.

    classes: the classes to map the labels with (the training source's, for a test source, which may lack
    some); None finds them in the labels, refusing what cannot be classes (`dnn.labels.ClassTally`: more than
    `max_classes`, more than a tenth of the examples, a stray). Raises DataError naming the file and row of
    the first NaN/inf feature, of the first label that is not a whole number or not one of the given
    classes, or of the first in a class beyond `n_classes` (the network's) when that is given. The mean and
    standard deviation are merged over chunks in float64 (Chan et al.'s pairwise update of Welford's sums),
    equal to `Standardizer.fit` on the whole array within float64 rounding. The summary is also kept as
    `source.checked`, which tells `fit` (`SourceBatches`) that the source has been checked.
    """
    mapping = None if classes is None else LabelMap(classes)
    tally = ClassTally(source.path, max_classes) if classes is None else None
    count, mean, m2 = 0, np.zeros(source.n_features), np.zeros(source.n_features)  # mean, m2: (n_x,)
    for start, X, y in source.chunks(rows):  # X (k, n_x), y (k,)
        check_rows(source, start, X, y, n_classes if mapping else None, mapping)
        if tally is not None:
            tally.add(y, start)
        k = X.shape[0]
        chunk_mean = X.mean(axis=0)  # (n_x,)
        chunk_m2 = np.square(X - chunk_mean).sum(axis=0)  # (n_x,)
        delta, total = chunk_mean - mean, count + k
        mean += delta * (k / total)
        m2 += chunk_m2 + np.square(delta) * (count * k / total)
        count = total
    if count == 0:
        raise DataError(f"{source.path} holds no examples")
    if tally is not None:
        classes = tally.classes(count, source.locate)
        if n_classes is not None and len(classes) > n_classes:  # name the first example of a class the network lacks
            row, value = min((tally.first[value], value) for value in classes[n_classes:])
            which = "" if LabelMap(classes).identity else f" (class {classes.index(value)} of {shown(classes)})"
            raise DataError(f"{source.locate(row)}: label {value}{which} is not a class index (0..{n_classes - 1})")
    else:
        classes = mapping.classes
    std = np.sqrt(m2 / count)  # (n_x,) population standard deviation, as numpy's std
    standardizer = Standardizer(mean.reshape(-1, 1), np.where(std > 0, std, 1.0).reshape(-1, 1))
    source.checked = SourceSummary(count, max(2, len(classes)), standardizer, classes)
    return source.checked


def check_rows(
    source: Source,
    start: int,
    X: np.ndarray,
    y: np.ndarray | None,
    n_classes: int | None = None,
    mapping: LabelMap | None = None,
) -> None:
    """DataError naming the file and row of the first NaN/inf in X (k, n_x) or bad label in y (k,).

    The rows are `source`'s from `start` on. Labels must be whole numbers; with `mapping`, one of its
    classes, else (taken as class indices) >= 0; and their class index below `n_classes` when that is given.
    y None checks the features only.
    """
    finite = np.isfinite(X)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise DataError(
            f"{source.locate(start + row)}: feature {_feature_name(source, column)} is {X[row, column]}; "
            "every feature must be a finite number"
        )
    if y is None:
        return
    if (row := first_not_whole(y)) is not None:
        raise DataError(f"{source.locate(start + row)}: label {y[row]:g} is not a whole number naming a class")
    if mapping is not None:
        indices, row = mapping.indices(y)
        if row is not None:
            raise mapping.refusal(source.locate(start + row), y[row])
    else:
        indices = y
    bad = (indices < 0) | (indices >= (n_classes if n_classes is not None else np.inf))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        allowed = f"0..{n_classes - 1}" if n_classes is not None else "0, 1, ..., C-1"
        raise DataError(f"{source.locate(start + row)}: label {y[row]:g} is not a class index ({allowed})")


def _feature_name(source: Source, column: int) -> str:
    return f"{column} ({source.feature_names[column]!r})" if source.feature_names else str(column)


def checked_features(source: Source, rows: int | None = None):
    """The features of `source`, X (k, n_x) float64 chunk by chunk (reused buffers), each checked for NaN/inf."""
    for start, X, _ in source.chunks(rows):
        check_rows(source, start, X, None)
        yield X
