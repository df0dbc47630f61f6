"""`kernels.numba_step.sgd_step` takes the same SGD step as the numba backend's operation-by-operation path.

One compiled call must leave the cost, every gradient and every parameter where the backend's ~25 calls
leave them (within the gradient tolerance), for every hidden activation, odd widths and one example; a
step whose cost or gradients are not finite must report it and leave the parameters untouched.
"""

import numpy as np
import pytest

pytest.importorskip("numba")

import dnn  # noqa: E402
from dnn.backends.numba_backend import NumbaBackend  # noqa: E402
from dnn.kernels.numba_activations import ACTIVATION_CODES  # noqa: E402
from dnn.kernels.numba_step import sgd_step  # noqa: E402
from dnn.tolerances import gradient_rtol, relative_difference  # noqa: E402

SHAPES = [([3, 1], 1), ([5, 7, 1], 1), ([64, 64, 64, 1], 64), ([13, 9, 5, 3, 1], 17), ([4, 1, 1], 6)]
DTYPES = ["float32", "float64"]


def fused_step(net, batch, lr):
    """sgd_step on `net`'s own buffers; returns what it returns."""
    ws = net._workspace(batch.X.shape[1])
    acts = np.array([ACTIVATION_CODES[a] for a in net.activations], dtype=np.int64)  # (L-1,)
    return sgd_step(
        batch.X, batch.Y, tuple(net._W[1:]), tuple(net._b[1:]), tuple(net._dW[1:]), tuple(net._db[1:]),
        tuple(ws.A[1:]), ws.ZL, tuple(ws.D[1:]), ws.cost, acts, net._theta, net._grad, net.dtype.type(lr),
    )


def twin_networks(dims, m, dtype, activation, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((dims[0], m))
    Y = (rng.random(m) > 0.5).astype(np.float64)
    nets = [dnn.Network(dims, activations=activation, dtype=dtype, backend=be, seed=seed) for be in ("numba", _stepwise())]
    return nets, [net.batch(X, Y) for net in nets]


def _stepwise(max_macs=0):
    """A numba backend that leaves every step (above `max_macs`) to the network's operation-by-operation path."""
    backend = NumbaBackend()
    backend.fused_step_max_macs = max_macs
    return backend


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims,m", SHAPES)
@pytest.mark.parametrize("activation", list(ACTIVATION_CODES))
def test_step_matches_train_step(dims, m, dtype, activation):
    (fused, reference), (batch, ref_batch) = twin_networks(dims, m, dtype, activation)
    tol = gradient_rtol(dtype)
    for _ in range(3):  # later steps start from updated parameters and reused workspaces
        assert fused_step(fused, batch, 0.5)
        cost = reference.train_step(ref_batch, 0.5)
        assert relative_difference(fused._workspace(m).cost, [cost]) <= tol
        assert relative_difference(fused._grad, reference._grad) <= tol
        assert relative_difference(fused._theta, reference._theta) <= tol


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


def test_train_step_takes_small_steps_in_one_call_and_larger_ones_operation_by_operation(monkeypatch):
    backend = _stepwise(max_macs=8256 * 64)
    taken = []
    original = backend.sgd_step
    monkeypatch.setattr(backend, "sgd_step", lambda *args: taken.append(original(*args)) or taken[-1])
    rng = np.random.default_rng(0)
    for dims in ([64, 64, 64, 1], [64, 128, 64, 1]):  # 8256·64 multiply-adds (at the limit), then 16448·64
        net = dnn.Network(dims, backend=backend)
        net.train_step(net.batch(rng.standard_normal((64, 64)), rng.integers(0, 2, 64)), 0.1)
    assert taken == [True, None]
