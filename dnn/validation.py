"""Input checks that turn bad input into an error naming the problem, before any kernel sees it."""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from .errors import DTypeError, InsufficientMemoryError, LabelError, NonFiniteError, ShapeError

#: dtypes dnn computes in.
FLOAT_DTYPES = ("float32", "float64")


def resolve_dtype(dtype) -> np.dtype:
    """np.float32 or np.float64 from a name or dtype-like; anything else raises DTypeError."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"dtype {dtype!r} is not a dtype: {exc}") from None
    if resolved.name not in FLOAT_DTYPES:
        raise DTypeError(f"dtype {resolved.name} is not supported; use one of {', '.join(FLOAT_DTYPES)}")
    return resolved


def _array(backend, a):
    """`a` itself when it is a NumPy or backend array, else its values as a NumPy array.

    Lists, pandas Series and DataFrames and anything else with `__array__` arrive here; taking their values
    first means no array method of theirs (a Series has no `reshape`) is ever called.
    """
    if isinstance(a, np.ndarray) or backend.is_array(a):
        return a
    return np.asarray(a)


def _dtype(backend, a) -> np.dtype:
    """The NumPy dtype of `a`, a NumPy array or one of `backend`'s (whose dtypes NumPy may not know)."""
    return a.dtype if isinstance(a, np.ndarray) else backend.host_dtype(a)


def require_labels(Y, what: str) -> None:
    """Raise LabelError when `what` (a call that computes a cost) was given no labels."""
    if Y is None:
        raise LabelError(f"{what} needs labels Y to compare its outputs with, got Y=None")


def as_matrix(backend, a, dtype, name: str):
    """`a` as a 2-D backend array of `dtype`, after checking its dimensions, dtype and finiteness."""
    a = _array(backend, a)
    if a.ndim != 2:
        raise ShapeError(f"{name} must be 2-D with examples as columns, got shape {tuple(a.shape)}")
    given = _dtype(backend, a)
    if given.kind not in "biuf":
        raise DTypeError(f"{name} has dtype {given}, which is not numeric; convert it to float32 or float64")
    with np.errstate(over="ignore"):  # a value beyond float32's range becomes inf, reported by name below
        converted = backend.asarray(a, dtype=dtype)
    require_finite(backend, converted, name, converted_from=given)
    return converted


def require_finite(backend, a, name: str, converted_from=None) -> None:
    """Raise NonFiniteError naming `name` and counting its NaN/inf values when there are any.

    converted_from: the dtype `a` was converted from, when that may have overflowed (float64 to float32).
    """
    if not backend.all_finite(a):
        host = backend.to_numpy(a)
        bad = ~np.isfinite(host)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        what = "NaN or inf"
        if converted_from is not None and converted_from.kind == "f" and converted_from.itemsize > host.dtype.itemsize:
            what += f", or beyond {host.dtype.name}'s range of ±{np.finfo(host.dtype).max:.3g}"
        raise NonFiniteError(
            f"{name} holds {int(bad.sum())} non-finite value(s) ({what}); the first is at index {first}"
        )


def check_input_rows(X, n_x: int, name: str = "X") -> None:
    """X must have one row per input feature (layer_dims[0])."""
    if X.shape[0] != n_x:
        raise ShapeError(
            f"{name} has shape {tuple(X.shape)}: {X.shape[0]} rows, but the input layer has {n_x} units "
            f"(layer_dims[0]); examples are columns, so {name} must be ({n_x}, m)"
        )


def labels_as_matrix(backend, Y, output: str, n_out: int, m: int, dtype, name: str = "Y"):
    """Labels as an (n_out, m) backend array of `dtype`, checked against the output layer.

    sigmoid: Y is (1, m) or (m,) with values in {0, 1}.
    softmax: Y is one-hot (n_out, m), or class indices (m,) / (1, m) in range(n_out), turned into one-hot.
    """
    Y = _array(backend, Y)
    if _dtype(backend, Y).kind not in "biuf":
        raise DTypeError(f"{name} has dtype {Y.dtype}, which is not numeric")
    if Y.ndim == 1:
        Y = Y.reshape(1, -1) if isinstance(Y, np.ndarray) else backend.reshape(Y, (1, -1))
    if Y.ndim != 2:
        raise ShapeError(f"{name} must be (n_out, m) or (m,), got shape {tuple(Y.shape)}")
    if Y.shape[1] != m:
        raise ShapeError(f"{name} has {Y.shape[1]} examples (columns) but X has {m}; shapes {tuple(Y.shape)} vs m={m}")
    if output == "softmax" and Y.shape[0] == 1 and n_out > 1:
        return _one_hot(backend, Y, n_out, dtype, name)
    if Y.shape[0] != n_out:
        raise ShapeError(
            f"{name} has {Y.shape[0]} rows but the output layer has {n_out} units; expected shape ({n_out}, {m})"
        )
    Y = backend.asarray(Y, dtype=dtype)
    require_finite(backend, Y, name)
    if not backend.is_binary(Y):
        values = np.unique(backend.to_numpy(Y))
        shown = ", ".join(repr(float(v)) for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise LabelError(f"{name} must hold only 0 and 1 for a {output} output; found values {shown}")
    if output == "softmax" and not backend.columns_sum_to_one(Y):
        raise LabelError(f"{name} must be one-hot for a softmax output: some columns do not sum to 1")
    return Y


def _one_hot(backend, Y, n_out: int, dtype, name: str):
    labels = np.asarray(backend.to_numpy(Y)).ravel()  # (m,) class indices, on the host: m values only
    if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
        raise LabelError(f"{name} holds class indices that are not whole numbers")
    if labels.size and (labels.min() < 0 or labels.max() >= n_out):
        raise LabelError(
            f"{name} holds class indices from {int(labels.min())} to {int(labels.max())}, "
            f"outside range(0, {n_out}) of the output layer's {n_out} classes"
        )
    one_hot = np.zeros((n_out, labels.size))  # (C, m): 0 and 1, exact in every dtype
    one_hot[labels.astype(np.intp), np.arange(labels.size)] = 1
    return backend.asarray(one_hot, dtype=dtype)


# ---------------------------------------------------------------------------------------------- hyperparameters
def check_count(value, name: str, minimum: int) -> int:
    """`value` as an int when it is an integer (not a bool) >= minimum, else ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive(value, name: str) -> float:
    """`value` as a float when it is a finite real number > 0 (a learning rate), else ValueError naming `name`."""
    if type(value) is float and 0.0 < value < math.inf:  # the common case, cheaply: a training step checks its lr
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_non_negative(value, name: str) -> float:
    """`value` as a float when it is a finite real number >= 0 (an L2 strength, a decay), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def is_fraction(value) -> bool:
    """True for a real number in [0, 1), not a bool: a drop rate, a moving average's decay."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and 0.0 <= value < 1.0


def check_dropout_rates(dropout, hidden: int) -> list | None:
    """One drop rate per hidden layer, or None when nothing is dropped."""
    if dropout is None:
        return None
    rates = [dropout] * hidden if isinstance(dropout, numbers.Real) else list(dropout)
    if isinstance(dropout, numbers.Real) and hidden == 0 and dropout:
        raise ValueError("dropout applies to hidden layers, and this network has none")
    if len(rates) != hidden:
        raise ValueError(f"dropout needs one rate per hidden layer ({hidden}), got {len(rates)}: {rates!r}")
    for rate in rates:
        if not is_fraction(rate):
            raise ValueError(f"dropout rates must be in [0, 1) (the fraction of units dropped), got {rate!r}")
    rates = [float(rate) for rate in rates]
    return rates if any(rates) else None


# ---------------------------------------------------------------------------------------------- memory
class MemoryEstimate(NamedTuple):
    """Bytes each part of a network's memory takes (`memory_estimate`)."""

    parameters: int  # θ: every W[l] and b[l] in one (P,) vector
    gradients: int  # the (P,) gradient vector
    initial_values: int  # the float64 draw on the host while the network is built (freed afterwards)
    optimizer: int  # the optimizer's state vectors, one (P,) per slot (momentum 1, Adam 2)
    workspace: int  # one batch size's buffers: A[l], D[l] (n_l, m) per layer, Z[L] (n_L, m), the (1,) cost
    dropout: int  # with dropout, a mask and the masked output (n_l, m) of each hidden layer


def memory_estimate(layer_dims, dtype, m: int = 0, optimizer_slots: int = 0, dropout: bool = False) -> MemoryEstimate:
    """What a network of `layer_dims` in `dtype` allocates: the one place its memory is worked out.

    m: examples per batch (0: no workspace); optimizer_slots: the optimizer's state vectors
    (`Optimizer.slots`); dropout: the hidden layers keep a mask and a masked copy of their output.
    """
    itemsize = np.dtype(dtype).itemsize
    dims = [int(n) for n in layer_dims]
    P = sum(n * (n_prev + 1) for n_prev, n in zip(dims[:-1], dims[1:]))  # W (n_l, n_{l-1}) and b (n_l, 1)
    workspace = ((2 * sum(dims[1:]) + dims[-1]) * m + 1) * itemsize if m else 0  # A[l], D[l], Z[L]; the cost
    masks = 2 * sum(dims[1:-1]) * m * itemsize if dropout else 0
    return MemoryEstimate(P * itemsize, P * itemsize, P * 8, optimizer_slots * P * itemsize, workspace, masks)


def format_bytes(n: int) -> str:
    """n bytes in binary units, three significant figures: '186 GiB', '1.5 MiB', '512 B'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.3g} {unit}" if n < 1000 else f"{n:.0f} {unit}"
        n /= 1024


def require_memory(backend, what: str, parts: dict) -> None:
    """Raise InsufficientMemoryError when the bytes in `parts` ({name: bytes}) exceed what `backend` has free.

    Checked before allocating, so a network too large for the machine is refused with both figures instead
    of being swapped or killed part-way. A backend that cannot say what it has free is not checked.
    """
    needed = sum(parts.values())
    if not needed:  # everything is allocated already
        return
    available = backend.available_memory()
    if available is None or needed <= available:
        return
    shown = ", ".join(f"{name} {format_bytes(size)}" for name, size in parts.items() if size)
    raise InsufficientMemoryError(
        f"{what} needs {format_bytes(needed)} ({shown}), but only {format_bytes(available)} of memory is available"
    )
