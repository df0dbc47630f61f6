"""Numerical gradient checking: float64 central differences against backpropagation (the course's check)."""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import numpy as np

from .activations import REGISTRY
from .functional import layer_count
from .network import Network
from .propagation import forward, layer_forward
from .tolerances import GRADCHECK_THRESHOLD


class GradcheckResult(NamedTuple):
    difference: float  # ||g - g_approx|| / (||g|| + ||g_approx||)
    per_parameter: dict  # the same ratio for each of W1, b1, ...
    passed: bool  # difference < threshold
    nudged_columns: int  # examples moved off an activation's kink before checking


def float64_reference(model, hidden_activation: str = "relu", output: str = "sigmoid") -> Network:
    """A float64 NumPy network holding the same parameters as `model` (a Network or a course dict)."""
    if isinstance(model, Network):
        ref = Network(
            model.layer_dims, model.activations, model.output, init=model.init, dtype="float64", backend="numpy"
        )
        ref.set_parameters(model.get_parameters())
        return ref
    params = {key: np.asarray(_host(value), dtype=np.float64) for key, value in model.items()}
    L = len(params) // 2
    dims = [params["W1"].shape[1]] + [params[f"W{l}"].shape[0] for l in range(1, L + 1)]
    ref = Network(dims, hidden_activation, output, dtype="float64", backend="numpy")
    ref.set_parameters(params)
    return ref


def _host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a


def kinked_pre_activations(net: Network, X, masks=None):
    """{l: Z[l] - its nearest kink (n_l, m)} for every hidden layer whose activation declares kinks (relu and
    leaky_relu at 0: Z[l] itself), computed as the network computes it.

    `dnn.propagation.forward` runs the layers (with the fixed dropout `masks`, as `Network.loss` applies
    them); each kinked layer's Z[l] = W[l]·A[l-1] + b[l] is then taken again from the input it multiplied,
    since the forward pass overwrites Z[l] with g(Z[l]).
    """
    be, p = net.backend, net.params
    batch = net.batch(X)
    with net.busy:
        ws = net.workspace(batch.X.shape[1])
        forward(net, batch, ws, masks=masks)
        zs = {}
        for l in range(1, net.num_layers):
            kinks = REGISTRY[net.activations[l - 1]].kinks
            if kinks:
                Z = be.empty(ws.A[l].shape, net.dtype)  # (n_l, m)
                layer_forward(be, p.W[l], p.b[l], ws.layer_input(batch, l), "linear", out=Z)
                Z = be.to_numpy(Z)
                zs[l] = Z - np.asarray(kinks)[np.argmin([np.abs(Z - k) for k in kinks], axis=0)]  # (n_l, m)
    return zs


def _nudge_off_kinks(net, X, masks, margin, rng, max_rounds=20):
    """Move the examples whose pre-activations lie within `margin` of a kink; returns (X, examples moved).

    When moving examples does not help (a unit whose inputs are all dropped sees only its bias), the
    biases of the units still at the kink are moved too, in the reference copy only.
    """
    X = X.copy()
    moved = np.zeros(X.shape[1], dtype=bool)
    scale = max(float(np.std(X)), 1.0) * 1e-3
    for round_ in range(max_rounds):
        near_columns = np.zeros(X.shape[1], dtype=bool)
        for l, Z in kinked_pre_activations(net, X, masks).items():
            near = np.abs(Z) < margin  # (n_l, m)
            near_columns |= near.any(axis=0)
            units = near.any(axis=1)
            if round_ >= max_rounds // 4 and units.any():
                net.params.b[l][units] += rng.standard_normal((int(units.sum()), 1)) * scale
        if not near_columns.any():
            return X, int(moved.sum())
        X[:, near_columns] += rng.standard_normal((X.shape[0], int(near_columns.sum()))) * scale
        moved |= near_columns
    warnings.warn(
        f"gradcheck: {int(near_columns.sum())} example(s) stay within {margin} of an activation's kink; "
        "the check may report a false difference"
    )
    return X, int(moved.sum())


def gradcheck(
    model,
    X,
    Y,
    epsilon: float = 1e-7,
    l2: float = 0.0,
    dropout_masks=None,
    hidden_activation: str = "relu",
    output: str = "sigmoid",
    threshold: float = GRADCHECK_THRESHOLD,
    seed: int = 0,
) -> GradcheckResult:
    """Compare backpropagation with central differences (J(θ+ε) - J(θ-ε)) / 2ε, all in float64 on NumPy.

    `model` is a Network or the course's parameter dict (then `hidden_activation` and `output` describe
    it). The model is never modified: a float64 copy is checked. Examples whose pre-activations lie within
    1000·ε of a kink of their activation (`dnn/activations.py`: relu's and leaky_relu's 0), where the finite
    difference would straddle it, are moved slightly first, and
    where that cannot help, the copy's biases of the units concerned.
    `dropout_masks` fixes one mask per hidden layer so the check covers dropout's backward pass.
    """
    _check_model(model)
    ref = float64_reference(model, hidden_activation, output)
    X = np.array(_host(X), dtype=np.float64)
    masks = (
        None
        if dropout_masks is None
        else [None if mk is None else np.asarray(_host(mk), np.float64) for mk in dropout_masks]
    )
    X, nudged = _nudge_off_kinks(ref, ref.batch(X).X, masks, margin=1e3 * epsilon, rng=np.random.default_rng(seed))
    batch = ref.batch(X, np.asarray(_host(Y)))

    _, grads = ref.backward(batch, l2=l2, dropout_masks=masks)
    analytic, numeric, per_parameter = [], [], {}
    for param, _, name in ref.gradient_buffers():
        approx = np.empty_like(param)
        flat, approx_flat = param.reshape(-1), approx.reshape(-1)  # views into the live parameter
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + epsilon
            j_plus = ref.loss(batch, l2=l2, dropout_masks=masks)
            flat[i] = saved - epsilon
            j_minus = ref.loss(batch, l2=l2, dropout_masks=masks)
            flat[i] = saved
            approx_flat[i] = (j_plus - j_minus) / (2 * epsilon)
        g = grads[f"d{name}"]
        per_parameter[name] = _relative_gap(g, approx)
        analytic.append(g.ravel())
        numeric.append(approx.ravel())
    difference = _relative_gap(np.concatenate(analytic), np.concatenate(numeric))
    return GradcheckResult(difference, per_parameter, difference < threshold, nudged)


def _check_model(model) -> None:
    """A Network, or a course dict holding exactly W1, b1, ..., WL, bL; anything else is named."""
    if isinstance(model, Network):
        return
    if isinstance(model, (str, bytes, os.PathLike)):
        raise TypeError(
            f"gradcheck takes a Network or the course's parameter dict, not the path {os.fsdecode(model)!r}; "
            "load it first: dnn.gradcheck(dnn.Network.load(path), X, Y)"
        )
    if not hasattr(model, "keys"):
        raise TypeError(f"gradcheck takes a Network or the course's parameter dict, got {type(model).__name__}")
    L = layer_count(model, "the parameter dict")
    others = sorted(str(key) for key in model if key not in {f"{kind}{l}" for l in range(1, L + 1) for kind in "Wb"})
    if others:
        raise KeyError(f"the parameter dict holds keys other than W1..W{L}, b1..b{L}: {', '.join(others)}")


def _relative_gap(g, approx) -> float:
    """||g - approx|| / (||g|| + ||approx||), 0 when both vanish."""
    denominator = np.linalg.norm(g) + np.linalg.norm(approx)
    return 0.0 if denominator == 0 else float(np.linalg.norm(g - approx) / denominator)
