"""Sources over other sources or arrays: a subset of rows, arrays in memory, standardised rows."""

from __future__ import annotations

import numpy as np

from ..data import Standardizer
from ..errors import DataError
from .base import Source


class Rows(Source):
    """The rows `index` ((k,) distinct row numbers, in the order they take) of `source`, as a source of their own.

    Nothing is copied: reads go through to `source`. The command line holds out its test rows this way.
    Rows in increasing order keep `chunks` (and so `scan`) reading the file front to back.
    """

    def __init__(self, source: Source, index):
        self.index = source.check_index(np.asarray(index, dtype=np.int64))  # (k,)
        self.source, self.path, self.m, self.n_features = source, source.path, len(self.index), source.n_features
        self.feature_names, self.label_name, self.dtype = source.feature_names, source.label_name, source.dtype

    def read_rows(self, index, X_out, y_out) -> None:
        self.source.read_rows(self.index[self.check_index(index)], X_out, y_out)

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
        index = self.check_index(index)
        X_out[...] = self.X[index]  # (k, n_x)
        if y_out is not None:
            y_out[...] = self.y[index]  # (k,)

    def locate(self, row: int) -> str:
        return f"{self.path}, example {row}"


class Standardized(Source):
    """`source` with every row standardised, (x - mean) / std in float64, as `Standardizer.transform` does."""

    def __init__(self, source: Source, standardizer: Standardizer):
        if standardizer.mean.size != source.n_features:
            raise DataError(
                f"{source.path} has {source.n_features} features, the standardisation was fitted on {standardizer.mean.size}"
            )
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
