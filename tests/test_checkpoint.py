"""Model files: one .npz, written atomically, read without pickle, and every bad file rejected clearly."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import dnn
from dnn import checkpoint
from dnn.optimizers import Adam


def _trained(backend, dtype="float32"):
    """A softmax network after a few Adam steps, with its optimizer."""
    rng = np.random.default_rng(5)
    X, labels = rng.standard_normal((4, 30)), rng.integers(0, 3, 30)
    net = dnn.Network([4, 5, 3], activations="tanh", dtype=dtype, backend=backend, seed=4)
    adam = Adam(beta1=0.8)
    net.fit(X, labels, epochs=3, batch_size=10, optimizer=adam, lr=0.01)
    return net, adam, X


def test_round_trip_keeps_architecture_parameters_and_predictions(backend, tmp_path):
    net, _, X = _trained(backend)
    net.save(tmp_path / "model.npz")
    loaded = dnn.Network.load(tmp_path / "model.npz", backend=backend)
    assert (loaded.layer_dims, loaded.activations, loaded.output, loaded.dtype) == (
        net.layer_dims,
        net.activations,
        net.output,
        net.dtype,
    )
    for key, value in net.get_parameters().items():
        np.testing.assert_array_equal(loaded.get_parameters()[key], value)
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))


def test_optimizer_state_training_state_and_extras_round_trip(backend, tmp_path):
    net, adam, _ = _trained(backend, "float64")
    mean = np.arange(4.0).reshape(4, 1)
    checkpoint.save(
        net, tmp_path / "m.npz", optimizer=adam, training={"epoch": 3}, extras={"input_mean": mean, "note": "hi"}
    )
    saved = checkpoint.load_checkpoint(tmp_path / "m.npz", backend=backend, network_class=dnn.Network)
    assert saved.training == {"epoch": 3}
    assert saved.extras["note"] == "hi"
    np.testing.assert_array_equal(saved.extras["input_mean"], mean)
    assert saved.optimizer.config() == adam.config() and saved.optimizer.step_count == adam.step_count == 9
    expected, got = adam.state_dict(net), saved.optimizer.state_dict(saved.network)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_the_file_holds_no_pickled_objects(tmp_path):
    net, adam, _ = _trained("numpy")
    checkpoint.save(net, tmp_path / "m.npz", optimizer=adam)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert all(npz[key].dtype != object for key in npz.files)
        assert json.loads(str(npz["meta"]))["format_version"] == checkpoint.FORMAT_VERSION


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(dnn.ModelFileError, match="does not exist"):
        dnn.Network.load(tmp_path / "absent.npz")


@pytest.mark.parametrize("damage", ["truncate", "flip bytes", "not a zip"])
def test_a_damaged_file_raises_model_file_error(tmp_path, damage):
    path = tmp_path / "model.npz"
    _trained("numpy")[0].save(path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip bytes":
        middle = len(raw) // 2
        raw[middle : middle + 16] = bytes(b ^ 0xFF for b in raw[middle : middle + 16])
    else:
        raw = b"this is not a model"
    path.write_bytes(bytes(raw))
    with pytest.raises(dnn.ModelFileError, match="model.npz"):
        dnn.Network.load(path)


def _rewrite(path, meta=None, arrays=None, remove=()):
    """Rewrite the .npz at `path` with meta fields changed, arrays replaced and entries removed."""
    with np.load(path) as npz:
        content = {key: npz[key] for key in npz.files}
    content["meta"] = np.asarray(json.dumps(dict(json.loads(str(content["meta"])), **(meta or {}))))
    content.update(arrays or {})
    np.savez(path, **{key: value for key, value in content.items() if key not in remove})


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(meta={"format_version": 99}), "format version 99; this version of dnn reads versions 1, 2, 3"),
        (dict(meta={"kind": "weights"}), "its kind 'weights' is none of model, checkpoint"),
        (dict(meta={"kind": "checkpoint"}), "says it is a checkpoint but lacks the training state"),
        (dict(meta={"format": "other"}), "not a dnn model file"),
        (dict(remove=["meta"]), "no 'meta' entry"),
        (dict(arrays={"param/W1": np.zeros((2, 2), np.float32)}), r"W1 has shape \(2, 2\)"),
        (dict(remove=["param/b2"]), "no parameter b2"),
        (dict(arrays={"param/W2": np.zeros((3, 5), np.float64)}), "W2 has dtype float64"),
        (dict(arrays={"param/b1": np.full((5, 1), np.nan, np.float32)}), "b1 holds non-finite values"),
        (dict(meta={"layer_dims": [4, 0, 3]}), "architecture it describes is invalid"),
        (dict(arrays={"meta": np.asarray("{not json")}), "metadata is corrupted"),
        (
            dict(meta={"layer_dims": [4, 10**9, 3]}),
            r"no parameter|W1 has shape",
        ),  # refused before allocating 10^9 units
        (dict(meta={"feature_names": ["a", "b"]}), "feature names are not 4 strings"),
        (dict(meta={"training": [1, 2]}), "training state or extras are not what dnn writes"),
        (dict(arrays={"optimizer/m/W1": np.full((5, 4), np.inf, np.float32)}), "optimizer state m/W1 is not finite"),
    ],
)
def test_a_mismatched_file_is_rejected_with_the_reason(tmp_path, changes, message):
    path = tmp_path / "model.npz"
    net, adam, _ = _trained("numpy")
    checkpoint.save(net, path, optimizer=adam)
    _rewrite(path, **changes)
    with pytest.raises(dnn.ModelFileError, match=message):
        dnn.Network.load(path)


def test_a_file_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array([{"format": "dnn-network"}], dtype=object))
    with pytest.raises(dnn.ModelFileError, match="evil.npz"):
        dnn.Network.load(path)


def test_a_crash_mid_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old, _, _ = _trained("numpy")
    old.save(path)
    before = path.read_bytes()

    def write_half_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", write_half_then_fail)
    other = dnn.Network([4, 5, 3], activations="tanh", seed=9)
    with pytest.raises(dnn.ModelFileError, match="No space left on device.*previous file is unchanged"):
        other.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]  # the temporary file is gone too


def test_saving_leaves_only_the_target_file(tmp_path):
    net, _, _ = _trained("numpy")
    net.save(tmp_path / "a.npz")
    net.save(tmp_path / "a.npz")  # overwriting goes through the same rename
    assert os.listdir(tmp_path) == ["a.npz"]


def test_an_unwritable_directory_is_reported(tmp_path):
    with pytest.raises(dnn.ModelFileError, match="cannot write model file"):
        _trained("numpy")[0].save(tmp_path / "no" / "such" / "dir" / "m.npz")


def test_feature_names_round_trip_and_must_match_the_inputs(tmp_path):
    net, _, _ = _trained("numpy")
    checkpoint.save(net, tmp_path / "m.npz", feature_names=("a", "b", "c", "d"))
    assert checkpoint.load_checkpoint(tmp_path / "m.npz", network_class=dnn.Network).feature_names == (
        "a",
        "b",
        "c",
        "d",
    )
    net.save(tmp_path / "plain.npz")
    assert checkpoint.load_checkpoint(tmp_path / "plain.npz", network_class=dnn.Network).feature_names is None
    with pytest.raises(ValueError, match="feature_names has 2 names, the network has 4 inputs"):
        checkpoint.save(net, tmp_path / "m.npz", feature_names=("a", "b"))


def test_a_version_1_file_without_feature_names_still_loads(tmp_path):
    path = tmp_path / "old.npz"
    net, _, X = _trained("numpy")
    net.save(path)
    with np.load(path) as npz:
        content = {key: npz[key] for key in npz.files}
    meta = json.loads(str(content["meta"]))
    del meta["feature_names"]
    content["meta"] = np.asarray(json.dumps(dict(meta, format_version=1)))
    np.savez(path, **content)
    saved = checkpoint.load_checkpoint(path, network_class=dnn.Network)
    assert saved.feature_names is None
    np.testing.assert_array_equal(saved.network.predict_proba(X), net.predict_proba(X))


def _poisoned(net, adam, where):
    """Put a NaN into a parameter or into the optimizer's first moment of W1."""
    if where == "parameter":
        params = net.get_parameters()
        params["b2"][1, 0] = np.nan  # set_parameters refuses NaN, so the live array is written directly
        net.backend.copyto(net.parameters["b2"], net.backend.asarray(params["b2"]))
    else:
        adam.state["m"][0] = np.inf  # the flat vector starts with W1


@pytest.mark.parametrize("where", ["parameter", "optimizer state"])
def test_saving_non_finite_values_is_refused_and_the_old_file_kept(backend, tmp_path, where):
    path = tmp_path / "run.npz"
    net, adam, _ = _trained(backend)
    checkpoint.save(net, path, optimizer=adam, training={"epoch": 3})
    before = path.read_bytes()
    _poisoned(net, adam, where)
    expected = r"param/b2 holds 1 non-finite" if where == "parameter" else r"optimizer/m/W1 holds 1 non-finite"
    with pytest.raises(dnn.NonFiniteError, match=rf"refusing to save .*run.npz: {expected}.*previous file"):
        checkpoint.save(net, path, optimizer=adam, training={"epoch": 4})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.npz"]


def test_a_csv_given_as_the_model_is_named_without_talk_of_pickles(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,label\n1,2,0\n")
    with pytest.raises(dnn.ModelFileError, match="data.csv is not a dnn model file") as error:
        dnn.Network.load(path)
    assert "pickle" not in str(error.value)


def test_a_directory_given_as_the_model_is_named(tmp_path):
    with pytest.raises(dnn.ModelFileError, match="is a directory"):
        dnn.Network.load(tmp_path)


def test_a_failed_save_names_the_users_path_not_a_temporary_file(tmp_path):
    target = tmp_path / "missing" / "m.npz"
    with pytest.raises(dnn.ModelFileError) as error:
        _trained("numpy")[0].save(target)
    assert (
        str(error.value)
        == f"cannot write model file {target}: No such file or directory; the previous file is unchanged"
    )


# ---------------------------------------------------------------------------------------------- kinds
def test_a_file_says_whether_it_is_a_model_or_a_checkpoint(tmp_path):
    net, adam, _ = _trained("numpy")
    checkpoint.save(net, tmp_path / "model.npz", optimizer=adam)
    checkpoint.save(net, tmp_path / "run.npz", optimizer=adam, training={"epoch": 3})
    for name, kind in (("model.npz", "model"), ("run.npz", "checkpoint")):
        with np.load(tmp_path / name) as npz:
            assert json.loads(str(npz["meta"]))["kind"] == kind
        assert checkpoint.load_checkpoint(tmp_path / name, network_class=dnn.Network).kind == kind


def test_a_model_file_claiming_training_state_is_rejected(tmp_path):
    path = tmp_path / "run.npz"
    checkpoint.save(_trained("numpy")[0], path, training={"epoch": 3})
    _rewrite(path, meta={"kind": "model"})
    with pytest.raises(dnn.ModelFileError, match="says it is a model but holds the training state of a checkpoint"):
        checkpoint.load_checkpoint(path, network_class=dnn.Network)


@pytest.mark.parametrize("training, kind", [(None, "model"), ({"epoch": 3}, "checkpoint")])
def test_a_file_from_before_kinds_loads_as_the_kind_its_training_state_tells(tmp_path, training, kind):
    path = tmp_path / "old.npz"
    net, _, X = _trained("numpy")
    checkpoint.save(net, path, training=training)
    with np.load(path) as npz:
        content = {key: npz[key] for key in npz.files}
    meta = json.loads(str(content["meta"]))
    del meta["kind"]
    content["meta"] = np.asarray(json.dumps(dict(meta, format_version=2)))
    np.savez(path, **content)
    saved = checkpoint.load_checkpoint(path, network_class=dnn.Network)
    assert saved.kind == kind and saved.training == training
    np.testing.assert_array_equal(saved.network.predict_proba(X), net.predict_proba(X))


# ---------------------------------------------------------------------------------------------- interrupted writes
@pytest.mark.parametrize("step", ["np.savez", "os.fsync", "os.chmod", "os.replace"])
def test_an_interrupt_between_writing_and_renaming_leaves_no_temporary(tmp_path, monkeypatch, step):
    # Ctrl-C (KeyboardInterrupt) at each step of a checkpoint write: the previous checkpoint stays whole and
    # nothing else is left in its directory
    path = tmp_path / "run.npz"
    net, adam, _ = _trained("numpy")
    checkpoint.save(net, path, optimizer=adam, training={"epoch": 3})
    before = path.read_bytes()
    module, name = step.split(".")
    target = checkpoint.np if module == "np" else os
    original = getattr(target, name)

    def interrupted(*args, **kwargs):
        original(*args, **kwargs)  # the step completes, then the signal arrives
        raise KeyboardInterrupt

    monkeypatch.setattr(target, name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(net, path, optimizer=adam, training={"epoch": 4})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["run.npz"]
    saved = checkpoint.load_checkpoint(path, network_class=dnn.Network)
    assert saved.training["epoch"] == (4 if step == "os.replace" else 3)  # renamed: the new file, whole
    if step != "os.replace":
        assert path.read_bytes() == before


def test_sigint_during_checkpointed_training_leaves_only_whole_files(tmp_path):
    # a real SIGINT at several moments of a run that writes a checkpoint every epoch
    script = (
        "import sys, numpy as np, dnn\n"
        "rng = np.random.default_rng(0)\n"
        "X, y = rng.standard_normal((50, 400)), rng.integers(0, 2, 400)\n"
        "net = dnn.Network([50, 64, 1], seed=1)\n"
        "print('ready', flush=True)\n"
        "net.fit(X, y[None, :].astype(float), epochs=100000, batch_size=400, checkpoint=sys.argv[1], checkpoint_every=1)\n"
    )
    for attempt in range(6):
        path = tmp_path / f"run{attempt}.npz"
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert process.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.013 * attempt)  # a different moment of the write cycle each time
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert "KeyboardInterrupt" in err
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"run{k}.npz" for k in range(attempt + 1)], err
        assert checkpoint.load_checkpoint(path, network_class=dnn.Network).kind == "checkpoint"
