"""`python -m dnn backends` and `warmup`: which backends run here, and numba's kernels compiled ahead of a run."""

from __future__ import annotations

import time

from ..backends import available_backends, get_backend
from ..activations import check_activation
from ..validation import check_count
from .options import QUICK_START_DIMS, int_list


def list_backends(args) -> int:
    """One line per backend: whether it runs here and why not; for numba, how warm its kernel cache is."""
    statuses = available_backends()
    width = max(len(status.name) for status in statuses)
    for status in statuses:
        print(f"{status.name:<{width}} {'yes' if status.available else 'no ':<3}  {status.reason or ''}".rstrip())
        if status.name == "numba" and status.available:
            from ..backends.numba_backend import kernel_cache_status  # imports numba: only when it can run

            cache = kernel_cache_status(QUICK_START_DIMS, "float32", optimizer="adam", examples=64, fit_only=True)
            state = "warm" if cache.warm else "cold" if cache.cached == 0 else "partly warm"
            print(
                f"       kernel cache for `python -m dnn train`: {state} ({cache.cached} of the {cache.total} kernels it "
                f"calls are in {cache.directory}; `python -m dnn warmup` compiles them)"
            )
    return 0


def warmup(args) -> int:
    """Compile (or load from the cache) the numba kernels of the network the options describe, one line each.

    Another --backend: its kernels all at once when it compiles any ahead of a run (cupy), else a line saying
    that there is nothing to warm up.
    """
    dims = [args.features, *int_list(args.layers, "--layers"), args.outputs]
    check_activation(args.activation)
    check_count(args.batch_size, "--batch-size", 1)
    backend = get_backend(args.backend)  # BackendUnavailableError says why when it cannot run here
    if backend.name != "numba":
        if not hasattr(backend, "warmup"):
            print(f"{backend.name}: nothing to warm up (it compiles no kernels ahead of a run)")
            return 0
        backend.warmup()
        print(f"{backend.name}: every kernel compiled or loaded from its cache")
        return 0
    print(
        f"numba: the kernels training {dims} ({args.activation}, {args.optimizer}, {args.dtype}, batch size "
        f"{args.batch_size}) calls",
        flush=True,
    )

    def report(done, total, name, seconds, cached):
        print(f"[{done:>2}/{total}] {name:<44} {'cached' if cached else 'compiled'} in {seconds:.2f} s", flush=True)

    start = time.perf_counter()
    backend.warmup(
        dims,
        args.dtype,
        activations=args.activation,
        optimizer=args.optimizer,
        examples=args.batch_size,
        progress=report,
    )
    print(f"ready in {time.perf_counter() - start:.1f} s; later runs load them from numba's cache")
    return 0
