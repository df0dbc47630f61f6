"""Labels are the user's class values: the distinct values seen become classes 0..K-1 in increasing order, the
values travel with the data (`Dataset.classes`, `SourceSummary.classes`), data scored later is mapped with the
training classes, and label columns that cannot be classes are refused naming some of their values."""

import json

import numpy as np
import pytest

from dnn import DataError, Network, data, labels, sources
from dnn.training import fit


def write_csv(path, y, n_x=2, seed=0):
    """A CSV with n_x random features and the labels y as its last column 'y'; returns its path as a string."""
    X = np.random.default_rng(seed).normal(size=(len(y), n_x))
    rows = "".join(",".join(f"{v:.6f}" for v in x) + f",{label}\n" for x, label in zip(X, y))
    path.write_text(",".join(f"f{j}" for j in range(n_x)) + ",y\n" + rows)
    return str(path)


@pytest.mark.parametrize("values", [(3, 7, 9), (2019, 2020, 2021), (-1, 0, 1)])
def test_the_classes_are_the_distinct_label_values_in_increasing_order(values, tmp_path):
    y = np.array(values)[np.arange(60) % 3][::-1]  # (60,) every value 20 times, the largest first
    ds = data.load(write_csv(tmp_path / "d.csv", y))
    assert ds.classes == tuple(values) and ds.n_classes == 3  # 3 classes, not max + 1
    np.testing.assert_array_equal(ds.Y, np.searchsorted(values, y).reshape(1, -1))
    json.dumps(ds.classes)  # plain numbers: a model file's metadata keeps them


def test_binary_0_1_labels_read_exactly_as_before(tmp_path):
    y = np.arange(40) % 2
    ds = data.load(write_csv(tmp_path / "d.csv", y))
    assert ds.classes == (0, 1) and ds.n_classes == 2
    np.testing.assert_array_equal(ds.Y, y.reshape(1, -1).astype(np.float64))
    cancer = data.load("breast_cancer")  # the quick start's data: labels and class names untouched
    from sklearn.datasets import load_breast_cancer

    np.testing.assert_array_equal(cancer.Y[0], load_breast_cancer().target)
    assert cancer.classes == ("malignant", "benign")


def test_a_test_set_lacking_a_class_is_mapped_with_the_training_classes(tmp_path):
    train = data.load(write_csv(tmp_path / "train.csv", np.array([3, 7, 9] * 20)))
    test = data.load(write_csv(tmp_path / "test.csv", np.array([9, 7, 9])), classes=train.classes)
    np.testing.assert_array_equal(test.Y, [[2, 1, 2]])  # not [[1, 0, 1]], which its own values would give
    assert test.classes == (3, 7, 9)
    with pytest.raises(DataError, match=r"test.csv, line 3: label 8 is not one of the classes trained on \(3, 7, 9\)"):
        data.load(write_csv(tmp_path / "test.csv", np.array([9, 8])), classes=train.classes)


def test_one_stray_label_among_binary_labels_is_refused_naming_it(tmp_path):
    y = np.arange(450) % 2
    y[300] = 5000000
    with pytest.raises(
        DataError,
        match=r"d.csv, line 302: label 5000000 appears only once, while the other 449 examples are labelled 0, 1",
    ):
        data.load(write_csv(tmp_path / "d.csv", y))
    np.savez(tmp_path / "d.npz", X=np.zeros((1, 450)), Y=y)
    with pytest.raises(DataError, match="label 5000000 appears only once"):
        data.load(str(tmp_path / "d.npz"))


def test_more_classes_than_a_tenth_of_the_examples_is_refused_showing_values(tmp_path):
    y = np.arange(50) % 6  # 6 classes for 50 examples
    with pytest.raises(
        DataError, match=r"6 distinct labels \(0, 1, 2, 3, 4, 5\) for 50 examples, more classes than a tenth"
    ):
        data.load(write_csv(tmp_path / "d.csv", y))
    data.load(write_csv(tmp_path / "d.csv", np.arange(60) % 6))  # 6 classes for 60 examples are fine


def test_more_classes_than_the_sane_number_is_refused_unless_allowed(tmp_path):
    y = np.arange(20_000) % 1200
    np.savez(tmp_path / "d.npz", X=np.zeros((1, y.size)), Y=y)
    with pytest.raises(DataError, match=r"more than 1000 distinct labels \(0, 1, 2, 3, \.\.\., 1198, 1199\)"):
        data.load(str(tmp_path / "d.npz"))
    assert data.load(str(tmp_path / "d.npz"), max_classes=1200).n_classes == 1200
    assert labels.MAX_CLASSES == 1000


def test_labels_that_are_not_whole_numbers_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"line 3, column 'y': labels must be whole numbers naming classes; found 0.5"):
        data.load(write_csv(tmp_path / "d.csv", [1, 0.5]))
    with pytest.raises(DataError, match="labels must be whole numbers naming classes; found 1e\\+20"):
        data.load(write_csv(tmp_path / "d.csv", [1, 1e20]))


# ---------------------------------------------------------------------------------------------- sources
def write_source(directory, y, seed=0):
    """X.npy (m, 3) random features and Y.npy the labels y, in `directory`; returns it."""
    directory.mkdir()
    np.save(directory / "X.npy", np.random.default_rng(seed).normal(size=(len(y), 3)))
    np.save(directory / "Y.npy", np.asarray(y))
    return directory


def test_scan_finds_the_classes_of_a_source_and_batches_carry_their_indices(tmp_path):
    y = np.array([3, 7, 9] * 30)
    source = sources.open_source(write_source(tmp_path / "d", y))
    summary = sources.scan(source, rows=16)
    assert summary.classes == (3, 7, 9) and summary.n_classes == 3
    reader = sources.BatchReader(source, 90, 3, prefetch=False)
    ((_, Y),) = list(reader.epoch())
    np.testing.assert_array_equal(Y, np.eye(3)[:, np.searchsorted([3, 7, 9], y)])  # (3, 90) one-hot
    history = fit(Network([3, 4, 3]), source, None, epochs=2, batch_size=30)  # a 3-class network trains on 3/7/9
    assert np.isfinite(history.cost).all()


def test_a_test_source_lacking_a_class_is_scored_with_the_training_classes(tmp_path):
    train = sources.open_source(write_source(tmp_path / "train", np.array([3, 7, 9] * 30)))
    test = sources.open_source(write_source(tmp_path / "test", np.array([9, 7] * 30), seed=1))
    classes = sources.scan(train).classes
    assert sources.scan(test, classes=classes).classes == (3, 7, 9)
    net = Network([3, 3])
    X = np.empty((60, 3))
    test.read_rows(np.arange(60), X, None)
    expected = net.evaluate(X.T, np.array([2, 1] * 30))  # 9 is class 2, 7 class 1
    assert sources.evaluate(net, test) == pytest.approx(expected, rel=1e-12)
    stray = sources.open_source(write_source(tmp_path / "stray", np.array([9, 8] * 30), seed=2))
    with pytest.raises(
        DataError, match=r"stray.X.npy, row 1: label 8 is not one of the classes trained on \(3, 7, 9\)"
    ):
        sources.scan(stray, classes=classes)


def test_scan_refuses_label_columns_that_cannot_be_classes(tmp_path):
    y = np.arange(450) % 2
    y[17] = 5000000
    with pytest.raises(DataError, match=r"X.npy, row 17: label 5000000 appears only once"):
        sources.scan(sources.open_source(write_source(tmp_path / "stray", y)))
    with pytest.raises(DataError, match=r"8 distinct labels \(0, 1, 2, 3, \.\.\., 6, 7\) for 50 examples"):
        sources.scan(sources.open_source(write_source(tmp_path / "tenth", np.arange(50) % 8)))
    many = sources.open_source(write_source(tmp_path / "many", np.arange(12_000) % 1100))
    with pytest.raises(DataError, match="more than 1000 distinct labels"):
        sources.scan(many)
    assert sources.scan(many, max_classes=1100).n_classes == 1100


def test_labels_are_their_own_indices_again_through_label_values():
    y = np.array([9.0, 3.0, 7.0, 3.0] * 10)
    indices, classes = labels.encode(y, "y")
    assert classes == (3, 7, 9) and indices.tolist() == [2, 0, 1, 0] * 10
    assert labels.label_values(indices, classes).tolist() == y.tolist()
    assert labels.label_values(np.array([1.0, 0.0]), ("cat", "non-cat")).tolist() == [1.0, 0.0]  # names: indices


def test_a_csv_test_file_beside_a_training_source_is_scored_in_the_training_labels(tmp_path, capsys):
    from dnn.cli import main

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = np.array([3, 7, 9])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0)]  # labels 3, 7, 9
    for name, rows in (("train.csv", slice(0, 240)), ("test.csv", slice(240, None))):
        lines = "".join(f"{a},{b},{c},{label}\n" for (a, b, c), label in zip(X[rows], y[rows]))
        (tmp_path / name).write_text("a,b,c,label\n" + lines)
    assert main(["convert", str(tmp_path / "train.csv"), str(tmp_path / "train")]) == 0
    capsys.readouterr()
    accuracies = []
    for train in ("train", "train.csv"):  # streamed from disk, and in memory: the same run
        assert (
            main(
                [
                    "train",
                    "--data",
                    str(tmp_path / train),
                    "--test",
                    str(tmp_path / "test.csv"),
                    "--layers",
                    "8",
                    "--epochs",
                    "60",
                    "--lr",
                    "0.01",
                    "--quiet",
                ]
            )
            == 0
        )
        accuracies.append(float(capsys.readouterr().out.split("test accuracy:")[1]))
    assert accuracies[0] == accuracies[1] > 0.8  # the test labels mapped as the training labels were
