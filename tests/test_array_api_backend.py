"""The array_api_strict backend: the core drives any Array API library, and every command runs on it.

The backend-agreement tests (gradients, steps, inputs, checkpoints) run on it through the `backend` fixture
of conftest.py like on every backend; these tests add what is particular to it.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import dnn
from dnn.backends.array_api_backend import ArrayApiBackend
from dnn.optimizers import OPTIMIZERS
from dnn.step import TrainStep

from cli_helpers import run_cli

xp = pytest.importorskip("array_api_strict", reason="array_api_strict is not installed (pip install array-api-strict)")

NAME = "array_api_strict"


def _data(rng, n_x=6, m=40):
    X = rng.standard_normal((n_x, m))
    return X, (X[:1] + 0.3 * X[1:2] > 0).astype(np.float64)  # (n_x, m), (1, m)


def test_without_the_package_the_backend_says_why_and_how_to_install_it(monkeypatch):
    real = __import__("importlib.util").util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None if name == NAME else real(name))
    reason = ArrayApiBackend.unavailable_reason()
    assert "array_api_strict is not installed" in reason and "pip install array-api-strict" in reason


def test_importing_dnn_and_listing_backends_never_imports_it():
    code = "import dnn, sys; dnn.available_backends(); print('array_api_strict' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"


def test_its_arrays_are_the_librarys_and_the_core_only_uses_the_2023_12_standard(rng):
    X, Y = _data(rng)
    with xp.ArrayAPIStrictFlags(api_version="2023.12"):  # a function or method outside 2023.12 raises here
        net = dnn.Network([6, 5, 1], backend=NAME, dtype="float64")
        history = net.fit(X, Y, epochs=3, batch_size=16, optimizer="adam", dropout=0.2, l2=0.1)
        proba = net.predict_proba(X)
    assert isinstance(net.parameters["W1"], type(xp.empty(0))) and net.parameters["W1"].dtype == xp.float64
    assert isinstance(proba, np.ndarray) and proba.shape == (1, 40) and len(history) == 3


def test_it_takes_steps_by_phases_as_the_interface_compiles_none(rng):
    net = dnn.Network([6, 5, 1], backend=NAME)
    assert TrainStep(net, 40).strategy == "phases"
    with pytest.raises(ValueError, match="strategy 'compiled' is not available"):
        TrainStep(net, 40, strategy="compiled")


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_training_takes_numpys_steps_exactly_in_float64(rng, optimizer):
    # the same operations in the same order on the same values: NumPy underneath array_api_strict gives the same bits
    X, Y = _data(rng)
    runs = {}
    for name in ("numpy", NAME):
        net = dnn.Network([6, 5, 3, 1], backend=name, dtype="float64", seed=3)
        history = net.fit(X, Y, epochs=4, batch_size=16, optimizer=optimizer, dropout=0.2, l2=0.05, seed=7)
        runs[name] = (history.cost, net.get_parameters())
    assert runs[NAME][0] == runs["numpy"][0]
    for key, value in runs["numpy"][1].items():
        np.testing.assert_array_equal(runs[NAME][1][key], value)


def test_it_refuses_a_numpy_array_in_a_hand_built_batch(rng):
    net = dnn.Network([6, 5, 1], backend=NAME)
    X, Y = _data(rng)
    with pytest.raises(dnn.ShapeError, match="batch X is a ndarray.*needs a C-contiguous float32 array_api_strict"):
        net.train_step(dnn.Batch(X.astype(np.float32), net.batch(X, Y).Y), 0.1)


def test_every_command_runs_on_it(capsys, tmp_path, monkeypatch):
    model = tmp_path / "model.npz"
    status, out, _ = run_cli(capsys, "train", "--backend", NAME, "--epochs", "2", "--save", model, "--quiet")
    assert status == 0 and "test accuracy" in out
    monkeypatch.setenv("DNN_BACKEND", NAME)  # the other commands take the backend from the environment
    status, out, _ = run_cli(capsys, "evaluate", model, "--data", "breast_cancer")
    assert status == 0 and "accuracy" in out
    status, out, _ = run_cli(capsys, "predict", model, "--data", "breast_cancer", "--out", tmp_path / "p.csv")
    assert status == 0 and (tmp_path / "p.csv").read_text().count("\n") == 570  # a header and 569 rows
    status, out, _ = run_cli(capsys, "backends")
    assert status == 0 and any(line.split()[:2] == [NAME, "yes"] for line in out.splitlines())
    status, out, _ = run_cli(capsys, "warmup", "--backend", NAME)
    assert status == 0 and out == f"{NAME}: nothing to warm up (it compiles no kernels ahead of a run)\n"


def test_the_environment_variable_trains_on_it_in_a_new_process(tmp_path):
    env = dict(os.environ, DNN_BACKEND=NAME)
    command = [sys.executable, "-m", "dnn", "train", "--epochs", "2", "--save", str(tmp_path / "m.npz"), "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert dnn.Network.load(tmp_path / "m.npz", backend=NAME).backend.name == NAME
