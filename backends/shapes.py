"""Shape checks the accelerated backends make before taking an operation to a kernel.

A kernel reads its operands as the shapes say; a call whose shapes do not fit goes to the NumPy reference
(`Backend`), which broadcasts or raises as NumPy does. Shared by the numba and CuPy backends.
"""

from __future__ import annotations


def output_shapes_fit(Z, b, A, Y, dZ, cost) -> bool:
    """A, Y, dZ (when given) shaped as the logits Z (n_L, m); b (n_L, 1); cost (1,) when given."""
    for x in (A, Y, dZ):
        if x is not None and x.shape != Z.shape:
            return False
    return b.shape == (Z.shape[0], 1) and (cost is None or cost.shape == (1,))


def gemm_shapes_fit(a, b, out, trans_a, trans_b) -> bool:
    """op(a) (M, K), op(b) (K, N), out (M, N), no dimension 0 (BLAS needs leading dimensions ≥ 1)."""
    if a.ndim != 2 or b.ndim != 2 or out.ndim != 2 or 0 in a.shape or 0 in b.shape:
        return False
    (M, K), (K2, N) = (a.shape[::-1] if trans_a else a.shape), (b.shape[::-1] if trans_b else b.shape)
    return K == K2 and out.shape == (M, N)


def is_column_of(n, b) -> bool:
    """True when b is an (n, 1) column (a bias, or a bias gradient, of n units)."""
    return b.shape == (n, 1)
