"""One-line claims in the notation: the identity catalog's and the errata's formulas.

A claim is a formula the notes state, parsed once, so the text and LaTeX a reader sees
are printed from the trees that are evaluated:

    equal    A = B              both sides at drawn values
    d        d(E) = D           D (dX for each variable X) against torch.func.jvp of E
    grad     d(f)/dX = G        G against torch.func.grad of the scalar f (denominator: X's shape)
    gradT    the same in the numerator layout: G^T
    hess     d2(f)/dx dx' = H   H against torch.func.hessian of f (over column-major vec(x))
    jac      d(y)/dx = J        J against torch.func.jacrev of vec(y) by vec(x) (numerator: m x n)
    jacT     the same in the denominator layout: J^T (n x m)
    vecjac   dF/dX = M          the notes' matrix-by-matrix derivative, denominator via vec:
                                vec(dF) = M^T vec(dX), M is mn x pq (X m x n, F p x q)

Declarations are those of a .hg file (``X: m x n invertible; A: n x n sym``); sizes that
are letters are drawn anew at each point.  Values and directions are drawn by handgrad
(handgrad.notation.sampling: generic, from a stream no user code shares) and compared by
the one verifier's rule (handgrad.notation.verify: the tolerance scaled to the terms'
size, "inconclusive" at rounding level, at least two conclusive points for "verified").
A claim whose sides do not conform, or whose two sides differ in shape, fails with the
dimension analysis as its reason, before any number.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from handgrad.notation.evaluate import Evaluator
from handgrad.notation.parser import NotationError, parse
from handgrad.notation.render import latex_name, to_latex, to_text
from handgrad.notation.sampling import draw_direction, draw_sizes, draw_value
from handgrad.notation.shapes import ShapeChecker, show
from handgrad.notation.textfile import Decl, _parse_shape
from handgrad.notation.verify import _compare, _Trial, _verdict

KINDS = ("equal", "d", "grad", "gradT", "hess", "jac", "jacT", "vecjac")
POINTS = 3


@dataclass(frozen=True)
class Claim:
    """``lhs``: A (equal), E (d), f (grad, gradT, hess), y (jac, jacT), F (vecjac);
    ``rhs``: the claimed value; ``wrt``: the variable (d: the variables, default all)."""

    decls: str
    kind: str
    lhs: str
    rhs: str
    wrt: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"claim kind {self.kind!r}; the kinds are {', '.join(KINDS)}")
        if self.kind not in ("equal", "d") and len([w for w in self.wrt.split(",") if w.strip()]) != 1:
            raise ValueError(f"a {self.kind} claim is by one variable: give wrt")


class Parsed:
    """A claim's declarations and trees, shapes inferred (or the reason they do not fit)."""

    def __init__(self, claim: Claim):
        self.claim = claim
        self.decls: dict[str, Decl] = {}
        for part in filter(None, (p.strip() for p in claim.decls.split(";"))):
            name, _, spec = part.partition(":")
            name = name.strip()
            shape, props = _parse_shape(spec, f"claim {claim.lhs!r}", part)
            self.decls[name] = Decl(name, shape, props, part)
        names = set(self.decls)
        self.lhs = parse(claim.lhs, names)
        self.rhs = parse(claim.rhs, names)
        self.wrt = ([w.strip() for w in claim.wrt.split(",") if w.strip()]
                    or (sorted(names) if claim.kind == "d" else []))
        self.checker = ShapeChecker({n: d.shape for n, d in self.decls.items()})
        self.shape_error = None
        try:
            ls, rs = self.checker.infer(self.lhs), self.checker.infer(self.rhs)
        except NotationError as e:
            self.shape_error = str(e)
            return
        want = self._want(ls)
        if want is not None and not all(self.checker.unify(a, b) for a, b in zip(want, rs)):
            self.shape_error = (f"{to_text(self.rhs)} is {show(self.checker.resolve(rs))}, but "
                                f"{self.what()} is {show(self.checker.resolve(want))}")

    def _want(self, ls):
        k = self.claim.kind
        if k in ("equal", "d"):
            return ls
        if k in ("grad",):
            return self.decls[self.wrt[0]].shape
        if k == "gradT":
            s = self.decls[self.wrt[0]].shape
            return (s[1], s[0])
        return None  # hess, jac, jacT, vecjac: sizes are products, checked numerically

    def what(self) -> str:
        k, c = self.claim.kind, self.claim
        if k == "equal":
            return to_text(self.lhs)
        if k == "d":
            return f"d({to_text(self.lhs)})"
        return f"the derivative by {c.wrt}"

    # -- printing, from the trees
    def text(self) -> str:
        k, v = self.claim.kind, self.claim.wrt
        lhs, rhs = to_text(self.lhs), to_text(self.rhs)
        return {"equal": f"{lhs} = {rhs}",
                "d": f"d({lhs}) = {rhs}",
                "grad": f"d({lhs})/d{v} = {rhs}",
                "gradT": f"d({lhs})/d{v} = {rhs}   (numerator layout)",
                "hess": f"d2({lhs})/d{v} d{v}' = {rhs}",
                "jac": f"d({lhs})/d{v} = {rhs}   (numerator layout)",
                "jacT": f"d({lhs})/d{v} = {rhs}   (denominator layout)",
                "vecjac": f"F = {lhs}:  dF/d{v} = {rhs}"}[k]

    def latex(self) -> str:
        k = self.claim.kind
        lhs, rhs = to_latex(self.lhs), to_latex(self.rhs)
        v = latex_name(self.claim.wrt) if self.claim.wrt else ""
        if k == "equal":
            return f"{lhs} = {rhs}"
        if k == "d":
            return f"d\\left({lhs}\\right) = {rhs}"
        if k == "hess":
            return f"\\frac{{\\partial^2 \\left({lhs}\\right)}}{{\\partial {v}\\,\\partial {v}^T}} = {rhs}"
        if k == "vecjac":
            return f"F = {lhs}:\\ \\frac{{\\partial F}}{{\\partial {v}}} = {rhs}"
        tag = {"gradT": "\\ \\text{(numerator)}", "jac": "\\ \\text{(numerator)}",
               "jacT": "\\ \\text{(denominator)}"}.get(k, "")
        return f"\\frac{{\\partial \\left({lhs}\\right)}}{{\\partial {v}}} = {rhs}{tag}"


def _vec(x: torch.Tensor) -> torch.Tensor:
    return x.mT.reshape(-1)


def _unvec(v: torch.Tensor, shape) -> torch.Tensor:
    return v.reshape(shape[1], shape[0]).mT


def _truth_and_claim(p: Parsed, vals, sizes, dgen):
    """(claimed, truth, scale) at one point."""
    c = p.claim

    def ev(values, diffs=None):
        return Evaluator(p.checker, values, diffs, {}, sizes)

    def value_with(node, **subst):
        return ev({**vals, **subst}).value(node)

    if c.kind == "equal":
        e = ev(vals)
        return e.value(p.rhs), e.value(p.lhs), e.magnitude(p.rhs) + e.magnitude(p.lhs)
    if c.kind == "d":
        dirs = {w: draw_direction(p.decls[w], vals[w], dgen) for w in p.wrt}
        e = ev(vals, dirs)

        def fn(*xs):
            return value_with(p.lhs, **dict(zip(p.wrt, xs)))
        truth = torch.func.jvp(fn, tuple(vals[w] for w in p.wrt), tuple(dirs[w] for w in p.wrt))[1]
        return e.value(p.rhs), truth, e.magnitude(p.rhs) + e.tangent_magnitude(p.lhs)
    v = p.wrt[0]
    x = vals[v]
    e = ev(vals)
    claim, mag = e.value(p.rhs), e.magnitude(p.rhs)
    if c.kind in ("grad", "gradT"):
        truth = torch.func.grad(lambda t: value_with(p.lhs, **{v: t}).reshape(()))(x)
        return (claim, truth, mag) if c.kind == "grad" else (claim, truth.mT, mag)
    if c.kind == "hess":
        h = torch.func.hessian(lambda t: value_with(p.lhs, **{v: _unvec(t, x.shape)}).reshape(()))(_vec(x))
        return claim, h, mag
    J = torch.func.jacrev(lambda t: _vec(value_with(p.lhs, **{v: _unvec(t, x.shape)})))(_vec(x))
    return (claim, J, mag) if c.kind == "jac" else (claim, J.mT, mag)


def check(claim: Claim, *, points: int = POINTS, seed: int | None = None) -> dict:
    """The claim's verdict (verified / failed / inconclusive / error), with the worst
    residual and its tolerance, the reason it failed, and its text and LaTeX."""
    p = Parsed(claim)
    out = {"text": p.text(), "latex": p.latex(), "kind": claim.kind, "decls": claim.decls}
    if p.shape_error:
        return {**out, "verdict": "failed", "residual": float("inf"), "tol": 0.0,
                "reason": f"the shapes do not fit: {p.shape_error}"}
    base = zlib.crc32(f"{claim.decls}|{claim.lhs}|{claim.rhs}".encode()) if seed is None else seed
    gen = torch.Generator().manual_seed(0x636C61696D + base)  # "claim": values and sizes
    dgen = torch.Generator().manual_seed(0x64636C61 + base)  # directions: a stream of their own
    letters = sorted({ch for d in p.decls.values() for dim in d.shape for ch in dim.letters})
    trials: list[_Trial] = []
    for k in range(points):
        sizes = draw_sizes(letters, gen)
        vals = {n: draw_value(d, sizes, gen) for n, d in p.decls.items()}
        try:
            got, truth, scale = _truth_and_claim(p, vals, sizes, dgen)
        except (RuntimeError, ValueError, NotationError, IndexError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            trials.append(_Trial("error", reason=f"evaluation error at point {k}: {msg}", point=k))
            continue
        if got.shape != truth.shape:  # no reshape: a transposed layout must not pass by size
            trials.append(_Trial("fail", float("inf"), 0.0,
                                 f"at point {k}: the claim is {tuple(got.shape)}, the derivative "
                                 f"{tuple(truth.shape)}", k))
            continue
        trials.append(_compare(got, truth, scale.reshape(got.shape).abs() if scale.numel() == got.numel()
                               else scale.abs().max() * torch.ones_like(got), k))
    verdict, worst = _verdict(trials)
    return {**out, "verdict": verdict, "residual": worst.residual if worst else 0.0,
            "tol": worst.tol if worst else 0.0,
            "reason": (worst.reason or "") if verdict != "verified" and worst else ""}
