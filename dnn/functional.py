"""The course's functional API: same names, signatures, dictionary keys and cache layout.

Code written for the course ("Building your Deep Neural Network: Step by Step" and its application) runs
by changing its import to ``from dnn.functional import *``; every function runs on the current backend
(`dnn.get_backend()`), and arrays keep the dtype they come in with (the course uses float64).

Caches are ``((A_prev, W, b), Z)``; gradients are ``dA0..dA{L-1}``, ``dW1..dWL``, ``db1..dbL``.

Each layer's products are the engine's own (`dnn.propagation.layer_forward`, `input_gradient`,
`weight_gradient`); the loops over layers stay the course's, because `Network`'s cannot give the course's
caches or numbers: its workspaces overwrite each Z with g(Z) (a cache keeps both), `L_model_backward` starts
from dA[L] and from caches its caller may have built by hand, and the network's cost from the logits and its
1/m folded once into dZ[L] (the course scales each dW and db) round otherwise (on the course's cat data its
first cost is 0.7717493284237686, the course's 0.7717493284237688). Both loops' gradients agree within
`dnn.tolerances` (tests/test_gradients.py).
"""

from __future__ import annotations

import re

import numpy as np

from .backends import get_backend
from .errors import ShapeError
from .initializers import initial_parameters
from .propagation import input_gradient, layer_forward, weight_gradient
from .validation import as_matrix, check_count, check_positive, labels_as_matrix, resolve_dtype

__all__ = [
    "initialize_parameters_deep",
    "linear_forward",
    "linear_activation_forward",
    "L_model_forward",
    "compute_cost",
    "linear_backward",
    "linear_activation_backward",
    "L_model_backward",
    "update_parameters",
    "predict",
    "L_layer_model",
]


def initialize_parameters_deep(layer_dims, seed: int | None = 1, init: str = "course", dtype="float64"):
    """{'W1': (n_1, n_0), 'b1': (n_1, 1), ...} on the current backend.

    With the defaults this reproduces the course's application notebook exactly: RandomState(1), and
    W[l] = randn(n_l, n_{l-1}) / sqrt(n_{l-1}). init="small" gives the course's `* 0.01` variant.
    """
    backend = get_backend()
    dtype = resolve_dtype(dtype)
    parameters = {}
    for l, (W, b) in enumerate(initial_parameters(layer_dims, init=init, seed=seed), start=1):
        parameters[f"W{l}"] = backend.asarray(W, dtype=dtype)
        parameters[f"b{l}"] = backend.asarray(b, dtype=dtype)
    return parameters


def _check_linear_shapes(A_prev, W, b, layer: str = "") -> None:
    where = f"layer {layer}: " if layer else ""
    if W.ndim != 2 or b.ndim != 2 or A_prev.ndim != 2:
        raise ShapeError(f"{where}W, b and A_prev must be 2-D; got W {W.shape}, b {b.shape}, A_prev {A_prev.shape}")
    if W.shape[1] != A_prev.shape[0]:
        raise ShapeError(
            f"{where}W has shape {tuple(W.shape)} and needs A_prev with {W.shape[1]} rows, "
            f"but A_prev has shape {tuple(A_prev.shape)}"
        )
    if tuple(b.shape) != (W.shape[0], 1):
        raise ShapeError(f"{where}b has shape {tuple(b.shape)}, expected ({W.shape[0]}, 1) to match W {tuple(W.shape)}")


def linear_forward(A, W, b):
    """Z = W·A + b; returns (Z, (A, W, b))."""
    _check_linear_shapes(A, W, b)
    backend = get_backend()
    Z = backend.empty((W.shape[0], A.shape[1]), A.dtype)  # (n_l, m)
    layer_forward(backend, W, b, A, "linear", out=Z)  # Z = W·A + b
    return Z, (A, W, b)


def linear_activation_forward(A_prev, W, b, activation):
    """A = g(W·A_prev + b); returns (A, ((A_prev, W, b), Z))."""
    Z, linear_cache = linear_forward(A_prev, W, b)
    backend = get_backend()
    A = backend.empty(Z.shape, Z.dtype)  # (n_l, m)
    backend.activation_forward(Z, activation, out=A)
    return A, (linear_cache, Z)


def layer_count(parameters, name: str = "parameters", prefix: str = "") -> int:
    """L, the number of layers of a course dictionary holding {prefix}W1, {prefix}b1, ..., {prefix}WL, {prefix}bL.

    L is the highest layer number among its keys, so that a missing key is named (KeyError) instead of
    the network silently being taken as a shorter one. prefix "d" checks a gradient dictionary.
    """
    if not hasattr(parameters, "keys"):
        raise TypeError(
            f"{name} must be a dictionary {{'{prefix}W1': ..., '{prefix}b1': ..., ...}}, got {type(parameters).__name__}"
        )
    pattern = re.compile(rf"{prefix}[Wb]([1-9][0-9]*)")
    layers = [int(match.group(1)) for key in parameters if isinstance(key, str) and (match := pattern.fullmatch(key))]
    if not layers:
        raise KeyError(f"{name} holds no {prefix}W1, {prefix}b1, ... keys; its keys are {sorted(map(str, parameters))}")
    L = max(layers)
    missing = [f"{prefix}{kind}{l}" for l in range(1, L + 1) for kind in "Wb" if f"{prefix}{kind}{l}" not in parameters]
    if missing:
        raise KeyError(f"{name} has {prefix}W{L}/{prefix}b{L} keys but lacks {', '.join(missing)}")
    return L


def L_model_forward(X, parameters, hidden_activation: str = "relu", output: str = "sigmoid"):
    """[LINEAR->RELU]*(L-1) -> LINEAR->SIGMOID; returns (AL, caches), one cache per layer."""
    backend = get_backend()
    L = layer_count(parameters)
    A = as_matrix(backend, X, getattr(X, "dtype", None) if _is_float(X) else "float64", "X")
    caches = []
    for l in range(1, L):
        W, b = parameters[f"W{l}"], parameters[f"b{l}"]
        _check_linear_shapes(A, W, b, layer=str(l))
        A, cache = linear_activation_forward(A, W, b, hidden_activation)  # (n_l, m)
        caches.append(cache)
    W, b = parameters[f"W{L}"], parameters[f"b{L}"]
    _check_linear_shapes(A, W, b, layer=str(L))
    if output == "sigmoid":
        AL, cache = linear_activation_forward(A, W, b, "sigmoid")  # (1, m)
    else:
        Z, linear_cache = linear_forward(A, W, b)
        AL = backend.empty(Z.shape, Z.dtype)  # (C, m)
        backend.output_layer(Z, backend.zeros((Z.shape[0], 1), Z.dtype), output, AL)
        cache = (linear_cache, Z)
    caches.append(cache)
    return AL, caches


def _is_float(a) -> bool:
    if not hasattr(a, "dtype"):
        return False
    backend = get_backend()
    # a backend dtype need not be one NumPy knows
    dtype = backend.host_dtype(a) if backend.is_array(a) else np.dtype(a.dtype)
    return dtype.name in ("float32", "float64")


def compute_cost(AL, Y, output: str = "sigmoid"):
    """The course's cross-entropy cost from probabilities AL (1, m) and labels Y (1, m); shape ()."""
    backend = get_backend()
    Y = labels_as_matrix(backend, Y, output, AL.shape[0], AL.shape[1], AL.dtype)
    return np.squeeze(np.float64(backend.cost_from_probabilities(AL, Y, output)))


def linear_backward(dZ, cache):
    """From dZ (n_l, m) and cache (A_prev, W, b): dA_prev = Wᵀ·dZ, dW = (1/m)·dZ·A_prevᵀ, db = (1/m)·Σ dZ."""
    A_prev, W, b = cache
    backend = get_backend()
    m = A_prev.shape[1]
    dW = backend.empty(W.shape, W.dtype)  # (n_l, n_{l-1})
    weight_gradient(backend, dZ, A_prev, out=dW, scale=1.0 / m)  # dW = (1/m)·dZ·A_prevᵀ
    db = backend.empty(b.shape, b.dtype)  # (n_l, 1)
    backend.bias_grad(dZ, out=db, scale=1.0 / m)  # db = (1/m)·Σ_columns dZ
    dA_prev = backend.empty(A_prev.shape, A_prev.dtype)  # (n_{l-1}, m)
    input_gradient(backend, W, dZ, out=dA_prev)  # dA_prev = Wᵀ·dZ
    return dA_prev, dW, db


def linear_activation_backward(dA, cache, activation):
    """dZ = dA * g'(Z), then linear_backward; returns (dA_prev, dW, db)."""
    linear_cache, Z = cache
    backend = get_backend()
    dZ = backend.empty(dA.shape, dA.dtype)  # (n_l, m)
    backend.activation_backward(dA, activation, dZ, Z=Z)
    return linear_backward(dZ, linear_cache)


def L_model_backward(AL, Y, caches, hidden_activation: str = "relu", output: str = "sigmoid"):
    """Gradients of the cost for [LINEAR->RELU]*(L-1) -> LINEAR->SIGMOID, keyed dA{l-1}, dW{l}, db{l}.

    Starts, as the course does, from dAL = -(Y/AL) + (1-Y)/(1-AL) for a sigmoid output; a softmax output
    starts from dZL = AL - Y.
    """
    backend = get_backend()
    grads = {}
    L = len(caches)
    Y = labels_as_matrix(backend, Y, output, AL.shape[0], AL.shape[1], AL.dtype)
    if output == "sigmoid":
        dAL = backend.empty(AL.shape, AL.dtype)  # (1, m)
        backend.sigmoid_cross_entropy_grad(AL, Y, out=dAL)
        dA_prev, dW, db = linear_activation_backward(dAL, caches[L - 1], "sigmoid")
    else:
        dZL = backend.empty(AL.shape, AL.dtype)  # (C, m)
        backend.subtract(AL, Y, out=dZL)
        dA_prev, dW, db = linear_backward(dZL, caches[L - 1][0])
    grads[f"dA{L - 1}"], grads[f"dW{L}"], grads[f"db{L}"] = dA_prev, dW, db
    for l in reversed(range(L - 1)):
        dA_prev, dW, db = linear_activation_backward(grads[f"dA{l + 1}"], caches[l], hidden_activation)
        grads[f"dA{l}"], grads[f"dW{l + 1}"], grads[f"db{l + 1}"] = dA_prev, dW, db
    return grads


def update_parameters(params, grads, learning_rate):
    """One gradient-descent step; returns new parameters (the inputs are left unchanged, as in the course).

    Raises ValueError for a learning rate that is not a finite number > 0, KeyError naming a missing
    W/b or dW/db key, and ShapeError for a gradient whose shape differs from its parameter's.
    """
    learning_rate = check_positive(learning_rate, "learning_rate")
    L = layer_count(params, "params")
    if layer_count(grads, "grads", prefix="d") < L:
        raise KeyError(f"grads holds gradients of fewer layers than params' {L}: dW{L} is missing")
    backend = get_backend()
    parameters = {}
    for l in range(1, L + 1):
        for key in (f"W{l}", f"b{l}"):
            if tuple(grads[f"d{key}"].shape) != tuple(params[key].shape):
                raise ShapeError(
                    f"grads['d{key}'] has shape {tuple(grads[f'd{key}'].shape)}, but {key} has {tuple(params[key].shape)}"
                )
            p = backend.empty(params[key].shape, params[key].dtype)
            backend.copyto(p, params[key])
            backend.sgd_update(p, grads[f"d{key}"], learning_rate)
            parameters[key] = p
    return parameters


def predict(X, y, parameters, hidden_activation: str = "relu", output: str = "sigmoid"):
    """Predictions (1, m) as a NumPy array; prints the accuracy against y as the course does (y=None skips)."""
    backend = get_backend()
    AL, _ = L_model_forward(X, parameters, hidden_activation, output)
    p = backend.to_numpy(backend.predict_classes(AL, output))  # (1, m)
    if y is not None:
        labels = np.asarray(backend.to_numpy(backend.asarray(y)))
        if output == "softmax" and labels.shape[0] > 1:
            labels = labels.argmax(axis=0)[None, :]
        print("Accuracy: " + str(np.sum((p == labels.reshape(p.shape)) / p.shape[1])))
    return p


def L_layer_model(X, Y, layers_dims, learning_rate=0.0075, num_iterations=3000, print_cost=False):
    """The course's L-layer model: full-batch gradient descent; returns (parameters, costs every 100 steps).

    Raises ValueError for a learning rate that is not a finite number > 0 or a num_iterations that is not
    an integer >= 0, before anything is computed.
    """
    learning_rate = check_positive(learning_rate, "learning_rate")
    num_iterations = check_count(num_iterations, "num_iterations", 0)
    costs = []
    parameters = initialize_parameters_deep(layers_dims)
    for i in range(num_iterations):
        AL, caches = L_model_forward(X, parameters)
        cost = compute_cost(AL, Y)
        grads = L_model_backward(AL, Y, caches)
        parameters = update_parameters(parameters, grads, learning_rate)
        if print_cost and (i % 100 == 0 or i == num_iterations - 1):
            print(f"Cost after iteration {i}: {np.squeeze(cost)}")
        if i % 100 == 0 or i == num_iterations - 1:
            costs.append(cost)
    return parameters, costs
