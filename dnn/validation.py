"""Input checks that turn bad input into an error naming the problem, before any kernel sees it."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import DTypeError, LabelError, NonFiniteError, ShapeError

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


def _kind(a) -> str:
    return np.dtype(a.dtype).kind if hasattr(a, "dtype") else np.asarray(a).dtype.kind


def as_matrix(backend, a, dtype, name: str):
    """`a` as a 2-D backend array of `dtype`, after checking its dimensions, dtype and finiteness."""
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        a = np.asarray(a)
    if a.ndim != 2:
        raise ShapeError(f"{name} must be 2-D with examples as columns, got shape {tuple(a.shape)}")
    if _kind(a) not in "biuf":
        raise DTypeError(f"{name} has dtype {a.dtype}, which is not numeric; convert it to float32 or float64")
    converted = backend.asarray(a, dtype=dtype)
    require_finite(backend, converted, name)
    return converted


def require_finite(backend, a, name: str) -> None:
    """Raise NonFiniteError naming `name` and counting its NaN/inf values when there are any."""
    if not backend.all_finite(a):
        host = backend.to_numpy(a)
        bad = ~np.isfinite(host)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NonFiniteError(
            f"{name} holds {int(bad.sum())} non-finite value(s) (NaN or inf); the first is at index {first}"
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
    if not hasattr(Y, "shape") or not hasattr(Y, "dtype"):
        Y = np.asarray(Y)
    if _kind(Y) not in "biuf":
        raise DTypeError(f"{name} has dtype {Y.dtype}, which is not numeric")
    if Y.ndim == 1:
        Y = Y.reshape(1, -1)
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
    one_hot = np.zeros((n_out, labels.size), dtype=dtype)  # (C, m)
    one_hot[labels.astype(np.intp), np.arange(labels.size)] = 1
    return backend.asarray(one_hot)


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
