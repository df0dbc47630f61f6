"""The GPU backend: the interface's array-namespace code running on CuPy.

cupy is imported when this backend is instantiated, never when dnn is imported. Until fused CUDA kernels
land, every operation is the interface's own CuPy-expression implementation.
"""

from .base import Backend


class CupyBackend(Backend):
    """CuPy on the current CUDA device."""

    name = "cupy"

    def __init__(self):
        import cupy

        self.xp = cupy

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import cupy
        except ImportError as exc:
            return f"cupy is not installed ({exc}); install dnn-engine[cuda12] or dnn-engine[cuda13]"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError without a driver; its type lives in cupy
            return f"no usable CUDA device: {exc}"
        if count == 0:
            return "no CUDA device is visible"
        return None

    def to_numpy(self, a):
        return self.xp.asnumpy(a)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()
