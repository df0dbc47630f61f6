"""Saving and loading a Network as one `.npz` file, atomically written and validated on load.

The file holds only arrays (read back with ``allow_pickle=False``, so loading a model never runs code):
``meta`` is a JSON string (format name and version, architecture, activations, output, dtype, optimizer
name and hyperparameters, training state for resuming, small extras), ``param/W1``, ``param/b1``, ... the
parameters, ``optimizer/<slot>/<name>`` the optimizer's state and ``extra/<name>`` any array extras (the
command line keeps its input standardisation there). A save writes a temporary file in the target's
directory and renames it into place, so a crash mid-save leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .errors import ModelFileError
from .optimizers import Optimizer, make_optimizer

if TYPE_CHECKING:  # the network module imports this one, not the other way round
    from .network import Network

FORMAT = "dnn-network"
FORMAT_VERSION = 1


class Checkpoint(NamedTuple):
    """What a model file holds: the network, its optimizer (or None), training state and extras."""

    network: "Network"
    optimizer: Optimizer | None
    training: dict | None  # the state `dnn.training.fit` needs to resume; None for a plain saved model
    extras: dict  # name -> host array or JSON value, as given to `save`


# ---------------------------------------------------------------------------------------------- save
def save(net: "Network", path, optimizer: Optimizer | None = None, training: dict | None = None, extras: dict | None = None) -> None:
    """Write `net` (and optionally its optimizer's state, training state and extras) to `path` atomically.

    extras: name -> NumPy array (stored as an array) or JSON-serialisable value (stored in the metadata).
    Raises ModelFileError when the file cannot be written; the previous file at `path`, if any, is kept.
    """
    arrays = {f"param/{name}": value for name, value in net.get_parameters().items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layer_dims": net.layer_dims,
        "activations": net.activations,
        "output": net.output,
        "init": net.init,
        "dtype": net.dtype.name,
        "optimizer": None,
        "training": training,
        "extras": {},
    }
    if optimizer is not None:
        meta["optimizer"] = {"name": optimizer.name, "config": optimizer.config()}
        arrays.update({f"optimizer/{key}": value for key, value in optimizer.state_dict(net).items()})
    for name, value in (extras or {}).items():
        if isinstance(value, np.ndarray):
            arrays[f"extra/{name}"] = value
        else:
            meta["extras"][name] = value
    arrays["meta"] = np.asarray(json.dumps(meta))
    _write_atomically(os.fspath(path), arrays)


def _write_atomically(path: str, arrays: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ModelFileError(f"cannot write model file {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ModelFileError(f"cannot write model file {path}: {exc}; the previous file is unchanged") from exc
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------- load
def load(path, backend=None, *, network_class) -> "Network":
    """The network saved at `path` as a `network_class` (`dnn.Network`), on `backend` (None: the current one).

    Raises ModelFileError.
    """
    return load_checkpoint(path, backend=backend, network_class=network_class).network


def load_checkpoint(path, backend=None, *, network_class) -> Checkpoint:
    """Everything saved at `path`: network, optimizer with its state, training state and extras.

    Raises ModelFileError naming the problem when the file is missing, truncated, corrupted, of another
    format version, or does not describe a consistent network.
    """
    path = os.fspath(path)
    arrays = _read_arrays(path)
    meta = _read_meta(path, arrays)
    try:
        net = network_class(meta["layer_dims"], meta["activations"], meta["output"], init=meta["init"], dtype=meta["dtype"], backend=backend)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the architecture it describes is invalid: {exc}") from exc
    net.set_parameters(_parameters(path, arrays, net))
    optimizer = _optimizer(path, arrays, meta, net)
    extras = dict(meta.get("extras") or {})
    extras.update({key[len("extra/"):]: value for key, value in arrays.items() if key.startswith("extra/")})
    return Checkpoint(net, optimizer, meta.get("training"), extras)


def _read_arrays(path: str) -> dict:
    if not os.path.exists(path):
        raise ModelFileError(f"model file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}  # read every member now, so a bad CRC shows up here
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError (pickled data), OSError, zlib.error
        raise ModelFileError(f"{path} is not a readable dnn model file (truncated or corrupted?): {type(exc).__name__}: {exc}") from exc


def _read_meta(path: str, arrays: dict) -> dict:
    if "meta" not in arrays:
        raise ModelFileError(f"{path} is an .npz file but not a dnn model file (it has no 'meta' entry)")
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError as exc:
        raise ModelFileError(f"{path}: its metadata is corrupted: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a dnn model file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"{path} has model format version {version!r}; this version of dnn reads version {FORMAT_VERSION}")
    return meta


def _parameters(path: str, arrays: dict, net: "Network") -> dict:
    params = {}
    for param, _, name in net.gradient_buffers():
        key = f"param/{name}"
        if key not in arrays:
            raise ModelFileError(f"{path} has no parameter {name} although its architecture {net.layer_dims} needs it")
        value = arrays[key]
        if value.shape != tuple(param.shape):
            raise ModelFileError(f"{path}: parameter {name} has shape {value.shape}, the architecture {net.layer_dims} needs {tuple(param.shape)}")
        if value.dtype != net.dtype:
            raise ModelFileError(f"{path}: parameter {name} has dtype {value.dtype}, the file says {net.dtype.name}")
        if not np.all(np.isfinite(value)):
            raise ModelFileError(f"{path}: parameter {name} holds non-finite values")
        params[name] = value
    return params


def _optimizer(path: str, arrays: dict, meta: dict, net: "Network") -> Optimizer | None:
    spec = meta.get("optimizer")
    if spec is None:
        return None
    try:
        optimizer = make_optimizer(spec["name"], **spec.get("config", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: its optimizer description {spec!r} is invalid: {exc}") from exc
    prefix = "optimizer/"
    optimizer.load_state_dict(net, {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)})
    return optimizer
