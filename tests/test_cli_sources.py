"""`python -m dnn train | evaluate | predict --data SOURCE`: training and scoring from data on disk, streamed."""

import re

import numpy as np
import pytest

from dnn import Network, checkpoint, data
from dnn.cli import main
from dnn.convert import convert
from dnn.tolerances import gradient_rtol, kernel_rtol, relative_difference

M, N = 400, 6


def _accuracy(text, which):
    return float(re.search(rf"{which} accuracy:\s+([0-9.]+)", text).group(1))


@pytest.fixture
def table(tmp_path):
    """A CSV of M rows, N named features and 3 classes, and the same table converted to a directory and an .h5."""
    rng = np.random.default_rng(3)
    X = rng.normal(1.0, 2.0, (M, N))  # (M, N)
    y = np.digitize(X[:, 0] + X[:, 1], [-1.0, 3.0])  # (M,) classes 0, 1, 2
    csv = tmp_path / "t.csv"
    lines = [",".join([f"f{j}" for j in range(N)] + ["label"])]
    lines += [",".join([repr(float(v)) for v in row] + [str(c)]) for row, c in zip(X, y)]
    csv.write_text("\n".join(lines) + "\n")
    convert(str(csv), str(tmp_path / "dir"))
    convert(str(csv), str(tmp_path / "t.h5"))
    return tmp_path


def _model(path):
    return checkpoint.load_checkpoint(path, network_class=Network)


TRAIN = ["--layers", "5", "--epochs", "4", "--batch-size", "32", "--dtype", "float64", "--quiet"]


@pytest.mark.parametrize("source", ["dir", "dir/X.npy", "t.h5"])
def test_training_from_a_source_equals_training_from_the_csv(source, table, capsys):
    # with --test the whole source trains, in file order, as the CSV in memory does: same shuffles, same model
    assert (
        main(
            [
                "train",
                "--data",
                str(table / "t.csv"),
                "--test",
                str(table / "t.csv"),
                *TRAIN,
                "--save",
                str(table / "a.npz"),
            ]
        )
        == 0
    )
    from_memory = capsys.readouterr().out
    assert (
        main(
            [
                "train",
                "--data",
                str(table / source),
                "--test",
                str(table / "t.csv"),
                *TRAIN,
                "--save",
                str(table / "b.npz"),
            ]
        )
        == 0
    )
    from_source = capsys.readouterr().out
    a, b = _model(table / "a.npz"), _model(table / "b.npz")
    for name in ("input_mean", "input_std"):  # the streaming statistics
        assert relative_difference(b.extras[name], a.extras[name]) <= kernel_rtol("float64")
    theirs = a.network.get_parameters()
    for name, ours in b.network.get_parameters().items():
        assert relative_difference(ours, theirs[name]) <= gradient_rtol("float64"), name
    assert b.feature_names == a.feature_names == tuple(f"f{j}" for j in range(N))
    assert _accuracy(from_source, "test") == _accuracy(from_memory, "test")


def test_without_test_data_the_held_out_rows_are_the_in_memory_split_and_evaluate_finds_them(table, capsys):
    model = table / "m.npz"
    assert main(["train", "--data", str(table / "dir"), *TRAIN, "--save", str(model)]) == 0
    test_accuracy = _accuracy(capsys.readouterr().out, "test")
    saved = _model(model)
    assert saved.extras["cli"]["split"] == {"seed": 0, "test_fraction": 0.2}
    train_rows, _ = data.split_indices(M, 0.2, 0)
    X = data.load_csv(str(table / "t.csv")).X[:, np.sort(train_rows)]  # (N, 320): statistics of the training rows only
    assert relative_difference(saved.extras["input_mean"], X.mean(axis=1, keepdims=True)) <= kernel_rtol("float64")
    assert main(["evaluate", str(model), "--data", str(table / "dir")]) == 0
    out = capsys.readouterr().out
    assert "test split held out in training" in out and "80 examples" in out and f"accuracy {test_accuracy:.4f}" in out
    assert main(["predict", str(model), "--data", str(table / "dir"), "--out", str(table / "p.csv")]) == 0
    lines = (table / "p.csv").read_text().splitlines()
    assert lines[0] == "row,prediction,probability" and len(lines) == M + 1  # predict answers for every row
    assert {line.split(",")[1] for line in lines[1:]} <= {"0", "1", "2"}  # the table's own labels


def test_the_streamed_test_scores_of_every_epoch_are_in_the_checkpoints_history(table, capsys):
    ck = table / "ck.npz"
    assert main(["train", "--data", str(table / "dir"), *TRAIN, "--checkpoint", str(ck)]) == 0
    test_accuracy = _accuracy(capsys.readouterr().out, "test")
    history = _model(ck).training["history"]
    assert len(history["val_cost"]) == len(history["val_accuracy"]) == len(history["cost"]) == 4
    assert np.isfinite(history["val_cost"]).all()
    assert (
        f"{history['val_accuracy'][-1]:.4f}" == f"{test_accuracy:.4f}"
    )  # the last epoch's scores are the final model's
    # resumed, the earlier epochs' scores come from the checkpoint: the curve a --plot draws is whole
    assert (
        main(
            [
                "train",
                "--data",
                str(table / "dir"),
                *TRAIN[:2],
                "--epochs",
                "6",
                *TRAIN[4:],
                "--checkpoint",
                str(ck),
                "--resume",
            ]
        )
        == 0
    )
    resumed = _model(ck).training["history"]
    assert resumed["val_cost"][:4] == history["val_cost"] and np.isfinite(resumed["val_cost"]).all()
    assert len(resumed["val_cost"]) == 6


def test_evaluate_and_predict_on_a_source_equal_those_on_the_csv(table, capsys):
    model = table / "m.npz"
    assert (
        main(["train", "--data", str(table / "t.csv"), "--test", str(table / "t.csv"), *TRAIN, "--save", str(model)])
        == 0
    )
    capsys.readouterr()
    outputs = []
    for source in ("t.csv", "t.h5"):
        assert main(["evaluate", str(model), "--data", str(table / source)]) == 0
        assert main(["predict", str(model), "--data", str(table / source)]) == 0
        outputs.append(capsys.readouterr().out.replace(str(table / source), "DATA"))
    assert outputs[0] == outputs[1]
    assert f"{M} examples" in outputs[0] and len(outputs[0].splitlines()) == 1 + 1 + M


def test_a_course_h5_is_not_taken_for_a_source(shared_data, tmp_path, capsys):
    train = shared_data / "train_catvnoncat.h5"
    assert main(["train", "--data", str(train), "--layers", "3", "--epochs", "1", "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_bad_sources_are_named_before_training(table, capsys):
    np.save(
        table / "dir" / "X.npy", np.load(table / "dir" / "X.npy")[:, ::-1].copy()
    )  # another order of the same names
    (table / "dir" / "features.json").write_text('{"feature_names": ["f5", "f4", "f3", "f2", "f1", "f0"]}')
    (table / "other").mkdir()
    np.save(table / "other" / "X.npy", np.zeros((5, 2)))
    np.save(table / "other" / "Y.npy", np.zeros(5))
    assert main(["train", "--data", str(table / "t.h5"), "--test", str(table / "dir"), *TRAIN]) == 1
    assert "are not those of" in capsys.readouterr().err
    assert main(["train", "--data", str(table / "t.h5"), "--test", str(table / "other"), *TRAIN]) == 1
    assert re.search(r"features of .*other are 2 a row, those of .*t.h5 6", capsys.readouterr().err)
    X = np.load(table / "dir" / "X.npy")
    X[123, 2] = np.nan
    np.save(table / "dir" / "X.npy", X)
    assert main(["train", "--data", str(table / "dir"), *TRAIN]) == 1
    assert re.search(r"error: .*X.npy, row 123: feature 2 \('f3'\) is nan", capsys.readouterr().err)
    assert main(["train", "--data", str(table / "nowhere"), *TRAIN]) == 1
    assert f"error: data file {table / 'nowhere'} does not exist" in capsys.readouterr().err
