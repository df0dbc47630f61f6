"""Array backends: the `Backend` interface and its NumPy, Numba and CuPy implementations.

Installed as `dnn.backends`. Only the interface and the registry are imported here; a backend's module
(and numba or cupy with it) is imported the first time that backend is asked for.
"""

from ..activations import ACTIVATIONS
from .base import OUTPUTS, Backend
from .registry import (
    ENV_VAR,
    BackendStatus,
    available_backends,
    backend_names,
    get_backend,
    set_backend,
    use_backend,
)

__all__ = [
    "ACTIVATIONS",
    "ENV_VAR",
    "OUTPUTS",
    "Backend",
    "BackendStatus",
    "available_backends",
    "backend_names",
    "get_backend",
    "set_backend",
    "use_backend",
]
