"""Exception classes raised by dnn. Every one names the problem it reports."""


class DnnError(Exception):
    """Base class of every error dnn raises on purpose."""


class ShapeError(DnnError, ValueError):
    """An array has the wrong number of dimensions or a size that does not fit the network."""


class NonFiniteError(DnnError, ValueError):
    """An input holds NaN or infinity."""


class LabelError(DnnError, ValueError):
    """Labels are not {0, 1} (binary output) or not one-hot / in class range (softmax output)."""


class DTypeError(DnnError, TypeError):
    """An array's dtype is not one dnn computes in (float32, float64) and cannot be converted."""


class BackendUnavailableError(DnnError, RuntimeError):
    """A known backend cannot run on this machine; the message says why."""


class DivergenceError(DnnError, FloatingPointError):
    """Training produced a non-finite cost; the parameters of the last finite step are kept."""


class ModelFileError(DnnError, ValueError):
    """A saved model file is missing, truncated, corrupted or does not describe a network."""


class DataError(DnnError, ValueError):
    """A data file or data set cannot be loaded as (X, Y)."""


class ConcurrentUseError(DnnError, RuntimeError):
    """A network was used from a second thread while a call in another thread was still using it."""


class InsufficientMemoryError(DnnError, MemoryError):
    """A network, its optimizer state or a batch's buffers would need more memory than is available."""


def install_hint(extra: str) -> str:
    """How to install one of dnn's optional extras (pyproject.toml): from its source tree, where it installs from."""
    return f"pip install '.[{extra}]' in the dnn source tree"
