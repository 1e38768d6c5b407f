"""Step 1 of the automatic deriver: the differential, one level of rules per line.

A subexpression whose differential is not written out yet is a named subexpression,
named by its role as the notes do (``let z = X*w``, ``let p = sigma(z)``), and appears as
its differential ``dz``; the verifier evaluates ``dz`` as the directional derivative of
its definition, so every intermediate line is
checked like a finished one.  Each line expands every pending ``du``: linear operations
(sums, transposes, tr, sum, vec, diag) pass the d through, then one rule at the first
nonlinear operation; its nonlinear arguments become new named subexpressions.
"""

from __future__ import annotations

from handgrad.notation import simplify
from handgrad.notation.ast import Bin, Call, Diff, Neg, Node, Num, Sym, Transpose
from handgrad.notation.errors import DeriveError
from handgrad.notation.operators import BINARY_TABLE, LINEAR, TABLE, Rule, of
from handgrad.notation.parser import NotationError
from handgrad.notation.simplify import ZERO, Ctx, add, had, mul, neg, sub

# the rules of the grammar's operators; a function's rule text is in its operator table entry
GRAMMAR_RULES = {
    "lin": "linearity: d(U + V) = dU + dV, d(cU) = c dU",
    "T": "d(U') = (dU)'",
    "const": "constants vanish",
    "^m": "d(U^k) = sum of U^j dU U^(k-1-j)",
}


def rule_text(key: str) -> str:
    """The text of a grammar rule (by operator) or of a function's rule (by name)."""
    if key in GRAMMAR_RULES:
        return GRAMMAR_RULES[key]
    return BINARY_TABLE[key].rule if key in BINARY_TABLE else TABLE[key].rule


def all_rules() -> dict[str, str]:
    """Every rule text the deriver can print, by key."""
    return {**GRAMMAR_RULES, **{n: o.rule for n, o in BINARY_TABLE.items() if o.rule},
            **{n: o.rule for n, o in TABLE.items() if o.rule}}


RULES = all_rules()  # as the table stands at import (operators registered later: all_rules())


class Expander:
    """Turns d(...) into rules; ``pending`` holds names whose d is still to be expanded."""

    def __init__(self, ctx: Ctx, taken: set[str]):
        self.ctx, self.taken = ctx, set(taken)
        self.lets: dict[str, Node] = {}   # auto-named subexpressions, in order of creation
        self.rules: list[str] = []

    def name_for(self, body: Node) -> str:
        """A name by the subexpression's role, as the notes name them: p = sigma(z),
        z = W*x (a product), r = A*x - b (a sum), S (a square matrix), s (a scalar)."""
        for n, b in self.lets.items():
            if b == body:
                return n
        base = _role(self.ctx, body)
        sizes = {d for shape in self.ctx.env.values() for dim in shape
                 for d in getattr(dim, "letters", ())}
        k = 1
        while True:
            name = base if k == 1 else f"{base}{k}"
            if not ({name, "d" + name, "d2" + name} & (self.taken | sizes)):
                break
            k += 1
        self.lets[name] = body
        self.taken.add(name)
        self.ctx.checker.env[name] = self.ctx.shape(body)
        return name

    def note(self, key: str) -> None:
        text = rule_text(key)
        if text not in self.rules:
            self.rules.append(text)

    def body(self, name: str) -> Node:
        return self.lets[name] if name in self.lets else self.ctx.defs[name]

    def pending(self, e: Node) -> list[str]:
        from handgrad.notation.ast import walk
        return [n.name for n in walk(e) if isinstance(n, Diff) and n.name not in self.ctx.wrt]

    def expand_line(self, e: Node) -> Node:
        """Every pending du in e replaced by one level of rules (self.rules names them)."""
        self.rules = []
        return self._expand(e)

    def _expand(self, e: Node) -> Node:
        if isinstance(e, Diff) and e.name not in self.ctx.wrt:
            return self.d(self.body(e.name), top=True)
        if isinstance(e, (Sym, Num, Diff)):
            return e
        if isinstance(e, Neg):
            return Neg(self._expand(e.x))
        if isinstance(e, Transpose):
            return Transpose(self._expand(e.x))
        if isinstance(e, Bin):
            return Bin(e.op, self._expand(e.a), self._expand(e.b))
        return Call(e.fn, tuple(self._expand(a) for a in e.args))

    # -- d of an expression: linear operations pass through, then one rule
    def d(self, e: Node, top: bool) -> Node:
        """top: apply a rule at the first nonlinear node; else name it (du_k)."""
        ctx = self.ctx
        if not ctx.depends(e):
            if not isinstance(e, Num):
                self.note("const")
            return ZERO
        if isinstance(e, Sym):
            return Diff(e.name)
        if isinstance(e, Neg):
            self.note("lin")
            return neg(self.d(e.x, top))
        if isinstance(e, Transpose):
            self.note("T")
            dx = self.d(e.x, top)
            return ZERO if dx == ZERO else Transpose(dx)
        if isinstance(e, Bin) and e.op in "+-":
            self.note("lin")
            a, b = self.d(e.a, top), self.d(e.b, top)
            return add(a, b) if e.op == "+" else sub(a, b)
        op = of(e)
        if op is not None and op.d is LINEAR:  # d tr(U) = tr(dU): the d passes through
            self.note(e.fn)
            inner = self.d(e.args[0], top)
            return ZERO if inner == ZERO else Call(e.fn, (inner,))
        if not top:
            return Diff(self.name_for(e))
        return self.rule(e)

    def arg(self, e: Node) -> Node:
        return self.d(e, top=False)

    def rule(self, e: Node) -> Node:
        """The rule at e's operator, from its operator table entry."""
        if isinstance(e, Bin) and BINARY_TABLE[e.op].d is not None:
            return BINARY_TABLE[e.op].d(self, e)
        if isinstance(e, Call):
            return self.call(e)
        raise DeriveError(f"{_t(e)}: no differential rule for this expression")

    b = simplify  # the tree builders a table entry's rule builds with
    text = staticmethod(lambda e: _t(e))

    def call(self, e: Call) -> Node:
        """A function's rule, from its operator table entry."""
        op = of(e)
        if op.kink:
            raise DeriveError(f"{_t(e)}: {op.kink}; handgrad derives only where f is differentiable "
                              "everywhere it is used (no subgradients)")
        if op.d is None and op.deriv is None:
            raise DeriveError(f"{_t(e)}: no differential rule for {e.fn}")
        u = e.args[0]
        du = self.arg(u)
        if op.rule:
            self.note(e.fn)
        r = Rule(e, u, du, self.ctx.scalar(u), self.ctx.column(u), simplify)
        if op.d is not None:
            return op.d(r)
        return mul(op.deriv(r), du) if r.scalar else had(op.deriv(r), du)


def _role(ctx: Ctx, body: Node) -> str:
    """The letter the notes use for a subexpression of this kind."""
    op = of(body)
    if op is not None and op.role:
        return op.role
    try:
        shape = ctx.shape(body)
    except NotationError:
        shape = None
    if isinstance(body, Bin) and body.op in "+-":
        return "r"
    if isinstance(body, Bin) and body.op in ("*", "kron") and shape is not None and shape[0] == shape[1] \
            and not ctx.scalar(body):
        return "S"
    if isinstance(body, Bin) and body.op == "*" and not ctx.scalar(body):
        return "z"
    if shape is not None and ctx.scalar(body):
        return "s"
    return "v" if shape is not None and ctx.column(body) else "M"


def _t(e: Node) -> str:
    from handgrad.notation.render import to_text
    return to_text(e)


__all__ = ["DeriveError", "Expander", "GRAMMAR_RULES", "RULES", "all_rules", "rule_text"]
