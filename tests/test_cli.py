"""The command line: train / evaluate / predict / backends, and one-line errors for user mistakes."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import one_error_line, run_cli
from dnn.backends import backend_names
from dnn.cli import main
from dnn.errors import install_hint


def _accuracy(text, which):
    return float(re.search(rf"{which} accuracy:\s+([0-9.]+)", text).group(1))


def test_the_default_run_trains_on_breast_cancer_and_reports_accuracy(capsys):
    assert main(["train", "--epochs", "40"]) == 0
    out = capsys.readouterr().out
    assert "breast_cancer" in out and "epoch 40/40: cost" in out  # not a tty: the cost is printed as it goes
    assert _accuracy(out, "test") >= 0.93


def test_digits_reach_95_percent_with_adam(backend, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                "digits",
                "--layers",
                "64,32",
                "--optimizer",
                "adam",
                "--epochs",
                "30",
                "--backend",
                backend.name,
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("\n") == 2  # quiet: the two accuracy lines only
    assert _accuracy(out, "test") >= 0.95


def test_cat_images_train_save_evaluate_and_predict(shared_data, tmp_path, capsys):
    train, test, model = shared_data / "train_catvnoncat.h5", shared_data / "test_catvnoncat.h5", tmp_path / "cat.npz"
    assert (
        main(
            [
                "train",
                "--data",
                str(train),
                "--test",
                str(test),
                "--layers",
                "7",
                "--epochs",
                "3",
                "--quiet",
                "--save",
                str(model),
                "--plot",
                str(tmp_path / "cost.png"),
            ]
        )
        == 0
    )
    test_accuracy = _accuracy(capsys.readouterr().out, "test")
    assert (tmp_path / "cost.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["evaluate", str(model), "--data", str(test)]) == 0
    assert "50 examples, cost" in (out := capsys.readouterr().out) and f"accuracy {test_accuracy:.4f}" in out
    assert main(["predict", str(model), "--data", str(test), "--out", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "row,prediction,probability" and len(lines) == 51
    assert {line.split(",")[1] for line in lines[1:]} <= {"cat", "non-cat"}


def test_evaluate_on_the_training_source_uses_the_held_out_split(tmp_path, capsys):
    model = tmp_path / "iris.npz"
    assert (
        main(
            [
                "train",
                "--data",
                "iris",
                "--layers",
                "8",
                "--epochs",
                "30",
                "--lr",
                "0.01",
                "--quiet",
                "--save",
                str(model),
            ]
        )
        == 0
    )
    test_accuracy = _accuracy(capsys.readouterr().out, "test")
    assert main(["evaluate", str(model), "--data", "iris"]) == 0
    out = capsys.readouterr().out
    assert "test split" in out and "30 examples" in out and f"accuracy {test_accuracy:.4f}" in out
    assert main(["predict", str(model), "--data", "iris"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split(",")[1] in ("setosa", "versicolor", "virginica")


def test_csv_training_with_a_named_label_column(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    rows = "\n".join(f"{a:.6f},{label},{b:.6f}" for (a, b), label in zip(X, y))
    (tmp_path / "d.csv").write_text("a,target,b\n" + rows + "\n")
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "d.csv"),
                "--label-column",
                "target",
                "--layers",
                "4",
                "--epochs",
                "40",
                "--lr",
                "0.05",
                "--quiet",
                "--save",
                str(tmp_path / "m.npz"),
            ]
        )
        == 0
    )
    assert _accuracy(capsys.readouterr().out, "test") >= 0.8
    (tmp_path / "new.csv").write_text("a,b\n1,1\n-1,-1\n")  # no label column: the model knows which one it dropped
    assert main(["predict", str(tmp_path / "m.npz"), "--data", str(tmp_path / "new.csv")]) == 0
    assert [line.split(",")[1] for line in capsys.readouterr().out.splitlines()[1:]] == ["1", "0"]


def test_resuming_from_the_command_line(tmp_path, capsys):
    common = [
        "train",
        "--data",
        "iris",
        "--layers",
        "6",
        "--quiet",
        "--checkpoint",
        str(tmp_path / "run.npz"),
        "--checkpoint-every",
        "2",
    ]
    assert main(common + ["--epochs", "4"]) == 0
    assert main(common + ["--epochs", "8", "--resume"]) == 0
    resumed = capsys.readouterr().out.splitlines()[-2:]
    assert main(["train", "--data", "iris", "--layers", "6", "--quiet", "--epochs", "8"]) == 0
    assert capsys.readouterr().out.splitlines() == resumed


def test_backends_lists_each_with_its_status(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if not line.startswith(" ")]  # indented lines add details to the one above
    assert lines[0].split()[:2] == ["numpy", "yes"]
    assert [line.split()[0] for line in lines] == list(backend_names())
    assert all(line.split()[1] == "yes" or len(line.split()) > 2 for line in lines)  # "no" comes with a reason
    if any(line.split()[:2] == ["numba", "yes"] for line in lines):
        assert any("kernel cache for `python -m dnn train`: " in line for line in out)


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
    done = subprocess.run(
        [sys.executable, "-m", "dnn", "train", "--data", "nope.npz"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and done.stderr == "error: data file nope.npz does not exist\n"


# ---------------------------------------------------------------------------------------------- checked before any work


@pytest.fixture
def no_training(monkeypatch):
    """Make any training an error, to show that a check came first."""
    monkeypatch.setattr("dnn.cli.train.fit", lambda *args, **kwargs: pytest.fail("training started before the check"))


@pytest.mark.parametrize("option", ["--save", "--checkpoint", "--plot"])
@pytest.mark.parametrize(
    "where, reason",
    [
        ("missing/out.png", "the directory {tmp}/missing does not exist"),
        ("file.txt/out.png", "the directory {tmp}/file.txt is not a directory"),
        ("", "is a directory; give a file name inside it"),
    ],
)
def test_an_output_path_that_cannot_be_written_is_named_before_data_is_loaded(
    capsys, tmp_path, no_training, option, where, reason
):
    (tmp_path / "file.txt").write_text("")
    path = tmp_path / where
    status, out, err = run_cli(capsys, "train", "--data", "nowhere.csv", option, str(path))  # the data would fail too
    assert status == 1 and out == ""
    assert one_error_line(err, f"{option} {path}: ", reason.format(tmp=tmp_path)), err


@pytest.mark.parametrize("option", ["--save", "--plot"])
def test_an_unwritable_location_is_named(capsys, no_training, option):
    if not os.path.isdir("/sys") or os.access("/sys/dnn-probe", os.F_OK):
        pytest.skip("needs a /sys that takes no new files")
    status, _, err = run_cli(capsys, "train", option, "/sys/out.png")
    assert status == 1 and one_error_line(err, f"{option} /sys/out.png: cannot write in /sys")


def test_predict_out_is_checked_before_the_model_is_read(capsys, tmp_path):
    status, _, err = run_cli(capsys, "predict", "absent.npz", "--data", "iris", "--out", str(tmp_path / "no" / "p.csv"))
    assert status == 1 and one_error_line(err, f"--out {tmp_path}/no/p.csv: the directory {tmp_path}/no does not exist")


@pytest.mark.parametrize("name, message", [("cost.xyz", "format 'xyz'; matplotlib writes"), ("cost", "no extension")])
def test_a_plot_format_matplotlib_cannot_write_is_refused(capsys, tmp_path, no_training, name, message):
    status, _, err = run_cli(capsys, "train", "--plot", str(tmp_path / name))
    assert status == 1 and one_error_line(err, f"--plot {tmp_path / name}: {message}")


def test_plot_without_matplotlib_names_the_extra_before_training(capsys, monkeypatch, tmp_path, no_training):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    status, _, err = run_cli(capsys, "train", "--plot", str(tmp_path / "cost.png"))
    assert status == 1 and err == f"error: --plot needs matplotlib, which is not installed: {install_hint('plot')}\n"


def test_the_data_extra_includes_what_plot_needs():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    data_extra = re.search(r"^data = \[(.*)\]$", pyproject, re.MULTILINE).group(1)
    assert "matplotlib" in data_extra


def test_the_plot_is_written_in_the_format_its_extension_names(capsys, tmp_path):
    status, _, _ = run_cli(
        capsys,
        "train",
        "--data",
        "iris",
        "--layers",
        "4",
        "--epochs",
        "2",
        "--quiet",
        "--plot",
        str(tmp_path / "c.svg"),
    )
    assert status == 0 and b"<svg" in (tmp_path / "c.svg").read_bytes()[:500]
    assert os.listdir(tmp_path) == ["c.svg"]  # written through a temporary file, which is gone


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layers", "10,,5"], "--layers: '10,,5' has an empty item"),
        (["--layers", "10,"], "--layers: '10,' has an empty item"),
        (["--layers", "10,-5"], "layer sizes must be positive"),
        (["--dropout", "0.2,,0.1"], "--dropout: '0.2,,0.1' has an empty item"),
        (["--dropout", ""], "--dropout takes a rate like 0.2"),
        (["--dropout", "0.1,0.2"], "dropout needs one rate per hidden layer (3)"),
        (["--dropout", "nan"], "dropout rates must be in [0, 1)"),
        (["--lr", "nan"], "--lr must be a positive finite number, got nan"),
        (["--lr", "-0.1"], "--lr must be a positive finite number, got -0.1"),
        (["--lr", "inf"], "--lr must be a positive finite number, got inf"),
        (["--lr-decay", "-1"], "--lr-decay must be a finite number >= 0, got -1.0"),
        (["--l2", "nan"], "--l2 must be a finite number >= 0, got nan"),
        (["--epochs", "-1"], "--epochs must be an integer >= 0, got -1"),
        (["--batch-size", "-2"], "--batch-size must be an integer >= 0, got -2"),
        (["--seed", "-1"], "--seed must be an integer from 0 to 2**32 - 1, got -1"),
        (["--activation", "swish"], "unknown activation 'swish'"),
        (["--label-column", "target"], "--label-column applies to CSV files only, and breast_cancer is not one"),
        (
            ["--data", "iris", "--test", "x.npz", "--label-column", "y"],
            "--label-column applies to CSV files only, and iris and x.npz",
        ),
        (["--checkpoint-every", "5"], "--checkpoint-every needs --checkpoint PATH"),
        (["--resume"], "--resume needs --checkpoint PATH"),
        (["--checkpoint", "run.npz", "--checkpoint-every", "0"], "--checkpoint-every must be an integer >= 1, got 0"),
        (["--checkpoint", "run.npz", "--save", "./run.npz"], "--save and --checkpoint name the same file"),
        (
            ["--data", "d.csv", "--save", "d.csv"],
            "--save d.csv is also the --data file; writing it would overwrite that input",
        ),
        (["--test", "t.npz", "--checkpoint", "./t.npz"], "--checkpoint ./t.npz is also the --test file"),
    ],
)
def test_a_bad_train_option_is_one_line_before_training(capsys, no_training, argv, message):
    status, out, err = run_cli(capsys, "train", *argv)
    assert status == 1 and out == ""
    assert one_error_line(err, message), err


def test_predict_out_must_not_overwrite_the_model(capsys):
    status, _, err = run_cli(capsys, "predict", "m.npz", "--data", "iris", "--out", "m.npz")
    assert status == 1 and one_error_line(err, "--out m.npz is also the MODEL file")


def test_label_column_does_not_apply_to_a_model_evaluated_on_a_built_in_set(capsys):
    status, _, err = run_cli(capsys, "evaluate", "m.npz", "--data", "iris", "--label-column", "y")
    assert status == 1 and one_error_line(err, "--label-column applies to CSV files only, and iris is not one")


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_swapped_model_and_data_say_which_comes_first(capsys, tmp_path, command):
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    status, _, err = run_cli(capsys, command, str(tmp_path / "data.csv"), "--data", str(tmp_path / "model.npz"))
    assert status == 1 and "pickle" not in err
    assert one_error_line(
        err, "data.csv is data, not a model file; the model comes first", f"python -m dnn {command} MODEL.npz"
    )


def test_a_non_model_file_in_the_model_position_is_named_without_talk_of_pickles(capsys, tmp_path):
    (tmp_path / "data.txt").write_text("a,b\n1,2\n")
    status, _, err = run_cli(capsys, "evaluate", str(tmp_path / "data.txt"), "--data", "iris")
    assert status == 1 and "pickle" not in err and one_error_line(err, "data.txt is not a dnn model file")


# ---------------------------------------------------------------------------------------------- columns matched by name
def _write_csv(path, columns, values):
    """A CSV with `columns` as its header and the (m, columns) `values` as rows."""
    path.write_text(",".join(columns) + "\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in values) + "\n")


@pytest.fixture
def csv_model(tmp_path, capsys):
    """(model path, {column: values}) of a model trained on a,b,c,target where only a decides the label."""
    rng = np.random.default_rng(3)
    a, b, c = rng.standard_normal(80), 10 + 5 * rng.standard_normal(80), -3 + rng.standard_normal(80)
    columns = {"a": a, "b": b, "c": c, "target": (a > 0).astype(float)}
    _write_csv(tmp_path / "train.csv", list(columns), np.column_stack(list(columns.values())))
    model = tmp_path / "m.npz"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "train.csv"),
                "--layers",
                "4",
                "--epochs",
                "60",
                "--lr",
                "0.05",
                "--quiet",
                "--save",
                str(model),
            ]
        )
        == 0
    )
    capsys.readouterr()
    return model, columns


def _accuracy_on(capsys, model, path, columns, order):
    _write_csv(path, order, np.column_stack([columns[name] for name in order]))
    status, out, err = run_cli(capsys, "evaluate", str(model), "--data", str(path))
    assert status == 0, err
    return float(re.search(r"accuracy ([0-9.]+)", out).group(1)), err


def test_evaluate_matches_csv_columns_by_name(capsys, tmp_path, csv_model):
    model, columns = csv_model
    same, _ = _accuracy_on(capsys, model, tmp_path / "same.csv", columns, ["a", "b", "c", "target"])
    shuffled, err = _accuracy_on(capsys, model, tmp_path / "shuffled.csv", columns, ["target", "c", "a", "b"])
    assert same >= 0.9 and shuffled == same and err == ""


def test_predict_matches_csv_columns_by_name(capsys, tmp_path, csv_model):
    model, columns = csv_model
    outputs = []
    for order in (["a", "b", "c"], ["c", "b", "a"]):
        _write_csv(tmp_path / "new.csv", order, np.column_stack([columns[name][:10] for name in order]))
        status, out, _ = run_cli(capsys, "predict", str(model), "--data", str(tmp_path / "new.csv"))
        assert status == 0
        outputs.append(out)
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    "order, message",
    [
        (["a", "b", "target"], "missing c"),
        (["a", "b", "c", "d", "target"], "not used by it: d"),
        (["a", "x", "c", "target"], "missing b; not used by it: x"),
    ],
)
def test_missing_or_extra_columns_are_listed(capsys, tmp_path, csv_model, order, message):
    model, columns = csv_model
    columns = dict(columns, d=columns["a"], x=columns["b"])
    _write_csv(tmp_path / "other.csv", order, np.column_stack([columns[name] for name in order]))
    status, _, err = run_cli(capsys, "evaluate", str(model), "--data", str(tmp_path / "other.csv"))
    assert status == 1 and one_error_line(
        err, f"the columns of {tmp_path / 'other.csv'} do not match those of the model", message
    )


def test_a_model_without_feature_names_matches_by_position_and_says_so_once(capsys, tmp_path, csv_model):
    model, columns = csv_model
    with np.load(model) as npz:
        content = {key: npz[key] for key in npz.files}
    meta = json.loads(str(content["meta"]))
    del meta["feature_names"]
    content["meta"] = np.asarray(json.dumps(dict(meta, format_version=1)))  # as dnn wrote it before names were stored
    np.savez(tmp_path / "old.npz", **content)
    _, named_err = _accuracy_on(capsys, model, tmp_path / "same.csv", columns, ["a", "b", "c", "target"])
    by_position, err = _accuracy_on(
        capsys, tmp_path / "old.npz", tmp_path / "same.csv", columns, ["a", "b", "c", "target"]
    )
    assert by_position >= 0.9 and named_err == ""
    assert (
        err.count("\n") == 1
        and err.startswith("note: the model ")
        and "matched to the model" in err
        and "by position" in err
    )


def test_train_matches_a_csv_test_files_columns_to_the_training_files(capsys, tmp_path):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(60), 5 + rng.standard_normal(60)
    _write_csv(tmp_path / "train.csv", ["a", "b", "y"], np.column_stack([a, b, a > 0]))
    _write_csv(tmp_path / "test.csv", ["b", "y", "a"], np.column_stack([b, a > 0, a]))
    _write_csv(tmp_path / "test_same.csv", ["a", "b", "y"], np.column_stack([a, b, a > 0]))
    common = [
        "train",
        "--data",
        str(tmp_path / "train.csv"),
        "--label-column",
        "y",
        "--layers",
        "3",
        "--epochs",
        "5",
        "--quiet",
    ]
    assert main([*common, "--test", str(tmp_path / "test.csv")]) == 0
    reordered = capsys.readouterr().out
    assert main([*common, "--test", str(tmp_path / "test_same.csv")]) == 0
    assert capsys.readouterr().out == reordered
