"""`.h5` sources: datasets X (m, n_x) and Y (m,), X read with positioned reads where HDF5 stored it plainly."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError, install_hint
from .base import Source
from .preads import pread_rows


class _H5Rows:
    """Positioned reads of whole rows of an uncompressed HDF5 dataset (m, n_x), from where HDF5 stored them.

    A contiguous dataset is one block; a chunked one whose chunks span whole rows ((c, n_x), row-major inside,
    as `python -m dnn convert` writes) puts row r at offset(chunk r // c) + (r % c)·row_bytes. Gathering a
    shuffled batch is then one system call per run of rows, as for an .npy, where h5py's selection of 256
    scattered rows costs several times a training step. `open` gives None for any other storage
    (compressed or filtered, chunks across columns, chunks not all written), which h5py then reads.
    """

    def __init__(self, path: str, starts: np.ndarray, chunk_rows: int, row_bytes: int):
        self.path, self.starts, self.chunk_rows, self.row_bytes = (
            path,
            starts,
            chunk_rows,
            row_bytes,
        )  # starts: (chunks,) bytes
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
        pread_rows(self.fd, self.path, self.starts[chunk] + row * self.row_bytes, self.row_bytes, out)

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
                raise DataError(
                    f"{path} has no {' and no '.join(missing)} dataset; it holds: {', '.join(self.file.keys()) or 'nothing'}"
                )
            self.X, self.Y = self.file["X"], self.file["Y"]
            if self.X.ndim != 2 or self.X.dtype.kind not in "biuf":
                raise DataError(
                    f"{path}: X is a {self.X.dtype} dataset of shape {self.X.shape}; expected numbers (m, n_x)"
                )
            if self.Y.shape not in ((self.X.shape[0],), (self.X.shape[0], 1)) or self.Y.dtype.kind not in "biuf":
                raise DataError(
                    f"{path}: Y has shape {self.Y.shape} and dtype {self.Y.dtype}; expected ({self.X.shape[0]},) class indices"
                )
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
        self.feature_names = (
            tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names is not None else None
        )
        label = self.X.attrs.get("label_name")
        self.label_name = label.decode() if isinstance(label, bytes) else label

    def read_rows(self, index, X_out, y_out) -> None:
        index = self.check_index(index)
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
            raise DataError(
                f"{self.path}: cannot read rows {rows[0]}..{rows[-1]} (truncated or damaged file?): {exc}"
            ) from None

    def locate(self, row: int) -> str:
        return f"{self.path}, row {row}"

    def close(self) -> None:
        if self.rows is not None:
            self.rows.close()
        self.file.close()
