"""Optimizer updates for the kernel tests, taken from the registry (`dnn.optimizers.OPTIMIZERS`), so every
registered optimizer is tested and none is listed by hand."""

from dnn.optimizers import OPTIMIZERS


def run_update(backend, name, param, grad, slots, lr, t=3, **state):
    """One update of registered optimizer `name` (default hyperparameters) on `backend`; its state vectors are the
    first arrays of `slots`, in order."""
    optimizer = OPTIMIZERS[name]()
    used = tuple(slots)[: len(optimizer.slots)]
    assert len(used) == len(optimizer.slots), f"{name} keeps {len(optimizer.slots)} slots, the test made {len(slots)}"
    backend.optimizer_update(optimizer.rule, param, grad, used, lr, optimizer.config(), t, **state)


#: A name no optimizer can ever be registered under (a declaration's name must be an identifier).
UNREGISTRABLE = "no such optimizer"
