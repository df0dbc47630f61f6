"""Every backend's gradients match NumPy float64, which itself passes the numerical gradient check."""

import numpy as np
import pytest

import dnn
from dnn import functional as F
from dnn.backends import ACTIVATIONS
from dnn.gradcheck import kinked_pre_activations
from dnn.tolerances import GRADCHECK_THRESHOLD, gradient_rtol, relative_difference

# (layer_dims, m): deep and shallow, odd sizes, a single example.
SHAPES = [([4, 5, 3, 1], 7), ([3, 1], 1), ([6, 9, 1], 1), ([7, 8, 6, 5, 1], 33), ([2, 3, 3], 11)]


def _data(layer_dims, m, output, rng):
    X = rng.standard_normal((layer_dims[0], m))
    if output == "sigmoid":
        Y = (rng.random((layer_dims[-1], m)) > 0.5).astype(float)
    else:
        Y = rng.integers(0, layer_dims[-1], m)
    return X, Y


def _output_for(layer_dims):
    return "sigmoid" if layer_dims[-1] == 1 else "softmax"


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("layer_dims,m", SHAPES)
def test_numpy_float64_passes_the_numerical_gradient_check(activation, layer_dims, m, rng):
    output = _output_for(layer_dims)
    net = dnn.Network(layer_dims, activations=activation, dtype="float64", backend="numpy", seed=2)
    X, Y = _data(layer_dims, m, output, rng)
    result = dnn.gradcheck(net, X, Y)
    assert result.difference < GRADCHECK_THRESHOLD, result


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_gradient_check_covers_l2_and_fixed_dropout_masks(output, rng):
    dims = [5, 6, 4, 1 if output == "sigmoid" else 3]
    net = dnn.Network(dims, activations=["tanh", "relu"], output=output, dtype="float64", backend="numpy")
    X, Y = _data(dims, 9, output, rng)
    masks = [(rng.random((6, 9)) < 0.8) / 0.8, (rng.random((4, 9)) < 0.6) / 0.6]
    assert dnn.gradcheck(net, X, Y, l2=0.7).difference < GRADCHECK_THRESHOLD
    assert dnn.gradcheck(net, X, Y, dropout_masks=masks, l2=0.1).difference < GRADCHECK_THRESHOLD


def test_gradient_check_detects_a_wrong_gradient(rng, monkeypatch):
    # A check that cannot fail proves nothing: break db by a factor of 2 and expect a large difference.
    from dnn.backends.numpy_backend import NumpyBackend

    original = NumpyBackend.bias_grad

    def doubled(self, dZ, out, scale):
        original(self, dZ, out, 2 * scale)

    monkeypatch.setattr(NumpyBackend, "bias_grad", doubled)
    net = dnn.Network([3, 4, 1], dtype="float64", backend="numpy")
    X, Y = _data([3, 4, 1], 6, "sigmoid", rng)
    assert not dnn.gradcheck(net, X, Y).passed


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("layer_dims,m", SHAPES)
def test_backend_gradients_match_numpy_float64(backend, dtype, activation, layer_dims, m, rng):
    output = _output_for(layer_dims)
    X, Y = _data(layer_dims, m, output, rng)
    reference = dnn.Network(layer_dims, activations=activation, dtype="float64", backend="numpy", seed=5)
    candidate = dnn.Network(layer_dims, activations=activation, dtype=dtype, backend=backend, seed=5)
    ref_cost, ref_grads = reference.backward(X, Y)
    cost, grads = candidate.backward(X, Y)
    _assert_agrees_with_reference(backend, dtype, (cost, grads), (ref_cost, ref_grads))


def _assert_agrees_with_reference(backend, dtype, result, reference):
    """(cost, grads) in `dtype` on `backend` equal the float64 reference's within the dtype's gradient tolerance."""
    (cost, grads), (ref_cost, ref_grads) = result, reference
    tol = gradient_rtol(dtype)
    assert abs(cost - ref_cost) <= tol * max(1.0, abs(ref_cost))
    for key, ref in ref_grads.items():
        got = backend.to_numpy(grads[key])
        assert got.dtype == np.dtype(dtype)
        assert relative_difference(got, ref) <= tol, key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backend_training_step_matches_numpy_float64(backend, dtype, rng):
    dims = [6, 8, 5, 1]
    X, Y = _data(dims, 20, "sigmoid", rng)
    reference = dnn.Network(dims, dtype="float64", backend="numpy")
    candidate = dnn.Network(dims, dtype=dtype, backend=backend)
    for _ in range(3):
        reference.step(X, Y, lr=0.1)
        candidate.step(X, Y, lr=0.1)
    ref_params, params = reference.get_parameters(), candidate.get_parameters()
    for key in ref_params:
        assert relative_difference(params[key], ref_params[key]) <= gradient_rtol(dtype), key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("layer_dims,m", SHAPES)
def test_the_course_functions_compute_the_networks_cost_and_gradients(backend, dtype, activation, layer_dims, m, rng):
    # Both loops run each layer's products through `dnn.propagation`; the course's starts from dA[L] and scales
    # every dW and db by 1/m, the network's folds 1/m into dZ[L]: the same gradients within the table.
    output = _output_for(layer_dims)
    X, Y = _data(layer_dims, m, output, rng)
    reference = dnn.Network(layer_dims, activations=activation, output=output, dtype="float64", backend="numpy", seed=5)
    ref_cost, ref_grads = reference.backward(X, Y)
    with dnn.use_backend(backend):
        params = {key: backend.asarray(value, dtype=dtype) for key, value in reference.get_parameters().items()}
        AL, caches = F.L_model_forward(backend.asarray(X, dtype=dtype), params, activation, output)
        cost = float(F.compute_cost(AL, Y, output))
        grads = F.L_model_backward(AL, Y, caches, activation, output)
    _assert_agrees_with_reference(backend, dtype, (cost, grads), (ref_cost, ref_grads))


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_the_gradient_check_sees_the_pre_activations_the_course_caches(activation, rng):
    # The check moves examples off the kinks of the Z[l] the network computes, dropout masks applied to each
    # hidden layer's output: the Z[l] of the course's layers fed the masked outputs.
    dims, m = [5, 6, 4, 1], 8
    net = dnn.Network(dims, activations=activation, dtype="float64", backend="numpy", seed=4)
    X = rng.standard_normal((dims[0], m))
    masks = [(rng.random((6, m)) < 0.5) / 0.5, None]
    params = net.get_parameters()
    A, expected = X, {}
    for l, mask in enumerate(masks, start=1):
        A, ((_, _, _), expected[l]) = F.linear_activation_forward(A, params[f"W{l}"], params[f"b{l}"], activation)
        A = A if mask is None else A * mask  # (n_l, m)
    got = kinked_pre_activations(net, X, masks)
    assert sorted(got) == sorted(expected)
    for l, Z in expected.items():
        assert relative_difference(got[l], Z) <= gradient_rtol("float64"), l


def test_gradient_check_moves_units_off_the_kink_when_dropout_leaves_only_the_bias(rng):
    # Zero biases and masks that drop every input of some layer-2 units put Z exactly at the ReLU kink.
    dims = [5, 6, 4, 1]
    net = dnn.Network(dims, activations="relu", dtype="float64", backend="numpy", seed=3)
    X, Y = _data(dims, 8, "sigmoid", rng)
    first = np.ones((6, 8)) / 0.5
    first[:, :3] = 0.0  # examples 0-2 reach layer 2 with nothing but its bias
    result = dnn.gradcheck(net, X, Y, dropout_masks=[first, None])
    assert result.difference < GRADCHECK_THRESHOLD, result
