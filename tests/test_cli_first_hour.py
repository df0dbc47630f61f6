"""What a newcomer meets first on the command line: --version, defaults in --help, a quiet closed pipe, numba's
compile made visible (`warmup`, the first run's note, the cache status), and progress lines that keep the cost."""

import os
import re
import subprocess
import sys

import pytest

import dnn
from dnn.backends import available_backends
from dnn.cli import main

numba_only = pytest.mark.skipif(
    not next(s.available for s in available_backends() if s.name == "numba"), reason="numba cannot run here"
)


def run_dnn(*argv, env=None, timeout=300) -> subprocess.CompletedProcess:
    """`python -m dnn ARGV` in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "dnn", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **(env or {})),
    )


def test_version_names_the_package_and_its_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dnn-engine {dnn.__version__}"


@pytest.mark.parametrize(
    "option, default",
    [
        ("--optimizer", "adam"),
        ("--epochs", "100"),
        ("--activation", "relu"),
        ("--batch-size", "64"),
        ("--dtype", "float32"),
        ("--layers", "20,7,5"),
    ],
)
def test_train_help_shows_each_default(capsys, option, default):
    assert main(["train", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    entry = help_text[help_text.index(f" {option} ") :]
    entry = entry[: entry.index(" --", 3)]
    assert f"(default: {default})" in entry


def test_a_flag_shows_no_true_or_false_default(capsys):
    assert main(["train", "--help"]) == 0
    assert "(default: True)" not in capsys.readouterr().out


def test_a_closed_pipe_ends_quietly():
    # `python -m dnn train | head -1`: the reader leaves after one line
    pipeline = f"{sys.executable} -m dnn train --epochs 50 | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True, timeout=300)
    assert done.stdout.startswith("training [30, 20, 7, 5, 1]")
    assert "Broken pipe" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_progress_lines_give_the_cost_to_six_significant_digits(capsys):
    assert main(["train", "--epochs", "10"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 10  # every tenth of the run
    costs = [re.search(r"cost ([0-9.e+-]+),", line).group(1) for line in lines]
    assert all(len(cost.replace(".", "").lstrip("0")) >= 5 for cost in costs), costs


@numba_only
def test_warmup_reports_each_kernel_then_the_cache_is_warm(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    done = run_dnn("warmup", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    progress = [line for line in lines if re.match(r"\[ ?\d+/\d+\] ", line)]
    total = int(re.match(r"\[ ?\d+/(\d+)\]", progress[0]).group(1))
    assert len(progress) == total and all(" compiled in " in line for line in progress)
    assert lines[-1].startswith("ready in ")
    status = run_dnn("backends", env=env).stdout
    assert re.search(r"kernel cache for `python -m dnn train`: warm \((\d+) of the \1 kernels", status), status


@numba_only
def test_a_cold_numba_run_says_it_compiled_and_how_long_then_a_warm_one_says_nothing(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    cold = run_dnn("train", "--backend", "numba", "--epochs", "2", env=env)
    assert cold.returncode == 0, cold.stderr
    assert re.search(r"numba: compiling \d+ kernels for this network", cold.stdout), cold.stdout
    assert re.search(r"numba: compiled in \d+\.\d s", cold.stdout), cold.stdout
    warm = run_dnn("train", "--backend", "numba", "--epochs", "2", env=env)
    assert "numba: compil" not in warm.stdout
    # the run counted only what `train` calls: after it, `backends` finds every one of them cached
    assert " warm (" in run_dnn("backends", env=env).stdout


@numba_only
def test_warmup_checks_its_options_before_compiling(capsys):
    assert main(["warmup", "--layers", "20,x"]) == 1
    assert "--layers takes comma-separated integers" in capsys.readouterr().err
