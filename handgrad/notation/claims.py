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
    argmin   argmin_w f = W     W minimises f over w: W has w's shape (and its declared
                                properties: spd, sym, positive), torch.func.grad of f at W
                                is 0 to rounding of its terms (|H| |W|, H = torch.func.hessian;
                                for a symmetric w its symmetric part), and the curvature
                                along drawn directions is positive

Declarations are those of a .hg file (``X: m x n invertible; A: n x n sym``), and named
subexpressions as in a .hg ``let``  (``N = one'*one``: evaluated from the declared values,
printed after the claim as "where N = ...").  Sizes that are letters are drawn anew at each
point; ``eye(n)`` is the identity of a stated size.  Values and directions are drawn by handgrad
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

from handgrad.notation.ast import Node
from handgrad.notation.evaluate import Evaluator
from handgrad.notation.parser import NotationError, parse
from handgrad.notation.render import latex_name, to_latex, to_text
from handgrad.notation.sampling import draw_direction, draw_sizes, draw_value
from handgrad.notation.shapes import ShapeChecker, show
from handgrad.notation.textfile import Decl, _parse_shape
from handgrad.notation.tolerance import FLOOR, RTOL, tolerance
from handgrad.notation.tolerance import Trial as _Trial
from handgrad.notation.tolerance import judge as _compare
from handgrad.notation.tolerance import verdict as _verdict

KINDS = ("equal", "d", "grad", "gradT", "hess", "jac", "jacT", "vecjac", "argmin")
POINTS = 3


@dataclass(frozen=True)
class Claim:
    """``lhs``: A (equal), E (d), f (grad, gradT, hess, argmin), y (jac, jacT), F (vecjac);
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


def _is_definition(part: str) -> bool:
    name, colon, _ = part.partition(":")
    return not colon or "=" in name


def declarations(decls: str) -> str:
    """The shape declarations of a claim's ``decls``, without its named subexpressions
    (those are printed after the claim, as "where ...")."""
    return "; ".join(p.strip() for p in decls.split(";") if p.strip() and not _is_definition(p))


class Parsed:
    """A claim's declarations and trees, shapes inferred (or the reason they do not fit)."""

    def __init__(self, claim: Claim):
        self.claim = claim
        self.decls: dict[str, Decl] = {}
        self.defs: dict[str, Node] = {}  # named subexpressions, in the order given
        self.checker = ShapeChecker({})
        self.shape_error = None
        where = f"claim {claim.lhs!r}"
        for part in filter(None, (p.strip() for p in claim.decls.split(";"))):
            name, _, spec = part.partition(":")
            if _is_definition(part):  # N = one'*one: a named subexpression
                name, _, body = part.partition("=")
                name = name.strip()
                self.defs[name] = parse(body.strip(), set(self.decls) | set(self.defs))
                if self.shape_error is None:
                    try:
                        self.checker.env[name] = self.checker.infer(self.defs[name])
                    except NotationError as e:
                        self.shape_error = f"{name} = {to_text(self.defs[name])}: {e}"
                continue
            name = name.strip()
            shape, props = _parse_shape(spec, where, part)
            self.decls[name] = Decl(name, shape, props, part)
            self.checker.env[name] = shape
        names = set(self.decls) | set(self.defs)
        self.lhs = parse(claim.lhs, names)
        self.rhs = parse(claim.rhs, names)
        self.wrt = ([w.strip() for w in claim.wrt.split(",") if w.strip()]
                    or (sorted(self.decls) if claim.kind == "d" else []))
        for w in self.wrt:
            if w not in self.decls:
                raise ValueError(f"{w} is not declared with a shape in {claim.decls!r}")
        if self.shape_error:
            return
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
        if k in ("grad", "argmin"):
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
        if k == "argmin":
            return c.wrt
        return f"the derivative by {c.wrt}"

    # -- printing, from the trees
    def text(self) -> str:
        where = "; ".join(f"{n} = {to_text(e)}" for n, e in self.defs.items())
        return self._text() + (f"   where {where}" if where else "")

    def _text(self) -> str:
        k, v = self.claim.kind, self.claim.wrt
        lhs, rhs = to_text(self.lhs), to_text(self.rhs)
        return {"equal": f"{lhs} = {rhs}",
                "argmin": f"argmin_{v} {lhs} = {rhs}",
                "d": f"d({lhs}) = {rhs}",
                "grad": f"d({lhs})/d{v} = {rhs}",
                "gradT": f"d({lhs})/d{v} = {rhs}   (numerator layout)",
                "hess": f"d2({lhs})/d{v} d{v}' = {rhs}",
                "jac": f"d({lhs})/d{v} = {rhs}   (numerator layout)",
                "jacT": f"d({lhs})/d{v} = {rhs}   (denominator layout)",
                "vecjac": f"F = {lhs}:  dF/d{v} = {rhs}"}[k]

    def latex(self) -> str:
        where = ",\\ ".join(f"{latex_name(n)} = {to_latex(e)}" for n, e in self.defs.items())
        return self._latex() + (f",\\quad \\text{{where }} {where}" if where else "")

    def _latex(self) -> str:
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
        if k == "argmin":
            return f"\\operatorname*{{arg\\,min}}_{{{v}}} \\left({lhs}\\right) = {rhs}"
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
        return Evaluator(p.checker, values, diffs, p.defs, sizes)

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


def _outside(decl: Decl, w: torch.Tensor) -> str | None:
    """Why w is not a value the declaration admits (spd, sym, positive), or None."""
    p, big = decl.props, float(w.abs().max())
    if ("sym" in p or "spd" in p) and float((w - w.mT).abs().max()) > FLOOR * big:
        return "is not symmetric"
    if "spd" in p:
        ev = torch.linalg.eigvalsh((w + w.mT) / 2)
        if float(ev[0]) <= FLOOR * float(ev[-1].abs()):  # singular to rounding counts as not definite
            return f"is not positive definite (eigenvalues {float(ev[0]):.3g} to {float(ev[-1]):.3g})"
    if "positive" in p and not bool((w > 0).all()):
        return "has an entry that is not positive"
    return None


def _argmin_trials(p: Parsed, vals, sizes, dgen, k: int) -> list[_Trial]:
    """argmin_w f = W at one point: W admissible, grad f(W) = 0 to rounding of its terms
    (|H| |vec W|), and positive curvature along two drawn directions."""
    v = p.wrt[0]
    decl = p.decls[v]
    W = Evaluator(p.checker, vals, None, p.defs, sizes).value(p.rhs)
    if not bool(torch.isfinite(W).all()):
        return [_Trial("error", reason=f"the claimed minimiser is not finite (nan/inf) at point {k}",
                       point=k)]
    why = _outside(decl, W)
    if why:
        return [_Trial("fail", float("inf"), 0.0, f"at point {k} the claimed minimiser {why}, but {v} is "
                       f"declared {' '.join(sorted(decl.props))}", k)]

    def f(t):
        at = {**vals, v: _unvec(t, W.shape)}
        return Evaluator(p.checker, at, None, p.defs, sizes).value(p.lhs).reshape(())
    w = _vec(W)
    g, H = torch.func.grad(f)(w), torch.func.hessian(f)(w)
    if "sym" in decl.props or "spd" in decl.props:  # a symmetric w: only the symmetric part must vanish
        G = _unvec(g, W.shape)
        g = _vec((G + G.mT) / 2)
    if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(H).all())):
        return [_Trial("error", reason=f"the gradient or Hessian at the claimed minimiser is not finite at "
                                       f"point {k}", point=k)]
    scale = H.abs() @ w.abs()
    tol = tolerance(scale)
    j = int((g.abs() / tol.clamp_min(1e-300)).argmax())
    if float(scale.max()) == 0.0:
        trials = [_Trial("inconclusive", float(g.abs().max()), 0.0,
                         f"at point {k} the gradient's terms vanish at the claimed minimiser", k)]
    elif bool((g.abs() > tol).any()):
        return [_Trial("fail", float(g[j].abs()), float(tol[j]),
                       f"at point {k} the gradient at the claimed minimiser is {float(g[j]):.6g} "
                       f"(entry {j} of "
                       f"vec({v})), not 0 (its terms are {float(scale[j]):.3g})", k)]
    else:
        trials = [_Trial("pass", float(g[j].abs()), float(tol[j]), None, k)]
    for _ in range(2):
        dw = _vec(draw_direction(decl, W, dgen))
        curv, size = float(dw @ H @ dw), float(dw.abs() @ H.abs() @ dw.abs())
        if size == 0.0:
            trials.append(_Trial("inconclusive", 0.0, 0.0, f"at point {k} the curvature is 0 along a drawn "
                                 "direction: a minimum cannot be told", k))
        elif curv <= RTOL * size:
            trials.append(_Trial("fail", -curv, RTOL * size,
                                 f"at point {k} the curvature along a drawn direction is {curv:.3g}: not a "
                                 "minimum (a maximum or a saddle)", k))
    return trials


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
        vals = {n: draw_value(d, sizes, gen, negative_det=k % 2 == 1) for n, d in p.decls.items()}
        try:
            if claim.kind == "argmin":
                trials += _argmin_trials(p, vals, sizes, dgen, k)
                continue
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
