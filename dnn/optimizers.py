"""Optimizers: each one declaration (`UpdateRule`), rendered for every backend; an `Optimizer` holds its state.

An optimizer is declared once, as the `rule` of its class: its name, hyperparameters (default, what a value must
be), default learning rate, slots (per-parameter state vectors), the host-side scalars formed in double from the
hyperparameters and the step count t, and the elementwise update as statements over ``param``, ``grad``, the
slots, ``lr``, the hyperparameters and the scalars (`dnn.expressions`). Every backend renders the statements:
the NumPy reference in place (`Backend.optimizer_update`), numba as a generated kernel
(`kernels/numba_updates.py`), CUDA as a generated template (`kernels/cupy_updates.py`, which the captured step
launches); the registry, `make_optimizer`, the CLI's choices and checkpoints derive from it.

An optimizer updates every parameter of a `Network` in place from the gradients in its gradient vector
(`Network.flat_buffers()`), in one fused pass over all parameters at once; the training step
(`dnn.step.TrainStep`) calls it in its update phase. Its state (the slots and the step count) is allocated on
the backend on the first update and can be exported and imported as host arrays, which is how checkpoints carry
it. Adding an optimizer is a class with a `rule` added to `OPTIMIZERS`.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from .errors import ModelFileError
from .expressions import Assignment, array_procedure, array_tuple_function, names_in, parse, parse_assignments
from .validation import check_positive, is_fraction

#: What a hyperparameter's value must be: the check, and the words an error uses.
FRACTION = "in [0, 1)"
POSITIVE = "a positive finite number"


class Hyperparameter(NamedTuple):
    """A hyperparameter's default and what a value must be (FRACTION or POSITIVE)."""

    default: float
    kind: str


#: The names an update reads besides its slots, hyperparameters and scalars: (P,) vectors and the learning rate.
PARAM, GRAD, LR, STEP_COUNT = "param", "grad", "lr", "t"
#: SGD's update, the one the numba backend can also take inside its matrix products (`is_plain_gradient_step`).
PLAIN_GRADIENT_STEP = parse_assignments([f"{PARAM} = {PARAM} - {LR} * {GRAD}"], [PARAM, GRAD, LR], [PARAM])


@dataclass(frozen=True, eq=False)
class UpdateRule:
    """One optimizer, declared: everything a backend needs to render its update, checked when declared.

    scalars: name -> expression over the hyperparameters and ``t`` (the step count from 1), evaluated in double
    on the host (or on the device from a device-side t) and cast to the arrays' dtype, as ``1 - beta`` is.
    update: ``target = expression`` statements in order, targets ``param`` and the slots.
    """

    name: str
    hyperparameters: dict[str, Hyperparameter]
    slots: tuple[str, ...]
    scalars: dict[str, str]
    update: tuple[str, ...]
    default_lr: float = 0.0075
    statements: tuple[Assignment, ...] = field(init=False, repr=False)
    scalar_trees: dict[str, ast.expr] = field(init=False, repr=False)
    #: The NumPy reference: f(xp, param, grad, *slots, *operands) updating the arrays in place, operands cast.
    array_update: Callable = field(init=False, repr=False)

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(
                f"an optimizer's name must be an identifier (its kernels are named after it), got {self.name!r}"
            )
        scalar_trees = {name: parse(text, (*self.hyperparameters, STEP_COUNT)) for name, text in self.scalars.items()}
        names = (PARAM, GRAD, LR, *self.slots, *self.hyperparameters, *self.scalars)
        statements = parse_assignments(self.update, names, (PARAM, *self.slots))
        unassigned = [t for t in (PARAM, *self.slots) if t not in {s.target for s in statements}]
        if unassigned:
            raise ValueError(f"optimizer {self.name!r} never assigns {', '.join(unassigned)}")
        for s in statements:  # every value is then formed in double and cast to the arrays' dtype, like 1 - β
            if any(isinstance(node, ast.Constant) for node in ast.walk(s.value)) or "sigmoid(" in ast.unparse(s.value):
                raise ValueError(
                    f"optimizer {self.name!r}: {s.target} = {ast.unparse(s.value)} holds a number or sigmoid; "
                    "declare a constant as a scalar (formed in double, cast to the arrays' dtype)"
                )
        object.__setattr__(self, "statements", statements)
        object.__setattr__(self, "scalar_trees", scalar_trees)
        scalar_values = array_tuple_function(scalar_trees.values(), (*self.hyperparameters, STEP_COUNT), "scalars")
        object.__setattr__(self, "_scalar_values", scalar_values)
        everything = (LR, *self.hyperparameters, *self.scalars)  # what `operand_values` picks the operands from
        object.__setattr__(self, "_operand_positions", tuple(everything.index(name) for name in self.operands))
        arguments = (PARAM, GRAD, *self.slots, *self.operands)
        object.__setattr__(self, "array_update", array_procedure(statements, arguments, f"{self.name}_update"))

    @cached_property
    def operands(self) -> tuple[str, ...]:
        """The scalars the elementwise update reads, in declaration order (lr, hyperparameters, scalars)."""
        read = set().union(*(names_in(s.value) for s in self.statements))
        return tuple(n for n in (LR, *self.hyperparameters, *self.scalars) if n in read)

    @cached_property
    def step_scalars(self) -> tuple[str, ...]:
        """The scalars that depend on the step count t (a device can form them from its own t)."""
        return tuple(name for name, tree in self.scalar_trees.items() if STEP_COUNT in names_in(tree))

    @property
    def reads_step_count(self) -> bool:
        """True when the update depends on the step count (a captured step then keeps t on the device)."""
        return bool(self.step_scalars)

    @cached_property
    def is_plain_gradient_step(self) -> bool:
        """True for θ ← θ - lr·g with no state: the update numba can take inside its matrix products."""
        plain = [(s.target, ast.dump(s.value)) for s in PLAIN_GRADIENT_STEP]
        return not self.slots and [(s.target, ast.dump(s.value)) for s in self.statements] == plain

    def host_scalars(self, hyperparameters: dict, t: int) -> dict[str, float]:
        """Every scalar in double from the hyperparameters and the step count t (Python's math, as the host rounds)."""
        values = [hyperparameters[name] for name in self.hyperparameters]
        return dict(zip(self.scalars, self._scalar_values(math, *values, t)))

    def operand_values(self, hyperparameters: dict, lr: float, t: int) -> tuple[float, ...]:
        """The values of `operands` in double: lr, the hyperparameters and the scalars at step t (every step: lean)."""
        values = [hyperparameters[name] for name in self.hyperparameters]
        everything = (lr, *values, *self._scalar_values(math, *values, t))
        return tuple([everything[i] for i in self._operand_positions])


class Optimizer:
    """Base class: `update(net, lr)` takes one step; `state_dict()` / `load_state_dict()` move the state.

    A subclass declares `rule`; its hyperparameters are keyword (or positional, in declared order) arguments.
    """

    rule: UpdateRule

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.name, cls.slots, cls.default_lr = cls.rule.name, cls.rule.slots, cls.rule.default_lr

    def __init__(self, *args, **hyperparameters):
        declared = self.rule.hyperparameters
        if len(args) > len(declared):
            raise TypeError(f"{type(self).__name__} takes at most {len(declared)} hyperparameters, got {len(args)}")
        given = dict(zip(declared, args))
        for name, value in hyperparameters.items():
            if name not in declared or name in given:
                valid = ", ".join(declared) or "none"
                raise TypeError(f"{type(self).__name__} got an unexpected hyperparameter {name!r} (valid: {valid})")
            given[name] = value
        self.hyperparameters = {
            name: _checked(self.name, name, given.get(name, spec.default), spec.kind) for name, spec in declared.items()
        }
        self.state: dict[str, object] = {}  # slot -> (P,) backend vector laid out like Network.flat_buffers()
        self.step_count = 0

    def __getattr__(self, name):  # the hyperparameters read as attributes: adam.beta1
        hyperparameters = self.__dict__.get("hyperparameters", {})
        if name in hyperparameters:
            return hyperparameters[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def config(self) -> dict:
        """The hyperparameters (not the learning rate) as plain numbers, enough to rebuild this optimizer."""
        return dict(self.hyperparameters)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def buffers(self, net, slot: str):
        """The state vector `slot`, laid out like the network's flat parameters, allocated as zeros on first use."""
        params, _ = net.flat_buffers()
        buf = self.state.get(slot)
        if buf is None or tuple(buf.shape) != tuple(params.shape):
            buf = self.state[slot] = net.backend.zeros(params.shape, net.dtype)
        return buf

    def update(self, net, lr: float, state=None) -> None:
        """Move every parameter of `net` against the gradient now in its gradient buffers (one fused pass).

        With a step `state` (see `dnn.step`), nothing moves when its non-finite flag is set.
        """
        lr = check_positive(lr, "lr")
        self.step_count += 1  # t counts updates from 1, once per mini-batch, as in the course
        params, grads = net.flat_buffers()
        slots = tuple([self.buffers(net, slot) for slot in self.slots]) if self.slots else ()
        net.backend.optimizer_update(
            self.rule, params, grads, slots, lr, self.hyperparameters, self.step_count, state=state
        )

    # ------------------------------------------------------------------ state for checkpoints
    def state_dict(self, net) -> dict[str, np.ndarray]:
        """The state as host arrays: {'step_count': (), 'velocity/W1': ..., ...}."""
        state = {"step_count": np.asarray(self.step_count, dtype=np.int64)}
        for slot in self.slots:
            if slot in self.state:
                for name, view in net.views_of(self.state[slot]).items():
                    state[f"{slot}/{name}"] = np.array(net.backend.to_numpy(view))
        return state

    def load_state_dict(self, net, state: dict) -> None:
        """Restore a `state_dict()` onto `net`'s backend, checking every buffer's shape against its parameter."""
        self.state = {}
        self.step_count = int(state.get("step_count", 0))
        for slot in self.slots:
            present = {
                name: np.asarray(state[f"{slot}/{name}"]) for name in net.parameters if f"{slot}/{name}" in state
            }
            for name, value in present.items():
                if value.shape != tuple(net.parameters[name].shape):
                    raise ModelFileError(
                        f"{self.name} optimizer state '{slot}/{name}' has shape {value.shape}, "
                        f"the parameter has {tuple(net.parameters[name].shape)}"
                    )
            missing = [f"{slot}/{name}" for name in net.parameters if name not in present]
            if missing and (self.step_count or present):  # no state at all is fine only before the first step
                raise ModelFileError(f"{self.name} optimizer state has no {missing[0]!r} after {self.step_count} steps")
            if present:
                views = net.views_of(self.buffers(net, slot))
                for name, value in present.items():
                    net.backend.copyto(views[name], net.backend.asarray(value, dtype=net.dtype))


def _checked(optimizer: str, name: str, value, kind: str) -> float:
    if kind == FRACTION:
        if not is_fraction(value):
            raise ValueError(f"{optimizer} {name} must be {FRACTION}, got {value!r}")
        return float(value)
    return check_positive(value, f"{optimizer} {name}")


class SGD(Optimizer):
    """Plain gradient descent: θ ← θ - lr·dθ (the course's update_parameters)."""

    rule = UpdateRule("sgd", hyperparameters={}, slots=(), scalars={}, update=("param = param - lr * grad",))


class Momentum(Optimizer):
    """The course's momentum: v ← β·v + (1-β)·dθ; θ ← θ - lr·v."""

    rule = UpdateRule(
        "momentum",
        hyperparameters={"beta": Hyperparameter(0.9, FRACTION)},
        slots=("velocity",),
        scalars={"one_minus_beta": "1 - beta"},
        update=(
            "velocity = beta * velocity + one_minus_beta * grad",  # (P,)
            "param = param - lr * velocity",  # (P,)
        ),
    )


class Adam(Optimizer):
    """Adam with bias correction, as the course writes it (eps added to sqrt of the corrected second moment)."""

    rule = UpdateRule(
        "adam",
        hyperparameters={
            "beta1": Hyperparameter(0.9, FRACTION),
            "beta2": Hyperparameter(0.999, FRACTION),
            "eps": Hyperparameter(1e-8, POSITIVE),
        },
        slots=("m", "v"),
        scalars={
            "one_minus_beta1": "1 - beta1",
            "one_minus_beta2": "1 - beta2",
            "c1": "1 - beta1 ** t",
            "c2": "1 - beta2 ** t",
        },
        update=(
            "m = beta1 * m + one_minus_beta1 * grad",  # (P,)
            "v = beta2 * v + one_minus_beta2 * (grad * grad)",  # (P,)
            "param = param - lr * (m / c1) / (sqrt(v / c2) + eps)",  # (P,): m/c1, v/c2 the bias-corrected moments
        ),
        default_lr=0.001,
    )


#: The registry: every optimizer by name, read by the CLI's choices, the backends' kernels and warmup and the
#: tests; an unknown name fails here (`check_optimizer`), and a backend's strategies either take a registered
#: one or refuse it by name.
OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Adam)}


def check_optimizer(name: str) -> str:
    """`name` when it is a registered optimizer's, else a ValueError listing the valid names."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    return name


def is_registered(rule: UpdateRule) -> bool:
    """True when `rule` is a registered optimizer's own declaration (the rules every backend has kernels for)."""
    registered = OPTIMIZERS.get(rule.name)
    return registered is not None and registered.rule is rule


def make_optimizer(optimizer="sgd", **config) -> Optimizer:
    """An Optimizer from a registered name (`OPTIMIZERS`) and hyperparameters, or the object itself."""
    if isinstance(optimizer, Optimizer):
        if config:
            raise ValueError("hyperparameters are given to the optimizer object itself, not alongside it")
        return optimizer
    return OPTIMIZERS[check_optimizer(optimizer)](**config)
