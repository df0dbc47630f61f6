"""`--log` and `dnn.MetricsLog` write each epoch's numbers to a CSV file as the epoch ends."""

import csv

import numpy as np
import pytest

import dnn
from tests.cli_helpers import one_error_line, run_cli


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 60))
    Y = (X[0:1] + X[1:2] > 0).astype(float)
    return X, Y


def test_each_row_holds_the_epochs_history(tmp_path, data):
    X, Y = data
    log = dnn.MetricsLog(tmp_path / "m.csv")
    history = dnn.Network([4, 5, 1], backend="numpy", seed=0).fit(
        X, Y, epochs=4, batch_size=16, validation=(X[:, :20], Y[:, :20]), callbacks=[log]
    )
    log.close()
    rows = read_rows(tmp_path / "m.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    for name in ("cost", "accuracy", "lr", "val_cost", "val_accuracy"):
        assert [float(r[name]) for r in rows] == getattr(history, name)  # repr of a float reads back exactly


def test_a_run_without_validation_has_no_validation_columns(tmp_path, data):
    log = dnn.MetricsLog(tmp_path / "m.csv")
    dnn.Network([4, 1], backend="numpy").fit(*data, epochs=2, callbacks=[log])
    log.close()
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "epoch,cost,accuracy,lr"


def test_rows_are_on_disk_while_training_goes_on(tmp_path, data):
    seen = []
    log = dnn.MetricsLog(tmp_path / "m.csv")

    def reader(net, epoch, logs):
        seen.append(len(read_rows(tmp_path / "m.csv")))

    dnn.Network([4, 1], backend="numpy").fit(*data, epochs=3, callbacks=[log, reader])
    log.close()
    assert seen == [1, 2, 3]


def test_a_resumed_run_ends_with_the_uninterrupted_runs_rows(tmp_path, data):
    X, Y = data

    def train(epochs, log, resume=False, checkpoint=None):
        net = dnn.Network([4, 5, 1], backend="numpy", seed=0)
        metrics = dnn.MetricsLog(log, resume=resume)
        net.fit(
            X,
            Y,
            epochs=epochs,
            batch_size=16,
            checkpoint=checkpoint,
            checkpoint_every=2,
            resume=resume,
            callbacks=[metrics],
        )
        metrics.close()

    train(6, tmp_path / "whole.csv")
    train(3, tmp_path / "parts.csv", checkpoint=tmp_path / "ck.npz")  # the checkpoint holds epoch 2
    with open(tmp_path / "parts.csv", "a") as f:
        f.write("4,0.5,0.")  # a row cut short by a killed run
    train(6, tmp_path / "parts.csv", resume=True, checkpoint=tmp_path / "ck.npz")
    assert (tmp_path / "parts.csv").read_text() == (tmp_path / "whole.csv").read_text()


def test_resuming_into_a_log_of_other_columns_is_refused(tmp_path, data):
    (tmp_path / "m.csv").write_text("epoch,cost,accuracy,lr,val_cost,val_accuracy\n1,0.5,0.5,0.1,0.5,0.5\n")
    log = dnn.MetricsLog(tmp_path / "m.csv", resume=True)
    with pytest.raises(ValueError, match="its columns are not this run's"):
        log(None, 2, {"cost": 0.4, "accuracy": 0.6, "lr": 0.1})
    assert "val_cost" in (tmp_path / "m.csv").read_text()  # the user's file is left as it was


def test_the_command_line_writes_the_log_with_the_test_scores(tmp_path, capsys):
    status, _, err = run_cli(capsys, "train", "--epochs", "3", "--quiet", "--log", tmp_path / "metrics.csv")
    assert status == 0, err
    rows = read_rows(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert all(0 <= float(r["val_accuracy"]) <= 1 for r in rows)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--log", "out/metrics.csv"], "--log out/metrics.csv: the directory out does not exist"),
        (["--log", "m.csv", "--save", "m.csv"], "--save and --log name the same file m.csv"),
        (["--log", "d.csv", "--data", "d.csv"], "--log d.csv is also the --data file"),
    ],
)
def test_a_log_path_that_cannot_serve_is_refused_before_training(tmp_path, monkeypatch, capsys, args, complaint):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n")
    status, _, err = run_cli(capsys, "train", "--epochs", "1", *args)
    assert status != 0
    assert one_error_line(err, complaint), err
    assert not (tmp_path / "m.csv").exists()
