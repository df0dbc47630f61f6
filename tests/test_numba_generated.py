"""Generated numba source is imported from a content-hashed file, so numba's on-disk cache can keep its kernels."""

import os
import sys

import pytest

from dnn.kernels import numba_generated
from dnn.kernels.numba_generated import load_generated_module

SOURCE = "from numba import njit\n\n\n@njit(cache=CACHE)\ndef twice(x):\n    return 2 * x\n"


@pytest.fixture
def unwritable(tmp_path):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")  # no directory can be made under a file, whoever runs the test
    return blocked


def test_the_same_source_is_one_file_and_one_module(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    module = load_generated_module("spec_twice", SOURCE)
    assert module.twice(3) == 6 and module.CACHE
    files = list((tmp_path / "dnn-generated").glob("dnn_generated_spec_twice_*.py"))
    assert [f.read_text() for f in files] == [SOURCE] and module.__file__ == str(files[0])
    assert module.DIGEST in files[0].name
    assert load_generated_module("spec_twice", SOURCE) is module
    other = load_generated_module("spec_twice", SOURCE.replace("2 *", "3 *"))
    assert other.twice(3) == 9 and len(list((tmp_path / "dnn-generated").glob("*.py"))) == 2


def test_an_existing_file_is_left_alone_so_numbas_cache_of_it_stays_valid(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    path = load_generated_module("spec_kept", SOURCE).__file__
    os.utime(path, (1, 1))
    for name in [n for n in list(sys.modules) if n.startswith("dnn_generated_spec_kept_")]:
        del sys.modules[name]  # as a new process would find it
    assert load_generated_module("spec_kept", SOURCE).__file__ == path
    assert os.stat(path).st_mtime == 1


def test_no_writable_directory_compiles_from_memory_without_the_cache(unwritable, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(unwritable))
    monkeypatch.setenv("XDG_CACHE_HOME", str(unwritable))

    def no_private_directory():
        raise PermissionError("none")

    monkeypatch.setattr(numba_generated, "_private_temporary", no_private_directory)
    module = load_generated_module("spec_unwritable", SOURCE)
    assert module.twice(4) == 8 and not module.CACHE and getattr(module, "__file__", None) is None


def test_an_unwritable_directory_falls_back_to_the_next(tmp_path, unwritable, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(unwritable))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    module = load_generated_module("spec_fallback", SOURCE)
    assert module.__file__.startswith(str(tmp_path / "cache" / "dnn" / "generated")) and module.CACHE


def test_a_shared_temporary_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(numba_generated.tempfile, "gettempdir", lambda: str(tmp_path))
    shared = tmp_path / (f"dnn-{os.getuid()}" if hasattr(os, "getuid") else "dnn")
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # another user could plant code here
    with pytest.raises(PermissionError, match="not a private directory"):
        numba_generated._private_temporary()
