"""Data sets larger than memory: examples stored as rows on disk, read a slice at a time.

`open_source(path)` opens one of (examples are rows, so gathering a shuffled mini-batch reads whole rows):

- a directory holding ``X.npy`` (m, n_x) and ``Y.npy`` (m,) -- what ``python -m dnn convert`` writes --
  or the path of such an ``X.npy`` itself;
- a directory of shards ``X_0.npy, Y_0.npy, X_1.npy, Y_1.npy, ...`` (numbered from 0, any number of rows
  each, the same features and dtype), read as one data set in shard order;
- an ``.h5``/``.hdf5`` file with datasets ``X`` (m, n_x) and ``Y`` (m,), X read with positioned reads where
  HDF5 stored its rows uncompressed (else with h5py), Y read into memory.

Labels are the user's class values (whole numbers, as `dnn.labels` describes): `scan` finds the classes of
a training source (or maps a test source with the training data's), and batches and scores carry class
indices 0..K-1. Feature names, when present, come from ``features.json`` beside the ``.npy``
files (``{"feature_names": [...], "label_name": ...}``) or the ``X`` dataset's attributes in an ``.h5``.

Features in ``.npy`` files are read with positioned reads (``os.preadv`` into the caller's buffer, one call
per run of consecutive rows), not mapped: the process's address space and resident memory never hold more
than the buffers, so a file far larger than memory (or than an ``RLIMIT_AS`` limit) trains; the OS page
cache keeps what fits. Labels, one number a row, are memory-mapped read-only, so that a mini-batch's labels
are gathered without a system call each. Every problem -- a truncated file, a shard that does not match, a NaN, a label outside
the classes -- raises `dnn.errors.DataError` naming the file and, for values, the row.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from .data import Standardizer, require_regular_file
from .errors import DataError, install_hint
from .labels import MAX_CLASSES, ClassTally, LabelMap, first_not_whole, shown
from .propagation import Batch
from .validation import check_count, resolve_dtype

#: Bytes of features read per chunk by `Source.chunks` (and so by `scan`): large enough for few reads,
#: small enough that a chunk and its float64 temporaries stay well below any data set worth streaming.
CHUNK_BYTES = 16 << 20


class Source:
    """Examples on disk: `m` rows of `n_features` numbers, with one class-index label each.

    Subclasses implement `read_rows` and `locate`; `chunks` streams the whole set in order.
    """

    path: str
    m: int
    n_features: int
    feature_names: tuple | None = None
    label_name: str | None = None
    dtype: np.dtype = np.dtype(np.float64)  # how the features are stored: rows read in this dtype convert nothing
    checked: "SourceSummary | None" = None  # what `scan` found in this source, so that `fit` need not read it again

    def read_rows(self, index, X_out: np.ndarray, y_out: np.ndarray | None) -> None:
        """Gather rows `index` ((k,) ints in [0, m), any order) into X_out (k, n_features) and y_out (k,).

        X_out and y_out are the caller's float arrays (converted on the way); y_out None skips the labels.
        """
        raise NotImplementedError

    def locate(self, row: int) -> str:
        """'FILE, row R' for the data set's `row`: the file that holds it and its row there (for messages)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the open files."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def chunk_rows(self) -> int:
        """Rows per chunk in `chunks`: `CHUNK_BYTES` of float64 features."""
        return max(1, CHUNK_BYTES // (8 * max(1, self.n_features)))

    def chunks(self, rows: int | None = None):
        """(start, X (k, n_features) float64, y (k,) float64) for consecutive chunks of up to `rows` rows.

        The arrays are reused: each is valid until the next chunk is requested.
        """
        rows = self.chunk_rows() if rows is None else check_count(rows, "rows", minimum=1)
        X, y = np.empty((min(rows, self.m), self.n_features)), np.empty(min(rows, self.m))
        for start in range(0, self.m, rows):
            k = min(rows, self.m - start)
            self.read_rows(np.arange(start, start + k), X[:k], y[:k])
            yield start, X[:k], y[:k]

    def _check_index(self, index) -> np.ndarray:
        index = np.asarray(index)
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise ValueError(f"row index must be a 1-D integer array, got shape {index.shape} and dtype {index.dtype}")
        if index.size and (index.min() < 0 or index.max() >= self.m):
            raise IndexError(f"row index out of range: {self.path} has rows 0..{self.m - 1}, asked for {index.min()}..{index.max()}")
        return index


# ---------------------------------------------------------------------------------------------- .npy files
class _NpyFile:
    """One .npy file's header, checked against its size, and positioned reads of its rows."""

    def __init__(self, path: str, ndims: tuple):
        self.path = path
        require_regular_file(path)  # opening a FIFO would wait for a writer
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in readers:
                    raise ValueError(f"unsupported .npy format version {version}")
                shape, fortran, dtype = readers[version](f)
                self.offset = f.tell()
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        except ValueError as exc:
            raise DataError(f"{path} is not a readable .npy file: {exc}") from None
        if len(shape) not in ndims or dtype.hasobject or dtype.kind not in "biuf":
            raise DataError(f"{path} holds a {dtype} array of shape {shape}; expected a numeric array with {' or '.join(map(str, ndims))} dimensions")
        if fortran and len(shape) == 2 and shape[1] > 1:
            raise DataError(f"{path} is stored in Fortran order, so its rows are not contiguous; "
                            "save it with np.save(path, np.ascontiguousarray(X))")
        self.shape, self.dtype = shape, dtype
        self.row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        needed = self.offset + shape[0] * self.row_bytes
        size = os.path.getsize(path)
        if size < needed:
            raise DataError(f"{path} is truncated: its header says {shape} {dtype} ({needed} bytes with the header), "
                            f"but the file has {size} bytes")
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, index: np.ndarray, out: np.ndarray, positions: np.ndarray | None = None) -> None:
        """Rows `index` (k,) into rows `positions` (k,) of `out` (default 0..k-1), of this file's dtype, C-contiguous."""
        _pread_rows(self.fd, self.path, self.offset + index.astype(np.int64) * self.row_bytes, self.row_bytes, out, positions)

    def mapped(self) -> np.ndarray:
        """The whole array, memory-mapped read-only: for the labels, whose gathers then need no system call.

        Labels are a small fraction of the features' bytes (one number a row against n_x), so their mapping
        costs little address space; the features themselves are never mapped.
        """
        if self.shape[0] == 0:
            return np.empty(self.shape, self.dtype)
        return np.memmap(self.path, self.dtype, "r", self.offset, self.shape)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _pread_rows(fd: int, path: str, offsets: np.ndarray, row_bytes: int, out: np.ndarray, positions=None) -> None:
    """Rows starting at file `offsets` ((k,) bytes) into rows `positions` (k,) of `out` (default 0..k-1, C-contiguous).

    One positioned read per run of rows that follow each other both in the file and in `out`.
    """
    if not len(offsets):
        return
    raw = memoryview(out.reshape(-1).view(np.uint8))  # out's bytes, row after row
    positions = np.arange(len(offsets)) if positions is None else positions
    # runs [starts[i], starts[i] + lengths[i]) whose rows follow each other in the file and in out
    starts = np.flatnonzero(np.concatenate(([True], (np.diff(offsets) != row_bytes) | (np.diff(positions) != 1))))
    lengths = np.diff(np.append(starts, len(offsets))) * row_bytes
    targets = positions[starts].astype(np.int64) * row_bytes
    for offset, target, length in zip(offsets[starts].tolist(), targets.tolist(), lengths.tolist()):
        buffer = raw[target : target + length]
        n = os.preadv(fd, [buffer], offset)  # releases the GIL while it reads; usually all of it at once
        while n < length:  # a short read: go on from where it stopped
            if n == 0 or not (read := os.preadv(fd, [buffer[n:]], offset + n)):
                raise DataError(f"{path} ended early (truncated while being read?) at byte {offset + n}")
            n += read


class NpySource(Source):
    """X/Y .npy pairs read with positioned reads: one pair (X.npy, Y.npy) or numbered shards (X_k.npy, Y_k.npy)."""

    def __init__(self, pairs: list, path: str):
        self.path = path
        self.shards = []
        try:
            for x_path, y_path in pairs:
                X, Y = _NpyFile(x_path, (2,)), _NpyFile(y_path, (1, 2))
                self.shards.append((X, Y))
                if Y.shape[0] != X.shape[0] or Y.row_bytes != Y.dtype.itemsize:
                    raise DataError(f"{y_path} holds labels of shape {Y.shape} for the {X.shape[0]} rows of {x_path}; expected ({X.shape[0]},)")
                first = self.shards[0][0]
                if (X.shape[1], X.dtype) != (first.shape[1], first.dtype):
                    raise DataError(f"shard {x_path} holds {X.shape[1]} {X.dtype} features a row, "
                                    f"but {first.path} holds {first.shape[1]} {first.dtype}; every shard must match")
        except DataError:
            self.close()
            raise
        self.starts = np.cumsum([0] + [X.shape[0] for X, _ in self.shards])  # (shards + 1,) first row of each shard
        self.m, self.n_features = int(self.starts[-1]), self.shards[0][0].shape[1]
        self.dtype = self.shards[0][0].dtype
        self.labels = [Y.mapped().reshape(-1) for _, Y in self.shards]  # (m_s,) each
        self.feature_names, self.label_name = _features_json(os.path.dirname(pairs[0][0]), self.n_features)

    def read_rows(self, index, X_out, y_out) -> None:
        index = self._check_index(index)
        shard_of = np.searchsorted(self.starts, index, side="right") - 1  # (k,)
        for s in np.unique(shard_of).tolist():
            where = np.flatnonzero(shard_of == s) if len(self.shards) > 1 else None  # (k_s,) positions in the batch
            local = index if where is None else index[where] - self.starts[s]  # (k_s,) rows of shard s
            _read_converted(self.shards[s][0], local, X_out, where)
            if y_out is not None:
                y_out[slice(None) if where is None else where] = self.labels[s][local]  # (k_s,) gathered from the mapping

    def locate(self, row: int) -> str:
        s = int(np.searchsorted(self.starts, row, side="right") - 1)
        return f"{self.shards[s][0].path}, row {row - int(self.starts[s])}"

    def close(self) -> None:
        self.labels = []  # unmapped once the arrays are gone
        for X, Y in self.shards:
            X.close()
            Y.close()


def _read_converted(file: _NpyFile, local: np.ndarray, out: np.ndarray, where: np.ndarray | None) -> None:
    """file's rows `local` into out's rows `where` (None: all), straight into `out` when its dtype and layout allow."""
    if out.dtype == file.dtype and out.flags.c_contiguous:
        file.read(local, out, where)
        return
    scratch = np.empty((len(local),) + tuple(file.shape[1:]), file.dtype)  # (k_s, n_x) in the file's dtype
    file.read(local, scratch)
    out[slice(None) if where is None else where] = scratch


def _features_json(directory: str, n_features: int):
    path = os.path.join(directory, "features.json")
    if not os.path.exists(path):
        return None, None
    try:
        with open(path) as f:
            meta = json.load(f)
        names = tuple(str(name) for name in meta["feature_names"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a readable feature list ({type(exc).__name__}: {exc})") from None
    if len(names) != n_features:
        raise DataError(f"{path} names {len(names)} features, but the data has {n_features}")
    return names, meta.get("label_name")


_SHARD = re.compile(r"X_(\d+)\.npy")


def _npy_pairs(directory: str) -> list:
    """[(X path, Y path)] of a directory: X.npy + Y.npy, or shards X_0.npy + Y_0.npy, X_1.npy + Y_1.npy, ..."""
    names = set(os.listdir(directory))
    numbers = sorted(int(match.group(1)) for match in map(_SHARD.fullmatch, names) if match)
    if "X.npy" in names and numbers:  # which one is the data set is not ours to guess
        raise DataError(f"{directory} holds both {os.path.join(directory, 'X.npy')} and shards "
                        f"{os.path.join(directory, f'X_{numbers[0]}.npy')}, ...; remove the one that is not the data set")
    if "X.npy" in names:
        pairs = [("X.npy", "Y.npy")]
    else:
        if not numbers:
            raise DataError(f"{directory} holds neither X.npy nor shards X_0.npy, X_1.npy, ...")
        if numbers != list(range(len(numbers))):
            missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
            raise DataError(f"{directory}: the shards are not numbered 0..{numbers[-1]} without gaps (missing X_{missing[0]}.npy)")
        pairs = [(f"X_{k}.npy", f"Y_{k}.npy") for k in numbers]
    for x_name, y_name in pairs:
        if y_name not in names:
            raise DataError(f"{os.path.join(directory, x_name)} has no labels: {os.path.join(directory, y_name)} does not exist")
    return [(os.path.join(directory, x), os.path.join(directory, y)) for x, y in pairs]


# ---------------------------------------------------------------------------------------------- .h5 files
class _H5Rows:
    """Positioned reads of whole rows of an uncompressed HDF5 dataset (m, n_x), from where HDF5 stored them.

    A contiguous dataset is one block; a chunked one whose chunks span whole rows ((c, n_x), row-major inside,
    as `python -m dnn convert` writes) puts row r at offset(chunk r // c) + (r % c)·row_bytes. Gathering a
    shuffled batch is then one system call per run of rows, as for an .npy, where h5py's selection of 256
    scattered rows costs several times a training step. `open` gives None for any other storage
    (compressed or filtered, chunks across columns, chunks not all written), which h5py then reads.
    """

    def __init__(self, path: str, starts: np.ndarray, chunk_rows: int, row_bytes: int):
        self.path, self.starts, self.chunk_rows, self.row_bytes = path, starts, chunk_rows, row_bytes  # starts: (chunks,) bytes
        self.fd = os.open(path, os.O_RDONLY)

    @classmethod
    def open(cls, path: str, dataset) -> "_H5Rows | None":
        import h5py

        plist, (m, n) = dataset.id.get_create_plist(), dataset.shape
        row_bytes = dataset.dtype.itemsize * n
        if plist.get_nfilters() or m == 0:
            return None
        layout = plist.get_layout()
        if layout == h5py.h5d.CONTIGUOUS:
            offset = dataset.id.get_offset()
            return None if offset is None else cls(path, np.array([offset], np.int64), m, row_bytes)
        if layout != h5py.h5d.CHUNKED or dataset.chunks[1] != n or not hasattr(dataset.id, "chunk_iter"):
            return None
        chunk_rows = dataset.chunks[0]
        starts = np.full(-(-m // chunk_rows), -1, np.int64)  # (chunks,) byte offset of each, -1 until seen
        dataset.id.chunk_iter(lambda info: starts.__setitem__(info.chunk_offset[0] // chunk_rows, info.byte_offset))
        return cls(path, starts, chunk_rows, row_bytes) if (starts >= 0).all() else None

    def read(self, index: np.ndarray, out: np.ndarray) -> None:
        """Rows `index` (k,) into `out` (k, n_x) of the dataset's dtype, C-contiguous."""
        chunk, row = np.divmod(index.astype(np.int64), self.chunk_rows)  # (k,) each
        _pread_rows(self.fd, self.path, self.starts[chunk] + row * self.row_bytes, self.row_bytes, out)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class H5Source(Source):
    """An HDF5 file with datasets X (m, n_x) and Y (m,): X's rows read with positioned reads where its storage
    allows (`_H5Rows`), else in slices with h5py; Y read into memory when the file is opened (one number a row)."""

    def __init__(self, path: str):
        try:
            import h5py
        except ImportError as exc:
            raise DataError(f"reading {path} needs h5py ({exc}); {install_hint('data')}") from None
        self.path = path
        try:
            self.file = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"{path} is not a readable HDF5 file (truncated or damaged?): {exc}") from None
        try:
            missing = [key for key in ("X", "Y") if key not in self.file]
            if missing:
                raise DataError(f"{path} has no {' and no '.join(missing)} dataset; it holds: {', '.join(self.file.keys()) or 'nothing'}")
            self.X, self.Y = self.file["X"], self.file["Y"]
            if self.X.ndim != 2 or self.X.dtype.kind not in "biuf":
                raise DataError(f"{path}: X is a {self.X.dtype} dataset of shape {self.X.shape}; expected numbers (m, n_x)")
            if self.Y.shape not in ((self.X.shape[0],), (self.X.shape[0], 1)) or self.Y.dtype.kind not in "biuf":
                raise DataError(f"{path}: Y has shape {self.Y.shape} and dtype {self.Y.dtype}; expected ({self.X.shape[0]},) class indices")
        except DataError:
            self.file.close()
            raise
        self.m, self.n_features = self.X.shape
        self.dtype = self.X.dtype
        try:
            self.labels = self.Y[...].reshape(-1)  # (m,)
        except OSError as exc:
            self.file.close()
            raise DataError(f"{path}: cannot read Y (truncated or damaged file?): {exc}") from None
        self.rows = _H5Rows.open(path, self.X)
        names = self.X.attrs.get("feature_names")
        self.feature_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names is not None else None
        label = self.X.attrs.get("label_name")
        self.label_name = label.decode() if isinstance(label, bytes) else label

    def read_rows(self, index, X_out, y_out) -> None:
        index = self._check_index(index)
        if not index.size:
            return
        if y_out is not None:
            y_out[...] = self.labels[index]  # (k,)
        if self.rows is not None and X_out.dtype == self.dtype and X_out.flags.c_contiguous:
            self.rows.read(index, X_out)
            return
        rows, inverse = np.unique(index, return_inverse=True)  # h5py reads increasing, distinct rows
        contiguous = rows[-1] - rows[0] + 1 == rows.size
        selection = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows
        try:
            X_out[...] = self.X[selection][inverse]  # (k, n_x)
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read rows {rows[0]}..{rows[-1]} (truncated or damaged file?): {exc}") from None

    def locate(self, row: int) -> str:
        return f"{self.path}, row {row}"

    def close(self) -> None:
        if self.rows is not None:
            self.rows.close()
        self.file.close()


def open_source(path) -> Source:
    """The out-of-core data set at `path`: a directory of .npy files, an X.npy (Y.npy beside it), or an .h5 file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return NpySource(_npy_pairs(path), path)
    require_regular_file(path, "data source")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".h5", ".hdf5"):
        return H5Source(path)
    if os.path.basename(path) == "X.npy":
        y_path = os.path.join(os.path.dirname(path), "Y.npy")
        if not os.path.exists(y_path):
            raise DataError(f"{path} has no labels: {y_path} does not exist")
        return NpySource([(path, y_path)], path)
    raise DataError(f"{path} is not an out-of-core data source: give a directory of .npy files, an X.npy or an .h5 file")


def is_source(path) -> bool:
    """Whether `open_source` reads `path` (rather than `dnn.data.load`): a directory, an .npy file, or an
    .h5/.hdf5 file holding an ``X`` dataset (the course's image files hold ``*_set_x`` instead)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path) or ext == ".npy":
        return True
    if ext not in (".h5", ".hdf5") or not os.path.isfile(path):
        return False
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "X" in f
    except (ImportError, OSError):  # dnn.data.load reports these for its own formats
        return False


# ---------------------------------------------------------------------------------------------- views
class Rows(Source):
    """The rows `index` ((k,) distinct row numbers, in the order they take) of `source`, as a source of their own.

    Nothing is copied: reads go through to `source`. The command line holds out its test rows this way.
    Rows in increasing order keep `chunks` (and so `scan`) reading the file front to back.
    """

    def __init__(self, source: Source, index):
        self.index = source._check_index(np.asarray(index, dtype=np.int64))  # (k,)
        self.source, self.path, self.m, self.n_features = source, source.path, len(self.index), source.n_features
        self.feature_names, self.label_name, self.dtype = source.feature_names, source.label_name, source.dtype

    def read_rows(self, index, X_out, y_out) -> None:
        self.source.read_rows(self.index[self._check_index(index)], X_out, y_out)

    def locate(self, row: int) -> str:
        return self.source.locate(int(self.index[row]))

    def close(self) -> None:
        self.source.close()


class InMemory(Source):
    """Arrays already in memory, X (m, n_x) rows and y (m,) labels, as a source (e.g. a test set loaded from a CSV)."""

    def __init__(self, X, y, path: str, feature_names=None, label_name=None):
        self.X, self.y = np.asarray(X), np.asarray(y).reshape(-1)  # (m, n_x), (m,)
        if self.X.ndim != 2 or self.y.shape != (self.X.shape[0],):
            raise DataError(f"{path}: X has shape {self.X.shape} and y {self.y.shape}; expected (m, n_x) and (m,)")
        self.path, (self.m, self.n_features), self.dtype = path, self.X.shape, self.X.dtype
        self.feature_names, self.label_name = feature_names, label_name

    def read_rows(self, index, X_out, y_out) -> None:
        index = self._check_index(index)
        X_out[...] = self.X[index]  # (k, n_x)
        if y_out is not None:
            y_out[...] = self.y[index]  # (k,)

    def locate(self, row: int) -> str:
        return f"{self.path}, example {row}"


# ---------------------------------------------------------------------------------------------- standardised view
class Standardized(Source):
    """`source` with every row standardised, (x - mean) / std in float64, as `Standardizer.transform` does."""

    def __init__(self, source: Source, standardizer: Standardizer):
        if standardizer.mean.size != source.n_features:
            raise DataError(f"{source.path} has {source.n_features} features, the standardisation was fitted on {standardizer.mean.size}")
        self.source, self.standardizer = source, standardizer
        self.path, self.m, self.n_features = source.path, source.m, source.n_features
        self.feature_names, self.label_name = source.feature_names, source.label_name
        self.checked = source.checked  # standardising finite rows keeps them finite; the labels do not change
        self.mean, self.std = standardizer.mean.reshape(-1), standardizer.std.reshape(-1)  # (n_x,) each
        self._rows = np.empty((0, self.n_features))

    def read_rows(self, index, X_out, y_out) -> None:
        if self._rows.shape[0] != len(index):
            self._rows = np.empty((len(index), self.n_features))  # (k, n_x) float64, reused while k stays
        self.source.read_rows(index, self._rows, y_out)
        np.subtract(self._rows, self.mean, out=self._rows)
        np.divide(self._rows, self.std, out=self._rows)
        X_out[...] = self._rows

    def locate(self, row: int) -> str:
        return self.source.locate(row)

    def close(self) -> None:
        self.source.close()


# ---------------------------------------------------------------------------------------------- one streaming pass
class SourceSummary(NamedTuple):
    """What one pass over a source found: its size, its number of classes (at least 2), statistics, and the
    classes themselves (the label values in class-index order)."""

    m: int
    n_classes: int
    standardizer: Standardizer
    classes: tuple = ()


def scan(source: Source, n_classes: int | None = None, rows: int | None = None, classes=None,
         max_classes: int = MAX_CLASSES) -> SourceSummary:
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


def check_rows(source: Source, start: int, X: np.ndarray, y: np.ndarray | None, n_classes: int | None = None,
               mapping: LabelMap | None = None) -> None:
    """DataError naming the file and row of the first NaN/inf in X (k, n_x) or bad label in y (k,).

    The rows are `source`'s from `start` on. Labels must be whole numbers; with `mapping`, one of its
    classes, else (taken as class indices) >= 0; and their class index below `n_classes` when that is given.
    y None checks the features only.
    """
    finite = np.isfinite(X)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise DataError(f"{source.locate(start + row)}: feature {_feature_name(source, column)} is {X[row, column]}; "
                        "every feature must be a finite number")
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


def _outputs_and_classes(net, source: Source) -> tuple[int, int]:
    """(output units, classes) of `net` after checking that `source`'s rows fit its input layer."""
    if source.n_features != net.layer_dims[0]:
        raise DataError(f"{source.path} has {source.n_features} features a row, but the network's input layer has {net.layer_dims[0]} units")
    n_outputs = net.layer_dims[-1]
    return n_outputs, 2 if n_outputs == 1 else n_outputs


def label_map(source: Source, classes=None) -> LabelMap | None:
    """How `source`'s labels become class indices: with `classes` when given (a model's), else with the classes
    its `scan` found, else (never scanned) None: the labels are class indices already."""
    if classes is None and source.checked is not None and source.checked.classes:
        classes = source.checked.classes
    return None if classes is None else LabelMap(classes)


def evaluate(net, source: Source, rows: int | None = None, classes=None) -> dict:
    """{'cost', 'accuracy'} of `net` over every example of `source`, one chunk at a time, each chunk checked.

    What `Network.evaluate` gives on the whole set (the mean cost and the fraction classified correctly),
    with the sums kept per chunk, so that no more than a chunk (`Source.chunks`) is ever in memory. Labels
    are mapped as `label_map(source, classes)` says (pass a model's classes). A NaN/inf feature or a label
    outside the network's classes raises DataError naming the file and row.
    """
    n_outputs, n_classes = _outputs_and_classes(net, source)
    mapping = label_map(source, classes)
    cost = correct = 0.0
    for start, X, y in source.chunks(rows):  # X (k, n_x), y (k,)
        check_rows(source, start, X, y, n_classes, mapping)
        if mapping is not None:
            mapping.indices(y, out=y)  # (k,) class indices, in the chunk's own buffer
        scores = net.evaluate(X.T, y if n_outputs > 1 else y.reshape(1, -1))  # (n_x, k), class indices or (1, k)
        cost, correct = cost + scores["cost"] * len(y), correct + scores["accuracy"] * len(y)
    if source.m == 0:
        raise DataError(f"{source.path} holds no examples")
    return {"cost": cost / source.m, "accuracy": correct / source.m}


# ---------------------------------------------------------------------------------------------- mini-batches
def epoch_order(m: int, seed: int, epoch: int) -> np.ndarray:
    """The (m,) permutation `fit` draws for `epoch` with `seed`: the shuffle is over the whole data set."""
    return np.random.default_rng([seed, epoch, 0]).permutation(m)


class BatchReader:
    """Host mini-batches X (n_x, k) and Y (n_L, k) of a source, gathered in a given order into reused buffers.

    n_outputs: the network's output units -- 1 gives Y as 0/1 labels for a sigmoid, C > 1 one-hot columns
    for a softmax. classes: the label values of the classes (default: what `scan` found, see `label_map`).
    dtype: X's and Y's dtype. standardizer (or a `Standardized` source's): applied to every
    row in float64 while the rows, read in the file's own dtype, are turned into X's columns -- one pass
    that gives exactly `Standardizer.transform`'s values, then X's dtype. With `prefetch` the next batch is read in a background thread into a second set of
    buffers while the caller works on the current one, so a yielded batch stays valid only until the
    next one is requested.
    """

    def __init__(self, source: Source, batch_size: int, n_outputs: int, dtype=np.float64,
                 standardizer: Standardizer | None = None, prefetch: bool = True, classes=None):
        if source.m == 0:
            raise DataError(f"{source.path} holds no examples")
        mapping = label_map(source, classes)
        self.mapping = None if mapping is None or mapping.identity else mapping  # identity: the labels are the indices
        if isinstance(source, Standardized):  # applied here, in the pass that makes columns, not row by row
            source, standardizer = source.source, source.standardizer
        self.source, self.standardizer = source, standardizer
        self.size = min(check_count(batch_size, "batch_size", minimum=1), source.m)
        self.n_outputs = check_count(n_outputs, "n_outputs", minimum=1)
        self.n_classes = 2 if n_outputs == 1 else n_outputs
        self.dtype, self.prefetch = resolve_dtype(dtype), prefetch
        self.buffers: dict = {}  # (k, slot) -> (rows (k, n_x) the file's dtype, labels (k,), X (n_x, k), Y (n_L, k))
        self.centred: dict = {}  # k -> (n_x, k) float64: the rows minus the mean, before the division

    def epoch(self, order=None, share=None):
        """The mini-batches (X, Y) of one pass in `order` ((m,) row permutation; None: 0..m-1), the last one shorter.

        share: a callable k -> (lo, hi), the positions of each batch of k rows this process reads (data-parallel
        training, `dnn.distributed`); then ((X, Y) or None where it has none, (lo, hi, k)) pairs are yielded.
        """
        order = np.arange(self.source.m) if order is None else np.asarray(order)
        if order.shape != (self.source.m,):
            raise ValueError(f"order must be a permutation of the {self.source.m} rows, got shape {order.shape}")
        batches = [order[start : start + self.size] for start in range(0, self.source.m, self.size)]
        spans = [(0, len(part), len(part)) if share is None else (*share(len(part)), len(part)) for part in batches]
        parts = [part[lo:hi] for part, (lo, hi, _) in zip(batches, spans)]  # only this process's rows are read
        for batch, span in zip(self._read_ahead(parts), spans):
            yield batch if share is None else (batch, span)

    def _read_ahead(self, parts):
        """The batches of `parts` read in turn, each while the caller works on the one before when prefetching."""
        if not self.prefetch:
            for part in parts:
                yield self._read(part, 0)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnn-prefetch") as pool:
            pending = pool.submit(self._read, parts[0], 0)
            for i in range(len(parts)):
                batch = pending.result()
                if i + 1 < len(parts):  # into the other slot: the caller has finished with the batch read there
                    pending = pool.submit(self._read, parts[i + 1], (i + 1) % 2)
                yield batch

    def _read(self, index: np.ndarray, slot: int):
        if len(index) == 0:
            return None  # this process has no rows of the batch
        rows, labels, X, Y = self._buffers(len(index), slot)
        self.source.read_rows(index, rows, labels)
        if self.mapping is not None:
            indices, row = self.mapping.indices(labels)  # (k,)
            if row is not None:
                raise self.mapping.refusal(self.source.locate(int(index[row])), labels[row])
            labels[...] = indices
        bad = (labels < 0) | (labels >= self.n_classes) | (labels != np.round(labels))
        if bad.any():  # cheap (k,) check; `scan` finds these before training starts
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{self.source.locate(int(index[row]))}: label {labels[row]:g} is not a class index 0..{self.n_classes - 1}")
        self._columns(rows, X)
        if self.n_outputs == 1:
            Y[0] = labels  # (1, k) 0/1
        else:
            Y.fill(0)
            Y[labels.astype(np.intp), np.arange(len(index))] = 1  # (C, k) one-hot
        return X, Y

    def _columns(self, rows: np.ndarray, X: np.ndarray) -> None:
        """X (n_x, k) = rows (k, n_x) transposed, standardised in float64 when asked, in X's dtype."""
        if self.standardizer is None:
            np.copyto(X, rows.T)
            return
        k = rows.shape[0]
        if k not in self.centred:
            self.centred[k] = np.empty((self.source.n_features, k))
        centred = self.centred[k]
        np.subtract(rows.T, self.standardizer.mean, out=centred)  # (n_x, k) float64
        np.divide(centred, self.standardizer.std, out=X)  # (n_x, k): divided in float64, then rounded to X's dtype

    def _buffers(self, k: int, slot: int):
        if (k, slot) not in self.buffers:
            n_x = self.source.n_features
            self.buffers[(k, slot)] = (np.empty((k, n_x), self.source.dtype), np.empty(k),
                                       np.empty((n_x, k), self.dtype), np.empty((self.n_outputs, k), self.dtype))
        return self.buffers[(k, slot)]


class SourceBatches:
    """`fit`'s mini-batches from a `Source`: checked in one streaming pass, then read batch by batch from disk.

    A source already scanned (`source.checked`, e.g. by the `scan` that computed its standardisation) with
    labels that fit the network is not read again for the checks.

    Same interface as `fit`'s in-memory gatherer (`epoch(order)` yields `Batch`es on the network's backend),
    so that training from a file and from memory run the same loop.
    """

    def __init__(self, net, source: Source, batch_size: int | None, prefetch: bool = True, share=None):
        n_outputs, n_classes = _outputs_and_classes(net, source)
        if source.checked is None or source.checked.n_classes > n_classes:  # not scanned yet, or labels to name
            scan(source, n_classes=n_classes, classes=source.checked.classes if source.checked else None)
        self.m = source.m
        self.size = self.m if batch_size is None else min(check_count(batch_size, "batch_size", minimum=1), self.m)
        self.reader = BatchReader(source, self.size, n_outputs, net.dtype, prefetch=prefetch)
        self.backend = net.backend
        self.on_host = self.backend.xp is np  # the backend's arrays are numpy's: no copy to a device needed
        self.device: dict = {}  # k -> Batch of device buffers
        self.share = share or (lambda k: (0, k))  # positions of each batch of k rows this process trains on

    def epoch(self, order):
        """(batch, (lo, hi, k)) for the epoch's batches of k examples in `order`, as `fit`'s gatherer yields them:
        this process's rows [lo, hi) of each, read from the file alone (None where it has none)."""
        for host, span in self.reader.epoch(order, share=self.share):
            if host is None:
                yield None, span
                continue
            X, Y = host if self.on_host else self._to_device(*host)
            yield Batch(X, Y), span

    def _to_device(self, X, Y):
        k = X.shape[1]
        if k not in self.device:
            self.device[k] = (self.backend.empty(X.shape, X.dtype), self.backend.empty(Y.shape, Y.dtype))
        X_dev, Y_dev = self.device[k]
        self.backend.copyto(X_dev, X)
        self.backend.copyto(Y_dev, Y)
        return X_dev, Y_dev
