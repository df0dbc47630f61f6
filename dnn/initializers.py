"""Weight initialisation, drawn on the host with NumPy's legacy RandomState in the course's order.

Drawing on the host makes the same seed give the same network on every backend and dtype: values are
drawn in float64 and converted afterwards.
"""

from __future__ import annotations

import numpy as np

#: name -> how a standard-normal draw W (n_l, n_prev) is scaled, written as the course writes it.
WEIGHT_SCALES = {
    "course": lambda W, n_prev: W / np.sqrt(n_prev),  # the deep model of the course's application notebook
    "small": lambda W, n_prev: W * 0.01,  # the course's first, shallow initialisation
    "he": lambda W, n_prev: W * np.sqrt(2.0 / n_prev),  # He et al. 2015, for ReLU layers
}


def check_layer_dims(layer_dims) -> list[int]:
    """layer_dims as a list of at least two positive ints; anything else raises ValueError naming it."""
    dims = list(layer_dims)
    if len(dims) < 2:
        raise ValueError(f"layer_dims needs an input size and at least one layer, got {dims!r}")
    for i, n in enumerate(dims):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"layer_dims[{i}] must be a positive integer, got {n!r}")
    return [int(n) for n in dims]


def initial_parameters(layer_dims, init: str = "course", seed: int | None = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W1, b1), ..., (WL, bL)] in float64 on the host: W[l] = randn(n_l, n_{l-1}) * scale, b[l] = 0.

    `seed=None` draws from NumPy's global legacy generator (as code that calls np.random.seed does).
    """
    dims = check_layer_dims(layer_dims)
    if init not in WEIGHT_SCALES:
        raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(WEIGHT_SCALES)}")
    draw = np.random.randn if seed is None else np.random.RandomState(seed).randn
    scale = WEIGHT_SCALES[init]
    params = []
    for n_prev, n in zip(dims[:-1], dims[1:]):
        W = scale(draw(n, n_prev), n_prev)  # (n_l, n_{l-1})
        params.append((W, np.zeros((n, 1))))  # b: (n_l, 1)
    return params
