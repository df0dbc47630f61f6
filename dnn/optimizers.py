"""Optimizers: SGD, momentum and Adam, with their state on the network's backend.

An optimizer updates every parameter of a `Network` in place from the gradients in its gradient vector
(`Network.flat_buffers()`), in one call of the backend's fused `sgd_update` / `momentum_update` /
`adam_update` over all parameters at once; the training step (`dnn.step.TrainStep`) calls it in its update
phase. Its state (velocities, Adam's moments and step count) is allocated on the backend on the first update
and can be exported and imported as host arrays, which is how checkpoints carry it.
"""

from __future__ import annotations

import numpy as np

from .errors import ModelFileError
from .validation import check_positive, is_fraction


class Optimizer:
    """Base class: `update(net, lr)` takes one step; `state_dict()` / `load_state_dict()` move the state."""

    name = "base"
    #: The learning rate used when `fit` is given none.
    default_lr = 0.0075
    #: Per-parameter state buffers this optimizer keeps, e.g. ("velocity",).
    slots: tuple[str, ...] = ()

    def __init__(self):
        self.state: dict[str, object] = {}  # slot -> (P,) backend vector laid out like Network.flat_buffers()
        self.step_count = 0

    def config(self) -> dict:
        """The hyperparameters (not the learning rate) as plain numbers, enough to rebuild this optimizer."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def _buffers(self, net, slot: str):
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
        self.step_count += 1
        params, grads = net.flat_buffers()
        self._update_all(net, params, grads, lr, state)

    def _update_all(self, net, params, grads, lr: float, state) -> None:
        raise NotImplementedError

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
                views = net.views_of(self._buffers(net, slot))
                for name, value in present.items():
                    net.backend.copyto(views[name], net.backend.asarray(value, dtype=net.dtype))


class SGD(Optimizer):
    """Plain gradient descent: θ ← θ - lr·dθ (the course's update_parameters)."""

    name = "sgd"

    def _update_all(self, net, params, grads, lr, state):
        net.backend.sgd_update(params, grads, lr, state=state)


class Momentum(Optimizer):
    """The course's momentum: v ← β·v + (1-β)·dθ; θ ← θ - lr·v."""

    name = "momentum"
    slots = ("velocity",)

    def __init__(self, beta: float = 0.9):
        super().__init__()
        if not is_fraction(beta):
            raise ValueError(f"momentum beta must be in [0, 1), got {beta!r}")
        self.beta = float(beta)

    def config(self) -> dict:
        return {"beta": self.beta}

    def _update_all(self, net, params, grads, lr, state):
        net.backend.momentum_update(params, grads, self._buffers(net, "velocity"), lr, self.beta, state=state)


class Adam(Optimizer):
    """Adam with bias correction, as the course writes it (eps added to sqrt of the corrected second moment)."""

    name = "adam"
    default_lr = 0.001
    slots = ("m", "v")

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__()
        for label, beta in (("beta1", beta1), ("beta2", beta2)):
            if not is_fraction(beta):
                raise ValueError(f"adam {label} must be in [0, 1), got {beta!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), check_positive(eps, "adam eps")

    def config(self) -> dict:
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _update_all(self, net, params, grads, lr, state):
        m, v = self._buffers(net, "m"), self._buffers(net, "v")
        # t = step_count counts updates from 1, once per mini-batch, as in the course
        net.backend.adam_update(params, grads, m, v, lr, self.beta1, self.beta2, self.eps, self.step_count, state=state)


#: The registry: every optimizer by name, read by the CLI's choices and the numba backend's warmup; an unknown
#: name fails here (`check_optimizer`), and a backend's strategies either take a registered one or refuse it.
OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Adam)}


def check_optimizer(name: str) -> str:
    """`name` when it is a registered optimizer's, else a ValueError listing the valid names."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    return name


def make_optimizer(optimizer="sgd", **config) -> Optimizer:
    """An Optimizer from a registered name (`OPTIMIZERS`) and hyperparameters, or the object itself."""
    if isinstance(optimizer, Optimizer):
        if config:
            raise ValueError("hyperparameters are given to the optimizer object itself, not alongside it")
        return optimizer
    return OPTIMIZERS[check_optimizer(optimizer)](**config)
