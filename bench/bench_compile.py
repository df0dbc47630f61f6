"""First-call cost in a fresh process, reported apart from the steady-state step benchmarks.

Each round starts a new Python process that imports dnn, creates the backend and runs two training steps of
case D (the first compiles, or loads from the cache, what it needs), and reports the seconds of each part (dnn.perf.first_call_costs); the round's
wall time is the benchmark, the parts go to extra_info. "cold" gives every process an empty compile cache
(a new NUMBA_CACHE_DIR; full runs only), "warm" numba's usual on-disk cache, which the test run has filled.
A first, untimed process checks the gradients against NumPy float64 (and fills the warm cache if it was
empty) before any round is timed.

`test_cold_first_training_run` times what a new user meets first: `python -m dnn train` on a small data set
in a fresh process whose NUMBA_CACHE_DIR is an empty directory, every backend side by side (numpy's time
is the yardstick: numba's should stay within 3x of it), with Adam on mini-batches (the CLI's default) and
with plain SGD on the full batch (numba's compiled whole step, compiled in a helper process meanwhile).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from dnn.backends import get_backend
from dnn.tolerances import gradient_rtol

CASE = "D"  # tiny: the step itself costs well under a millisecond, so the time is compilation and set-up
ROUNDS = 3
_SCRIPT = """
import json, sys, time
start = time.perf_counter()
import dnn.perf
import_s = time.perf_counter() - start
costs = dnn.perf.first_call_costs(*sys.argv[1:4])
print(json.dumps(dict(costs, import_s=import_s)))
"""


def first_call_in_fresh_process(backend_name, dtype, cache_dir=None) -> dict:
    """dnn.perf.first_call_costs in a new Python process, with NUMBA_CACHE_DIR=cache_dir when given."""
    env = dict(os.environ, **({"NUMBA_CACHE_DIR": cache_dir} if cache_dir else {}))
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, backend_name, CASE, dtype], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"the fresh process failed:\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="first call in a fresh process (compile cost)")
def test_first_call_cost(benchmark, record_environment, bench_backend, compile_config, tmp_path):
    cache, dtype = compile_config
    checked = first_call_in_fresh_process(bench_backend, dtype)
    assert checked["max_gradient_difference"] <= gradient_rtol(dtype), (
        f"{bench_backend} {dtype} gradients differ from NumPy float64 by {checked['max_gradient_difference']:.3g} "
        "in a fresh process: a wrong answer is not timed"
    )
    parts = []

    def fresh_cache_dir():
        return (bench_backend, dtype, tempfile.mkdtemp(dir=tmp_path) if cache == "cold" else None), {}

    def run(*args):
        parts.append(first_call_in_fresh_process(*args))

    benchmark.pedantic(run, setup=fresh_cache_dir, rounds=ROUNDS)
    medians = {key: round(statistics.median(p[key] for p in parts), 4) for key in parts[0]}  # seconds per part
    medians["max_gradient_difference"] = max(p["max_gradient_difference"] for p in parts)
    record_environment(get_backend(bench_backend), dtype, case=CASE, cache=cache, **medians)


TRAIN_ARGS = ["--layers", "20,7,5", "--epochs", "10", "--quiet"]  # the CLI's default network
#: the optimizer settings timed: the CLI's default, and the one numba takes its compiled whole step for
OPTIMIZERS = {"adam": ["--optimizer", "adam"], "sgd-full-batch": ["--optimizer", "sgd", "--batch-size", "0"]}


def train_in_fresh_process(backend_name, data, cache_dir, optimizer="adam") -> str:
    """`python -m dnn train` on `data` in a new process with an empty NUMBA_CACHE_DIR; returns its output."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    command = ["train", "--data", data, "--backend", backend_name, *TRAIN_ARGS, *OPTIMIZERS[optimizer]]
    done = subprocess.run([sys.executable, "-m", "dnn", *command], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the training run failed:\n{done.stderr}"
    return done.stdout


@pytest.mark.benchmark(group="first training run, empty compile cache")
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_cold_first_training_run(benchmark, record_environment, bench_backend, optimizer, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 500))  # breast-cancer sized: (n_x, m)
    data = str(tmp_path / "data.npz")
    np.savez(data, X=X, Y=(X[0] + X[1] > 0).astype(np.int64))
    output = train_in_fresh_process(bench_backend, data, tempfile.mkdtemp(dir=tmp_path), optimizer)
    assert "test accuracy" in output, f"no accuracy in the training output:\n{output}"

    def fresh_cache_dir():
        return (bench_backend, data, tempfile.mkdtemp(dir=tmp_path), optimizer), {}

    benchmark.pedantic(train_in_fresh_process, setup=fresh_cache_dir, rounds=ROUNDS)
    command = " ".join(["python -m dnn train", *TRAIN_ARGS, *OPTIMIZERS[optimizer]])
    record_environment(get_backend(bench_backend), "float32", command=command, examples=X.shape[1], cache="cold")
