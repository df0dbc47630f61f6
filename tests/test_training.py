"""fit: mini-batches, optimizers, L2, dropout, decay, reproducibility, divergence, checkpoints and resuming."""

import numpy as np
import pytest

import dnn
from dnn import sources
from dnn.tolerances import gradient_rtol, relative_difference
from dnn.training import History, fit
from optimizer_helpers import UNREGISTRABLE

DIMS = [5, 6, 4, 1]


def _blobs(m=40, seed=0):
    """Two noisy clusters: X (5, m), Y (1, m) in {0, 1}."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((1, m)) < 0.5).astype(float)
    X = rng.standard_normal((5, m)) + 1.5 * (2 * Y - 1)
    return X, Y


def _net(backend, dtype="float64", seed=2):
    return dnn.Network(DIMS, dtype=dtype, backend=backend, seed=seed)


# A run that exercises every piece of state: shuffled mini-batches with a short last one, dropout, L2, decay, Adam.
FULL_RUN = dict(batch_size=16, optimizer="adam", lr=0.01, l2=0.1, dropout=[0.2, 0.1], lr_decay=0.5, seed=7)


def test_training_lowers_the_cost_and_records_every_epoch(backend):
    X, Y = _blobs()
    history = fit(_net(backend), X, Y, epochs=15, batch_size=8, optimizer="momentum", lr=0.1, validation=_blobs(20, 1))
    assert len(history) == len(history.accuracy) == len(history.val_cost) == len(history.val_accuracy) == 15
    assert history.cost[-1] < 0.5 * history.cost[0]
    assert history.accuracy[-1] >= 0.9 and history.val_accuracy[-1] >= 0.9


def test_unshuffled_mini_batches_are_consecutive_columns_with_a_short_last_one(backend):
    X, Y = _blobs(m=10)
    net, manual = _net(backend), _net(backend)
    history = fit(net, X, Y, epochs=1, batch_size=4, shuffle=False, lr=0.3)
    costs = [manual.step(X[:, a:b], Y[:, a:b], lr=0.3) for a, b in ((0, 4), (4, 8), (8, 10))]
    np.testing.assert_array_equal(net.get_parameters()["W1"], manual.get_parameters()["W1"])
    assert history.cost[0] == pytest.approx((4 * costs[0] + 4 * costs[1] + 2 * costs[2]) / 10, rel=1e-12)


def test_full_batch_sgd_is_the_course_gradient_descent(backend):
    X, Y = _blobs(m=12)
    net, manual = _net(backend), _net(backend)
    history = fit(net, X, Y, epochs=3, lr=0.2)  # batch_size=None: one step per epoch on every example
    costs = [manual.step(X, Y, lr=0.2) for _ in range(3)]
    assert history.cost == costs
    np.testing.assert_array_equal(net.get_parameters()["W2"], manual.get_parameters()["W2"])


def test_same_seed_gives_a_bit_identical_history(backend):
    X, Y = _blobs()
    runs = [fit(_net(backend, "float32"), X, Y, epochs=4, validation=_blobs(20, 1), **FULL_RUN) for _ in range(2)]
    assert runs[0] == runs[1]
    other = fit(_net(backend, "float32"), X, Y, epochs=4, **dict(FULL_RUN, seed=8))
    assert other.cost != runs[0].cost  # the seed does drive shuffling and dropout


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_histories_agree_across_backends(backend, dtype):
    X, Y = _blobs()
    options = dict(epochs=4, batch_size=16, optimizer="momentum", lr=0.05, l2=0.1, seed=3)
    reference = fit(_net("numpy", "float64"), X, Y, **options)
    history = fit(_net(backend, dtype), X, Y, **options)
    assert relative_difference(history.cost, reference.cost) <= gradient_rtol(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backward_with_l2_and_fixed_dropout_masks_matches_numpy_float64(backend, dtype, rng):
    X, Y = _blobs(m=9)
    masks = [(rng.random((n, 9)) < 0.7) / 0.7 for n in DIMS[1:-1]]
    _, expected = _net("numpy").backward(X, Y, l2=0.3, dropout_masks=masks)
    net = _net(backend, dtype)
    _, got = net.backward(X, Y, l2=0.3, dropout_masks=masks)
    for key, value in expected.items():
        assert relative_difference(net.backend.to_numpy(got[key]), value) <= gradient_rtol(dtype), key


def test_dropout_changes_training_and_is_off_in_evaluation(backend):
    X, Y = _blobs()
    plain = fit(_net(backend), X, Y, epochs=2, batch_size=16, lr=0.1, seed=1)
    dropped_net = _net(backend)
    dropped = fit(dropped_net, X, Y, epochs=2, batch_size=16, lr=0.1, seed=1, dropout=0.5)
    assert dropped.cost != plain.cost
    assert dropped_net.evaluate(X, Y)["cost"] == dropped_net.evaluate(X, Y)["cost"]  # no mask outside training


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_divergence_names_the_epoch_and_keeps_finite_parameters(backend):
    X, Y = _blobs()
    X = X * 1e3
    net = _net(backend, "float32")
    with pytest.raises(dnn.DivergenceError, match=r"epoch \d+ .*smaller learning rate") as info:
        fit(net, X, Y, epochs=50, lr=1e6, batch_size=8)
    assert "epoch" in str(info.value)
    assert all(np.isfinite(value).all() for value in net.get_parameters().values())


def test_decay_and_callbacks(backend):
    X, Y = _blobs()
    seen = []

    def stop_after_three(net, epoch, logs):
        seen.append((epoch, logs["lr"]))
        return epoch == 3

    history = fit(_net(backend), X, Y, epochs=10, lr=0.1, lr_decay=1.0, callbacks=[stop_after_three])
    assert len(history) == 3
    assert seen == [(1, 0.1), (2, 0.05), (3, 0.1 / 3)]
    custom = fit(_net(backend), X, Y, epochs=2, lr=0.1, lr_decay=lambda lr, epoch: lr * 0.1**epoch)
    assert custom.lr == [0.1, pytest.approx(0.01)]


def test_every_callback_runs_every_epoch_and_any_of_them_stops_training(backend):
    X, Y = _blobs()
    calls = []

    def first(net, epoch, logs):  # asks to stop after epoch 2
        calls.append(("first", epoch))
        return epoch == 2

    def second(net, epoch, logs):  # never asks, and still sees epoch 2
        calls.append(("second", epoch))

    history = fit(_net(backend), X, Y, epochs=5, callbacks=[first, second])
    assert calls == [("first", 1), ("second", 1), ("first", 2), ("second", 2)]
    assert len(history) == 2


def test_a_source_as_validation_is_scored_streamed_into_the_history(tmp_path):
    X, Y = _blobs()
    X_val, Y_val = _blobs(20, 1)
    np.save(tmp_path / "X.npy", X_val.T.copy())  # (m, n_x) rows on disk
    np.save(tmp_path / "Y.npy", Y_val[0].copy())  # (m,) labels
    streamed = []  # (the source scored by a callback, the logs' val_cost) after each epoch
    with sources.open_source(tmp_path) as source:

        def record(net, epoch, logs):
            streamed.append((sources.evaluate(net, source), logs["val_cost"]))

        history = fit(_net("numpy"), X, Y, epochs=3, validation=source, callbacks=[record], **FULL_RUN)
    assert history.val_cost == [scores["cost"] for scores, _ in streamed] == [logged for _, logged in streamed]
    assert history.val_accuracy == [scores["accuracy"] for scores, _ in streamed]
    in_memory = fit(_net("numpy"), X, Y, epochs=3, validation=(X_val, Y_val), **FULL_RUN)
    assert relative_difference(np.array(history.val_cost), np.array(in_memory.val_cost)) <= gradient_rtol("float64")
    assert history.cost == in_memory.cost  # the validation data is only scored: training is the same


def test_a_resume_scoring_validation_the_checkpoint_lacks_gives_those_epochs_nan(tmp_path):
    # a checkpoint whose run scored its validation outside fit (as the command line once did) has no scores
    X, Y = _blobs()
    path, same = (
        tmp_path / "run.npz",
        dict(checkpoint=tmp_path / "run.npz", fingerprint={"data": "the same"}, **FULL_RUN),
    )
    fit(_net("numpy"), X, Y, epochs=2, **same)
    history = fit(_net("numpy"), X, Y, epochs=3, validation=_blobs(20, 1), resume=True, **same)
    assert path.exists() and len(history.val_cost) == len(history.val_accuracy) == len(history) == 3
    assert np.isnan(history.val_cost[:2]).all() and np.isnan(history.val_accuracy[:2]).all()
    assert np.isfinite(history.val_cost[2]) and np.isfinite(history.val_accuracy[2])


def test_interrupted_and_resumed_equals_uninterrupted(backend, tmp_path):
    X, Y = _blobs()
    whole_net = _net(backend, "float32")
    whole = fit(whole_net, X, Y, epochs=6, validation=_blobs(20, 1), **FULL_RUN)

    path = tmp_path / "run.npz"

    def crash_in_epoch_five(net, epoch, logs):
        if epoch == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(
            _net(backend, "float32"),
            X,
            Y,
            epochs=6,
            validation=_blobs(20, 1),
            checkpoint=path,
            checkpoint_every=2,
            callbacks=[crash_in_epoch_five],
            **FULL_RUN,
        )
    resumed_net = _net(backend, "float32", seed=99)  # other initial values: they must come from the checkpoint
    resumed = fit(
        resumed_net,
        X,
        Y,
        epochs=6,
        validation=_blobs(20, 1),
        checkpoint=path,
        checkpoint_every=2,
        resume=True,
        **FULL_RUN,
    )
    assert resumed == whole
    for key, value in whole_net.get_parameters().items():
        np.testing.assert_array_equal(resumed_net.get_parameters()[key], value)


def test_resume_from_a_checkpoint_that_does_not_exist_is_an_error_naming_it(tmp_path):
    X, Y = _blobs()
    with pytest.raises(dnn.ModelFileError, match=r"cannot resume: the checkpoint .*new.npz does not exist"):
        fit(_net("numpy"), X, Y, epochs=2, checkpoint=tmp_path / "new.npz", resume=True, **FULL_RUN)
    assert list(tmp_path.iterdir()) == []  # not a silent fresh start that writes it


def test_a_resumed_history_says_the_epoch_it_resumed_from(tmp_path):
    X, Y = _blobs()
    path = tmp_path / "run.npz"
    first = fit(_net("numpy"), X, Y, epochs=2, checkpoint=path, **FULL_RUN)
    resumed = fit(_net("numpy"), X, Y, epochs=5, checkpoint=path, resume=True, **FULL_RUN)
    assert (first.resumed_from, resumed.resumed_from) == (None, 2)
    assert resumed == fit(_net("numpy"), X, Y, epochs=5, **FULL_RUN)  # where it resumed from is no part of the run


def test_resume_refuses_a_model_file(tmp_path):
    X, Y = _blobs()
    net = _net("numpy")
    net.save(tmp_path / "model.npz")
    with pytest.raises(ValueError, match="it is a model file .*not a checkpoint"):
        fit(net, X, Y, epochs=2, checkpoint=tmp_path / "model.npz", resume=True, **FULL_RUN)


def test_resume_refuses_a_run_with_other_settings(tmp_path):
    X, Y = _blobs()
    path = tmp_path / "run.npz"
    fit(_net("numpy"), X, Y, epochs=2, checkpoint=path, **FULL_RUN)
    with pytest.raises(ValueError, match="batch_size=16 there, 8 here"):
        fit(_net("numpy"), X, Y, epochs=4, checkpoint=path, resume=True, **dict(FULL_RUN, batch_size=8))
    with pytest.raises(ValueError, match="holds a network"):
        fit(dnn.Network([5, 3, 4, 1], dtype="float64"), X, Y, epochs=4, checkpoint=path, resume=True, **FULL_RUN)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(dropout=1.0), "dropout rates must be in"),
        (dict(dropout=[0.1]), "one rate per hidden layer"),
        (dict(epochs=-1), "epochs must be an integer"),
        (dict(batch_size=0), "batch_size must be an integer >= 1"),
        (dict(lr=float("nan")), "lr must be a positive"),
        (dict(l2=-1), "l2 must be"),
        (dict(resume=True), "resume=True needs checkpoint"),
        (dict(optimizer=UNREGISTRABLE), "unknown optimizer"),
    ],
)
def test_bad_arguments_are_named(options, message):
    X, Y = _blobs()
    with pytest.raises(ValueError, match=message):
        fit(_net("numpy"), X, Y, **dict(dict(epochs=1), **options))


def test_network_fit_delegates_to_fit():
    X, Y = _blobs()
    history = _net("numpy").fit(X, Y, epochs=2, lr=0.1)
    assert isinstance(history, History) and history == fit(_net("numpy"), X, Y, epochs=2, lr=0.1)
