"""`.npy` sources: one X.npy/Y.npy pair or numbered shards, features read with positioned reads."""

from __future__ import annotations

import json
import os
import re

import numpy as np

from ..data import require_regular_file
from ..errors import DataError
from .base import Source
from .preads import pread_rows


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
            raise DataError(
                f"{path} holds a {dtype} array of shape {shape}; expected a numeric array with {' or '.join(map(str, ndims))} dimensions"
            )
        if fortran and len(shape) == 2 and shape[1] > 1:
            raise DataError(
                f"{path} is stored in Fortran order, so its rows are not contiguous; "
                "save it with np.save(path, np.ascontiguousarray(X))"
            )
        self.shape, self.dtype = shape, dtype
        self.row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        needed = self.offset + shape[0] * self.row_bytes
        size = os.path.getsize(path)
        if size < needed:
            raise DataError(
                f"{path} is truncated: its header says {shape} {dtype} ({needed} bytes with the header), "
                f"but the file has {size} bytes"
            )
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, index: np.ndarray, out: np.ndarray, positions: np.ndarray | None = None) -> None:
        """Rows `index` (k,) into rows `positions` (k,) of `out` (default 0..k-1), of this file's dtype, C-contiguous."""
        pread_rows(
            self.fd, self.path, self.offset + index.astype(np.int64) * self.row_bytes, self.row_bytes, out, positions
        )

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
                    raise DataError(
                        f"{y_path} holds labels of shape {Y.shape} for the {X.shape[0]} rows of {x_path}; expected ({X.shape[0]},)"
                    )
                first = self.shards[0][0]
                if (X.shape[1], X.dtype) != (first.shape[1], first.dtype):
                    raise DataError(
                        f"shard {x_path} holds {X.shape[1]} {X.dtype} features a row, "
                        f"but {first.path} holds {first.shape[1]} {first.dtype}; every shard must match"
                    )
        except DataError:
            self.close()
            raise
        self.starts = np.cumsum([0] + [X.shape[0] for X, _ in self.shards])  # (shards + 1,) first row of each shard
        self.m, self.n_features = int(self.starts[-1]), self.shards[0][0].shape[1]
        self.dtype = self.shards[0][0].dtype
        self.labels = [Y.mapped().reshape(-1) for _, Y in self.shards]  # (m_s,) each
        self.feature_names, self.label_name = _features_json(os.path.dirname(pairs[0][0]), self.n_features)

    def read_rows(self, index, X_out, y_out) -> None:
        index = self.check_index(index)
        shard_of = np.searchsorted(self.starts, index, side="right") - 1  # (k,)
        for s in np.unique(shard_of).tolist():
            where = np.flatnonzero(shard_of == s) if len(self.shards) > 1 else None  # (k_s,) positions in the batch
            local = index if where is None else index[where] - self.starts[s]  # (k_s,) rows of shard s
            _read_converted(self.shards[s][0], local, X_out, where)
            if y_out is not None:
                y_out[slice(None) if where is None else where] = self.labels[s][
                    local
                ]  # (k_s,) gathered from the mapping

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


def npy_pairs(directory: str) -> list:
    """[(X path, Y path)] of a directory: X.npy + Y.npy, or shards X_0.npy + Y_0.npy, X_1.npy + Y_1.npy, ..."""
    names = set(os.listdir(directory))
    numbers = sorted(int(match.group(1)) for match in map(_SHARD.fullmatch, names) if match)
    if "X.npy" in names and numbers:  # which one is the data set is not ours to guess
        raise DataError(
            f"{directory} holds both {os.path.join(directory, 'X.npy')} and shards "
            f"{os.path.join(directory, f'X_{numbers[0]}.npy')}, ...; remove the one that is not the data set"
        )
    if "X.npy" in names:
        pairs = [("X.npy", "Y.npy")]
    else:
        if not numbers:
            raise DataError(f"{directory} holds neither X.npy nor shards X_0.npy, X_1.npy, ...")
        if numbers != list(range(len(numbers))):
            missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
            raise DataError(
                f"{directory}: the shards are not numbered 0..{numbers[-1]} without gaps (missing X_{missing[0]}.npy)"
            )
        pairs = [(f"X_{k}.npy", f"Y_{k}.npy") for k in numbers]
    for x_name, y_name in pairs:
        if y_name not in names:
            raise DataError(
                f"{os.path.join(directory, x_name)} has no labels: {os.path.join(directory, y_name)} does not exist"
            )
    return [(os.path.join(directory, x), os.path.join(directory, y)) for x, y in pairs]
