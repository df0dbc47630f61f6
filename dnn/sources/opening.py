"""Which reader a path needs: `open_source` and `is_source`."""

from __future__ import annotations

import os

from ..data import require_regular_file
from ..errors import DataError
from .base import Source
from .h5 import H5Source
from .npy import NpySource, npy_pairs


def open_source(path) -> Source:
    """The out-of-core data set at `path`: a directory of .npy files, an X.npy (Y.npy beside it), or an .h5 file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return NpySource(npy_pairs(path), path)
    require_regular_file(path, "data source")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".h5", ".hdf5"):
        return H5Source(path)
    if os.path.basename(path) == "X.npy":
        y_path = os.path.join(os.path.dirname(path), "Y.npy")
        if not os.path.exists(y_path):
            raise DataError(f"{path} has no labels: {y_path} does not exist")
        return NpySource([(path, y_path)], path)
    raise DataError(
        f"{path} is not an out-of-core data source: give a directory of .npy files, an X.npy or an .h5 file"
    )


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
