"""dnn: a fully connected L-layer network trained by textbook forward and backward propagation.

The propagation code is written once against the array-backend interface in `dnn.backends`; the backend
(numpy, numba, cupy) is chosen with DNN_BACKEND, `set_backend`, `use_backend` or a `backend=` argument.
Importing dnn imports numpy only: numba and cupy are imported when their backend is first asked for.
"""

from .backends import available_backends, get_backend, set_backend, use_backend
from .errors import (
    BackendUnavailableError,
    DataError,
    DivergenceError,
    DnnError,
    DTypeError,
    LabelError,
    ModelFileError,
    NonFiniteError,
    ShapeError,
)
from .gradcheck import GradcheckResult, gradcheck
from .network import Batch, Network
from .optimizers import SGD, Adam, Momentum, Optimizer
from .training import History, fit

__version__ = "0.1.0"

__all__ = [
    "Adam",
    "History",
    "Momentum",
    "Optimizer",
    "SGD",
    "fit",
    "BackendUnavailableError",
    "Batch",
    "DataError",
    "DivergenceError",
    "DnnError",
    "DTypeError",
    "GradcheckResult",
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
