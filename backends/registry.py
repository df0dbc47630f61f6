"""Choosing a backend: by argument, `use_backend`, `set_backend`, or the DNN_BACKEND environment variable.

Precedence, highest first: an explicit name or instance passed to `get_backend`, the innermost
`use_backend(...)` block, `set_backend(...)`, DNN_BACKEND (read on each lookup, never at import; empty means
unset), then "numpy". Backend modules are imported only when their backend is asked for, so importing dnn
never imports numba or cupy.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
from typing import Iterator, NamedTuple

from ..errors import BackendUnavailableError
from .base import Backend

ENV_VAR = "DNN_BACKEND"
DEFAULT = "numpy"

# name -> (module inside dnn.backends, class name)
_REGISTRY = {
    "numpy": ("numpy_backend", "NumpyBackend"),
    "numba": ("numba_backend", "NumbaBackend"),
    "cupy": ("cupy_backend", "CupyBackend"),
    "array_api_strict": ("array_api_backend", "ArrayApiBackend"),
}

_instances: dict[str, Backend] = {}
_process_default: str | None = None
_scoped: contextvars.ContextVar[tuple[str | Backend, ...]] = contextvars.ContextVar("dnn_backend_scope", default=())


class BackendStatus(NamedTuple):
    name: str
    available: bool
    reason: str | None


def backend_names() -> tuple[str, ...]:
    """Every backend name dnn knows, available here or not."""
    return tuple(_REGISTRY)


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(_REGISTRY)}")
    return name


def _backend_class(name: str) -> type[Backend]:
    module_name, class_name = _REGISTRY[name]
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, class_name)


def _unavailable_reason(name: str) -> str | None:
    try:
        cls = _backend_class(name)
    except ImportError as exc:  # the backend's own module needs a package that is not installed
        return f"cannot import the {name} backend: {exc}"
    return cls.unavailable_reason()


def _instantiate(name: str) -> Backend:
    if name not in _instances:
        reason = _unavailable_reason(name)
        if reason is not None:
            raise BackendUnavailableError(f"backend {name!r} cannot run here: {reason}")
        _instances[name] = _backend_class(name)()
    return _instances[name]


def _requested_name() -> str | Backend:
    scope = _scoped.get()
    if scope:
        return scope[-1]
    if _process_default is not None:
        return _process_default
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        try:
            return _check_name(env)
        except ValueError as exc:
            raise ValueError(f"{ENV_VAR}={env!r}: {exc}") from None
    return DEFAULT


def get_backend(name: str | Backend | None = None) -> Backend:
    """The backend for `name`, or the current one when `name` is None (see the module docstring).

    Raises ValueError for an unknown name (listing the valid ones) and BackendUnavailableError for a known
    backend that cannot run on this machine (saying why). Instances are shared per name.
    """
    if isinstance(name, Backend):
        return name
    requested = _requested_name() if name is None else _check_name(name)
    if isinstance(requested, Backend):
        return requested
    return _instantiate(requested)


def set_backend(name: str | Backend | None) -> None:
    """Make `name` the process-wide backend (None returns to DNN_BACKEND / numpy). Checked at once."""
    global _process_default
    if name is not None:
        get_backend(name)
    _process_default = name


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Within the block, the current backend is `name` (checked on entry); yields the backend."""
    backend = get_backend(name)
    token = _scoped.set(_scoped.get() + (backend,))
    try:
        yield backend
    finally:
        _scoped.reset(token)


def available_backends() -> list[BackendStatus]:
    """Each known backend with whether it can run here and, when it cannot, why."""
    statuses = []
    for name in _REGISTRY:
        reason = _unavailable_reason(name)
        statuses.append(BackendStatus(name, reason is None, reason))
    return statuses
