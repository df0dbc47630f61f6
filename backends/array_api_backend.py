"""A backend over an Array API namespace: array_api_strict (the test-only proof that the core needs no NumPy).

The Array API standard (2023.12) has no ``out=`` arguments, no ``copyto`` and no in-place ufuncs, so every
write into a caller's buffer here is ``out[...] = expression``: a temporary, then a copy. That is what this
backend overrides, and all it overrides; everything else is `Backend`'s own code running on the namespace.
It is a reference for portability, not a fast backend, and trains with the phases strategy (`compile_step`
is the interface's None).

Another library plugs in through array_api_compat (not a dependency of dnn): ``ArrayApiBackend(xp)`` with
``xp = array_api_compat.array_namespace(torch.empty(0))`` serves torch, whose tensors are mutable views as
this interface needs. JAX's arrays are immutable, so a backend writing into reused buffers cannot serve it.
"""

from __future__ import annotations

import importlib.util

import numpy

from ..activations import activation as activation_declared
from ..expressions import stable_sigmoid
from .base import STEP_CORRECT, STEP_COST, STEP_EXAMPLES, Backend, check_output

#: The standard's dtype names: how a backend dtype is told apart from NumPy's (they never compare equal).
_DTYPE_NAMES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")


class ArrayApiBackend(Backend):
    """The interface on the Array API namespace `xp` (array_api_strict when none is given).

    Random numbers (dropout masks) are drawn on the host with NumPy, as the standard has no generator, and
    copied in: the masks are those of the NumPy backend for the same seed.
    """

    name = "array_api_strict"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("array_api_strict") is None:
            return "array_api_strict is not installed (pip install array-api-strict; it is in dnn's test extra)"
        return None

    def __init__(self, xp=None):
        if xp is None:
            import array_api_strict as xp  # imported here: dnn never needs it to import
        self.xp = xp
        self._array_type = type(xp.empty(0))
        self._dtype_names = {getattr(xp, name): name for name in _DTYPE_NAMES if hasattr(xp, name)}

    # ------------------------------------------------------------------ arrays and transfers
    def native_dtype(self, dtype):
        if isinstance(dtype, type(self.xp.float64)):  # the backend's own already (a backend array's dtype)
            return dtype
        return getattr(self.xp, numpy.dtype(dtype).name)

    def host_dtype(self, a):
        return numpy.dtype(self._dtype_names[a.dtype])

    def is_array(self, a) -> bool:
        return isinstance(a, self._array_type)

    def reshape(self, a, shape):
        return self.xp.reshape(a, shape)

    def copyto(self, dst, src) -> None:
        dst[...] = self.xp.astype(src if self.is_array(src) else self.xp.asarray(src), dst.dtype)

    def is_contiguous(self, a) -> bool:
        return True  # the standard leaves memory layout to the library: no array of it is strided for us

    def contiguous(self, a):
        return a

    def take_columns(self, a, index, out) -> None:
        out[...] = self.xp.take(a, index, axis=1)

    def random_generator(self, seed):
        return numpy.random.default_rng(seed)

    # ------------------------------------------------------------------ linear algebra
    def gemm(
        self, a, b, out, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0
    ) -> None:
        product = (a.T if trans_a else a) @ (b.T if trans_b else b)
        if alpha != 1.0:
            product = product * alpha
        out[...] = product if beta == 0.0 else out * beta + product

    def matmul_into(self, a, b, out) -> None:
        out[...] = a @ b

    # ------------------------------------------------------------------ elementwise (the base writes with out=)
    def activation_writers(self, activation: str):
        return activation_declared(activation).assigning_writers

    def bias_grad(self, dZ, out, scale: float) -> None:
        total = self.xp.sum(dZ, axis=1, keepdims=True)  # (n, 1)
        out[...] = total if scale == 1.0 else total * scale

    def multiply(self, a, b, out) -> None:
        out[...] = a * b

    def subtract(self, a, b, out) -> None:
        out[...] = a - b

    def dropout_mask(self, rng, keep_prob: float, out) -> None:
        u = self.asarray(rng.random(tuple(out.shape), dtype=self.host_dtype(out)))  # NumPy's draw, copied in
        out[...] = self.xp.astype(u < keep_prob, out.dtype) * (1.0 / keep_prob)

    # ------------------------------------------------------------------ output layer and cost
    def output_layer(self, Z, b, output: str, A, Y=None, dZ=None, cost=None, dZ_scale: float = 1.0) -> None:
        xp = self.xp
        check_output(output)
        Z += b  # (n_L, m) logits
        if output == "sigmoid":
            A[...] = stable_sigmoid(xp, Z)
        else:
            shifted = Z - xp.max(Z, axis=0, keepdims=True)  # (n_L, m), each column's max at 0
            e = xp.exp(shifted)
            A[...] = e / xp.sum(e, axis=0, keepdims=True)
        if cost is not None:
            if output == "sigmoid":
                # y·(-log σ(z)) + (1-y)·(-log(1-σ(z))) = max(z,0) - z·y + log1p(exp(-|z|))
                per_elem = xp.maximum(Z, xp.zeros_like(Z)) - Z * Y + xp.log1p(xp.exp(-xp.abs(Z)))
            else:
                # lse - z = (max - z) + log1p(Σ_{k≠argmax} exp(z_k - max)), each column's top term dropped
                rows = xp.arange(Z.shape[0])[:, None]  # (C, 1)
                top = rows == xp.argmax(Z, axis=0)[None, :]  # (C, m): one True per column, even on ties
                others = xp.where(top, xp.zeros_like(e), e)
                per_elem = Y * (-shifted + xp.log1p(xp.sum(others, axis=0, keepdims=True)))  # (C, m)
            cost[0] = xp.sum(per_elem) / Z.shape[1]
        if dZ is not None:
            dZ[...] = A - Y if dZ_scale == 1.0 else (A - Y) * dZ_scale

    def cost_from_probabilities(self, AL, Y, output: str) -> float:
        xp = self.xp
        check_output(output)
        logs = Y * xp.log(AL) + ((1 - Y) * xp.log(1 - AL) if output == "sigmoid" else 0.0)
        return float(-xp.sum(logs) / AL.shape[1])

    def sigmoid_cross_entropy_grad(self, AL, Y, out) -> None:
        out[...] = -(Y / AL) + (1 - Y) / (1 - AL)

    def sum_of_squares(self, a) -> float:
        return float(self.xp.sum(a * a))

    # ------------------------------------------------------------------ the step state
    def record_step(self, state, cost, A, Y, output: str) -> None:
        xp, (n, m) = self.xp, A.shape
        if Y is None:
            correct = 0.0
        elif output == "sigmoid":
            correct = xp.sum(xp.astype((A > 0.5) == (Y == 1), state.dtype)) / n  # class 1 where A > 0.5
        else:
            check_output(output)
            correct = xp.sum(xp.astype(xp.argmax(A, axis=0) == xp.argmax(Y, axis=0), state.dtype))
        state[STEP_COST] += xp.astype(cost[0], state.dtype) * m  # in float64: cost·m is exact
        state[STEP_CORRECT] = correct
        state[STEP_EXAMPLES] = m

    # ------------------------------------------------------------------ checks and summaries
    def all_finite(self, a) -> bool:
        return bool(self.xp.all(self.xp.isfinite(a)))

    def is_binary(self, a) -> bool:
        return bool(self.xp.all((a == 0) | (a == 1)))

    def columns_sum_to_one(self, a) -> bool:
        return bool(self.xp.all(self.xp.sum(a, axis=0) == 1))

    def predict_classes(self, A, output: str):
        xp = self.xp
        if output == "sigmoid":
            return xp.astype(A > 0.5, A.dtype)
        check_output(output)
        return xp.argmax(A, axis=0)[None, :]
