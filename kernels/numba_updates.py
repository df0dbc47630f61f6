"""Numba kernels for the in-place elementwise passes: each optimizer's update (generated), axpy, a product.

`optimizer_kernel(rule, parallel)` is the compiled update of an optimizer declared in `dnn.optimizers`, its
statements rendered as scalar Python (`dnn.expressions`) inside the loop below, in a generated module written to
a file so numba caches it (`kernels/numba_generated.py`). `update_kernel(op, parallel)` builds one small
compiled kernel per remaining operation and variant, compiled on its
first call (and cached on disk): the operation code is a compile-time constant, so a kernel holds one
operation's loop only. The parallel variant processes chunks of CHUNK elements on numba's threads (large
arrays only: a thread launch costs more than a small pass), the serial one sweeps the array once on the
calling thread. Arrays arrive flattened to 1-D (C-contiguous); scalars arrive already cast to the arrays'
dtype, so each operation performs the reference's arithmetic (`backends/base.py`) in the reference's order
and dtype. Element k is read before it is written, so an output may be one of the inputs itself.
"""

from __future__ import annotations

from functools import cache

from numba import njit, prange

from ..expressions import SCALAR, render_assignments
from ..optimizers import GRAD, PARAM
from .numba_generated import load_generated_module

#: The operations by name; an operation's code (a compile-time constant of its kernel) is its index here.
OPERATIONS = ("axpy", "multiply")
AXPY = OPERATIONS.index("axpy")
MULTIPLY = OPERATIONS.index("multiply")
#: Elements per parallel task.
CHUNK = 1 << 14

#: An optimizer's kernel module: `<name>_update` and `<name>_update_parallel` over (param, grad, *slots, operands),
#: the operands one tuple (one argument to type at each call) already cast to the arrays' dtype. The loop is
#: `update_kernel`'s: chunks of CHUNK on numba's threads, or one.
_OPTIMIZER_MODULE = """\
\"\"\"Generated from optimizer {name!r} of dnn.optimizers by dnn.kernels.numba_updates; do not edit.\"\"\"
import numpy as np
from numba import njit, prange

CHUNK = {chunk}
{kernels}"""
_OPTIMIZER_KERNEL = """
@njit(cache=CACHE{options})
def {function}({arguments}, operands):
    {unpack} = operands
    n = param.size
    chunk = {chunk}
    for c in {chunks}((n + chunk - 1) // chunk):
        lo, hi = c * chunk, (c + 1) * chunk
        hi = hi if hi < n else n
        for k in range(lo, hi):
{body}
"""


def optimizer_source(rule) -> str:
    """The generated module of optimizer `rule` (`dnn.optimizers.UpdateRule`): its serial and parallel kernels."""
    arrays = (PARAM, GRAD, *rule.slots)
    element = SCALAR._replace(name=lambda name: f"{name}_k" if name in arrays else name)
    assigned = dict.fromkeys(s.target for s in rule.statements)
    body = [f"{a}_k = {a}[k]" for a in arrays]  # element k read before anything is written: inputs may alias
    body += render_assignments(rule.statements, element)
    body += [f"{a}[k] = {a}_k" for a in assigned]
    kernels = "".join(
        _OPTIMIZER_KERNEL.format(
            options=", parallel=True" if parallel else "",
            function=f"{rule.name}_update{'_parallel' * parallel}",
            arguments=", ".join(arrays),
            unpack=f"{', '.join(rule.operands)}," if rule.operands else "_",
            chunk="CHUNK" if parallel else "n if n > 0 else 1",
            chunks="prange" if parallel else "range",
            body="\n".join(f"            {line}" for line in body),
        )
        for parallel in (False, True)
    )
    return _OPTIMIZER_MODULE.format(name=rule.name, chunk=CHUNK, kernels=kernels)


@cache
def optimizer_kernel(rule, parallel: bool):
    """The compiled update of optimizer `rule` as kernel(param, grad, *slots, operands) over 1-D arrays of one
    size, in place; `operands` the values of `rule.operands` in the arrays' dtype, as a tuple."""
    module = load_generated_module(f"{rule.name}_update", optimizer_source(rule))
    return getattr(module, f"{rule.name}_update{'_parallel' * parallel}")


@cache
def update_kernel(op: int, parallel: bool):
    """The compiled operation `op` as kernel(y, x, m1, s) over 1-D arrays of one size, in place.

    s = (alpha,) in the arrays' dtype; an array an operation does not use is a placeholder.
    """
    chunks = prange if parallel else range  # a constant of the kernel: part of its cache key, like op

    def update(y, x, m1, s):
        n = y.size
        chunk = CHUNK if parallel else (n if n > 0 else 1)  # conditionals, not min/max: each compiles an overload
        for c in chunks((n + chunk - 1) // chunk):
            lo, hi = c * chunk, (c + 1) * chunk
            hi = hi if hi < n else n
            if op == AXPY:  # y ← y + s0·x
                for k in range(lo, hi):
                    y[k] += s[0] * x[k]
            else:  # MULTIPLY: y ← x * m1
                for k in range(lo, hi):
                    y[k] = x[k] * m1[k]

    return njit(cache=True, parallel=parallel)(update)
