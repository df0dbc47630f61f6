"""Positioned reads of whole rows into a caller's buffer: one system call per run of consecutive rows."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError


def pread_rows(fd: int, path: str, offsets: np.ndarray, row_bytes: int, out: np.ndarray, positions=None) -> None:
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
