"""The GPU backend: CuPy arrays, cuBLAS for matrix products, fused CUDA kernels for everything else.

cupy is imported when this backend is checked or instantiated, never when dnn is imported; the kernels
(`dnn.kernels.cupy_*`, CUDA C sources) are compiled on first use, or all at once by `warmup()`.

Each override runs a kernel when its arrays are C-contiguous cupy arrays sharing one dtype in (float32,
float64) and an output is either an input itself or disjoint from it; anything else (a transposed view,
another dtype, partly overlapping buffers) goes to the interface's own CuPy-expression code in `Backend`,
which computes the same values. Matrix products call cuBLAS through `backends/cublas.py` on CuPy's own
handle and current stream, with α and β. float32 products use TF32 tensor cores only when asked
(`CupyBackend(tf32=True)` or DNN_TF32=1); the choice is the `tf32` attribute, which benchmark output records.

Updates take the float64 step-state vector (`state=`): a kernel reads its diverged flag on the device and
writes nothing when it is set. The learning rate may be a float64 device scalar ((1,) cupy array) and
Adam's `t` too, so a captured CUDA graph can serve every step. Every step-state operation (begin, record,
L2 cost, guard, commit) is one kernel with no host value, so `compile_step` can capture the whole step in a
CUDA graph (`backends/cupy_graph.py`, docs/cupy.md); `cuda_graphs=False` or DNN_CUDA_GRAPHS=0 switch it off.
"""

from __future__ import annotations

import os

import numpy

from ..errors import install_hint
from ..kernels.step_state import NONFINITE, STATE_SIZE
from ..activations import ACTIVATION_CODES, REGISTRY
from ..kernels.cupy_updates import kernel_arguments
from ..optimizers import LR, is_registered
from .base import Backend, check_output
from .cupy_graph import StepStateReads
from .shapes import gemm_shapes_fit, is_column_of, output_shapes_fit

_KERNEL_DTYPES = ("float32", "float64")
#: Threads per block of the elementwise kernels, and the most blocks a grid-stride launch uses.
THREADS = 256
MAX_BLOCKS = 1 << 16
TF32_ENV = "DNN_TF32"
CUDA_GRAPHS_ENV = "DNN_CUDA_GRAPHS"
_NULL = numpy.uint64(0)  # a null pointer argument (CuPy turns None into an invalid address)


def _pointer(array):
    """A kernel's pointer argument: the array, or null for None."""
    return _NULL if array is None else array


def _blocks(size: int) -> int:
    return max(1, min(MAX_BLOCKS, -(-size // THREADS)))


class CupyBackend(StepStateReads, Backend):
    """CuPy on the current CUDA device, with fused CUDA kernels and cuBLAS products."""

    name = "cupy"

    def __init__(self, tf32: bool | None = None, cuda_graphs: bool | None = None):
        import cupy

        from ..kernels.cupy_modules import CompiledKernels
        from .cublas import WORKSPACE_BYTES, load_cublas

        self._use_kernels(cupy, CompiledKernels(cupy), tf32, cuda_graphs)
        cupy.cuda.device.get_cublas_handle()  # makes CuPy load its libcublas before the binding looks for it
        self.cublas = load_cublas()
        self._workspace = cupy.empty((WORKSPACE_BYTES,), dtype=cupy.uint8)  # kept for every call, never reallocated
        self._flag = cupy.zeros((1,), dtype=cupy.int32)

    def _use_kernels(self, xp, kernels, tf32: bool | None, cuda_graphs: bool | None = None) -> None:
        """The array module, the compiled kernels (anything with `function(source, kernel, dtype)`), the TF32 and
        CUDA-graph choices."""
        from ..kernels import cupy_activations, cupy_checks, cupy_output, cupy_updates

        self.xp = xp
        #: True: float32 GEMMs may use TF32 tensor cores (off unless DNN_TF32=1 or tf32=True).
        self.tf32 = os.environ.get(TF32_ENV) == "1" if tf32 is None else bool(tf32)
        #: True: TrainStep's "compiled" strategy captures the whole step in a CUDA graph (DNN_CUDA_GRAPHS=0 or
        #: cuda_graphs=False switch it off; the step then runs by phases).
        self.cuda_graphs = os.environ.get(CUDA_GRAPHS_ENV) != "0" if cuda_graphs is None else bool(cuda_graphs)
        self._kernels = kernels
        self._src = {
            "act": cupy_activations.SOURCE,
            "out": cupy_output.SOURCE,
            "upd": cupy_updates.SOURCE,
            "chk": cupy_checks.SOURCE,
        }

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import cupy
        except ImportError as exc:
            return f"cupy is not installed ({exc}); {install_hint('cuda12')} (or cuda13, for CUDA 13)"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError without a driver; its type lives in cupy
            return f"no usable CUDA device: {exc}"
        if count == 0:
            return "no CUDA device is visible"
        return None

    def to_numpy(self, a):
        return self.xp.asnumpy(a)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def warmup(self) -> None:
        """Compile (or load from CuPy's kernel cache) every CUDA kernel for float32 and float64 now."""
        self._kernels.compile_all()

    # ------------------------------------------------------------------ helpers
    def _kernel_dtype(self, *arrays):
        """The arrays' common dtype name when every array is a C-contiguous float32/float64 backend array, else None."""
        ndarray = self.xp.ndarray
        dtype = arrays[0].dtype if isinstance(arrays[0], ndarray) else None
        if dtype is None or dtype.name not in _KERNEL_DTYPES:
            return None
        for a in arrays:
            if not isinstance(a, ndarray) or a.dtype != dtype or not a.flags.c_contiguous:
                return None
        return dtype.name

    def _separate_or_same(self, out, *inputs) -> bool:
        """True when `out` is each input itself or shares no memory with it (element k is read, then written)."""
        return all(a is out or not self.xp.may_share_memory(out, a) for a in inputs)

    def _disjoint(self, arrays) -> bool:
        return all(not self.xp.may_share_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1 :])

    def _launch(self, source: str, kernel: str, dtype, grid, block, args) -> None:
        self._kernels.function(self._src[source], kernel, dtype)(grid, block, args)

    def _device_scalar(self, value, what: str):
        """(host value, device array or None): a float64 backend array of one element is read on the device."""
        if isinstance(value, self.xp.ndarray):
            if value.dtype != numpy.float64 or value.size != 1:
                raise ValueError(
                    f"{what} on the device must be a float64 array of one element, not {value.dtype} {value.shape}"
                )
            return numpy.float64(0.0), value
        return numpy.float64(value), None

    def _state_argument(self, state, optional: bool = True):
        """`state` checked as the (STATE_SIZE,) float64 step-state vector on this device; a null pointer for an optional None."""
        if state is None and optional:
            return _NULL
        if (
            not isinstance(state, self.xp.ndarray)
            or state.dtype != numpy.float64
            or state.shape != (STATE_SIZE,)
            or not state.flags.c_contiguous
        ):
            raise ValueError(
                f"the step state must be a contiguous float64 backend array of shape ({STATE_SIZE},), "
                f"not {type(state).__name__} {getattr(state, 'dtype', '')} {getattr(state, 'shape', '')}".rstrip()
            )
        return state

    def _diverged_on_host(self, state) -> bool:
        """The diverged flag read on the host (synchronises): only for inputs no kernel covers."""
        return state is not None and float(self._state_argument(state)[NONFINITE]) != 0.0

    # ------------------------------------------------------------------ linear algebra
    def gemm(
        self, a, b, out, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0
    ) -> None:
        dtype = self._kernel_dtype(a, b, out)
        if (
            dtype is None
            or not gemm_shapes_fit(a, b, out, trans_a, trans_b)
            or not self._disjoint((out, a))
            or not self._disjoint((out, b))
        ):
            super().gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
            return
        cuda = self.xp.cuda
        handle = cuda.device.get_cublas_handle()  # CuPy's handle of this thread and device
        self.cublas.prepare(handle, cuda.get_current_stream().ptr, self._workspace.data.ptr, self._workspace.nbytes)
        self.cublas.gemm(
            handle,
            dtype,
            a.data.ptr,
            b.data.ptr,
            out.data.ptr,
            a.shape,
            b.shape,
            trans_a,
            trans_b,
            alpha,
            beta,
            tf32=self.tf32 and dtype == "float32",
        )

    # ------------------------------------------------------------------ forward
    def bias_activation_forward(self, Z, b, activation: str, out) -> None:
        code = ACTIVATION_CODES.get(activation)
        dtype = self._kernel_dtype(Z, b, out)
        if (
            code is None
            or dtype is None
            or out.shape != Z.shape
            or Z.ndim != 2
            or not is_column_of(Z.shape[0], b)
            or not self._separate_or_same(out, Z, b)
        ):
            super().bias_activation_forward(Z, b, activation, out)
            return
        self._forward(Z, b, code, out, dtype, with_bias=True)

    def activation_forward(self, Z, activation: str, out) -> None:
        code = ACTIVATION_CODES.get(activation)
        dtype = self._kernel_dtype(Z, out)
        if code is None or dtype is None or out.shape != Z.shape or Z.ndim != 2 or not self._separate_or_same(out, Z):
            super().activation_forward(Z, activation, out)
            return
        self._forward(Z, Z, code, out, dtype, with_bias=False)  # b is never read without the bias

    def _forward(self, Z, b, code, out, dtype, with_bias: bool) -> None:
        n, m = Z.shape
        if Z.size == 0:
            return
        grid = (min(MAX_BLOCKS - 1, -(-m // THREADS)), min(MAX_BLOCKS - 1, n))
        self._launch(
            "act",
            "bias_activation_forward",
            dtype,
            grid,
            (THREADS,),
            (Z, b, out, numpy.int64(n), numpy.int64(m), numpy.int32(code), numpy.int32(with_bias)),
        )

    # ------------------------------------------------------------------ backward
    def activation_backward(self, dA, activation: str, out, *, A=None, Z=None, db=None, db_scale: float = 1.0) -> None:
        code = ACTIVATION_CODES.get(activation)
        src = A if A is not None else Z if Z is not None else dA  # a constant g' (linear) reads neither A nor Z
        inputs = (dA, src) if db is None else (dA, src, db)
        dtype = self._kernel_dtype(out, *inputs)
        if (
            code is None
            or dtype is None
            or (A is None and Z is None and REGISTRY[activation].uses_output())  # the reference raises: g' reads A or Z
            or dA.ndim != 2
            or out.shape != dA.shape
            or src.shape != dA.shape
            or (db is not None and not is_column_of(dA.shape[0], db))
            or not self._separate_or_same(out, *inputs)
        ):
            super().activation_backward(dA, activation, out, A=A, Z=Z, db=db, db_scale=db_scale)
            return
        self._backward(dA, src, out, db, code, A is not None, db_scale, dtype)

    def bias_grad(self, dZ, out, scale: float) -> None:
        dtype = self._kernel_dtype(dZ, out)
        if dtype is None or dZ.ndim != 2 or not is_column_of(dZ.shape[0], out) or not self._separate_or_same(out, dZ):
            super().bias_grad(dZ, out, scale)
            return
        self._backward(dZ, dZ, None, out, ACTIVATION_CODES["linear"], True, scale, dtype)

    def _backward(self, dA, src, out, db, code, from_output, db_scale, dtype) -> None:
        n, m = dA.shape
        if n == 0:
            return
        if m == 0 and db is not None:  # an empty sum: no column for the kernel's threads to visit
            db.fill(0)
            return
        self._launch(
            "act",
            "activation_backward",
            dtype,
            (min(MAX_BLOCKS, n),),
            (THREADS,),
            (
                dA,
                src,
                _pointer(out),
                _pointer(db),
                numpy.int64(n),
                numpy.int64(m),
                numpy.int32(code),
                numpy.int32(from_output),
                numpy.float64(db_scale),
            ),
        )

    # ------------------------------------------------------------------ output layer and cost
    def output_layer(self, Z, b, output: str, A, Y=None, dZ=None, cost=None, dZ_scale: float = 1.0) -> None:
        check_output(output)
        given = [x for x in (Z, b, A, Y, dZ, cost) if x is not None]
        dtype = self._kernel_dtype(*given)
        if (
            dtype is None
            or Z.ndim != 2
            or Z.size == 0
            or (Y is None and (dZ is not None or cost is not None))  # the reference says what is missing
            or not output_shapes_fit(Z, b, A, Y, dZ, cost)
            or not self._disjoint(given)  # Z is kept (the logits) and A, dZ, cost each need their own buffer
        ):
            super().output_layer(Z, b, output, A, Y=Y, dZ=dZ, cost=cost, dZ_scale=dZ_scale)
            return
        n, m = Z.shape
        scale = numpy.dtype(dtype).type(dZ_scale)
        self._launch(
            "out",
            f"{output}_output",
            dtype,
            (1,),
            (THREADS,),
            (Z, b, A, _pointer(Y), _pointer(dZ), _pointer(cost), numpy.int64(n), numpy.int64(m), scale),
        )

    # ------------------------------------------------------------------ parameter updates (in place)
    def _elementwise_dtype(self, target, *others):
        """The dtype name for an elementwise kernel that updates `target` from same-shaped `others`, or None."""
        dtype = self._kernel_dtype(target, *others)
        if dtype is None or not self._separate_or_same(target, *others) or any(o.shape != target.shape for o in others):
            return None
        return dtype

    def _elementwise(self, kernel: str, dtype, size: int, args) -> None:
        if size:
            self._launch("upd", kernel, dtype, (_blocks(size),), (THREADS,), (numpy.int64(size), *args))

    def axpy(self, alpha: float, x, y) -> None:
        dtype = self._elementwise_dtype(y, x)
        if dtype is None:
            super().axpy(alpha, x, y)
            return
        self._elementwise("axpy", dtype, y.size, (numpy.float64(alpha), x, y))

    def optimizer_update(self, rule, param, grad, slots, lr, hyperparameters: dict, t, state=None) -> None:
        """The optimizer's generated kernel (`kernels/cupy_updates.py`); nothing when `state` says the step diverged.
        `lr` and the step count `t` may be device scalars (a captured step's)."""
        dtype = self._elementwise_dtype(param, grad, *slots)
        lr_host, lr_device = self._device_scalar(lr, "the learning rate")
        t_host, t_device = self._device_scalar(t, "the step count")
        if (
            dtype is None
            or not is_registered(rule)  # the CUDA source holds the registered optimizers' kernels
            or not all(self._separate_or_same(s, grad, *slots[:i], *slots[i + 1 :]) for i, s in enumerate(slots))
        ):
            if not self._diverged_on_host(state):
                t = int(t) if t_device is None else int(t_device.item())
                super().optimizer_update(rule, param, grad, slots, lr, hyperparameters, t)
            return
        # with t on the device, the scalars depending on it are formed there: the host's (at t = 0) stand in
        values = {LR: lr_host, **hyperparameters, **rule.host_scalars(hyperparameters, int(t_host))}
        doubles = [numpy.float64(values[name]) for name in kernel_arguments(rule)]
        self._elementwise(
            f"{rule.name}_update",
            dtype,
            param.size,
            (
                param,
                grad,
                *slots,
                *doubles,
                _pointer(lr_device),
                _pointer(t_device),
                self._state_argument(state),
            ),
        )

    # ------------------------------------------------------------------ dropout
    def multiply(self, a, b, out) -> None:
        dtype = self._elementwise_dtype(out, a, b)
        if dtype is None:
            super().multiply(a, b, out)
            return
        self._elementwise("multiply", dtype, out.size, (a, b, out))

    # ------------------------------------------------------------------ checks and the step state
    def all_finite(self, a) -> bool:
        dtype = self._kernel_dtype(a)
        if dtype is None:
            return super().all_finite(a)
        if a.size == 0:
            return True
        self._flag.fill(0)
        self._launch(
            "chk", "flag_non_finite", dtype, (_blocks(a.size),), (THREADS,), (numpy.int64(a.size), a, self._flag)
        )
        return int(self._flag[0]) == 0

    def guard_step(self, state, grad=None) -> None:
        """NONFINITE ← 1 when STEP_COST (the step's cost sum) or any element of `grad` is not finite (sticky)."""
        state = self._state_argument(state, optional=False)
        if grad is None:
            grad = state[:0]  # no elements: the kernel checks the cost alone
        dtype = self._kernel_dtype(grad)
        if dtype is None:
            super().guard_step(state, grad)
            return
        self._launch(
            "chk", "guard_step", dtype, (_blocks(grad.size),), (THREADS,), (numpy.int64(grad.size), grad, state)
        )

    def commit_step(self, state) -> None:
        """When the step did not diverge: the totals TOTAL_COST.. += the step's STEP_COST.., FINITE_STEPS += 1."""
        self._launch("chk", "commit_step", None, (1,), (1,), (self._state_argument(state, optional=False),))

    def begin_step(self, state) -> None:
        """STEP_COST..STEP_EXAMPLES ← 0 (the step in progress) in one kernel: no host value, no temporary."""
        self._launch("chk", "begin_step", None, (1,), (1,), (self._state_argument(state, optional=False),))

    def record_step(self, state, cost, A, Y, output: str) -> None:
        """STEP_COST += cost·m, STEP_CORRECT ← the examples classified correctly, STEP_EXAMPLES ← m: one kernel, no sync."""
        check_output(output)
        state = self._state_argument(state, optional=False)
        dtype = None if Y is None else self._kernel_dtype(A, Y, cost)  # no labels to count: the reference's xp code
        if dtype is None or A.ndim != 2 or Y.shape != A.shape or A.size == 0 or cost.shape != (1,):
            super().record_step(state, cost, A, Y, output)
            return
        n, m = A.shape
        self._launch(
            "chk",
            "record_step",
            dtype,
            (1,),
            (THREADS,),
            (A, Y, cost, numpy.int64(n), numpy.int64(m), numpy.int32(output == "softmax"), state),
        )

    def add_l2_cost(self, state, weights, l2: float) -> None:
        """STEP_COST += (λ/2)·Σ‖W‖², one kernel per weight matrix summing in float64 on the device (no sync)."""
        state = self._state_argument(state, optional=False)
        for W in weights:
            dtype = self._kernel_dtype(W)
            if dtype is None:
                super().add_l2_cost(state, [W], l2)
            elif W.size:
                self._launch(
                    "chk",
                    "add_sum_of_squares",
                    dtype,
                    (1,),
                    (THREADS,),
                    (numpy.int64(W.size), W, numpy.float64(l2 / 2), state),
                )

    def _advance_step_count(self, t, state) -> None:
        """t[0] += 1 on the device unless `state` says the step diverged: Adam's step count inside a captured step
        (the captured plan's one operation beyond the interface, `cupy_graph.advance_step_count`)."""
        self._device_scalar(t, "Adam's step count")
        self._launch("upd", "advance_step_count", None, (1,), (1,), (t, self._state_argument(state, optional=False)))

    # ------------------------------------------------------------------ whole steps
    def compile_step(self, plan):
        """Strategy "compiled": the whole step captured once in a CUDA graph and replayed (backends/cupy_graph.py).

        None (the step runs by phases) for other strategies, with dropout or a gradient reducer, or when graphs
        are switched off (`CupyBackend(cuda_graphs=False)` or DNN_CUDA_GRAPHS=0).
        """
        from .cupy_graph import CupyCapture, compile_captured_step

        return compile_captured_step(self, plan, CupyCapture(self)) if self.cuda_graphs else None
