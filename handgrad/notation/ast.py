"""The expression tree: one parsed formula, from which every printer and the evaluator work.

Nodes are frozen dataclasses, so two trees compare equal when they are the same formula
(``parse(to_text(e)) == e``).  Each node remembers where it was written (``pos``, a
character offset into the source line) for error messages; ``pos`` takes no part in
equality.

    Num(2.0)                 a number
    Sym("X")                 a declared variable, constant or named subexpression
    Diff("X")                dX, the differential of the variable X
    Neg(x)                   -x
    Transpose(x)             x'  (also written x^T)
    Bin(op, a, b)            op in BINARY: + - * .* ./ / ^ .^ kron
    Call(fn, args)           tr(X), inv(X), vector(1), eye, eye(n), ... (FUNCTIONS)

``|X|`` parses to ``Call("det", (X,))`` and ``X^-1`` to ``Bin("^", X, Num(-1))``: the
notes' forms are spellings of the same tree, not separate nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Node:
    pos: int | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Num(Node):
    value: float


@dataclass(frozen=True)
class Sym(Node):
    name: str


@dataclass(frozen=True)
class Diff(Node):
    name: str


@dataclass(frozen=True)
class Neg(Node):
    x: Node


@dataclass(frozen=True)
class Transpose(Node):
    x: Node


@dataclass(frozen=True)
class Bin(Node):
    op: str
    a: Node
    b: Node


@dataclass(frozen=True)
class Call(Node):
    fn: str
    args: tuple[Node, ...]


# Binding powers, lowest first.  Binary operators are left-associative except ^ and .^.
PREC_ADD, PREC_MUL, PREC_NEG, PREC_POW, PREC_POSTFIX, PREC_ATOM = 1, 2, 3, 4, 5, 6
BINARY = {"+": PREC_ADD, "-": PREC_ADD, "*": PREC_MUL, ".*": PREC_MUL, "./": PREC_MUL,
          "/": PREC_MUL, "kron": PREC_MUL, "^": PREC_POW, ".^": PREC_POW}
RIGHT_ASSOC = {"^", ".^"}

# name -> (number of arguments, kind).  kind: "linear" (a linear map of its argument),
# "elementwise" (a scalar function applied entry by entry), "matrix" (anything else),
# "const" (no differentiable argument: vector(c), matrix(c), eye).
FUNCTIONS: dict[str, tuple[int, str]] = {
    "tr": (1, "linear"), "sum": (1, "linear"), "vec": (1, "linear"), "diag": (1, "linear"),
    "tril": (1, "linear"),  # the lower triangle, diagonal included (a Cholesky factor's gradient)
    "det": (1, "matrix"), "logdet": (1, "matrix"), "inv": (1, "matrix"),
    "adj": (1, "matrix"),  # the adjugate (the notes' X^#), from cofactors
    "norm1": (1, "matrix"), "norm2": (1, "matrix"),
    "softmax": (1, "matrix"), "logsumexp": (1, "matrix"),  # column by column, as the notes' z
    "exp": (1, "elementwise"), "log": (1, "elementwise"), "sin": (1, "elementwise"),
    "cos": (1, "elementwise"), "tanh": (1, "elementwise"), "abs": (1, "elementwise"),
    "sign": (1, "elementwise"), "relu": (1, "elementwise"), "sigma": (1, "elementwise"),
    "softplus": (1, "elementwise"), "sqrt": (1, "elementwise"),
    "vector": (1, "const"), "matrix": (1, "const"), "eye": (0, "const"),
    "comm": (1, "const"),  # comm(A): the commutation matrix K_mn of A's shape (m x n), K vec(A) = vec(A')
}


def precedence(node: Node) -> int:
    """How tightly a node binds when printed (used to decide on parentheses)."""
    if isinstance(node, Bin):
        return PREC_MUL if node.op == "kron" else BINARY[node.op]
    if isinstance(node, Neg):
        return PREC_NEG
    if isinstance(node, Num) and node.value < 0:
        return PREC_NEG
    if isinstance(node, Transpose):
        return PREC_POSTFIX
    return PREC_ATOM


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Neg, Transpose)):
        return (node.x,)
    if isinstance(node, Bin):
        return (node.a, node.b)
    if isinstance(node, Call):
        return () if node.fn == "eye" else node.args  # eye(n)'s argument is a size, not a value
    return ()


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    yield node
    for c in children(node):
        yield from walk(c)


def symbols(node: Node) -> set[str]:
    """Names used as values (not as differentials)."""
    return {n.name for n in walk(node) if isinstance(n, Sym)}


def differentials(node: Node) -> set[str]:
    """Names X whose differential dX appears."""
    return {n.name for n in walk(node) if isinstance(n, Diff)}


def terms(node: Node) -> list[tuple[int, Node]]:
    """The top-level sum as (sign, term) pairs: a - (b + c) -> [(+1,a), (-1,b), (-1,c)]."""
    if isinstance(node, Bin) and node.op in "+-":
        right = terms(node.b)
        if node.op == "-":
            right = [(-s, t) for s, t in right]
        return terms(node.a) + right
    if isinstance(node, Neg):
        return [(-s, t) for s, t in terms(node.x)]
    return [(1, node)]
