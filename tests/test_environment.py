"""The environment: NUMBA_DISABLE_JIT makes the numba backend unavailable, said in one line, never a traceback.

Numba reads NUMBA_DISABLE_JIT when it is imported, so each case runs in a fresh process.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parents[1]
REASON = "NUMBA_DISABLE_JIT is set"


def _run(*argv, **env):
    """A fresh `python ARGV` in the checkout with NUMBA_DISABLE_JIT=1 and `env` added."""
    return subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, NUMBA_DISABLE_JIT="1", **env),
    )


def test_backends_lists_numba_as_unavailable_with_the_reason():
    done = _run("-m", "dnn", "backends")
    assert done.returncode == 0 and done.stderr == ""
    numba_line = next(line for line in done.stdout.splitlines() if line.startswith("numba"))
    assert numba_line.split()[1] == "no" and REASON in numba_line


def test_asking_for_numba_raises_backend_unavailable_saying_why():
    code = (
        "import dnn\n"
        "try:\n"
        "    dnn.Network([2, 1], backend='numba')\n"
        "except dnn.BackendUnavailableError as exc:\n"
        "    print(exc)\n"
    )
    done = _run("-c", code)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("backend 'numba' cannot run here: " + REASON)


@pytest.mark.parametrize("argv, env", [(["--backend", "numba"], {}), ([], {"DNN_BACKEND": "numba"})])
def test_training_on_numba_fails_in_one_line(argv, env):
    done = _run("-m", "dnn", "train", "--epochs", "1", *argv, **env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and REASON in done.stderr


def test_numba_s_own_setting_decides_in_process(monkeypatch):
    import numba

    from dnn.backends.numba_backend import NumbaBackend

    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    assert REASON in NumbaBackend.unavailable_reason()
    monkeypatch.setattr(numba.config, "DISABLE_JIT", False)
    assert NumbaBackend.unavailable_reason() is None
