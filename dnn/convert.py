"""`python -m dnn convert data.csv OUT`: stream a CSV into an out-of-core data set (see `dnn.sources`).

OUT is a directory (created if missing) that receives ``X.npy`` (m, n_x), ``Y.npy`` (m,) int64 and
``features.json``, or a path ending in ``.h5``/``.hdf5`` that receives datasets ``X`` and ``Y`` (feature names
in X's attributes). The CSV is parsed and checked block by block (`dnn.data.CsvTable`), so a file larger
than memory converts in the memory of one block. Every output is written to a temporary name and renamed
when complete: an interrupted conversion leaves no partial data set behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys

import numpy as np

from .data import CsvTable
from .errors import DataError
from .outputs import replaced_atomically
from .validation import resolve_dtype

#: Bytes reserved for a streamed .npy header: written first with the shape unknown, rewritten at the end.
_NPY_HEADER_BYTES = 128


def add_parser(subparsers) -> None:
    """Add the `convert` command to the command line's subparsers."""
    parser = subparsers.add_parser("convert", help="stream a CSV into X.npy + Y.npy (a directory) or an .h5 file for out-of-core training")
    parser.add_argument("csv", help="the CSV to convert (a header row; labels in --label-column)")
    parser.add_argument("out", help="an output directory (X.npy, Y.npy, features.json) or an .h5 file")
    parser.add_argument("--label-column", metavar="NAME", help="the column holding the class indices (default: the last)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="dtype of X on disk (default: float64)")


def run(args) -> int:
    """Convert args.csv into args.out; returns 0 (errors are raised as DataError for the command line to print)."""
    m = convert(args.csv, args.out, label_column=args.label_column, dtype=args.dtype, progress=sys.stderr.isatty())
    print(f"wrote {m} examples to {args.out}")
    return 0


def convert(csv_path: str, out: str, label_column: str | None = None, dtype="float64", progress: bool = False) -> int:
    """Stream the CSV at `csv_path` into `out` (a directory, or an .h5 file); returns the number of examples."""
    table = CsvTable.open(csv_path, label_column)
    dtype = resolve_dtype(dtype)
    is_h5 = os.path.splitext(out)[1].lower() in (".h5", ".hdf5")
    parent = os.path.dirname(os.path.abspath(out)) if is_h5 else os.path.dirname(os.path.abspath(out.rstrip("/\\")))
    if not os.path.isdir(parent):
        raise DataError(f"cannot write {out}: the directory {parent} does not exist")
    if is_h5:
        return _write_h5(table, out, dtype, progress)
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"cannot write {out}: it exists and is not a directory (give a directory, or a path ending in .h5)")
    os.makedirs(out, exist_ok=True)
    return _write_npy(table, out, dtype, progress)


def _blocks(table: CsvTable, progress: bool):
    """table's blocks, with a tqdm bar over the file's bytes when `progress` (and tqdm is installed)."""
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=os.path.getsize(table.path), unit="B", unit_scale=True, desc="convert", file=sys.stderr)
        except ImportError:
            pass
    try:
        for block in table.blocks():
            yield block
            if bar is not None:
                bar.n = block.chars_read
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()


def _write_npy(table: CsvTable, out: str, dtype: np.dtype, progress: bool) -> int:
    with contextlib.ExitStack() as renamed_when_all_succeed:  # each file to a temporary name, renamed at the end
        x_path, y_path, meta_path = (renamed_when_all_succeed.enter_context(replaced_atomically(os.path.join(out, name), ""))
                                     for name in ("X.npy", "Y.npy", "features.json"))  # fmt: skip
        m = 0
        with open(x_path, "wb") as fx, open(y_path, "wb") as fy:
            fx.write(b"\0" * _NPY_HEADER_BYTES)  # the header, once the number of rows is known
            fy.write(b"\0" * _NPY_HEADER_BYTES)
            for block in _blocks(table, progress):
                fx.write(np.ascontiguousarray(block.features, dtype=dtype).tobytes())  # (k, n_x) rows
                fy.write(block.labels.astype(np.int64).tobytes())  # (k,)
                m += block.features.shape[0]
            if m == 0:
                raise DataError(f"{table.path} needs a header row and at least one data row")
            for f, array_dtype, shape in ((fx, dtype, (m, table.n_features)), (fy, np.dtype(np.int64), (m,))):
                f.seek(0)
                f.write(_npy_header(array_dtype, shape))
                f.flush()
                os.fsync(f.fileno())
        with open(meta_path, "w") as f:
            json.dump({"feature_names": list(table.feature_names), "label_name": table.header[table.label_index]}, f)
        return m


def _npy_header(dtype: np.dtype, shape: tuple) -> bytes:
    """A .npy version 1.0 header for a C-ordered array, padded to exactly `_NPY_HEADER_BYTES` bytes."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)})
    preamble = 10  # magic (6), version (2), header length (2)
    if len(text) + 1 > _NPY_HEADER_BYTES - preamble:
        raise DataError(f"cannot describe an array of shape {shape} in a {_NPY_HEADER_BYTES}-byte .npy header")
    text = text.ljust(_NPY_HEADER_BYTES - preamble - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def _write_h5(table: CsvTable, out: str, dtype: np.dtype, progress: bool) -> int:
    try:
        import h5py
    except ImportError as exc:
        raise DataError(f"writing {out} needs h5py ({exc}); pip install 'dnn-engine[data]'") from None
    with replaced_atomically(out, ".h5") as temporary, h5py.File(temporary, "w") as f:
        n = table.n_features
        rows = max(1, (1 << 20) // (n * dtype.itemsize))  # ~1 MiB chunks of whole rows
        X = f.create_dataset("X", shape=(0, n), maxshape=(None, n), dtype=dtype, chunks=(rows, n))
        Y = f.create_dataset("Y", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(rows,))
        X.attrs["feature_names"] = list(table.feature_names)
        X.attrs["label_name"] = table.header[table.label_index]
        m = 0
        for block in _blocks(table, progress):
            k = block.features.shape[0]
            X.resize(m + k, axis=0)
            Y.resize(m + k, axis=0)
            X[m : m + k] = block.features  # (k, n_x)
            Y[m : m + k] = block.labels
            m += k
        if m == 0:
            raise DataError(f"{table.path} needs a header row and at least one data row")
    return m
