"""Generated numba source, imported from a real file so that numba's on-disk cache keeps its kernels.

numba caches a compiled function by its source file (path, modification time and size); code run by exec()
has no file, so its kernels would compile again in every process, and ``cache=True`` refuses it outright.
`load_generated_module(name, source)` writes `source` once to ``<dir>/dnn_generated_<name>_<hash>.py`` and
imports it: the same source always lands in the same file (never rewritten, so numba's index of it stays
valid), another source in another. The file is written atomically, in the first directory that can be had:
``dnn-generated`` under NUMBA_CACHE_DIR when set, else $XDG_CACHE_HOME/dnn/generated (~/.cache/dnn/generated),
else a directory of the system's temporary one that only this user can enter. Where none can be written the
module runs from memory and its kernels compile without the on-disk cache: it never fails for want of a
directory.

A generated module decorates its kernels with ``@njit(cache=CACHE)``: CACHE is set before its code runs
(True from a file, False from memory). Its DIGEST is the hash of its source.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import stat
import sys
import tempfile
import types

from ..outputs import replaced_atomically


def load_generated_module(name: str, source: str) -> types.ModuleType:
    """The module whose text is `source` (Python), imported from a content-hashed file when one can be written."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module_name = f"dnn_generated_{name}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = None
    for directory in _directories():
        try:
            path = _written(directory(), f"{module_name}.py", source)
            break
        except OSError:
            continue  # an unwritable location: the next one, else no cache at all
    if path is None:
        module = types.ModuleType(module_name)
        code = compile(source, f"<generated {name}>", "exec")
    else:
        module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(module_name, path))
        code = compile(source, path, "exec")
    module.CACHE, module.DIGEST = path is not None, digest
    sys.modules[module_name] = module  # before running it, as an import does
    try:
        exec(code, module.__dict__)  # noqa: S102 - text rendered from checked declarations
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _directories():
    """The candidate directories, first choice first (each a callable: an OSError when it cannot be had)."""
    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        yield lambda: os.path.join(configured, "dnn-generated")
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    yield lambda: os.path.join(home, "dnn", "generated")
    yield _private_temporary


def _private_temporary() -> str:
    """A directory of the system's temporary one that only this user can enter (OSError when it is not)."""
    path = os.path.join(tempfile.gettempdir(), f"dnn-{os.getuid()}" if hasattr(os, "getuid") else "dnn")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o077 or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        raise PermissionError(f"{path} is not a private directory")
    return path


def _written(directory: str, name: str, text: str) -> str:
    """The path of `name` in `directory` holding `text`: written once, atomically; left alone when it does."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as existing:
        if existing.read() == text:
            return path  # rewriting it would change its mtime and invalidate numba's cache
    with replaced_atomically(path, ".tmp") as temporary, open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
    return path
