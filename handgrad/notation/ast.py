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
    Call(fn, args)           tr(X), inv(X), vector(1), eye, eye(n), ... (handgrad.notation.operators)

``|X|`` parses to ``Call("det", (X,))`` and ``X^-1`` to ``Bin("^", X, Num(-1))``: the
notes' forms are spellings of the same tree, not separate nodes.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Node:
    pos: int | None = field(default=None, compare=False, repr=False, kw_only=True)

    def __getstate__(self):
        # the remembered hash stays in this process (string hashes differ between processes)
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}


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


def _remember_hash(cls) -> None:
    """A node's hash computed once (the generated one walks the whole subtree: memo tables
    keyed by subtrees of a long sum would cost its size squared)."""
    generated = cls.__hash__

    def __hash__(self):
        h = self.__dict__.get("_hash")
        if h is None:
            h = generated(self)
            object.__setattr__(self, "_hash", h)
        return h
    cls.__hash__ = __hash__


for _cls in (Num, Sym, Diff, Neg, Transpose, Bin, Call):
    _remember_hash(_cls)


# Binding powers, lowest first.  Binary operators are left-associative except ^ and .^.
PREC_ADD, PREC_MUL, PREC_NEG, PREC_POW, PREC_POSTFIX, PREC_ATOM = 1, 2, 3, 4, 5, 6
# op -> binding power, and the operators that group to the right: filled from the operator
# table (handgrad.notation.operators), which owns each operator.
BINARY: dict[str, int] = {}
RIGHT_ASSOC: set[str] = set()

# name -> (number of arguments, kind), and the functions whose argument is a size (eye(n)):
# filled from the operator table (handgrad.notation.operators), which owns each function.
FUNCTIONS: dict[str, tuple[int, str]] = {}
SIZE_ARGUMENT: set[str] = set()


def precedence(node: Node) -> int:
    """How tightly a node binds when printed (used to decide on parentheses)."""
    if isinstance(node, Bin):
        return BINARY[node.op]
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
        return () if node.fn in SIZE_ARGUMENT else node.args  # eye(n)'s argument is a size, not a value
    return ()


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children (left to right; no recursion, so a
    deep tree costs its size, not its size times its depth)."""
    todo = [node]
    while todo:
        n = todo.pop()
        yield n
        todo.extend(reversed(children(n)))


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


# --------------------------------------------------------------------------- depth
# Trees are walked recursively (printers, shapes, the deriver, the verifier).  A formula
# may be nested at most MAX_NESTING levels (parentheses, calls, signs: the parser refuses
# more, one line) and a tree may be at most MAX_DEPTH deep (a sum of that many terms is
# that deep); ``deep`` runs a function on a thread with a stack and a recursion limit
# for trees that deep.
MAX_NESTING = 200
MAX_DEPTH = 5000
_STACK = 512 * 1024 * 1024
_RECURSION = 40 * MAX_DEPTH + 10_000


def depth(node: Node) -> int:
    """The tree's depth (1 for a leaf), without recursion."""
    best, todo = 0, [(node, 1)]
    while todo:
        n, d = todo.pop()
        best = max(best, d)
        todo.extend((c, d + 1) for c in children(n))
    return best


def deep(fn):
    """fn run where a tree MAX_DEPTH deep can be walked recursively (its own thread, a
    large stack, a raised recursion limit); exceptions and the result pass through."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if getattr(_inside, "yes", False):
            return fn(*args, **kwargs)
        out: dict = {}

        def run():
            _inside.yes = True
            try:
                out["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                out["error"] = exc
        old_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old_limit, _RECURSION))
        old_stack = threading.stack_size()
        try:
            threading.stack_size(_STACK)
            t = threading.Thread(target=run, daemon=True)
            t.start()
        finally:
            threading.stack_size(old_stack)
        try:
            t.join()
        finally:
            sys.setrecursionlimit(old_limit)
        if "error" in out:
            raise out["error"]
        return out["value"]
    return wrapper




_inside = threading.local()
