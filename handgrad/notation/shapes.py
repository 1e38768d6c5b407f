"""Dimension analysis, before any number is computed.

A size is a product of letters times a number (``n``, ``3``, ``m*n`` for vec or kron)
or, for ``vector(c)``, ``matrix(c)`` and ``eye``, an unknown that unification fills in
from the context (``x' * vector(1)`` makes the vector n x 1).  Distinct letters are
distinct sizes: handgrad never sets n = m, so a transposed product that only conforms
when n = m is an error here, as in the notes' dimension checks.

Every matrix is 2-D: a vector declared ``n`` is n x 1 (a column), a scalar is 1 x 1.
A 1 x 1 operand of ``*`` multiplies as a scalar; ``+`` and ``-`` broadcast only a
written number (``1 - p``), anything else must conform (``b*vector(1)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from handgrad.notation.ast import Bin, Call, Diff, Neg, Node, Num, Sym, Transpose
from handgrad.notation.parser import NotationError


@dataclass(frozen=True)
class Size:
    """coef * the product of ``letters`` (sorted): Size(3), Size(1, ("n",)), Size(1, ("m", "n"))."""

    coef: int
    letters: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = ([str(self.coef)] if self.coef != 1 or not self.letters else []) + list(self.letters)
        return "*".join(parts)

    def times(self, other: Size) -> Size:
        return Size(self.coef * other.coef, tuple(sorted(self.letters + other.letters)))

    def value(self, sizes: dict[str, int]) -> int:
        missing = [k for k in self.letters if k not in sizes]
        if missing:
            raise NotationError(f"{missing[0]} is not the size of any declared name")
        return self.coef * math.prod(sizes[k] for k in self.letters)


@dataclass(frozen=True)
class Unknown:
    id: int

    def __str__(self) -> str:
        return "?"


Dim = Size | Unknown
Shape = tuple[Dim, Dim]
ONE = Size(1)
SCALAR: Shape = (ONE, ONE)


def size(text: str | int) -> Size:
    """'3' -> Size(3), 'n' -> Size(1, ('n',))."""
    text = str(text).strip()
    if text.isdigit():
        return Size(int(text))
    if not text.isidentifier():
        raise NotationError(f"a size is a number or a letter, not {text!r}")
    return Size(1, (text,))


def eye_size(node: Call) -> Size | None:
    """The stated size of eye(n) / eye(3); None for a bare eye (its size from the context)."""
    if not node.args:
        return None
    (a,) = node.args
    return Size(int(a.value)) if isinstance(a, Num) else Size(1, (a.name,))


def show(shape: Shape) -> str:
    return f"({shape[0]} x {shape[1]})"


def is_scalar(shape: Shape) -> bool:
    return shape[0] == ONE and shape[1] == ONE


def _text(node: Node) -> str:
    from handgrad.notation.render import to_text
    return to_text(node)


def _is_number(node: Node) -> bool:
    return isinstance(node, Num) or (isinstance(node, Neg) and isinstance(node.x, Num))


class ShapeChecker:
    """Infers and records the shape of every node of the formulas it is given.

    ``env`` maps each declared name to its shape.  ``shape(node)`` (after ``infer``)
    is the node's shape with every unknown that unification resolved filled in.
    """

    def __init__(self, env: dict[str, Shape]):
        self.env = dict(env)
        self.parent: dict[int, Dim] = {}
        self.raw: dict[int, Shape] = {}
        self.nodes: dict[int, Node] = {}  # keeps the nodes alive, so ids stay unique
        self._fresh = 0

    # -- unknowns
    def fresh(self) -> Unknown:
        self._fresh += 1
        return Unknown(self._fresh)

    def find(self, d: Dim) -> Dim:
        while isinstance(d, Unknown) and d.id in self.parent:
            d = self.parent[d.id]
        return d

    def unify(self, a: Dim, b: Dim) -> bool:
        a, b = self.find(a), self.find(b)
        if a == b:
            return True
        if isinstance(a, Unknown):
            self.parent[a.id] = b
            return True
        if isinstance(b, Unknown):
            self.parent[b.id] = a
            return True
        return False

    def resolve(self, shape: Shape) -> Shape:
        return (self.find(shape[0]), self.find(shape[1]))

    def shape(self, node: Node) -> Shape:
        return self.resolve(self.raw[id(node)])

    # -- inference
    def infer(self, node: Node) -> Shape:
        s = self._infer(node)
        self.raw[id(node)] = s
        self.nodes[id(node)] = node
        return s

    def error(self, node: Node, message: str) -> NotationError:
        return NotationError(message, None, node.pos)

    def _conform(self, node: Bin, sa: Shape, sb: Shape, sym: str) -> Shape:
        if self.unify(sa[0], sb[0]) and self.unify(sa[1], sb[1]):
            return sa
        raise self.error(node, f"{_text(node.a)} {sym} {_text(node.b)}: "
                               f"{show(self.resolve(sa))} {sym} {show(self.resolve(sb))} do not conform")

    def _square(self, node: Node, arg: Node, s: Shape, what: str) -> None:
        if not self.unify(s[0], s[1]):
            raise self.error(node, f"{what}: {_text(arg)} is {show(self.resolve(s))}, not square")

    def _infer(self, node: Node) -> Shape:  # noqa: C901 - one case per node kind
        if isinstance(node, Num):
            return SCALAR
        if isinstance(node, (Sym, Diff)):
            if node.name not in self.env:
                raise self.error(node, f"unknown name {node.name!r}")
            return self.env[node.name]
        if isinstance(node, Neg):
            return self.infer(node.x)
        if isinstance(node, Transpose):
            s = self.infer(node.x)
            return (s[1], s[0])
        if isinstance(node, Bin):
            return self._binary(node)
        if isinstance(node, Call):
            return self._call(node)
        raise TypeError(f"not a notation node: {node!r}")

    def _binary(self, node: Bin) -> Shape:
        sa, sb = self.infer(node.a), self.infer(node.b)
        op = node.op
        ra, rb = self.resolve(sa), self.resolve(sb)
        if op in ("+", "-"):
            if _is_number(node.a) and not is_scalar(rb):
                return sb
            if _is_number(node.b) and not is_scalar(ra):
                return sa
            if is_scalar(ra) != is_scalar(rb) and (is_scalar(ra) or is_scalar(rb)):
                big = node.b if is_scalar(ra) else node.a
                small = node.a if is_scalar(ra) else node.b
                raise self.error(node, f"{_text(node)}: a scalar {op} a {show(self.shape(big))} matrix; "
                                       f"write {_text(small)}*vector(1) (or matrix(1)) to broadcast")
            return self._conform(node, sa, sb, op)
        if op == "*":
            if is_scalar(ra):
                return sb
            if is_scalar(rb):
                return sa
            if not self.unify(sa[1], sb[0]):
                raise self.error(node, f"{_text(node.a)} * {_text(node.b)}: "
                                       f"{show(ra)} * {show(rb)} do not conform")
            return (sa[0], sb[1])
        if op in (".*", "./"):
            if is_scalar(ra):
                return sb
            if is_scalar(rb):
                return sa
            return self._conform(node, sa, sb, op)
        if op == "/":
            if not is_scalar(rb):
                raise self.error(node, f"{_text(node)}: / divides by a scalar only, and {_text(node.b)} is "
                                       f"{show(rb)}; use ./ for entrywise division")
            return sa
        if op in ("^", ".^"):
            if not is_scalar(rb):
                raise self.error(node, f"{_text(node)}: the exponent {_text(node.b)} is {show(rb)}, "
                                       "not a scalar")
            if op == ".^" or is_scalar(ra):
                return sa
            self._square(node, node.a, sa, f"{_text(node)}: a matrix power")
            if not (isinstance(node.b, Num) and float(node.b.value).is_integer()):
                raise self.error(node, f"{_text(node)}: a matrix power needs an integer exponent "
                                       "(use .^ for entrywise powers)")
            return sa
        if op == "kron":
            dims = [self.find(d) for d in (*ra, *rb)]
            if any(isinstance(d, Unknown) for d in dims):
                raise self.error(node, f"{_text(node)}: the sizes of the factors cannot be inferred")
            return (dims[0].times(dims[2]), dims[1].times(dims[3]))
        raise self.error(node, f"unknown operator {op!r}")

    def _call(self, node: Call) -> Shape:
        fn = node.fn
        if fn == "eye":
            d = eye_size(node) or self.fresh()
            return (d, d)
        (s,) = [self.infer(a) for a in node.args]
        (arg,) = node.args
        r = self.resolve(s)
        if fn in ("vector", "matrix"):
            if not is_scalar(r):
                raise self.error(node, f"{_text(node)}: the fill value {_text(arg)} is {show(r)}, "
                                       "not a scalar")
            return (self.fresh(), ONE) if fn == "vector" else (self.fresh(), self.fresh())
        if fn in ("tr", "det", "logdet"):
            self._square(node, arg, s, f"{fn}({_text(arg)})")
            return SCALAR
        if fn in ("inv", "adj"):
            self._square(node, arg, s, f"{fn}({_text(arg)})")
            return s
        if fn in ("sum", "norm1", "norm2"):
            return SCALAR
        if fn == "logsumexp":  # log(1' exp(z)) for each column z: 1 x (columns)
            return (ONE, s[1])
        if fn in ("softmax", "tril"):  # softmax: exp(z) / 1' exp(z) for each column z
            return s
        if fn == "comm":  # K_mn: mn x mn for an m x n argument
            if any(isinstance(d, Unknown) for d in r):
                raise self.error(node, f"{_text(node)}: the size of {_text(arg)} cannot be inferred")
            mn = r[0].times(r[1])
            return (mn, mn)
        if fn == "vec":
            if any(isinstance(d, Unknown) for d in r):
                raise self.error(node, f"{_text(node)}: the size of {_text(arg)} cannot be inferred")
            return (r[0].times(r[1]), ONE)
        if fn == "diag":
            if is_scalar(r):
                return SCALAR
            if r[1] == ONE:
                return (r[0], r[0])
            if r[0] == ONE:
                return (r[1], r[1])
            self._square(node, arg, s, "diag of a matrix (its diagonal as a vector)")
            return (s[0], ONE)
        return s  # elementwise
