"""`predict` answers every row of the file it is given, in order, each with an id; `evaluate` says which rows it
scored; `--split test` takes the rows held out in training, `--id-column` names the column of ids."""

import numpy as np
import pytest

from dnn import data
from cli_helpers import one_error_line, run_cli
from dnn.cli import TEST_FRACTION, SPLIT_SEED
from dnn.convert import convert

M = 50


def _rows(out):
    """The predictions printed on standard output: (header, [[id, prediction, probability], ...])."""
    lines = out.splitlines()
    return lines[0], [line.split(",") for line in lines[1:]]


@pytest.fixture
def model(tmp_path, capsys):
    """(model, data file): a model trained on t.csv (M rows, labels 3/7/9) with the held-out split."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((M, 2))
    y = np.array([3, 7, 9])[np.digitize(X[:, 0] + X[:, 1], [-0.5, 0.5])]
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n" + "\n".join(f"{a!r},{b!r},{c}" for (a, b), c in zip(X.tolist(), y)) + "\n")
    status, _, err = run_cli(
        capsys,
        "train",
        "--data",
        path,
        "--layers",
        "5",
        "--epochs",
        "20",
        "--lr",
        "0.01",
        "--quiet",
        "--save",
        tmp_path / "m.npz",
    )
    assert status == 0, err
    return tmp_path / "m.npz", path


def test_predict_answers_every_row_in_order_with_its_row_number(model, capsys):
    status, out, err = run_cli(capsys, "predict", model[0], "--data", model[1])
    assert status == 0
    header, rows = _rows(out)
    assert header == "row,prediction,probability"
    assert [row[0] for row in rows] == [str(i) for i in range(M)]
    assert {row[1] for row in rows} <= {"3", "7", "9"}  # the user's label values, not class indices
    assert err == f"wrote {M} predictions, one per row of {model[1]}\n"


def test_split_test_predicts_the_held_out_rows_with_their_row_numbers_in_the_file(model, capsys):
    _, everything, _ = run_cli(capsys, "predict", model[0], "--data", model[1])
    status, out, err = run_cli(capsys, "predict", model[0], "--data", model[1], "--split", "test")
    assert status == 0
    _, held_out = _rows(out)
    _, test = data.split_indices(M, TEST_FRACTION, SPLIT_SEED)
    assert [int(row[0]) for row in held_out] == sorted(test)  # in file order
    assert held_out == [_rows(everything)[1][i] for i in sorted(test)]  # the same answers as for those rows of the file
    assert err == f"wrote {len(test)} predictions, one per held-out test row of {model[1]}\n"


def test_an_id_column_identifies_the_rows_and_is_no_feature(model, capsys, tmp_path):
    lines = model[1].read_text().splitlines()
    with_ids = tmp_path / "ids.csv"  # the id column first, the features in another order, no labels
    with_ids.write_text(
        "customer,b,a\n"
        + "\n".join(f"{1000 + i},{row.split(',')[1]},{row.split(',')[0]}" for i, row in enumerate(lines[1:]))
        + "\n"
    )
    _, plain, _ = run_cli(capsys, "predict", model[0], "--data", model[1])
    status, out, err = run_cli(
        capsys, "predict", model[0], "--data", with_ids, "--id-column", "customer", "--out", tmp_path / "p.csv"
    )
    assert status == 0 and out == ""
    assert err == f"wrote {M} predictions to {tmp_path / 'p.csv'}, one per row of {with_ids}\n"
    header, rows = _rows((tmp_path / "p.csv").read_text())
    assert header == "customer,prediction,probability"
    assert [row[0] for row in rows] == [str(1000 + i) for i in range(M)]
    assert [row[1:] for row in rows] == [row[1:] for row in _rows(plain)[1]]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--id-column", "nope"], "has no column 'nope' to take the ids from; its feature columns are: a, b"),
        (["--data", "iris", "--id-column", "a"], "--id-column applies to CSV files only, and iris is not one"),
        (["--data", "other.csv", "--split", "test"], "--split test takes the rows held out when the model"),
    ],
)
def test_bad_row_options_are_one_line(model, capsys, tmp_path, options, message):
    (tmp_path / "other.csv").write_text(model[1].read_text())
    options = [str(tmp_path / option) if option == "other.csv" else option for option in options]
    data_option = [] if "--data" in options else ["--data", model[1]]
    status, out, err = run_cli(capsys, "predict", model[0], *data_option, *options)
    assert status == 1 and out == "" and one_error_line(err, message), err


def test_evaluate_says_which_rows_it_scored(model, capsys, tmp_path):
    n_test = len(data.split_indices(M, TEST_FRACTION, SPLIT_SEED)[1])
    _, out, _ = run_cli(
        capsys, "evaluate", model[0], "--data", model[1]
    )  # the training file: its held-out rows by default
    assert out.startswith(
        f"scored the {n_test} held-out test rows of {model[1]} (the test split held out in training): {n_test} examples"
    )
    _, out, _ = run_cli(capsys, "evaluate", model[0], "--data", model[1], "--split", "all")
    assert out.startswith(f"scored all {M} rows of {model[1]}: {M} examples")
    (tmp_path / "copy.csv").write_text(model[1].read_text())  # any other file: all its rows
    _, out, _ = run_cli(capsys, "evaluate", model[0], "--data", tmp_path / "copy.csv")
    assert out.startswith(f"scored all {M} rows of {tmp_path / 'copy.csv'}: {M} examples")


def test_from_data_on_disk_the_rows_and_their_ids_are_those_of_the_file(model, capsys, tmp_path):
    convert(str(model[1]), str(tmp_path / "dir"))
    status, _, _ = run_cli(
        capsys,
        "train",
        "--data",
        tmp_path / "dir",
        "--layers",
        "5",
        "--epochs",
        "3",
        "--quiet",
        "--save",
        tmp_path / "d.npz",
    )
    assert status == 0
    _, everything, err = run_cli(capsys, "predict", tmp_path / "d.npz", "--data", tmp_path / "dir")
    assert [row[0] for row in _rows(everything)[1]] == [str(i) for i in range(M)]
    assert err == f"wrote {M} predictions, one per row of {tmp_path / 'dir'}\n"
    _, out, _ = run_cli(capsys, "predict", tmp_path / "d.npz", "--data", tmp_path / "dir", "--split", "test")
    test = sorted(data.split_indices(M, TEST_FRACTION, SPLIT_SEED)[1])
    assert _rows(out)[1] == [_rows(everything)[1][i] for i in test]
    _, out, _ = run_cli(capsys, "evaluate", tmp_path / "d.npz", "--data", tmp_path / "dir")
    assert out.startswith(f"scored the {len(test)} held-out test rows of {tmp_path / 'dir'}")
