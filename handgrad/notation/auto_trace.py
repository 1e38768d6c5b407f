"""Steps 2 and 3 of the automatic deriver: the trace trick, and the Hessian's read-off.

A differential (linear in the dX's) is split into terms with one differential each;
each term becomes ``sign * tr(F1 F2 ... Fk)`` and is moved, one identity at a time,
until it reads ``tr(G' dX)`` with dX last:

    a scalar is its own trace          c = tr(c)
    c tr(M) = tr(c M)                  a scalar coefficient moves inside
    tr(A') = tr(A)                     when dX appears transposed
    tr(AB) = tr(BA)                    dX (or the ⊙ holding it) rotated to the end
    tr(A'(B ⊙ C)) = tr((A ⊙ B)' C)     out of an elementwise product
    tr(A' diag(B)) = tr(diag(A)' B)    out of diag
    sum(A ⊙ B) = tr(A' B), sum(u) = 1'u

``jacobian`` reads H off a vector differential dg = H dw (for the Hessian).
"""

from __future__ import annotations

from dataclasses import dataclass

from handgrad.notation.ast import Bin, Call, Diff, Neg, Node, Num, Sym, Transpose
from handgrad.notation.auto_rules import DeriveError
from handgrad.notation.operators import LINEAR, TABLE
from handgrad.notation.shapes import Size, Unknown
from handgrad.notation.simplify import (
    ZERO,
    Ctx,
    T,
    flat,
    had,
    has_diff,
    mul,
    neg,
    prod,
    simplify,
    sub,
    tidy,
    total,
)

R_WRAP = "a scalar is its own trace"
R_COEF = "c tr(M) = tr(c M)"
R_FLIP = "tr(A') = tr(A)"
R_ROT = "tr(AB) = tr(BA)"
R_HAD = "tr(A'(B ⊙ C)) = tr((A ⊙ B)' C)"
R_DIAG = "tr(A' diag(B)) = tr(diag(A)' B)"
R_SUMH = "sum(A ⊙ B) = tr(A' B)"
R_SUM = "sum(u) = 1'u"
R_SCAL = "a scalar commutes"
R_VEC = "vec(A)'vec(B) = tr(A' B)"
R_TRIL = "tr(A' tril(B)) = tr(tril(A)' B)"
R_KRON = "kron(u, a) = kron(I, a) u and kron(a, u) = kron(a, I) u for columns u, a"


def _eye(ctx: Ctx, d) -> Node:
    """eye(n) of a size the notation can state: a number or one letter."""
    d = ctx.checker.find(d) if isinstance(d, Unknown) else d
    if isinstance(d, Size) and not d.letters:
        return Call("eye", (Num(float(d.coef)),))
    if isinstance(d, Size) and d.coef == 1 and len(d.letters) == 1:
        return Call("eye", (Sym(d.letters[0]),))
    raise DeriveError(f"an identity of size {d} (a product of sizes) cannot be written as eye(n)")


def _vec_row(f: Node) -> Node | None:
    """A in vec(A)' (a row that is a vec transposed), else None."""
    if isinstance(f, Transpose) and isinstance(f.x, Call) and f.x.fn == "vec":
        return f.x.args[0]
    return None


def _t(e: Node) -> str:
    from handgrad.notation.render import to_text
    return to_text(e)


def expand(ctx: Ctx, e: Node) -> list[tuple[int, Node]]:
    """The terms of a linear expression, one differential each (products distributed)."""
    if not has_diff(e):
        return []
    if isinstance(e, Neg):
        return [(-s, t) for s, t in expand(ctx, e.x)]
    if isinstance(e, Bin) and e.op in "+-":
        right = expand(ctx, e.b)
        return expand(ctx, e.a) + ([(-s, t) for s, t in right] if e.op == "-" else right)
    if isinstance(e, Bin) and e.op in ("*", ".*", "kron"):
        fs = flat(e) if e.op == "*" else [e.a, e.b]
        sign, clean = 1, []
        for f in fs:
            while isinstance(f, Neg):
                sign, f = -sign, f.x
            if isinstance(f, Num) and f.value < 0:
                sign, f = -sign, Num(-f.value)
            clean.append(f)
        i = next(k for k, f in enumerate(clean) if has_diff(f))
        out = []
        for s, t in expand(ctx, clean[i]):
            parts = clean[:i] + [t] + clean[i + 1:]
            node = prod(parts) if e.op == "*" else Bin(e.op, parts[0], parts[1])
            out.append((sign * s, node))
        return out
    if isinstance(e, Bin) and e.op in ("./", "/"):
        if has_diff(e.b):
            raise DeriveError(f"{_t(e)}: a differential in a denominator (the line is not linear)")
        return [(s, Bin(e.op, t, e.b)) for s, t in expand(ctx, e.a)]
    if isinstance(e, Transpose):
        return [(s, Transpose(t)) for s, t in expand(ctx, e.x)]
    if isinstance(e, Call) and TABLE[e.fn].d is LINEAR:  # tr, sum, vec, diag, tril: linear maps
        return [(s, Call(e.fn, (t,))) for s, t in expand(ctx, e.args[0])]
    if isinstance(e, Diff):
        return [(1, e)]
    raise DeriveError(f"{_t(e)}: the differential sits inside a nonlinear function")


@dataclass
class Term:
    sign: int
    factors: list[Node]
    done: bool = False

    def node(self) -> Node:
        body = Call("tr", (prod(self.factors),))
        return neg(body) if self.sign < 0 else body


def wrap(ctx: Ctx, sign: int, e: Node) -> tuple[Term, str | None]:
    if isinstance(e, Call) and e.fn == "tr":
        return Term(sign, flat(e.args[0])), None
    return Term(sign, flat(e)), R_WRAP


def _dindex(fs: list[Node]) -> int:
    return next(k for k, f in enumerate(fs) if has_diff(f))


def move(ctx: Ctx, t: Term) -> str | None:  # noqa: C901 - one case per identity
    """One step towards tr(G' dX); returns the identity used ('' for bookkeeping)."""
    fs = t.factors
    i = _dindex(fs)
    d = fs[i]
    rest = fs[:i] + fs[i + 1:]
    if isinstance(d, Neg):
        t.sign, fs[i] = -t.sign, d.x
        return ""
    if isinstance(d, Num) or isinstance(d, Bin) and d.op == "*":
        t.factors = fs[:i] + flat(d) + fs[i + 1:]
        return ""
    if isinstance(d, Diff):
        if ctx.scalar(d):
            if not rest:
                t.done = True
                return ""
            c = prod(rest)
            t.factors = [c if ctx.scalar(c) else Call("tr", (c,)), d]
            t.done = True
            return R_SCAL if ctx.scalar(c) else R_COEF
        if i == len(fs) - 1:
            t.done = True
            return ""
        t.factors = fs[i + 1:] + fs[:i] + [d]
        return R_ROT
    if isinstance(d, Transpose):
        if ctx.scalar(d):
            fs[i] = d.x
            return ""
        scal = [f for f in fs if ctx.scalar(f) and not has_diff(f)]
        t.factors = scal + [tidy(ctx, T(f)) for f in reversed(fs) if not any(f is s for s in scal)]
        return R_FLIP
    if isinstance(d, Call) and d.fn == "tr" and len(fs) > 1:
        c = prod(rest)
        t.factors = [c if ctx.scalar(c) else Call("tr", (c,))] + flat(d.args[0])
        return R_COEF
    if isinstance(d, Call) and d.fn == "tr":
        t.factors = flat(d.args[0])
        return R_WRAP
    if isinstance(d, Call) and d.fn == "sum":
        q = d.args[0]
        if isinstance(q, Bin) and q.op == "./" and has_diff(q.a):
            q = had(Bin("./", Num(1.0), q.b), q.a)
        if isinstance(q, Bin) and q.op == ".*" and not (ctx.scalar(q.a) or ctx.scalar(q.b)):
            a, b = (q.a, q.b) if has_diff(q.b) else (q.b, q.a)
            new, rule = [T(a)] + flat(b), R_SUMH
        elif ctx.scalar(q):
            new, rule = flat(q), R_WRAP
        elif ctx.column(q):
            new, rule = [T(Call("vector", (Num(1.0),)))] + flat(q), R_SUM
        else:
            new, rule = [T(Call("matrix", (Num(1.0),)))] + flat(q), R_SUM
        if rest:
            c = prod(rest)
            new = [c if ctx.scalar(c) else Call("tr", (c,))] + new
        t.factors = new
        return rule
    if isinstance(d, Call) and d.fn == "vec" and i > 0 and _vec_row(fs[i - 1]) is not None \
            and all(ctx.scalar(f) for f in rest if f is not fs[i - 1]):
        scal = [f for f in rest if f is not fs[i - 1]]
        t.factors = scal + [T(_vec_row(fs[i - 1]))] + flat(d.args[0])
        return R_VEC
    if isinstance(d, Bin) and d.op == "kron" and ctx.column(d.a) and ctx.column(d.b) \
            and has_diff(d.a) != has_diff(d.b):
        if has_diff(d.a):  # kron(du, a) = kron(I, a) du
            k, u = Bin("kron", _eye(ctx, ctx.shape(d.a)[0]), d.b), d.a
        else:  # kron(a, du) = kron(a, I) du
            k, u = Bin("kron", d.a, _eye(ctx, ctx.shape(d.b)[0])), d.b
        t.factors = fs[:i] + [k] + flat(u) + fs[i + 1:]
        return R_KRON
    if isinstance(d, Call) and d.fn == "tril":
        if i != len(fs) - 1:
            t.factors = fs[i + 1:] + fs[:i] + [d]
            return R_ROT
        a = tidy(ctx, T(prod(rest)), push=True) if rest else Call("eye", ())
        t.factors = [T(Call("tril", (a,)))] + flat(d.args[0])
        return R_TRIL
    if isinstance(d, Bin) and d.op in ("/",):
        t.factors = fs[:i] + [Bin("/", Num(1.0), d.b), d.a] + fs[i + 1:]
        return ""
    if isinstance(d, Bin) and d.op == "./":
        fs[i] = had(Bin("./", Num(1.0), d.b), d.a)
        return ""
    if isinstance(d, Bin) and d.op == ".*" and (ctx.scalar(d.a) or ctx.scalar(d.b)):
        fs[i] = mul(d.a, d.b)
        return ""
    if isinstance(d, Bin) and d.op == ".*" or isinstance(d, Call) and d.fn == "diag":
        if ctx.scalar(d):
            fs[i] = d.args[0] if isinstance(d, Call) else mul(d.a, d.b)
            return ""
        if i != len(fs) - 1:
            t.factors = fs[i + 1:] + fs[:i] + [d]
            return R_ROT
        if isinstance(d, Call):
            inner = d.args[0]
            if not rest:
                if not ctx.column(inner):
                    raise DeriveError(f"{_t(d)}: tr(diag(...)) of a matrix is not derived")
                t.factors = [T(Call("vector", (Num(1.0),)))] + flat(inner)
                return R_SUM
            a = tidy(ctx, T(prod(rest)), push=True)
            t.factors = [T(Call("diag", (a,)))] + flat(inner)
            return R_DIAG
        b, c = (d.a, d.b) if has_diff(d.b) else (d.b, d.a)
        a = tidy(ctx, T(prod(rest)), push=True) if rest else Call("eye", ())
        t.factors = [T(had(a, b))] + flat(c)
        return R_HAD
    raise DeriveError(f"{_t(d)}: the trace trick cannot move the differential out of this "
                      f"({type(d).__name__} {getattr(d, 'op', getattr(d, 'fn', ''))}) yet")


def coefficient(ctx: Ctx, t: Term) -> Node:
    """G of a finished term sign*tr(F dX) = tr(G' dX): G = sign * F'."""
    fs = t.factors[:-1]
    if not ctx.scalar(t.factors[-1]) and all(ctx.scalar(f) for f in fs):
        fs = fs + [Call("eye", ())]  # tr(c dX) = tr((c I)' dX): G = c I, not the scalar c
    g = prod(fs) if ctx.scalar(t.factors[-1]) else T(prod(fs))
    return neg(g) if t.sign < 0 else g


# --------------------------------------------------------------------------- Hessian
def jacobian(ctx: Ctx, e: Node, w: str) -> Node:
    """H with e = H dw (e a column or a scalar linear in dw; H has e's rows, w's rows)."""
    terms = [jac_term(ctx, t, w) if s > 0 else neg(jac_term(ctx, t, w)) for s, t in expand(ctx, e)]
    return simplify(ctx, total(terms))


def _flat_keeping_scalars(ctx: Ctx, e: Node) -> list[Node]:
    """The factors of a product, a scalar sub-product holding the differential kept whole:
    q*(dx'*x)*x is [q, dx'*x, x], not [q, dx', x, x] (whose tail x*x does not conform)."""
    out: list[Node] = []
    for side in (e.a, e.b):
        if isinstance(side, Bin) and side.op == "*" and not (has_diff(side) and ctx.scalar(side)):
            out.extend(_flat_keeping_scalars(ctx, side))
        else:
            out.append(side)
    return out


def jac_term(ctx: Ctx, e: Node, w: str) -> Node:  # noqa: C901
    if isinstance(e, Diff):
        return Num(1.0) if ctx.scalar(e) else Call("eye", ())
    if isinstance(e, Neg):
        return neg(jac_term(ctx, e.x, w))
    if isinstance(e, Transpose) and ctx.scalar(e.x):
        return jac_term(ctx, e.x, w)
    if isinstance(e, Call) and e.fn == "tr" and ctx.scalar(e.args[0]):
        return jac_term(ctx, e.args[0], w)
    if isinstance(e, Call) and e.fn == "sum" and ctx.column(e.args[0]):
        return mul(T(Call("vector", (Num(1.0),))), jac_term(ctx, e.args[0], w))
    if isinstance(e, Bin) and e.op == "/":
        return Bin("/", jac_term(ctx, e.a, w), e.b)
    if isinstance(e, Bin) and e.op in (".*", "./"):
        a, b = (e.a, e.b) if has_diff(e.b) else (e.b, e.a)
        if e.op == "./":
            a, b = Bin("./", Num(1.0), e.b), e.a
        j = jac_term(ctx, b, w)
        if ctx.scalar(a) or ctx.scalar(b):
            return mul(a, j)
        return mul(Call("diag", (a,)), j)
    if isinstance(e, Bin) and e.op == "*":
        fs = _flat_keeping_scalars(ctx, e)
        i = _dindex(fs)
        d, left, right = fs[i], fs[:i], fs[i + 1:]
        if all(ctx.scalar(f) for f in right) or right and ctx.scalar(prod(right)):
            return prod(left + right + [jac_term(ctx, d, w)])  # dx*x'*A*x: a scalar after dx
        if ctx.scalar(d):
            return prod(left + right + [jac_term(ctx, d, w)])
        r = prod(right)
        if isinstance(d, Transpose) and ctx.column(r):
            return prod(left + [T(r), jac_term(ctx, d.x, w)])
        if isinstance(d, Call) and d.fn == "diag" and ctx.column(r) and ctx.column(d.args[0]):
            return prod(left + [Call("diag", (r,)), jac_term(ctx, d.args[0], w)])
    raise DeriveError(f"{_t(e)}: this term is not read off as J*d{w} (the read-off of a Jacobian, "
                      f"or of a Hessian's dg = H*d{w}, is not derived for it)")


__all__ = ["Term", "coefficient", "expand", "jacobian", "move", "sub", "wrap", "ZERO"]
