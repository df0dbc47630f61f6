"""Data loaders returning arrays in the course's layout: X (n_x, m) float64, Y (1, m) labels.

Sources: the course's HDF5 image files (``train_set_x`` (m, 64, 64, 3) uint8, ``train_set_y``,
``list_classes``; flattened and scaled to [0, 1]), ``.npz`` files (``X`` and ``Y``), ``.csv`` files with a
header (the label column chosen by name), and the data sets scikit-learn ships (``breast_cancer``,
``digits``, ``iris``). Labels are class indices 0..C-1: binary ones feed a one-unit sigmoid output,
several classes a softmax output. Labels are the user's class values (whole numbers: 0/1, 3/7/9, years),
mapped to class indices 0..K-1 in increasing order (`dnn.labels`); `Dataset.classes` holds the values, so
that a model can answer in them. h5py and scikit-learn are imported only when a loader needs them.
Every problem raises `dnn.errors.DataError` naming the file and what is wrong.
"""

from __future__ import annotations

import csv
import itertools
import os
import stat
from typing import NamedTuple

import numpy as np

from .errors import DataError, install_hint
from .labels import MAX_CLASSES, encode, first_not_whole

#: Data sets scikit-learn ships, loadable by name.
BUILTIN = ("breast_cancer", "digits", "iris")


class Dataset(NamedTuple):
    """X (n_x, m) float64; Y (1, m) float64 class indices, or None when the source has no labels."""

    X: np.ndarray
    Y: np.ndarray | None
    classes: tuple | None = None  # class i's label value (or name): Y == i where the file said classes[i]
    label_name: str | None = None  # the CSV column the labels came from
    feature_names: tuple | None = None  # the name of each row of X, when the source names them (a CSV header)

    @property
    def n_classes(self) -> int:
        """Number of classes: len(classes) when known, else the largest label + 1 (at least 2)."""
        if self.classes is not None:
            return max(2, len(self.classes))
        return max(2, int(self.Y.max()) + 1) if self.Y is not None and self.Y.size else 2


def load(
    source: str, label_column: str | None = None, labels: bool = True, classes=None, max_classes: int = MAX_CLASSES
) -> Dataset:
    """Load a built-in data set by name, or a .h5 / .npz / .csv file by path (see the module docstring).

    label_column: the CSV column holding the labels (default: the last column). labels=False loads
    features only (a CSV's label column is dropped when present), as prediction needs. classes: the
    classes to map the labels with (the training data's or a model's `Dataset.classes`; a test set may lack
    some); None finds them in the labels, refusing more than `max_classes` (see `dnn.labels`).
    """
    source = os.fspath(source)
    if source in BUILTIN:
        return load_builtin(source)
    if os.path.lexists(source):
        require_regular_file(source)  # a directory, FIFO or device is named as such, whatever its name ends in
    ext = os.path.splitext(source)[1].lower()
    loaders = {".h5": load_h5, ".hdf5": load_h5, ".npz": load_npz, ".csv": load_csv}
    if ext not in loaders:
        found = "" if os.path.exists(source) else " (no such file or directory)"
        raise DataError(
            f"unknown data source {source!r}{found}: use one of {', '.join(BUILTIN)}, a .h5, .npz or .csv file, "
            "or a directory of .npy files (python -m dnn convert)"
        )
    options = dict(label_column=label_column) if ext == ".csv" else {}
    return loaders[ext](source, labels=labels, classes=classes, max_classes=max_classes, **options)


def load_builtin(name: str) -> Dataset:
    """One of scikit-learn's shipped data sets: breast_cancer (binary), digits (10 classes), iris (3 classes)."""
    if name not in BUILTIN:
        raise DataError(f"unknown built-in data set {name!r}; valid names: {', '.join(BUILTIN)}")
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise DataError(f"the built-in data sets need scikit-learn ({exc}); {install_hint('data')}") from None
    bunch = getattr(datasets, f"load_{name}")()
    X = np.asarray(bunch.data, dtype=np.float64).T  # (n_x, m): examples as columns
    Y = np.asarray(bunch.target, dtype=np.float64).reshape(1, -1)  # (1, m)
    return Dataset(X, Y, tuple(str(c) for c in bunch.target_names))


def load_h5(path: str, labels: bool = True, classes=None, max_classes: int = MAX_CLASSES) -> Dataset:
    """The course's image file: <split>_set_x (m, h, w, c) uint8 -> X (h·w·c, m) in [0, 1]; <split>_set_y -> Y (1, m)."""
    require_regular_file(path)
    try:
        import h5py
    except ImportError as exc:
        raise DataError(f"reading {path} needs h5py ({exc}); {install_hint('data')}") from None
    try:
        with h5py.File(path, "r") as f:
            x_keys = sorted(key for key in f.keys() if key.endswith("_set_x"))
            if len(x_keys) != 1:
                raise DataError(
                    f"{path} has no single '<split>_set_x' dataset (keys: {', '.join(f.keys())}); expected the course's layout"
                )
            y_key = x_keys[0][: -len("x")] + "y"
            images = np.asarray(f[x_keys[0]])
            y = np.asarray(f[y_key]) if labels and y_key in f else None
            if labels and y is None:
                raise DataError(f"{path} has {x_keys[0]} but no {y_key}")
            names = (
                tuple(c.decode() if isinstance(c, bytes) else str(c) for c in f["list_classes"])
                if "list_classes" in f
                else None
            )
    except OSError as exc:
        raise DataError(f"{path} is not a readable HDF5 file: {exc}") from None
    if images.ndim < 2:
        raise DataError(f"{path}: {x_keys[0]} has shape {images.shape}; expected (m, ...) with one image per row")
    m = images.shape[0]
    X = images.reshape(m, -1).T.astype(np.float64)  # (h·w·c, m), as the course flattens
    if images.dtype == np.uint8:
        X /= 255.0
    Y, classes = _labels(y, m, path, names if classes is None else classes, max_classes)  # names: y holds their indices
    return Dataset(_numeric(X, path, "X"), Y, classes)


def load_npz(path: str, labels: bool = True, classes=None, max_classes: int = MAX_CLASSES) -> Dataset:
    """An .npz holding X (n_x, m) and Y ((1, m) or (m,)); rows-as-examples X (m, n_x) is transposed when Y's length says so."""
    require_regular_file(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except MemoryError:
        raise MemoryError(
            f"out of memory while reading {path}: its arrays need more memory than is available"
        ) from None
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
    Y, classes = _labels(y, X.shape[1], path, classes, max_classes)
    return Dataset(_numeric(X, path, x_key), Y, classes)


def load_csv(
    path: str, label_column: str | None = None, labels: bool = True, classes=None, max_classes: int = MAX_CLASSES
) -> Dataset:
    """A CSV with a header row: every column a numeric feature except `label_column` (default: the last).

    With labels=False the label column is dropped when the file has it (a file to predict on may not).
    classes, max_classes: as in `load`.
    Parsed by numpy.loadtxt's C parser in blocks of `CSV_BLOCK_ROWS` lines written straight into X, so the
    peak memory is the final arrays plus one block.
    """
    table = CsvTable.open(path, label_column, labels)
    m_max = _count_lines(path) - table.data_line + 1  # an upper bound: blank lines are counted too
    X = np.empty((table.n_features, m_max))  # (n_x, m_max), trimmed to (n_x, m) below
    Y = np.empty(m_max) if table.labels else None  # (m_max,)
    m = 0
    for block in table.blocks():
        k = block.features.shape[0]
        X[:, m : m + k] = block.features.T  # (n_x, k)
        if Y is not None:
            Y[m : m + k] = block.labels
        m += k
    if m == 0:
        raise DataError(f"{path} needs a header row and at least one data row")
    label_name = table.header[table.label_index] if table.label_index is not None else None
    Y, classes = _labels(None if Y is None else Y[:m], m, path, classes, max_classes, locate=table.locate)  # (1, m)
    return Dataset(_first_columns(X, m), Y, classes, label_name, table.feature_names)


#: Lines parsed per numpy.loadtxt call: large enough that the per-call cost vanishes, small enough that a
#: block's strings and values (~3 MB for 30 columns) stay far below the data set itself.
CSV_BLOCK_ROWS = 8192


class CsvBlock(NamedTuple):
    """Consecutive data rows of a CSV: features (k, n_x) and labels (k,) float64, and the line of each row."""

    features: np.ndarray
    labels: np.ndarray | None
    chars_read: int  # characters of the file read up to this block's end (its bytes, for ASCII): for progress bars
    lines: np.ndarray  # (k,) the file's line number of each row (blank lines are no rows)


class CsvTable:
    """A CSV file's header, checked, and a reader of its data rows in blocks (`blocks`), each validated.

    Every problem raises DataError naming the file, the line and the column: a first row that is all
    numbers (no header), a column name used twice, a ragged row, a cell that is not a number, a NaN or
    infinite feature, a label that is not a whole number. Blank and whitespace-only lines are skipped; lines
    may end in LF, CR LF or CR alone.
    """

    def __init__(self, path: str, header: list, data_line: int, label_index: int | None, labels: bool, encoding: str):
        self.path, self.header, self.data_line, self.encoding = path, header, data_line, encoding
        self.label_index = label_index  # the label column, or the column dropped when labels=False
        self.labels = labels  # whether the label column is read (and checked) or only dropped
        self.feature_index = [j for j in range(len(header)) if j != label_index]
        self.feature_names = tuple(header[j] for j in self.feature_index)
        self.n_features = len(self.feature_index)

    @classmethod
    def open(cls, path: str, label_column: str | None = None, labels: bool = True) -> "CsvTable":
        """Read and check the header of the CSV at `path`; `label_column`/`labels` as in `load_csv`."""
        require_regular_file(path)
        encoding = "utf-8-sig"  # a byte-order mark is not part of the first column's name
        try:
            with open(path, newline="", encoding=encoding) as f:
                for line_number, line in enumerate(f, start=1):
                    if line.strip():
                        break
                else:
                    raise DataError(f"{path} needs a header row and at least one data row")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        header = [name.strip() for name in next(csv.reader([line]))]
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated:
            raise DataError(
                f"{path}: the header names more than one column {', '.join(map(repr, duplicated))}; "
                "column names must be unique"
            )
        if all(_is_number(name) for name in header):
            raise DataError(
                f"{path}: the first line ({line.strip()[:60]!r}) is all numbers, so the file has no header row; "
                f"add a first line naming the columns (e.g. {','.join(_example_names(len(header)))}) -- "
                "otherwise its first example would be taken for the column names"
            )
        if labels and label_column is not None and label_column not in header:
            raise DataError(f"{path} has no column {label_column!r}; its columns are: {', '.join(header)}")
        if labels:
            label_index = header.index(label_column) if label_column is not None else len(header) - 1
        else:
            label_index = header.index(label_column) if label_column in header else None
        return cls(path, header, line_number + 1, label_index, labels, encoding)

    def blocks(self, rows: int = CSV_BLOCK_ROWS):
        """The data rows as `CsvBlock`s of up to `rows` lines each (blank lines are skipped), checked."""
        for lines, numbers, chars in self._data_lines(rows):
            yield self._checked_block(self._parse(lines, numbers), numbers, chars)

    def _data_lines(self, rows: int):
        """(data lines, their line numbers (k,), characters read so far) for each run of `rows` lines of the file
        after the header; runs of nothing but blank lines are left out."""
        try:
            with open(self.path, newline="", encoding=self.encoding) as f:  # newline="": a CR alone ends a line too
                for _ in range(self.data_line - 1):
                    f.readline()
                line_number, chars = self.data_line, 0
                while lines := list(itertools.islice(f, rows)):
                    chars += sum(map(len, lines))
                    kept = [
                        i for i, line in enumerate(lines) if line.strip()
                    ]  # blank and whitespace-only lines are no rows
                    if kept:
                        yield [lines[i] for i in kept], line_number + np.array(kept), chars
                    line_number += len(lines)
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {self.path}: {exc}") from None

    def locate(self, row: int) -> str:
        """'FILE, line N' of data row `row` (0-based, blank lines not counted), for messages about one example."""
        for lines, numbers, _ in self._data_lines(CSV_BLOCK_ROWS):
            if row < len(numbers):
                return f"{self.path}, line {numbers[row]}"
            row -= len(numbers)
        raise IndexError(f"{self.path} has fewer data rows than {row}")

    def _parse(self, lines: list, numbers: np.ndarray) -> np.ndarray:
        span = f"{self.path}, lines {numbers[0]}-{numbers[-1]}"
        try:
            values = np.loadtxt(lines, delimiter=",", dtype=np.float64, comments=None, quotechar='"', ndmin=2)
        except ValueError as exc:
            raise self._first_bad_cell(lines, numbers) or DataError(f"{span}: {exc}") from None
        if values.shape[1] != len(self.header):
            raise self._first_bad_cell(lines, numbers) or DataError(
                f"{span}: {values.shape[1]} values a row, but the header has {len(self.header)} columns"
            )
        return values

    def _first_bad_cell(self, lines: list, numbers: np.ndarray) -> DataError | None:
        """The error for the first ragged row or non-number among `lines` (None if Python reads them all)."""
        for i, row in zip(numbers.tolist(), csv.reader(lines)):
            if len(row) != len(self.header):
                return DataError(
                    f"{self.path}, line {i}: {len(row)} values, but the header has {len(self.header)} columns"
                )
            for name, cell in zip(self.header, row):
                if not _is_number(cell):
                    return DataError(f"{self.path}, line {i}, column {name!r}: {cell!r} is not a number")
        return None

    def _checked_block(self, values: np.ndarray, numbers: np.ndarray, chars_read: int) -> CsvBlock:
        features = values[:, self.feature_index] if self.label_index is not None else values  # (k, n_x)
        labels = values[:, self.label_index] if self.labels else None  # (k,)
        if not np.isfinite(values).all():
            row, column = (int(i) for i in np.argwhere(~np.isfinite(values))[0])
            raise DataError(
                f"{self.path}, line {numbers[row]}, column {self.header[column]!r}: "
                f"{values[row, column]} is not a finite number"
            )
        if labels is not None and (row := first_not_whole(labels)) is not None:
            raise DataError(
                f"{self.path}, line {numbers[row]}, column {self.header[self.label_index]!r}: "
                f"labels must be whole numbers naming classes; found {labels[row]:g}"
            )
        return CsvBlock(features, labels, chars_read, numbers)


def _count_lines(path: str) -> int:
    """Lines in the file at `path`, ended by LF, CR LF or CR alone (a last line without an end counted), read in 1 MiB blocks."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            # a CR LF counts once: as its LF, also when the CR ended the previous block
            count += (
                block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n") - (last == b"\r" and block[:1] == b"\n")
            )
            last = block[-1:]
    return count + (last not in b"\r\n")


def _first_columns(X: np.ndarray, m: int) -> np.ndarray:
    """X[:, :m] as a C-contiguous (n_x, m) array made in X's own memory (no second copy of the data set).

    Row j moves from offset j·M to j·m of the flat buffer (M = X.shape[1] >= m); rows move in increasing j,
    so a row is never overwritten before it has moved.
    """
    n_x, M = X.shape
    if m == M:
        return X
    flat = X.reshape(-1)  # (n_x·M,) view
    for j in range(1, n_x):
        flat[j * m : (j + 1) * m] = X[j, :m]  # overlapping ranges: numpy copies through a buffer
    return flat[: n_x * m].reshape(n_x, m)


def _example_names(n: int) -> list:
    return [f"x{j}" for j in range(1, n)][:3] + (["..."] if n > 4 else []) + ["label"]


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
            raise DataError(
                f"the data has {X.shape[0]} features, the standardisation was fitted on {self.mean.shape[0]}"
            )
        return (X - self.mean) / self.std


# ---------------------------------------------------------------------------------------------- checks
def require_regular_file(path: str, what: str = "data file") -> None:
    """DataError unless `path` is a regular file: one that does not exist, and a directory, FIFO or device
    (which reading would hang on or never finish), are each named as what they are."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise DataError(f"{what} {path} is not a regular file (it is {kind})")


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


def _labels(y, m: int, path: str, classes, max_classes: int, locate=None) -> tuple[np.ndarray | None, tuple | None]:
    """(Y (1, m) float64 class indices, classes) of the labels y, checked: numeric, whole, one per example.

    classes None: found in y (`dnn.labels.encode`); given: y is mapped with them. y None gives (None, classes).
    """
    if y is None:
        return None, classes
    y = np.asarray(y).reshape(-1)
    if y.size != m:
        raise DataError(f"{path}: {y.size} labels for {m} examples; X and Y must have the same number of examples")
    y = _numeric(y, path, "the labels")
    if (row := first_not_whole(y)) is not None:
        raise DataError(f"{path}: labels must be whole numbers naming classes; found {y[row]:g} (example {row})")
    indices, classes = encode(y, path, classes, max_classes, locate)
    return indices.reshape(1, m), classes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
