"""Generated numba source is imported from a content-hashed file, so numba's on-disk cache can keep its kernels."""

from dnn.kernels import numba_generated
from dnn.kernels.numba_generated import load_generated_module

SOURCE = "def twice(x):\n    return 2 * x\n"


def test_the_same_source_is_one_file_and_one_module(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    module = load_generated_module("spec_twice", SOURCE)
    assert module.twice(3) == 6
    files = list((tmp_path / "dnn-generated").glob("dnn_generated_spec_twice_*.py"))
    assert [f.read_text() for f in files] == [SOURCE] and module.__file__ == str(files[0])
    assert load_generated_module("spec_twice", SOURCE) is module
    other = load_generated_module("spec_twice", SOURCE.replace("2 *", "3 *"))
    assert other.twice(3) == 9 and len(list((tmp_path / "dnn-generated").glob("*.py"))) == 2


def test_no_writable_directory_runs_the_module_from_memory(tmp_path, monkeypatch):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")  # no directory can be made under a file, whoever runs the test
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocked))
    monkeypatch.setenv("HOME", str(blocked))
    monkeypatch.setattr(numba_generated, "_private_directory", lambda: None)
    module = load_generated_module("spec_unwritable", SOURCE)
    assert module.twice(4) == 8 and getattr(module, "__file__", None) is None


def test_an_unwritable_directory_falls_back_to_the_next(tmp_path, monkeypatch):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")  # a directory cannot be made under a file
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocked))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    module = load_generated_module("spec_fallback", SOURCE)
    assert module.__file__.startswith(str(tmp_path / "home" / ".cache" / "dnn" / "generated"))
