"""Optimizers update every parameter exactly as the course's formulas do, with their state on the backend."""

import numpy as np
import pytest

import dnn
from dnn.optimizers import OPTIMIZERS, SGD, Adam, Momentum, UpdateRule, make_optimizer
from optimizer_helpers import UNREGISTRABLE
from dnn.tolerances import kernel_rtol, relative_difference

LR = 0.05


def _net_with_gradients(backend, dtype, rng):
    """A small network and three gradient sets (host float64), keyed W1, b1, ..."""
    net = dnn.Network([4, 3, 2], dtype=dtype, backend=backend, seed=3)
    grads = [{name: rng.standard_normal(param.shape) for param, _, name in net.gradient_buffers()} for _ in range(3)]
    return net, grads


def _run(net, optimizer, grads):
    for step in grads:
        for _, grad, name in net.gradient_buffers():
            net.backend.copyto(grad, net.backend.asarray(step[name], dtype=net.dtype))
        optimizer.update(net, LR)
    return net.get_parameters()


def _sgd(p, gs):
    for g in gs:
        p = p - LR * g
    return p


def _momentum(p, gs, beta=0.9):
    v = np.zeros_like(p)
    for g in gs:
        v = beta * v + (1 - beta) * g
        p = p - LR * v
    return p


def _adam(p, gs, beta1=0.9, beta2=0.999, eps=1e-8):
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(gs, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        p = p - LR * m_hat / (np.sqrt(v_hat) + eps)
    return p


@pytest.mark.parametrize("dtype", ["float64", "float32"])
# the course's formulas, written apart from the declarations they check (every optimizer: tests/test_every_optimizer.py)
@pytest.mark.parametrize(
    "optimizer, formula", [(SGD, _sgd), (Momentum, _momentum), (Adam, _adam)], ids=["sgd", "momentum", "adam"]
)
def test_optimizer_matches_the_float64_formula(backend, dtype, optimizer, formula, rng):
    net, grads = _net_with_gradients(backend, dtype, rng)
    start = {k: v.astype(np.float64) for k, v in net.get_parameters().items()}
    got = _run(net, optimizer(), grads)
    for name, value in got.items():
        expected = formula(start[name], [step[name] for step in grads])
        assert relative_difference(value, expected) <= kernel_rtol(dtype), name


@pytest.mark.parametrize("name", [name for name, cls in OPTIMIZERS.items() if cls.slots])
def test_exported_state_continues_the_same_trajectory(backend, name, rng):
    net, grads = _net_with_gradients(backend, "float64", rng)
    first = make_optimizer(name)
    _run(net, first, grads[:2])
    twin = dnn.Network([4, 3, 2], dtype="float64", backend=backend)
    twin.set_parameters(net.get_parameters())
    second = make_optimizer(name)
    second.load_state_dict(twin, first.state_dict(net))
    assert second.step_count == 2
    expected, got = _run(net, first, grads[2:]), _run(twin, second, grads[2:])
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_state_lives_on_the_backend_in_the_network_dtype(backend, rng):
    net, grads = _net_with_gradients(backend, "float32", rng)
    adam = Adam()
    _run(net, adam, grads[:1])
    m = net.views_of(adam.state["m"])["W1"]
    assert type(m) is type(net.parameters["W1"]) and backend.host_dtype(m) == np.float32


def test_unknown_optimizer_names_the_valid_ones():
    with pytest.raises(ValueError, match=f"unknown optimizer '{UNREGISTRABLE}'.*{', '.join(OPTIMIZERS)}"):
        make_optimizer(UNREGISTRABLE)


@pytest.mark.parametrize("make", [lambda: Momentum(beta=1.0), lambda: Adam(beta2=-0.1), lambda: Adam(eps=0)])
def test_bad_hyperparameters_are_rejected(make):
    with pytest.raises(ValueError):
        make()


def test_state_with_a_wrong_shape_is_rejected(rng):
    net, grads = _net_with_gradients("numpy", "float64", rng)
    state = {"step_count": np.asarray(1), "velocity/W1": np.zeros((9, 9)), "velocity/b1": np.zeros((3, 1))}
    with pytest.raises(dnn.ModelFileError, match="velocity/W1.*shape"):
        Momentum().load_state_dict(net, state)


def _declare(**changes):
    declaration = dict(name="spec", hyperparameters={}, slots=("s",), scalars={}, update=("s = grad", "param = s"))
    return UpdateRule(**(declaration | changes))


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        (dict(name="no such"), "must be an identifier"),
        (dict(update=("param = grad",)), "never assigns s"),
        (dict(update=("s = grad * 2", "param = s")), "holds a number"),
        (dict(update=("s = grad", "param = s", "lr = s")), "assigns 'lr'"),
        (dict(scalars={"c": "1 - grad"}), "uses 'grad'"),  # a scalar is formed from hyperparameters and t only
    ],
)
def test_a_declaration_is_checked_when_declared(changes, complaint):
    with pytest.raises(ValueError, match=complaint):
        _declare(**changes)


def test_hyperparameters_are_checked_by_their_declared_kind_and_name():
    with pytest.raises(TypeError, match="unexpected hyperparameter 'beta3'.*beta1, beta2, eps"):
        Adam(beta3=0.5)
    assert Momentum(0.8).config() == {"beta": 0.8} and repr(Adam()) == "Adam(beta1=0.9, beta2=0.999, eps=1e-08)"


def test_only_the_plain_gradient_step_may_take_numbas_update_inside_the_products():
    plain = [name for name, cls in OPTIMIZERS.items() if cls.rule.is_plain_gradient_step]
    assert plain == ["sgd"]
