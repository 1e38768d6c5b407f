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

from handgrad.notation.ast import Bin, Call, Diff, Neg, Node, Num, Sym, Transpose
from handgrad.notation.operators import BINARY_TABLE, TABLE
from handgrad.notation.parser import NotationError
from handgrad.notation.sizes import ONE, SCALAR, Dim, Shape, Size, Unknown, eye_size, is_scalar, show, size

__all__ = ["ONE", "SCALAR", "Dim", "Shape", "ShapeChecker", "Size", "Unknown", "eye_size", "is_scalar",
           "show", "size"]


def _text(node: Node) -> str:
    from handgrad.notation.render import to_text
    return to_text(node)


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
        """The operator's own shape rule, from the operator table."""
        sa, sb = self.infer(node.a), self.infer(node.b)
        entry = BINARY_TABLE.get(node.op)
        if entry is None:
            raise self.error(node, f"unknown operator {node.op!r}")
        return entry.shape(self, node, sa, sb, self.resolve(sa), self.resolve(sb))

    def conform(self, node: Bin, sa: Shape, sb: Shape, sym: str) -> Shape:
        return self._conform(node, sa, sb, sym)

    def square_of(self, node: Node, arg: Node, s: Shape, what: str) -> None:
        self._square(node, arg, s, what)

    def square_arg(self, node: Call, s: Shape, what: str | None = None) -> None:
        """A function of a square matrix (tr, det, inv ...): its argument must be square."""
        arg = node.args[0]
        self._square(node, arg, s, what or f"{node.fn}({_text(arg)})")

    text = staticmethod(_text)

    def _call(self, node: Call) -> Shape:
        """The function's own shape rule, from the operator table."""
        op = TABLE[node.fn]
        if op.size_argument or not node.args:
            return op.shape(self, node, None, None)
        (s,) = [self.infer(a) for a in node.args]
        return op.shape(self, node, s, self.resolve(s))
