"""The verifier: every line of a derivation against torch.func, at points handgrad draws.

For each point (3 drawn from the declarations, sizes redrawn each time; or each point a
caller gives plus 2 random perturbations of its variables) and each of 2 directions
from an independent stream:

* a value line ``= E`` is compared with f;
* a ``df`` line with torch.func.jvp of f along the directions, and checked to be linear
  in the differentials (E(2 dX) = 2 E(dX), E(dX1 + dX2) = E(dX1) + E(dX2));
* a ``d2f`` line with the second directional derivative of f along the same directions
  (d2 of a variable is 0), the jvp of f's Jacobian contracted with them (forward over
  reverse: torch's jvp of a jvp is wrong for det, logdet and solve), and checked to be
  quadratic (E(2 dX) = 4 E(dX));
* a read-off ``grad X = G`` for its shape (denominator layout: X's shape) and entry by
  entry against torch.func.grad; ``hess X = H`` entry by entry against
  torch.func.hessian over the column-major vec(X).

A drawn point where f is not defined (an argument of inv or logdet in f with condition
number above SINGULAR, such as X'*X for m < n, or a non-finite f, such as a log of a
negative) is replaced by another draw (other sizes, other values), up to TRIES draws per
point; the report groups the replaced draws by reason with the declaration that would help
(``checked_at.redrawn``).  With no defined draw, the lines are an error saying so, never
failed.  A given point's perturbation that leaves f's domain is redrawn closer.

Tolerance, entry by entry, by the one rule (handgrad.notation.tolerance): |claim - truth|
<= RTOL * (|terms of the claim| + |terms of the truth| + |truth|) + FLOOR * (largest of
those), where "|terms|" is the sum of the absolute values of what floating point adds up
(Evaluator.magnitude and tangent_magnitude), never max(1, |truth|).  A trial whose truth
is below INCONCLUSIVE times that scale (rounding level, or too small to tell a factor 2 or
a sign) is inconclusive.  A line is verified when no trial fails and trials at 2 or more
points were conclusive; otherwise inconclusive.  A line that is NaN/inf where f is finite
fails; a torch error while evaluating a line is an evaluation error, not a wrong line.
"""

from __future__ import annotations

import torch

from handgrad.notation.evaluate import Evaluator, as_matrix
from handgrad.notation.operators import TABLE
from handgrad.notation.parser import NotationError
from handgrad.notation.render import to_latex, to_mathml, to_text
from handgrad.notation.sampling import (
    DIRECTION_SEED,
    INPUT_SEED,
    PERTURB_SEED,
    draw_direction,
    draw_sizes,
    draw_value,
    perturb,
)
from handgrad.notation.textfile import Derivation, Line, parse_text
from handgrad.notation.tolerance import INCONCLUSIVE, RTOL, Trial, judge, verdict

READOFFS = ("grad", "hess", "jac", "jacT")
LAYOUT = ("denominator layout: df = tr(G^T dX) gives grad X = G, with X's shape (what autograd "
          "returns); hess X is over vec(X), column-major as in vec(AXB) = (B^T ⊗ A) vec(X)")
_Trial, _compare, _verdict = Trial, judge, verdict  # the names claims.py and older callers use


SINGULAR = 1e10  # an inverse or logdet argument with a larger condition number: f is not defined there
TRIES = 8  # draws per point asked for, before saying no draw is defined


def _inverted(d: Derivation):
    """Every argument of inv, logdet or X^-1 in f and the lets: where one is singular, f is
    not defined (a line's own inverse of a singular matrix is that line's error)."""
    from handgrad.notation.ast import Call, Diff, walk
    from handgrad.notation.operators import inverse_of as _is_inverse

    seen = []
    for root in [d.f, *d.defs.values()]:
        for node in walk(root):
            arg = _is_inverse(node)
            if arg is None and isinstance(node, Call) and TABLE[node.fn].needs_inverse:
                arg = node.args[0]
            if arg is not None and arg not in seen and not any(isinstance(n, Diff) for n in walk(arg)):
                seen.append(arg)
    return seen


def _singular_hint(d: Derivation, arg) -> str:
    from handgrad.notation.ast import Bin, Sym, Transpose

    if isinstance(arg, Sym) and arg.name in d.decls:
        return f"declare {arg.name} spd or invertible"
    if isinstance(arg, Bin) and arg.op == "*":
        a, b = arg.a, arg.b
        if isinstance(a, Transpose) and isinstance(a.x, Sym) and a.x == b and b.name in d.decls:
            r, c = d.decls[b.name].shape
            return f"{r} >= {c} is needed for {to_text(arg)} to be invertible"
        if isinstance(b, Transpose) and isinstance(b.x, Sym) and b.x == a and a.name in d.decls:
            r, c = d.decls[a.name].shape
            return f"{c} >= {r} is needed for {to_text(arg)} to be invertible"
    return ""


def _log_hint(d: Derivation, ev) -> str:
    """Why f is not finite: the first log or sqrt of a value that is not positive, and the
    declaration that would help."""
    from handgrad.notation.ast import Call, Sym, walk

    for root in [d.f, *d.defs.values()]:
        for node in walk(root):
            if not (isinstance(node, Call) and TABLE[node.fn].domain == "positive" and node.args):
                continue
            arg = node.args[0]
            try:
                v = ev.value(arg)
            except (RuntimeError, ValueError, NotationError, IndexError):
                continue
            if bool((v > 0).all()):
                continue
            if isinstance(arg, Call) and arg.fn == "det" and isinstance(arg.args[0], Sym):
                x = arg.args[0].name
                return (f"{node.fn}(det({x})) needs det {x} > 0: declare {x} spd, or write "
                        f"logdet({x}) for log|det {x}|")
            if isinstance(arg, Sym) and arg.name in d.decls:
                return f"{node.fn}({arg.name}) needs {arg.name} > 0: declare {arg.name} positive"
            return f"{to_text(arg)} is not positive there"
    return ""


def undefined(d: Derivation, vals, sizes) -> tuple[str, str] | None:
    """(why f is not defined at the point, the declaration that would help), or None."""
    ev = Evaluator(d.checker, vals, None, d.defs, sizes)
    try:
        fval = ev.value(d.f)
    except (RuntimeError, ValueError, NotationError, IndexError) as e:
        return f"evaluating {d.fname} failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}", ""
    for arg in _inverted(d):
        try:
            a = ev.value(arg)
        except (RuntimeError, ValueError, NotationError, IndexError):
            continue
        if a.dim() == 2 and a.shape[0] == a.shape[1]:
            cond = float(torch.linalg.cond(a))
            if not cond < SINGULAR:
                return (f"{to_text(arg)} is singular (condition number above {SINGULAR:.0e})",
                        _singular_hint(d, arg))
    if not bool(torch.isfinite(fval).all()):
        return f"{d.fname} is not finite (nan/inf)", _log_hint(d, ev)
    return None


def _say(bad: list) -> list[str]:
    """The replaced draws, one line per reason: how many, at which sizes, why, what helps."""
    groups: dict[tuple[str, str], list] = {}
    for sizes, why, hint in bad:
        groups.setdefault((why, hint), []).append(sizes)
    out = []
    for (why, hint), all_sizes in groups.items():
        shown = list(dict.fromkeys("; ".join(f"{k} = {v}" for k, v in z.items()) or "fixed sizes"
                                   for z in all_sizes))
        where = ", ".join(f"({x})" for x in shown[:4]) + (", ..." if len(shown) > 4 else "")
        n = len(all_sizes)
        out.append(f"{n} draw{'s' if n != 1 else ''} at {where}: {why}" + (f" ({hint})" if hint else ""))
    return out


def _draw_points(d: Derivation, points: int, gen: torch.Generator):
    """``points`` points where f is defined; a draw where it is not (a singular X'X, a log of
    a negative) is replaced by another (other sizes, other values), and said.  Invertible
    matrices alternate the sign of their determinant from draw to draw."""
    out, seen, redrawn, hints = [], [], [], []
    for attempt in range(TRIES * points):
        if len(out) == points:
            break
        sizes = draw_sizes(d.letters, gen)
        for _ in range(20):  # sizes differ from point to point (a size-specific slip shows)
            if sizes not in seen:
                break
            sizes = draw_sizes(d.letters, gen)
        seen.append(sizes)
        vals = {n: draw_value(dc, sizes, gen, negative_det=attempt % 2 == 1) for n, dc in d.decls.items()}
        bad = undefined(d, vals, sizes)
        if bad is None:
            out.append(("drawn", sizes, vals))
            continue
        redrawn.append((sizes, *bad))
        if bad[1] and bad[1] not in hints:
            hints.append(bad[1])
    return out, _say(redrawn), hints


def _points(d: Derivation, inputs, points: int, perturbations: int, seed: int | None):
    gen = torch.Generator().manual_seed(INPUT_SEED if seed is None else seed)
    if inputs is None:
        return _draw_points(d, points, gen)
    pgen = torch.Generator().manual_seed(PERTURB_SEED if seed is None else seed + 1)
    out, redrawn = [], []
    for k, given in enumerate(inputs):
        missing = [n for n in d.decls if n not in given]
        if missing:
            raise NotationError(f"inputs[{k}] lacks {', '.join(missing)}")
        vals = {n: as_matrix(given[n]) for n in d.decls}
        sizes: dict[str, int] = {}
        for n, dc in d.decls.items():
            for dim, actual in zip(dc.shape, vals[n].shape):
                want = dim.coef
                if len(dim.letters) == 1 and dim.coef == 1:
                    want = sizes.setdefault(dim.letters[0], actual)
                if want != actual:
                    raise NotationError(f"inputs[{k}]: {n} is {tuple(vals[n].shape)}, which does not fit "
                                        f"its declaration ({dc.source})")
        out.append((f"given {k}", sizes, vals))
        for j in range(perturbations):
            for attempt in range(4):  # a move that leaves f's domain is redrawn closer
                moved = dict(vals)
                for v in d.wrt:
                    moved[v] = perturb(d.decls[v], vals[v], pgen, 0.5 ** attempt)
                bad = undefined(d, moved, sizes)
                if bad is None:
                    out.append((f"perturbed {j + 1} from given {k}", sizes, moved))
                    break
                redrawn.append(f"perturbation {j + 1} of given {k}: {bad[0]}"
                               + (" (redrawn closer)" if attempt < 3 else " (not used)"))
    return out, redrawn, []


def _project(props, x, g, mag):
    """Gradient and its scale restricted to the set the variable lives in (see conventions)."""
    if "lower" in props:
        return torch.tril(g), torch.tril(mag)
    if "diagonal" in props:
        eye = torch.eye(g.shape[0], dtype=g.dtype)
        return g * eye, mag * eye
    if "sym" in props or "spd" in props:
        return (g + g.mT) / 2, (mag + mag.mT) / 2
    if "orthogonal" in props:
        a = x.mT @ g
        return x @ (a - a.mT) / 2, x.abs() @ (x.abs().mT @ mag + mag.mT @ x.abs()) / 2
    return g, mag


def _conventions(d: Derivation) -> list[str]:
    out = [LAYOUT]
    if any(ln.kind in ("jac", "jacT") for ln in d.lines):
        out.append("jac x is the Jacobian in the numerator layout, vec(df) = J vec(dx): one row per entry of "
                   f"{d.fname}, one column per entry of x (as torch.func.jacrev); jacT x is J^T, the "
                   "denominator "
                   "layout")
    for v in d.wrt:
        p = d.decls[v].props
        if p & {"sym", "spd"}:
            out.append(f"{v} is symmetric: its directions are symmetric, so df = tr(G^T dX) fixes only the "
                       f"symmetric part of G; grad {v} is compared as (G + G^T)/2 with (∇ + ∇^T)/2, "
                       f"∇ the unconstrained gradient (the gradient on symmetric matrices)")
        if "diagonal" in p:
            out.append(f"{v} is diagonal: directions are diagonal; grad {v} is compared on its diagonal only")
        if "lower" in p:
            out.append(f"{v} is lower triangular: directions are lower triangular; grad {v} is compared on "
                       f"its lower triangle (the entries above the diagonal are not variables)")
        if "orthogonal" in p:
            out.append(f"{v} is orthogonal: directions are {v} K with K skew; grad {v} is compared after "
                       f"projecting onto that tangent space, {v} skew({v}^T G)")
    return out


def verify(derivation, inputs=None, *, points: int = 3, directions: int = 2, perturbations: int = 2,
           seed: int | None = None) -> dict:
    """Check every line of a derivation; returns a JSON-ready report (see the module docstring).

    ``derivation``: the text of a .hg file or a parsed Derivation.  ``inputs``: optional
    list of {name: tensor} points (constants and variables); each is checked and so are
    ``perturbations`` random generic perturbations of its variables.
    """
    d = derivation if isinstance(derivation, Derivation) else parse_text(derivation)
    pts, redrawn, hints = _points(d, inputs, points, perturbations, seed)
    dgen = torch.Generator().manual_seed(DIRECTION_SEED if seed is None else seed + 2)
    trials: dict[int, list[_Trial]] = {i: [] for i in range(len(d.lines))}
    f_errors: list[str] = []
    if not pts:
        f_errors.append(f"no draw where {d.fname} is defined in {TRIES * points} tries: "
                        + (redrawn[0] if redrawn else "no point"))
    for k, (_, sizes, vals) in enumerate(pts):
        _check_point(d, k, sizes, vals, dgen, directions, trials, f_errors)
    rep = _report(d, pts, trials, f_errors, directions)
    rep["checked_at"]["redrawn"] = redrawn
    rep["checked_at"]["hints"] = hints
    rep["checked_at"]["no_defined_draw"] = not pts
    return rep


def _check_point(d, k, sizes, vals, dgen, ndir, trials, f_errors):
    checker, defs, wrt = d.checker, d.defs, d.wrt

    def ev(values=vals, diffs=None):
        return Evaluator(checker, values, diffs, defs, sizes)

    def fun(*vs):
        return ev({**vals, **dict(zip(wrt, vs))}).value(d.f)

    primals = tuple(vals[v] for v in wrt)
    try:
        fval = ev().value(d.f)
    except (RuntimeError, ValueError, NotationError) as e:
        f_errors.append(f"point {k}: evaluating {d.fname} failed: {e}")
        return
    if not bool(torch.isfinite(fval).all()):
        f_errors.append(f"{d.fname} is not finite (nan/inf) at point {k}")
        return
    dirs = [{v: draw_direction(d.decls[v], vals[v], dgen) for v in wrt} for _ in range(max(ndir, 2))]
    need2 = any(line.kind == "d2f" for line in d.lines)
    truth, truth2, tmag = [], [], []
    for dd in dirs:
        tangents = tuple(dd[v] for v in wrt)
        truth.append(torch.func.jvp(fun, primals, tangents)[1])
        tmag.append(ev(diffs=dd).tangent_magnitude(d.f))
        if need2:
            truth2.append(_second_directional(fun, primals, tangents))
    for i, line in enumerate(d.lines):
        if line.shape_error:
            continue
        try:
            trials[i].extend(_check_line(d, line, k, vals, ev, fun, fval, dirs, truth, truth2, tmag))
        except (RuntimeError, ValueError, NotationError, IndexError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            trials[i].append(_Trial("error", reason=f"evaluation error at point {k}: {msg}", point=k))


def _second_directional(fun, primals, tangents):
    """d^2/dt^2 f(x + t d) at t = 0, f's shape: the jvp of the Jacobian (forward over
    reverse, as torch.func.hessian), contracted with d.  Not the jvp of the jvp: torch's
    forward-mode rules for det, slogdet and solve are not themselves differentiable, so
    differentiating them again drops the d(A^-1) term (d2 log|X| comes out 0, a solve's
    second derivative half; pytorch/pytorch#192540, #196695-#196697)."""
    argnums = tuple(range(len(primals)))
    _, djac = torch.func.jvp(lambda *p: torch.func.jacrev(fun, argnums=argnums)(*p), primals, tangents)
    return sum(torch.tensordot(dj, t, dims=t.dim()) for dj, t in zip(djac, tangents))


def _check_line(d, line: Line, k, vals, ev, fun, fval, dirs, truth, truth2, tmag):
    e = line.expr
    if line.kind == "value":
        base = ev()
        return [_compare(base.value(e), fval, base.magnitude(e) + base.magnitude(d.f), k)]
    if line.kind in ("df", "d2f", "vecdf"):
        out = _homogeneity(line, ev, dirs, k)  # first: "not linear" says more than a mismatch
        ref = truth if line.kind != "d2f" else truth2
        for dd, t, tm in zip(dirs, ref, tmag):
            x = ev(diffs=dd)
            if line.kind == "vecdf":  # the column-major vec of df, as the notes' vec
                t, tm = t.mT.reshape(-1, 1), tm.mT.reshape(-1, 1)
            scale = x.magnitude(e) + (tm if line.kind != "d2f" else 0)
            out.append(_compare(x.value(e), t, scale, k))
        return out
    v = line.wrt
    idx = d.wrt.index(v)
    x = ev()
    claim, mag = x.value(e), x.magnitude(e)
    want = vals[v].shape
    if line.kind == "grad":
        if claim.shape != want:
            return [_Trial("fail", reason=f"{line.lhs} has shape {tuple(claim.shape)} at point {k}, "
                                           f"{v} has {tuple(want)}", point=k)]

        def fv(t):
            p = [vals[w] for w in d.wrt]
            p[idx] = t
            return fun(*p).reshape(())

        g = torch.func.grad(fv)(vals[v])
        pc, pm = _project(d.decls[v].props, vals[v], claim, mag)
        pg, _ = _project(d.decls[v].props, vals[v], g, g.abs())
        scale = pm + _grad_scale(d, ev, v, vals)
        return [_compare(pc, pg, scale, k, "")]
    if line.kind in ("jac", "jacT"):
        fshape = fval.shape
        want_j = (fval.numel(), vals[v].numel())
        if line.kind == "jacT":
            want_j = want_j[::-1]
        if claim.shape != want_j:
            return [_Trial("fail", reason=f"{line.lhs} has shape {tuple(claim.shape)} at point {k}, the "
                                           f"Jacobian "
                                           f"({'numerator' if line.kind == 'jac' else 'denominator'} "
                                           f"layout) is {want_j}", point=k)]
        r, c = vals[v].shape

        def fvec(t):  # column-major vec in, column-major vec out, as the notes' vec
            p = [vals[w] for w in d.wrt]
            p[idx] = t.reshape(c, r).mT
            return fun(*p).reshape(fshape).mT.reshape(-1)

        J = torch.func.jacrev(fvec)(vals[v].mT.reshape(-1))
        return [_compare(claim, J if line.kind == "jac" else J.mT, mag, k)]
    n = vals[v].numel()
    if claim.shape != (n, n):
        return [_Trial("fail", reason=f"{line.lhs} has shape {tuple(claim.shape)} at point {k}, the "
                                       f"Hessian over vec({v}) is {(n, n)}", point=k)]

    def fv2(t):
        p = [vals[w] for w in d.wrt]
        p[idx] = t
        return fun(*p).reshape(())

    h = torch.func.hessian(fv2)(vals[v])  # (r, c, r, c), row-major
    r, c = vals[v].shape
    h = h.permute(1, 0, 3, 2).reshape(n, n)  # column-major vec, as the notes
    return [_compare(claim, h, mag, k)]


def _grad_scale(d, ev, v, vals):
    """A per-entry scale for the gradient's terms: tangent magnitude along all-ones."""
    ones = {w: torch.zeros_like(vals[w]) for w in d.wrt}
    ones[v] = torch.ones_like(vals[v])
    s = ev(diffs=ones).tangent_magnitude(d.f)
    return s.sum() / vals[v].numel() * torch.ones_like(vals[v])


def _homogeneity(line, ev, dirs, k):
    """df lines are linear in the differentials, d2f lines quadratic."""
    e = line.expr
    d1, d2 = dirs[0], dirs[1]
    deg = 2 if line.kind == "d2f" else 1
    x1, x2 = ev(diffs=d1), ev(diffs=d2)
    xs = ev(diffs={v: 2 * d1[v] for v in d1})
    out = []
    lhs, rhs = xs.value(e), (2 ** deg) * x1.value(e)
    scale = xs.magnitude(e) + (2 ** deg) * x1.magnitude(e)
    t = _compare(lhs, rhs, scale, k, f"not {'linear' if deg == 1 else 'quadratic'} in the differentials ",
                 ("E(2 d)", f"{2 ** deg} E(d)"))
    out.append(t if t.status == "fail" else _Trial("pass", point=None))
    if deg == 1:
        x12 = ev(diffs={v: d1[v] + d2[v] for v in d1})
        lhs, rhs = x12.value(e), x1.value(e) + x2.value(e)
        scale = x12.magnitude(e) + x1.magnitude(e) + x2.magnitude(e)
        t = _compare(lhs, rhs, scale, k, "not linear in the differentials ", ("E(d1 + d2)", "E(d1) + E(d2)"))
        out.append(t if t.status == "fail" else _Trial("pass", point=None))
    return [t for t in out if t.status != "pass"]


def _line_dict(i, line: Line, trials, f_errors, fname: str = "f") -> dict:
    if line.shape_error:
        verdict, reason, res, tol = "failed", line.shape_error, None, None
    elif f_errors:
        verdict, reason, res, tol = "error", f_errors[0], None, None
    else:
        verdict, t = _verdict(trials)
        reason = t.reason if t else "no trial"
        res, tol = (t.residual, t.tol) if t else (None, None)
        if verdict == "verified":
            reason = None
        if verdict == "error":
            res = tol = None
    return {"index": i + 1, "kind": line.kind, "lhs": line.lhs, "text": to_text(line.expr),
            "latex": _lhs_latex(line, fname) + " = " + to_latex(line.expr), "mathml": to_mathml(line.expr),
            "rule": line.rule, "verdict": verdict, "residual": res, "tol": tol, "reason": reason,
            "source": line.source, "written": line.text}


def _lhs_latex(line: Line, fname: str = "f") -> str:
    from handgrad.notation.render import latex_name
    f = latex_name(fname)
    if line.kind == "grad":
        return f"\\frac{{\\partial {f}}}{{\\partial {latex_name(line.wrt)}}}"
    if line.kind == "hess":
        return f"\\frac{{\\partial^2 {f}}}{{\\partial \\operatorname{{vec}}({latex_name(line.wrt)})^2}}"
    if line.kind == "jac":
        return f"\\frac{{\\partial {f}}}{{\\partial {latex_name(line.wrt)}^T}}"
    if line.kind == "jacT":
        return f"\\frac{{\\partial {f}^T}}{{\\partial {latex_name(line.wrt)}}}"
    if line.kind == "d2f":
        return f"\\mathrm{{d}}^2 {f}"
    if line.kind == "vecdf":
        return f"\\operatorname{{vec}}(\\mathrm{{d}}{f})"
    return f"\\mathrm{{d}}{f}" if line.kind == "df" else f


def _report(d: Derivation, pts, trials, f_errors, ndir) -> dict:
    rows = [_line_dict(i, line, trials[i], f_errors, d.fname) for i, line in enumerate(d.lines)]
    lines = [r for r in rows if r["kind"] not in READOFFS]
    readoff = [dict(r, wrt=d.lines[r["index"] - 1].wrt) for r in rows if r["kind"] in READOFFS]
    verdicts = [r["verdict"] for r in rows]
    failed = "failed" in verdicts
    errored = "error" in verdicts or bool(f_errors)
    ok = (not failed and not errored and all(r["verdict"] == "verified" for r in readoff)
          and "verified" in verdicts)
    overall = ("failed" if failed else "error" if errored else
               "verified" if all(v == "verified" for v in verdicts) and verdicts else "inconclusive")
    first = next((r for r in rows if r["verdict"] == "failed"), None)
    first_err = next((r for r in rows if r["verdict"] == "error"), None)
    return {
        "title": d.title, "path": d.path, "layout": LAYOUT, "conventions": _conventions(d),
        "function": {"name": d.fname, "text": to_text(d.f), "latex": f"{d.fname} = {to_latex(d.f)}",
                     "mathml": to_mathml(d.f), "source": d.f_source, "errors": f_errors},
        "definitions": [{"name": n, "text": to_text(e), "latex": to_latex(e), "mathml": to_mathml(e),
                         "source": d.def_sources[n]} for n, e in d.defs.items() if n != d.fname],
        "wrt": list(d.wrt), "ok": ok, "verdict": overall,
        "first_wrong": None if first is None else {k: first[k] for k in ("index", "lhs", "text", "source",
                                                                          "reason")},
        "first_error": None if first_err is None else {k: first_err[k] for k in ("index", "lhs", "source",
                                                                                  "reason")},
        "lines": lines, "readoff": readoff,
        "checked_at": {"points": [{"origin": o, "sizes": s} for o, s, _ in pts],
                       "directions_per_point": max(ndir, 2), "input_seed": INPUT_SEED,
                       "direction_seed": DIRECTION_SEED, "rtol": RTOL, "inconclusive_below": INCONCLUSIVE,
                       "reference": "torch.func.jvp / grad / hessian" + (
                           " / jacrev" if any(ln.kind in ("jac", "jacT") for ln in d.lines) else "")
                       + " of f, float64"},
    }


def derive_text_file(path: str, **options) -> dict:
    """Parse and verify a .hg file: the dict ``verify`` returns (NotationError on bad input)."""
    from handgrad.notation.textfile import parse_file
    return verify(parse_file(path), **options)
