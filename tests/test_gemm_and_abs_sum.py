"""Every backend's GEMM with alpha and beta, and the numba backend's Σ|a|, the bound its whole steps prove
gradients finite with.

`gemm(a, b, out, alpha=, beta=)` is BLAS's out ← alpha·op(a)·op(b) + beta·out: beta = 0 ignores what
`out` held (NaN included); beta = 1 adds to it (how a step updates W inside its gradient's product).
Σ|a| is taken in float64: never below max|a|, NaN or inf exactly when `a` holds a NaN or an inf. The numba
forward and backward passes return it for their output when asked, from the pass itself.
"""

import numpy as np
import pytest

from dnn.activations import ACTIVATIONS
from dnn.tolerances import gradient_rtol, relative_difference

DTYPES = ["float32", "float64"]
SHAPES = [(1, 1), (5, 1), (1, 9), (33, 17), (600, 700)]


def _on(backend, a):
    return backend.asarray(a)


@pytest.fixture
def nb():
    pytest.importorskip("numba")
    from dnn.backends import get_backend

    return get_backend("numba")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.25, 0.0), (-0.37, 1.0), (2.5, -0.5)])
def test_gemm_is_alpha_times_the_product_plus_beta_times_out(backend, rng, dtype, trans_a, trans_b, alpha, beta):
    a = rng.standard_normal((7, 5) if trans_a else (5, 7)).astype(dtype)  # op(a): (5, 7)
    b = rng.standard_normal((3, 7) if trans_b else (7, 3)).astype(dtype)  # op(b): (7, 3)
    start = np.full((5, 3), np.nan, dtype) if beta == 0 else rng.standard_normal((5, 3)).astype(dtype)
    expected = alpha * ((a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b))
    if beta:
        expected += beta * start.astype(np.float64)
    out = _on(backend, start)
    backend.gemm(_on(backend, a), _on(backend, b), out, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
    assert relative_difference(backend.to_numpy(out), expected) <= gradient_rtol(dtype)  # sums of 7 products


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_abs_sum_is_the_sum_of_magnitudes_in_float64(nb, rng, dtype, shape):
    a = (rng.standard_normal(shape) * 3).astype(dtype)
    total = nb.abs_sum(a)
    assert isinstance(total, float)
    assert relative_difference([total], [np.abs(a.astype(np.float64)).sum()]) <= gradient_rtol(
        "float64"
    )  # a float64 sum, like a gradient
    assert total >= np.abs(a).max()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad,expected", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "inf")])
@pytest.mark.parametrize("shape", [(1, 1), (33, 17), (600, 700)])
def test_abs_sum_is_not_finite_exactly_when_the_array_is_not(nb, rng, dtype, bad, expected, shape):
    a = rng.standard_normal(shape).astype(dtype)
    for index in [(0, 0), (shape[0] - 1, shape[1] - 1), (shape[0] // 2, shape[1] // 3)]:
        poisoned = a.copy()
        poisoned[index] = bad
        total = nb.abs_sum(poisoned)
        assert np.isnan(total) if expected == "nan" else total == np.inf, f"{bad} at {index} gave {total}"


def test_abs_sum_of_huge_float32_values_does_not_overflow(nb):
    a = np.full((4, 5), np.finfo(np.float32).max, np.float32)
    assert nb.abs_sum(a) == pytest.approx(20 * float(np.finfo(np.float32).max))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (600, 700)])
def test_forward_and_backward_return_the_abs_sum_of_what_they_wrote(nb, rng, dtype, activation, shape):
    Z, b, dA = (rng.standard_normal(s).astype(dtype) for s in (shape, (shape[0], 1), shape))
    A, db, out = np.empty(shape, dtype), np.empty((shape[0], 1), dtype), np.empty(shape, dtype)
    forward = nb.bias_activation_forward_abs_sum(Z, b, activation, A)
    backward = nb.activation_backward_abs_sum(dA, activation, out, A, db)
    for total, written in ((forward, A), (backward, out)):
        assert relative_difference([total], [nb.abs_sum(written)]) <= gradient_rtol("float64")  # a float64 sum
