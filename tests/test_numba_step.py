"""`kernels.numba_step.sgd_step` takes the same SGD step as the numba backend's operation-by-operation path.

One compiled call must leave the cost and every parameter where the backend's ~20 calls leave them
(within the gradient tolerance), for every hidden activation, both output layers, odd widths and one
example, whether it updates W inside the products (gradients proven finite) or stores and checks the
gradients first; a step whose cost or gradients are not finite must report it and leave the parameters
untouched.
"""

import numpy as np
import pytest

pytest.importorskip("numba")

import dnn  # noqa: E402
from dnn.backends.base import finite_product_limit  # noqa: E402
from dnn.backends.numba_backend import NumbaBackend  # noqa: E402
from dnn.kernels.numba_activations import ACTIVATION_CODES  # noqa: E402
from dnn.kernels.numba_step import sgd_step  # noqa: E402
from dnn.tolerances import gradient_rtol, relative_difference  # noqa: E402

SHAPES = [([3, 1], 1), ([5, 7, 1], 1), ([64, 64, 64, 1], 64), ([13, 9, 5, 3, 1], 17), ([4, 1, 1], 6)]
DTYPES = ["float32", "float64"]


def fused_step(net, batch, lr, limit=None):
    """sgd_step on `net`'s own buffers (`limit`: the bound that proves gradients finite); returns its result."""
    ws = net._workspace(batch.X.shape[1])
    acts = np.array([ACTIVATION_CODES[a] for a in net.activations] or [0], dtype=np.int64)  # (L-1,)
    cblas = net.backend.cblas
    return sgd_step(
        batch.X, batch.Y, -1.0 if batch.x_abs_sum is None else batch.x_abs_sum,
        tuple(net._W[1:]), tuple(net._b[1:]), tuple(net._dW[1:]), tuple(net._db[1:]),
        tuple(ws.A[1:]), ws.ZL, tuple(ws.D[1:]), ws.cost, acts, net.output == "softmax", net._theta, net._grad,
        net.dtype.type(lr), finite_product_limit(net.dtype) if limit is None else limit,
        cblas.address(net.dtype), cblas.ilp64,
    )  # fmt: skip


def twin_networks(dims, m, dtype, activation, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((dims[0], m))
    Y = rng.integers(0, max(2, dims[-1]), m)  # binary labels, or class indices for a softmax output
    nets = [dnn.Network(dims, activations=activation, dtype=dtype, backend=be, seed=seed) for be in ("numba", _stepwise())]
    return nets, [net.batch(X, Y) for net in nets]


def _stepwise():
    """A numba backend that leaves every step to the network's operation-by-operation path."""
    backend = NumbaBackend()
    backend.parallel_min_elements = 0  # no layer is small enough for the compiled step
    return backend


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims,m", SHAPES + [([6, 5, 4], 9), ([3, 8, 2], 1)])
@pytest.mark.parametrize("activation", list(ACTIVATION_CODES))
@pytest.mark.parametrize("proof", ["bounded", "unproven"], ids=["update-in-products", "gradients-stored-and-checked"])
def test_step_matches_train_step(dims, m, dtype, activation, proof):
    (fused, reference), (batch, ref_batch) = twin_networks(dims, m, dtype, activation)
    tol = gradient_rtol(dtype)
    for _ in range(3):  # later steps start from updated parameters and reused workspaces
        assert fused_step(fused, batch, 0.5, limit=None if proof == "bounded" else 0.0)
        cost = reference.train_step(ref_batch, 0.5)
        assert relative_difference(fused._workspace(m).cost, [cost]) <= tol
        assert relative_difference(fused._theta, reference._theta) <= tol


def test_batches_without_a_known_input_sum_are_summed_in_the_step():
    (fused, reference), (batch, ref_batch) = twin_networks([5, 7, 1], 4, "float64", "relu")
    assert fused_step(fused, batch._replace(x_abs_sum=None), 0.5)
    reference.train_step(ref_batch, 0.5)
    assert relative_difference(fused._theta, reference._theta) <= gradient_rtol("float64")


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_gradient_leaves_parameters_unchanged(dtype):
    (net, _), (batch, _) = twin_networks([5, 7, 1], 4, dtype, "relu")
    net._W[2][0, 0] = np.inf  # the output logits, the cost and the gradients become non-finite
    before = net._theta.copy()
    assert not fused_step(net, batch, 0.5)
    np.testing.assert_array_equal(net._theta, before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_gradient_with_finite_cost_is_caught(dtype):
    """x = (big, -big) cancels in W1·x, so the cost is finite, but dW1 = (W2ᵀ·dZ2)·xᵀ overflows."""
    big = np.finfo(dtype).max / 2
    net = dnn.Network([2, 2, 1], activations="linear", dtype=dtype, backend="numba")
    net.set_parameters({"W1": np.ones((2, 2)), "b1": np.zeros((2, 1)), "W2": np.full((1, 2), 1e10), "b2": np.zeros((1, 1))})
    batch = net.batch(np.array([[big], [-big]]), np.array([1.0]))
    before = net._theta.copy()
    assert not fused_step(net, batch, 0.5)
    assert np.isfinite(net._workspace(1).cost[0])
    np.testing.assert_array_equal(net._theta, before)


def test_train_step_compiles_steps_whose_layers_are_all_below_the_parallel_size(monkeypatch):
    """The compiled step runs elementwise passes serially, so it takes only steps that would run them serially."""
    backend = NumbaBackend()
    backend.parallel_min_elements = 128 * 64
    taken = []
    original = backend.sgd_step
    monkeypatch.setattr(backend, "sgd_step", lambda *args: taken.append(original(*args)) or taken[-1])
    rng = np.random.default_rng(0)
    for dims in ([64, 127, 64, 1], [64, 128, 64, 1]):  # widest layer 127·64 elements, then 128·64 (the limit)
        net = dnn.Network(dims, backend=backend)
        net.train_step(net.batch(rng.standard_normal((64, 64)), rng.integers(0, 2, 64)), 0.1)
    assert taken == [True, None]
