"""A batch belongs to the network that made it, and hyperparameters are checked wherever they enter.

Shapes are checked in O(1) where arrays enter a step, so no kernel ever reads past an array: a batch of another
network, a hand-built batch of the wrong shape or an empty batch is refused with an error naming both shapes,
and nothing is updated. A learning rate that is not a finite number > 0, an L2 strength or dropout rate out of
range, and a non-integer or negative count are refused with a ValueError naming the argument and its value.
"""

import numpy as np
import pytest

import dnn
from dnn.errors import ShapeError
from dnn.step import TrainStep


def _unchanged(net, before):
    for key, value in net.get_parameters().items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("other_dims", [[7, 3, 1], [5, 3, 2], [200000, 4, 1]])
def test_a_batch_of_another_network_is_refused_and_nothing_moves(backend, other_dims, rng):
    net = dnn.Network([5, 3, 1], backend=backend)
    other = dnn.Network(other_dims, backend=backend)
    batch = other.batch(np.zeros((other_dims[0], 4)), rng.integers(0, other_dims[-1] if other_dims[-1] > 1 else 2, 4))
    before = net.get_parameters()
    with pytest.raises(ShapeError, match=r"batch [XY] has shape .*the network needs"):
        net.train_step(batch, 0.1)
    _unchanged(net, before)


def test_sigmoid_labels_given_to_a_softmax_network_are_refused(backend, rng):
    sigmoid_net, softmax_net = dnn.Network([4, 3, 1], backend=backend), dnn.Network([4, 3, 3], backend=backend)
    batch = sigmoid_net.batch(rng.standard_normal((4, 6)), rng.integers(0, 2, 6))
    with pytest.raises(ShapeError, match=r"batch Y has shape \(1, 6\), the network needs \(3, 6\)"):
        softmax_net.train_step(batch, 0.1)


@pytest.mark.parametrize(
    "X,Y,message",
    [
        (np.zeros((4, 5)), np.zeros((1, 6)), r"batch Y has shape \(1, 6\), the network needs \(1, 5\)"),
        (np.zeros((4, 5)), np.zeros(5), r"batch Y has shape \(5,\)"),
        (np.zeros((3, 5)), np.zeros((1, 5)), r"batch X has shape \(3, 5\), the network needs \(4, m\)"),
        (np.zeros((4, 5), np.float64), np.zeros((1, 5), np.float32), "float32.*needs C-contiguous"),
        (np.zeros((5, 4)).T, np.zeros((1, 4)), "C-contiguous: False"),
        (np.zeros((4, 0), np.float32), np.zeros((1, 0), np.float32), r"no examples \(m = 0\)"),
    ],
)
def test_a_hand_built_batch_of_the_wrong_shape_is_refused(backend, X, Y, message):
    net = dnn.Network([4, 3, 1], backend=backend, dtype="float32")
    X = backend.asarray(X, dtype=X.dtype if X.dtype != np.float64 else "float32") if X.flags.c_contiguous else X
    if message.startswith("float32"):
        X = backend.asarray(np.zeros((4, 5), np.float64))
        net = dnn.Network([4, 3, 1], backend=backend, dtype="float64")
    before = net.get_parameters()
    with pytest.raises(ShapeError, match=message):
        net.train_step(dnn.Batch(X, backend.asarray(Y)), 0.1)
    _unchanged(net, before)


@pytest.mark.parametrize("call", ["step", "predict", "evaluate", "forward", "fit"])
def test_an_empty_batch_is_a_clear_error(backend, call):
    net = dnn.Network([4, 3, 1], backend=backend)
    X, Y = np.zeros((4, 0)), np.zeros((1, 0))
    with pytest.raises(ShapeError, match=r"no examples \(m = 0\)"):
        {
            "step": lambda: net.step(X, Y),
            "predict": lambda: net.predict(X),
            "evaluate": lambda: net.evaluate(X, Y),
            "forward": lambda: net.forward(X),
            "fit": lambda: net.fit(X, Y, epochs=1),
        }[call]()


BAD_LEARNING_RATES = [np.nan, np.inf, -np.inf, None, -0.1, 0.0, "0.1", True]


@pytest.mark.parametrize("lr", BAD_LEARNING_RATES)
def test_every_entry_point_refuses_a_learning_rate_that_is_not_a_positive_finite_number(backend, lr, rng):
    net = dnn.Network([4, 3, 1], backend=backend)
    X, Y = rng.standard_normal((4, 6)), rng.integers(0, 2, 6)
    batch = net.batch(X, Y)
    before = net.get_parameters()
    calls = {
        "Network.step": lambda: net.step(X, Y, lr=lr),
        "Network.train_step": lambda: net.train_step(batch, lr=lr),
        "fit": lambda: net.fit(X, Y, epochs=1, lr=lr if lr is not None else np.nan),  # fit's None: the default
        "TrainStep": lambda: TrainStep(net, 6)(batch, lr),
        "Optimizer.update": lambda: dnn.Adam().update(net, lr),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"lr must be a positive finite number, got "):
            call()
    _unchanged(net, before)


@pytest.mark.parametrize("l2", [-1.0, np.nan, np.inf, None, "0"])
def test_every_entry_point_refuses_an_l2_strength_out_of_range(backend, l2, rng):
    net = dnn.Network([4, 3, 1], backend=backend)
    X, Y = rng.standard_normal((4, 6)), rng.integers(0, 2, 6)
    for call in (
        lambda: net.step(X, Y, l2=l2),
        lambda: net.train_step(net.batch(X, Y), l2=l2),
        lambda: net.fit(X, Y, epochs=1, l2=l2),
        lambda: TrainStep(net, 6, l2=l2),
    ):
        with pytest.raises(ValueError, match=r"l2 must be a finite number >= 0, got"):
            call()


@pytest.mark.parametrize("dropout", [1.0, -0.1, [0.2], np.nan, True])
def test_dropout_rates_out_of_range_are_refused(dropout, rng):
    net = dnn.Network([4, 3, 3, 1], backend="numpy")
    X, Y = rng.standard_normal((4, 6)), rng.integers(0, 2, 6)
    for call in (lambda: net.fit(X, Y, epochs=1, dropout=dropout), lambda: TrainStep(net, 6, dropout=dropout)):
        with pytest.raises(ValueError, match="dropout"):
            call()


@pytest.mark.parametrize(
    "name,value",
    [
        ("epochs", -1),
        ("epochs", 2.5),
        ("epochs", None),
        ("batch_size", 0),
        ("batch_size", 1.5),
        ("seed", -3),
        ("checkpoint_every", 0),
    ],
)
def test_counts_must_be_integers_in_range(name, value, rng):
    net = dnn.Network([4, 3, 1], backend="numpy")
    with pytest.raises(ValueError, match=rf"{name} must be an integer >= \d, got {value!r}"):
        net.fit(rng.standard_normal((4, 6)), rng.integers(0, 2, 6), **{"epochs": 1, name: value})


@pytest.mark.parametrize(
    "optimizer,config,message",
    [
        ("momentum", {"beta": 1.0}, "beta must be in"),
        ("momentum", {"beta": None}, "beta must be in"),
        ("adam", {"beta2": np.nan}, "beta2 must be in"),
        ("adam", {"eps": 0.0}, "eps must be"),
    ],
)
def test_optimizer_hyperparameters_are_checked_when_set(optimizer, config, message):
    with pytest.raises(ValueError, match=message):
        dnn.optimizers.make_optimizer(optimizer, **config)


@pytest.mark.filterwarnings("error")  # a NumPy RuntimeWarning (overflow, invalid value) would fail the test
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_learning_rate_that_diverges_gives_one_divergence_error_and_no_numpy_warnings(backend, optimizer):
    rng = np.random.default_rng(0)
    Y = (rng.random((1, 40)) < 0.5).astype(float)
    X = (rng.standard_normal((5, 40)) + 1.5 * (2 * Y - 1)) * 1e3  # float32 products overflow at lr = 1e6
    net = dnn.Network([5, 8, 1], backend=backend, seed=2)
    with pytest.raises(dnn.DivergenceError, match=r"training diverged in epoch 1 .*smaller learning rate"):
        net.fit(X, Y, epochs=50, optimizer=optimizer, lr=1e6 if optimizer == "sgd" else 1e30, batch_size=8)


@pytest.mark.filterwarnings("error")  # a NumPy RuntimeWarning (overflow, invalid value) would fail the test
def test_a_diverging_train_step_gives_one_divergence_error_and_no_numpy_warnings(backend):
    rng = np.random.default_rng(0)
    Y = (rng.random((1, 40)) < 0.5).astype(float)
    X = (rng.standard_normal((5, 40)) + 1.5 * (2 * Y - 1)) * 1e3
    net = dnn.Network([5, 8, 1], backend=backend, seed=2)
    batch = net.batch(X, Y)
    with pytest.raises(dnn.DivergenceError):
        for _ in range(50):
            net.train_step(batch, lr=1e6)
