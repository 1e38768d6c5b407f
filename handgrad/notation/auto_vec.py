"""Matrix-by-matrix read-offs, as the notes do them (notes part 1 §7.2-7.3).

Differentiate F, vectorise, and move everything to the left of vec(dX) with

    vec(A dX B) = (B' ⊗ A) vec(dX)      vec(dX') = K vec(dX), K = comm(X)
    vec(A ⊙ dX) = diag(vec(A)) vec(dX)  vec(dX c) = c vec(dX) for a scalar c

so that vec(dF) = J vec(dX): J is the numerator-layout Jacobian d vec(F) / d vec(X)
(pq x mn for F p x q and X m x n, what torch.func.jacrev of the vecs returns), and J'
the notes' denominator-layout dF/dX (mn x pq).  The same read-off gives the Hessian of a
scalar f by a matrix X: vec(dG) = H vec(dX), G the gradient.
"""

from __future__ import annotations

from handgrad.notation.ast import Bin, Call, Diff, Neg, Node, Num, Sym, Transpose
from handgrad.notation.auto_rules import DeriveError
from handgrad.notation.auto_trace import _eye, _t
from handgrad.notation.simplify import Ctx, flat, has_diff, mul, neg, prod, tidy

R_LINEAR = "vec(A + B) = vec(A) + vec(B)"
R_KRON = "vec(AXB) = (B' ⊗ A) vec(X)"
R_COMM = "vec(X') = K vec(X), K = comm(X)"
R_HAD = "vec(A ⊙ X) = diag(vec(A)) vec(X)"
R_SCALAR = "vec(X c) = c vec(X), c a scalar"


def vec_coefficient(ctx: Ctx, e: Node, v: str, rules: list[str]) -> Node:  # noqa: C901 - one case per rule
    """M with vec(e) = M vec(dv): e is one term of a differential, linear in dv."""
    def note(r):
        if r not in rules:
            rules.append(r)

    if isinstance(e, Diff):
        return Call("eye", ())
    if isinstance(e, Neg):
        return neg(vec_coefficient(ctx, e.x, v, rules))
    if isinstance(e, Transpose):
        if isinstance(e.x, Diff):
            if ctx.column(e.x) or ctx.scalar(e.x):
                return Call("eye", ())  # vec(dx') = dx for a vector
            note(R_COMM)
            return Call("comm", (Sym(e.x.name),))
        pushed = tidy(ctx, e, push=True)  # the transpose moved down to the differential
        if pushed == e:
            raise DeriveError(f"{_t(e)}: the transpose cannot be moved to the differential")
        return vec_coefficient(ctx, pushed, v, rules)
    if isinstance(e, Call) and e.fn == "vec":
        return vec_coefficient(ctx, e.args[0], v, rules)
    if isinstance(e, Call) and e.fn == "tr":  # tr(Y) = vec(I)' vec(Y)
        note("tr(Y) = vec(I)' vec(Y)")
        return mul(Transpose(Call("vec", (_eye(ctx, ctx.shape(e.args[0])[0]),))),
                   vec_coefficient(ctx, e.args[0], v, rules))
    if isinstance(e, Call) and e.fn == "sum":
        return mul(Transpose(Call("vector", (Num(1.0),))), vec_coefficient(ctx, e.args[0], v, rules))
    if isinstance(e, Bin) and e.op == "/":
        return Bin("/", vec_coefficient(ctx, e.a, v, rules), e.b)
    if isinstance(e, Bin) and e.op in (".*", "./"):
        d, other = (e.a, e.b) if has_diff(e.a) else (e.b, e.a)
        if e.op == "./":
            if has_diff(e.b):
                raise DeriveError(f"{_t(e)}: a differential in a denominator")
            other = Bin("./", Num(1.0), e.b)
        inner = vec_coefficient(ctx, d, v, rules)
        if ctx.scalar(other):
            note(R_SCALAR)
            return mul(other, inner)
        note(R_HAD)
        return mul(Call("diag", (Call("vec", (other,)),)), inner)
    if isinstance(e, Bin) and e.op == "*":
        fs = flat(e)
        i = next(k for k, f in enumerate(fs) if has_diff(f))
        mid = fs[i]
        scalars = [f for k, f in enumerate(fs) if k != i and ctx.scalar(f)]
        left = [f for f in fs[:i] if not ctx.scalar(f)]
        right = [f for f in fs[i + 1:] if not ctx.scalar(f)]
        inner = vec_coefficient(ctx, mid, v, rules)
        if ctx.scalar(mid):  # L s R with s = m' vec(dv) a scalar: vec(L R) s
            if not (left or right):
                return prod(scalars + [inner])
            note(R_SCALAR)
            return prod(scalars + [Call("vec", (prod(left + right),)), inner])
        if left and not right and (ctx.column(mid) or ctx.scalar(mid)):
            inner = mul(prod(left), inner)  # vec(L dx) = L dx for a column
        elif left or right:
            note(R_KRON)
            rows, cols = ctx.shape(mid)
            L = prod(left) if left else _eye(ctx, rows)
            R = prod(right) if right else _eye(ctx, cols)
            inner = mul(Bin("kron", Transpose(R), L), inner)
        if scalars:
            note(R_SCALAR)
        return prod(scalars + [inner])
    raise DeriveError(f"{_t(e)}: vec of this term is not read off (only products, transposes, "
                      "elementwise products, traces and sums of the differential)")


def vec_jacobian(ctx: Ctx, signed_terms, v: str, rules: list[str]) -> Node | None:
    """J with vec(sum of the terms in dv) = J vec(dv); None when no term has dv."""
    from handgrad.notation.ast import differentials
    from handgrad.notation.simplify import simplify, total

    mine = [vec_coefficient(ctx, t, v, rules) if s > 0 else neg(vec_coefficient(ctx, t, v, rules))
            for s, t in signed_terms if v in differentials(t)]
    return simplify(ctx, total(mine)) if mine else None


__all__ = ["vec_coefficient", "vec_jacobian"]
