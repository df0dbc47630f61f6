"""Compiled kernels that backends dispatch to (installed as `dnn.kernels`).

Nothing here compiles at import time: Numba kernels compile on first call (and are cached on disk), CUDA
kernels on first launch.
"""
