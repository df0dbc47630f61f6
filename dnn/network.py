"""`Network`: the user API over the propagation in `dnn.propagation` and the step in `dnn.step`."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from . import checkpoint, training
from .backends import get_backend
from .activations import check_activation
from .backends.base import STEP_CORRECT, STEP_EXAMPLES, check_output
from .errors import ConcurrentUseError, ShapeError
from .initializers import check_layer_dims, initial_parameters
from .parameters import Parameters
from .propagation import Batch, Workspace, add_l2_gradient, backward, check_batch, forward
from .optimizers import SGD
from .step import TrainStep, numpy_warnings_silenced
from .validation import (
    as_matrix,
    check_input_rows,
    check_non_negative,
    labels_as_matrix,
    memory_estimate,
    require_labels,
    require_memory,
    resolve_dtype,
)

# How many batch sizes keep their workspaces (a training batch, the last short batch, an evaluation set), and
# how many (batch size, λ) pairs keep the steps `train_step` builds.
_KEPT = 4


class OneThreadAtATime:
    """`with guard:` around every call that uses a network's buffers; a second thread is refused, not interleaved.

    Two threads stepping one network would share its workspaces and gradient vector and compute garbage
    (a ZeroDivisionError, drifting parameters). The lock is taken without waiting, so the second thread gets
    a ConcurrentUseError at once; calls nested in one thread (fit evaluating, a step inside fit) pass.
    """

    __slots__ = ("_lock", "_name")

    def __init__(self, name: str):
        self._lock = threading.RLock()
        self._name = name  # the network's description, not the network: no reference cycle keeps it alive

    def __enter__(self):
        if not self._lock.acquire(blocking=False):
            raise ConcurrentUseError(
                f"{self._name} is being stepped or evaluated from another thread; a Network takes one call at a "
                "time: give each thread its own Network (e.g. Network.load of a saved copy)"
            )

    def __exit__(self, *exc_info):
        self._lock.release()

    def __deepcopy__(self, memo):
        return OneThreadAtATime(self._name)  # a copied network is one of its own: free, whatever this one is doing


class Network:
    """A fully connected L-layer network: layer_dims = [n_x, n_1, ..., n_L].

    activations: one name for every hidden layer or a list of L-1 names (relu, leaky_relu, sigmoid, tanh,
    linear). output: "sigmoid" (binary or multi-label, cross-entropy) or "softmax" (categorical
    cross-entropy); by default sigmoid for one output unit and softmax for more. init: "course"
    (randn / sqrt(n_prev)), "small" (randn * 0.01) or "he"; drawn on the host with RandomState(seed), so the
    same seed gives the same network on every backend and dtype. dtype: float32 (default) or float64.

    Examples are columns: X is (n_x, m); Y is (n_L, m), or (m,) for binary labels and class indices. Arrays
    may be NumPy or backend arrays, lists, or anything NumPy can read (a pandas DataFrame is (m, n_x): pass
    `df.T`); calls that compute a cost (step, fit, loss, backward, evaluate) raise LabelError without Y.

    Memory: the parameters, gradients, optimizer state and each batch size's buffers are estimated before
    they are allocated (`dnn.validation.memory_estimate`); more than the backend has available raises
    InsufficientMemoryError with both figures. Threads: one network takes one call at a time; a call from a
    second thread while another runs raises ConcurrentUseError (give each thread its own network).
    """

    def __init__(
        self, layer_dims, activations="relu", output=None, init="course", dtype="float32", backend=None, seed=1
    ):
        self.layer_dims = check_layer_dims(layer_dims)
        L = len(self.layer_dims) - 1
        hidden = [activations] * (L - 1) if isinstance(activations, str) else list(activations)
        if len(hidden) != L - 1:
            raise ValueError(f"activations: {L - 1} hidden layers need {L - 1} names, got {len(hidden)}: {hidden!r}")
        for name in hidden:
            check_activation(name)
        self.activations = hidden
        self.output = output or ("sigmoid" if self.layer_dims[-1] == 1 else "softmax")
        check_output(self.output)
        if self.output == "softmax" and self.layer_dims[-1] < 2:
            raise ValueError("a softmax output needs at least 2 units; use output='sigmoid' for one unit")
        self.init = init
        self.dtype = resolve_dtype(dtype)
        self.backend = get_backend(backend)
        need = memory_estimate(self.layer_dims, self.dtype)
        require_memory(
            self.backend,
            f"Network({self.layer_dims}) in {self.dtype.name}",
            {"parameters": need.parameters, "gradients": need.gradients, "float64 initial values": need.initial_values},
        )
        self.busy = OneThreadAtATime(repr(self))  # `with net.busy:` around each call that uses the buffers
        self.params = Parameters(self.backend, self.layer_dims, self.dtype)  # flat theta and grad, per-layer views
        self.set_parameters(
            {
                k: v
                for l, (W, b) in enumerate(initial_parameters(self.layer_dims, init=init, seed=seed), 1)
                for k, v in ((f"W{l}", W), (f"b{l}", b))
            }
        )
        self._workspaces: OrderedDict[int, Workspace] = OrderedDict()
        self._train_steps: OrderedDict[tuple, TrainStep] = OrderedDict()
        self._sgd = None  # the SGD optimizer of `train_step`, made on first use

    # ------------------------------------------------------------------ description and parameters
    @property
    def num_layers(self) -> int:
        """L, the number of layers with parameters."""
        return len(self.layer_dims) - 1

    def __repr__(self) -> str:
        return (
            f"Network({self.layer_dims}, activations={self.activations!r}, output={self.output!r}, "
            f"dtype={self.dtype.name!r}, backend={self.backend.name!r})"
        )

    @property
    def parameters(self) -> dict:
        """{'W1': ..., 'b1': ..., ...}: the live backend arrays (modifying them modifies the network)."""
        return self.params.named()

    def views_of(self, vector) -> dict:
        """{'W1': view, 'b1': view, ...}: a (P,) vector laid out like the parameters, seen per parameter."""
        return self.params.views_of(vector)

    def flat_buffers(self):
        """(parameters, gradients): two (P,) backend vectors of which every W[l], b[l] (and dW[l], db[l]) is a view."""
        return self.params.theta, self.params.grad

    def gradient_buffers(self):
        """[(W1, dW1, 'W1'), (b1, db1, 'b1'), ...]: each parameter with the buffer holding its gradient."""
        p = self.params
        return [
            pair
            for l in range(1, self.num_layers + 1)
            for pair in ((p.W[l], p.dW[l], f"W{l}"), (p.b[l], p.db[l], f"b{l}"))
        ]

    def get_parameters(self) -> dict:
        """A host (NumPy) copy of every parameter, keyed as the course keys them."""
        return {key: np.array(self.backend.to_numpy(value)) for key, value in self.parameters.items()}

    def set_parameters(self, parameters: dict) -> None:
        """Copy W1..WL, b1..bL from `parameters` (host or backend arrays) into the network, checking shapes.

        Every value is checked before any is copied, so a bad dict leaves the network as it was.
        """
        checked = []
        for name, target in self.parameters.items():
            if name not in parameters:
                raise KeyError(f"parameters has no {name}; expected W1..W{self.num_layers} and b1..b{self.num_layers}")
            value = as_matrix(self.backend, parameters[name], self.dtype, name)
            if tuple(value.shape) != tuple(target.shape):
                raise ShapeError(
                    f"layer {name[1:]}: {name} has shape {tuple(value.shape)}, the network needs {tuple(target.shape)}"
                )
            checked.append((target, value))
        with self.busy:  # never under a step running in another thread
            for target, value in checked:
                self.backend.copyto(target, value)

    # ------------------------------------------------------------------ inputs
    def batch(self, X, Y=None) -> Batch:
        """Validate X (and Y) once and place them on the backend in the network's dtype.

        Raises ShapeError, DTypeError, NonFiniteError or LabelError naming the problem. The arrays are made
        C-contiguous (strided, Fortran-ordered or misaligned inputs are copied), so results never depend on
        how the caller's arrays are laid out. Training loops and benchmarks pass the result to `train_step`
        so that the checks are not repeated every step.
        """
        X = self.backend.contiguous(as_matrix(self.backend, X, self.dtype, "X"))
        check_input_rows(X, self.layer_dims[0])
        if X.shape[1] == 0:
            raise ShapeError(f"X has shape {tuple(X.shape)}: no examples (m = 0)")
        if Y is None:
            return Batch(X, None)
        Y = labels_as_matrix(self.backend, Y, self.output, self.layer_dims[-1], X.shape[1], self.dtype)
        return Batch(X, self.backend.contiguous(Y))

    def workspace(self, m: int) -> Workspace:
        """The reused buffers for batches of m examples (the most recently used few sizes are kept)."""
        ws = self._workspaces.get(m)
        if ws is None:
            self.check_memory(m)
            ws = self._workspaces[m] = Workspace(self.backend, self.layer_dims, m, self.dtype)
            if len(self._workspaces) > _KEPT:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(m)
        return ws

    def check_memory(self, m: int, optimizer=None, dropout: bool = False) -> None:
        """Raise InsufficientMemoryError when what batches of m examples still need exceeds the memory available.

        Counts what is not allocated yet: the workspace for m, the optimizer's state vectors (an `Optimizer`,
        or None), dropout's buffers. Called before they are allocated (see `dnn.validation.memory_estimate`).
        """
        ws = self._workspaces.get(m)
        slots = [slot for slot in optimizer.slots if slot not in optimizer.state] if optimizer is not None else []
        need = memory_estimate(self.layer_dims, self.dtype, m, len(slots), dropout)
        require_memory(
            self.backend,
            f"{self!r} on batches of {m} examples",
            {
                "workspace": need.workspace if ws is None else 0,
                "dropout buffers": need.dropout if ws is None or not ws.masks else 0,
                "optimizer state": need.optimizer,
            },
        )

    def _as_batch(self, X, Y=None, labels_for: str | None = None) -> Batch:
        """X (and Y) as a checked Batch; `labels_for` names the call that needs labels (None: X alone is used)."""
        if isinstance(X, Batch):
            check_batch(self, X, labels_for=labels_for)
            return X
        if labels_for is not None:
            require_labels(Y, labels_for)
        return self.batch(X, Y)

    # ------------------------------------------------------------------ computation
    def _run(self, batch: Batch, masks=None, with_grad=False):
        ws = self.workspace(batch.X.shape[1])
        forward(self, batch, ws, masks=masks, with_grad=with_grad)
        if with_grad:
            backward(self, batch, ws)
        return ws

    def _cost(self, ws: Workspace, l2: float) -> float:
        cost = float(self.backend.to_numpy(ws.cost)[0])
        if l2:
            penalty = sum(self.backend.sum_of_squares(W) for W in self.params.W[1:])
            cost += l2 / (2 * ws.m) * penalty  # (λ/2m)·Σ‖W[l]‖²
        return cost

    def _check_masks(self, masks, m):
        if masks is None:
            return None
        masks = list(masks)
        if len(masks) != self.num_layers - 1:
            raise ValueError(
                f"dropout_masks needs one entry per hidden layer ({self.num_layers - 1}), got {len(masks)}"
            )
        checked = []
        for l, mask in enumerate(masks, start=1):
            if mask is not None:
                mask = self.backend.contiguous(as_matrix(self.backend, mask, self.dtype, f"dropout mask of layer {l}"))
                if tuple(mask.shape) != (self.layer_dims[l], m):
                    raise ShapeError(
                        f"dropout mask of layer {l} has shape {tuple(mask.shape)}, expected ({self.layer_dims[l]}, {m})"
                    )
            checked.append(mask)
        return checked

    def forward(self, X):
        """Output probabilities A[L] (n_L, m) for X, as a new backend array."""
        batch = self._as_batch(X)
        with self.busy:
            ws = self._run(Batch(batch.X, None))
            out = self.backend.empty(ws.A[self.num_layers].shape, self.dtype)
            self.backend.copyto(out, ws.A[self.num_layers])
        return out

    def loss(self, X, Y=None, l2: float = 0.0, dropout_masks=None) -> float:
        """The cost: mean cross-entropy plus (l2/2m)·Σ‖W‖², with fixed dropout masks if given; Y is required."""
        batch = self._as_batch(X, Y, labels_for="Network.loss")
        l2 = check_non_negative(l2, "l2")
        masks = self._check_masks(dropout_masks, batch.X.shape[1])
        with self.busy:
            return self._cost(self._run(batch, masks=masks), l2)

    def backward(self, X, Y=None, l2: float = 0.0, dropout_masks=None):
        """(cost, gradients): gradients keyed dW1, db1, ..., as new backend arrays; Y is required.

        Runs forward and backward propagation on (X, Y); `dropout_masks` fixes the hidden layers' masks.
        """
        batch = self._as_batch(X, Y, labels_for="Network.backward")
        l2 = check_non_negative(l2, "l2")
        masks = self._check_masks(dropout_masks, batch.X.shape[1])
        with self.busy:
            ws = self._run(batch, masks=masks, with_grad=True)
            if l2:
                add_l2_gradient(self, l2, ws.m)  # dW[l] += (λ/m)·W[l], as a training step adds it
            grads = {}
            for _, grad, name in self.gradient_buffers():
                grads[f"d{name}"] = self.backend.empty(grad.shape, self.dtype)
                self.backend.copyto(grads[f"d{name}"], grad)
            return self._cost(ws, l2), grads

    def train_step(self, batch: Batch, lr: float = 0.0075, l2: float = 0.0) -> float:
        """One gradient-descent step on a prepared batch; returns the cost before the update.

        W[l] ← W[l] - lr·dW[l] and b[l] ← b[l] - lr·db[l] for every layer. Raises DivergenceError, with the
        parameters left as they were, when the cost or a gradient is not finite. This is the convenience API:
        it reads the cost back every step; `dnn.step.TrainStep` (what `fit` uses) reads when it logs.
        """
        l2 = check_non_negative(l2, "l2")  # lr is checked by the step itself
        key = (batch.X.shape[1] if isinstance(batch, Batch) else None, l2)
        with self.busy:
            step = self._train_steps.get(key)
            if step is None:
                check_batch(self, batch, labels_for="Network.train_step")  # a clear error before a step is built
                if self._sgd is None:
                    self._sgd = SGD()
                step = self._train_steps[key] = TrainStep(self, key[0], self._sgd, l2=l2, accuracy=False)  # cost alone
                if len(self._train_steps) > _KEPT:
                    self._train_steps.popitem(last=False)
            with numpy_warnings_silenced():  # a divergence is the DivergenceError of `read`, not NumPy's warnings too
                step(batch, lr)
            return step.read().cost

    def step(self, X, Y, lr: float = 0.0075, l2: float = 0.0) -> float:
        """Validate (X, Y) and take one gradient-descent step; returns the cost before the update."""
        require_labels(Y, "Network.step")
        return self.train_step(self.batch(X, Y), lr=lr, l2=l2)

    def predict_proba(self, X) -> np.ndarray:
        """Output probabilities (n_L, m) as a host NumPy array."""
        return self.backend.to_numpy(self.forward(X))

    def predict(self, X) -> np.ndarray:
        """Predicted classes (1, m) as a host NumPy array: 0/1 for sigmoid, class indices for softmax."""
        batch = self._as_batch(X)
        with self.busy:
            ws = self._run(Batch(batch.X, None))
            return self.backend.to_numpy(self.backend.predict_classes(ws.A[self.num_layers], self.output))

    def evaluate(self, X, Y) -> dict:
        """{'cost': mean cross-entropy, 'accuracy': fraction of examples classified correctly}; Y is required."""
        batch = self._as_batch(X, Y, labels_for="Network.evaluate")
        with self.busy:
            ws = self._run(batch)
            be, state = self.backend, self.backend.new_step_state()
            be.record_step(state, ws.cost, ws.A[self.num_layers], batch.Y, self.output)
            counts = be.to_numpy(state)
            return {"cost": self._cost(ws, 0.0), "accuracy": float(counts[STEP_CORRECT] / counts[STEP_EXAMPLES])}

    # ------------------------------------------------------------------ training and model files
    def fit(self, X, Y, epochs: int = 100, **options):
        """Train on (X, Y) in place and return the History; see `dnn.training.fit` for every option."""
        with self.busy:  # the whole run: another thread's call between two of its steps is refused too
            return training.fit(self, X, Y, epochs=epochs, **options)

    def save(self, path) -> None:
        """Write this network to one .npz file atomically (see `dnn.checkpoint.save`)."""
        with self.busy:  # a snapshot between steps, never half of one
            checkpoint.save(self, path)

    @classmethod
    def load(cls, path, backend=None) -> "Network":
        """The network saved at `path`, on `backend`; raises ModelFileError for a bad file."""
        return checkpoint.load(path, backend=backend, network_class=cls)
