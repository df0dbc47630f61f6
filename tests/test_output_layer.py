"""The output layer: probabilities, a cost accurate to the last digits, and the scaled gradient dZ_L."""

import numpy as np
import pytest

from dnn.tolerances import kernel_rtol, relative_difference


def _confident_softmax():
    Z = np.array([[12.0, -3.0, 0.5], [0.0, 9.0, 0.4], [-1.0, 0.0, 0.3]])  # (3 classes, 3 examples)
    Y = np.eye(3)[:, [0, 1, 2]]
    return Z, Y


def _oracle_cost(Z, Y):
    Z = Z.astype(np.longdouble)
    top = Z.max(axis=0, keepdims=True)
    return float((Y * (np.log(np.exp(Z - top).sum(axis=0, keepdims=True)) + top - Z)).sum() / Z.shape[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_cost_keeps_its_digits_for_confident_columns(backend, dtype):
    Z, Y = _confident_softmax()
    A, cost = backend.empty(Z.shape, dtype), backend.zeros((1,), dtype)
    backend.output_layer(
        backend.asarray(Z, dtype), backend.zeros((3, 1), dtype), "softmax", A, Y=backend.asarray(Y, dtype), cost=cost
    )
    got = float(backend.to_numpy(cost)[0])
    assert relative_difference(got, _oracle_cost(Z.astype(dtype), Y)) <= kernel_rtol(dtype)


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dz_is_the_scaled_difference_of_probabilities_and_labels(backend, output, dtype, rng):
    n = 1 if output == "sigmoid" else 4
    Z = rng.standard_normal((n, 7))
    Y = (rng.random((n, 7)) < 0.5).astype(float) if output == "sigmoid" else np.eye(n)[:, rng.integers(0, n, 7)]
    A, dZ = backend.empty(Z.shape, dtype), backend.empty(Z.shape, dtype)
    backend.output_layer(
        backend.asarray(Z, dtype),
        backend.zeros((n, 1), dtype),
        output,
        A,
        Y=backend.asarray(Y, dtype),
        dZ=dZ,
        dZ_scale=0.25,
    )
    expected = 0.25 * (backend.to_numpy(A).astype(float) - Y)
    assert relative_difference(backend.to_numpy(dZ), expected) <= kernel_rtol(dtype)
