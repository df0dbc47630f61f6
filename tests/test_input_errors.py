"""Bad input gets an error that names the problem, on every backend, before any kernel runs."""

import re

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


# ---------------------------------------------------------------------------------------------- the functional API
def _course_parameters():
    return F.initialize_parameters_deep([4, 3, 2, 1])


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf"), None, "0.1", True])
def test_update_parameters_refuses_a_learning_rate_that_is_not_a_positive_finite_number(lr):
    params = _course_parameters()
    grads = {f"d{key}": np.ones(value.shape) for key, value in params.items()}
    with pytest.raises(ValueError, match=rf"learning_rate must be a positive finite number, got {re.escape(repr(lr))}"):
        F.update_parameters(params, grads, lr)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": float("nan")}, "learning_rate must be a positive finite number, got nan"),
        ({"learning_rate": -0.0075}, "learning_rate must be a positive finite number, got -0.0075"),
        ({"num_iterations": -1}, "num_iterations must be an integer >= 0, got -1"),
        ({"num_iterations": 2.5}, "num_iterations must be an integer >= 0, got 2.5"),
        ({"num_iterations": "100"}, "num_iterations must be an integer >= 0, got '100'"),
    ],
)
def test_l_layer_model_refuses_bad_hyperparameters_before_computing(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        F.L_layer_model(np.ones((4, 3)), np.array([[0, 1, 0]]), [4, 3, 1], **kwargs)


def test_l_layer_model_with_zero_iterations_returns_the_initial_parameters():
    params, costs = F.L_layer_model(np.ones((4, 3)), np.array([[0, 1, 0]]), [4, 3, 1], num_iterations=0)
    assert costs == []
    np.testing.assert_array_equal(params["W1"], F.initialize_parameters_deep([4, 3, 1])["W1"])


@pytest.mark.parametrize("missing", ["b2", "W2", "W3"])
def test_a_missing_parameter_key_is_named_instead_of_computing_a_shorter_network(missing):
    params = _course_parameters()
    del params[missing]
    with pytest.raises(KeyError, match=f"lacks {missing}"):
        F.L_model_forward(np.ones((4, 2)), params)


def test_update_parameters_names_a_missing_gradient_key_and_a_mis_shaped_gradient():
    params = _course_parameters()
    grads = {f"d{key}": np.ones(value.shape) for key, value in params.items()}
    del grads["db2"]
    with pytest.raises(KeyError, match="grads has dW3/db3 keys but lacks db2"):
        F.update_parameters(params, grads, 0.1)
    grads["db2"] = np.ones((3, 1))
    with pytest.raises(ShapeError, match=r"grads\['db2'\] has shape \(3, 1\), but b2 has \(2, 1\)"):
        F.update_parameters(params, grads, 0.1)


def test_a_parameter_dict_without_course_keys_is_named():
    with pytest.raises(KeyError, match=r"holds no W1, b1, \.\.\. keys; its keys are \['w1'\]"):
        F.L_model_forward(np.ones((4, 2)), {"w1": np.ones((1, 4))})


# ---------------------------------------------------------------------------------------------- gradcheck's entry
def test_gradcheck_given_a_path_says_to_load_it(tmp_path):
    with pytest.raises(TypeError, match=r"not the path '.*model.npz'; load it first"):
        dnn.gradcheck(str(tmp_path / "model.npz"), np.ones((4, 2)), np.array([[0, 1]]))
    with pytest.raises(TypeError, match="not the path"):
        dnn.gradcheck(tmp_path / "model.npz", np.ones((4, 2)), np.array([[0, 1]]))


def test_gradcheck_names_a_missing_or_foreign_key():
    params = _course_parameters()
    del params["W2"]
    with pytest.raises(KeyError, match="lacks W2"):
        dnn.gradcheck(params, np.ones((4, 2)), np.array([[0, 1]]))
    params = dict(_course_parameters(), dW1=np.ones((3, 4)))
    with pytest.raises(KeyError, match="keys other than W1..W3, b1..b3: dW1"):
        dnn.gradcheck(params, np.ones((4, 2)), np.array([[0, 1]]))
    with pytest.raises(TypeError, match="got list"):
        dnn.gradcheck([np.ones((1, 4))], np.ones((4, 2)), np.array([[0, 1]]))


# ---------------------------------------------------------------------------------------------- labels left out
@pytest.mark.parametrize("call", ["evaluate", "loss", "backward", "step", "fit", "train_step"])
def test_a_call_that_computes_a_cost_refuses_missing_labels(net, call):
    X = np.ones((4, 3))
    calls = {
        "evaluate": lambda: net.evaluate(X, None),
        "loss": lambda: net.loss(X),
        "backward": lambda: net.backward(X),
        "step": lambda: net.step(X, None),
        "fit": lambda: net.fit(X, None, epochs=1),
        "train_step": lambda: net.train_step(net.batch(X)),  # a batch made without labels
    }
    before = net.get_parameters()
    with pytest.raises(LabelError, match=rf"\b{call} needs labels Y .*got Y=None"):  # fit: Network.fit is dnn.fit
        calls[call]()
    for key, value in net.get_parameters().items():
        np.testing.assert_array_equal(value, before[key])


def test_evaluate_refuses_a_batch_made_without_labels(net):
    with pytest.raises(LabelError, match=r"Network\.evaluate needs labels Y"):
        net.evaluate(net.batch(np.ones((4, 3))), None)


def test_calls_that_need_no_labels_take_none(net):
    X = np.ones((4, 3))
    assert net.predict(X).shape == (1, 3) and net.predict_proba(X).shape == (1, 3)


# ---------------------------------------------------------------------------------------------- array-likes
class _SeriesLike:
    """What matters of a pandas Series or DataFrame: shape, dtype, .values and __array__, but no reshape."""

    def __init__(self, values):
        self.values = np.asarray(values)
        self.shape, self.dtype, self.ndim = self.values.shape, self.values.dtype, self.values.ndim

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def test_array_likes_without_array_methods_are_taken_by_their_values(backend, rng):
    net = dnn.Network([4, 3, 1], dtype="float64", backend=backend)
    X, y = rng.standard_normal((4, 6)), np.array([0, 1, 1, 0, 1, 0])
    expected = net.loss(X, y)
    assert net.loss(_SeriesLike(X), _SeriesLike(y)) == expected
    assert net.evaluate(_SeriesLike(X), _SeriesLike(y[None, :]))["cost"] == expected
    np.testing.assert_array_equal(net.predict(_SeriesLike(X)), net.predict(X))


def test_pandas_series_and_data_frames_are_taken_by_their_values(rng):
    pd = pytest.importorskip("pandas")
    net = dnn.Network([4, 3, 1], dtype="float64")
    X, y = rng.standard_normal((4, 6)), np.array([0, 1, 1, 0, 1, 0])
    frame = pd.DataFrame(X.T, columns=["a", "b", "c", "d"])  # rows are examples, as data frames hold them
    assert net.loss(frame.T, pd.Series(y)) == net.loss(X, y)
    with pytest.raises(ShapeError, match=r"examples are columns, so X must be \(4, m\)"):
        net.loss(frame, pd.Series(y))


@pytest.mark.filterwarnings("error::RuntimeWarning")  # NumPy's "overflow encountered in cast" would fail it
def test_a_float64_value_beyond_float32_is_named_without_a_numpy_warning(net):
    X = np.ones((4, 2))
    X[1, 1] = 1e100
    with pytest.raises(NonFiniteError, match=r"beyond float32's range .* index \(1, 1\)"):
        net.forward(X)
