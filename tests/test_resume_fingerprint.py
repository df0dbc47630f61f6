"""Resuming: only from a checkpoint that exists, and only the run it recorded -- the same data (a fingerprint of it),
prepared the same way, with the same settings; anything else is refused naming what differs."""

import numpy as np
import pytest

import dnn
from dnn import training
from cli_helpers import one_error_line, run_cli
from dnn.convert import convert
from dnn.sources import open_source
from dnn.training import data_fingerprint, fit, source_fingerprint


def _write_csv(path, X, y):
    path.write_text(
        "a,b,c,label\n"
        + "\n".join(",".join([*(repr(float(v)) for v in row), str(int(c))]) for row, c in zip(X, y))
        + "\n"
    )
    return path


@pytest.fixture
def table(tmp_path):
    """d.csv (60 rows, 3 features, 2 classes) and other.csv: the same shape, one value changed."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 3))
    y = (X[:, 0] > 0).astype(int)
    _write_csv(tmp_path / "d.csv", X, y)
    X[17, 2] += 1.0
    _write_csv(tmp_path / "other.csv", X, y)
    return tmp_path


def _train(table, *options):
    return [
        "train",
        "--data",
        table / "d.csv",
        "--layers",
        "4",
        "--quiet",
        "--checkpoint",
        table / "ck.npz",
        "--checkpoint-every",
        "2",
        *options,
    ]


def test_resume_from_a_checkpoint_that_does_not_exist_names_it(table, capsys):
    status, out, err = run_cli(capsys, *_train(table, "--epochs", "4", "--resume"))
    assert status == 1 and out == ""
    assert one_error_line(err, f"--resume: the checkpoint {table / 'ck.npz'} does not exist")
    assert not (table / "ck.npz").exists()


def test_resume_says_the_epoch_it_resumed_from(table, capsys):
    assert run_cli(capsys, *_train(table, "--epochs", "4"))[0] == 0
    status, out, err = run_cli(
        capsys, *[arg for arg in _train(table, "--epochs", "10", "--resume") if arg != "--quiet"]
    )
    assert status == 0 and f"resumed from {table / 'ck.npz'} at epoch 4 of 10\n" in out, err
    status, out, _ = run_cli(capsys, *_train(table, "--epochs", "12", "--resume"))
    assert status == 0 and "resumed from" not in out  # --quiet: the accuracies only


@pytest.mark.parametrize(
    "change, difference",
    [
        (["--data", "other.csv"], "data hash="),  # another file of the same shape
        (["--no-standardize"], "preprocessing.standardize=True there, False here"),
        (["--test", "other.csv"], "preprocessing.split={'seed': 0, 'test_fraction': 0.2} there, None here"),
        (["--lr", "0.01"], "lr=0.001 there, 0.01 here"),
        (["--optimizer", "sgd"], "optimizer='adam' there, 'sgd' here"),
    ],
)
def test_resuming_with_other_data_preparation_or_settings_is_refused_naming_the_difference(
    table, capsys, change, difference
):
    assert run_cli(capsys, *_train(table, "--epochs", "2"))[0] == 0
    before = (table / "ck.npz").read_bytes()
    argv = _train(table, "--epochs", "4", "--resume", *change)
    if change[0] == "--data":
        argv[2] = table / change[1]
        argv = argv[:-2]
    elif change[0] == "--test":
        argv[-1] = table / change[1]
    status, _, err = run_cli(capsys, *argv)
    assert status == 1 and one_error_line(err, "cannot resume from", difference), err
    assert (table / "ck.npz").read_bytes() == before


def test_the_same_file_moved_elsewhere_resumes(table, capsys):
    assert run_cli(capsys, *_train(table, "--epochs", "2"))[0] == 0
    (table / "moved").mkdir()
    (table / "moved" / "d.csv").write_bytes((table / "d.csv").read_bytes())
    argv = _train(table, "--epochs", "4", "--resume")
    argv[2] = table / "moved" / "d.csv"
    status, _, err = run_cli(capsys, *argv)
    assert status == 0, err


# ---------------------------------------------------------------------------------------------- the library
def _blobs(m=40, seed=0):
    rng = np.random.default_rng(seed)
    Y = (rng.random((1, m)) < 0.5).astype(float)
    return rng.standard_normal((5, m)) + 1.5 * (2 * Y - 1), Y


RUN = dict(batch_size=16, optimizer="adam", lr=0.01, seed=3)


def test_fit_refuses_to_resume_on_other_data_and_accepts_the_same_values_in_another_layout(tmp_path):
    X, Y = _blobs()
    path = tmp_path / "run.npz"
    fit(dnn.Network([5, 4, 1], seed=1), X, Y, epochs=2, checkpoint=path, **RUN)
    other = X.copy()
    other[2, 7] += 1e-3
    with pytest.raises(
        ValueError, match=r"other data or prepared it otherwise \(data hash='[0-9a-f]{32}' there, '[0-9a-f]{32}' here\)"
    ):
        fit(dnn.Network([5, 4, 1], seed=1), other, Y, epochs=4, checkpoint=path, resume=True, **RUN)
    history = fit(
        dnn.Network([5, 4, 1], seed=1), np.asfortranarray(X), Y, epochs=4, checkpoint=path, resume=True, **RUN
    )
    assert history.resumed_from == 2


def test_a_caller_fingerprint_is_recorded_and_compared(tmp_path):
    X, Y = _blobs()
    path = tmp_path / "run.npz"
    fit(dnn.Network([5, 4, 1], seed=1), X, Y, epochs=2, checkpoint=path, fingerprint={"scaling": "minmax"}, **RUN)
    with pytest.raises(ValueError, match="scaling='minmax' there, 'zscore' here"):
        fit(
            dnn.Network([5, 4, 1], seed=1),
            X,
            Y,
            epochs=4,
            checkpoint=path,
            resume=True,
            fingerprint={"scaling": "zscore"},
            **RUN,
        )
    with pytest.raises(ValueError, match="fingerprint must be JSON values"):
        fit(dnn.Network([5, 4, 1], seed=1), X, Y, epochs=1, checkpoint=path, fingerprint={"scaling": object()}, **RUN)


def test_a_checkpoint_from_before_fingerprints_still_resumes(tmp_path):
    X, Y = _blobs()
    path = tmp_path / "run.npz"
    fit(dnn.Network([5, 4, 1], seed=1), X, Y, epochs=2, checkpoint=path, **RUN)
    saved = dnn.checkpoint.load_checkpoint(path, network_class=dnn.Network)
    state = {key: value for key, value in saved.training.items() if key != "fingerprint"}
    dnn.checkpoint.save(saved.network, path, optimizer=saved.optimizer, training=state)
    assert fit(dnn.Network([5, 4, 1], seed=1), X, Y, epochs=3, checkpoint=path, resume=True, **RUN).resumed_from == 2


def test_the_data_fingerprint_depends_on_values_shapes_and_dtypes_not_layout():
    X = np.arange(12.0).reshape(3, 4)
    assert (
        data_fingerprint(X, None)
        == data_fingerprint(np.asfortranarray(X), None)
        == data_fingerprint(X.T.copy().T, None)
    )
    assert data_fingerprint(X, None) != data_fingerprint(X.reshape(4, 3), None)
    assert data_fingerprint(X, None) != data_fingerprint(X.astype(np.float32), None)
    assert data_fingerprint(X, None) != data_fingerprint(X, X[0])
    changed = X.copy()
    changed[2, 3] = np.nextafter(changed[2, 3], np.inf)  # one bit of one value
    assert data_fingerprint(X, None) != data_fingerprint(changed, None)


def test_a_source_fingerprint_reads_every_row_of_a_small_set_and_a_spread_sample_of_a_large_one(table, monkeypatch):
    convert(str(table / "d.csv"), str(table / "dir"))
    convert(str(table / "other.csv"), str(table / "other"))
    convert(str(table / "d.csv"), str(table / "d.h5"))
    with open_source(table / "dir") as d, open_source(table / "other") as other, open_source(table / "d.h5") as h5:
        assert source_fingerprint(d) == source_fingerprint(h5)  # the same rows, whatever the format
        assert source_fingerprint(d) != source_fingerprint(other)  # row 17 differs
        monkeypatch.setattr(training, "FINGERPRINT_ALL_ROWS_BYTES", 0)
        monkeypatch.setattr(training, "FINGERPRINT_SAMPLE_ROWS", 5)  # rows 0, 14/15, 29/30, 44, 59: not row 17
        read = []
        original = type(d).read_rows
        monkeypatch.setattr(
            type(d), "read_rows", lambda self, index, *out: read.append(len(index)) or original(self, index, *out)
        )
        assert source_fingerprint(d) == source_fingerprint(other)  # the price of sampling: row 17 is not read
        assert read == [5, 5]
