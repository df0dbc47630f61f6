"""The hidden-layer activations, each declared once: its value, derivative, kinks and parameters.

Every backend renders these declarations (`dnn/expressions.py`): the NumPy reference evaluates them over
arrays, numba compiles a generated scalar dispatcher (`kernels/numba_activation_source.py`), CUDA a generated switch
(`kernels/cupy_activations.py`). The CLI's choices and help, gradcheck's kinks and the tests read the same
registry, so adding an activation is adding one `Activation` to DECLARED.

A declaration's derivative is written from the layer's output ``a`` = g(z) (what backpropagation keeps: no
exp); where g' cannot be written from ``a``, `derivative_from_z` gives it from ``z``. Otherwise g' from z is
the same expression with a := value(z).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import NamedTuple

from .expressions import array_writer, names_in, parse


class ArrayWriters(NamedTuple):
    """An activation over arrays of namespace xp, each function writing into `out` in out's dtype."""

    forward: Callable  # f(xp, out, z): out ← g(z); out may be z
    backward: Callable  # f(xp, out, d, a): out ← d · g'(z) from the layer's output a = g(z); out may be d
    backward_from_z: Callable  # f(xp, out, d, z): out ← d · g'(z) from the pre-activation z; out may be d


@dataclass(frozen=True)
class Activation:
    """One activation: g(z) as `value`, g' as `derivative` (from a = g(z)), its kinks, parameters and summary."""

    name: str
    value: str  # g(z), in z and the parameters
    derivative: str  # g'(z) written from a = g(z), in a and the parameters
    description: str  # one line, for the CLI's help and the docs
    kinks: tuple[float, ...] = ()  # the z where g' jumps (a finite difference straddling one is wrong)
    parameters: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # {name: default value}
    derivative_from_z: str | None = None  # g'(z) in z, only where it cannot be written from a

    def __post_init__(self):
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))
        _ = self.value_tree, self.derivative_tree, self.derivative_from_z_tree  # checked now, at declaration

    @cached_property
    def value_tree(self) -> ast.expr:
        """The checked tree of g(z)."""
        return parse(self.value, ["z", *self.parameters])

    @cached_property
    def derivative_tree(self) -> ast.expr:
        """The checked tree of g' from a = g(z)."""
        return parse(self.derivative, ["a", *self.parameters])

    @cached_property
    def derivative_from_z_tree(self) -> ast.expr | None:
        """The checked tree of g' from z, or None: then g' from z is `derivative_tree` with a := value(z)."""
        return None if self.derivative_from_z is None else parse(self.derivative_from_z, ["z", *self.parameters])

    def bound(self, tree: ast.expr) -> ast.expr:
        """`tree` with each parameter replaced by its value (what the array rendering evaluates)."""
        values = {name: ast.Constant(value) for name, value in self.parameters.items()}
        return _Substituted(values).visit(_copy(tree))

    def uses_output(self) -> bool:
        """True when the derivative (from a) reads a; false for a constant g' (linear)."""
        return "a" in names_in(self.derivative_tree)

    @cached_property
    def writers(self) -> ArrayWriters:
        """The array functions, writing with NumPy's ``out=`` (see `ArrayWriters`)."""
        return self._array_writers(assign=False)

    @cached_property
    def assigning_writers(self) -> ArrayWriters:
        """The array functions, writing ``out[...] = value`` (the Array API standard has no ``out=``)."""
        return self._array_writers(assign=True)

    def _array_writers(self, assign: bool) -> ArrayWriters:
        if self.derivative_from_z_tree is not None:
            from_z, lets = self.derivative_from_z_tree, ()
        else:  # a := g(z), when g' reads it
            from_z = self.derivative_tree
            lets = (("a", self.bound(self.value_tree)),) if self.uses_output() else ()
        return ArrayWriters(
            array_writer(self.bound(self.value_tree), ["z"], f"{self.name}_forward", assign=assign),
            array_writer(
                self.bound(_times_d(self.derivative_tree)), ["d", "a"], f"{self.name}_backward", assign=assign
            ),
            array_writer(self.bound(_times_d(from_z)), ["d", "z"], f"{self.name}_backward_from_z", lets, assign),
        )

    @property
    def code(self) -> int:
        """The integer the compiled kernels (numba and CUDA) know this activation by."""
        return ACTIVATION_CODES[self.name]

    def constant(self, parameter: str) -> str:
        """The name of a parameter's constant in generated kernel source, e.g. LEAKY_RELU_SLOPE."""
        return f"{self.name}_{parameter}".upper()


def _times_d(tree: ast.expr) -> ast.expr:
    """d · `tree`: backpropagation's product, in that order."""
    return ast.BinOp(left=ast.Name("d", ast.Load()), op=ast.Mult(), right=tree)


def _copy(tree: ast.expr) -> ast.expr:
    return ast.parse(ast.unparse(tree), mode="eval").body


class _Substituted(ast.NodeTransformer):
    def __init__(self, values):
        self.values = values

    def visit_Name(self, node):
        return self.values.get(node.id, node)


DECLARED = (
    Activation("relu", "maximum(z, 0)", "where(a > 0, 1, 0)", "max(z, 0); NaN stays NaN, g'(0) = 0", kinks=(0.0,)),
    Activation(
        "leaky_relu",
        "where(z > 0, z, z * slope)",
        "where(a > 0, 1, slope)",
        "z for z > 0, else slope·z",
        kinks=(0.0,),
        parameters={"slope": 0.01},
    ),
    Activation("sigmoid", "sigmoid(z)", "a * (1 - a)", "1 / (1 + e^-z), computed without overflow"),
    Activation("tanh", "tanh(z)", "1 - a * a", "the hyperbolic tangent"),
    Activation("linear", "z", "1", "z itself (no nonlinearity)"),
)

#: Every activation by name, in declaration order.
REGISTRY = MappingProxyType({activation.name: activation for activation in DECLARED})
#: The names of the hidden activations every backend implements.
ACTIVATIONS = tuple(REGISTRY)
#: The integer code the compiled kernels know each activation by: its index in ACTIVATIONS.
ACTIVATION_CODES = MappingProxyType({name: code for code, name in enumerate(ACTIVATIONS)})


def activation(name: str) -> Activation:
    """The declaration of activation `name`; a ValueError listing the valid names when there is none."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; valid activations: {', '.join(ACTIVATIONS)}") from None


def check_activation(name: str) -> None:
    """A ValueError listing the valid names unless `name` is a registered activation."""
    activation(name)


def describe(name: str) -> str:
    """'name (description; parameter value, ...)': one activation, for help texts and docs."""
    declared = activation(name)
    parameters = "".join(f"; {key} {value}" for key, value in declared.parameters.items())
    return f"{name} ({declared.description}{parameters})"
