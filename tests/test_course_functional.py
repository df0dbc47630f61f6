"""The course's functional API: same names, keys, caches and numbers as the course's notebooks."""

import numpy as np
import pytest

import dnn
from dnn import functional as F

# "Building your Deep Neural Network: Step by Step": initialize_parameters_deep([5, 4, 3]) after
# np.random.seed(3) with the `* 0.01` initialisation prints this W1.
COURSE_W1_SEED3 = np.array(
    [
        [0.01788628, 0.0043651, 0.00096497, -0.01863493, -0.00277388],
        [-0.00354759, -0.00082741, -0.00627001, -0.00043818, -0.00477218],
        [-0.01313865, 0.00884622, 0.00881318, 0.01709573, 0.00050034],
        [-0.00404677, -0.0054536, -0.01546477, 0.00982367, -0.01101068],
    ]
)


def test_initialisation_reproduces_the_course_printout(backend):
    with dnn.use_backend(backend):
        params = F.initialize_parameters_deep([5, 4, 3], seed=3, init="small")
    assert sorted(params) == ["W1", "W2", "b1", "b2"]
    np.testing.assert_allclose(backend.to_numpy(params["W1"]), COURSE_W1_SEED3, atol=5e-9)
    assert backend.to_numpy(params["b2"]).shape == (3, 1) and not backend.to_numpy(params["b2"]).any()


def test_the_default_initialisation_is_the_application_notebooks(backend):
    with dnn.use_backend(backend):
        W1 = backend.to_numpy(F.initialize_parameters_deep([6, 3, 1])["W1"])
    np.testing.assert_array_equal(W1, np.random.RandomState(1).randn(3, 6) / np.sqrt(6))


def test_seed_none_draws_from_numpys_global_generator_like_course_code():
    np.random.seed(7)
    expected = np.random.randn(2, 3) / np.sqrt(3)
    np.random.seed(7)
    W1 = F.initialize_parameters_deep([3, 2, 1], seed=None)["W1"]
    np.testing.assert_array_equal(W1, expected)


def test_caches_costs_and_gradient_keys_have_the_course_layout(backend, rng):
    X = rng.standard_normal((5, 4))
    Y = np.array([[1, 0, 1, 1]])
    with dnn.use_backend(backend):
        params = F.initialize_parameters_deep([5, 4, 3, 1])
        AL, caches = F.L_model_forward(X, params)
        (A_prev, W, b), Z = caches[0]
        assert len(caches) == 3 and Z.shape == (4, 4) and W.shape == (4, 5) and b.shape == (4, 1)
        cost = F.compute_cost(AL, Y)
        assert np.shape(cost) == ()
        grads = F.L_model_backward(AL, Y, caches)
        assert sorted(grads) == sorted(["dA0", "dA1", "dA2", "dW1", "dW2", "dW3", "db1", "db2", "db3"])
        assert grads["dA0"].shape == (5, 4)


def test_linear_backward_uses_the_corrected_formulas(backend, rng):
    # dW = (1/m)·dZ·A_prevᵀ, db = (1/m)·Σ dZ, dA_prev = Wᵀ·dZ (the seed text prints db where dW belongs).
    A_prev, W, b, dZ = (rng.standard_normal(s) for s in [(3, 4), (2, 3), (2, 1), (2, 4)])
    with dnn.use_backend(backend):
        dA_prev, dW, db = F.linear_backward(backend.asarray(dZ), tuple(backend.asarray(a) for a in (A_prev, W, b)))
    np.testing.assert_allclose(backend.to_numpy(dW), dZ @ A_prev.T / 4, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(db), dZ.sum(axis=1, keepdims=True) / 4, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(dA_prev), W.T @ dZ, rtol=1e-12)


def test_update_parameters_returns_new_arrays_and_leaves_its_inputs(backend, rng):
    with dnn.use_backend(backend):
        params = F.initialize_parameters_deep([3, 2, 1])
        grads = {
            key: backend.asarray(np.ones(value.shape))
            for key, value in (
                ("dW1", params["W1"]),
                ("db1", params["b1"]),
                ("dW2", params["W2"]),
                ("db2", params["b2"]),
            )
        }
        before = backend.to_numpy(params["W1"]).copy()
        new = F.update_parameters(params, grads, 0.5)
    np.testing.assert_array_equal(backend.to_numpy(params["W1"]), before)
    np.testing.assert_allclose(backend.to_numpy(new["W1"]), before - 0.5, rtol=1e-12)


def test_predict_prints_the_accuracy_as_the_course_does(capsys, rng):
    X = rng.standard_normal((3, 5))
    params = F.initialize_parameters_deep([3, 2, 1])
    p = F.predict(X, np.array([[1, 0, 1, 0, 1]]), params)
    assert p.shape == (1, 5) and set(np.unique(p)) <= {0.0, 1.0}
    assert capsys.readouterr().out.startswith("Accuracy: ")


def _cat_data(shared_data):
    h5py = pytest.importorskip("h5py")
    with h5py.File(shared_data / "train_catvnoncat.h5", "r") as f:
        x, y = np.array(f["train_set_x"]), np.array(f["train_set_y"])
    return x.reshape(x.shape[0], -1).T / 255.0, y.reshape(1, -1)  # (12288, 209), (1, 209)


def test_the_application_notebook_costs_are_reproduced_on_the_cat_data(shared_data):
    # The course's 4-layer model prints "Cost after iteration 0: 0.771749..." and "... 100: 0.672053...".
    X, Y = _cat_data(shared_data)
    _, costs = F.L_layer_model(X, Y, [12288, 20, 7, 5, 1], num_iterations=101)
    assert float(costs[0]) == pytest.approx(0.771749, abs=5e-7)
    assert float(costs[1]) == pytest.approx(0.672053, abs=5e-7)
