"""Threads: two networks train in two threads as they would one after the other; one network refuses a second thread.

Training in threads runs in a child process with a timeout: before numba's parallel launches took turns, its
workqueue threading layer aborted the whole process ("Concurrent access has been detected"), which would
take pytest down with it.
"""

import copy
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import dnn
from dnn.errors import ConcurrentUseError
from dnn.step import TrainStep
from dnn.tolerances import gradient_rtol

REPO = Path(__file__).resolve().parents[1]

# Layers of 512 units on 512 examples: 2^18 elements, so every hidden-layer kernel runs its parallel variant.
_TWO_THREADS = """
import json, sys, threading
import numpy as np
import dnn
from dnn.tolerances import relative_difference

backend = sys.argv[1]
rng = np.random.default_rng(0)
X = rng.standard_normal((16, 512))
Y = (rng.random((1, 512)) < 0.5).astype(float)

def train(seed, optimizer, out):
    net = dnn.Network([16, 512, 512, 1], dtype="float64", backend=backend, seed=seed)
    history = net.fit(X, Y, epochs=6, optimizer=optimizer, lr=0.01)  # the full batch: (512, 512) layers
    out[(seed, optimizer)] = (history.cost, net.get_parameters())

runs = [(1, "sgd"), (2, "adam")]
alone, together = {}, {}
for seed, optimizer in runs:
    train(seed, optimizer, alone)
threads = [threading.Thread(target=train, args=(seed, optimizer, together)) for seed, optimizer in runs]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
worst = 0.0
for run in runs:
    (cost_a, params_a), (cost_t, params_t) = alone[run], together[run]
    worst = max([worst, relative_difference(cost_t, cost_a)] + [relative_difference(params_t[k], params_a[k]) for k in params_a])
print(json.dumps({"finished": sorted(together) == sorted(alone), "worst": worst}))
"""


def test_two_threads_train_two_networks_as_they_would_one_after_the_other(backend):
    done = subprocess.run(
        [sys.executable, "-c", _TWO_THREADS, backend.name],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, NUMBA_NUM_THREADS="2"),
    )
    assert done.returncode == 0, f"the child process failed ({done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["finished"]
    assert result["worst"] <= gradient_rtol("float64")


class _Held:
    """A gradient reducer that holds its step until released: the step is then certainly running."""

    def __init__(self):
        self.inside, self.release = threading.Event(), threading.Event()

    def __call__(self, grad, state):  # one worker: the sums are already the totals
        self.inside.set()
        assert self.release.wait(timeout=60)


def _data(rng, m=8):
    return rng.standard_normal((4, m)), (rng.random((1, m)) < 0.5).astype(float)


def test_a_network_stepped_in_another_thread_refuses_this_one_by_name(backend, rng):
    net = dnn.Network([4, 3, 1], dtype="float64", backend=backend)
    X, Y = _data(rng)
    held = _Held()
    step = TrainStep(net, 8, reducer=held)
    errors = []

    def step_in_a_thread():
        try:
            step(net.batch(X, Y), 0.1)
        except Exception as exc:  # reported to the test below, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=step_in_a_thread)
    thread.start()
    try:
        assert held.inside.wait(timeout=60)
        before = net.get_parameters()
        for call in (
            lambda: net.step(X, Y),
            lambda: net.fit(X, Y, epochs=1),
            lambda: net.evaluate(X, Y),
            lambda: net.predict(X),
            lambda: net.backward(X, Y),
            lambda: net.set_parameters(before),
        ):
            with pytest.raises(
                ConcurrentUseError, match=r"Network\(\[4, 3, 1\].* is being stepped .*from another thread"
            ):
                call()
    finally:
        held.release.set()
        thread.join(timeout=60)
    assert not errors
    assert isinstance(ConcurrentUseError("x"), RuntimeError)
    net.step(X, Y)  # the other thread is done: this one may step now
    step.read()


def test_calls_nested_in_one_thread_are_not_refused(backend, rng):
    """fit's callbacks run in fit's thread, inside fit: evaluating or saving the network there is fine."""
    net = dnn.Network([4, 3, 1], dtype="float64", backend=backend)
    X, Y = _data(rng)
    seen = []
    net.fit(X, Y, epochs=2, validation=(X, Y), callbacks=[lambda n, epoch, logs: seen.append(n.evaluate(X, Y)["cost"])])
    assert len(seen) == 2


def test_a_failed_call_leaves_the_network_free_for_other_threads(backend, rng):
    net = dnn.Network([4, 3, 1], dtype="float64", backend=backend)
    X, Y = _data(rng)
    with pytest.raises(ValueError):
        net.step(X, Y, lr=-1.0)
    done = []
    thread = threading.Thread(target=lambda: done.append(net.step(X, Y)))
    thread.start()
    thread.join(timeout=60)
    assert len(done) == 1 and np.isfinite(done[0])


def test_a_deep_copy_is_a_network_of_its_own(rng):
    net = dnn.Network([4, 3, 1], dtype="float64", backend="numpy")
    X, Y = _data(rng)
    with net.busy:  # as if another call were running on the original
        copy_ = copy.deepcopy(net)
    done = []
    thread = threading.Thread(target=lambda: done.append(copy_.step(X, Y)))
    with net.busy:
        thread.start()
        thread.join(timeout=60)
    assert len(done) == 1 and done[0] == net.loss(X, Y)
