"""Forward and backward propagation of a `Network` through its backend, on reused workspaces.

forward:  Z[l] = W[l]·A[l-1] + b[l], A[l] = g[l](Z[l]); the output layer writes its cost and (1/m)·dZ[L].
backward: dZ[l] = dA[l] * g'(Z[l]), dA[l-1] = W[l]ᵀ·dZ[l], dW[l] = (1/m)·dZ[l]·A[l-1]ᵀ, db[l] = (1/m)·Σ dZ[l].

One layer's products are written once, in `layer_forward`, `input_gradient` and `weight_gradient`: the layer
loops below, the course's functions (`dnn.functional`) and the gradient check (`dnn.gradcheck`) all call them.
"""

from __future__ import annotations

from .errors import ShapeError
from .validation import require_labels


class Batch:
    """Inputs validated and placed on a network's backend in its dtype (made by `Network.batch`).

    X (n_x, m); Y (n_L, m), or None for inputs without labels. The arrays must not be changed afterwards.
    """

    __slots__ = ("X", "Y", "__weakref__")  # weak references: a backend may keep what it derives from a batch

    def __init__(self, X, Y=None):
        self.X = X
        self.Y = Y

    def __iter__(self):
        return iter((self.X, self.Y))

    def __repr__(self) -> str:
        y = None if self.Y is None else tuple(self.Y.shape)
        return f"Batch(X={tuple(self.X.shape)}, Y={y})"


def check_batch(net, batch, labels_for: str | None = "a training step") -> int:
    """The batch's example count m after O(1) checks that its arrays fit `net` (else ShapeError naming both).

    labels_for: the call that needs the batch's labels, named in the LabelError when it has none (None: X alone).

    Every kernel indexes within the shapes checked here, so no batch reaches one with arrays it would read
    past: a Batch of another network or built by hand with the wrong shapes is refused before anything runs.
    """
    if not isinstance(batch, Batch):
        raise TypeError(f"expected a Batch (see Network.batch), got {type(batch).__name__}")
    X, Y = batch.X, batch.Y
    n_x, n_out = net.layer_dims[0], net.layer_dims[-1]
    if getattr(X, "ndim", None) != 2 or X.shape[0] != n_x:
        raise ShapeError(f"batch X has shape {tuple(getattr(X, 'shape', ()))}, the network needs ({n_x}, m)")
    m = X.shape[1]
    if m == 0:
        raise ShapeError("batch X has no examples (m = 0)")
    be, dtype = net.backend, net.backend.native_dtype(net.dtype)
    if not be.is_array(X) or X.dtype != dtype or not be.is_contiguous(X):
        raise ShapeError(
            f"batch X is a {type(X).__name__} of {X.dtype} (C-contiguous: {be.is_array(X) and be.is_contiguous(X)}); "
            f"the network needs a C-contiguous {net.dtype.name} {be.name} array: make batches with Network.batch"
        )
    if labels_for is None:
        return m
    require_labels(Y, labels_for)
    if getattr(Y, "ndim", None) != 2 or tuple(Y.shape) != (n_out, m):
        raise ShapeError(f"batch Y has shape {tuple(getattr(Y, 'shape', ()))}, the network needs ({n_out}, {m})")
    if not be.is_array(Y) or Y.dtype != dtype or not be.is_contiguous(Y):
        raise ShapeError(
            f"batch Y is a {type(Y).__name__} of {Y.dtype}; the network needs C-contiguous {net.dtype.name}"
        )
    return m


class Workspace:
    """Buffers for one batch size m, allocated once and reused by every pass on batches of that size.

    A[l] (n_l, m) holds layer l's output (its pre-activation first, overwritten in place by g);
    ZL (n_L, m) keeps the output logits for the stable cost; D[l] (n_l, m) holds (1/m)·dA[l], then
    (1/m)·dZ[l] in place; cost (1,) the mean cross-entropy.
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
        self.active_masks = {}  # l -> the mask applied to hidden layer l in the current pass

    def dropout_buffers(self, backend, l, shape, dtype):
        if l not in self.masks:
            self.masks[l] = backend.empty(shape, dtype)
            self.dropped[l] = backend.empty(shape, dtype)
        return self.masks[l], self.dropped[l]

    def layer_input(self, batch, l):
        """What layer l multiplied: X for l = 1, else A[l-1] after its dropout mask if it had one."""
        if l == 1:
            return batch.X
        return self.dropped[l - 1] if (l - 1) in self.active_masks else self.A[l - 1]


def layer_forward(be, W, b, A_prev, activation: str, out) -> None:
    """out ← g(W·A_prev + b): one layer's output (n_l, m) from its input A_prev (n_{l-1}, m) on backend `be`.

    activation "linear" gives the pre-activation Z itself. W (n_l, n_{l-1}), b (n_l, 1).
    """
    be.gemm(W, A_prev, out=out)  # W·A_prev: (n_l, n_{l-1})·(n_{l-1}, m)
    be.bias_activation_forward(out, b, activation, out=out)  # g(Z + b), b broadcast over the m columns


def input_gradient(be, W, dZ, out) -> None:
    """out ← Wᵀ·dZ: a layer's input gradient dA_prev (n_{l-1}, m) from W (n_l, n_{l-1}) and dZ (n_l, m)."""
    be.gemm(W, dZ, out=out, trans_a=True)  # (n_{l-1}, n_l)·(n_l, m)


def weight_gradient(be, dZ, A_prev, out, scale: float = 1.0) -> None:
    """out ← scale·dZ·A_prevᵀ: a layer's weight gradient dW (n_l, n_{l-1}) from dZ (n_l, m), A_prev (n_{l-1}, m).

    scale 1/m gives the mean's gradient; the engine's own dZ already carries the 1/m, so it passes 1.
    """
    be.gemm(dZ, A_prev, out=out, trans_b=True, alpha=scale)  # (n_l, m)·(m, n_{l-1})


def forward(net, batch, ws, dropout=None, rng=None, masks=None, with_grad=False, dZ_scale=None) -> None:
    """Fill ws.A (and, given labels, ws.cost and, with_grad, ws.D[L] = dZ_scale·dZ_L, by default (1/m)·dZ_L).

    dropout: drop rate per hidden layer (list of L-1 floats or None), masks drawn from `rng`; masks: fixed
    masks per hidden layer (list of arrays or None, values 0 and 1/keep_prob) used instead.
    """
    be, p, L = net.backend, net.params, net.num_layers
    ws.active_masks.clear()
    A_in = batch.X  # (n_0, m)
    for l in range(1, L):
        layer_forward(be, p.W[l], p.b[l], A_in, net.activations[l - 1], out=ws.A[l])  # A[l] = g(Z[l]): (n_l, m)
        A_in = ws.A[l]
        mask = _mask(net, ws, l, dropout, rng, masks)
        if mask is not None:
            ws.active_masks[l] = mask
            _, dropped = ws.dropout_buffers(be, l, ws.A[l].shape, net.dtype)
            be.multiply(ws.A[l], mask, out=dropped)  # inverted dropout: A[l] * mask / keep_prob
            A_in = dropped
    be.gemm(p.W[L], A_in, out=ws.ZL)  # Z[L]: (n_L, m)
    has_labels = batch.Y is not None
    be.output_layer(
        ws.ZL,
        p.b[L],
        net.output,
        ws.A[L],
        Y=batch.Y,
        dZ=ws.D[L] if (has_labels and with_grad) else None,
        cost=ws.cost if has_labels else None,
        dZ_scale=1.0 / ws.m if dZ_scale is None else dZ_scale,  # the mean's 1/m, applied once here, not per GEMM
    )


def _mask(net, ws, l, dropout, rng, masks):
    if masks is not None and masks[l - 1] is not None:
        return masks[l - 1]
    if dropout is None or not dropout[l - 1]:
        return None
    mask, _ = ws.dropout_buffers(net.backend, l, ws.A[l].shape, net.dtype)
    net.backend.dropout_mask(rng, 1.0 - dropout[l - 1], out=mask)
    return mask


def backward(net, batch, ws) -> None:
    """Fill the network's gradient vector (dW[l], db[l]) from ws, after `forward(..., with_grad=True)`."""
    # D[l] holds (1/m)·dA[l], then (1/m)·dZ[l]: the output layer wrote D[L] = (1/m)·(A[L] - Y), and the
    # factor carries through every product below, so dW and db need no scaling pass of their own.
    be, p, L = net.backend, net.params, net.num_layers
    be.bias_grad(ws.D[L], out=p.db[L], scale=1.0)  # db[L] = (1/m)·Σ dZ[L]: (n_L, 1)
    for l in range(L, 1, -1):
        input_gradient(be, p.W[l], ws.D[l], out=ws.D[l - 1])  # dA[l-1] = W[l]ᵀ·dZ[l]: (n_{l-1}, m)
        if (l - 1) in ws.active_masks:
            be.multiply(ws.D[l - 1], ws.active_masks[l - 1], out=ws.D[l - 1])  # through the dropout mask
        # dZ[l-1] = dA[l-1] * g'(Z[l-1]) in place, with db[l-1] = (1/m)·Σ_columns dZ[l-1] in the same pass
        be.activation_backward(ws.D[l - 1], net.activations[l - 2], ws.D[l - 1], A=ws.A[l - 1], db=p.db[l - 1])
    for l in range(1, L + 1):
        weight_gradient(be, ws.D[l], ws.layer_input(batch, l), out=p.dW[l])  # dW[l] = (1/m)·dZ[l]·A[l-1]ᵀ


def add_l2_gradient(net, l2: float, m: int) -> None:
    """dW[l] += (λ/m)·W[l] for every layer: the gradient of the penalty (λ/2m)·Σ‖W[l]‖²."""
    be, p = net.backend, net.params
    for l in range(1, net.num_layers + 1):
        be.axpy(l2 / m, p.W[l], p.dW[l])
