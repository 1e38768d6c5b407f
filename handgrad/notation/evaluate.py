"""Torch evaluation of a checked formula, in float64, and the magnitude of its terms.

Conventions: every value is a 2-D tensor.  A vector is an n x 1 column and a scalar is
1 x 1 (``as_matrix`` turns 0-d and 1-D inputs into these).  Where the shape checker
found a 1 x 1 operand of ``*``, it multiplies as a scalar.

Stable forms: ``logdet(X)`` is log|det X| from slogdet, ``inv(A)*B`` is solve(A, B)
and ``B*inv(A)`` is solve(A^T, B^T)^T, ``softplus(z)`` is logaddexp(0, z); ``logsumexp`` and
``softmax`` (column by column) subtract the column's maximum first; ``kron``
gets contiguous copies (torch 2.13's CPU kron fails on a transposed input).

Besides the value, the evaluator gives two scales for the verifier's tolerance:
``magnitude(e)``, the entrywise sum of |terms| that floating point adds up to make e
(|a| |b| for a product, |a| + |b| for a sum, |value| through a nonlinear function), and
``tangent_magnitude(f)``, the same for the directional derivative of f along the
directions given (|da| |b| + |a| |db| for a product ...).  Neither is a derivative
anyone reads; they say how large the rounding error of a correct line can be.
"""

from __future__ import annotations

import torch

from handgrad.notation.ast import SIZE_ARGUMENT, Bin, Call, Diff, Neg, Node, Num, Sym, Transpose, children
from handgrad.notation.operators import BINARY_TABLE, TABLE, adjugate, commutation, linear_magnitude
from handgrad.notation.parser import NotationError
from handgrad.notation.shapes import ShapeChecker, Unknown, is_scalar

DTYPE = torch.float64


def as_matrix(t) -> torch.Tensor:
    """A 0-d, 1-D or 2-D input as a float64 2-D tensor (1 x 1, n x 1, as is)."""
    t = torch.as_tensor(t, dtype=DTYPE)
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() == 1:
        return t.reshape(-1, 1)
    if t.dim() == 2:
        return t
    raise NotationError(f"a value must be a scalar, vector or matrix, not a {t.dim()}-D tensor")


class Evaluator:
    """Values of formulas checked by ``checker`` at one point.

    ``values``: name -> 2-D tensor for every variable and constant; ``diffs``: name ->
    direction for the variables being differentiated (a constant's differential is 0);
    ``defs``: named subexpressions (``let p = sigma(X*w)``); ``sizes``: letter -> int.
    """

    def __init__(self, checker: ShapeChecker, values: dict[str, torch.Tensor],
                 diffs: dict[str, torch.Tensor] | None = None, defs: dict[str, Node] | None = None,
                 sizes: dict[str, int] | None = None):
        self.checker, self.values = checker, values
        self.diffs, self.defs, self.sizes = diffs or {}, defs or {}, sizes or {}
        self._cache: dict[int, torch.Tensor] = {}

    # -- helpers
    def dims(self, node: Node) -> tuple[int, int]:
        out = []
        for d in self.checker.shape(node):
            if isinstance(d, Unknown):
                from handgrad.notation.render import to_text
                raise NotationError(f"the size of {to_text(node)} cannot be inferred from its context",
                                    None, node.pos)
            out.append(d.value(self.sizes))
        return out[0], out[1]

    def scalar(self, node: Node) -> bool:
        return is_scalar(self.checker.shape(node))

    # -- values
    def value(self, node: Node) -> torch.Tensor:
        key = id(node)
        if key not in self._cache:
            self._cache[key] = self._value(node)
        return self._cache[key]

    def _value(self, node: Node) -> torch.Tensor:
        if isinstance(node, Num):
            return torch.full((1, 1), node.value, dtype=DTYPE)
        if isinstance(node, Sym):
            return self.value(self.defs[node.name]) if node.name in self.defs else self.values[node.name]
        if isinstance(node, Diff):
            if node.name in self.defs:
                return self._def_differential(node.name)
            if node.name in self.diffs:
                return self.diffs[node.name]
            return torch.zeros_like(self.values[node.name])
        if isinstance(node, Bin) and BINARY_TABLE[node.op].value is not None:
            got = BINARY_TABLE[node.op].value(self, node)  # inv(A)*B as a solve
            if got is not None:
                return got
        return self.apply(node, *[self.value(c) for c in _kids(node)])

    def _def_differential(self, name: str) -> torch.Tensor:
        names = sorted(self.diffs)
        if not names:
            return torch.zeros_like(self.value(self.defs[name]))

        def fun(*vals):
            inner = Evaluator(self.checker, {**self.values, **dict(zip(names, vals))},
                              None, self.defs, self.sizes)
            return inner.value(self.defs[name])

        return torch.func.jvp(fun, tuple(self.values[k] for k in names),
                              tuple(self.diffs[k] for k in names))[1]

    def apply(self, node: Node, *xs: torch.Tensor) -> torch.Tensor:  # noqa: C901
        """The node's operation applied to tensors standing for its children."""
        if isinstance(node, (Num, Sym, Diff)):
            raise TypeError("apply is for operations")
        if isinstance(node, Neg):
            return -xs[0]
        if isinstance(node, Transpose):
            return xs[0].mT
        if isinstance(node, Bin):  # the operator's own evaluation, from the operator table
            return BINARY_TABLE[node.op].torch(self, node, *xs)
        if isinstance(node, Call):
            return self._call(node, *xs)
        raise TypeError(f"cannot evaluate {node!r}")

    def _call(self, node: Call, *xs: torch.Tensor) -> torch.Tensor:
        """The function's own evaluation, from the operator table."""
        op = TABLE.get(node.fn)
        if op is None or (op.value is None and op.torch is None):
            raise NotationError(f"unknown function {node.fn!r}", None, node.pos)
        return op.value(self, node, *xs) if op.value is not None else op.torch(*xs)

    # -- scales for the tolerance
    def magnitude(self, node: Node) -> torch.Tensor:
        """Entrywise sum of |terms| that make up the value (>= |value|)."""
        if isinstance(node, (Num, Sym, Diff)):
            return self.value(node).abs()
        if isinstance(node, Neg):
            return self.magnitude(node.x)
        if isinstance(node, Bin):  # the operator's own scale, from the operator table
            scale = BINARY_TABLE[node.op].magnitude
            return scale(self, node) if scale is not None else self.value(node).abs()
        if isinstance(node, Transpose):
            return self.apply(node, *[self.magnitude(c) for c in _kids(node)])
        op = TABLE.get(node.fn) if isinstance(node, Call) else None
        if op is not None and op.magnitude is not None:
            return op.magnitude(self, node)
        return self.value(node).abs()

    def tangent_magnitude(self, node: Node) -> torch.Tensor:  # noqa: C901
        """Entrywise sum of |terms| of the derivative of ``node`` along ``diffs``."""
        op = TABLE.get(node.fn) if isinstance(node, Call) else None
        if isinstance(node, Num) or op is not None and op.size_argument:
            return torch.zeros_like(self.value(node))
        if isinstance(node, Sym):
            if node.name in self.defs:
                return self.tangent_magnitude(self.defs[node.name])
            d = self.diffs.get(node.name)
            return torch.zeros_like(self.value(node)) if d is None else d.abs()
        if isinstance(node, Diff):
            return torch.zeros_like(self.value(node))
        kids = _kids(node)
        tm = [self.tangent_magnitude(c) for c in kids]
        if isinstance(node, Neg):  # a magnitude is >= 0: the sign does not carry over
            return tm[0]
        if isinstance(node, Transpose) or op is not None and op.magnitude is linear_magnitude:
            return self.apply(node, *tm)
        va = [self.value(c).abs() for c in kids]
        if isinstance(node, Bin) and BINARY_TABLE[node.op].tangent is not None:
            got = BINARY_TABLE[node.op].tangent(self, node, va, tm)
            if got is not None:
                return got
        if op is not None and op.tangent is not None:
            return op.tangent(self, node, self.value(kids[0]), tm[0])
        xs = [self.value(c) for c in kids]
        return torch.func.jvp(lambda *a: self.apply(node, *a), tuple(xs), tuple(tm))[1].abs()


def _kids(node: Node) -> tuple[Node, ...]:
    return children(node)


def evaluate(expr: Node | str, values: dict[str, object], diffs: dict[str, object] | None = None,
             defs: dict[str, Node] | None = None, sizes: dict[str, int] | None = None) -> torch.Tensor:
    """Evaluate a formula at concrete values (shapes are taken from the tensors; ``sizes``
    gives the letters of sized identities, eye(n)).

    >>> evaluate("tr(X'*X)", {"X": torch.eye(2)}).item()
    2.0
    """
    from handgrad.notation.parser import parse
    from handgrad.notation.shapes import Size
    from handgrad.notation.simplify import _rebuild

    vals = {k: as_matrix(v) for k, v in values.items()}
    dvals = {k: as_matrix(v) for k, v in (diffs or {}).items()}
    defs = dict(defs or {})
    if isinstance(expr, str):
        expr = parse(expr, set(vals) | set(defs))

    def sized(e: Node) -> Node:  # eye(n) -> eye(4) from ``sizes``
        e = _rebuild(e, sized)
        if isinstance(e, Call) and e.fn in SIZE_ARGUMENT and e.args and isinstance(e.args[0], Sym):
            name = e.args[0].name
            if name not in (sizes or {}):
                raise NotationError(f"{e.fn}({name}): give the size {name} (sizes={{'{name}': ...}})")
            return Call(e.fn, (Num(float(sizes[name])),))
        return e
    expr = sized(expr)
    env = {k: (Size(v.shape[0]), Size(v.shape[1])) for k, v in vals.items()}
    checker = ShapeChecker(env)
    for name, d in defs.items():
        checker.env[name] = checker.infer(d)
    checker.infer(expr)
    return Evaluator(checker, vals, dvals, defs).value(expr)


__all__ = ["DTYPE", "Evaluator", "adjugate", "as_matrix", "commutation", "evaluate"]
