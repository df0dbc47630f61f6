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

Modules, one concern each: `base` (the `Source` interface), `npy` and `h5` (the readers, with `preads`' positioned
reads), `opening` (which reader a path needs), `views` (rows of a source, arrays, standardised rows), `scanning`
(the one checking pass), `scores` (a network's cost and accuracy, streamed) and `batches` (an epoch's mini-batches).
"""

from .base import CHUNK_BYTES, Source
from .batches import BatchReader, SourceBatches, epoch_order
from .h5 import H5Source
from .npy import NpySource
from .opening import is_source, open_source
from .scanning import SourceSummary, check_rows, checked_features, scan
from .scores import evaluate, label_map
from .views import InMemory, Rows, Standardized

__all__ = [
    "CHUNK_BYTES",
    "BatchReader",
    "H5Source",
    "InMemory",
    "NpySource",
    "Rows",
    "Source",
    "SourceBatches",
    "SourceSummary",
    "Standardized",
    "check_rows",
    "checked_features",
    "epoch_order",
    "evaluate",
    "is_source",
    "label_map",
    "open_source",
    "scan",
]
