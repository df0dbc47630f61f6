"""The command line: train / evaluate / predict / backends, and one-line errors for user mistakes."""

import re
import subprocess
import sys

import numpy as np
import pytest

from dnn.cli import main


def _accuracy(text, which):
    return float(re.search(rf"{which} accuracy:\s+([0-9.]+)", text).group(1))


def test_the_default_run_trains_on_breast_cancer_and_reports_accuracy(capsys):
    assert main(["train", "--epochs", "40"]) == 0
    out = capsys.readouterr().out
    assert "breast_cancer" in out and "epoch 40/40: cost" in out  # not a tty: the cost is printed as it goes
    assert _accuracy(out, "test") >= 0.93


def test_digits_reach_95_percent_with_adam(backend, capsys):
    assert main(["train", "--data", "digits", "--layers", "64,32", "--optimizer", "adam", "--epochs", "30",
                 "--backend", backend.name, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 2  # quiet: the two accuracy lines only
    assert _accuracy(out, "test") >= 0.95


def test_cat_images_train_save_evaluate_and_predict(shared_data, tmp_path, capsys):
    train, test, model = shared_data / "train_catvnoncat.h5", shared_data / "test_catvnoncat.h5", tmp_path / "cat.npz"
    assert main(["train", "--data", str(train), "--test", str(test), "--layers", "7", "--epochs", "3", "--quiet",
                 "--save", str(model), "--plot", str(tmp_path / "cost.png")]) == 0
    test_accuracy = _accuracy(capsys.readouterr().out, "test")
    assert (tmp_path / "cost.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["evaluate", str(model), "--data", str(test)]) == 0
    assert "50 examples, cost" in (out := capsys.readouterr().out) and f"accuracy {test_accuracy:.4f}" in out
    assert main(["predict", str(model), "--data", str(test), "--out", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "prediction,probability,class" and len(lines) == 51
    assert {line.split(",")[2] for line in lines[1:]} <= {"cat", "non-cat"}


def test_evaluate_on_the_training_source_uses_the_held_out_split(tmp_path, capsys):
    model = tmp_path / "iris.npz"
    assert main(["train", "--data", "iris", "--layers", "8", "--epochs", "30", "--lr", "0.01", "--quiet", "--save", str(model)]) == 0
    test_accuracy = _accuracy(capsys.readouterr().out, "test")
    assert main(["evaluate", str(model), "--data", "iris"]) == 0
    out = capsys.readouterr().out
    assert "test split" in out and "30 examples" in out and f"accuracy {test_accuracy:.4f}" in out
    assert main(["predict", str(model), "--data", "iris"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split(",")[2] in ("setosa", "versicolor", "virginica")


def test_csv_training_with_a_named_label_column(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    rows = "\n".join(f"{a:.6f},{label},{b:.6f}" for (a, b), label in zip(X, y))
    (tmp_path / "d.csv").write_text("a,target,b\n" + rows + "\n")
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--label-column", "target", "--layers", "4",
                 "--epochs", "40", "--lr", "0.05", "--quiet", "--save", str(tmp_path / "m.npz")]) == 0
    assert _accuracy(capsys.readouterr().out, "test") >= 0.8
    (tmp_path / "new.csv").write_text("a,b\n1,1\n-1,-1\n")  # no label column: the model knows which one it dropped
    assert main(["predict", str(tmp_path / "m.npz"), "--data", str(tmp_path / "new.csv")]) == 0
    assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["1", "0"]


def test_resuming_from_the_command_line(tmp_path, capsys):
    common = ["train", "--data", "iris", "--layers", "6", "--quiet", "--checkpoint", str(tmp_path / "run.npz"), "--checkpoint-every", "2"]
    assert main(common + ["--epochs", "4"]) == 0
    assert main(common + ["--epochs", "8", "--resume"]) == 0
    resumed = capsys.readouterr().out.splitlines()[-2:]
    assert main(["train", "--data", "iris", "--layers", "6", "--quiet", "--epochs", "8"]) == 0
    assert capsys.readouterr().out.splitlines() == resumed


def test_backends_lists_each_with_its_status(capsys):
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["numpy", "yes"]
    assert {line.split()[0] for line in lines} == {"numpy", "numba", "cupy"}
    assert all(line.split()[1] == "yes" or len(line.split()) > 2 for line in lines)  # "no" comes with a reason


@pytest.mark.parametrize(
    "argv, message, status",
    [
        (["train", "--data", "nowhere.csv"], "data file nowhere.csv does not exist", 1),
        (["train", "--layers", "20,x"], "--layers takes comma-separated integers", 1),
        (["train", "--backend", "tpu", "--epochs", "1"], "unknown backend 'tpu'", 1),
        (["train", "--dropout", "1.5", "--epochs", "1"], "dropout rates must be in", 1),
        (["train", "--epochs", "ten"], "argument --epochs: invalid int value", 2),
        (["evaluate", "missing.npz", "--data", "iris"], "model file missing.npz does not exist", 1),
        (["frobnicate"], "invalid choice", 2),
    ],
)
def test_user_mistakes_print_one_line_and_exit_non_zero(capsys, argv, message, status):
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_model_that_does_not_fit_the_data_is_one_line(tmp_path, capsys):
    model = str(tmp_path / "iris.npz")
    assert main(["train", "--data", "iris", "--layers", "4", "--epochs", "1", "--quiet", "--save", model]) == 0
    assert main(["evaluate", model, "--data", "digits"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "64" in err and "4" in err


def test_python_dash_m_runs_without_a_traceback():
    done = subprocess.run([sys.executable, "-m", "dnn", "train", "--data", "nope.npz"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr == "error: data file nope.npz does not exist\n"
