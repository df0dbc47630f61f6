"""Importing dnn is cheap: it pulls in neither cupy nor numba (CPU or CUDA target)."""

import subprocess
import sys


def _modules_after(code: str) -> set:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def test_import_dnn_imports_neither_cupy_nor_numba():
    modules = _modules_after("import dnn, dnn.functional, dnn.backends")
    assert not {m for m in modules if m.split(".")[0] in ("cupy", "numba", "cupyx")}


def test_creating_a_numpy_network_still_imports_neither():
    modules = _modules_after("import dnn; dnn.Network([3, 2, 1]).predict([[0.0], [1.0], [2.0]])")
    assert not {m for m in modules if m.split(".")[0] in ("cupy", "numba")}


def test_listing_backends_never_imports_numbas_cuda_target():
    modules = _modules_after("import dnn; dnn.available_backends()")
    assert "numba.cuda" not in modules
