"""`Source`: examples stored as rows on disk, read a slice at a time (the interface every reader implements)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..validation import check_count

if TYPE_CHECKING:  # scanning imports this module
    from .scanning import SourceSummary

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

    def check_index(self, index) -> np.ndarray:
        """`index` as a 1-D integer array after checking that it names rows of this source (else ValueError/IndexError)."""
        index = np.asarray(index)
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise ValueError(f"row index must be a 1-D integer array, got shape {index.shape} and dtype {index.dtype}")
        if index.size and (index.min() < 0 or index.max() >= self.m):
            raise IndexError(
                f"row index out of range: {self.path} has rows 0..{self.m - 1}, asked for {index.min()}..{index.max()}"
            )
        return index
