"""Model files and checkpoints: a checkpoint `train` wrote answers `evaluate`/`predict` as its model does, and a
file that does not say how its data was prepared is refused instead of giving silently wrong answers."""

import json

import numpy as np
import pytest

import dnn
from dnn import checkpoint
from cli_helpers import one_error_line, run_cli

TRAIN = ["train", "--layers", "6", "--epochs", "12", "--quiet"]


@pytest.fixture
def trained(tmp_path, capsys):
    """(checkpoint, model) written by one standardised run on breast_cancer with the held-out split."""
    pytest.importorskip("sklearn", reason="the built-in data sets need scikit-learn")
    ck, model = tmp_path / "ck.npz", tmp_path / "model.npz"
    assert run_cli(capsys, *TRAIN, "--checkpoint", ck, "--save", model)[0] == 0
    return ck, model


@pytest.mark.parametrize(
    "command", [["evaluate"], ["evaluate", "--split", "all"], ["predict"], ["predict", "--split", "test"]]
)
def test_a_checkpoint_answers_as_the_model_saved_by_the_same_run(trained, capsys, command):
    ck, model = trained
    answers = []
    for path in (ck, model):
        status, out, err = run_cli(capsys, command[0], path, "--data", "breast_cancer", *command[1:])
        assert status == 0, err
        answers.append(out)
    assert answers[0] == answers[1]
    if command == ["evaluate"]:  # the standardised model scores well; unstandardised inputs would not
        assert float(answers[0].split("accuracy ")[1]) >= 0.9


def test_both_kinds_hold_the_preparation_and_say_what_they_are(trained):
    ck, model = (checkpoint.load_checkpoint(path, network_class=dnn.Network) for path in trained)
    assert (ck.kind, model.kind) == ("checkpoint", "model")
    assert ck.extras["cli"] == model.extras["cli"] and ck.extras["cli"]["standardize"] is True
    for name in ("input_mean", "input_std"):
        np.testing.assert_array_equal(ck.extras[name], model.extras[name])
    assert ck.training["epoch"] == 12 and model.training is None


def _rewritten(path, out, remove=(), **meta_changes):
    """The .npz at `path` written to `out` with entries removed and metadata changed (as another writer left it)."""
    with np.load(path) as npz:
        content = {key: npz[key] for key in npz.files if key not in remove}
    meta = json.loads(str(content["meta"]))
    for key, value in meta_changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    content["meta"] = np.asarray(json.dumps(meta))
    np.savez(out, **content)
    return out


def test_a_checkpoint_from_before_checkpoints_held_the_preparation_is_refused(trained, tmp_path, capsys):
    # what `train --checkpoint` wrote until now: training state, no kind, no extras (evaluate scored 0.37 with it)
    old = _rewritten(
        trained[0],
        tmp_path / "old.npz",
        remove=("extra/input_mean", "extra/input_std"),
        kind=None,
        extras={},
        format_version=2,
    )
    for command in ("evaluate", "predict"):
        status, out, err = run_cli(capsys, command, old, "--data", "breast_cancer")
        assert status == 1 and out == ""
        assert one_error_line(err, "old.npz is a checkpoint that does not record how its training data was prepared")


def test_a_standardised_model_without_its_statistics_is_refused(trained, tmp_path, capsys):
    broken = _rewritten(trained[1], tmp_path / "broken.npz", remove=("extra/input_std",))
    status, _, err = run_cli(capsys, "predict", broken, "--data", "breast_cancer")
    assert status == 1 and one_error_line(
        err, "broken.npz was trained on standardised inputs but lacks valid statistics"
    )


def test_a_model_saved_from_python_takes_its_inputs_as_given(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 40))
    net = dnn.Network([3, 4, 1], seed=0)
    net.save(tmp_path / "m.npz")
    (tmp_path / "d.csv").write_text("a,b,c\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in X.T) + "\n")
    status, out, err = run_cli(capsys, "predict", tmp_path / "m.npz", "--data", tmp_path / "d.csv")
    assert status == 0, err
    probabilities = [float(line.split(",")[2]) for line in out.splitlines()[1:]]
    np.testing.assert_allclose(probabilities, net.predict_proba(X)[0], rtol=1e-5)  # printed with 6 digits


def test_resuming_from_a_model_file_is_refused(trained, capsys):
    _, model = trained
    status, _, err = run_cli(capsys, *TRAIN, "--checkpoint", model, "--resume")
    assert status == 1 and one_error_line(err, "cannot resume from", "it is a model file", "not a checkpoint")
