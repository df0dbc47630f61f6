"""Results never depend on how the caller's arrays are laid out in memory.

`Network.batch` copies strided, Fortran-ordered, misaligned or read-only inputs into C-contiguous arrays, so
a view, a Fortran copy and a C copy of the same values take the same path (same kernels, same BLAS calls)
and give bit-identical results on every backend. (Results are compared bit for bit only between two runs of
the same path on the same machine; across machines and backends the tolerance table applies.)
"""

import numpy as np
import pytest

import dnn


def _layouts(X):
    """The same values as a strided view, a Fortran-ordered copy, a C copy, a misaligned and a read-only one."""
    wide = np.zeros((X.shape[0], 2 * X.shape[1]))
    wide[:, ::2] = X
    raw = np.zeros(X.size * 8 + 1, np.uint8)[1:]  # one byte off: float64 items misaligned
    misaligned = np.frombuffer(raw.data, np.float64, X.size).reshape(X.shape)
    misaligned[...] = X
    readonly = X.copy()
    readonly.flags.writeable = False
    return {
        "strided view": wide[:, ::2],
        "fortran": np.asfortranarray(X),
        "c": np.ascontiguousarray(X),
        "misaligned": misaligned,
        "read-only": readonly,
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dims,m", [([6, 8, 5, 1], 10), ([5, 7, 3], 9)])
def test_a_step_is_bit_identical_for_every_memory_layout(backend, dtype, dims, m, rng):
    X = rng.standard_normal((dims[0], m))
    Y = rng.integers(0, max(2, dims[-1]), m)
    results = {}
    for name, X_layout in _layouts(X).items():
        assert np.array_equal(X_layout, X)
        net = dnn.Network(dims, dtype=dtype, backend=backend, seed=3)
        costs = [net.step(X_layout, Y, lr=0.1, l2=0.01) for _ in range(3)]
        _, grads = net.backward(X_layout, Y)
        results[name] = (costs, net.get_parameters(), {k: backend.to_numpy(g) for k, g in grads.items()})
    reference_costs, reference_params, reference_grads = results.pop("c")
    for name, (costs, params, grads) in results.items():
        assert costs == reference_costs, name
        for key in reference_params:
            np.testing.assert_array_equal(params[key], reference_params[key], err_msg=f"{name}: {key}")
        for key in reference_grads:
            np.testing.assert_array_equal(grads[key], reference_grads[key], err_msg=f"{name}: {key}")


def test_fit_on_a_view_equals_fit_on_a_copy(backend, rng):
    X = rng.standard_normal((12, 5)).T  # (5, 12) Fortran-ordered view
    Y = rng.integers(0, 2, 12)
    runs = [
        dnn.Network([5, 4, 1], dtype="float64", backend=backend).fit(data, Y, epochs=3, batch_size=5)
        for data in (X, np.ascontiguousarray(X))
    ]
    assert runs[0] == runs[1]
