"""Fixtures shared by the test suite: one parametrisation over every backend dnn knows.

Backends that cannot run on this machine are reported as skipped with the reason `available_backends()`
gives, so a CPU-only run says plainly that the cupy tests did not run and why.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from dnn.backends import available_backends, get_backend

# Property tests (tests/test_properties.py): in CI the same 300 examples per property on every run (no
# example database, derandomized), without a per-example deadline, since a first call may compile a kernel.
# HYPOTHESIS_PROFILE=explore draws new examples each run, for looking for bugs by hand.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=300, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKEND_PARAMS = [
    pytest.param(
        status.name, id=status.name, marks=pytest.mark.skipif(not status.available, reason=status.reason or "")
    )
    for status in available_backends()
]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    """Each backend available here, in turn."""
    return get_backend(request.param)


@pytest.fixture
def reference():
    """The NumPy backend: every result is checked against it in float64."""
    return get_backend("numpy")


@pytest.fixture
def rng():
    return np.random.default_rng(20261127)


@pytest.fixture
def shared_data():
    """../shared/data beside the repository; tests that use it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA
