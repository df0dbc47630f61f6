"""The parameter layout: every W[l], b[l] a view into one flat vector, every dW[l], db[l] a view into another.

One vector each means an update, a finiteness check or an allreduce of the gradient is one pass in one call.
"""

from __future__ import annotations

import numpy as np


def _layout(shapes) -> list[tuple[str, int, tuple[int, ...]]]:
    """[(name, offset, shape)] of W1, b1, W2, ... packed one after the other in a flat vector."""
    layout, offset = [], 0
    for l, (w_shape, b_shape) in enumerate(shapes, start=1):
        for name, shape in ((f"W{l}", w_shape), (f"b{l}", b_shape)):
            layout.append((name, offset, tuple(shape)))
            offset += int(np.prod(shape))
    return layout


class Parameters:
    """The flat parameter vector `theta` (P,) and gradient vector `grad` (P,) of an L-layer network.

    W[l] (n_l, n_{l-1}), b[l] (n_l, 1), dW[l], db[l] are 1-based lists of views (index 0 is None, like the
    course's W1..WL), so that writing a view writes the vector and the other way round.
    """

    def __init__(self, backend, layer_dims, dtype):
        shapes = [((layer_dims[l], layer_dims[l - 1]), (layer_dims[l], 1)) for l in range(1, len(layer_dims))]
        self.layout = _layout(shapes)
        size = sum(int(np.prod(shape)) for _, _, shape in self.layout)
        self.theta = backend.zeros((size,), dtype)  # (P,)
        self.grad = backend.zeros((size,), dtype)  # (P,)
        views, grad_views = self.views_of(self.theta), self.views_of(self.grad)
        L = len(shapes)
        self.W = [None] + [views[f"W{l}"] for l in range(1, L + 1)]
        self.b = [None] + [views[f"b{l}"] for l in range(1, L + 1)]
        self.dW = [None] + [grad_views[f"W{l}"] for l in range(1, L + 1)]
        self.db = [None] + [grad_views[f"b{l}"] for l in range(1, L + 1)]

    def views_of(self, vector) -> dict:
        """{'W1': view, 'b1': view, ...}: a (P,) vector laid out like the parameters, seen per parameter."""
        return {name: vector[start : start + int(np.prod(shape))].reshape(shape) for name, start, shape in self.layout}

    def named(self) -> dict:
        """{'W1': W1, 'b1': b1, ...}: the live views."""
        return self.views_of(self.theta)
