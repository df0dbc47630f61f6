"""Saving and loading a Network as one `.npz` file, atomically written and validated on load.

The file holds only arrays (read back with ``allow_pickle=False``, so loading a model never runs code):
``meta`` is a JSON string (format name and version, its kind, architecture, activations, output, dtype, the
feature names the network was trained on, optimizer name and hyperparameters, training state for resuming,
small extras), ``param/W1``, ``param/b1``, ... the parameters, ``optimizer/<slot>/<name>`` the optimizer's state
and ``extra/<name>`` any array extras (the command line keeps its input standardisation there). A save
writes a temporary file in the target's directory and renames it into place, so a crash mid-save leaves the
previous file intact; a network or optimizer state holding NaN or infinity is refused before anything is
written, since it could not be loaded.

A file is one of two kinds: a *model* (``train --save``, `Network.save`: a network to evaluate and predict
with) or a *checkpoint* (``train --checkpoint``, ``fit(checkpoint=...)``: a model plus the training state a
run resumes from). The kind is written in the file; files written before it was (format versions 1 and 2)
are checkpoints when they hold training state and models otherwise.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .errors import ModelFileError, NonFiniteError
from .initializers import check_layer_dims
from .optimizers import Optimizer, make_optimizer
from .outputs import replaced_atomically
from .parameters import layout as parameter_layout
from .validation import resolve_dtype

if TYPE_CHECKING:  # the network module imports this one, not the other way round
    from .network import Network

FORMAT = "dnn-network"
#: Version 2 added ``feature_names`` (version 1 files load with feature_names None); version 3 added ``kind``.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
#: What a file is: a model to use, or a checkpoint (a model with the training state a run resumes from).
KINDS = ("model", "checkpoint")
#: Every .npz is a zip archive, and a zip archive starts with a local file header.
ZIP_MAGIC = b"PK\x03\x04"


class Checkpoint(NamedTuple):
    """What a model file holds: the network, its optimizer (or None), training state and extras."""

    network: "Network"
    optimizer: Optimizer | None
    training: dict | None  # the state `dnn.training.fit` needs to resume; None for a plain saved model
    extras: dict  # name -> host array or JSON value, as given to `save`
    feature_names: tuple | None = None  # the name of each input row the network was trained on, if known
    kind: str = "model"  # one of KINDS: "checkpoint" exactly when the file holds training state


# ---------------------------------------------------------------------------------------------- save
def save(
    net: "Network",
    path,
    optimizer: Optimizer | None = None,
    training: dict | None = None,
    extras: dict | None = None,
    feature_names=None,
) -> None:
    """Write `net` (and optionally its optimizer's state, training state and extras) to `path` atomically.

    With `training` state the file is a checkpoint, without it a model (its ``kind``).
    extras: name -> NumPy array (stored as an array) or JSON-serialisable value (stored in the metadata).
    feature_names: one name per input unit (layer_dims[0]), in the order of X's rows, or None.
    Raises NonFiniteError when a parameter or the optimizer's state holds NaN or infinity, and
    ModelFileError when the file cannot be written; either way the previous file at `path`, if any, is kept.
    """
    path = os.fspath(path)
    arrays = {f"param/{name}": value for name, value in net.get_parameters().items()}
    if feature_names is not None:
        feature_names = [str(name) for name in feature_names]
        if len(feature_names) != net.layer_dims[0]:
            raise ValueError(
                f"feature_names has {len(feature_names)} names, the network has {net.layer_dims[0]} inputs"
            )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "model" if training is None else "checkpoint",
        "layer_dims": net.layer_dims,
        "activations": net.activations,
        "output": net.output,
        "init": net.init,
        "dtype": net.dtype.name,
        "feature_names": feature_names,
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
    _require_finite(path, arrays)
    arrays["meta"] = np.asarray(json.dumps(meta))
    _write_atomically(path, arrays)


def _require_finite(path: str, arrays: dict) -> None:
    """Refuse to write parameters or optimizer state holding NaN or inf: `load` would refuse the file."""
    for key, value in arrays.items():
        if key.startswith(("param/", "optimizer/")) and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            count = int((~np.isfinite(value)).sum())
            raise NonFiniteError(
                f"refusing to save {path}: {key} holds {count} non-finite value(s) (NaN or inf); "
                "the previous file, if any, is unchanged"
            )


def _write_atomically(path: str, arrays: dict) -> None:
    try:
        with replaced_atomically(path, ".tmp") as temporary:
            with open(temporary, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:  # named by the user's path and the reason, not by the temporary file's name
        raise ModelFileError(
            f"cannot write model file {path}: {exc.strerror or exc}; the previous file is unchanged"
        ) from exc


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
        dims, dtype = check_layer_dims(meta["layer_dims"]), resolve_dtype(meta["dtype"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the architecture it describes is invalid: {exc}") from exc
    # the parameters are checked against the architecture before the network is built, so that an
    # architecture the file does not hold the parameters of is never allocated
    params = _parameters(path, arrays, dims, dtype)
    try:
        net = network_class(dims, meta["activations"], meta["output"], init=meta["init"], dtype=dtype, backend=backend)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the architecture it describes is invalid: {exc}") from exc
    net.set_parameters(params)
    optimizer = _optimizer(path, arrays, meta, net)
    if not isinstance(meta.get("training"), (dict, type(None))) or not isinstance(
        meta.get("extras"), (dict, type(None))
    ):
        raise ModelFileError(f"{path}: its training state or extras are not what dnn writes (JSON objects)")
    extras = dict(meta.get("extras") or {})
    extras.update({key[len("extra/") :]: value for key, value in arrays.items() if key.startswith("extra/")})
    return Checkpoint(net, optimizer, meta.get("training"), extras, _feature_names(path, meta, net), _kind(path, meta))


def _kind(path: str, meta: dict) -> str:
    """The file's kind: as written (version 3 on), else told by its training state; the two must agree."""
    held = "model" if meta.get("training") is None else "checkpoint"
    kind = meta.get("kind", held)
    if kind not in KINDS:
        raise ModelFileError(f"{path}: its kind {kind!r} is none of {', '.join(KINDS)}")
    if kind != held:
        raise ModelFileError(
            f"{path} says it is a {kind} but {'holds' if held == 'checkpoint' else 'lacks'} "
            "the training state of a checkpoint"
        )
    return kind


def _read_arrays(path: str) -> dict:
    if not os.path.exists(path):
        raise ModelFileError(f"model file {path} does not exist")
    if os.path.isdir(path):
        raise ModelFileError(f"model file {path} is a directory")
    try:
        with open(path, "rb") as f:
            magic = f.read(len(ZIP_MAGIC))
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    if magic != ZIP_MAGIC:
        raise ModelFileError(
            f"{path} is not a dnn model file: a model file is an .npz (zip) archive written by "
            "`train --save` or Network.save, and this file is not one"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}  # read every member now, so a bad CRC shows up here
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError (pickled data), OSError, zlib.error
        raise ModelFileError(
            f"{path} is not a readable dnn model file (truncated or corrupted?): {type(exc).__name__}: {exc}"
        ) from exc


def _read_meta(path: str, arrays: dict) -> dict:
    if "meta" not in arrays:
        raise ModelFileError(f"{path} is an .npz file but not a dnn model file (it has no 'meta' entry)")
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError as exc:
        raise ModelFileError(f"{path}: its metadata is corrupted: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(
            f"{path} is not a dnn model file (format {meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise ModelFileError(
            f"{path} has model format version {version!r}; this version of dnn reads versions {readable}"
        )
    return meta


def _feature_names(path: str, meta: dict, net: "Network") -> tuple | None:
    names = meta.get("feature_names")
    if names is None:
        return None
    if (
        not isinstance(names, list)
        or not all(isinstance(name, str) for name in names)
        or len(names) != net.layer_dims[0]
    ):
        raise ModelFileError(f"{path}: its feature names are not {net.layer_dims[0]} strings, one per input unit")
    return tuple(names)


def _parameters(path: str, arrays: dict, dims: list, dtype) -> dict:
    params = {}
    for name, _, shape in parameter_layout(dims):
        key = f"param/{name}"
        if key not in arrays:
            raise ModelFileError(f"{path} has no parameter {name} although its architecture {dims} needs it")
        value = arrays[key]
        if value.shape != shape:
            raise ModelFileError(
                f"{path}: parameter {name} has shape {value.shape}, the architecture {dims} needs {shape}"
            )
        if value.dtype != dtype:
            raise ModelFileError(f"{path}: parameter {name} has dtype {value.dtype}, the file says {dtype.name}")
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
    state = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
    for name, value in state.items():
        if value.dtype.kind not in "iuf" or not np.all(np.isfinite(value)):
            raise ModelFileError(f"{path}: optimizer state {name} is not finite numbers")
    optimizer.load_state_dict(net, state)
    return optimizer
