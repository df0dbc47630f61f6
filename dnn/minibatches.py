"""`MiniBatches`: `fit`'s mini-batches of a data set in memory, gathered on the backend into reused buffers.

The in-memory counterpart of `dnn.sources.SourceBatches` (data on disk): both yield an epoch's batches the
same way, so that training from memory and from a file run the same loop.
"""

from __future__ import annotations

import numpy as np

from .propagation import Batch


class MiniBatches:
    """Gathers mini-batches from the placed data set into buffers reused every epoch (one per batch size).

    share: a callable m_b -> (lo, hi) naming the positions of each global batch of m_b examples this process
    trains on (`dnn.distributed.Ranks.share`); None takes them all. Only those columns are gathered.
    """

    def __init__(self, net, data: Batch, size: int, share=None):
        self.backend, self.data, self.size = net.backend, data, size
        self.m = data.X.shape[1]
        self.dtype = net.dtype
        self.share = share or (lambda m_b: (0, m_b))
        self.buffers: dict[int, tuple] = {}  # m_b -> (X (n_x, m_b), Y (n_L, m_b)) on the backend

    def epoch(self, order):
        """(batch, (lo, hi, m_b)) for the epoch's global batches of m_b examples, in `order` (a host permutation
        of the columns, or None for 0..m-1): this process's columns [lo, hi) of each, or None where it has none.
        """
        if order is None and self.size == self.m and self.share(self.m) == (0, self.m):
            yield self.data, (0, self.m, self.m)  # full batch, no shuffling: the data itself, no gather
            return
        # the epoch's column order, placed on the backend once: each batch gathers through a slice of it
        order = self.backend.asarray(np.arange(self.m) if order is None else order)  # (m,)
        for start in range(0, self.m, self.size):
            m_b = min(self.size, self.m - start)
            lo, hi = self.share(m_b)
            if hi == lo:
                yield None, (lo, hi, m_b)
                continue
            index = order[start + lo : start + hi]  # (hi - lo,) column indices of this process's share
            X, Y = self._buffers(index.shape[0])
            self.backend.take_columns(self.data.X, index, out=X)  # (n_x, m_b)
            self.backend.take_columns(self.data.Y, index, out=Y)  # (n_L, m_b)
            # a new Batch over the reused buffers: their contents are new, so nothing a backend kept with the
            # previous batch (numba's bound on its inputs) applies to it
            yield Batch(X, Y), (lo, hi, m_b)

    def _buffers(self, m_b: int) -> tuple:
        if m_b not in self.buffers:
            be, X, Y = self.backend, self.data.X, self.data.Y
            self.buffers[m_b] = (be.empty((X.shape[0], m_b), self.dtype), be.empty((Y.shape[0], m_b), self.dtype))
        return self.buffers[m_b]
