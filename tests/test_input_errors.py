"""Bad input gets an error that names the problem, on every backend, before any kernel runs."""

import numpy as np
import pytest

import dnn
from dnn import functional as F
from dnn.errors import DTypeError, LabelError, NonFiniteError, ShapeError


@pytest.fixture
def net(backend):
    return dnn.Network([4, 3, 1], backend=backend)


def test_x_with_the_wrong_number_of_features_names_both_sizes(net):
    with pytest.raises(ShapeError, match=r"shape \(5, 10\).*input layer has 4 units"):
        net.forward(np.zeros((5, 10)))


def test_x_given_examples_as_rows_is_caught(net):
    with pytest.raises(ShapeError, match="examples are columns"):
        net.step(np.zeros((10, 4)), np.zeros((1, 10)))


def test_a_one_dimensional_x_is_rejected(net):
    with pytest.raises(ShapeError, match="2-D"):
        net.forward(np.zeros(4))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_reported_with_count_and_position(net, bad):
    X = np.ones((4, 6))
    X[2, 5] = bad
    with pytest.raises(NonFiniteError, match=r"X holds 1 non-finite value.*\(2, 5\)"):
        net.forward(X)


def test_non_finite_labels_are_reported(net):
    Y = np.zeros((1, 6))
    Y[0, 1] = np.nan
    with pytest.raises(NonFiniteError, match="Y"):
        net.step(np.ones((4, 6)), Y)


def test_binary_labels_outside_zero_one_are_named(net):
    with pytest.raises(LabelError, match=r"only 0 and 1.*2\.0"):
        net.step(np.ones((4, 3)), np.array([[0, 1, 2]]))


def test_label_count_must_match_the_examples(net):
    with pytest.raises(ShapeError, match="4 examples.*X has 3"):
        net.step(np.ones((4, 3)), np.array([0, 1, 1, 0]))


def test_class_indices_out_of_range_are_named(backend):
    net = dnn.Network([4, 3, 3], backend=backend)
    with pytest.raises(LabelError, match=r"from 0 to 3.*range\(0, 3\)"):
        net.step(np.ones((4, 3)), np.array([0, 3, 1]))


def test_one_hot_labels_must_be_one_hot(backend):
    net = dnn.Network([4, 3, 3], backend=backend)
    with pytest.raises(LabelError, match="one-hot"):
        net.step(np.ones((4, 2)), np.array([[1, 0], [1, 0], [0, 0]]))


def test_class_indices_become_one_hot_labels(backend, rng):
    net = dnn.Network([4, 3, 3], dtype="float64", backend=backend)
    X = rng.standard_normal((4, 5))
    labels = np.array([2, 0, 1, 1, 0])
    assert net.loss(X, labels) == pytest.approx(net.loss(X, np.eye(3)[:, labels]), rel=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "int32", "complex64", "object"])
def test_unsupported_network_dtypes_are_refused(dtype):
    with pytest.raises(DTypeError, match="dtype"):
        dnn.Network([2, 1], dtype=dtype)


def test_non_numeric_inputs_are_refused(net):
    with pytest.raises(DTypeError, match="not numeric"):
        net.forward(np.array([["a"] * 2] * 4))


def test_integer_inputs_are_converted_to_the_network_dtype(net):
    assert net.predict_proba(np.ones((4, 2), dtype=np.int64)).dtype == np.float32


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"layer_dims": [3]}, "at least one layer"),
        ({"layer_dims": [3, 0, 1]}, r"layer_dims\[1\]"),
        ({"layer_dims": [3, 2.5, 1]}, r"layer_dims\[1\]"),
        ({"layer_dims": [3, 2, 1], "activations": "swish"}, "unknown activation 'swish'"),
        ({"layer_dims": [3, 2, 1], "activations": ["relu", "relu"]}, "1 hidden layers need 1 names"),
        ({"layer_dims": [3, 2, 1], "output": "softmax"}, "at least 2 units"),
        ({"layer_dims": [3, 2, 1], "output": "hinge"}, "unknown output layer"),
        ({"layer_dims": [3, 2, 1], "init": "zeros"}, "unknown init"),
    ],
)
def test_an_invalid_architecture_is_refused_with_its_reason(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dnn.Network(**kwargs)


def test_set_parameters_names_the_layer_and_both_shapes(net):
    params = net.get_parameters()
    params["W2"] = np.zeros((1, 4))
    with pytest.raises(ShapeError, match=r"layer 2: W2 has shape \(1, 4\).*\(1, 3\)"):
        net.set_parameters(params)


def test_functional_forward_names_the_layer_whose_shapes_disagree(backend):
    with dnn.use_backend(backend):
        params = F.initialize_parameters_deep([4, 3, 1])
        params["W2"] = backend.asarray(np.zeros((1, 5)))
        with pytest.raises(ShapeError, match=r"layer 2: W has shape \(1, 5\).*A_prev has shape \(3, 2\)"):
            F.L_model_forward(np.ones((4, 2)), params)


def test_functional_cost_checks_label_values(backend):
    with dnn.use_backend(backend):
        AL = backend.asarray(np.full((1, 3), 0.5))
        with pytest.raises(LabelError):
            F.compute_cost(AL, np.array([[0, 1, -1]]))
