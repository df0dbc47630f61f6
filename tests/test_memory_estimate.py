"""Memory: what a network will allocate is worked out first, and more than the machine has is refused by the figures."""

import os

import numpy as np
import pytest

import dnn
from dnn.backends.base import Backend, host_available_memory
from dnn.errors import DnnError, InsufficientMemoryError
from dnn.initializers import initial_parameters
from dnn.step import TrainStep
from dnn.validation import format_bytes, memory_estimate

DIMS = [6, 5, 4, 3]


def _nbytes(arrays, backend=None) -> int:
    """Bytes the arrays hold: host arrays, or `backend`'s (sizes times their dtype's itemsize)."""
    return sum(a.size * (backend.host_dtype(a) if backend else a.dtype).itemsize for a in arrays)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_estimate_is_exactly_what_a_network_and_its_step_allocate(backend, dtype, rng):
    m = 7
    net = dnn.Network(DIMS, dtype=dtype, backend=backend)
    step = TrainStep(net, m, "adam", dropout=0.5)
    X, Y = rng.standard_normal((DIMS[0], m)), np.eye(DIMS[-1])[:, rng.integers(0, DIMS[-1], m)]
    step(net.batch(X, Y), 0.01, rng=backend.random_generator(0))
    step.read()
    ws = net.workspace(m)
    need = memory_estimate(DIMS, dtype, m, optimizer_slots=2, dropout=True)
    assert need.parameters == _nbytes([net.params.theta], backend)
    assert need.gradients == _nbytes([net.params.grad], backend)
    assert need.initial_values == _nbytes(a for layer in initial_parameters(DIMS) for a in layer)
    assert need.optimizer == _nbytes(step.optimizer.state.values(), backend)
    assert need.workspace == _nbytes(ws.A[1:] + ws.D[1:] + [ws.ZL, ws.cost], backend)
    assert need.dropout == _nbytes(list(ws.masks.values()) + list(ws.dropped.values()), backend)


def test_a_network_larger_than_any_machine_is_refused_before_allocating_with_the_figure():
    with pytest.raises(
        InsufficientMemoryError,
        match=r"Network\(\[5000000, 5000000, 1\]\) in float32 needs 364 TiB "
        r"\(parameters 90\.9 TiB, gradients 90\.9 TiB, .*\), but only .* available",
    ):
        dnn.Network([5_000_000, 5_000_000, 1])
    assert issubclass(InsufficientMemoryError, MemoryError) and issubclass(InsufficientMemoryError, DnnError)


@pytest.fixture
def available(monkeypatch):
    """Set how many bytes every backend reports free: `available(n)`."""
    return lambda n: monkeypatch.setattr(Backend, "available_memory", lambda self: n)


def test_a_network_is_checked_against_what_the_backend_has_free(available):
    need = memory_estimate([1000, 1000, 1], "float32")
    total = need.parameters + need.gradients + need.initial_values
    available(total)
    dnn.Network([1000, 1000, 1])  # exactly enough
    available(total - 1)
    with pytest.raises(InsufficientMemoryError, match=f"needs {format_bytes(total)} .*only {format_bytes(total - 1)}"):
        dnn.Network([1000, 1000, 1])


def test_a_batch_size_whose_buffers_do_not_fit_is_refused_before_they_are_allocated(available):
    net = dnn.Network([10, 100, 1])
    available(10**6)
    need = format_bytes(memory_estimate([10, 100, 1], "float32", 10**6).workspace)
    with pytest.raises(InsufficientMemoryError, match=rf"on batches of 1000000 examples needs {need} \(workspace"):
        TrainStep(net, 10**6)
    with pytest.raises(InsufficientMemoryError, match="workspace"):
        net.workspace(10**6)
    assert 10**6 not in net._workspaces


def test_the_optimizer_state_counts_only_until_it_is_allocated(available, rng):
    net = dnn.Network([100, 100, 1])
    X, Y = rng.standard_normal((100, 4)), np.ones((1, 4))
    step = TrainStep(net, 4, "adam")
    need = memory_estimate([100, 100, 1], "float32", optimizer_slots=2)
    available(need.optimizer - 1)
    with pytest.raises(InsufficientMemoryError, match="optimizer state"):
        TrainStep(net, 4, step.optimizer)  # the same optimizer, its state not yet allocated
    available(None)
    step(net.batch(X, Y), 0.01)  # allocates the state
    available(0)
    TrainStep(net, 4, step.optimizer)  # nothing left to allocate: nothing to refuse


def test_a_backend_that_cannot_say_refuses_nothing(available):
    available(None)
    net = dnn.Network([1000, 1000, 1])
    assert net.workspace(10).m == 10


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="no /proc/meminfo to compare with")
def test_the_host_reports_memory_it_has():
    free = host_available_memory()
    with open("/proc/meminfo") as meminfo:
        total = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemTotal:"))
    assert 0 < free <= total


@pytest.mark.parametrize(
    "n, shown",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (200 * 2**30, "200 GiB"),
        (2 * 10**14, "182 TiB"),
        (5 * 10**15, "4547 TiB"),
    ],
)
def test_sizes_are_shown_in_binary_units(n, shown):
    assert format_bytes(n) == shown
