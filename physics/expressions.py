"""Material functions of the parameter files: a constant, a safe arithmetic expression or a table.

A value in a parameter JSON is ``{"value": number}``, ``{"expression": "..."}`` (arithmetic in ``x``
(stoichiometry) or ``c`` (electrolyte concentration in mol/m^3) and ``T`` (K), with exp, tanh, cosh,
sinh, sqrt, log, abs) or ``{"table": {"x": [...], "y": [...]}}`` (piecewise linear, linearly
extrapolated). :class:`Func` evaluates one on numpy arrays, as a UFL expression (the weak forms) or on
PyBaMM symbols (the homogenised twin), so the model, the tests and the twin use exactly the same
function. Expressions are parsed with :mod:`ast` and only the listed names and functions are allowed
(no ``eval`` of arbitrary code from a parameter file); their size is bounded.
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

from tomocell.errors import InputError

_ALLOWED_FUNCS = ("exp", "tanh", "cosh", "sinh", "sqrt", "log", "abs")
_ALLOWED_NAMES = ("x", "c", "T")


#: bounds of a parameter expression: characters and syntax-tree nodes (the bundled OCP fits have < 150)
MAX_EXPRESSION_CHARS = 4000
MAX_EXPRESSION_NODES = 1000


class _FloatConstants(ast.NodeTransformer):
    """Integer literals become floats, so ``9**9**9`` overflows at once (OverflowError) instead of
    computing a 370-million-digit integer: Python's int power is the only unbounded operation the
    grammar allows, floats (and numpy/UFL) are bounded by IEEE arithmetic. A bare integer exponent
    (``x**2``) is kept: its base is then a float or an array, and UFL keeps its integer power."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:  # noqa: N802 - ast API
        if isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant) and type(node.right.value) is int:
            node.left = self.visit(node.left)
            return node
        return self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:  # noqa: N802 - ast API
        if type(node.value) is int:
            return ast.copy_location(ast.Constant(float(node.value)), node)
        return node


def _check_expression(text: str) -> ast.Expression:
    """Parse an arithmetic expression and reject anything but numbers, x/c/T and the allowed calls.

    Bounded: at most MAX_EXPRESSION_CHARS characters and MAX_EXPRESSION_NODES nodes, integer literals
    evaluated as floats (see :class:`_FloatConstants`)."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise InputError(f"parameter expression of {len(text)} characters is longer than {MAX_EXPRESSION_CHARS}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise InputError(f"parameter expression {text!r} is not valid: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise InputError(f"parameter expression {text[:60]!r}... is nested too deeply") from None
    n_nodes = sum(1 for _ in ast.walk(tree))
    if n_nodes > MAX_EXPRESSION_NODES:
        raise InputError(f"parameter expression {text[:60]!r}... has {n_nodes} terms (more than {MAX_EXPRESSION_NODES})")
    ok_ops = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.Load, ast.BinOp, ast.UnaryOp) + ok_ops):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            continue
        if isinstance(node, ast.Name) and (node.id in _ALLOWED_NAMES or node.id in _ALLOWED_FUNCS):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ALLOWED_FUNCS and not node.keywords:
            continue
        raise InputError(f"parameter expression {text!r}: {type(node).__name__} is not allowed "
                         f"(use numbers, {', '.join(_ALLOWED_NAMES)}, + - * / ** and {', '.join(_ALLOWED_FUNCS)})")
    return ast.fix_missing_locations(_FloatConstants().visit(tree))


def backend_namespace(kind: str) -> dict[str, Any]:
    """The functions an expression may call, for the backend "numpy", "ufl" or "pybamm"."""
    if kind == "numpy":
        return {"exp": np.exp, "tanh": np.tanh, "cosh": np.cosh, "sinh": np.sinh, "sqrt": np.sqrt,
                "log": np.log, "abs": np.abs}
    if kind == "pybamm":
        import pybamm

        return {"exp": pybamm.exp, "tanh": pybamm.tanh, "cosh": pybamm.cosh, "sinh": pybamm.sinh,
                "sqrt": pybamm.sqrt, "log": pybamm.log, "abs": abs}
    import ufl

    return {"exp": ufl.exp, "tanh": ufl.tanh, "cosh": ufl.cosh, "sinh": ufl.sinh, "sqrt": ufl.sqrt,
            "log": ufl.ln, "abs": abs}


class Func:
    """A scalar material function: constant, expression or table, for numpy or UFL arguments.

    Call as ``f(x=...)`` (electrode functions of stoichiometry) or ``f(c=..., T=...)`` (electrolyte
    functions of concentration in mol/m^3). ``ufl=True`` builds a UFL expression instead.
    """

    def __init__(self, spec: Any, name: str = "parameter"):
        self.name = name
        self.spec = spec
        self.valid: tuple[float, float] | None = None
        self._const: float | None = None
        self._code = None
        self._table: tuple[np.ndarray, np.ndarray] | None = None
        if isinstance(spec, (int, float)):
            self._const = float(spec)
            return
        if not isinstance(spec, dict):
            raise InputError(f"{name}: expected a number or a mapping, got {spec!r}")
        if spec.get("valid") is not None:
            lo, hi = spec["valid"]
            self.valid = (float(lo), float(hi))
        if "value" in spec:
            try:
                self._const = float(spec["value"])
            except (TypeError, ValueError):
                raise InputError(f"{name}: value {spec['value']!r} is not a number") from None
        elif "expression" in spec:
            tree = _check_expression(str(spec["expression"]))
            self._code = compile(tree, f"<{name}>", "eval")
        elif "table" in spec:
            tx = np.asarray(spec["table"].get("x"), dtype=float)
            ty = np.asarray(spec["table"].get("y"), dtype=float)
            if tx.ndim != 1 or tx.shape != ty.shape or tx.size < 2:
                raise InputError(f"{name}: table needs equally long x and y lists with >= 2 points")
            order = np.argsort(tx)
            tx, ty = tx[order], ty[order]
            if np.any(np.diff(tx) <= 0):
                raise InputError(f"{name}: table x values must be distinct")
            self._table = (tx, ty)
        else:
            raise InputError(f"{name}: needs 'value', 'expression' or 'table'")

    @property
    def is_constant(self) -> bool:
        return self._const is not None

    def __call__(self, x: Any = None, c: Any = None, T: Any = None, ufl: bool = False, backend: str | None = None) -> Any:
        """``backend``: "numpy" (default), "ufl" (same as ``ufl=True``) or "pybamm" (PyBaMM symbols)."""
        if self._const is not None:
            return self._const
        backend = backend or ("ufl" if ufl else "numpy")
        arg = x if x is not None else c
        if self._table is not None:
            return self._piecewise_linear(arg, backend)
        ns = backend_namespace(backend)
        ns.update({"x": arg, "c": arg if c is None else c, "T": T, "__builtins__": {}})
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # inf/nan are caught by validate()
                return eval(self._code, ns)  # noqa: S307 - AST checked in _check_expression
        except (OverflowError, ZeroDivisionError, ValueError) as exc:
            raise InputError(f"parameter {self.name}: expression {self.spec.get('expression')!r} cannot be "
                             f"evaluated ({exc})") from None

    def _piecewise_linear(self, arg: Any, backend: str) -> Any:
        # A sum of ramps max(x - x_i, 0): continuous, linearly extrapolated, and expressible in UFL
        # (and PyBaMM) with one max per node (a chain of conditionals would be much larger to compile).
        tx, ty = self._table
        slopes = np.diff(ty) / np.diff(tx)
        if backend in ("ufl", "pybamm"):
            if backend == "ufl":
                import ufl

                ramp = ufl.max_value
            else:
                import pybamm

                ramp = pybamm.maximum
            out = float(ty[0]) + float(slopes[0]) * (arg - float(tx[0]))
            for i in range(1, slopes.size):
                out = out + float(slopes[i] - slopes[i - 1]) * ramp(arg - float(tx[i]), 0.0)
            return out
        a = np.asarray(arg, dtype=float)
        out = ty[0] + slopes[0] * (a - tx[0])
        for i in range(1, slopes.size):
            out = out + (slopes[i] - slopes[i - 1]) * np.maximum(a - tx[i], 0.0)
        return out
