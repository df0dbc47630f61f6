"""Class labels: the user's label values, their class indices, and the checks that they name classes at all.

The classes of a data set are the distinct label values of its training data, in increasing order; class
index i stands for the i-th of them. Labels 3, 7, 9 are the classes 0, 1, 2 of a 3-class problem, years 2019,
2020, 2021 too, and labels 0, 1 stay 0, 1. Data scored against a trained model is mapped with the model's
classes, never its own: a test set may lack a class. Classes given as names (the course's ``list_classes``,
scikit-learn's ``target_names``) come with labels that are already their indices.

A set of label values that cannot be classes is refused (`ClassTally.classes`): more than `MAX_CLASSES`
distinct values, more classes than a tenth of the examples, or a value seen once where every other class is
common (a stray label, such as one 5000000 among 450 labels 0 and 1).
"""

from __future__ import annotations

import numpy as np

from .errors import DataError

#: The most classes an output may have unless the caller allows more (`max_classes=`).
MAX_CLASSES = 1000
#: Labels are stored as int64 on disk and compared as float64: whole numbers up to 2**53 are exact in both.
LARGEST_LABEL = 2.0**53
#: A value seen once is a stray when the other classes have at least this many examples each on average.
STRAY_RATIO = 10


def first_not_whole(y: np.ndarray) -> int | None:
    """Position of the first label in y (k,) that is not a whole number within ±2**53 (None: all are)."""
    bad = ~np.isfinite(y) | (y != np.round(y)) | (np.abs(y) > LARGEST_LABEL)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def shown(values, limit: int = 6) -> str:
    """Up to `limit` of `values` for a message: 'a, b, c' or 'a, b, c, ..., y, z'."""
    values = [_plain(v) for v in values]
    if len(values) > limit:
        values = values[: limit - 2] + ["..."] + values[-2:]
    return ", ".join(str(v) for v in values)


def _plain(value):
    """A label as a plain Python int (whole numbers) or str: what a model file's JSON keeps exactly."""
    if isinstance(value, (str, bytes)):
        return value.decode() if isinstance(value, bytes) else value
    return int(value) if float(value) == round(float(value)) else float(value)


class ClassTally:
    """The distinct label values met so far across chunks, with how often and where each was first met.

    add(y, start) for consecutive chunks; classes(m, locate) then checks and returns them. Stops with a
    DataError as soon as more than `max_classes` values are met, so a column of measurements is not
    tallied to the end.
    """

    def __init__(self, where: str, max_classes: int = MAX_CLASSES):
        self.where, self.max_classes = where, max_classes
        self.counts: dict = {}  # value -> examples with that label
        self.first: dict = {}  # value -> the first example (position in the data set) with that label

    def add(self, y: np.ndarray, start: int = 0) -> None:
        """Tally the whole-number labels y (k,) of examples start..start+k-1."""
        values, first, counts = np.unique(y, return_index=True, return_counts=True)  # (d,) each
        for value, position, count in zip(values.tolist(), first.tolist(), counts.tolist()):
            if value not in self.counts:
                self.counts[value], self.first[value] = 0, start + position
            self.counts[value] += count
        if len(self.counts) > self.max_classes:
            raise DataError(
                f"{self.where}: more than {self.max_classes} distinct labels ({shown(sorted(self.counts))}); "
                f"labels must name classes (at most {self.max_classes}), not measurements or IDs"
            )

    def classes(self, m: int, locate=lambda i: f"example {i}") -> tuple:
        """The sorted distinct values as plain Python numbers, after refusing sets that cannot be classes.

        m: the number of examples tallied; locate(i): where example i is, for the message naming a stray.
        """
        values = sorted(self.counts)
        k = len(values)
        if k > 2 and 10 * k > m:
            raise DataError(
                f"{self.where}: {k} distinct labels ({shown(values)}) for {m} examples, more classes than a "
                "tenth of the examples; labels must name classes, not measurements or IDs"
            )
        strays = [v for v in values if self.counts[v] == 1]
        if k > 1 and len(strays) == 1 and m - 1 >= STRAY_RATIO * (k - 1):
            (stray,) = strays
            others = [v for v in values if v != stray]
            raise DataError(
                f"{locate(self.first[stray])}: label {_plain(stray)} appears only once, while the other "
                f"{m - 1} examples are labelled {shown(others)}: a stray label? Fix or remove that example"
            )
        return tuple(_plain(v) for v in values)


class LabelMap:
    """Class values (`classes`, in class-index order) to class indices: `indices(y)`.

    Numeric classes map each label to its position among them; names (any class that is a string) mean the
    labels are the indices already, checked to be below their number.
    """

    def __init__(self, classes):
        self.classes = tuple(_plain(c) for c in classes)
        self.named = any(isinstance(c, str) for c in self.classes)
        self.values = None if self.named else np.asarray(self.classes, dtype=np.float64)  # (K,) increasing
        if self.values is not None and np.any(np.diff(self.values) <= 0):
            raise DataError(f"the classes {shown(self.classes)} are not distinct values in increasing order")
        # labels that are their own indices (0..K-1, or names) need no lookup: 0/1 data reads as it always did
        self.identity = self.named or np.array_equal(self.values, np.arange(len(self.classes)))

    def indices(self, y: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, int | None]:
        """(class indices of the labels y (k,) as float64 (k,), position of the first label that is no class or None).

        out: where to write the indices (may be y itself); the positions of labels that are no class hold junk.
        """
        out = np.empty(y.shape) if out is None else out
        if self.identity:
            bad = (y < 0) | (y >= len(self.classes)) | (y != np.round(y))
            np.copyto(out, y)
        else:
            position = np.minimum(np.searchsorted(self.values, y), len(self.values) - 1)  # (k,)
            bad = self.values[position] != y
            np.copyto(out, position)
        return out, (int(np.flatnonzero(bad)[0]) if bad.any() else None)

    def refusal(self, where: str, label) -> DataError:
        """The error for a label that is none of the classes, at `where`."""
        if self.named:
            return DataError(
                f"{where}: label {_plain(label)} is not a class index 0..{len(self.classes) - 1} "
                f"(classes {shown(self.classes)})"
            )
        return DataError(f"{where}: label {_plain(label)} is not one of the classes trained on ({shown(self.classes)})")


def encode(
    y: np.ndarray, where: str, classes=None, max_classes: int = MAX_CLASSES, locate=None
) -> tuple[np.ndarray, tuple]:
    """(class indices (m,) float64, classes) of the whole-number labels y (m,).

    classes None: the classes are y's distinct values (`ClassTally`, checked); given (a model's, the training
    data's), each label must be one of them. locate(i) names example i in errors (default 'example i').
    """
    locate = locate or (lambda i: f"{where}, example {i}")
    if classes is None:
        tally = ClassTally(where, max_classes)
        tally.add(y)
        classes = tally.classes(y.size, locate)
    mapping = LabelMap(classes)
    indices, bad = mapping.indices(y)
    if bad is not None:
        raise mapping.refusal(locate(bad), y[bad])
    return indices, mapping.classes


def label_values(indices: np.ndarray, classes) -> np.ndarray:
    """The labels (k,) float64 that `encode` maps to the class indices (k,) under `classes`: its inverse.

    Named classes (and None: no mapping known) keep their indices, as their labels are the indices already.
    """
    mapping = LabelMap(classes) if classes is not None else None
    if mapping is None or mapping.identity:
        return np.asarray(indices, dtype=np.float64)
    return mapping.values[np.asarray(indices, dtype=np.int64)]
