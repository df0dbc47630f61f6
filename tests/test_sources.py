"""Out-of-core sources: every format reads the rows it stores, streaming checks and statistics equal the
in-memory ones, mini-batches are reproducible, and bad files are named."""

import json

import numpy as np
import pytest

from dnn import DataError, Network, data, sources
from dnn.tolerances import gradient_rtol, kernel_rtol, relative_difference
from dnn.training import fit

M, N, CLASSES = 203, 5, 3


@pytest.fixture
def table():
    """X (M, N) rows of features and y (M,) class indices 0..CLASSES-1, every class present."""
    rng = np.random.default_rng(7)
    X = rng.normal(3.0, 2.0, (M, N))
    X[:, 4] = 1.5  # a constant feature: std 1, as Standardizer.fit gives it
    return X, np.arange(M) % CLASSES


def write(kind, directory, X, y):
    """The table saved in format `kind`; returns the path to open."""
    if kind == "npy":
        np.save(directory / "X.npy", X)
        np.save(directory / "Y.npy", y)
        (directory / "features.json").write_text(
            json.dumps({"feature_names": [f"f{j}" for j in range(N)], "label_name": "y"})
        )
        return directory
    if kind == "x_npy_float32":
        np.save(directory / "X.npy", X.astype(np.float32))
        np.save(directory / "Y.npy", y.astype(np.float64).reshape(-1, 1))
        return directory / "X.npy"
    if kind == "shards":
        for k, (a, b) in enumerate([(0, 50), (50, 51), (51, M)]):
            np.save(directory / f"X_{k}.npy", X[a:b])
            np.save(directory / f"Y_{k}.npy", y[a:b].astype(np.int32))
        return directory
    import h5py

    with h5py.File(directory / "d.h5", "w") as f:
        f["X"] = X
        f["Y"] = y
        f["X"].attrs["feature_names"] = [f"f{j}" for j in range(N)]
    return directory / "d.h5"


FORMATS = ["npy", "x_npy_float32", "shards", "h5"]


def stored(kind, X):
    return X.astype(np.float32).astype(np.float64) if kind == "x_npy_float32" else X


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_gathers_the_rows_asked_for_in_any_order(kind, table, tmp_path):
    X, y = table
    with sources.open_source(write(kind, tmp_path, X, y)) as source:
        assert (source.m, source.n_features) == (M, N)
        index = np.array([202, 0, 51, 50, 49, 7, 8, 9, 7])  # across shards, runs, a repeat
        X_out, y_out = np.empty((9, N)), np.empty(9)
        source.read_rows(index, X_out, y_out)
        np.testing.assert_array_equal(X_out, stored(kind, X)[index])
        np.testing.assert_array_equal(y_out, y[index])
        X32 = np.empty((9, N), np.float32)
        source.read_rows(index, X32, None)
        np.testing.assert_array_equal(X32, X[index].astype(np.float32))
        chunks = [(start, Xc.copy(), yc.copy()) for start, Xc, yc in source.chunks(rows=60)]
        assert [start for start, _, _ in chunks] == [0, 60, 120, 180]
        np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), stored(kind, X))
        with pytest.raises(IndexError, match="rows 0..202"):
            source.read_rows(np.array([M]), X_out[:1], None)


def test_feature_names_come_from_features_json_or_the_h5_attributes(table, tmp_path):
    X, y = table
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert sources.open_source(write("npy", tmp_path / "a", X, y)).feature_names == tuple(f"f{j}" for j in range(N))
    assert sources.open_source(write("h5", tmp_path / "b", X, y)).feature_names == tuple(f"f{j}" for j in range(N))
    assert sources.open_source(write("shards", tmp_path, X, y)).feature_names is None


@pytest.mark.parametrize("kind", FORMATS)
def test_the_streaming_statistics_equal_the_in_memory_standardizer(kind, table, tmp_path):
    X, y = table
    source = sources.open_source(write(kind, tmp_path, X, y))
    summary = sources.scan(source, rows=17)  # many chunks of odd size
    reference = data.Standardizer.fit(stored(kind, X).T)
    assert summary.m == M and summary.n_classes == CLASSES
    assert relative_difference(summary.standardizer.mean, reference.mean) <= kernel_rtol("float64")
    assert relative_difference(summary.standardizer.std, reference.std) <= kernel_rtol("float64")
    assert summary.standardizer.std[4, 0] == 1.0


@pytest.mark.parametrize(
    "kind, row, value, message",
    [
        ("npy", 100, np.nan, r"X.npy, row 100: feature 2 \('f2'\) is nan"),
        ("shards", 120, np.inf, r"X_2.npy, row 69: feature 2 is inf"),
        ("h5", 0, -np.inf, r"d.h5, row 0: feature 2 \('f2'\) is -inf"),
    ],
)
def test_a_non_finite_feature_is_named_by_file_and_row(kind, row, value, message, table, tmp_path):
    X, y = table
    X[row, 2] = value
    with pytest.raises(DataError, match=message):
        sources.scan(sources.open_source(write(kind, tmp_path, X, y)))


def test_labels_outside_the_classes_are_named_by_file_and_row(table, tmp_path):
    X, y = table
    source = sources.open_source(write("shards", tmp_path, X, y))
    with pytest.raises(DataError, match=r"X_0.npy, row 2: label 2 is not a class index \(0..1\)"):
        sources.scan(source, n_classes=2)
    np.save(tmp_path / "Y_1.npy", np.array([0.5]))
    with pytest.raises(DataError, match=r"X_1.npy, row 0: label 0.5 is not a whole number naming a class"):
        sources.scan(sources.open_source(tmp_path))


def test_truncated_mismatched_and_missing_files_are_named(table, tmp_path):
    X, y = table
    write("shards", tmp_path, X, y)
    np.save(tmp_path / "X_1.npy", np.zeros((1, N + 1)))
    with pytest.raises(DataError, match=r"shard .*X_1.npy holds 6 float64 features a row, but .*X_0.npy holds 5"):
        sources.open_source(tmp_path)
    np.save(tmp_path / "X_1.npy", X[50:51])
    np.save(tmp_path / "Y_1.npy", np.zeros(2))
    with pytest.raises(DataError, match=r"Y_1.npy holds labels of shape \(2,\) for the 1 rows of .*X_1.npy"):
        sources.open_source(tmp_path)
    (tmp_path / "Y_1.npy").unlink()
    with pytest.raises(DataError, match=r"X_1.npy has no labels: .*Y_1.npy does not exist"):
        sources.open_source(tmp_path)
    (tmp_path / "X_1.npy").unlink()
    with pytest.raises(DataError, match="missing X_1.npy"):
        sources.open_source(tmp_path)

    single = tmp_path / "single"
    single.mkdir()
    write("npy", single, X, y)
    content = (single / "X.npy").read_bytes()
    (single / "X.npy").write_bytes(content[:-8])
    with pytest.raises(DataError, match=r"X.npy is truncated: its header says \(203, 5\) float64"):
        sources.open_source(single)
    (single / "X.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(DataError, match="X.npy is not a readable .npy file"):
        sources.open_source(single)
    np.save(single / "X.npy", np.asfortranarray(X))
    with pytest.raises(DataError, match="Fortran order"):
        sources.open_source(single)
    np.save(single / "X.npy", X)
    (single / "features.json").write_text(json.dumps({"feature_names": ["a"]}))
    with pytest.raises(DataError, match="names 1 features, but the data has 5"):
        sources.open_source(single)


def test_a_truncated_or_incomplete_h5_is_named(table, tmp_path):
    X, y = table
    path = write("h5", tmp_path, X, y)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DataError, match=r"d.h5"):
        sources.scan(sources.open_source(path))
    import h5py

    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["X"] = X
    with pytest.raises(DataError, match=r"e.h5 has no Y dataset; it holds: X"):
        sources.open_source(tmp_path / "e.h5")


def test_other_paths_are_refused_by_name(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        sources.open_source(tmp_path / "nothing")
    (tmp_path / "d.csv").write_text("a,y\n1,0\n")
    with pytest.raises(DataError, match="not an out-of-core data source"):
        sources.open_source(tmp_path / "d.csv")
    with pytest.raises(DataError, match="neither X.npy nor shards"):
        sources.open_source(tmp_path)


@pytest.mark.parametrize("prefetch", [True, False])
def test_mini_batches_follow_the_order_with_one_hot_or_binary_labels_and_standardisation(prefetch, table, tmp_path):
    X, y = table
    source = sources.open_source(write("shards", tmp_path, X, y))
    order = sources.epoch_order(M, seed=5, epoch=2)
    np.testing.assert_array_equal(order, sources.epoch_order(M, seed=5, epoch=2))  # reproducible by its seed
    assert not np.array_equal(order, sources.epoch_order(M, seed=5, epoch=3))
    scaler = data.Standardizer.fit(X.T)
    reader = sources.BatchReader(source, 64, CLASSES, "float32", standardizer=scaler, prefetch=prefetch)
    batches = [(Xb.copy(), Yb.copy()) for Xb, Yb in reader.epoch(order)]
    assert [b[0].shape for b in batches] == [(N, 64)] * 3 + [(N, 11)]
    expected = scaler.transform(X.T).astype(np.float32)  # (N, M), as training from memory standardises
    for k, (Xb, Yb) in enumerate(batches):
        part = order[64 * k : 64 * (k + 1)]
        np.testing.assert_array_equal(Xb, expected[:, part])
        np.testing.assert_array_equal(Yb, np.eye(CLASSES, dtype=np.float32)[:, y[part]])
    binary = sources.BatchReader(source, 300, 1, "float64")
    with pytest.raises(DataError, match=r"X_0.npy, row 2: label 2 is not a class index 0..1"):
        list(binary.epoch())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fit_from_a_source_equals_fit_from_memory(backend, dtype, table, tmp_path):
    X, y = table
    y = y % 2
    path = write("npy", tmp_path, X, y)
    nets = [Network([N, 4, 1], backend=backend.name, dtype=dtype) for _ in range(2)]
    nets[1].set_parameters(nets[0].get_parameters())
    in_memory = fit(nets[0], X.T, y.reshape(1, -1), epochs=3, batch_size=50, optimizer="adam", lr=0.01, seed=11)
    from_disk = fit(
        nets[1], sources.open_source(path), None, epochs=3, batch_size=50, optimizer="adam", lr=0.01, seed=11
    )
    assert relative_difference(from_disk.cost, in_memory.cost) <= gradient_rtol(dtype)
    theirs = nets[0].get_parameters()
    for name, ours in nets[1].get_parameters().items():
        assert relative_difference(ours, theirs[name]) <= gradient_rtol(dtype), name


def test_fit_checks_the_source_before_training(table, tmp_path):
    X, y = table
    path = write("npy", tmp_path, X, y)
    net = Network([N, 4, 1])
    before = {name: p.copy() for name, p in net.get_parameters().items()}
    with pytest.raises(DataError, match=r"X.npy, row 2: label 2 is not a class index \(0..1\)"):
        fit(net, sources.open_source(path), None, epochs=1, batch_size=10)
    with pytest.raises(DataError, match="5 features a row, but the network's input layer has 6"):
        fit(Network([N + 1, 1]), sources.open_source(path), None, epochs=1)
    assert all(np.array_equal(p, before[name]) for name, p in net.get_parameters().items())


@pytest.mark.parametrize("kind", FORMATS)
def test_rows_of_a_source_read_through_to_it_and_name_its_rows(kind, table, tmp_path):
    X, y = table
    source = sources.open_source(write(kind, tmp_path, X, y))
    picked = np.array([3, 60, 61, 62, 150, 202])
    rows = sources.Rows(source, picked)
    assert (rows.m, rows.n_features, rows.feature_names) == (6, N, source.feature_names)
    X_out, y_out = np.empty((3, N)), np.empty(3)
    rows.read_rows(np.array([5, 0, 2]), X_out, y_out)
    np.testing.assert_array_equal(X_out, stored(kind, X)[[202, 3, 61]])
    np.testing.assert_array_equal(y_out, y[[202, 3, 61]])
    assert rows.locate(4) == source.locate(150)
    with pytest.raises(IndexError, match="rows 0..202"):
        sources.Rows(source, [0, M])


def test_evaluate_streams_the_scores_network_evaluate_gives_on_the_whole_set(backend, table, tmp_path):
    X, y = table
    source = sources.open_source(write("shards", tmp_path, X, y))
    net = Network([N, 4, CLASSES], backend=backend.name, dtype="float64")
    streamed = sources.evaluate(net, source, rows=17)  # 12 chunks, the last shorter
    whole = net.evaluate(X.T, y)
    assert relative_difference(streamed["cost"], whole["cost"]) <= gradient_rtol("float64")
    assert streamed["accuracy"] == pytest.approx(whole["accuracy"], abs=1e-12)
    in_memory = sources.InMemory(X, y, "table.csv")
    assert sources.evaluate(net, in_memory, rows=50) == pytest.approx(streamed, rel=gradient_rtol("float64"))
    X[150, 1] = np.inf
    with pytest.raises(DataError, match=r"table.csv, example 150: feature 1 is inf"):
        sources.evaluate(net, sources.InMemory(X, y, "table.csv"))
    with pytest.raises(DataError, match=r"X_0.npy, row 2: label 2 is not a class index \(0..1\)"):
        sources.evaluate(Network([N, 1]), source)


def test_a_scanned_source_is_not_read_again_by_fit_unless_its_labels_need_naming(table, tmp_path, monkeypatch):
    X, y = table
    source = sources.open_source(write("npy", tmp_path, X, y))
    summary = sources.scan(source)
    assert source.checked == summary
    standardized = sources.Standardized(source, summary.standardizer)
    scans = []
    monkeypatch.setattr(
        sources.batches, "scan", lambda *a, **k: scans.append(a) or summary
    )  # where fit's batches look it up
    fit(Network([N, 4, CLASSES]), standardized, None, epochs=1, batch_size=64)
    assert scans == []
    monkeypatch.undo()
    with pytest.raises(DataError, match="row 2: label 2"):  # 3 classes on disk, a sigmoid network: scanned again
        fit(Network([N, 4, 1]), standardized, None, epochs=1, batch_size=64)


def test_only_out_of_core_layouts_are_taken_for_sources(table, tmp_path):
    import h5py

    X, y = table
    write("npy", tmp_path, X, y)
    h5 = write("h5", tmp_path, X, y)
    assert sources.is_source(tmp_path) and sources.is_source(tmp_path / "X.npy") and sources.is_source(h5)
    (tmp_path / "d.csv").write_text("a,y\n1,0\n")
    assert not sources.is_source(tmp_path / "d.csv") and not sources.is_source(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "course.h5", "w") as f:  # the course's layout: *_set_x, *_set_y, list_classes
        f["train_set_x"] = np.zeros((2, 4, 4, 3), np.uint8)
        f["train_set_y"] = np.array([0, 1])
    assert not sources.is_source(tmp_path / "course.h5")


@pytest.mark.parametrize(
    "layout, positioned",
    [
        ({}, True),
        ({"chunks": (7, N)}, True),
        ({"chunks": (7, 2)}, False),
        ({"chunks": (7, N), "compression": "gzip"}, False),
    ],
)
def test_h5_rows_are_read_where_hdf5_stored_them_or_else_through_h5py(layout, positioned, table, tmp_path):
    import h5py

    X, y = table
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("X", data=X, **layout)
        f["Y"] = y
    with sources.open_source(tmp_path / "d.h5") as source:
        assert (source.rows is not None) == positioned  # uncompressed, whole rows: positioned reads
        index = sources.epoch_order(M, seed=1, epoch=0)[:64]
        X_out, y_out = np.empty((64, N)), np.empty(64)
        source.read_rows(index, X_out, y_out)
        np.testing.assert_array_equal(X_out, X[index])
        np.testing.assert_array_equal(y_out, y[index])


def test_a_stray_x_npy_beside_shards_is_named_with_them(table, tmp_path):
    X, y = table
    write("shards", tmp_path, X, y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", y)
    with pytest.raises(DataError, match=r"holds both .*X.npy and shards .*X_0.npy, \.\.\.; remove the one"):
        sources.open_source(tmp_path)
