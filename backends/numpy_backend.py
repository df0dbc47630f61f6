"""The reference backend: the interface's own implementation on NumPy."""

import numpy

from .base import Backend


class NumpyBackend(Backend):
    """NumPy on the CPU; every other backend is checked against this one in float64."""

    name = "numpy"
    xp = numpy
