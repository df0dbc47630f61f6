"""`python -m dnn convert`: a CSV streamed into X.npy + Y.npy or an .h5 that reads back as the CSV does;
and a data set larger than a process's memory limit trains from disk."""

import importlib.util
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dnn import DataError, cli, convert, data, sources

# the memory-limit runner bench/train_larger_than_memory.py uses too (bench/ is scripts, not a package)
_spec = importlib.util.spec_from_file_location(
    "memory_limit", Path(__file__).resolve().parents[1] / "bench" / "memory_limit.py"
)
memory_limit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(memory_limit)

CSV = "a,b,label\n" + "".join(f"{i * 0.25},{i},{i % 3}\n" for i in range(40))


@pytest.mark.parametrize("out", ["out_dir", "out.h5"])
def test_a_converted_csv_reads_back_as_the_csv_loads(out, tmp_path, monkeypatch):
    (tmp_path / "d.csv").write_text(CSV)
    monkeypatch.setattr(data, "CSV_BLOCK_ROWS", 7)  # several blocks
    assert convert.convert(str(tmp_path / "d.csv"), str(tmp_path / out), dtype="float32") == 40
    loaded = data.load_csv(str(tmp_path / "d.csv"))
    with sources.open_source(tmp_path / out) as source:
        assert (source.m, source.feature_names, source.label_name) == (40, ("a", "b"), "label")
        X, y = np.empty((40, 2)), np.empty(40)
        source.read_rows(np.arange(40), X, y)
    np.testing.assert_array_equal(X, loaded.X.T.astype(np.float32))
    np.testing.assert_array_equal(y, loaded.Y[0])
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []  # no temporary files left


def test_the_command_line_converts_and_names_a_missing_file(tmp_path, capsys):
    (tmp_path / "d.csv").write_text(CSV)
    assert cli.main(["convert", str(tmp_path / "d.csv"), str(tmp_path / "out"), "--label-column", "b"]) == 0
    assert "wrote 40 examples" in capsys.readouterr().out
    assert np.load(tmp_path / "out" / "X.npy").shape == (40, 2)
    assert cli.main(["convert", str(tmp_path / "missing.csv"), str(tmp_path / "out2")]) == 1
    assert "missing.csv" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "Y.npy"), np.arange(40))


def test_bad_input_and_outputs_are_named_and_leave_nothing_behind(tmp_path):
    (tmp_path / "d.csv").write_text(CSV + "1,x,0\n")
    with pytest.raises(DataError, match=r"line 42, column 'b': 'x' is not a number"):
        convert.convert(str(tmp_path / "d.csv"), str(tmp_path / "out"))
    assert os.listdir(tmp_path / "out") == []
    (tmp_path / "d.csv").write_text(CSV)
    with pytest.raises(DataError, match="the directory .*missing does not exist"):
        convert.convert(str(tmp_path / "d.csv"), str(tmp_path / "missing" / "out.h5"))
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="exists and is not a directory"):
        convert.convert(str(tmp_path / "d.csv"), str(tmp_path / "file"))


# ---------------------------------------------------------------------------------------------- a real memory limit
def test_training_on_a_file_larger_than_the_memory_limit_finishes(tmp_path):
    # RLIMIT_AS counts the interpreter's whole address space (~250 MB with numpy and dnn), a cgroup only what is resident
    limit, m = (120 << 20, 400_000) if memory_limit.cgroup_dir() else (400 << 20, 1_100_000)
    n = 60
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float64, shape=(m, n))  # written in slices
    for start in range(0, m, 100_000):
        rows = np.random.default_rng(start).standard_normal((min(100_000, m - start), n))
        X[start : start + len(rows)] = rows
    X.flush()
    del X
    np.save(tmp_path / "Y.npy", (np.arange(m) % 2).astype(np.int8))
    assert os.path.getsize(tmp_path / "X.npy") > 1.25 * limit
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    train = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {repo!r})
        from dnn import Network, sources
        from dnn.training import fit
        history = fit(Network([{n}, 1], dtype="float64"), sources.open_source({str(tmp_path)!r}), None, epochs=1, batch_size=8192)
        print("trained", history.cost[-1])
    """)
    done, how, _ = memory_limit.run_limited(train, limit)
    assert done.returncode == 0 and "trained" in done.stdout, (how, done.stderr[-2000:])
    command_line = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {repo!r})
        from dnn.cli import main
        sys.exit(main(["train", "--data", {str(tmp_path)!r}, "--layers", "", "--epochs", "1", "--batch-size", "8192", "--quiet"]))
    """)
    done, how, _ = memory_limit.run_limited(command_line, limit)  # held-out rows, scans, streamed scores: all within it
    assert done.returncode == 0 and "test accuracy" in done.stdout, (how, done.stderr[-2000:])
    load = f"import numpy as np; X = np.load({str(tmp_path / 'X.npy')!r}); print('loaded', X.sum())"
    done, how, _ = memory_limit.run_limited(load, limit)
    assert done.returncode != 0 and "loaded" not in done.stdout, f"{how} did not stop loading the whole file"


# ---------------------------------------------------------------------------------------------- what convert refuses
def test_convert_refuses_to_write_onto_its_input_by_any_name(tmp_path):
    (tmp_path / "d.h5").write_text(CSV)  # a CSV named like the output
    os.link(tmp_path / "d.h5", tmp_path / "link.h5")
    for out in ("d.h5", "./d.h5", "link.h5"):
        with pytest.raises(DataError, match="is the input .* itself"):
            convert.convert(str(tmp_path / "d.h5"), str(tmp_path / out), force=True)
    assert (tmp_path / "d.h5").read_text() == CSV


def test_an_existing_data_set_is_replaced_only_with_force(tmp_path, capsys):
    (tmp_path / "d.csv").write_text(CSV)
    for out in ("out", "out.h5"):
        assert convert.convert(str(tmp_path / "d.csv"), str(tmp_path / out)) == 40
        with pytest.raises(DataError, match=r"(exists|is not empty \(X.npy, Y.npy, features.json\)); pass --force"):
            convert.convert(str(tmp_path / "d.csv"), str(tmp_path / out))
        assert cli.main(["convert", str(tmp_path / "d.csv"), str(tmp_path / out), "--force"]) == 0
    assert "wrote 40 examples" in capsys.readouterr().out


def test_values_float32_cannot_hold_are_named_by_line_and_column(tmp_path):
    (tmp_path / "d.csv").write_text(CSV + "1e300,2,0\n")
    for out in ("out", "out.h5"):
        with pytest.raises(DataError, match=r"line 42, column 'a': 1e\+300 is out of the range of float32"):
            convert.convert(str(tmp_path / "d.csv"), str(tmp_path / out), dtype="float32")
    assert convert.convert(str(tmp_path / "d.csv"), str(tmp_path / "out64"), dtype="float64") == 41


def test_temporaries_are_recognisable_and_those_of_a_killed_run_are_removed_by_the_next(tmp_path):
    from dnn import outputs

    (tmp_path / "d.csv").write_text(CSV)
    (tmp_path / "out").mkdir()
    dead = 2**22 + 12345  # above the default pid_max: no process has it
    stale = [
        tmp_path / "out" / f"{outputs._temporary_prefix(str(tmp_path / 'out' / 'X.npy'))}{dead}.abc",
        tmp_path / f"{outputs._temporary_prefix(str(tmp_path / 'out.h5'))}{dead}.abc.h5",
    ]
    live = (
        tmp_path / f"{outputs._temporary_prefix(str(tmp_path / 'out.h5'))}{os.getpid()}.xyz.h5"
    )  # a write in progress
    for path in [*stale, live]:
        path.write_text("partial")
    assert all(path.name.startswith(".dnn-tmp-") for path in stale)
    convert.convert(str(tmp_path / "d.csv"), str(tmp_path / "out"))  # the directory holds only a temporary: empty
    convert.convert(str(tmp_path / "d.csv"), str(tmp_path / "out.h5"))
    assert not any(path.exists() for path in stale) and live.exists()
    assert sorted(os.listdir(tmp_path / "out")) == ["X.npy", "Y.npy", "features.json"]


def test_out_of_memory_reading_an_npz_is_reported_as_such(tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 3)), Y=np.zeros(3))

    def no_memory(self, key):
        raise MemoryError("Unable to allocate 8.00 GiB")

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", no_memory)
    with pytest.raises(MemoryError, match=r"out of memory while reading .*d.npz"):
        data.load(str(tmp_path / "d.npz"))
