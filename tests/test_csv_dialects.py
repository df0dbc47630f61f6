"""CSV files as people write them: blank and whitespace-only lines, CR LF and CR-only line endings, a header
naming a column twice; and paths that are not regular files."""

import os

import numpy as np
import pytest

from dnn import DataError, cli, convert, data, sources

ROWS = ["a,b,y", "1,2,0", "3,4,1", "5,6,0", "7,8,1"]


def load(tmp_path, text: str, **options):
    (tmp_path / "d.csv").write_bytes(text.encode())
    return data.load(str(tmp_path / "d.csv"), **options)


def test_blank_and_whitespace_only_lines_are_neither_rows_nor_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CSV_BLOCK_ROWS", 2)  # blocks of nothing but blank lines too
    text = "a,b,y\n\n   \n1,2,0\n\t\n3,4,1\n \r\n5,6,0\n7,8,1\n  \n\n"
    ds = load(tmp_path, text)
    np.testing.assert_array_equal(ds.X, [[1, 3, 5, 7], [2, 4, 6, 8]])
    np.testing.assert_array_equal(ds.Y, [[0, 1, 0, 1]])
    with pytest.raises(
        DataError, match=r"line 9, column 'a': 'x' is not a number"
    ):  # lines counted with the blank ones
        load(tmp_path, text.replace("7,8,1", "x,8,1"))


@pytest.mark.parametrize("ending", ["\r", "\r\n"])
def test_cr_and_crlf_line_endings_read_as_lf_does(ending, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CSV_BLOCK_ROWS", 3)
    rows = ["a,b,y"] + [f"{i},{i * 0.5},{i % 2}" for i in range(40)]
    expected = load(tmp_path, "\n".join(rows) + "\n")
    ds = load(tmp_path, ending.join(rows) + ending)
    assert ds.feature_names == ("a", "b")
    np.testing.assert_array_equal(ds.X, expected.X)
    np.testing.assert_array_equal(ds.Y, expected.Y)
    with pytest.raises(DataError, match=r"line 4, column 'b': 'z' is not a number"):
        load(tmp_path, ending.join(rows[:3] + ["2,z,0"]) + ending)


def test_a_header_naming_a_column_twice_is_refused_by_every_reader(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,a,y\n1,2,3,0\n4,5,6,1\n")
    message = r"d.csv: the header names more than one column 'a'; column names must be unique"
    for read in (
        lambda p: data.load(p),
        lambda p: data.load(p, labels=False),  # training, and predicting
        lambda p: convert.convert(p, str(tmp_path / "out")),
    ):
        with pytest.raises(DataError, match=message):
            read(str(tmp_path / "d.csv"))


def test_train_and_evaluate_report_a_duplicated_column_the_same_way(tmp_path, capsys):
    good = "a,b,y\n" + "".join(f"{i},{-i},{i % 2}\n" for i in range(30))
    (tmp_path / "good.csv").write_text(good)
    (tmp_path / "dup.csv").write_text(good.replace("a,b,y", "a,a,y"))
    model = str(tmp_path / "m.npz")
    assert cli.main(["train", "--data", str(tmp_path / "good.csv"), "--epochs", "1", "--quiet", "--save", model]) == 0
    capsys.readouterr()
    errors = []
    for command in (["train", "--data"], ["evaluate", model, "--data"]):
        assert cli.main([*command, str(tmp_path / "dup.csv")]) == 1
        errors.append(capsys.readouterr().err)
    assert errors[0] == errors[1] and "names more than one column 'a'" in errors[0]


def test_paths_that_are_not_regular_files_are_named_as_such(tmp_path):
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(DataError, match=r"pipe.csv is not a regular file \(it is a FIFO\)"):
        data.load(str(tmp_path / "pipe.csv"))  # checked before opening: reading would wait for a writer
    with pytest.raises(DataError, match=r"/dev/zero is not a regular file \(it is a device or socket\)"):
        data.load("/dev/zero")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match=r"dir.csv is not a regular file \(it is a directory\)"):
        data.load(str(tmp_path / "dir.csv"))
    with pytest.raises(DataError, match="nowhere.csv does not exist"):
        data.load(str(tmp_path / "nowhere.csv"))
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "X.npy")
    np.save(tmp_path / "d" / "Y.npy", np.zeros(3))
    for path in (tmp_path / "d", tmp_path / "d" / "X.npy"):
        with pytest.raises(DataError, match=r"X.npy is not a regular file \(it is a FIFO\)"):
            sources.open_source(path)
