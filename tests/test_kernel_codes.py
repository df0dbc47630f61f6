"""Every registered activation and optimizer reaches the compiled kernels, and the step state has one layout.

The names are declared once (`dnn/activations.py` ACTIVATIONS, `dnn/optimizers.py` OPTIMIZERS,
`kernels/step_state.py`); numba and CUDA read codes and indices derived from them (an activation's kernel
code is generated from its declaration and tested by `tests/test_activations.py`). These tests fail when an
optimizer is added in its declaration but one kernel was not taught it, and when the CUDA #defines drift
from the Python layout.
"""

import importlib
import inspect
import re

import pytest

from dnn.activations import ACTIVATION_CODES, ACTIVATIONS
from dnn.backends.base import Backend
from dnn.backends.cupy_backend import CupyBackend
from dnn.kernels import cupy_common, cupy_updates, step_state
from dnn.optimizers import OPTIMIZERS


def _defines(code: str) -> dict:
    """{name: value} of the `#define NAME <integer>` lines of a CUDA source."""
    return {name: int(value) for name, value in re.findall(r"^#define (\w+) (-?\d+)$", code, re.MULTILINE)}


# ---------------------------------------------------------------------------------------------- the step state
def test_the_step_state_slots_number_each_index_once():
    assert list(step_state.SLOTS.values()) == list(range(step_state.STATE_SIZE))


def test_the_totals_follow_the_step_slots_in_order():
    """commit_step adds the step's slots into the totals as one slice (Python) or one loop (CUDA)."""
    steps = [step_state.STEP_COST, step_state.STEP_CORRECT, step_state.STEP_EXAMPLES]
    totals = [step_state.TOTAL_COST, step_state.TOTAL_CORRECT, step_state.TOTAL_EXAMPLES]
    assert steps == list(range(steps[0], steps[0] + step_state.STEP_SLOTS))
    assert totals == list(range(totals[0], totals[0] + step_state.STEP_SLOTS))


def test_the_cuda_step_state_defines_are_the_python_layout():
    defines = _defines(cupy_common.PRELUDE)
    for name, index in step_state.SLOTS.items():
        assert defines[name] == index, name
    assert defines["STATE_SIZE"] == step_state.STATE_SIZE and defines["STEP_SLOTS"] == step_state.STEP_SLOTS


#: The modules that read or write step-state slots.
SLOT_USERS = [
    "backends.base",
    "backends.cupy_backend",
    "backends.cupy_graph",
    "backends.numba_steps",
    "kernels.cupy_checks",
    "kernels.cupy_updates",
    "kernels.numba_step",
]


@pytest.mark.parametrize("module", SLOT_USERS)
def test_no_source_indexes_the_step_state_by_number(module):
    """Every kernel and backend names its slots: a bare state[3] would outlive a change of the layout."""
    if module.endswith("numba_step"):
        pytest.importorskip("numba")
    source = inspect.getsource(importlib.import_module(f"dnn.{module}"))
    assert not re.search(r"state\[\d", source)


# ---------------------------------------------------------------------------------------------- activations
def test_the_cuda_activation_defines_are_the_activation_codes():
    defines = _defines(cupy_common.PRELUDE)
    assert {name: defines[f"ACT_{name.upper()}"] for name in ACTIVATIONS} == ACTIVATION_CODES


# ---------------------------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_has_a_generated_cuda_kernel_the_cupy_backend_launches(name):
    rule = OPTIMIZERS[name].rule
    assert f"{name}_update" in cupy_updates.SOURCE.templated
    assert cupy_updates.update_kernel_source(rule) in cupy_updates.SOURCE.code
    assert CupyBackend.optimizer_update is not Backend.optimizer_update


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_has_a_generated_numba_kernel_the_numba_backend_runs(name):
    pytest.importorskip("numba")
    from dnn.backends.numba_backend import NumbaBackend
    from dnn.kernels import numba_updates

    rule = OPTIMIZERS[name].rule
    for parallel in (False, True):
        kernel = numba_updates.optimizer_kernel(rule, parallel)
        assert kernel.py_func.__name__ == f"{name}_update{'_parallel' * parallel}"
        assert bool(kernel.targetoptions.get("parallel")) == parallel
    assert NumbaBackend.optimizer_update is not Backend.optimizer_update
