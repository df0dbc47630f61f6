"""The reference backend: the interface's own implementation on NumPy."""

import numpy

from .base import Backend


class NumpyBackend(Backend):
    """NumPy on the CPU; every other backend is checked against this one in float64.

    Threads: as `Backend`, several threads may use it at once on arrays of their own (NumPy releases the GIL
    in its loops and BLAS); one network still takes one call at a time.
    """

    name = "numpy"
    xp = numpy
