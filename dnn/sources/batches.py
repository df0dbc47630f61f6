"""Mini-batches of a source: gathered in an epoch's order into reused buffers, prefetched, placed on the backend."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..data import Standardizer
from ..errors import DataError
from ..propagation import Batch
from ..validation import check_count, resolve_dtype
from .base import Source
from .scanning import scan
from .scores import label_map, outputs_and_classes
from .views import Standardized


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

    def __init__(
        self,
        source: Source,
        batch_size: int,
        n_outputs: int,
        dtype=np.float64,
        standardizer: Standardizer | None = None,
        prefetch: bool = True,
        classes=None,
    ):
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
            raise DataError(
                f"{self.source.locate(int(index[row]))}: label {labels[row]:g} is not a class index 0..{self.n_classes - 1}"
            )
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
            self.buffers[(k, slot)] = (
                np.empty((k, n_x), self.source.dtype),
                np.empty(k),
                np.empty((n_x, k), self.dtype),
                np.empty((self.n_outputs, k), self.dtype),
            )
        return self.buffers[(k, slot)]


class SourceBatches:
    """`fit`'s mini-batches from a `Source`: checked in one streaming pass, then read batch by batch from disk.

    A source already scanned (`source.checked`, e.g. by the `scan` that computed its standardisation) with
    labels that fit the network is not read again for the checks.

    Same interface as `fit`'s in-memory gatherer (`epoch(order)` yields `Batch`es on the network's backend),
    so that training from a file and from memory run the same loop.
    """

    def __init__(self, net, source: Source, batch_size: int | None, prefetch: bool = True, share=None):
        n_outputs, n_classes = outputs_and_classes(net, source)
        if source.checked is None or source.checked.n_classes > n_classes:  # not scanned yet, or labels to name
            scan(source, n_classes=n_classes, classes=source.checked.classes if source.checked else None)
        self.m = source.m
        self.size = self.m if batch_size is None else min(check_count(batch_size, "batch_size", minimum=1), self.m)
        self.reader = BatchReader(source, self.size, n_outputs, net.dtype, prefetch=prefetch)
        self.backend = net.backend
        self.on_host = self.backend.is_array(np.empty(0))  # the backend's arrays are numpy's: no copy needed
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
