"""Every backend implements the same interface: overrides keep Backend's signatures."""

import importlib
import inspect
from pathlib import Path

import pytest

from dnn.backends import Backend
from dnn.backends.registry import _REGISTRY


def _backend_classes():
    classes = []
    for name, (module_name, class_name) in _REGISTRY.items():
        try:
            module = importlib.import_module(f"dnn.backends.{module_name}")
        except ImportError as exc:  # numba not installed: nothing of it can drift
            classes.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=str(exc))))
            continue
        classes.append(pytest.param(getattr(module, class_name), id=name))
    return classes


def _parameters(function):
    """Names, kinds and defaults of a signature (annotations may be strings or objects)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _public_methods(cls):
    return {
        name: member
        for name, member in inspect.getmembers(cls, predicate=inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize("cls", _backend_classes())
def test_a_backend_is_a_subclass_of_the_interface(cls):
    assert issubclass(cls, Backend)
    assert cls.name != Backend.name


#: A backend's own business: compiling ahead of time, and the passes its own whole-step strategies call (numba's
#: Σ|·| bounds, `backends/numba_steps.py`). Code outside backends/ never calls them (checked below).
BACKENDS_OWN = {"warmup", "abs_sum", "bias_activation_forward_abs_sum", "activation_backward_abs_sum"}


def test_code_outside_the_backends_calls_no_backends_own_method():
    root = Path(__file__).resolve().parent.parent
    for path in [*root.glob("dnn/**/*.py"), *root.glob("kernels/*.py")]:
        text = path.read_text()
        for name in BACKENDS_OWN - {"warmup"}:  # `python -m dnn warmup` asks numba for it by name
            assert f".{name}(" not in text, f"{path.relative_to(root)} calls {name}, a backend's own method"


@pytest.mark.parametrize("cls", _backend_classes())
def test_every_public_method_of_a_backend_exists_on_the_interface_with_the_same_signature(cls):
    interface = _public_methods(Backend)
    extra_allowed = BACKENDS_OWN
    for name, method in _public_methods(cls).items():
        if name in extra_allowed:
            continue
        assert name in interface, f"{cls.__name__}.{name} is not part of the Backend interface"
        assert _parameters(method) == _parameters(interface[name]), f"{cls.__name__}.{name} drifted"


def test_every_interface_method_has_a_docstring():
    for name, method in _public_methods(Backend).items():
        assert method.__doc__, f"Backend.{name} has no docstring"
