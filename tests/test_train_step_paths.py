"""`Network.train_step` takes the same step whichever way a backend runs it.

A backend whose GEMM adds to its output for free (`fuses_gemm_updates`) updates each W inside the product
that computes its gradient (W ← W - lr·dW with alpha = -lr, beta = 1 - lr·λ/m); it must first prove every
gradient finite from Σ|A[l-1]|·Σ|D[l]|, and when it cannot, store and check the gradients as the plain
path does. Every way — one compiled call, the update inside the products, the gradients stored, numpy.matmul
without numpy's CBLAS — must match the NumPy float64 reference, and none may touch the parameters when a
gradient is not finite.
"""

import numpy as np
import pytest

import dnn
from dnn.backends.base import finite_product_limit
from dnn.errors import DivergenceError
from dnn.network import products_provably_finite
from dnn.tolerances import gradient_rtol, relative_difference

pytest.importorskip("numba")

from dnn.backends.numba_backend import NumbaBackend  # noqa: E402

PATHS = ["compiled", "in-products", "stored-gradients", "without-numpy-cblas"]


def _backend(path, monkeypatch):
    if path == "without-numpy-cblas":  # numpy linked to a BLAS outside its wheel: numpy.matmul, the plain path
        monkeypatch.setattr("dnn.backends.numba_backend.numpy_cblas_gemm", lambda: None)
        backend = NumbaBackend()
        assert not backend.fuses_gemm_updates
        return backend
    backend = NumbaBackend()
    if backend.cblas is None:
        pytest.skip("numpy's CBLAS was not found: the numba backend takes the plain path")
    if path != "compiled":
        backend.parallel_min_elements = 0  # no step is small enough to compile whole
    if path == "stored-gradients":
        monkeypatch.setattr("dnn.network.finite_product_limit", lambda dtype: 0.0)  # nothing can be proven
    return backend


def _data(dims, m, rng):
    X = rng.standard_normal((dims[0], m))
    Y = rng.integers(0, max(2, dims[-1]), m)  # binary labels, or class indices for a softmax output
    return X, Y


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dims,m", [([6, 8, 5, 1], 20), ([7, 9, 4], 13), ([3, 1], 1)])
@pytest.mark.parametrize("l2", [0.0, 0.7])
def test_every_path_takes_the_reference_step(path, dtype, dims, m, l2, rng, monkeypatch):
    backend = _backend(path, monkeypatch)
    X, Y = _data(dims, m, rng)
    reference = dnn.Network(dims, activations="tanh", dtype="float64", backend="numpy")
    candidate = dnn.Network(dims, activations="tanh", dtype=dtype, backend=backend)
    for _ in range(3):
        ref_cost = reference.step(X, Y, lr=0.3, l2=l2)
        cost = candidate.step(X, Y, lr=0.3, l2=l2)
        assert abs(cost - ref_cost) <= gradient_rtol(dtype) * max(1.0, abs(ref_cost))
    assert relative_difference(candidate.backend.to_numpy(candidate._theta), reference._theta) <= gradient_rtol(dtype)


def test_the_update_inside_the_products_makes_no_update_or_check_pass(rng, monkeypatch):
    backend = _backend("in-products", monkeypatch)
    net = dnn.Network([6, 8, 5, 1], backend=backend)
    batch = net.batch(*_data([6, 8, 5, 1], 20, rng))
    updated = []
    monkeypatch.setattr(backend, "all_finite", lambda a: pytest.fail("a finiteness pass over the gradients"))
    original = backend.sgd_update
    monkeypatch.setattr(backend, "sgd_update", lambda p, g, lr: updated.append(p.shape) or original(p, g, lr))
    net.train_step(batch, 0.1)
    assert updated == [(8, 1), (5, 1), (1, 1)]  # the biases only: each W was updated by its GEMM


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy.matmul's, on the way to the error
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_gradient_that_overflows_under_a_finite_cost_leaves_the_parameters(path, dtype, monkeypatch):
    """x = (big, -big) cancels in W1·x, so the cost is finite, but dW1 = (W2ᵀ·dZ2)·xᵀ overflows."""
    big = np.finfo(dtype).max / 2
    net = dnn.Network([2, 2, 1], activations="linear", dtype=dtype, backend=_backend(path, monkeypatch))
    net.set_parameters({"W1": np.ones((2, 2)), "b1": np.zeros((2, 1)), "W2": np.full((1, 2), 1e10), "b2": np.zeros((1, 1))})
    batch = net.batch(np.array([[big], [-big]]), np.array([1.0]))
    before = net.get_parameters()
    with pytest.raises(DivergenceError, match="non-finite"):
        net.train_step(batch, 0.5)
    for key, value in net.get_parameters().items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("path", PATHS)
def test_a_nan_parameter_stops_the_step_before_any_update(path, rng, monkeypatch):
    net = dnn.Network([4, 3, 1], dtype="float64", backend=_backend(path, monkeypatch))
    batch = net.batch(*_data([4, 3, 1], 8, rng))
    net.parameters["W1"][0, 0] = np.nan
    before = net.get_parameters()
    with pytest.raises(DivergenceError):
        net.train_step(batch, 0.1)
    for key, value in net.get_parameters().items():
        np.testing.assert_array_equal(value, before[key])


def test_a_batch_built_by_hand_has_its_input_sum_taken_in_the_step(rng, monkeypatch):
    X, Y = _data([6, 8, 1], 10, rng)
    results = []
    for path in ("compiled", "in-products"):
        net = dnn.Network([6, 8, 1], dtype="float64", backend=_backend(path, monkeypatch))
        batch = net.batch(X, Y)
        assert batch.x_abs_sum == pytest.approx(np.abs(X).sum())
        net.train_step(batch._replace(x_abs_sum=None), 0.1)
        results.append(net.get_parameters())
    reference = dnn.Network([6, 8, 1], dtype="float64", backend="numpy")
    reference.step(X, Y, lr=0.1)
    for params in results:
        for key, value in reference.get_parameters().items():
            assert relative_difference(params[key], value) <= gradient_rtol("float64"), key


def test_finite_products_are_proven_from_the_sums_of_their_factors():
    limit = finite_product_limit("float32")
    assert products_provably_finite([1.0, 2.0], [3.0, 4.0], "float32")
    assert products_provably_finite([limit], [1.0], "float32")
    assert not products_provably_finite([limit * 2], [1.0], "float32")
    assert not products_provably_finite([1.0, np.nan], [1.0, 1.0], "float64")
    assert not products_provably_finite([1.0], [np.inf], "float64")
    assert limit < float(np.finfo(np.float32).max) < finite_product_limit("float64")


@pytest.mark.parametrize("optimizer,dropout,through_train_step", [("sgd", None, True), ("sgd", 0.2, False), ("adam", None, False)])
def test_fit_steps_through_train_step_for_sgd_without_dropout(optimizer, dropout, through_train_step, rng, monkeypatch):
    net = dnn.Network([6, 8, 1], backend="numpy")
    calls = []
    original = net.train_step
    monkeypatch.setattr(net, "train_step", lambda *a, **k: calls.append(1) or original(*a, **k))
    net.fit(*_data([6, 8, 1], 12, rng), epochs=2, batch_size=5, optimizer=optimizer, dropout=dropout)
    assert len(calls) == (6 if through_train_step else 0)  # 3 mini-batches per epoch
