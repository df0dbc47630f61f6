"""Elementwise math written once, as a small Python expression, and rendered for every backend.

An activation's value and derivative and an optimizer's update are declared as text in a subset of Python:
numbers, names, ``+ - * / **``, unary minus, one comparison at a time (``< <= > >= == !=``), and calls of
the functions in FUNCTIONS (``maximum(x, y)`` is ``y if x < y else x``: NaN when x is NaN, as NumPy's; keep y
a bound, since the compiled targets do not propagate a NaN y). `parse` checks the text once, naming what it does not allow; a renderer then
writes the same tree as source for its target, operation for operation in the order written (a·b + c stays a
product then a sum, so every backend rounds alike):

- `render(tree, ARRAY)`: vectorised code over an array namespace ``xp`` (the NumPy reference, any Array-API
  library); ``where`` is ``xp.where``. `array_writer` writes such code's result into a caller's buffer.
- `render(tree, SCALAR)`: scalar Python for numba's njit; ``where`` is a conditional expression.
- `render(tree, C)`: CUDA C; ``where`` is ``?:`` and ``**`` is ``pow``.

An optimizer's update is a sequence of assignments ``target = expression`` (`parse_assignments`), run in the
order written, a read after an assignment seeing the new value: `render_assignments` writes them for a scalar
target, `in_place_lines` / `array_procedure` for arrays updated in place.

A target says how a number is written (a scalar target casts it to the element type, so float32 stays
float32) and what a name and a function call become. ``sigmoid`` is the stable 1/(1+e^-z) every target
provides under that name.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from typing import NamedTuple

#: The functions an expression may call, with their argument counts. Every target implements each of them.
FUNCTIONS = {"where": 3, "exp": 1, "log1p": 1, "tanh": 1, "sqrt": 1, "abs": 1, "sigmoid": 1, "maximum": 2}

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


class ExpressionError(ValueError):
    """An expression uses something outside the subset (an unknown name or function, a construct not allowed)."""


def parse(text: str, names: Iterable[str]) -> ast.expr:
    """The checked syntax tree of `text`, which may use `names`, numbers and FUNCTIONS only."""
    allowed = set(names)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise ExpressionError(f"{text!r} is not a Python expression: {error.msg}") from None
    for node in ast.walk(tree):
        _check_node(node, text, allowed)
    return tree


def _check_node(node: ast.AST, text: str, allowed: set[str]) -> None:
    if isinstance(node, ast.Name):
        if node.id not in allowed and node.id not in FUNCTIONS:
            raise ExpressionError(f"{text!r} uses {node.id!r}; it may use {', '.join(sorted(allowed))}")
    elif isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS or node.keywords or len(node.args) != FUNCTIONS[name]:
            calls = ", ".join(f"{f}({', '.join('xyz'[:n])})" for f, n in FUNCTIONS.items())
            raise ExpressionError(f"{text!r} calls {ast.unparse(node.func)!r} unlike any of {calls}")
    elif isinstance(node, ast.Constant):
        if type(node.value) not in (int, float):
            raise ExpressionError(f"{text!r} holds the constant {node.value!r}; only numbers are allowed")
    elif isinstance(node, ast.Compare):
        if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
            raise ExpressionError(f"{text!r}: compare two values at a time with one of {' '.join(_COMPARE.values())}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ExpressionError(f"{text!r} uses an operator outside {' '.join(_BINARY.values())}")
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub):
            raise ExpressionError(f"{text!r} uses a unary operator other than minus")
    elif not isinstance(node, (ast.Load, ast.USub, *_BINARY, *_COMPARE)):
        raise ExpressionError(f"{text!r} uses {type(node).__name__}, which expressions may not")


def names_in(tree: ast.expr) -> set[str]:
    """The names `tree` reads (functions excluded)."""
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and id(node) not in called}


class Target(NamedTuple):
    """How one backend writes an expression: its numbers, names, function calls, ``where`` and ``**``."""

    number: Callable[[str], str]  # the literal's text -> its source in the target
    name: Callable[[str], str]  # a declared name -> its source in the target
    call: Callable[[str, list[str]], str]  # a function of FUNCTIONS (not where) and its rendered arguments
    where: Callable[[str, str, str], str]  # condition, value where true, value where false
    power: Callable[[str, str], str]  # base, exponent


def render(tree: ast.expr, target: Target) -> str:
    """`tree` (from `parse`) as source for `target`, every operation parenthesised in the order written."""
    if isinstance(tree, ast.Constant):
        return target.number(repr(tree.value))
    if isinstance(tree, ast.Name):
        return target.name(tree.id)
    if isinstance(tree, ast.UnaryOp):
        return f"(-{render(tree.operand, target)})"
    if isinstance(tree, ast.BinOp):
        left, right = render(tree.left, target), render(tree.right, target)
        if isinstance(tree.op, ast.Pow):
            return target.power(left, right)
        return f"({left} {_BINARY[type(tree.op)]} {right})"
    if isinstance(tree, ast.Compare):
        left, right = render(tree.left, target), render(tree.comparators[0], target)
        return f"({left} {_COMPARE[type(tree.ops[0])]} {right})"
    if isinstance(tree, ast.Call):
        args = [render(arg, target) for arg in tree.args]
        return target.where(*args) if tree.func.id == "where" else target.call(tree.func.id, args)
    raise ExpressionError(f"cannot render {ast.unparse(tree)!r}: parse() it first")


#: Vectorised code over the array namespace `xp`; numbers stay Python numbers (weak scalars keep the arrays' dtype).
ARRAY = Target(
    number=lambda text: text,
    name=lambda name: name,
    call=lambda f, args: (
        f"{'stable_sigmoid' if f == 'sigmoid' else 'xp.' + f}({', '.join(['xp'] * (f == 'sigmoid') + args)})"
    ),
    where=lambda cond, yes, no: f"xp.where({cond}, {yes}, {no})",
    power=lambda base, exponent: f"({base} ** {exponent})",
)
#: Scalar Python for numba: numbers cast like `one` (1 in the elements' dtype) so float32 math stays float32.
SCALAR = Target(
    number=lambda text: f"cast({text}, one)",
    name=lambda name: name,
    call=lambda f, args: (
        f"({args[1]} if {args[0]} < {args[1]} else {args[0]})"
        if f == "maximum"
        else f"{'stable_sigmoid' if f == 'sigmoid' else 'np.' + f}({', '.join(args + ['one'] * (f == 'sigmoid'))})"
    ),
    where=lambda cond, yes, no: f"({yes} if {cond} else {no})",
    power=lambda base, exponent: f"({base} ** {exponent})",
)
#: CUDA C inside a template over the element type T.
C = Target(
    number=lambda text: f"T({text})",
    name=lambda name: name,
    call=lambda f, args: (
        f"({args[0]} < {args[1]} ? {args[1]} : {args[0]})"
        if f == "maximum"
        else f"{ {'sigmoid': 'stable_sigmoid', 'abs': 'fabs'}.get(f, f) }({', '.join(args)})"
    ),
    where=lambda cond, yes, no: f"({cond} ? {yes} : {no})",
    power=lambda base, exponent: f"pow({base}, {exponent})",
)


def stable_sigmoid(xp, z):
    """1/(1+e^-z) over arrays without overflow: exp(-|z|) ≤ 1, and each branch is exact to rounding for its sign."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


#: The ufunc each binary operator is at the top of an `array_writer` expression (it writes into ``out``).
_UFUNCS = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide", ast.Pow: "pow"}
#: The functions that take ``out=`` at the top of an `array_writer` expression.
_OUT_FUNCTIONS = ("exp", "log1p", "tanh", "sqrt", "abs", "maximum")


#: ARRAY, where ``_typed(c)`` (put by `_exact_shortcuts` on numbers passed to functions) is the number c as an array
#: of out's dtype: when both branches are numbers, xp.where would otherwise give the default dtype (int64,
#: float64) and every later operation would widen.
_TYPED_ARRAY = ARRAY._replace(
    call=lambda f, args: f"xp.asarray({args[0]}, dtype=out.dtype)" if f == "_typed" else ARRAY.call(f, args)
)


def _is_call(tree: ast.expr, name: str, *constants) -> bool:
    """True when `tree` is a call of `name` whose last arguments are the numbers `constants`."""
    if not (isinstance(tree, ast.Call) and tree.func.id == name):
        return False
    tail = tree.args[len(tree.args) - len(constants) :]
    return all(_number(arg) == c for arg, c in zip(tail, constants))


def _number(tree: ast.expr):
    """The number `tree` is (a constant, or one `_typed` already), else None."""
    if isinstance(tree, ast.Call) and tree.func.id == "_typed":
        tree = tree.args[0]
    return tree.value if isinstance(tree, ast.Constant) else None


def _exact_shortcuts(tree: ast.expr, boolean_products: bool = True) -> ast.expr:
    """`tree` with the numbers passed to functions typed, and two exact rewrites that spare array passes: x·1 is
    x, and (when `boolean_products`) x·where(c, 1, 0) is x·c (a product with a boolean array is x or ±0 in x's
    dtype, as the product with 1 or 0 is; np.where is ~3x slower)."""
    if isinstance(tree, ast.BinOp) and isinstance(tree.op, ast.Mult):
        left, right = _exact_shortcuts(tree.left, boolean_products), _exact_shortcuts(tree.right, boolean_products)
        for x, y in ((left, right), (right, left)):
            if isinstance(y, ast.Constant) and y.value == 1:
                return x
            if boolean_products and _is_call(y, "where", 1, 0):
                return ast.BinOp(left=x, op=ast.Mult(), right=y.args[0])
        return ast.BinOp(left=left, op=tree.op, right=right)
    if isinstance(tree, ast.UnaryOp):
        return ast.UnaryOp(op=tree.op, operand=_exact_shortcuts(tree.operand, boolean_products))
    if isinstance(tree, ast.Call):
        args = [_exact_shortcuts(arg, boolean_products) for arg in tree.args]
        # numbers passed to a function as arrays of out's dtype (see _TYPED_ARRAY); the Array API standard
        # (2023.12) takes Python numbers in operators only
        args = [_typed(arg) if isinstance(arg, ast.Constant) else arg for arg in args]
        return ast.Call(func=tree.func, args=args, keywords=[])
    if isinstance(tree, ast.BinOp):
        return ast.BinOp(
            left=_exact_shortcuts(tree.left, boolean_products),
            op=tree.op,
            right=_exact_shortcuts(tree.right, boolean_products),
        )
    if isinstance(tree, ast.Compare):
        return ast.Compare(
            left=_exact_shortcuts(tree.left, boolean_products),
            ops=tree.ops,
            comparators=[_exact_shortcuts(tree.comparators[0], boolean_products)],
        )
    return tree


def _typed(number: ast.Constant) -> ast.Call:
    return ast.Call(func=ast.Name("_typed", ast.Load()), args=[number], keywords=[])


def _written_into_out(tree: ast.expr) -> str:
    """The statement writing `tree` into ``out``: its outermost operation with out= where it has one (no copy)."""
    if isinstance(tree, ast.Name):
        return f"if out is not {tree.id}:\n        xp.copyto(out, {tree.id})"
    if isinstance(tree, ast.BinOp):
        left, right = render(tree.left, _TYPED_ARRAY), render(tree.right, _TYPED_ARRAY)
        return f"xp.{_UFUNCS[type(tree.op)]}({left}, {right}, out=out)"
    if isinstance(tree, ast.Call) and tree.func.id in _OUT_FUNCTIONS:
        return f"xp.{tree.func.id}({', '.join(render(arg, _TYPED_ARRAY) for arg in tree.args)}, out=out)"
    return f"xp.copyto(out, {render(tree, _TYPED_ARRAY)})"


def array_writer(tree: ast.expr, arguments: Iterable[str], name: str = "expression", lets=(), assign: bool = False):
    """A Python function ``f(xp, out, *arguments)`` writing `tree` over arrays of namespace ``xp`` into ``out``.

    `lets`: (name, tree) pairs bound in order first (e.g. a := g(z)). The result is computed as `render(tree,
    ARRAY)` computes it, in out's dtype, up to `_exact_shortcuts`; its outermost operation writes into ``out``
    (which may be one of the arguments: every operand is read before it is written). `assign`: the result is
    computed whole, then assigned ``out[...] = result``, for a namespace whose functions take no ``out=`` (the
    Array API standard's).
    """
    # x·where(c, 1, 0) as x·c multiplies by a boolean array: NumPy's ufuncs take one, the Array API's operators not
    body = [f"{let} = {render(_exact_shortcuts(value, not assign), _TYPED_ARRAY)}" for let, value in lets]
    tree = _exact_shortcuts(tree, not assign)
    body.append(f"out[...] = {render(tree, _TYPED_ARRAY)}" if assign else _written_into_out(tree))
    source = f"def {name}(xp, out, {', '.join(arguments)}):\n" + "".join(f"    {line}\n" for line in body)
    return _defined(source, name)


class Assignment(NamedTuple):
    """``target = value``: one statement of a sequence, in the order declared."""

    target: str
    value: ast.expr


def parse_assignments(lines: Iterable[str], names: Iterable[str], targets: Iterable[str]) -> tuple[Assignment, ...]:
    """The checked statements ``target = expression`` of `lines`: each target one of `targets`, each expression
    over `names` (a target read after its assignment reads the new value)."""
    allowed, assignable = set(names), set(targets)
    statements = []
    for line in lines:
        target, equals, text = line.partition("=")
        target = target.strip()
        if not equals or not target.isidentifier() or text.lstrip().startswith("="):
            raise ExpressionError(f"{line!r} is not an assignment 'name = expression'")
        if target not in assignable:
            raise ExpressionError(f"{line!r} assigns {target!r}; it may assign {', '.join(sorted(assignable))}")
        statements.append(Assignment(target, parse(text, allowed)))
    return tuple(statements)


def render_assignments(statements: Iterable[Assignment], target: Target) -> list[str]:
    """Each statement as ``name = value`` in `target`'s source (a C caller adds the semicolons)."""
    return [f"{target.name(s.target)} = {render(s.value, target)}" for s in statements]


def in_place_lines(statements: Iterable[Assignment]) -> list[str]:
    """The statements over arrays, each target updated in place with the same roundings as the expression.

    ``x = x ∘ e`` becomes ``x ∘= e``, ``x = x·a + e`` (or ``a·x + e``, `e` not reading x) becomes ``x *= a``,
    ``x += e``: each in-place operation rounds to x's dtype exactly as the temporary it replaces would, and
    saves a pass. Anything else is ``x[...] = expression``.
    """
    lines = []
    for target, value in statements:
        x = target
        if isinstance(value, ast.BinOp) and type(value.op) in _IN_PLACE and _is_name(value.left, x):
            lines.append(f"{x} {_BINARY[type(value.op)]}= {render(value.right, ARRAY)}")
        elif (
            isinstance(value, ast.BinOp)
            and isinstance(value.op, ast.Add)
            and isinstance(value.left, ast.BinOp)
            and isinstance(value.left.op, ast.Mult)
            and (_is_name(value.left.left, x) or _is_name(value.left.right, x))
            and x not in names_in(value.right)
        ):
            factor = value.left.right if _is_name(value.left.left, x) else value.left.left
            lines += [f"{x} *= {render(factor, ARRAY)}", f"{x} += {render(value.right, ARRAY)}"]
        else:
            lines.append(f"{x}[...] = {render(value, ARRAY)}")
    return lines


_IN_PLACE = (ast.Add, ast.Sub, ast.Mult, ast.Div)


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def array_procedure(statements: Iterable[Assignment], arguments: Iterable[str], name: str = "procedure"):
    """A Python function ``f(xp, *arguments)`` running `statements` over arrays of namespace ``xp``, in place."""
    body = "".join(f"    {line}\n" for line in in_place_lines(statements)) or "    pass\n"
    source = f"def {name}(xp, {', '.join(arguments)}):\n{body}"
    return _defined(source, name)


def array_tuple_function(trees: Iterable[ast.expr], arguments: Iterable[str], name: str = "expressions"):
    """A Python function ``f(xp, *arguments)`` returning the tuple of `trees` evaluated over namespace ``xp``: several
    values from one call (an optimizer's scalars, formed at every step)."""
    values = "".join(f"{render(tree, ARRAY)}, " for tree in trees)
    return _defined(f"def {name}(xp, {', '.join(arguments)}):\n    return ({values})\n", name)


def _defined(source: str, name: str):
    """The function `name` that `source` (rendered from checked trees) defines."""
    namespace = {"stable_sigmoid": stable_sigmoid}
    exec(compile(source, f"<dnn.expressions {name}>", "exec"), namespace)  # noqa: S102 - text checked by parse()
    return namespace[name]
