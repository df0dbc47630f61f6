"""`python -m dnn convert data.csv OUT`: stream a CSV into an out-of-core data set (see `dnn.sources`).

OUT is a directory (created if missing) that receives ``X.npy`` (m, n_x), ``Y.npy`` (m,) int64 and
``features.json``, or a path ending in ``.h5``/``.hdf5`` that receives datasets ``X`` and ``Y`` (feature names
in X's attributes). The CSV is parsed and checked block by block (`dnn.data.CsvTable`), so a file larger
than memory converts in the memory of one block; a value X's dtype cannot hold is named by line and column.
Every output is written to a temporary name and renamed when complete (`dnn.outputs.replaced_atomically`):
an interrupted or killed conversion leaves no partial data set behind, and the previous one intact. OUT is
never the CSV itself (by inode: another name or a hard link is refused too), and an existing data set --
an .h5 file, or a directory that is not empty -- is replaced only with ``--force``. Before HDF5 writes a
block of an .h5, the room for it is allocated on the disk (`_reserve`): a write failing inside HDF5 leaves its
file unclosable and the process crashing at exit, while a reservation that fails (a full disk, a quota, a
file size limit) is an error naming OUT.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import struct
import sys

import numpy as np

from .data import CsvTable
from .errors import DataError, install_hint
from .outputs import remove_stale_temporaries, replaced_atomically
from .validation import resolve_dtype

#: Bytes reserved for a streamed .npy header: written first with the shape unknown, rewritten at the end.
_NPY_HEADER_BYTES = 128
#: Files a directory data set consists of.
NPY_FILES = ("X.npy", "Y.npy", "features.json")
#: Room reserved beyond the rows' own bytes for HDF5's metadata (the last, partly filled chunks are added).
H5_METADATA_BYTES = 256 << 10


def add_parser(subparsers) -> None:
    """Add the `convert` command to the command line's subparsers."""
    parser = subparsers.add_parser(
        "convert", help="stream a CSV into X.npy + Y.npy (a directory) or an .h5 file for out-of-core training"
    )
    parser.add_argument("csv", help="the CSV to convert (a header row; labels in --label-column)")
    parser.add_argument("out", help="an output directory (X.npy, Y.npy, features.json) or an .h5 file")
    parser.add_argument(
        "--label-column", metavar="NAME", help="the column holding the class indices (default: the last)"
    )
    parser.add_argument(
        "--dtype", choices=("float32", "float64"), default="float64", help="dtype of X on disk (default: float64)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing .h5 file or the data set in a non-empty directory"
    )


def run(args) -> int:
    """Convert args.csv into args.out; returns 0 (errors are raised as DataError for the command line to print)."""
    m = convert(
        args.csv,
        args.out,
        label_column=args.label_column,
        dtype=args.dtype,
        progress=sys.stderr.isatty(),
        force=args.force,
    )
    print(f"wrote {m} examples to {args.out}")
    return 0


def convert(
    csv_path: str,
    out: str,
    label_column: str | None = None,
    dtype="float64",
    progress: bool = False,
    force: bool = False,
) -> int:
    """Stream the CSV at `csv_path` into `out` (a directory, or an .h5 file); returns the number of examples.

    force: replace an existing .h5 file, or write into a directory that is not empty (see the module docstring).
    """
    table = CsvTable.open(csv_path, label_column)
    dtype = resolve_dtype(dtype)
    is_h5 = os.path.splitext(out)[1].lower() in (".h5", ".hdf5")
    parent = os.path.dirname(os.path.abspath(out)) if is_h5 else os.path.dirname(os.path.abspath(out.rstrip("/\\")))
    if not os.path.isdir(parent):
        raise DataError(f"cannot write {out}: the directory {parent} does not exist")
    targets = [out] if is_h5 else [os.path.join(out, name) for name in NPY_FILES]
    for target in [out, *targets]:
        if os.path.exists(target) and os.path.samefile(target, csv_path):
            raise DataError(
                f"cannot write {target}: it is the input {csv_path} itself (the same file); give another output"
            )
    if is_h5:
        remove_stale_temporaries(out)
        if os.path.exists(out) and not force:
            raise DataError(f"{out} exists; pass --force to replace it")
        return _write_h5(table, out, dtype, progress)
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(
            f"cannot write {out}: it exists and is not a directory (give a directory, or a path ending in .h5)"
        )
    os.makedirs(out, exist_ok=True)
    for target in targets:  # a killed conversion's temporaries are no reason to refuse the directory
        remove_stale_temporaries(target)
    if os.listdir(out) and not force:
        raise DataError(
            f"{out} is not empty ({', '.join(sorted(os.listdir(out))[:5])}); pass --force to write the data set into it"
        )
    return _write_npy(table, out, dtype, progress)


def _in_range(block, table: CsvTable, dtype: np.dtype) -> np.ndarray:
    """block's features (k, n_x), after checking that `dtype` holds every one (float32 tops out at 3.4e38)."""
    limit = np.finfo(dtype).max
    over = np.abs(block.features) > limit  # (k, n_x)
    if over.any():
        row, column = (int(i) for i in np.argwhere(over)[0])
        raise DataError(
            f"{table.path}, line {block.lines[row]}, column {table.feature_names[column]!r}: "
            f"{block.features[row, column]:g} is out of the range of {dtype.name} (±{limit:.4g}); "
            "convert with --dtype float64, or rescale that column"
        )
    return block.features


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
        x_path, y_path, meta_path = (
            renamed_when_all_succeed.enter_context(replaced_atomically(os.path.join(out, name), ""))
            for name in NPY_FILES
        )
        try:
            return _write_npy_files(table, (x_path, y_path, meta_path), dtype, progress)
        except OSError as exc:  # a full disk: named by the data set, not by whichever temporary met it
            raise DataError(f"cannot write {out}: {exc.strerror or exc}; nothing was written") from exc


def _write_npy_files(table: CsvTable, paths: tuple, dtype: np.dtype, progress: bool) -> int:
    """Write X.npy, Y.npy and features.json of `table` at `paths`; returns the number of examples."""
    x_path, y_path, meta_path = paths
    m = 0
    with open(x_path, "wb") as fx, open(y_path, "wb") as fy:
        fx.write(b"\0" * _NPY_HEADER_BYTES)  # the header, once the number of rows is known
        fy.write(b"\0" * _NPY_HEADER_BYTES)
        for block in _blocks(table, progress):
            fx.write(np.ascontiguousarray(_in_range(block, table, dtype), dtype=dtype).tobytes())  # (k, n_x) rows
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
        raise DataError(f"writing {out} needs h5py ({exc}); {install_hint('data')}") from None
    with replaced_atomically(out, ".h5") as temporary:
        try:
            with h5py.File(temporary, "w") as f:
                n = table.n_features
                rows = max(1, (1 << 20) // (n * dtype.itemsize))  # ~1 MiB chunks of whole rows
                X = f.create_dataset("X", shape=(0, n), maxshape=(None, n), dtype=dtype, chunks=(rows, n))
                Y = f.create_dataset("Y", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(rows,))
                X.attrs["feature_names"] = list(table.feature_names)
                X.attrs["label_name"] = table.header[table.label_index]
                m = 0
                for block in _blocks(table, progress):
                    k = block.features.shape[0]
                    # the rows so far and this block's, the last chunk of X and of Y, and metadata
                    _reserve(out, temporary, (m + k + 2 * rows) * (n * dtype.itemsize + 8) + H5_METADATA_BYTES)
                    X.resize(m + k, axis=0)
                    Y.resize(m + k, axis=0)
                    X[m : m + k] = _in_range(block, table, dtype)  # (k, n_x)
                    Y[m : m + k] = block.labels
                    m += k
                if m == 0:
                    raise DataError(f"{table.path} needs a header row and at least one data row")
        except (OSError, RuntimeError) as exc:  # h5py names the temporary, not the user's file
            raise DataError(f"cannot write {out}: {exc}; nothing was written") from exc
    return m


def _reserve(out: str, temporary: str, size: int) -> None:
    """Allocate the first `size` bytes of the file at `temporary` on the disk before HDF5 writes there.

    HDF5 then writes into allocated space (and leaves what it did not use, at most two chunks and the
    metadata allowance, at the end of the file). Where posix_fallocate is missing, the disk's free space is
    checked instead. DataError naming `out` if there is no room.
    """
    try:
        if hasattr(os, "posix_fallocate"):
            fd = os.open(temporary, os.O_WRONLY)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        elif shutil.disk_usage(os.path.dirname(temporary)).free < size - os.path.getsize(temporary):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError as exc:
        raise DataError(
            f"cannot write {out}: {exc.strerror} (it needs {size / 2**20:.1f} MiB so far); nothing was written"
        ) from None
