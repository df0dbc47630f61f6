"""Calling numpy's CBLAS GEMM from compiled code: C ← alpha·op(A)·op(B) + beta·C in one call.

The function's address (`dnn.backends.blas.numpy_cblas_gemm`) is an argument, not a global, so that
kernels using it can be cached on disk: a library's address changes from one process to the next.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


@intrinsic
def _call_cblas_gemm(typingctx, address, ilp64, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm(RowMajor, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc) at `address`.

    Integers arrive as int64 and are passed as 64-bit (ilp64) or 32-bit integers; a, b, c are addresses.
    """
    sig = types.void(address, ilp64, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        address, ilp64, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc = args
        enum, void_p = ir.IntType(32), ir.IntType(8).as_pointer()
        flags = [builder.trunc(v, enum) for v in (ir.Constant(ir.IntType(64), ROW_MAJOR), trans_a, trans_b)]
        a, b, c = (builder.inttoptr(p, void_p) for p in (a, b, c))

        def call(width):
            integer = ir.IntType(width)
            m, n, k, lda_, ldb_, ldc_ = (
                v if width == 64 else builder.trunc(v, integer) for v in (M, N, K, lda, ldb, ldc)
            )
            signature = (
                [enum] * 3 + [integer] * 3 + [alpha.type, void_p, integer, void_p, integer, beta.type, void_p, integer]
            )
            function = builder.inttoptr(address, ir.FunctionType(ir.VoidType(), signature).as_pointer())
            builder.call(function, flags + [m, n, k, alpha, a, lda_, b, ldb_, beta, c, ldc_])

        with builder.if_else(builder.icmp_unsigned("!=", ilp64, ir.Constant(ilp64.type, 0))) as (wide, narrow):
            with wide:
                call(64)
            with narrow:
                call(32)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def gemm(address, ilp64, a, b, c, trans_a, trans_b, alpha, beta):
    """c ← alpha·op(a)·op(b) + beta·c, op transposing when its flag is set; a, b, c C-contiguous, one dtype.

    address: numpy's cblas_sgemm or cblas_dgemm (matching the dtype); ilp64: its integers are 64-bit.
    alpha, beta: scalars of the arrays' dtype. The caller checks the shapes: op(a) (M, K), op(b) (K, N), c (M, N).
    """
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    _call_cblas_gemm(
        address,
        ilp64,
        TRANS if trans_a else NO_TRANS,
        TRANS if trans_b else NO_TRANS,
        M,
        N,
        K,
        alpha,
        a.ctypes.data,
        a.shape[1],
        b.ctypes.data,
        b.shape[1],
        beta,
        c.ctypes.data,
        N,
    )
