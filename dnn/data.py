"""Data loaders returning arrays in the course's layout: X (n_x, m) float64, Y (1, m) labels.

Sources: the course's HDF5 image files (``train_set_x`` (m, 64, 64, 3) uint8, ``train_set_y``,
``list_classes``; flattened and scaled to [0, 1]), ``.npz`` files (``X`` and ``Y``), ``.csv`` files with a
header (the label column chosen by name), and the data sets scikit-learn ships (``breast_cancer``,
``digits``, ``iris``). Labels are class indices 0..C-1: binary ones feed a one-unit sigmoid output,
several classes a softmax output. h5py and scikit-learn are imported only when a loader needs them.
Every problem raises `dnn.errors.DataError` naming the file and what is wrong.
"""

from __future__ import annotations

import csv
import os
from typing import NamedTuple

import numpy as np

from .errors import DataError

#: Data sets scikit-learn ships, loadable by name.
BUILTIN = ("breast_cancer", "digits", "iris")


class Dataset(NamedTuple):
    """X (n_x, m) float64; Y (1, m) float64 class indices, or None when the source has no labels."""

    X: np.ndarray
    Y: np.ndarray | None
    classes: tuple | None = None  # class names, when the source has them
    label_name: str | None = None  # the CSV column the labels came from
    feature_names: tuple | None = None  # the name of each row of X, when the source names them (a CSV header)

    @property
    def n_classes(self) -> int:
        """Number of classes: len(classes) when named, else the largest label + 1 (at least 2)."""
        if self.classes is not None:
            return len(self.classes)
        return max(2, int(self.Y.max()) + 1) if self.Y is not None and self.Y.size else 2


def load(source: str, label_column: str | None = None, labels: bool = True) -> Dataset:
    """Load a built-in data set by name, or a .h5 / .npz / .csv file by path (see the module docstring).

    label_column: the CSV column holding the labels (default: the last column). labels=False loads
    features only (a CSV's label column is dropped when present), as prediction needs.
    """
    source = os.fspath(source)
    if source in BUILTIN:
        return load_builtin(source)
    ext = os.path.splitext(source)[1].lower()
    loaders = {".h5": load_h5, ".hdf5": load_h5, ".npz": load_npz}
    if ext == ".csv":
        return load_csv(source, label_column=label_column, labels=labels)
    if ext not in loaders:
        raise DataError(f"unknown data source {source!r}: use one of {', '.join(BUILTIN)} or a .h5, .npz or .csv file")
    return loaders[ext](source, labels=labels)


def load_builtin(name: str) -> Dataset:
    """One of scikit-learn's shipped data sets: breast_cancer (binary), digits (10 classes), iris (3 classes)."""
    if name not in BUILTIN:
        raise DataError(f"unknown built-in data set {name!r}; valid names: {', '.join(BUILTIN)}")
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise DataError(f"the built-in data sets need scikit-learn ({exc}); pip install 'dnn-engine[data]'") from None
    bunch = getattr(datasets, f"load_{name}")()
    X = np.asarray(bunch.data, dtype=np.float64).T  # (n_x, m): examples as columns
    Y = np.asarray(bunch.target, dtype=np.float64).reshape(1, -1)  # (1, m)
    return Dataset(X, Y, tuple(str(c) for c in bunch.target_names))


def load_h5(path: str, labels: bool = True) -> Dataset:
    """The course's image file: <split>_set_x (m, h, w, c) uint8 -> X (h·w·c, m) in [0, 1]; <split>_set_y -> Y (1, m)."""
    _require_file(path)
    try:
        import h5py
    except ImportError as exc:
        raise DataError(f"reading {path} needs h5py ({exc}); pip install 'dnn-engine[data]'") from None
    try:
        with h5py.File(path, "r") as f:
            x_keys = sorted(key for key in f.keys() if key.endswith("_set_x"))
            if len(x_keys) != 1:
                raise DataError(f"{path} has no single '<split>_set_x' dataset (keys: {', '.join(f.keys())}); expected the course's layout")
            y_key = x_keys[0][: -len("x")] + "y"
            images = np.asarray(f[x_keys[0]])
            y = np.asarray(f[y_key]) if labels and y_key in f else None
            if labels and y is None:
                raise DataError(f"{path} has {x_keys[0]} but no {y_key}")
            classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in f["list_classes"]) if "list_classes" in f else None
    except OSError as exc:
        raise DataError(f"{path} is not a readable HDF5 file: {exc}") from None
    if images.ndim < 2:
        raise DataError(f"{path}: {x_keys[0]} has shape {images.shape}; expected (m, ...) with one image per row")
    m = images.shape[0]
    X = images.reshape(m, -1).T.astype(np.float64)  # (h·w·c, m), as the course flattens
    if images.dtype == np.uint8:
        X /= 255.0
    return Dataset(_numeric(X, path, "X"), _labels(y, m, path), classes)


def load_npz(path: str, labels: bool = True) -> Dataset:
    """An .npz holding X (n_x, m) and Y ((1, m) or (m,)); rows-as-examples X (m, n_x) is transposed when Y's length says so."""
    _require_file(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # BadZipFile, ValueError (pickled object arrays), OSError
        raise DataError(f"{path} is not a readable .npz file: {type(exc).__name__}: {exc}") from None
    x_key = _key(arrays, ("X", "x"), path)
    X = np.asarray(arrays[x_key])
    if X.ndim != 2:
        raise DataError(f"{path}: {x_key} has shape {X.shape}; expected 2-D (n_x, m)")
    y = None
    if labels:
        y = np.asarray(arrays[_key(arrays, ("Y", "y"), path)]).reshape(-1)
        if X.shape[1] != y.size and X.shape[0] == y.size:
            X = X.T  # stored with examples as rows
    return Dataset(_numeric(X, path, x_key), _labels(y, X.shape[1], path), None)


def load_csv(path: str, label_column: str | None = None, labels: bool = True) -> Dataset:
    """A CSV with a header row: every column a numeric feature except `label_column` (default: the last).

    With labels=False the label column is dropped when the file has it (a file to predict on may not).
    """
    _require_file(path)
    try:
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f) if row]  # blank lines skipped
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(rows) < 2:
        raise DataError(f"{path} needs a header row and at least one data row")
    header = [name.strip() for name in rows[0]]
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}, line {i}: {len(row)} values, but the header has {len(header)} columns")
    if labels and label_column is not None and label_column not in header:
        raise DataError(f"{path} has no column {label_column!r}; its columns are: {', '.join(header)}")
    if labels:
        label_index = header.index(label_column) if label_column is not None else len(header) - 1
    else:
        label_index = header.index(label_column) if label_column in header else None
    values = _parse_numbers(rows[1:], header, path)  # (m, columns)
    X = _numeric(values[:, [j for j in range(len(header)) if j != label_index]].T, path, "X")  # (n_x, m)
    Y = _labels(values[:, label_index], X.shape[1], path) if labels else None
    names = tuple(name for j, name in enumerate(header) if j != label_index)
    return Dataset(X, Y, None, header[label_index] if label_index is not None else None, names)


# ---------------------------------------------------------------------------------------------- splits and scaling
def split_indices(m: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) column indices: a permutation of range(m) drawn with `seed`, its last `test_fraction` held out."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    n_test = int(round(m * test_fraction))
    if n_test < 1 or n_test >= m:
        raise DataError(f"cannot hold out {test_fraction:.0%} of {m} examples as a test set")
    order = np.random.default_rng(seed).permutation(m)  # (m,)
    return order[: m - n_test], order[m - n_test :]


def train_test_split(X, Y, test_fraction: float = 0.2, seed: int = 0):
    """(X_train, Y_train, X_test, Y_test): the columns split by `split_indices` (same seed, same split)."""
    train, test = split_indices(X.shape[1], test_fraction, seed)
    return X[:, train], Y[:, train], X[:, test], Y[:, test]


class Standardizer(NamedTuple):
    """Per-feature mean and standard deviation, (n_x, 1) each, fitted on training data only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X) -> "Standardizer":
        """Fit on X (n_x, m); features that never vary get std 1, so they map to 0 instead of NaN."""
        mean = X.mean(axis=1, keepdims=True)  # (n_x, 1)
        std = X.std(axis=1, keepdims=True)  # (n_x, 1)
        return cls(mean, np.where(std > 0, std, 1.0))

    def transform(self, X) -> np.ndarray:
        """(X - mean) / std, X (n_x, m)."""
        if X.shape[0] != self.mean.shape[0]:
            raise DataError(f"the data has {X.shape[0]} features, the standardisation was fitted on {self.mean.shape[0]}")
        return (X - self.mean) / self.std


# ---------------------------------------------------------------------------------------------- checks
def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise DataError(f"data file {path} does not exist")


def _key(arrays: dict, candidates, path: str) -> str:
    for key in candidates:
        if key in arrays:
            return key
    raise DataError(f"{path} has no {' or '.join(candidates)} array; it holds: {', '.join(arrays) or 'nothing'}")


def _numeric(X: np.ndarray, path: str, name: str) -> np.ndarray:
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: {name} has dtype {X.dtype}, which is not numeric")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise DataError(f"{path}: {name} holds {int((~np.isfinite(X)).sum())} NaN or infinite value(s)")
    return X


def _labels(y, m: int, path: str) -> np.ndarray | None:
    """Labels as (1, m) float64 class indices, checked: numeric, whole, >= 0, one per example."""
    if y is None:
        return None
    y = np.asarray(y).reshape(-1)
    if y.size != m:
        raise DataError(f"{path}: {y.size} labels for {m} examples; X and Y must have the same number of examples")
    y = _numeric(y, path, "the labels")
    if np.any(y != np.round(y)) or np.any(y < 0):
        raise DataError(f"{path}: labels must be class indices 0, 1, ..., C-1; found {np.unique(y)[:6]}")
    return y.reshape(1, m)


def _parse_numbers(rows, header, path: str) -> np.ndarray:
    """The CSV's data rows as a float64 (m, columns) array; the first non-number names its line and column."""
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError as exc:
        bad = ((i, name, cell) for i, row in enumerate(rows, start=2) for name, cell in zip(header, row) if not _is_number(cell))
        first = next(bad, None)
        where = f"line {first[0]}, column {first[1]!r}: {first[2]!r} is not a number" if first else str(exc)
        raise DataError(f"{path}, {where}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
