"""`TrainStep` takes the same step whichever strategy runs it, and keeps its promises on divergence.

Strategies: "phases" (the backend's operations one by one), "fused-update" (each W updated inside the GEMM that
computes its gradient, after Σ|A[l-1]|·Σ|D[l]| proves every gradient finite, else the gradients stored and
checked) and "compiled" (the backend takes the whole step in one call). Each must match NumPy float64's
phase-by-phase step, and none may move anything when a cost or gradient is not finite.
"""

import warnings
import weakref

import numpy as np
import pytest

import dnn
from dnn.errors import DivergenceError
from dnn.kernels.step_state import STATE_SIZE, STEP_COST, STEP_EXAMPLES
from dnn.optimizers import OPTIMIZERS
from dnn.step import StepState, TrainStep
from dnn.tolerances import gradient_rtol, relative_difference

pytest.importorskip("numba")

from dnn.backends.numba_backend import NumbaBackend  # noqa: E402
from dnn.backends.numba_steps import finite_product_limit  # noqa: E402

# (strategy, how the numba backend is set up for it)
WAYS = [
    "phases",
    "compiled",
    "compiled-stored-gradients",
    "fused-update",
    "fused-update-stored-gradients",
    "phases-without-numpy-cblas",
]


def _numba(way, monkeypatch):
    if way == "phases-without-numpy-cblas":  # numpy linked to a BLAS outside its wheel: numpy.matmul
        monkeypatch.setattr("dnn.backends.numba_backend.numpy_cblas_gemm", lambda: None)
        return NumbaBackend()
    backend = NumbaBackend()
    if backend.cblas is None:
        pytest.skip("numpy's CBLAS was not found: the numba backend has no whole-step strategy")
    if way.endswith("stored-gradients"):
        monkeypatch.setattr("dnn.backends.numba_steps.finite_product_limit", lambda dtype: 0.0)  # nothing provable
    return backend


def _strategy(way):
    return way.split("-stored")[0].split("-without")[0]


def _data(dims, m, rng):
    X = rng.standard_normal((dims[0], m))
    Y = rng.integers(0, max(2, dims[-1]), m)  # binary labels, or class indices for a softmax output
    return X, Y


def _agrees(candidate, reference, dtype):
    theta = candidate.backend.to_numpy(candidate.flat_buffers()[0])
    return relative_difference(theta, reference.flat_buffers()[0]) <= gradient_rtol(dtype)


@pytest.mark.parametrize(
    "way,l2", [(way, l2) for way in WAYS for l2 in (0.0, 0.7) if not (way.startswith("compiled") and l2)]
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "dims,m,activation", [([6, 8, 5, 1], 20, "tanh"), ([7, 9, 4], 13, "relu"), ([3, 1], 1, "relu")]
)
def test_every_sgd_strategy_takes_the_reference_step(way, l2, dtype, dims, m, activation, rng, monkeypatch):
    strategy = _strategy(way)  # numba's compiled step has no L2: the fused update takes those steps
    X, Y = _data(dims, m, rng)
    reference = dnn.Network(dims, activations=activation, dtype="float64", backend="numpy")
    candidate = dnn.Network(dims, activations=activation, dtype=dtype, backend=_numba(way, monkeypatch))
    ref_step = TrainStep(reference, m, "sgd", l2=l2, strategy="phases")
    step = TrainStep(candidate, m, "sgd", l2=l2, strategy=strategy)
    assert step.strategy == strategy
    ref_batch, batch = reference.batch(X, Y), candidate.batch(X, Y)
    for _ in range(3):
        ref_step(ref_batch, 0.3)
        step(batch, 0.3)
        ref_cost, cost = ref_step.read().cost, step.read().cost
        assert abs(cost - ref_cost) <= gradient_rtol(dtype) * max(1.0, abs(ref_cost))
    assert _agrees(candidate, reference, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("l2,dropout", [(0.0, None), (0.5, None), (0.0, 0.3), (0.4, [0.2, 0.5])])
def test_the_phases_take_the_reference_step_on_every_backend(backend, dtype, optimizer, l2, dropout, rng):
    dims, m = [5, 7, 6, 3], 11
    X, Y = _data(dims, m, rng)
    reference = dnn.Network(dims, activations="sigmoid", dtype="float64", backend="numpy")
    candidate = dnn.Network(dims, activations="sigmoid", dtype=dtype, backend=backend)
    ref_step = TrainStep(reference, m, optimizer, l2=l2, dropout=dropout)
    step = TrainStep(candidate, m, optimizer, l2=l2, dropout=dropout)
    ref_batch, batch = reference.batch(X, Y), candidate.batch(X, Y)
    for k in range(3):
        # the same masks on both: drawn on the host by NumPy from the same seed
        ref_step(ref_batch, 0.05, rng=np.random.default_rng(k))
        step(batch, 0.05, rng=_host_masks_rng(candidate.backend, k))
    assert step.read().cost == pytest.approx(ref_step.read().cost, rel=gradient_rtol(dtype))
    assert _agrees(candidate, reference, dtype)


def _host_masks_rng(backend, seed):
    """A generator drawing exactly NumPy's `default_rng(seed)` numbers on any backend (dropout masks)."""

    class HostDraws:
        def __init__(self):
            self.rng = np.random.default_rng(seed)

        def random(self, shape, dtype):
            return backend.asarray(self.rng.random(shape, dtype=np.float64), dtype=dtype)

    return HostDraws()


def test_the_strategy_is_chosen_once_from_the_settings_and_the_backend(rng, monkeypatch):
    small, large = [6, 8, 1], [6, 600, 1]
    numba = _numba("compiled", monkeypatch)
    assert TrainStep(dnn.Network(small, backend=numba), 20).strategy == "compiled"
    assert TrainStep(dnn.Network(large, backend=numba), 1000).strategy == "fused-update"  # 600·1000 ≥ 2^18: parallel
    assert TrainStep(dnn.Network(small, backend=numba), 20, l2=0.1).strategy == "fused-update"
    assert TrainStep(dnn.Network(small, backend=numba), 20, "adam").strategy == "phases"
    assert TrainStep(dnn.Network(small, backend=numba), 20, dropout=0.5).strategy == "phases"
    assert TrainStep(dnn.Network(small, backend=numba), 20, reducer=lambda g, s: None).strategy == "phases"
    assert TrainStep(dnn.Network(small, backend="numpy"), 20).strategy == "phases"


@pytest.mark.parametrize(
    "strategy,settings,reason",
    [
        ("fused-update", dict(optimizer="adam"), "plain SGD"),
        ("compiled", dict(reducer=lambda g, s: None), "reducer"),
        ("compiled", dict(optimizer="momentum"), "plain SGD, not optimizer 'momentum'"),
        ("compiled", dict(backend="numpy"), "numpy backend cannot run it"),
        ("warp-speed", {}, "unknown strategy"),
    ],
)
def test_a_strategy_that_cannot_run_is_a_clear_error(strategy, settings, reason, monkeypatch):
    backend = settings.pop("backend", None) or _numba("compiled", monkeypatch)
    with pytest.raises(ValueError, match=reason):
        TrainStep(dnn.Network([4, 3, 1], backend=backend), 8, strategy=strategy, **settings)


class _Compiling:
    """A background compile of the whole-step kernel that has not finished (done=False) or has failed (done=True)."""

    def __init__(self, done):
        self._done = done
        self.returncode = 1 if done else None

    def done(self):
        return self._done


def _cold_cache(monkeypatch, done=False):
    """The whole-step kernel is not in numba's cache, and its background compile is `_Compiling(done)`."""
    monkeypatch.setattr("dnn.backends.numba_steps.is_cached", lambda kernel, args: False)
    monkeypatch.setattr("dnn.backends.numba_steps.BackgroundCompile.shared", lambda *args, **kwargs: _Compiling(done))


@pytest.mark.parametrize("activations", ["relu", "leaky_relu", "sigmoid", "tanh", "linear", ["tanh", "relu"]])
@pytest.mark.parametrize("dims", [[6, 8, 5, 1], [6, 8, 5, 4]])  # a sigmoid and a softmax output
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_while_the_compiled_step_compiles_its_stand_in_takes_the_same_steps_bit_for_bit(
    activations, dims, dtype, rng, monkeypatch
):
    backend = _numba("compiled", monkeypatch)
    X, Y = _data(dims, 20, rng)
    nets = [dnn.Network(dims, activations=activations, dtype=dtype, backend=backend, seed=1) for _ in range(2)]
    kernel_step = TrainStep(nets[0], 20, strategy="compiled")  # asked for by name: the kernel, compiled now
    _cold_cache(monkeypatch)
    stand_in_step = TrainStep(nets[1], 20)  # chosen by default: the stand-in while the kernel compiles
    assert stand_in_step.strategy == "compiled"
    batches = [net.batch(X, Y) for net in nets]
    for _ in range(20):
        kernel_step(batches[0], 0.3)
        stand_in_step(batches[1], 0.3)
    assert kernel_step._whole_step.ready and not stand_in_step._whole_step.ready
    assert kernel_step.read() == stand_in_step.read()
    np.testing.assert_array_equal(nets[0].flat_buffers()[0], nets[1].flat_buffers()[0])


def test_when_the_background_compile_fails_the_stand_in_takes_every_step(rng, monkeypatch):
    backend = _numba("compiled", monkeypatch)
    _cold_cache(monkeypatch, done=True)
    net = dnn.Network([6, 8, 1], backend=backend)
    step, batch = TrainStep(net, 20), net.batch(*_data([6, 8, 1], 20, rng))
    step(batch, 0.1)  # the stand-in's step; the helper starts
    with pytest.warns(RuntimeWarning, match="exit status 1. Training goes on kernel by kernel"):
        step(batch, 0.1)  # the helper has failed: said once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step(batch, 0.1)  # and not again
    assert step._whole_step._background is False and not step._whole_step.ready
    assert step.read().steps == 3


def test_steps_that_need_the_same_kernel_share_one_background_compile(rng, monkeypatch):
    """A run's full mini-batches and its shorter last one need the same compiled kernel: one helper compiles it."""
    from dnn.backends.numba_background import BackgroundCompile

    backend = _numba("compiled", monkeypatch)
    started = []
    monkeypatch.setattr("dnn.backends.numba_steps.is_cached", lambda kernel, args: False)
    monkeypatch.setattr(BackgroundCompile, "_running", weakref.WeakValueDictionary())
    monkeypatch.setattr(BackgroundCompile, "__init__", lambda self, *args, **kwargs: started.append(args))
    monkeypatch.setattr(BackgroundCompile, "done", lambda self: False)
    net = dnn.Network([6, 8, 1], backend=backend)
    X, Y = _data([6, 8, 1], 20, rng)
    net.fit(X, Y, epochs=2, batch_size=8, optimizer="sgd", seed=0)  # batches of 8, 8 and 4
    assert started == [([6, 8, 1], "float32")], f"helpers started: {started}"


def test_the_update_inside_the_products_makes_no_update_or_check_pass(rng, monkeypatch):
    backend = _numba("fused-update", monkeypatch)
    net = dnn.Network([6, 8, 5, 1], backend=backend)
    step = TrainStep(net, 20, strategy="fused-update")
    batch = net.batch(*_data([6, 8, 5, 1], 20, rng))
    monkeypatch.setattr(backend, "all_finite", lambda a: pytest.fail("a finiteness pass over the gradients"))
    monkeypatch.setattr(backend, "sgd_update", lambda *a, **k: pytest.fail("an update pass"))
    before = net.get_parameters()
    step(batch, 0.1)
    assert step.read().steps == 1
    assert all(not np.array_equal(value, before[key]) for key, value in net.get_parameters().items())


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy.matmul's, on the way to the error
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_gradient_that_overflows_under_a_finite_cost_leaves_the_parameters(way, dtype, monkeypatch):
    """x = (big, -big) cancels in W1·x, so the cost is finite, but dW1 = (W2ᵀ·dZ2)·xᵀ overflows."""
    big = np.finfo(dtype).max / 2
    net = dnn.Network([2, 2, 1], activations="linear", dtype=dtype, backend=_numba(way, monkeypatch))
    net.set_parameters(
        {"W1": np.ones((2, 2)), "b1": np.zeros((2, 1)), "W2": np.full((1, 2), 1e10), "b2": np.zeros((1, 1))}
    )
    batch = net.batch(np.array([[big], [-big]]), np.array([1.0]))
    step = TrainStep(net, 1, strategy=_strategy(way))
    before = net.get_parameters()
    step(batch, 0.5)
    with pytest.raises(DivergenceError, match="non-finite"):
        step.read()
    for key, value in net.get_parameters().items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("way", WAYS)
def test_a_nan_parameter_stops_the_step_before_any_update(way, rng, monkeypatch):
    net = dnn.Network([4, 3, 1], dtype="float64", backend=_numba(way, monkeypatch))
    batch = net.batch(*_data([4, 3, 1], 8, rng))
    net.parameters["W1"][0, 0] = np.nan
    before = net.get_parameters()
    with pytest.raises(DivergenceError):
        net.train_step(batch, 0.1) if _strategy(way) != "fused-update" else _step_and_read(net, batch, "fused-update")
    for key, value in net.get_parameters().items():
        np.testing.assert_array_equal(value, before[key])


def _step_and_read(net, batch, strategy):
    step = TrainStep(net, batch.X.shape[1], strategy=strategy)
    step(batch, 0.1)
    return step.read()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf·0 in the bad batch's product
@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_after_a_non_finite_step_nothing_moves_until_the_host_reads_it(backend_name, optimizer, rng):
    """The flag is sticky: a finite step after a non-finite one changes no parameter, moment or step count."""
    net = dnn.Network([4, 5, 1], dtype="float64", backend=backend_name)
    step = TrainStep(net, 6, optimizer)
    good = net.batch(*_data([4, 5, 1], 6, rng))
    step(good, 0.1)
    step.read()
    before, state_before = net.get_parameters(), step.optimizer.state_dict(net)
    X = rng.standard_normal((4, 6))
    X[0, 0] = np.inf  # a hand-built batch is not checked for values: a non-finite cost
    bad = dnn.Batch(net.backend.asarray(X), good.Y)
    step(good, 0.1)  # finite: it moves
    moved = net.get_parameters()
    step(bad, 0.1)  # non-finite: the flag is set
    step(good, 0.1)  # finite, but after the flag: nothing moves
    with pytest.raises(DivergenceError) as caught:
        step.read()
    assert caught.value.step == 2
    assert any(not np.array_equal(moved[k], before[k]) for k in before)
    for key, value in net.get_parameters().items():
        np.testing.assert_array_equal(value, moved[key])
    assert step.optimizer.step_count == state_before["step_count"] + 1
    step(good, 0.1)  # the host has seen it: steps move again
    assert step.read().steps == 1


class _Doubling:
    """A reducer standing for two workers that were given the same examples: every sum doubles."""

    def __init__(self):
        self.calls = 0

    def __call__(self, grad, state):
        self.calls += 1
        grad *= 2
        state[STEP_COST : STEP_EXAMPLES + 1] *= 2  # the step's slots: cost sum, correct count, examples


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_reducer_sees_sums_and_the_step_divides_by_the_global_count(backend, l2, optimizer, rng):
    dims, m = [5, 6, 2], 9
    X, Y = _data(dims, m, rng)
    plain, reduced = (dnn.Network(dims, dtype="float64", backend=backend) for _ in range(2))
    reducer = _Doubling()
    plain_step = TrainStep(plain, 2 * m, optimizer, l2=l2)  # one process given both workers' examples
    reduced_step = TrainStep(reduced, m, optimizer, l2=l2, reducer=reducer)
    for _ in range(3):
        plain_step(plain.batch(np.hstack([X, X]), np.hstack([Y, Y])), 0.1)
        reduced_step(reduced.batch(X, Y), 0.1)
    totals, reduced_totals = plain_step.read(), reduced_step.read()
    assert reducer.calls == 3 and reduced_totals.examples == totals.examples
    assert reduced_totals.cost == pytest.approx(totals.cost, rel=1e-12)
    assert _agrees(reduced, plain, "float64")


def test_a_worker_with_no_examples_contributes_zero(rng):
    net = dnn.Network([3, 4, 1], dtype="float64", backend="numpy")
    seen = []

    def other_worker_had_five(grad, state):
        seen.append((grad.copy(), state[STEP_COST : STEP_EXAMPLES + 1].copy()))
        grad += 1.0  # the other worker's summed gradient
        state[STEP_EXAMPLES] += 5

    step = TrainStep(net, 0, reducer=other_worker_had_five)
    step(None, 0.1)
    grad, slots = seen[0]
    assert not grad.any() and not slots.any()
    np.testing.assert_allclose(net.flat_buffers()[1], 0.2)  # the sum over the global batch of 5, divided by 5


def test_steps_of_one_run_share_their_state_and_optimizer(rng):
    net = dnn.Network([3, 4, 1], backend="numpy")
    state = StepState(net.backend, dnn.SGD())
    with pytest.raises(ValueError, match="share its optimizer"):
        TrainStep(net, 4, dnn.SGD(), state=state)


class _CountingBackend(type(dnn.get_backend("numpy"))):
    """The NumPy backend, counting every read of backend data by the host."""

    name = "numpy"

    def __init__(self):
        self.reads = []

    def to_numpy(self, a):
        self.reads.append(tuple(a.shape))
        return super().to_numpy(a)


def test_fit_reads_the_backend_once_per_epoch(rng):
    backend = _CountingBackend()
    net = dnn.Network([4, 6, 1], backend=backend)
    X, Y = _data([4, 6, 1], 30, rng)
    history = net.fit(X, Y, epochs=3, batch_size=8, optimizer="adam")  # 4 mini-batches per epoch, the last short
    assert backend.reads == [(STATE_SIZE,)] * 3  # the step state, once per epoch
    assert len(history.cost) == 3 and all(np.isfinite(history.cost))


def test_finite_products_are_proven_from_the_sums_of_their_factors():
    limit = finite_product_limit("float32")
    assert 0 < limit < float(np.finfo(np.float32).max) < finite_product_limit("float64")
    assert finite_product_limit("float64") == float(np.finfo(np.float64).max) / 16


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_a_step_counts_its_correct_predictions_unless_told_not_to(backend_name, rng):
    net = dnn.Network([4, 5, 1], dtype="float64", backend=backend_name)
    batch = net.batch(*_data([4, 5, 1], 12, rng))
    expected = net.evaluate(batch, None)["accuracy"] * 12  # the forward pass before the step's update
    counted, skipped = TrainStep(net, 12, "adam"), TrainStep(net, 12, "adam", accuracy=False)
    counted(batch, 1e-9)
    assert counted.read().correct == expected
    skipped(batch, 1e-9)
    assert skipped.read().correct == 0
