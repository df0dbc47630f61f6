"""The Numba backend: NumPy arrays, numpy's BLAS for matrix products, fused Numba kernels for everything else.

Each override runs a kernel from `dnn.kernels.numba_*` when its arrays are C-contiguous and share one dtype
in (float32, float64); anything else (a transposed view, another dtype, mixed dtypes) goes to the NumPy
reference implementation in `Backend`, which computes the same values. Numba is imported when this backend
is checked or instantiated, never by `import dnn`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy

from ..optimizers import OPTIMIZERS, SGD, check_optimizer
from . import numba_steps
from ..activations import ACTIVATION_CODES, ACTIVATIONS, REGISTRY, check_activation
from .base import OUTPUTS, Backend, check_output
from .blas import numpy_cblas_gemm
from .shapes import gemm_shapes_fit, is_column_of, output_shapes_fit
from .numba_background import is_cached

_KERNEL_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))
PARALLEL_MIN_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class KernelCacheStatus:
    """How many of the compiled kernels a configuration needs are ready (in numba's on-disk cache or already
    compiled in this process), out of `total`; `directory` is where numba keeps them."""

    cached: int
    total: int
    directory: str

    @property
    def warm(self) -> bool:
        """True when a run of the configuration compiles nothing."""
        return self.cached == self.total


def _prefer_workqueue_threads() -> None:
    """Use numba's workqueue threading layer unless the user chose one (NUMBA_THREADING_LAYER).

    Its idle threads sleep instead of spinning. With OpenMP's spinning threads next to OpenBLAS's, the two
    pools fought over this machine's 2 cores: a GEMM followed by a parallel kernel took ~7x longer than the
    two alone. workqueue aborts the process when two Python threads launch parallel kernels at once (a
    parallel region runs without the GIL), so every parallel launch here holds `_PARALLEL_LAUNCH`. No
    effect once numba has started its threads.
    """
    import os

    import numba

    if not os.environ.get("NUMBA_THREADING_LAYER") and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "workqueue"


def _checked_configuration(dims, dtype, hidden, output, optimizer, examples):
    """(dtype, the hidden layers' activations, the output) of a network to warm up, or a ValueError naming the problem."""
    if dtype is None or numpy.dtype(dtype) not in _KERNEL_DTYPES:
        raise ValueError(f"warmup needs the network's dtype, float32 or float64; got {dtype!r}")
    if len(dims) < 2 or not all(isinstance(n, (int, numpy.integer)) and n >= 1 for n in dims):
        raise ValueError(f"layer_dims must be two or more positive integers, got {dims!r}")
    hidden = [hidden] * (len(dims) - 2) if isinstance(hidden, str) else list(hidden)
    if len(hidden) != len(dims) - 2:
        raise ValueError(f"{len(dims) - 2} hidden layer(s) need as many activations, got {hidden!r}")
    for name in hidden:
        check_activation(name)
    output = output or ("sigmoid" if dims[-1] == 1 else "softmax")
    check_output(output)
    if optimizer is not None:
        check_optimizer(optimizer)
    if examples is not None and not (isinstance(examples, (int, numpy.integer)) and examples >= 1):
        raise ValueError(f"examples must be a positive integer (the largest batch), got {examples!r}")
    return numpy.dtype(dtype), hidden, output


#: Held by every launch of a parallel kernel. numba's workqueue threading layer (the one this backend picks)
#: aborts the whole process ("Concurrent access has been detected") when two threads launch at once; a
#: parallel kernel uses every core anyway, so taking turns costs two training threads nothing, and serial
#: kernels (every array below `parallel_min_elements`) never touch the lock.
_PARALLEL_LAUNCH = threading.Lock()


def _launch(kernel, parallel: bool, *args):
    """kernel(*args), holding `_PARALLEL_LAUNCH` when the kernel is a parallel variant."""
    if not parallel:
        return kernel(*args)
    with _PARALLEL_LAUNCH:
        return kernel(*args)


def _kernel_dtype(*arrays):
    """The arrays' common dtype when every array is a C-contiguous ndarray of float32 or float64, else None."""
    dtype = arrays[0].dtype
    if dtype not in _KERNEL_DTYPES:
        return None
    for a in arrays:
        if type(a) is not numpy.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
            return None
    return dtype


def _separate_or_same(out, *inputs) -> bool:
    """True when `out` is each input itself or shares no memory with it.

    The kernels read and write element k in the same iteration, which is right for those two cases only; a
    partly overlapping view goes to the NumPy reference, which buffers.
    """
    for a in inputs:
        if a is not out and numpy.may_share_memory(out, a):
            return False
    return True


def _disjoint(arrays) -> bool:
    """True when no two of `arrays` share memory."""
    for i, a in enumerate(arrays):
        for other in arrays[i + 1 :]:
            if numpy.may_share_memory(a, other):
                return False
    return True


class NumbaBackend(Backend):
    """Fused, row-parallel Numba kernels on NumPy arrays; matrix products stay on numpy's BLAS.

    Threads: as `Backend`, several threads may use it at once on arrays of their own (two networks trained in
    two threads take the same steps as one after the other); launches of parallel kernels take turns
    (`_PARALLEL_LAUNCH`), since numba's workqueue threading layer cannot run two at once.
    """

    name = "numba"
    xp = numpy

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import numba  # imported here, not at `import dnn`
        except Exception as exc:  # not installed, or built against another numpy
            return f"numba cannot be imported ({exc}); pip install numba"
        if numba.config.DISABLE_JIT:  # njit then hands back plain Python functions, and nothing here runs as one
            return "NUMBA_DISABLE_JIT is set, and this backend is made of compiled kernels; unset it to use numba"
        return None

    #: Arrays with at least this many elements are processed by all of numba's threads; smaller ones by the
    #: calling thread alone, where a thread launch (~0.1 ms) would cost more than it saves (measured on 2 cores).
    parallel_min_elements = PARALLEL_MIN_ELEMENTS

    def __init__(self):
        _prefer_workqueue_threads()
        from ..kernels import numba_activations, numba_blas, numba_checks, numba_output, numba_step, numba_updates

        self._act = numba_activations
        self._out = numba_output
        self._upd = numba_updates
        self._chk = numba_checks
        self._blas = numba_blas
        #: the whole-step kernels (`kernels/numba_step.py`), which `backends/numba_steps.py` builds its steps from
        self.step_kernels = numba_step
        self._placeholders = {dt: (numpy.zeros((1, 1), dt), numpy.zeros((1,), dt)) for dt in _KERNEL_DTYPES}
        #: numpy's own cblas_?gemm, called from compiled code (None: numpy.matmul, and no whole-step strategy)
        self.cblas = numpy_cblas_gemm()

    def _parallel(self, a) -> bool:
        return self._parallel_at(a.size)

    def warmup(
        self,
        network=None,
        dtype=None,
        *,
        activations="relu",
        output=None,
        optimizer=None,
        dropout=False,
        examples=None,
        fit_only=False,
        whole_step=True,
        progress=None,
    ) -> None:
        """Compile (or load from numba's on-disk cache) the kernels a network needs now, not on first use.

        `warmup()` compiles every kernel variant for float32 and float64 (docs/numba.md gives its cold cost).
        `warmup(net)`, or `warmup(layer_dims, dtype, activations=..., output=..., optimizer=...)` with
        `Network`'s meaning for each, compiles only what training and evaluating that network calls: its
        activations' forward and backward kernels, its output layer, the optimizer's update (optimizer None:
        every optimizer's), the checks and the matrix products; `dropout=True` adds the mask product.
        `examples`, the most examples one call will take (the batch size, or the whole set for `predict`),
        adds the parallel variants for the arrays that reach `parallel_min_elements` elements; None
        assumes none does. For plain SGD the whole-step strategies' kernels are included (`backends/numba_steps.py`).
        `fit_only=True` leaves out what only L2 and `Network.train_step` (plain SGD) add to a run of `fit`;
        `whole_step=False` leaves out the whole SGD step, which `fit` has a helper process compile (`CompiledStep`).
        `progress(done, total, name, seconds, cached)` is called after each kernel: its name, the seconds it
        took, and whether it was ready before (compiled in this process or in the on-disk cache).
        """
        calls = self._kernel_calls(
            network, dtype, activations, output, optimizer, dropout, examples, fit_only, whole_step
        )
        for done, (kernel, args) in enumerate(calls, 1):
            cached = progress is not None and is_cached(kernel, args)
            start = time.perf_counter()
            with _PARALLEL_LAUNCH:  # a parallel variant must not run beside another thread's (see _launch)
                kernel(*args)
            if progress is not None:
                progress(done, len(calls), kernel_name(kernel, args), time.perf_counter() - start, cached)

    def _kernel_calls(
        self,
        network,
        dtype,
        activations="relu",
        output=None,
        optimizer=None,
        dropout=False,
        examples=None,
        fit_only=False,
        whole_step=True,
    ):
        """[(compiled kernel, tiny arguments of the types its call site passes)] for `warmup` and `kernel_cache_status`."""
        upd = self._upd
        if network is None:  # every variant of every kernel, for both dtypes
            calls = []
            for dtype in _KERNEL_DTYPES:
                calls += self._gemm_calls(dtype) + [self._output_call(dtype, name) for name in OUTPUTS]
                for parallel in (False, True):
                    calls += self._check_calls(dtype, parallel)
                    calls += [call for name in ACTIVATIONS for call in self._layer_calls(dtype, name, parallel)]
                    calls += [self._update_call(dtype, op, parallel) for op in range(len(upd.OPERATIONS))]
                    calls += [self._optimizer_call(dtype, cls.rule, parallel) for cls in OPTIMIZERS.values()]
            return calls
        if hasattr(network, "layer_dims"):  # a Network: its own configuration
            dims, dtype, hidden, output = list(network.layer_dims), network.dtype, network.activations, network.output
        else:
            dims, hidden = list(network), activations
        dtype, hidden, output = _checked_configuration(dims, dtype, hidden, output, optimizer, examples)
        m = examples or 1
        parameters = sum(n * (n_prev + 1) for n_prev, n in zip(dims[:-1], dims[1:]))  # θ and its gradient: (P,)
        wide = {name for name, n in zip(hidden, dims[1:-1]) if self._parallel_at(n * m)}  # hidden layers going parallel
        rules = [cls.rule for name, cls in OPTIMIZERS.items() if optimizer in (None, name)]
        plain = [rule for rule in rules if rule.is_plain_gradient_step]  # the update numba can take inside the GEMM
        plain_sgd = bool(plain) or not fit_only  # train_step's SGD and L2's axpy, unless only `fit` is asked for
        rules += [SGD.rule] if plain_sgd and SGD.rule not in rules else []
        ops = {upd.AXPY} if plain_sgd else set()
        calls = (
            self._gemm_calls(dtype) + [self._output_call(dtype, output)] + self._check_calls(dtype, False, plain_sgd)
        )
        calls += [call for name in sorted(set(hidden)) for call in self._layer_calls(dtype, name, False)]
        calls += [call for name in sorted(wide) for call in self._layer_calls(dtype, name, True)]
        calls += [self._update_call(dtype, op, False) for op in sorted(ops)]  # the biases are always small
        calls += [self._optimizer_call(dtype, rule, False) for rule in rules]
        if self._parallel_at(parameters):
            calls += [self._update_call(dtype, op, True) for op in sorted(ops)]
            calls += [self._optimizer_call(dtype, rule, True) for rule in rules]
        if self._parallel_at(max(dims[0], dims[-1]) * m) or self._parallel_at(parameters):  # X, D_L or the gradient
            calls += self._check_calls(dtype, True, plain_sgd)
        if dropout:
            calls += [
                self._update_call(dtype, upd.MULTIPLY, parallel) for parallel in ([False, True] if wide else [False])
            ]
        elif plain and self.cblas is not None:  # plain SGD takes a whole-step strategy
            small = not any(self._parallel_at(n * m) for n in dims[1:])
            calls += numba_steps.warmup_calls(
                self, dims, dtype, output, compiled=small and whole_step, activations=hidden
            )
        return calls

    def _parallel_at(self, elements: int) -> bool:
        return elements >= self.parallel_min_elements

    def _layer_calls(self, dtype, activation, parallel):
        """A hidden layer's forward (numpy's tanh serves tanh's) and backward kernels, as the network calls them."""
        Z, b, code = numpy.zeros((2, 3), dtype), numpy.zeros((2, 1), dtype), ACTIVATION_CODES[activation]
        calls = (
            []
            if self._forward_code(activation) is None
            else [(self._act.forward_kernel(code, parallel), (Z, b, Z, True, True, False))]
        )
        return calls + [(self._act.backward_kernel(code, parallel), (Z, Z, Z, b, 1.0, True, True, False))]

    def _check_calls(self, dtype, parallel, abs_sum=True):
        """The bias gradient, the non-finite count and (for SGD's update inside the products) Σ|a|."""
        Z, b, flat = numpy.zeros((2, 3), dtype), numpy.zeros((2, 1), dtype), numpy.zeros(6, dtype)
        calls = [
            (self._act.bias_grad_kernel(parallel), (Z, b, 1.0)),
            (self._chk.count_non_finite_kernel(parallel), (flat,)),
        ]
        return calls + ([(self._chk.abs_sum_kernel(parallel), (flat,))] if abs_sum else [])

    def _output_call(self, dtype, output):
        Z, b, cost = numpy.zeros((2, 3), dtype), numpy.zeros((2, 1), dtype), numpy.zeros(1, dtype)
        kernel = self._out.sigmoid_output if output == "sigmoid" else self._out.softmax_output
        return kernel, (Z, b, Z.copy(), Z.copy(), Z.copy(), cost, True, True, dtype.type(1.0))

    def _update_call(self, dtype, op, parallel):
        flat = numpy.zeros(6, dtype)
        return self._upd.update_kernel(op, parallel), (flat, flat, flat, (dtype.type(1),))

    def _optimizer_call(self, dtype, rule, parallel):
        arrays = (numpy.zeros(6, dtype),) * (2 + len(rule.slots))
        operands = (dtype.type(1),) * len(rule.operands)  # no division by 0
        return self._upd.optimizer_kernel(rule, parallel), (*arrays, operands)

    def _gemm_calls(self, dtype):
        if self.cblas is None:
            return []
        a, out, one = numpy.zeros((2, 3), dtype), numpy.zeros((2, 2), dtype), dtype.type(1.0)
        return [(self._blas.gemm, (self.cblas.address(dtype), self.cblas.ilp64, a, a, out, False, True, one, one))]

    # ------------------------------------------------------------------ linear algebra
    def gemm(
        self, a, b, out, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0
    ) -> None:
        # numpy's own BLAS with alpha and beta when every operand is a C-contiguous array of one dtype (a
        # transposed view arrives as its C-contiguous base and a flag); anything else goes to numpy.matmul.
        dtype = _kernel_dtype(a, b, out)
        if (
            self.cblas is None
            or dtype is None
            or not gemm_shapes_fit(a, b, out, trans_a, trans_b)
            or not (_disjoint((out, a)) and _disjoint((out, b)))  # BLAS reads a and b while writing out
        ):
            super().gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
            return
        address = self.cblas.address(dtype)
        self._blas.gemm(address, self.cblas.ilp64, a, b, out, trans_a, trans_b, dtype.type(alpha), dtype.type(beta))

    def abs_sum(self, a) -> float:
        """Σ|a| as a host float, accumulated in float64: NaN or inf when `a` holds one (the terms are never
        negative), never below max|a|; the whole-step strategies prove products finite with it."""
        if _kernel_dtype(a) is None:
            return float(numpy.abs(a).sum(dtype="float64"))
        parallel = self._parallel(a)
        return float(_launch(self._chk.abs_sum_kernel(parallel), parallel, a.reshape(a.size)))

    # ------------------------------------------------------------------ forward
    def _forward_code(self, activation):
        # numpy's SIMD tanh is ~3x faster than the scalar libm tanh a numba loop calls (no SVML here), even in
        # two passes; the backward pass needs no tanh (1 - A²) and stays in numba.
        return None if activation == "tanh" else ACTIVATION_CODES.get(activation)

    def bias_activation_forward(self, Z, b, activation: str, out) -> None:
        self._bias_activation_forward(Z, b, activation, out, False)

    def bias_activation_forward_abs_sum(self, Z, b, activation: str, out, libm_tanh: bool = False) -> float:
        """`bias_activation_forward`, returning Σ|out| (float64) from the same pass: the whole-step strategies'
        bound (`backends/numba_steps.py`). `libm_tanh` takes tanh in the kernel too, as the compiled step does."""
        return self._bias_activation_forward(Z, b, activation, out, True, libm_tanh)

    def _bias_activation_forward(self, Z, b, activation: str, out, abs_sum: bool, libm_tanh: bool = False):
        """`bias_activation_forward`, returning Σ|out| when `abs_sum` (from the same pass), else None; `libm_tanh`
        takes tanh in the kernel too, as the compiled whole step does."""
        code = ACTIVATION_CODES.get(activation) if libm_tanh else self._forward_code(activation)
        if (
            code is None
            or _kernel_dtype(Z, b, out) is None
            or out.shape != Z.shape
            or not is_column_of(Z.shape[0], b)
            or not _separate_or_same(out, Z, b)
        ):
            super().bias_activation_forward(Z, b, activation, out)
            return self.abs_sum(out) if abs_sum else None
        parallel = self._parallel(Z)
        total = _launch(self._act.forward_kernel(code, parallel), parallel, Z, b, out, True, out is Z, abs_sum)
        return float(total) if abs_sum else None

    def activation_forward(self, Z, activation: str, out) -> None:
        code = self._forward_code(activation)
        dtype = _kernel_dtype(Z, out)
        if code is None or dtype is None or out.shape != Z.shape or not _separate_or_same(out, Z):
            super().activation_forward(Z, activation, out)
            return
        parallel = self._parallel(Z)
        _launch(
            self._act.forward_kernel(code, parallel),
            parallel,
            Z,
            self._placeholders[dtype][0],
            out,
            False,
            out is Z,
            False,
        )

    # ------------------------------------------------------------------ backward
    def activation_backward(self, dA, activation: str, out, *, A=None, Z=None, db=None, db_scale: float = 1.0) -> None:
        self._activation_backward(dA, activation, out, A, db, False, Z=Z, db_scale=db_scale)

    def activation_backward_abs_sum(self, dA, activation: str, out, A, db) -> float:
        """`activation_backward` from the layer's output A with db (scale 1), returning Σ|out| (float64) from
        the same pass: the whole-step strategies' bound (`backends/numba_steps.py`)."""
        return self._activation_backward(dA, activation, out, A, db, True)

    def _activation_backward(self, dA, activation: str, out, A, db, abs_sum: bool, Z=None, db_scale: float = 1.0):
        """`activation_backward`, returning Σ|out| when `abs_sum` (from the same pass), else None."""
        code = ACTIVATION_CODES.get(activation)
        src = A if A is not None else Z if Z is not None else dA  # a constant g' (linear) reads neither A nor Z
        inputs = (dA, src) if db is None else (dA, src, db)
        dtype = _kernel_dtype(out, *inputs)
        if (
            code is None
            or dtype is None
            or (A is None and Z is None and REGISTRY[activation].uses_output())  # the reference raises: g' reads A or Z
            or out.shape != dA.shape
            or src.shape != dA.shape
            or (db is not None and not is_column_of(dA.shape[0], db))
            or not _separate_or_same(out, *inputs)
        ):
            super().activation_backward(dA, activation, out, A=A, Z=Z, db=db, db_scale=db_scale)
            return self.abs_sum(out) if abs_sum else None
        db_buffer = self._placeholders[dtype][0] if db is None else db
        parallel = self._parallel(dA)
        total = _launch(
            self._act.backward_kernel(code, parallel, A is not None),
            parallel,
            dA,
            src,
            out,
            db_buffer,
            float(db_scale),
            db is not None,
            out is dA,
            abs_sum,
        )
        return float(total) if abs_sum else None

    def bias_grad(self, dZ, out, scale: float) -> None:
        if _kernel_dtype(dZ, out) is None or not is_column_of(dZ.shape[0], out) or not _separate_or_same(out, dZ):
            super().bias_grad(dZ, out, scale)
            return
        parallel = self._parallel(dZ)
        _launch(self._act.bias_grad_kernel(parallel), parallel, dZ, out, float(scale))

    # ------------------------------------------------------------------ output layer and cost
    def output_layer(self, Z, b, output: str, A, Y=None, dZ=None, cost=None, dZ_scale: float = 1.0) -> None:
        check_output(output)
        given = [x for x in (Z, b, A, Y, dZ, cost) if x is not None]
        dtype = _kernel_dtype(*given)
        if (
            dtype is None
            or (Y is None and (dZ is not None or cost is not None))  # the reference says what is missing
            or not output_shapes_fit(Z, b, A, Y, dZ, cost)
            or not _disjoint(given)  # Z is kept (the logits) and A, dZ, cost each need their own buffer
        ):
            super().output_layer(Z, b, output, A, Y=Y, dZ=dZ, cost=cost, dZ_scale=dZ_scale)
            return
        kernel = self._out.sigmoid_output if output == "sigmoid" else self._out.softmax_output
        z_like, no_cost = Z, self._placeholders[dtype][1]  # placeholders of the kernel's types, never touched
        kernel(
            Z,
            b,
            A,
            z_like if Y is None else Y,
            z_like if dZ is None else dZ,
            no_cost if cost is None else cost,
            cost is not None,
            dZ is not None,
            dtype.type(dZ_scale),
        )

    # ------------------------------------------------------------------ parameter updates (in place)
    def _elementwise_dtype(self, target, *others):
        """The dtype for an elementwise kernel that updates `target` from same-shaped `others`, or None."""
        dtype = _kernel_dtype(target, *others)
        if dtype is None or not _separate_or_same(target, *others):
            return None
        for o in others:
            if o.shape != target.shape:
                return None
        return dtype

    def _update(self, op, dtype, y, x=None, m1=None, alpha=1.0):
        """Run elementwise operation `op` of kernels/numba_updates.py; unused arrays get placeholders."""
        flat = y.reshape(y.size)  # 1-D views: one compiled signature per dtype, whatever the arrays' shape
        parallel = self._parallel(y)
        _launch(
            self._upd.update_kernel(op, parallel),
            parallel,
            flat,
            flat if x is None else x.reshape(x.size),
            flat if m1 is None else m1.reshape(m1.size),
            (dtype.type(alpha),),
        )

    def axpy(self, alpha: float, x, y) -> None:
        dtype = self._elementwise_dtype(y, x)
        if dtype is None:
            super().axpy(alpha, x, y)
            return
        self._update(self._upd.AXPY, dtype, y, x, alpha=alpha)

    def optimizer_update(self, rule, param, grad, slots, lr, hyperparameters: dict, t, state=None) -> None:
        arrays = (param, grad, *slots)
        dtype = self._elementwise_dtype(param, grad, *slots)
        if (
            dtype is None
            or not all(_separate_or_same(s, grad, *slots[:i], *slots[i + 1 :]) for i, s in enumerate(slots))
            or self._update_blocked(state)
        ):
            super().optimizer_update(rule, param, grad, slots, lr, hyperparameters, t, state)
            return
        operands = tuple(dtype.type(value) for value in rule.operand_values(hyperparameters, lr, t))
        parallel = self._parallel(param)
        flat = (a.reshape(a.size) for a in arrays)  # 1-D views: one compiled signature per dtype
        _launch(self._upd.optimizer_kernel(rule, parallel), parallel, *flat, operands)

    # ------------------------------------------------------------------ whole steps
    def compile_step(self, plan):
        return numba_steps.compile_step(self, plan)

    # ------------------------------------------------------------------ dropout
    def multiply(self, a, b, out) -> None:
        dtype = self._elementwise_dtype(out, a, b)
        if dtype is None:
            super().multiply(a, b, out)
            return
        self._update(self._upd.MULTIPLY, dtype, out, a, b)

    # ------------------------------------------------------------------ checks
    def all_finite(self, a) -> bool:
        if _kernel_dtype(a) is None:
            return super().all_finite(a)
        parallel = self._parallel(a)
        return _launch(self._chk.count_non_finite_kernel(parallel), parallel, a.reshape(a.size)) == 0


def kernel_cache_status(network=None, dtype=None, **configuration) -> KernelCacheStatus:
    """How many of the kernels `NumbaBackend.warmup` with the same arguments would compile are already compiled
    or cached on disk, without compiling any (a KernelCacheStatus; `.warm` when a run compiles nothing)."""
    calls = NumbaBackend()._kernel_calls(network, dtype, **configuration)
    cached = sum(is_cached(kernel, args) for kernel, args in calls)
    return KernelCacheStatus(cached, len(calls), calls[0][0]._cache.cache_path)


def kernel_name(kernel, args) -> str:
    """A compiled kernel's function name, its variant and the dtypes of its array arguments, as `warmup` reports it.

    The variant is read from what the kernel's factory closed over (the activation, the update operation)
    and from whether numba compiles it as a parallel kernel.
    """
    from ..kernels import numba_updates

    func = kernel.py_func
    constants = dict(zip(func.__code__.co_freevars, (cell.cell_contents for cell in func.__closure__ or ())))
    variant = []
    if "act" in constants:
        variant += [name for name, code in ACTIVATION_CODES.items() if code == constants["act"]]  # none for MIXED
    if "op" in constants:
        variant.append(numba_updates.OPERATIONS[constants["op"]])
    if kernel.targetoptions.get("parallel"):
        variant.append("parallel")
    dtypes = dict.fromkeys(str(a.dtype) for a in args if isinstance(a, numpy.ndarray))
    return " ".join([func.__name__, *variant, f"({', '.join(dtypes)})"])
