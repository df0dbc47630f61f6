"""Generated numba source, imported from a real file so that `njit(cache=True)` caches its kernels on disk.

numba caches a compiled function by its source file (path and modification time); code run by exec() has no
file, so its kernels would compile again in every process. `load_generated_module(name, source)` writes
`source` once to ``<dir>/<name>_<hash of source>.py`` and imports it: the same source always lands in the same
file (never rewritten, so numba's index of it stays valid), another source in another. The directory is
``dnn-generated`` under NUMBA_CACHE_DIR when set, else ~/.cache/dnn/generated, else a private (0700)
temporary directory; when none can be written, the module runs from memory and its kernels compile without
the on-disk cache. It never fails for want of a directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import types
from functools import cache
from pathlib import Path


def load_generated_module(name: str, source: str) -> types.ModuleType:
    """The module whose text is `source` (Python), imported from a content-hashed file when one can be written."""
    module_name = f"dnn_generated_{name}_{hashlib.sha256(source.encode()).hexdigest()[:16]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = _written(f"{module_name}.py", source)
    if path is None:
        module = types.ModuleType(module_name)
        exec(compile(source, f"<generated {name}>", "exec"), module.__dict__)  # noqa: S102 - our own generated text
    else:
        module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(module_name, path))
        sys.modules[module_name] = module  # before running it, as an import does
        try:
            module.__spec__.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    sys.modules[module_name] = module
    return module


def _written(filename: str, source: str) -> Path | None:
    """The path of a file holding `source` in the first writable generated-source directory, or None."""
    for directory in _directories():
        path = directory / filename
        try:
            if path.is_file() and path.read_text() == source:
                return path
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
            with os.fdopen(fd, "w") as file:
                file.write(source)
            os.replace(temporary, path)  # atomic: a concurrent reader sees the whole file or none
            return path
        except OSError:
            continue
    return None


def _directories():
    """The directories to try, in order; the private temporary one is made only when reached."""
    numba_cache = os.environ.get("NUMBA_CACHE_DIR")
    if numba_cache:
        yield Path(numba_cache) / "dnn-generated"
    yield Path.home() / ".cache" / "dnn" / "generated"
    private = _private_directory()
    if private is not None:
        yield private


@cache
def _private_directory() -> Path | None:
    """A 0700 temporary directory of this process (mkdtemp's mode), made on first need."""
    try:
        return Path(tempfile.mkdtemp(prefix="dnn-generated-"))
    except OSError:
        return None
