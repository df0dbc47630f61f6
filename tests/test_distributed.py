"""Data-parallel training over MPI (dnn.distributed): N ranks take the step one process takes.

The multi-process checks launch `mpiexec -n 2` (the one beside this Python, from the mpich wheel, else the
one on PATH) as subprocesses with a timeout, in their own process group, so a hang fails the test instead of
stalling CI; they skip with the reason when mpi4py or mpiexec is absent. One launch of
tests/distributed_worker.py runs every library check; the command line gets one launch per outcome.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import distributed_worker as worker
from dnn.distributed import GlobalColumns, RanksDisagreeError, launch_world, launched_ranks, share
from dnn.errors import DnnError, install_hint
from dnn.tolerances import gradient_rtol, relative_difference

HERE = os.path.dirname(os.path.abspath(__file__))
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
#: Seconds a launch may take: the library run compiles numba's kernels on both ranks when the cache is cold.
LIBRARY_TIMEOUT, CLI_TIMEOUT = 420, 120

needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason=f"needs mpi4py and mpiexec: {install_hint('mpi')}",
)


def mpiexec(args, timeout, cwd=None) -> subprocess.CompletedProcess:
    """Run `mpiexec -n 2 python ARGS`; a run past `timeout` seconds is killed with its ranks and fails the test."""
    command = [MPIEXEC, "-n", "2", sys.executable, *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command)} did not finish in {timeout} s (a rank waits forever?)\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


# ---------------------------------------------------------------------------------------------- without MPI
def test_importing_dnn_never_imports_mpi4py():
    code = "import sys, dnn, dnn.distributed, dnn.training, dnn.cli; print('mpi4py' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "environ, ranks",
    [
        ({}, 1),
        ({"PMI_SIZE": "4", "PMI_RANK": "0"}, 4),  # MPICH's Hydra, Slurm's PMI-2
        ({"OMPI_COMM_WORLD_SIZE": "3"}, 3),  # Open MPI
        ({"PMIX_RANK": "0", "SLURM_NTASKS": "8"}, 8),  # srun --mpi=pmix
        ({"SLURM_NTASKS": "8"}, 1),  # inside an allocation, but not launched as an MPI task
    ],
)
def test_a_launch_is_recognised_from_the_launchers_variables(environ, ranks):
    assert launched_ranks(environ) == ranks


def test_without_a_launcher_there_is_no_communicator():
    assert launch_world({}) is None


def test_a_launch_without_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `from mpi4py import MPI` raise ImportError
    with pytest.raises(DnnError, match=re.escape(f"2 processes, but mpi4py is not installed: {install_hint('mpi')}")):
        launch_world({"PMI_SIZE": "2"})


@pytest.mark.parametrize("m_b", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("ranks", [1, 2, 3, 5])
def test_the_shares_cover_each_example_of_a_batch_once_balanced(m_b, ranks):
    bounds = [share(m_b, r, ranks) for r in range(ranks)]
    assert bounds[0][0] == 0 and bounds[-1][1] == m_b
    assert all(bounds[r][1] == bounds[r + 1][0] for r in range(ranks - 1))  # contiguous, in rank order
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1
    assert sizes.count(0) == max(0, ranks - m_b)  # a batch smaller than the job leaves ranks without examples


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_each_rank_draws_its_columns_of_the_global_batchs_dropout_uniforms(dtype):
    m_b, layer_dims, rates = 7, [5, 4, 3, 2], [0.5, 0.0]
    single = np.random.default_rng(3)
    expected = [single.random((4, m_b), dtype=dtype), single.random((4, m_b), dtype=dtype)]  # two batches, layer 1
    for ranks in (2, 3, 8):
        rngs = [np.random.default_rng(3) for _ in range(ranks)]
        for batch in range(2):
            parts = []
            for r in range(ranks):
                lo, hi = share(m_b, r, ranks)
                columns = GlobalColumns(rngs[r], lo, hi, m_b)
                if hi == lo:  # a rank without examples still advances the shared stream
                    columns.skip(layer_dims, rates, dtype)
                else:
                    parts.append(columns.random((4, hi - lo), dtype=dtype))
            assert np.array_equal(np.concatenate(parts, axis=1), expected[batch])


# ---------------------------------------------------------------------------------------------- library, 2 ranks
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every rank's parameters and report from one `mpiexec -n 2` run of the worker."""
    if importlib.util.find_spec("mpi4py") is None or MPIEXEC is None:
        pytest.skip(f"needs mpi4py and mpiexec: {install_hint('mpi')}")
    out = tmp_path_factory.mktemp("ranks")
    run = mpiexec([os.path.join(HERE, "distributed_worker.py"), str(out)], LIBRARY_TIMEOUT)
    assert run.returncode == 0, run.stderr
    ranks = []
    for r in range(2):
        with open(out / f"rank{r}.json") as f:
            ranks.append((dict(np.load(out / f"rank{r}.npz")), json.load(f)))
    return ranks


@needs_mpi
def test_two_ranks_take_the_steps_of_one_process_on_the_whole_global_batch(two_ranks):
    params, report = two_ranks[0]
    expected = [case.name for case in worker.CASES if worker.runnable(case)]
    assert report["cases"] == expected
    for case in worker.CASES:
        if case.name in report["cases"]:
            net, history = worker.train(case)  # one process, the same global batches of 7
            tolerance = gradient_rtol(case.dtype)
            assert relative_difference(params[case.name], net.params.theta) <= tolerance, case
            assert relative_difference(report["histories"][case.name], history.cost) <= tolerance, case


@needs_mpi
def test_from_an_out_of_core_source_each_rank_reads_only_its_rows(two_ranks):
    (params0, report0), (params1, report1) = two_ranks
    case = worker.Case(report0["source case"].split("-")[0], "float64", "adam", output_units=1)
    net, _ = worker.train(case)  # one process, the same data in memory
    assert relative_difference(params0["from source"], net.params.theta) <= gradient_rtol("float64")
    assert params0["from source"].tobytes() == params1["from source"].tobytes()
    # each rank reads every row of this small set twice before training (the checking pass and the data's
    # fingerprint, which the ranks compare), then reads its shares alone
    trained = [report["rows read from the source"] - 2 * worker.EXAMPLES for report in (report0, report1)]
    assert sum(trained) == worker.EXAMPLES * worker.EPOCHS  # every example of every epoch read once, by one rank
    assert all(0 < rows < worker.EXAMPLES * worker.EPOCHS for rows in trained)


@needs_mpi
def test_parameters_are_bit_identical_on_every_rank(two_ranks):
    (params0, report0), (params1, report1) = two_ranks
    assert params0.keys() == params1.keys()
    for name in params0:
        assert params0[name].tobytes() == params1[name].tobytes(), name
    assert report0["histories"] == report1["histories"]  # costs and accuracies are global, not a rank's shard


@needs_mpi
def test_only_rank_0_writes_and_a_resumed_run_ends_where_an_uninterrupted_one_does(two_ranks):
    (params0, report0), (_, report1) = two_ranks
    assert report0["saves"] == 4 and report1["saves"] == 0  # epochs 1, 2, then 3, 4 after resuming
    assert report0["resumed epochs"] == report1["resumed epochs"] == 4
    assert params0["resumed"].tobytes() == params0["uninterrupted"].tobytes()


@needs_mpi
def test_a_callback_stopping_one_rank_stops_every_rank(two_ranks):
    assert [report["epochs after a stop on rank 1"] for _, report in two_ranks] == [2, 2]


@needs_mpi
def test_a_rank_with_another_architecture_or_feature_count_fails_every_rank_clearly(two_ranks):
    for _, report in two_ranks:
        message = report["architecture mismatch"]
        assert message.startswith("the 2 MPI ranks do not describe the same training run: network")
        assert "rank 0: [[5, 6, 3]" in message and "rank 1: [[5, 7, 3]" in message
        assert "data shapes (X, Y) (rank 0: [[5, 29]" in report["feature mismatch"]
        assert "rank 1: [[4, 29]" in report["feature mismatch"]
    assert issubclass(RanksDisagreeError, DnnError)


@needs_mpi
def test_ranks_with_data_of_the_same_shape_but_other_values_fail_every_rank_naming_the_data(two_ranks):
    for _, report in two_ranks:
        message = report["data mismatch"]
        assert message.startswith("the 2 MPI ranks do not describe the same training run: data hash (rank 0: ")
        assert "rank 1: " in message and "shapes" not in message  # the shapes agree: only the values differ


# ---------------------------------------------------------------------------------------------- command line, 2 ranks
DIGITS = ["train", "--data", "digits", "--layers", "64,32", "--optimizer", "adam", "--epochs", "30"]


def _test_accuracy(stdout: str) -> float:
    lines = [line for line in stdout.splitlines() if line.startswith("test accuracy:")]
    assert len(lines) == 1, stdout  # one rank reports
    return float(lines[0].split()[-1])


@needs_mpi
def test_the_command_line_trains_one_model_data_parallel(tmp_path):
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    run = mpiexec(["-m", "dnn", *DIGITS, "--save", "model.npz", "--checkpoint", "run.npz"], CLI_TIMEOUT, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("training [64, 64, 32, 10]") == 1 and "across 2 MPI processes" in run.stdout
    assert run.stdout.count("saved the model to model.npz") == 1
    assert sorted(os.listdir(tmp_path)) == ["model.npz", "run.npz"]  # no file of rank 1, no temporary left
    single = subprocess.run(
        [sys.executable, "-m", "dnn", *DIGITS, "--quiet"],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=True,
    )
    accuracy = _test_accuracy(run.stdout)
    assert accuracy >= 0.95
    assert abs(accuracy - _test_accuracy(single.stdout)) <= 0.01  # ≤ 3 of 359 test examples


@needs_mpi
def test_a_mistake_on_one_rank_of_the_command_line_fails_every_rank_in_one_line():
    run = mpiexec(
        [
            os.path.join(HERE, "distributed_worker.py"),
            "cli",
            "train",
            "--epochs",
            "1000",
            "--on-rank-1",
            "--data",
            "no-such-file-on-rank-1.csv",
        ],
        CLI_TIMEOUT,
    )
    assert run.returncode != 0
    assert run.stderr.strip() == "error: rank 1: data file no-such-file-on-rank-1.csv does not exist", run.stderr


@needs_mpi
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "no-such-file.csv"], "error: data file no-such-file.csv does not exist"),
        (["--layers", "3,x"], "error: --layers takes comma-separated integers like 20,7,5, got '3,x'"),
        (
            ["--save", "/no/such/dir/m.npz"],
            "error: --save /no/such/dir/m.npz: the directory /no/such/dir does not exist",
        ),
    ],
)
def test_a_mistake_every_rank_makes_is_one_error_line(argv, message):
    run = mpiexec(["-m", "dnn", "train", "--epochs", "1", *argv], CLI_TIMEOUT)
    assert run.returncode == 1
    assert run.stderr.strip() == message, run.stderr


def _csv(path, X, y):
    path.write_text(
        "a,b,c,label\n" + "\n".join(",".join([*map(repr, row), str(c)]) for row, c in zip(X.tolist(), y)) + "\n"
    )
    return str(path)


@needs_mpi
@pytest.mark.parametrize(
    "on_rank_1, named",
    [
        (
            ["--no-standardize"],
            'preprocessing (rank 0: {"label_column": "label", "split": {"seed": 0, "test_fraction": 0.2}, '
            '"standardize": true}; rank 1: {"label_column": "label", "split": {"seed": 0, "test_fraction": 0.2}, '
            '"standardize": false})',
        ),
        (["--data", "other.csv"], "data hash (rank 0: "),  # another CSV of the same shape
    ],
)
def test_command_line_ranks_that_prepare_or_read_other_data_fail_together_naming_it(tmp_path, on_rank_1, named):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] > 0).astype(int)
    data = _csv(tmp_path / "d.csv", X, y)
    X[5, 1] += 1.0
    _csv(tmp_path / "other.csv", X, y)
    argv = [
        "train",
        "--data",
        data,
        "--layers",
        "3",
        "--epochs",
        "2",
        "--quiet",
        "--checkpoint",
        str(tmp_path / "ck.npz"),
    ]
    if on_rank_1[0] == "--data":
        on_rank_1 = ["--data", str(tmp_path / "other.csv")]  # argparse takes the last --data
    run = mpiexec([os.path.join(HERE, "distributed_worker.py"), "cli", *argv, "--on-rank-1", *on_rank_1], CLI_TIMEOUT)
    assert run.returncode != 0
    # both ranks fail together, and rank 0 says it once
    assert run.stderr.startswith("error: the 2 MPI ranks do not describe the same training run: "), run.stderr
    assert run.stderr.count("error:") == 1 and run.stderr.count(named) == 1, run.stderr
    assert not (tmp_path / "ck.npz").exists()
