"""The parameter layout: every W[l], b[l] a view into one flat vector, every dW[l], db[l] a view into another.

One vector each means an update, a finiteness check or an allreduce of the gradient is one pass in one call.
"""

from __future__ import annotations

import numpy as np


def layout(layer_dims) -> list[tuple[str, int, tuple[int, ...]]]:
    """[(name, offset, shape)] of W1 (n_1, n_0), b1 (n_1, 1), W2, ... packed one after the other in a flat vector."""
    entries, offset = [], 0
    for l in range(1, len(layer_dims)):
        for name, shape in ((f"W{l}", (layer_dims[l], layer_dims[l - 1])), (f"b{l}", (layer_dims[l], 1))):
            entries.append((name, offset, shape))
            offset += int(np.prod(shape))
    return entries


class Parameters:
    """The flat parameter vector `theta` (P,) and gradient vector `grad` (P,) of an L-layer network.

    W[l] (n_l, n_{l-1}), b[l] (n_l, 1), dW[l], db[l] are 1-based lists of views (index 0 is None, like the
    course's W1..WL), so that writing a view writes the vector and the other way round.
    """

    def __init__(self, backend, layer_dims, dtype):
        self.backend = backend
        self.layout = layout(layer_dims)
        size = sum(int(np.prod(shape)) for _, _, shape in self.layout)
        self.theta = backend.zeros((size,), dtype)  # (P,)
        self.grad = backend.zeros((size,), dtype)  # (P,)
        views, grad_views = self.views_of(self.theta), self.views_of(self.grad)
        L = len(layer_dims) - 1
        self.W = [None] + [views[f"W{l}"] for l in range(1, L + 1)]
        self.b = [None] + [views[f"b{l}"] for l in range(1, L + 1)]
        self.dW = [None] + [grad_views[f"W{l}"] for l in range(1, L + 1)]
        self.db = [None] + [grad_views[f"b{l}"] for l in range(1, L + 1)]

    def views_of(self, vector) -> dict:
        """{'W1': view, 'b1': view, ...}: a (P,) vector laid out like the parameters, seen per parameter."""
        view = self.backend.reshape
        return {name: view(vector[start : start + int(np.prod(shape))], shape) for name, start, shape in self.layout}

    def named(self) -> dict:
        """{'W1': W1, 'b1': b1, ...}: the live views."""
        return self.views_of(self.theta)
