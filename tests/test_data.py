"""Data loaders: the course's layout out (X (n_x, m), Y (1, m)), a DataError naming the problem otherwise."""

import numpy as np
import pytest

from dnn import DataError, data


@pytest.mark.parametrize(
    "name, n_x, m, n_classes", [("breast_cancer", 30, 569, 2), ("digits", 64, 1797, 10), ("iris", 4, 150, 3)]
)
def test_builtin_sets_come_with_examples_as_columns(name, n_x, m, n_classes):
    ds = data.load(name)
    assert ds.X.shape == (n_x, m) and ds.Y.shape == (1, m)
    assert ds.n_classes == n_classes and set(np.unique(ds.Y)) == set(range(n_classes))


def test_the_course_cat_images_are_flattened_and_scaled(shared_data):
    train = data.load(str(shared_data / "train_catvnoncat.h5"))
    test = data.load(str(shared_data / "test_catvnoncat.h5"))
    assert train.X.shape == (12288, 209) and train.Y.shape == (1, 209) and test.X.shape == (12288, 50)
    assert train.classes == ("non-cat", "cat")
    assert 0.0 <= train.X.min() and train.X.max() <= 1.0
    import h5py

    with h5py.File(shared_data / "train_catvnoncat.h5") as f:
        first_image = np.asarray(f["train_set_x"][0])  # (64, 64, 3)
    np.testing.assert_array_equal(train.X[:, 0], first_image.reshape(-1) / 255.0)  # the course's flatten order


def test_an_h5_file_in_another_layout_is_named(tmp_path):
    import h5py

    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["images"] = np.zeros((3, 2, 2, 3), np.uint8)
    with pytest.raises(DataError, match="no single '<split>_set_x'.*images"):
        data.load(str(tmp_path / "odd.h5"))
    (tmp_path / "fake.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        data.load(str(tmp_path / "fake.h5"))


def test_npz_in_either_orientation(tmp_path):
    X, Y = np.arange(12.0).reshape(3, 4), np.array([0, 1, 1, 0])
    np.savez(tmp_path / "cols.npz", X=X, Y=Y)
    np.savez(tmp_path / "rows.npz", x=X.T, y=Y)
    for name in ("cols.npz", "rows.npz"):
        ds = data.load(str(tmp_path / name))
        np.testing.assert_array_equal(ds.X, X)
        np.testing.assert_array_equal(ds.Y, Y.reshape(1, 4))


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(X=np.zeros((3, 4))), "no Y or y array"),
        (dict(features=np.zeros((3, 4)), Y=np.zeros(4)), "no X or x array; it holds: features, Y"),
        (dict(X=np.zeros((3, 4)), Y=np.zeros(5)), "5 labels for 4 examples"),
        (dict(X=np.array([["a", "b"]]), Y=np.zeros(2)), "not numeric"),
        (dict(X=np.array([[1.0, np.nan]]), Y=np.zeros(2)), "NaN or infinite"),
        (dict(X=np.zeros((1, 2)), Y=np.array([0.5, 1])), "labels must be whole numbers naming classes; found 0.5"),
    ],
)
def test_npz_problems_are_named(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        data.load(str(tmp_path / "d.npz"))


def test_csv_label_column_by_name_or_last(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,label,b\n1,0,2\n3,1,4\n5,1,2\n")
    by_name = data.load(str(path), label_column="label")
    np.testing.assert_array_equal(by_name.X, [[1, 3, 5], [2, 4, 2]])
    np.testing.assert_array_equal(by_name.Y, [[0, 1, 1]])
    assert by_name.label_name == "label"
    last = data.load(str(path))
    np.testing.assert_array_equal(last.Y, [[0, 1, 0]])  # b's values 2 and 4 are the classes 0 and 1
    assert last.classes == (2, 4) and last.label_name == "b"
    features = data.load(str(path), label_column="label", labels=False)
    assert features.Y is None and features.X.shape == (2, 3)


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("a,y\n1,0\nx,1\n", {}, r"line 3, column 'a': 'x' is not a number"),
        ("a,y\n1,0\n,1\n", {}, r"column 'a': '' is not a number"),
        ("a,y\n1,0\n2\n", {}, "line 3: 1 values, but the header has 2 columns"),
        ("a,y\n1,0\n", {"label_column": "target"}, "no column 'target'; its columns are: a, y"),
        ("a,y\n", {}, "at least one data row"),
        ("a,y\n1,3.5\n", {}, "labels must be whole numbers naming classes"),
    ],
)
def test_csv_problems_are_named(tmp_path, text, options, message):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        data.load(str(tmp_path / "d.csv"), **options)


@pytest.mark.parametrize(
    "source, message",
    [("missing.csv", "does not exist"), ("x.parquet", "unknown data source"), ("mnist", "unknown data source")],
)
def test_unknown_or_missing_sources(tmp_path, source, message):
    with pytest.raises(DataError, match=message):
        data.load(str(tmp_path / source) if source.endswith("csv") else source)


def test_split_is_fixed_by_its_seed_and_partitions_the_columns():
    X, Y = np.arange(20.0).reshape(1, 20), np.zeros((1, 20))
    X_train, _, X_test, _ = data.train_test_split(X, Y, 0.25, seed=3)
    again = data.train_test_split(X, Y, 0.25, seed=3)
    np.testing.assert_array_equal(again[2], X_test)
    assert X_test.shape == (1, 5) and sorted(np.concatenate([X_train, X_test], axis=1).ravel()) == list(range(20))
    assert not np.array_equal(data.train_test_split(X, Y, 0.25, seed=4)[2], X_test)
    with pytest.raises(ValueError, match="test_fraction"):
        data.train_test_split(X, Y, 1.5)


def test_standardisation_uses_the_training_statistics_only():
    rng = np.random.default_rng(0)
    train, test = rng.normal(5, 2, (3, 50)), rng.normal(9, 4, (3, 20))
    train[2] = 7.0  # a constant feature maps to 0, not NaN
    scaler = data.Standardizer.fit(train)
    np.testing.assert_allclose(scaler.transform(train)[:2].mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(scaler.transform(train)[:2].std(axis=1), 1, atol=1e-12)
    np.testing.assert_array_equal(scaler.transform(train)[2], 0)
    np.testing.assert_allclose(scaler.transform(test), (test - train.mean(axis=1, keepdims=True)) / scaler.std)
    with pytest.raises(DataError, match="4 features, the standardisation was fitted on 3"):
        scaler.transform(np.zeros((4, 2)))


def test_a_csv_without_a_header_is_refused_with_the_fix(tmp_path):
    (tmp_path / "d.csv").write_text("1.5,2,0\n3,4,1\n")
    with pytest.raises(
        DataError,
        match=r"first line \('1.5,2,0'\) is all numbers, so the file has no header row; add a first line naming",
    ):
        data.load(str(tmp_path / "d.csv"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,y\n1,0\n\n2,nan\n", r"line 4, column 'y': nan is not a finite number"),
        ("a,y\n1,0\n\n\ninf,1\n", r"line 5, column 'a': inf is not a finite number"),
        ("a,y\n1,0\n2,-1.5\n", r"line 3, column 'y': labels must be whole numbers naming classes; found -1.5"),
        ("a,b,y\n1,2,0\n1,2\n", r"line 3: 2 values, but the header has 3 columns"),
        ("a,b,y\n1,2,0,4\n", r"line 2: 4 values, but the header has 3 columns"),
    ],
)
def test_csv_values_are_checked_naming_line_and_column(tmp_path, text, message):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        data.load(str(tmp_path / "d.csv"))


def test_csv_blocks_blank_lines_quotes_and_order_give_the_same_arrays(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3, 25))  # (n_x, m)
    y = np.arange(25) % 2
    lines = ['\ufeff"p",label,q,r'] + [f'{a!r},{c},"{b!r}",{d!r}' for (a, b, d), c in zip(X.T.tolist(), y)]
    lines.insert(10, "")  # blank lines in the middle and at the end are skipped
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n\n\n")
    monkeypatch.setattr(data, "CSV_BLOCK_ROWS", 4)  # many blocks, one of them blank-only
    ds = data.load_csv(str(tmp_path / "d.csv"), label_column="label")
    assert ds.feature_names == ("p", "q", "r") and ds.label_name == "label"
    assert ds.X.flags.c_contiguous
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.Y, y.reshape(1, -1))
    features = data.load_csv(str(tmp_path / "d.csv"), label_column="label", labels=False)
    np.testing.assert_array_equal(features.X, X)
