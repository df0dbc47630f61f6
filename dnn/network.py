"""`Network`: the object API over the same propagation, with reused workspaces and fused backend calls."""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .backends import get_backend
from .backends.base import check_activation, check_output, finite_product_limit
from .errors import DivergenceError, ShapeError
from .initializers import check_layer_dims, initial_parameters
from .validation import as_matrix, check_input_rows, labels_as_matrix, resolve_dtype

# How many batch shapes keep their workspaces (a training batch, the last short batch, an evaluation set).
_WORKSPACES_KEPT = 4


class Batch(NamedTuple):
    """Inputs already validated and placed on the network's backend in its dtype (see `Network.batch`).

    Its arrays must not be changed afterwards: the checks, and x_abs_sum, describe them as they were.
    """

    X: object  # (n_x, m)
    Y: object  # (n_L, m) or None
    x_abs_sum: float | None = None  # Σ|X| (Backend.abs_sum), or None when not known


class _Workspace:
    """Buffers for one batch size m, allocated once and reused by every step on batches of that size.

    A[l] (n_l, m) holds layer l's output (its pre-activation first, overwritten in place by g);
    ZL (n_L, m) keeps the output logits for the stable cost; D[l] (n_l, m) holds (1/m)·dA[l], then
    (1/m)·dZ[l] in place.
    """

    def __init__(self, backend, dims, m, dtype):
        L = len(dims) - 1
        self.m = m
        self.A = [None] + [backend.empty((dims[l], m), dtype) for l in range(1, L + 1)]
        self.ZL = backend.empty((dims[L], m), dtype)
        self.D = [None] + [backend.empty((dims[l], m), dtype) for l in range(1, L + 1)]
        self.cost = backend.zeros((1,), dtype)
        self.dropped = {}  # l -> (n_l, m) output of hidden layer l after its dropout mask
        self.masks = {}  # l -> (n_l, m) mask with values 0 and 1/keep_prob
        self.active_masks = {}  # l -> the mask applied to hidden layer l in the current step
        self.step_buffers = (tuple(self.A[1:]), self.ZL, tuple(self.D[1:]), self.cost)  # for Backend.sgd_step

    def dropout_buffers(self, backend, l, shape, dtype):
        if l not in self.masks:
            self.masks[l] = backend.empty(shape, dtype)
            self.dropped[l] = backend.empty(shape, dtype)
        return self.masks[l], self.dropped[l]


def products_provably_finite(input_sums, delta_sums, dtype) -> bool:
    """True when every dW[l] = D[l]·A[l-1]ᵀ is proven finite from Σ|A[l-1]| and Σ|D[l]| (l = 1..L).

    A NaN or inf sum (its matrix holds a NaN or an inf) fails the test, as does a product too large to prove.
    """
    limit = finite_product_limit(dtype)
    return all(a * d <= limit for a, d in zip(input_sums, delta_sums))


def _divergence(cost: float) -> DivergenceError:
    return DivergenceError(
        f"the cost became {cost} (non-finite values in the cost or the gradients); "
        "the parameters are left as they were before this step; try a smaller learning rate"
    )


def _layout(parameters) -> list[tuple[str, int, tuple[int, ...]]]:
    """[(name, offset, shape)] of W1, b1, W2, ... packed one after the other in a flat vector."""
    layout, offset = [], 0
    for l, (W, b) in enumerate(parameters, start=1):
        for name, array in ((f"W{l}", W), (f"b{l}", b)):
            layout.append((name, offset, tuple(array.shape)))
            offset += array.size
    return layout


class Network:
    """A fully connected L-layer network: layer_dims = [n_x, n_1, ..., n_L].

    activations: one name for every hidden layer or a list of L-1 names (relu, leaky_relu, sigmoid, tanh,
    linear). output: "sigmoid" (binary or multi-label, cross-entropy) or "softmax" (categorical
    cross-entropy); by default sigmoid for one output unit and softmax for more. init: "course"
    (randn / sqrt(n_prev)), "small" (randn * 0.01) or "he"; drawn on the host with RandomState(seed), so the
    same seed gives the same network on every backend. dtype: float32 (default) or float64.

    Examples are columns: X is (n_x, m); Y is (n_L, m), or (m,) for binary labels and class indices.
    """

    def __init__(self, layer_dims, activations="relu", output=None, init="course", dtype="float32", backend=None, seed=1):
        self.layer_dims = check_layer_dims(layer_dims)
        L = len(self.layer_dims) - 1
        hidden = [activations] * (L - 1) if isinstance(activations, str) else list(activations)
        if len(hidden) != L - 1:
            raise ValueError(f"activations: {L - 1} hidden layers need {L - 1} names, got {len(hidden)}: {hidden!r}")
        for name in hidden:
            check_activation(name)
        self.activations = hidden
        self.output = output or ("sigmoid" if self.layer_dims[-1] == 1 else "softmax")
        check_output(self.output)
        if self.output == "softmax" and self.layer_dims[-1] < 2:
            raise ValueError("a softmax output needs at least 2 units; use output='sigmoid' for one unit")
        self.init = init
        self.dtype = resolve_dtype(dtype)
        self.backend = get_backend(backend)
        initial = initial_parameters(self.layer_dims, init=init, seed=seed)
        # Every parameter lives in one vector (W1, b1, W2, b2, ...) and every gradient in another, so that an
        # update or a finiteness check is one pass in one call; the per-layer arrays are views into them.
        self._layout = _layout(initial)
        size = sum(int(np.prod(shape)) for _, _, shape in self._layout)
        self._theta = self.backend.empty((size,), self.dtype)  # (P,)
        self._grad = self.backend.zeros((size,), self.dtype)  # (P,)
        views, grad_views = self.views_of(self._theta), self.views_of(self._grad)
        self._W, self._b, self._dW, self._db = [None], [None], [None], [None]  # 1-based, like W1..WL
        for l, (W, b) in enumerate(initial, start=1):
            self.backend.copyto(views[f"W{l}"], self.backend.asarray(W, dtype=self.dtype))
            self.backend.copyto(views[f"b{l}"], self.backend.asarray(b, dtype=self.dtype))
            self._W.append(views[f"W{l}"])
            self._b.append(views[f"b{l}"])
            self._dW.append(grad_views[f"W{l}"])
            self._db.append(grad_views[f"b{l}"])
        self._layer_tuples = (tuple(self._W[1:]), tuple(self._b[1:]), tuple(self._dW[1:]), tuple(self._db[1:]))
        self._workspaces: OrderedDict[int, _Workspace] = OrderedDict()

    # ------------------------------------------------------------------ description and parameters
    @property
    def num_layers(self) -> int:
        """L, the number of layers with parameters."""
        return len(self.layer_dims) - 1

    def __repr__(self) -> str:
        return (
            f"Network({self.layer_dims}, activations={self.activations!r}, output={self.output!r}, "
            f"dtype={self.dtype.name!r}, backend={self.backend.name!r})"
        )

    @property
    def parameters(self) -> dict:
        """{'W1': ..., 'b1': ..., ...}: the live backend arrays (modifying them modifies the network)."""
        params = {}
        for l in range(1, self.num_layers + 1):
            params[f"W{l}"], params[f"b{l}"] = self._W[l], self._b[l]
        return params

    def views_of(self, vector) -> dict:
        """{'W1': view, 'b1': view, ...}: a (P,) vector laid out like the parameters, seen per parameter."""
        return {name: vector[start : start + int(np.prod(shape))].reshape(shape) for name, start, shape in self._layout}

    def flat_buffers(self):
        """(parameters, gradients): two (P,) backend vectors of which every W[l], b[l] (and dW[l], db[l]) is a view."""
        return self._theta, self._grad

    def get_parameters(self) -> dict:
        """A host (NumPy) copy of every parameter, keyed as the course keys them."""
        return {key: np.array(self.backend.to_numpy(value)) for key, value in self.parameters.items()}

    def set_parameters(self, parameters: dict) -> None:
        """Copy W1..WL, b1..bL from `parameters` (host or backend arrays) into the network, checking shapes."""
        for l in range(1, self.num_layers + 1):
            for key, target in ((f"W{l}", self._W[l]), (f"b{l}", self._b[l])):
                if key not in parameters:
                    raise KeyError(f"parameters has no {key}; expected W1..W{self.num_layers} and b1..b{self.num_layers}")
                value = as_matrix(self.backend, parameters[key], self.dtype, key)
                if tuple(value.shape) != tuple(target.shape):
                    raise ShapeError(f"layer {l}: {key} has shape {tuple(value.shape)}, the network needs {tuple(target.shape)}")
                self.backend.copyto(target, value)

    # ------------------------------------------------------------------ inputs
    def batch(self, X, Y=None) -> Batch:
        """Validate X (and Y) once and place them on the backend in the network's dtype.

        Raises ShapeError, DTypeError, NonFiniteError or LabelError naming the problem. Training loops and
        benchmarks pass the result to `train_step` so that the checks are not repeated every step.
        """
        X = as_matrix(self.backend, X, self.dtype, "X")
        check_input_rows(X, self.layer_dims[0])
        if Y is None:
            return Batch(X, None)
        Y = labels_as_matrix(self.backend, Y, self.output, self.layer_dims[-1], X.shape[1], self.dtype)
        # a labelled batch may be trained on, and a backend that updates inside its products needs Σ|X| for that
        return Batch(X, Y, self.backend.abs_sum(X) if self.backend.fuses_gemm_updates else None)

    def _workspace(self, m: int) -> _Workspace:
        ws = self._workspaces.get(m)
        if ws is None:
            ws = self._workspaces[m] = _Workspace(self.backend, self.layer_dims, m, self.dtype)
            if len(self._workspaces) > _WORKSPACES_KEPT:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(m)
        return ws

    # ------------------------------------------------------------------ propagation
    def _forward(self, batch: Batch, ws: _Workspace, dropout=None, rng=None, masks=None, with_grad=False, abs_sums=False):
        """Fill ws.A (and, given labels, ws.cost and, with_grad, ws.D[L] = (1/m)·dZ_L).

        dropout: drop rate per hidden layer (list of L-1 floats or None); masks: fixed masks per hidden layer
        (list of arrays or None, values 0 and 1/keep_prob) used instead of drawing new ones.
        abs_sums (without dropout): return [Σ|A[0]|, ..., Σ|A[L-1]|], A[0] = X, the inputs of the L products.
        """
        be, L = self.backend, self.num_layers
        A_in = batch.X  # (n_0, m)
        sums = [batch.x_abs_sum if batch.x_abs_sum is not None else be.abs_sum(batch.X)] if abs_sums else None
        for l in range(1, L):
            be.gemm(self._W[l], A_in, out=ws.A[l])  # Z[l] = W[l]·A[l-1]: (n_l, n_{l-1})·(n_{l-1}, m)
            # A[l] = g(Z + b)
            total = be.bias_activation_forward(ws.A[l], self._b[l], self.activations[l - 1], out=ws.A[l], abs_sum=abs_sums)
            if abs_sums:
                sums.append(total)
            A_in = ws.A[l]
            mask = self._mask(ws, l, dropout, rng, masks)
            if mask is not None:
                ws.active_masks[l] = mask
                _, dropped = ws.dropout_buffers(be, l, ws.A[l].shape, self.dtype)
                be.multiply(ws.A[l], mask, out=dropped)  # inverted dropout: A[l] * mask / keep_prob
                A_in = dropped
        be.gemm(self._W[L], A_in, out=ws.ZL)  # Z[L]: (n_L, m)
        has_labels = batch.Y is not None
        be.output_layer(
            ws.ZL,
            self._b[L],
            self.output,
            ws.A[L],
            Y=batch.Y,
            dZ=ws.D[L] if (has_labels and with_grad) else None,
            cost=ws.cost if has_labels else None,
            dZ_scale=1.0 / ws.m,  # D[L] = (1/m)·dZ[L]: the mean's 1/m, applied once here instead of per GEMM
        )
        return sums

    def _mask(self, ws, l, dropout, rng, masks):
        if masks is not None and masks[l - 1] is not None:
            return masks[l - 1]
        if dropout is None or not dropout[l - 1]:
            return None
        mask, _ = ws.dropout_buffers(self.backend, l, ws.A[l].shape, self.dtype)
        self.backend.dropout_mask(rng, 1.0 - dropout[l - 1], out=mask)
        return mask

    def _layer_input(self, batch, ws, l):
        """What layer l multiplied: X for l = 1, else A[l-1] after its dropout mask if it had one."""
        if l == 1:
            return batch.X
        return ws.dropped[l - 1] if (l - 1) in ws.active_masks else ws.A[l - 1]

    def _backward(self, batch: Batch, ws: _Workspace, l2: float = 0.0) -> None:
        """Fill self._dW, self._db from ws (after `_forward(..., with_grad=True)`)."""
        self._deltas(ws)
        self._weight_gradients(batch, ws, l2)

    def _deltas(self, ws: _Workspace, abs_sums: bool = False):
        """Fill ws.D[l] = (1/m)·dZ[l] and self._db for every layer; abs_sums: return [Σ|D[1]|, ..., Σ|D[L]|]."""
        # D[l] holds (1/m)·dA[l], then (1/m)·dZ[l]: the output layer wrote D[L] = (1/m)·(A[L] - Y), and the
        # factor carries through every product below, so dW and db need no scaling pass of their own.
        be, L = self.backend, self.num_layers
        be.bias_grad(ws.D[L], out=self._db[L], scale=1.0)  # db[L] = (1/m)·Σ dZ[L]: (n_L, 1)
        sums = [None] * L
        if abs_sums:
            sums[L - 1] = be.abs_sum(ws.D[L])
        for l in range(L, 1, -1):
            be.gemm(self._W[l], ws.D[l], out=ws.D[l - 1], trans_a=True)  # dA[l-1] = W[l]ᵀ·dZ[l]: (n_{l-1}, m)
            if (l - 1) in ws.active_masks:
                be.multiply(ws.D[l - 1], ws.active_masks[l - 1], out=ws.D[l - 1])  # through the dropout mask
            # dZ[l-1] = dA[l-1] * g'(Z[l-1]) in place, with db[l-1] = (1/m)·Σ_columns dZ[l-1] in the same pass
            sums[l - 2] = be.activation_backward(
                ws.D[l - 1], self.activations[l - 2], ws.D[l - 1], A=ws.A[l - 1], db=self._db[l - 1], abs_sum=abs_sums
            )
        return sums if abs_sums else None

    def _weight_gradients(self, batch: Batch, ws: _Workspace, l2: float) -> None:
        """self._dW[l] = (1/m)·dZ[l]·A[l-1]ᵀ (+ (λ/m)·W[l]) from the deltas in ws.D."""
        be = self.backend
        for l in range(1, self.num_layers + 1):
            A_prev = self._layer_input(batch, ws, l)  # (n_{l-1}, m)
            be.gemm(ws.D[l], A_prev, out=self._dW[l], trans_b=True)  # dW = (1/m)·dZ·A_prevᵀ: (n_l, n_{l-1})
            if l2:
                be.axpy(l2 / ws.m, self._W[l], self._dW[l])  # + (λ/m)·W from the L2 penalty

    def _run(self, batch: Batch, dropout=None, rng=None, masks=None, with_grad=False, l2=0.0) -> _Workspace:
        ws = self._workspace(batch.X.shape[1])
        ws.active_masks.clear()
        self._forward(batch, ws, dropout=dropout, rng=rng, masks=masks, with_grad=with_grad)
        if with_grad:
            self._backward(batch, ws, l2=l2)
        return ws

    def _cost(self, ws: _Workspace, l2: float) -> float:
        cost = float(self.backend.to_numpy(ws.cost)[0])
        if l2:
            penalty = sum(self.backend.sum_of_squares(W) for W in self._W[1:])
            cost += l2 / (2 * ws.m) * penalty  # (λ/2m)·Σ‖W[l]‖²
        return cost

    def _check_masks(self, masks, m):
        if masks is None:
            return None
        masks = list(masks)
        if len(masks) != self.num_layers - 1:
            raise ValueError(f"dropout_masks needs one entry per hidden layer ({self.num_layers - 1}), got {len(masks)}")
        checked = []
        for l, mask in enumerate(masks, start=1):
            if mask is not None:
                mask = as_matrix(self.backend, mask, self.dtype, f"dropout mask of layer {l}")
                if tuple(mask.shape) != (self.layer_dims[l], m):
                    raise ShapeError(f"dropout mask of layer {l} has shape {tuple(mask.shape)}, expected ({self.layer_dims[l]}, {m})")
            checked.append(mask)
        return checked

    # ------------------------------------------------------------------ public computation
    def forward(self, X):
        """Output probabilities A[L] (n_L, m) for X, as a new backend array."""
        batch = X if isinstance(X, Batch) else self.batch(X)
        ws = self._run(Batch(batch.X, None))
        out = self.backend.empty(ws.A[self.num_layers].shape, self.dtype)
        self.backend.copyto(out, ws.A[self.num_layers])
        return out

    def loss(self, X, Y=None, l2: float = 0.0, dropout_masks=None) -> float:
        """The cost: mean cross-entropy plus (l2/2m)·Σ‖W‖², with fixed dropout masks if given."""
        batch = X if isinstance(X, Batch) else self.batch(X, Y)
        ws = self._run(batch, masks=self._check_masks(dropout_masks, batch.X.shape[1]))
        return self._cost(ws, l2)

    def backward(self, X, Y=None, l2: float = 0.0, dropout_masks=None):
        """(cost, gradients): gradients keyed dW1, db1, ..., as new backend arrays.

        Runs forward and backward propagation on (X, Y); `dropout_masks` fixes the hidden layers' masks.
        """
        batch = X if isinstance(X, Batch) else self.batch(X, Y)
        ws = self._run(batch, masks=self._check_masks(dropout_masks, batch.X.shape[1]), with_grad=True, l2=l2)
        grads = {}
        for l in range(1, self.num_layers + 1):
            for key, g in ((f"dW{l}", self._dW[l]), (f"db{l}", self._db[l])):
                grads[key] = self.backend.empty(g.shape, self.dtype)
                self.backend.copyto(grads[key], g)
        return self._cost(ws, l2), grads

    def compute_gradients(self, batch: Batch, l2: float = 0.0, dropout=None, rng=None) -> float:
        """Forward and backward on a prepared batch, leaving the gradients in the network's own buffers.

        Returns the cost. Raises DivergenceError, before anything is updated, when the cost or a gradient
        is not finite. Used by `train_step` and by optimizers (see `dnn.optimizers`).
        """
        ws = self._run(batch, dropout=dropout, rng=rng, with_grad=True, l2=l2)
        cost = self._cost(ws, l2)
        if not np.isfinite(cost) or not self.backend.all_finite(self._grad):
            raise _divergence(cost)
        return cost

    def gradient_buffers(self):
        """[(W1, dW1, 'W1'), (b1, db1, 'b1'), ...]: each parameter with the buffer holding its gradient."""
        pairs = []
        for l in range(1, self.num_layers + 1):
            pairs.append((self._W[l], self._dW[l], f"W{l}"))
            pairs.append((self._b[l], self._db[l], f"b{l}"))
        return pairs

    def train_step(self, batch: Batch, lr: float = 0.0075, l2: float = 0.0) -> float:
        """One gradient-descent step on a prepared batch; returns the cost before the update.

        W[l] ← W[l] - lr·dW[l] and b[l] ← b[l] - lr·db[l] for every layer. Raises DivergenceError, with the
        parameters left as they were, when the cost or a gradient is not finite. Where the backend fuses
        updates into its products, the gradients themselves are never stored (`compute_gradients` stores them).
        """
        ws = self._workspace(batch.X.shape[1])
        ws.active_masks.clear()
        if not l2:
            # a backend that compiles whole steps takes it in one call (no Python between the operations)
            taken = self.backend.sgd_step(batch.X, batch.Y, batch.x_abs_sum, *self._layer_tuples, *ws.step_buffers,
                                          self.activations, self.output, self._theta, self._grad, lr)
            if taken is not None:
                cost = self._cost(ws, 0.0)
                if not taken:
                    raise _divergence(cost)
                return cost
        if self.backend.fuses_gemm_updates:
            return self._step_inside_products(batch, ws, lr, l2)
        cost = self.compute_gradients(batch, l2=l2)
        self.backend.sgd_update(self._theta, self._grad, lr)  # every parameter in one pass
        return cost

    def _step_inside_products(self, batch: Batch, ws: _Workspace, lr: float, l2: float) -> float:
        """`train_step` with each W updated by the product that computes its gradient: no update pass, no check pass.

        W[l] ← (1 - lr·λ/m)·W[l] - lr·(1/m)·dZ[l]·A[l-1]ᵀ is one GEMM with alpha = -lr, beta = 1 - lr·λ/m.
        Its gradient is never stored, so its finiteness is proven beforehand from Σ|dZ[l]| and Σ|A[l-1]|,
        which the forward and backward kernels return from passes they make anyway.
        """
        be, L = self.backend, self.num_layers
        input_sums = self._forward(batch, ws, with_grad=True, abs_sums=True)  # Σ|A[l-1]|, l = 1..L
        delta_sums = self._deltas(ws, abs_sums=True)  # Σ|(1/m)·dZ[l]|, l = 1..L
        cost = self._cost(ws, l2)  # with the penalty of the W about to be updated
        if not np.isfinite(cost):
            raise _divergence(cost)
        if not products_provably_finite(input_sums, delta_sums, self.dtype):
            # a gradient may not be finite: store and check it before anything is updated
            self._weight_gradients(batch, ws, l2)
            if not be.all_finite(self._grad):
                raise _divergence(cost)
            be.sgd_update(self._theta, self._grad, lr)
            return cost
        decay = 1.0 - lr * l2 / ws.m  # the L2 penalty's share of the update: W ← W - lr·(λ/m)·W
        for l in range(1, L + 1):
            A_prev = self._layer_input(batch, ws, l)  # (n_{l-1}, m)
            # W[l] ← decay·W[l] - lr·(1/m)·dZ[l]·A_prevᵀ: (n_l, m)·(m, n_{l-1})
            be.gemm(ws.D[l], A_prev, out=self._W[l], trans_b=True, alpha=-lr, beta=decay)
            be.sgd_update(self._b[l], self._db[l], lr)  # b[l] ← b[l] - lr·db[l]: (n_l, 1)
        return cost

    def step(self, X, Y, lr: float = 0.0075, l2: float = 0.0) -> float:
        """Validate (X, Y) and take one gradient-descent step; returns the cost before the update."""
        return self.train_step(self.batch(X, Y), lr=lr, l2=l2)

    def predict_proba(self, X) -> np.ndarray:
        """Output probabilities (n_L, m) as a host NumPy array."""
        return self.backend.to_numpy(self.forward(X))

    def predict(self, X) -> np.ndarray:
        """Predicted classes (1, m) as a host NumPy array: 0/1 for sigmoid, class indices for softmax."""
        batch = X if isinstance(X, Batch) else self.batch(X)
        ws = self._run(Batch(batch.X, None))
        return self.backend.to_numpy(self.backend.predict_classes(ws.A[self.num_layers], self.output))

    def evaluate(self, X, Y) -> dict:
        """{'cost': mean cross-entropy, 'accuracy': fraction of examples classified correctly}."""
        batch = X if isinstance(X, Batch) else self.batch(X, Y)
        ws = self._run(batch)
        return {"cost": self._cost(ws, 0.0), "accuracy": self._accuracy(ws, batch.Y)}

    def last_accuracy(self, batch: Batch) -> float:
        """Accuracy on `batch` of the outputs of the latest forward pass on it (in training: before the update).

        Lets a training loop score each mini-batch from the forward pass its step already made.
        """
        return self._accuracy(self._workspaces[batch.X.shape[1]], batch.Y)

    def _accuracy(self, ws: _Workspace, Y) -> float:
        predicted = self.backend.to_numpy(self.backend.predict_classes(ws.A[self.num_layers], self.output))  # (1, m)
        truth = self.backend.to_numpy(Y)
        if self.output == "softmax":
            truth = truth.argmax(axis=0)[None, :]  # one-hot (C, m) -> class indices (1, m)
        return float(np.mean(predicted == truth))

    # ------------------------------------------------------------------ training and model files
    def fit(self, X, Y, epochs: int = 100, **options):
        """Train on (X, Y) in place and return the History; see `dnn.training.fit` for every option."""
        from .training import fit

        return fit(self, X, Y, epochs=epochs, **options)

    def save(self, path) -> None:
        """Write this network to one .npz file atomically (see `dnn.checkpoint.save`)."""
        from .checkpoint import save

        save(self, path)

    @classmethod
    def load(cls, path, backend=None) -> "Network":
        """The network saved at `path`, on `backend`; raises ModelFileError for a bad file."""
        from .checkpoint import load

        return load(path, backend=backend)
