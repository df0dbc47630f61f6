"""Compiling numba kernels in a helper process while the calling process goes on, and asking numba's cache.

`BackgroundCompile` runs `NumbaBackend.warmup(...)` in a child Python process: it compiles into numba's on-disk
cache, and the caller loads the result from there (milliseconds) once the child has exited. A thread would not
do on a 2-core machine: a compile holds the GIL for its Python half and numba's compiler lock throughout, so
it would slow every step taken meanwhile and block any other compile, and it could still be inside LLVM when
the interpreter exits. The child is killed when its owner is collected or when this process exits, so nothing
outlives the command: a run shorter than the compile never switches, and nothing is lost by that.
"""

from __future__ import annotations

import json
import subprocess
import sys
import weakref

# The child's program: the parent's sys.path (so that it imports the same dnn), then one warm-up.
_CHILD = (
    "import json, sys; spec = json.loads(sys.stdin.read()); sys.path[:0] = spec['path']; "
    "from dnn.backends.numba_backend import NumbaBackend; NumbaBackend().warmup(*spec['args'], **spec['kwargs'])"
)


def is_cached(kernel, args) -> bool:
    """Whether `kernel` has code for the types of `args` in this process or in numba's on-disk cache.

    numba has no public query for its cache, so this asks the dispatcher's cache index with the key that
    `Dispatcher.compile` looks up (the argument types, the CPU, the bytecode and the closure's constants).
    """
    signature = tuple(kernel.typeof_pyval(a) for a in args)
    if signature in kernel.overloads:
        return True
    cache = kernel._cache
    return cache._index_key(signature, kernel.targetctx.codegen()) in cache._cache_file._load_index()


def _stop(process) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def can_compile_in_background() -> bool:
    """Whether a child Python can be started: not in a frozen application, whose executable is not a Python."""
    return bool(sys.executable) and not getattr(sys, "frozen", False)


class BackgroundCompile:
    """`NumbaBackend().warmup(*args, **kwargs)` in a child process (JSON-serialisable arguments).

    `BackgroundCompile.shared(...)` rather than the constructor: steps that need the same kernels (a run's
    full mini-batches and its shorter last one) share one child. Raises OSError when it cannot be started.
    """

    _running = weakref.WeakValueDictionary()  # warm-up spec -> the child compiling it, while a step holds it

    @classmethod
    def shared(cls, *args, **kwargs) -> BackgroundCompile:
        """The child already compiling this warm-up, or a new one."""
        key = json.dumps([args, kwargs], sort_keys=True)
        child = cls._running.get(key)
        if child is None:
            child = cls._running[key] = cls(*args, **kwargs)
        return child

    def __init__(self, *args, **kwargs):
        spec = json.dumps({"path": [str(entry) for entry in sys.path], "args": args, "kwargs": kwargs})
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._process.stdin.write(spec.encode())
        self._process.stdin.close()
        weakref.finalize(self, _stop, self._process)  # also called at interpreter exit

    @property
    def pid(self) -> int:
        """The helper's process id."""
        return self._process.pid

    def done(self) -> bool:
        """True once the child has exited (successfully or not); a cheap poll, no wait."""
        return self._process.poll() is not None

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has exited (0: it compiled everything), else None."""
        return self._process.returncode
