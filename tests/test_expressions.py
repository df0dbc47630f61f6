"""Elementwise math is declared once as a checked expression and rendered for arrays, numba and CUDA C."""

import numpy as np
import pytest

from dnn.expressions import (
    ARRAY,
    C,
    SCALAR,
    ExpressionError,
    array_procedure,
    array_tuple_function,
    array_writer,
    in_place_lines,
    names_in,
    parse,
    parse_assignments,
    render,
    render_assignments,
)

ELU = "where(z > 0, z, alpha * (exp(z) - 1))"


def test_each_target_writes_the_same_operations_in_the_order_declared():
    tree = parse(ELU, ["z", "alpha"])
    assert render(tree, ARRAY) == "xp.where((z > 0), z, (alpha * (xp.exp(z) - 1)))"
    assert render(tree, SCALAR) == "(z if (z > cast(0, one)) else (alpha * (np.exp(z) - cast(1, one))))"
    assert render(tree, C) == "((z > T(0)) ? z : (alpha * (exp(z) - T(1))))"


def test_sigmoid_abs_and_power_map_to_each_targets_own_functions():
    tree = parse("sigmoid(z) + abs(z) ** 2", ["z"])
    assert render(tree, ARRAY) == "(stable_sigmoid(xp, z) + (xp.abs(z) ** 2))"
    assert render(tree, SCALAR) == "(stable_sigmoid(z, one) + (np.abs(z) ** cast(2, one)))"
    assert render(tree, C) == "(stable_sigmoid(z) + pow(fabs(z), T(2)))"


def test_the_array_rendering_evaluates_in_the_arrays_dtype():
    elu = array_tuple_function([parse(ELU, ["z", "alpha"])], ["z", "alpha"])
    z = np.array([-1.0, 0.0, 2.0, np.nan, -np.inf], np.float32)
    (got,) = elu(np, z, 0.5)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.where(z > 0, z, np.float32(0.5) * (np.exp(z) - 1)))


def test_the_array_sigmoid_does_not_overflow():
    sigmoid = array_tuple_function([parse("sigmoid(z)", ["z"])], ["z"])
    with np.errstate(over="raise"):
        (got,) = sigmoid(np, np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(got, [0.0, 0.5, 1.0])


def test_names_in_lists_what_an_expression_reads_without_its_functions():
    assert names_in(parse(ELU, ["z", "alpha"])) == {"z", "alpha"}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("z.real", "Attribute"),
        ("foo(z)", "calls 'foo'"),
        ("exp(z, 1)", "calls 'exp'"),
        ("q + 1", "uses 'q'"),
        ("a < z < 1", "two values at a time"),
        ("z // 2", "operator outside"),
        ("not z", "unary operator"),
        ("'x'", "only numbers"),
        ("z +", "not a Python expression"),
        ("lambda: 1", "Lambda"),
    ],
)
def test_anything_outside_the_subset_is_refused_by_name(text, complaint):
    with pytest.raises(ExpressionError, match=complaint):
        parse(text, ["z", "a"])


def test_maximum_keeps_a_nan_first_argument_on_every_target():
    tree = parse("maximum(z, 0)", ["z"])
    assert render(tree, SCALAR) == "(cast(0, one) if z < cast(0, one) else z)"
    assert render(tree, C) == "(z < T(0) ? T(0) : z)"
    out = np.empty(3)
    array_writer(tree, ["z"])(np, out, np.array([np.nan, -1.0, 2.0]))
    np.testing.assert_array_equal(out, [np.nan, 0.0, 2.0])


def test_the_array_writer_keeps_the_outputs_dtype_when_both_branches_are_numbers():
    # where(a > 0, 1, 0.01) with Python numbers would be float64; d·0.01 must round as float32·float32(0.01)
    write = array_writer(parse("d * where(a > 0, 1, 0.01)", ["d", "a"]), ["d", "a"])
    d, a = np.array([3.0, 3.0], np.float32), np.array([1.0, -1.0], np.float32)
    out = np.empty(2, np.float32)
    write(np, out, d, a)
    np.testing.assert_array_equal(out, [d[0], d[1] * np.float32(0.01)])


def test_the_array_writer_writes_in_place_and_its_shortcuts_are_exact():
    z = np.array([np.nan, -0.0, -2.0, 5.0])
    d = np.array([np.nan, 1.0, np.inf, 2.0])
    times_sign = array_writer(parse("d * where(z > 0, 1, 0)", ["d", "z"]), ["d", "z"])  # written as d * (z > 0)
    out = d.copy()
    with np.errstate(invalid="ignore"):  # inf · 0
        times_sign(np, out, out, z)  # out is d
        np.testing.assert_array_equal(out, d * np.where(z > 0, 1.0, 0.0))
    times_one = array_writer(parse("d * 1", ["d"]), ["d"])
    times_one(np, out, d)
    np.testing.assert_array_equal(out, d)
    assert "where" not in times_sign.__code__.co_names  # the shortcut taken: no np.where pass (~3x slower)


ADAM_MOMENTS = ["m = beta1 * m + c * grad", "param = param - lr * m"]


def test_assignments_run_in_order_and_a_later_read_sees_the_new_value():
    statements = parse_assignments(ADAM_MOMENTS, ["m", "param", "grad", "beta1", "c", "lr"], ["m", "param"])
    assert [s.target for s in statements] == ["m", "param"]
    assert render_assignments(statements, SCALAR) == [
        "m = ((beta1 * m) + (c * grad))",
        "param = (param - (lr * m))",
    ]
    update = array_procedure(statements, ["param", "grad", "m", "beta1", "c", "lr"])
    param, grad, m = np.array([1.0, 2.0]), np.array([0.5, -0.5]), np.array([0.1, 0.2])
    update(np, param, grad, m, 0.9, 0.1, 0.5)
    np.testing.assert_array_equal(m, 0.9 * np.array([0.1, 0.2]) + 0.1 * grad)
    np.testing.assert_array_equal(param, np.array([1.0, 2.0]) - 0.5 * m)  # the new m


def test_in_place_lines_keep_the_roundings_of_the_expression():
    statements = parse_assignments(
        ["v = b * v + c * (g * g)", "p = p - lr * v", "v = g * v"], ["v", "p", "g", "b", "c", "lr"], ["v", "p"]
    )
    assert in_place_lines(statements) == [
        "v *= b",
        "v += (c * (g * g))",
        "p -= (lr * v)",
        "v[...] = (g * v)",  # v is not on the left of the product: written whole
    ]
    b = np.float32(0.9)
    v, g = np.array([0.3, 1e-3], np.float32), np.array([2.0, 3.0], np.float32)
    expected = b * v + np.float32(0.1) * (g * g)
    array_procedure(statements[:1], ["v", "g", "b", "c"])(np, v, g, b, np.float32(0.1))
    np.testing.assert_array_equal(v, expected)


@pytest.mark.parametrize(
    ("line", "complaint"),
    [("m == 1", "not an assignment"), ("q = m", "assigns 'q'"), ("m = z", "uses 'z'"), ("m", "not an assignment")],
)
def test_a_bad_assignment_is_refused_by_name(line, complaint):
    with pytest.raises(ExpressionError, match=complaint):
        parse_assignments([line], ["m"], ["m"])


def test_a_tuple_function_gives_several_values_from_one_call():
    import math

    trees = [parse("1 - beta", ["beta", "t"]), parse("1 - beta ** t", ["beta", "t"])]
    scalars = array_tuple_function(trees, ["beta", "t"])
    assert scalars(math, 0.9, 3) == (1 - 0.9, 1 - 0.9**3)  # in Python's double, as the host forms them
