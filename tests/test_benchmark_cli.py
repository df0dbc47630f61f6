"""`python -m dnn bench` and bench/gpu_check.py, on tiny cases so they run in the normal test run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dnn.benchmark
from dnn.backends import available_backends
from dnn.backends.numpy_backend import NumpyBackend
from dnn.cli import main
from dnn.errors import install_hint
from dnn.perf import (
    CASES,
    KINK_MARGIN,
    GemmFloor,
    gradient_difference,
    prepare_step,
    require_gradients_agree,
    step_gemm_flops,
)
from dnn.tolerances import gradient_rtol

BENCH = Path(__file__).resolve().parents[1] / "bench"
TINY = ["--cases", "D", "--backends", "numpy", "--repeat", "2"]


def bench(capsys, *argv):
    """(exit status, stdout, stderr) of `python -m dnn bench ARGV` run in this process."""
    status = main(["bench", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def table_rows(out):
    """{(backend, case, dtype): the row's remaining columns} from the printed table."""
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 9 and fields[2] in ("float32", "float64"):
            rows[tuple(fields[:3])] = fields[3:]
    return rows


def test_the_table_has_one_row_per_backend_case_and_dtype_with_the_blas_named(capsys):
    status, out, _ = bench(capsys, "--cases", "D,B-small", "--backends", "numpy", "--repeat", "2")
    assert status == 0
    rows = table_rows(out)
    assert set(rows) == {("numpy", case, dtype) for case in ("D", "B-small") for dtype in ("float32", "float64")}
    for ms, gflops, vs_numpy, vs_floor, floor_ms, diff in rows.values():
        assert float(ms) > 0 and float(floor_ms) > 0 and float(gflops) > 0
        assert vs_numpy == "1.00"  # numpy is its own baseline
    assert "BLAS: numpy: " in out and "OPENBLAS_CORETYPE=" in out


def test_json_holds_every_measurement_and_the_environment(capsys):
    status, out, _ = bench(capsys, *TINY, "--dtype", "float32", "--json")
    assert status == 0
    report = json.loads(out)
    assert report["repeat"] == 2 and "blas" in report["environment"]
    (row,) = report["results"]
    case = CASES["D"]
    assert (row["backend"], row["case"], row["dtype"], row["layer_dims"], row["m"]) == (
        "numpy",
        "D",
        "float32",
        list(case.layer_dims),
        case.m,
    )
    assert row["agrees"] and row["max_gradient_difference"] <= gradient_rtol("float32") == row["tolerance"]
    seconds = row["ms_per_step"] / 1e3
    assert row["gflops"] == pytest.approx(step_gemm_flops(case.layer_dims, case.m) / seconds / 1e9)
    assert row["vs_floor"] == pytest.approx(row["ms_per_step"] / row["floor_ms"])


def test_plot_writes_a_png(capsys, tmp_path):
    path = tmp_path / "bench.png"
    status, out, _ = bench(capsys, *TINY, "--plot", str(path))
    assert status == 0 and f"plot written to {path}" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--cases", "D,Z", "unknown case 'Z'; valid cases: A, B, C, D, E"),
        ("--backends", "torch", "unknown backend 'torch'; valid backends: numpy, numba, cupy"),
        ("--dtype", "float16", "unknown dtype 'float16'; valid dtypes: float32, float64"),
        ("--repeat", "0", "must be at least 1"),
    ],
)
def test_a_bad_option_value_is_a_one_line_error(capsys, option, value, message):
    status, _, err = bench(capsys, option, value)
    assert status == 2
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("option, value", [("--cases", "D,,B"), ("--backends", "numpy,"), ("--dtype", ",float32")])
def test_a_list_with_an_empty_item_is_an_error(capsys, option, value):
    status, _, err = bench(capsys, option, value)
    assert status == 2 and f"argument {option}: {value!r} has an empty item" in err


@pytest.mark.parametrize(
    "where, message",
    [
        ("missing/bench.png", "the directory {tmp}/missing does not exist"),
        (".", "is a directory"),
        ("bench.xyz", "format 'xyz'; matplotlib writes"),
        ("bench", "no extension; matplotlib writes"),
    ],
)
def test_a_plot_that_cannot_be_written_is_refused_before_measuring(capsys, monkeypatch, tmp_path, where, message):
    monkeypatch.setattr(
        dnn.benchmark, "measure", lambda *args, **kwargs: pytest.fail("measured before checking --plot")
    )
    path = tmp_path / where
    status, out, err = bench(capsys, *TINY, "--plot", str(path))
    assert status == 1 and out == ""
    assert err.startswith(f"error: --plot {path}: ") and message.format(tmp=tmp_path) in err and err.count("\n") == 1


def test_plot_without_matplotlib_names_the_extra_before_measuring(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setattr(
        dnn.benchmark, "measure", lambda *args, **kwargs: pytest.fail("measured before checking --plot")
    )
    status, _, err = bench(capsys, *TINY, "--plot", str(tmp_path / "b.png"))
    assert status == 1 and err == f"error: --plot needs matplotlib, which is not installed: {install_hint('plot')}\n"


def test_plot_writes_the_format_its_extension_names(capsys, tmp_path):
    status, _, _ = bench(capsys, *TINY, "--dtype", "float64", "--plot", str(tmp_path / "bench.svg"))
    assert status == 0 and b"<svg" in (tmp_path / "bench.svg").read_bytes()[:500]


@pytest.mark.skipif(all(status.available for status in available_backends()), reason="every backend runs here")
def test_an_unavailable_backend_named_explicitly_is_an_error_saying_why(capsys):
    name = next(status.name for status in available_backends() if not status.available)
    status, _, err = bench(capsys, "--cases", "D", "--backends", name, "--repeat", "1")
    assert status == 1
    assert f"backend {name!r} cannot run here" in err


def test_a_backend_with_wrong_gradients_is_reported_wrong_and_not_timed(capsys, monkeypatch):
    monkeypatch.setattr(dnn.benchmark, "gradient_difference", lambda net, X, Y: 1.0)
    status, out, _ = bench(capsys, *TINY, "--dtype", "float64", "--json")
    assert status == 1
    (row,) = json.loads(out)["results"]
    assert not row["agrees"] and row["ms_per_step"] is None and row["gflops"] is None


class _ForgetsReluDerivative(NumpyBackend):
    """Backpropagates through relu as if it were linear: a plausible bug that still returns numbers."""

    name = "broken"

    def activation_backward(self, dA, activation, out, **kwargs):
        super().activation_backward(dA, "linear", out, **kwargs)


def test_the_agreement_check_catches_a_wrong_backend():
    bench_ = prepare_step(_ForgetsReluDerivative(), CASES["D"], "float64")
    assert gradient_difference(bench_.net, bench_.X, bench_.Y) > 1e-3
    with pytest.raises(AssertionError, match="wrong answer"):
        require_gradients_agree(bench_)


def test_step_flops_count_each_layers_three_products_but_no_input_gradient():
    # layer 1 (2x3): W·X and dZ·Xᵀ; layer 2 (1x2): W·A, dZ·Aᵀ and Wᵀ·dZ; each 2·n_l·n_{l-1}·m FLOPs, m = 4
    assert step_gemm_flops([3, 2, 1], 4) == 2 * (2 * 2 * 3 * 4) + 3 * (2 * 1 * 2 * 4)


def test_the_gemm_floor_computes_the_products_of_a_step(reference):
    floor = GemmFloor(reference, [5, 4, 3], 6, "float64")
    shapes = [(a.shape, b.shape, out.shape) for a, b, out in floor.products]
    assert shapes == [
        ((4, 5), (5, 6), (4, 6)),
        ((3, 4), (4, 6), (3, 6)),  # forward W·A
        ((3, 6), (6, 4), (3, 4)),
        ((4, 3), (3, 6), (4, 6)),  # layer 2: dZ·Aᵀ, Wᵀ·dZ
        ((4, 6), (6, 5), (4, 5)),
    ]  # layer 1: dZ·Xᵀ only
    assert floor.max_difference() <= gradient_rtol("float64")


def run_gpu_check(*argv):
    return subprocess.run(
        [sys.executable, str(BENCH / "gpu_check.py"), *argv], capture_output=True, text=True, timeout=300
    )


def test_gpu_check_runs_its_checks_and_table_on_the_cpu_backend():
    done = run_gpu_check("--backend", "numpy", "--cases", "D", "--sizes", "small", "--repeat", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kernels: 12 operations x 2 dtypes x 4 shapes, 0 failed" in done.stdout
    assert ", 0 failed" in done.stdout.split("gradients vs NumPy float64:")[1].splitlines()[0]
    assert any(line.split()[:1] == ["D"] for line in done.stdout.splitlines())
    assert "dnn captured: strategy 'compiled' is not available" in done.stdout  # numpy compiles no whole step


def test_benchmark_data_keeps_every_relu_unit_off_its_kink():
    bench_ = prepare_step(NumpyBackend(), CASES["C-small"], "float32")
    params = {key: value.astype(np.float64) for key, value in bench_.net.get_parameters().items()}
    A = bench_.X
    for l in (1, 2, 3):
        Z = params[f"W{l}"] @ A + params[f"b{l}"]  # the float64 pre-activations of hidden layer l
        assert np.abs(Z[Z != 0]).min() >= KINK_MARGIN  # exact zeros (a dead previous layer) are exact in every dtype
        A = np.maximum(Z, 0)


def test_the_command_says_how_long_it_expects_to_take_before_measuring(capsys):
    status, _, err = bench(capsys, *TINY)
    assert status == 0
    first = err.splitlines()[0]
    assert first.startswith("dnn bench: cases D") and re.search(r"expect about \d+ (s|min)$", first), first


def test_the_estimate_grows_with_the_work_asked_for():
    one = dnn.benchmark.estimated_seconds(["D"], 1, ["float32"], 5)
    assert dnn.benchmark.estimated_seconds(["D", "C"], 1, ["float32"], 5) > one
    assert dnn.benchmark.estimated_seconds(["D"], 2, ["float32", "float64"], 50) > 2 * one


def test_naming_one_backend_measures_only_it_and_its_floor(capsys, backend):
    # every backend, whatever its array library: the floor's products and the table are the command's, not NumPy's
    status, out, _ = bench(capsys, "--cases", "D", "--backends", backend.name, "--repeat", "2", "--dtype", "float32")
    assert status == 0
    rows = table_rows(out)
    assert list(rows) == [(backend.name, "D", "float32")]
    ms, gflops, vs_numpy, vs_floor, floor_ms, _ = rows[(backend.name, "D", "float32")]
    assert float(vs_floor) > 0 and float(floor_ms) > 0
    assert vs_numpy == ("1.00" if backend.name == "numpy" else "-")  # no NumPy baseline without numpy
    assert max(map(len, out.splitlines())) <= dnn.benchmark.TABLE_WIDTH  # the longest name still fits


def test_the_table_fits_in_a_terminal(capsys):
    _, out, _ = bench(capsys, *TINY)
    assert max(map(len, out.splitlines())) <= dnn.benchmark.TABLE_WIDTH <= 120
