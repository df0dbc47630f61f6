"""dnn: a fully connected L-layer network trained by textbook forward and backward propagation.

The propagation code is written once against the array-backend interface in `dnn.backends`; the backend
(numpy, numba, cupy, array_api_strict) is chosen with DNN_BACKEND, `set_backend`, `use_backend` or a `backend=` argument.
Importing dnn imports numpy only: numba and cupy are imported when their backend is first asked for.
"""

import os as _os

# In a source checkout backends/ and kernels/ sit beside dnn/ (pyproject's package-dir maps them into the
# package when it is installed). Let `dnn.backends` and `dnn.kernels` resolve there too, so that code run
# from the checkout (python -m dnn, pytest) imports the checkout's own modules, installed copy or not.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(__path__[0], "backends")) and _os.path.isfile(
    _os.path.join(_checkout, "backends", "__init__.py")
):
    __path__.append(_checkout)

from .backends import available_backends, get_backend, set_backend, use_backend  # noqa: E402
from .errors import (
    BackendUnavailableError,
    ConcurrentUseError,
    DataError,
    DivergenceError,
    DnnError,
    DTypeError,
    InsufficientMemoryError,
    LabelError,
    ModelFileError,
    NonFiniteError,
    ShapeError,
)
from .gradcheck import GradcheckResult, gradcheck
from .metrics_log import MetricsLog
from .network import Network
from .propagation import Batch
from .step import TrainStep
from .optimizers import SGD, Adam, Momentum, Optimizer
from .training import History, fit

__version__ = "0.1.0"

__all__ = [
    "Adam",
    "History",
    "MetricsLog",
    "Momentum",
    "Optimizer",
    "SGD",
    "TrainStep",
    "fit",
    "BackendUnavailableError",
    "Batch",
    "ConcurrentUseError",
    "DataError",
    "DivergenceError",
    "DnnError",
    "DTypeError",
    "GradcheckResult",
    "InsufficientMemoryError",
    "LabelError",
    "ModelFileError",
    "Network",
    "NonFiniteError",
    "ShapeError",
    "available_backends",
    "get_backend",
    "gradcheck",
    "set_backend",
    "use_backend",
]
