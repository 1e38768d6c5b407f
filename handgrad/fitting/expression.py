"""A model written as an expression: ``fit --loss "sum(exp(X*w)) - y'*X*w" --wrt w``.

What GENO does, with derivatives a verifier has checked:

    expression -> the deriver (handgrad.notation.auto) writes the derivation, gradient and
    Hessian -> the one verifier (handgrad.notation.verify) checks every line at points it
    draws and at a point made of the data's first rows -> any line not verified: refused
    (:class:`NotVerified`, exit 1), nothing is fitted -> a registry Entry built here, whose
    loss, gradient and Hessian evaluate the verified formulas (handgrad.notation.auto_plan)
    -> handgrad.fitting.pipeline.fit, the same solvers, options and summary as the built-in
    models.

Names in the expression: ``X`` (n x d) the design matrix, ``y`` (n) the target, and the
coefficient vector named by ``wrt`` (d).  The intercept enters as a column of ones appended
to X: with an intercept, X in the formula is [X, 1] and w is [w; b], so the derived
gradient and Hessian are over (w, b) in that order, which is the pipeline's flattening of
{w, b}; ``--no-intercept`` fits the formula on X as given.  The L2 option adds
(l2/2)||w||^2 on w (never b), as for the built-in models.

Two paths, and the fit says which (``loss_expression.path``, and a line of the text):

* through the linear predictor: where the loss is a function of z = X*w alone
  (:func:`predictor_form`), the loss in z is derived and verified too, its Hessian in z
  must be diagonal and the loss a sum over rows of z; the per-sample pieces (l_i, dl/dz_i,
  d^2 l/dz_i^2, :class:`PerSample`) are checked through the chain rule against the
  verified gradient and Hessian in w (at drawn points and the data's first rows) and fit
  through handgrad.fitting.sums.LinearLoss, the built-in models' one chain rule: row
  chunks, streaming, processes, sampled Hessians and chord steps all apply;
* otherwise, compiled formulas: the verified f, gradient and Hessian in w evaluated by
  handgrad.notation.auto_plan (common subexpressions once).  Row chunks (``--chunk-rows``,
  ``--distributed``) then need a loss that is a sum over rows, checked numerically before
  the fit (:func:`check_sum_over_rows`); the chunked gradient and Hessian are sums over
  chunks of the same verified formulas (handgrad.fitting.sums.ChunkedSums).

Inference (:func:`fit`): ``nll`` declares the loss a negative log-likelihood (standard
errors from the Hessian, as for the built-in models); without it, sandwich (robust)
standard errors on the first path, and none, with the reason, on the second.
"""

from __future__ import annotations

import math
import sys
import weakref

import torch

from handgrad import registry
from handgrad.contract import DerivationSpec, Likelihood, Model, Role, Target
from handgrad.errors import UserError
from handgrad.fitting.data import Data

NAME = "expression"
NAMES_HELP = "X (the design matrix, n x d), y (the target, n) and the coefficient vector"


class NotVerified(Exception):
    """The derivation of the loss has a line the verifier did not verify: no fit."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def declarations(expr: str, wrt: str) -> str:
    """The --let of a loss: X: n x d, y: n, and the coefficients wrt: d (those used)."""
    from handgrad.notation import NotationError, parse
    from handgrad.notation.ast import symbols

    wrt = wrt.strip()
    if not wrt.isidentifier() or wrt in ("X", "y", "T"):
        raise UserError(f"--wrt {wrt!r}: name the coefficient vector (one name other than X "
                        "and y, e.g. --wrt w).")
    try:
        names = symbols(parse(expr))
    except NotationError as exc:
        raise UserError(f"--loss: {str(exc).splitlines()[0]}") from None
    extra = sorted(names - {"X", "y", wrt})
    if extra:
        raise UserError(f"--loss: unknown name {extra[0]!r}; a loss may use {NAMES_HELP} "
                        f"({wrt}, from --wrt).")
    if wrt not in names:
        raise UserError(f"--loss does not use {wrt} (--wrt {wrt}); write it in terms of X*{wrt}.")
    if "X" not in names:
        raise UserError("--loss does not use X, the design matrix; write it in terms of "
                        f"X*{wrt}.")
    decl = ["X: n x d"] + (["y: n"] if "y" in names else []) + [f"{wrt}: d"]
    return "; ".join(decl)


class ExpressionLoss:
    """A verified derivation of a loss and its compiled evaluation.

    Build with :meth:`derive` (from the expression) or :meth:`from_hg` (from a derivation
    text, e.g. one a user edited); both verify every line and raise :class:`NotVerified`
    unless all are verified."""

    def __init__(self, hg: str, report: dict, *, expr: str | None = None):
        from handgrad.notation.auto_plan import Plan
        from handgrad.notation.textfile import parse_text

        d = parse_text(hg, path="<loss>")
        if len(d.wrt) != 1:
            raise UserError(f"a loss is fitted over one coefficient vector; the derivation is "
                            f"over {', '.join(d.wrt)}")
        self.hg, self.report, self.derivation = hg, report, d
        self.wrt = d.wrt[0]
        self.expr = expr or report["function"]["text"]
        self.uses_y = "y" in d.decls
        grads = [ln for ln in d.lines if ln.kind == "grad" and ln.wrt == self.wrt]
        hess = [ln for ln in d.lines if ln.kind == "hess" and ln.wrt == self.wrt]
        if not grads:
            raise UserError(f"the derivation has no 'grad {self.wrt} = ...' read-off")
        outputs = {"f": d.f, "grad": grads[-1].expr}
        if hess:
            outputs["hess"] = hess[-1].expr
        self.formulas = outputs
        self.has_hessian = bool(hess)
        self.plan = Plan(outputs, {k: v.shape for k, v in d.decls.items()}, d.defs)
        self._inputs_cache = None

    # -- building ------------------------------------------------------------------------
    @classmethod
    def derive(cls, expr: str, wrt: str = "w", *, data: Data | None = None,
               intercept: bool = True) -> ExpressionLoss:
        """Derive the gradient (and the Hessian, where the deriver can) and verify them."""
        from handgrad.notation import NotationError
        from handgrad.notation.auto import derive

        let = declarations(expr, wrt)
        try:
            try:
                hg, _ = derive(expr, let, wrt, hessian=True)
            except NotationError as exc:
                if "hessian" not in str(exc):
                    raise
                hg, _ = derive(expr, let, wrt)  # gradient descent only
        except NotationError as exc:
            raise UserError(f"--loss: {str(exc).splitlines()[0]}") from None
        return cls.from_hg(hg, expr=expr, data=data, intercept=intercept)

    @classmethod
    def from_hg(cls, hg: str, *, expr: str | None = None, data: Data | None = None,
                intercept: bool = True) -> ExpressionLoss:
        """Verify a derivation text and compile it; NotVerified if any line is not verified.

        Checked at the verifier's drawn points and, with ``data``, also at a point made of
        the data's first rows (columns scaled to max |x| = 1, the ones column appended with
        an intercept) and a small random w, with two perturbations of w."""
        from handgrad.notation import NotationError
        from handgrad.notation.textfile import parse_text
        from handgrad.notation.verify import verify

        try:
            d = parse_text(hg, path="<loss>")
            report = verify(d)
            at_data = None
            if data is not None and report["ok"]:
                at_data = verify(d, inputs=[_data_point(d, data, intercept)])
        except NotationError as exc:
            raise UserError(f"--loss: {str(exc).splitlines()[0]}") from None
        report["checked_at_data"] = None if at_data is None else {
            "verdict": at_data["verdict"], "ok": at_data["ok"],
            "points": at_data["checked_at"]["points"], "first_wrong": at_data["first_wrong"]}
        for rep, where in ((report, "at the verifier's points"), (at_data, "at the data's rows")):
            if rep is not None and not rep["ok"]:
                bad = rep["first_wrong"] or rep["first_error"] or {}
                line = f"line {bad['index']} ({bad['lhs']} = ...)" if bad.get("index") else "a line"
                why = f": {bad['reason']}" if bad.get("reason") else ""
                raise NotVerified(f"the derivation of the loss is not verified {where} ({line} is "
                                  f"{rep['verdict'] if not bad else 'wrong'}{why}); handgrad "
                                  "does not fit with an unverified derivative", report)
        self = cls(hg, report, expr=expr)
        self.per_sample, self.why_compiled = PerSample.build(self)
        if data is not None:
            self._self_check(data, intercept)
        if self.per_sample is not None:
            self.per_sample.check_chain_rule(_drawn_point(self.derivation), self)
            if data is not None:
                self.per_sample.check_chain_rule(_data_point(self.derivation, data, intercept),
                                                 self)
        return self

    def _self_check(self, data: Data, intercept: bool) -> None:
        """The compiled plan against the notation's evaluator at the data point."""
        vals = _data_point(self.derivation, data, intercept)
        sizes = _sizes(self.derivation, vals)
        self.plan.check_against(vals, sizes, self.derivation.defs, self.formulas)
        self.plan.forget()

    # -- evaluating ----------------------------------------------------------------------
    def _inputs(self, params: dict, data: Data, wname: str, bname: str):
        X = data.X
        c = self._inputs_cache
        if c is None or c[0]() is not X or c[1]() is not data.y or c[2] != (bname in params):
            Xa = torch.cat([X, X.new_ones(X.shape[0], 1)], 1) if bname in params else X
            yc = None
            if self.uses_y:
                if data.y is None:
                    raise UserError("the loss uses y: give the target column (--target).")
                yc = data.y.to(X.dtype).reshape(-1, 1)
            ref_y = weakref.ref(data.y) if data.y is not None else (lambda: None)
            c = self._inputs_cache = (weakref.ref(X), ref_y, bname in params, Xa, yc)
        w = params[wname].reshape(-1)
        if bname in params:
            w = torch.cat([w, params[bname].reshape(1).to(w.dtype)])
        vals = {"X": c[3], self.wrt: w.reshape(-1, 1)}
        if self.uses_y:
            vals["y"] = c[4]
        return vals, {"n": c[3].shape[0], "d": c[3].shape[1]}

    # a sum over rows is evaluated in row blocks of about this many bytes of X on the CPU:
    # each block of X stays in cache between X_c w and X_c' r_c (one read of X per pass)
    BLOCK_BYTES = 2 ** 21
    rowwise = False  # set by entry(): f passed check_sum_over_rows
    per_sample: PerSample | None = None  # set by from_hg: the pieces through z = X*w
    why_compiled = ""  # why not (a sentence), when per_sample is None

    def evaluate(self, wanted, params: dict, data: Data, wname: str, bname: str) -> dict:
        vals, sizes = self._inputs(params, data, wname, bname)
        X = vals["X"]
        rows = max(256, self.BLOCK_BYTES // (X.element_size() * max(1, X.shape[1])))
        if not self.rowwise or X.device.type != "cpu" or X.shape[0] <= 2 * rows:
            return self.plan.run(vals, wanted, sizes)
        out: dict = {}
        for lo in range(0, X.shape[0], rows):  # f, its gradient and Hessian: sums of the blocks'
            part = {k: (v[lo:lo + rows] if k in ("X", "y") else v) for k, v in vals.items()}
            got = self.plan.run(part, wanted, {**sizes, "n": part["X"].shape[0]})
            for k, v in got.items():
                out[k] = v.clone() if k not in out else out[k].add_(v)
        self.plan.forget()  # block views: nothing to reuse
        return out


# ----------------------------------------------------------- through the linear predictor

Z = "z"  # the linear predictor's name in the per-sample derivation (the notes' z)


def predictor_form(node, X: str, wrt: str):
    """The loss with every product X*w (and w'*X') replaced by z (and z'), or None when X
    or w appear in any other way (then the loss is not a function of z = X*w alone).

    A product chain is associative, so ``y'*X*w`` (parsed (y'*X)*w) is y'*z."""
    from handgrad.notation.ast import Bin, Call, Neg, Sym, Transpose, symbols

    def factors(n):
        if isinstance(n, Bin) and n.op == "*":
            return factors(n.a) + factors(n.b)
        return [sub(n)]

    def sub(n):
        if isinstance(n, Bin) and n.op == "*":
            fs, out = factors(n), []
            for f in fs:
                if out and out[-1] == Sym(X) and f == Sym(wrt):
                    out[-1] = Sym(Z)
                elif out and out[-1] == Transpose(Sym(wrt)) and f == Transpose(Sym(X)):
                    out[-1] = Transpose(Sym(Z))
                else:
                    out.append(f)
            acc = out[0]
            for f in out[1:]:
                acc = Bin("*", acc, f)
            return acc
        if isinstance(n, Bin):
            return Bin(n.op, sub(n.a), sub(n.b))
        if isinstance(n, Transpose):
            return Transpose(sub(n.x))
        if isinstance(n, Neg):
            return Neg(sub(n.x))
        if isinstance(n, Call):
            return Call(n.fn, tuple(sub(a) for a in n.args))
        return n

    out = sub(node)
    names = symbols(out)
    return None if (X in names or wrt in names or Z not in names) else out


def _diagonal(node):
    """(c, v) where the Hessian read-off is c*diag(v), (c, None) where it is c*eye; else None."""
    from handgrad.notation.ast import Bin, Call, Neg, Num

    if isinstance(node, Call) and node.fn == "diag" and len(node.args) == 1:
        return 1.0, node.args[0]
    if isinstance(node, Call) and node.fn == "eye" and not node.args:
        return 1.0, None
    if isinstance(node, Neg):
        inner = _diagonal(node.x)
        return None if inner is None else (-inner[0], inner[1])
    if isinstance(node, Bin) and node.op == "*":
        for num, other in ((node.a, node.b), (node.b, node.a)):
            if isinstance(num, Num):
                inner = _diagonal(other)
                return None if inner is None else (num.value * inner[0], inner[1])
    return None


class PerSample:
    """The per-sample pieces (l_i, dl/dz_i, d^2 l/dz_i^2) of a loss that is a sum over rows
    through z = X*w, derived from the loss with X*w written z and verified by the one
    verifier: what :class:`handgrad.fitting.sums.LinearLoss` sums, as for the built-ins.

    ``__call__(z, y, grad, hess, value)`` is LinearLoss's ``per_sample``: the loss of the
    rows (a sum over them: its value), the gradient with respect to z (one entry per row)
    and the diagonal of the Hessian with respect to z (verified diagonal)."""

    def __init__(self, hg: str, report: dict, d, curvature):
        from handgrad.notation.auto_plan import Plan

        self.hg, self.report, self.derivation = hg, report, d
        self.uses_y = "y" in d.decls
        grads = [ln for ln in d.lines if ln.kind == "grad"]
        hess = [ln for ln in d.lines if ln.kind == "hess"]
        self.formulas = {"f": d.f, "grad": grads[-1].expr}
        self.hess_formula = hess[-1].expr if hess else None
        self.curvature = curvature  # (c, v or None): the Hessian is c diag(v) (or c I)
        outputs = dict(self.formulas)
        if curvature is not None and curvature[1] is not None:
            outputs["h"] = curvature[1]
        self.plan = Plan(outputs, {k: v.shape for k, v in d.decls.items()}, d.defs)

    @property
    def has_hessian(self) -> bool:
        return self.curvature is not None

    def __call__(self, z, y, grad: bool = True, hess: bool = True, value: bool = True):
        vals = {Z: z.reshape(-1, 1)}
        if self.uses_y:
            vals["y"] = y.reshape(-1, 1).to(z.dtype)
        wanted = [k for k, on in (("f", value), ("grad", grad), ("h", hess)) if on and k in self.plan.out]
        got = self.plan.run(vals, wanted, {"n": z.shape[0]})
        self.plan.forget()  # chunks do not recur
        h = None
        if hess:
            c, v = self.curvature
            h = got["h"].reshape(-1) if v is not None else torch.ones_like(z)
            if c != 1.0:
                h = c * h
        return (got["f"].reshape(()) if value else None,
                got["grad"].reshape(-1) if grad else None, h)

    @classmethod
    def build(cls, loss: ExpressionLoss) -> tuple[PerSample | None, str]:
        """(the verified per-sample pieces, "") or (None, why the loss is fitted as compiled
        formulas instead)."""
        from handgrad.notation import NotationError
        from handgrad.notation.auto import derive
        from handgrad.notation.render import to_text
        from handgrad.notation.textfile import parse_text
        from handgrad.notation.verify import verify

        if loss.wrt == Z:
            return None, f"the coefficients are named {Z}, the linear predictor's name"
        zf = predictor_form(loss.derivation.f, "X", loss.wrt)
        if zf is None:
            return None, (f"it is not a function of X*{loss.wrt} alone (X or {loss.wrt} "
                          "appear outside that product)")
        let = f"{Z}: n" + ("; y: n" if loss.uses_y else "")
        try:
            try:
                hg, _ = derive(to_text(zf), let, Z, hessian=True)
            except NotationError as exc:
                if "hessian" not in str(exc):
                    raise
                hg, _ = derive(to_text(zf), let, Z)
            d = parse_text(hg, path="<per-sample loss>")
            report = verify(d)
        except NotationError as exc:
            why = str(exc).splitlines()[0]
            return None, f"its form in z = X*{loss.wrt} is out of the deriver's scope ({why})"
        if not report["ok"]:
            return None, (f"the derivation in z = X*{loss.wrt} is not verified "
                          f"({report['verdict']})")
        hess = [ln for ln in d.lines if ln.kind == "hess"]
        curvature = _diagonal(hess[-1].expr) if hess else None
        if hess and curvature is None:
            return None, (f"its Hessian in z = X*{loss.wrt} is not diagonal (a row's loss "
                          "depends on other rows)")
        self = cls(hg, report, d, curvature)
        why = self._not_additive()
        if why:
            return None, why
        return self, ""

    def _not_additive(self) -> str:
        """Why the loss in z is not a sum over rows (f of all rows = f of a split's parts
        summed, and the Hessian's diagonal as evaluated here = the verified Hessian), at
        seeded points with the notation's evaluator; "" when it is."""
        from handgrad.notation.evaluate import Evaluator

        d = self.derivation
        gen = torch.Generator().manual_seed(0x7A726F77)  # "zrow"
        for t in range(3):
            n = 7 + 2 * t
            vals = {Z: torch.randn(n, 1, generator=gen, dtype=torch.float64)}
            if self.uses_y:
                vals["y"] = 2 * torch.rand(n, 1, generator=gen, dtype=torch.float64)
            k = n // 2 - t

            def ev(lo, hi, node):
                part = {name: v[lo:hi] for name, v in vals.items()}
                return Evaluator(d.checker, part, None, d.defs, {"n": hi - lo}).value(node)

            whole, a, b = (float(ev(lo, hi, d.f)) for lo, hi in ((0, n), (0, k), (k, n)))
            if not abs(whole - (a + b)) <= 1e-9 * (abs(a) + abs(b) + abs(whole)) + 1e-300:
                return "it is not a sum over rows of z (a constant or a cross-row term)"
            if self.has_hessian:
                H = ev(0, n, self.hess_formula)
                _, _, h = self(vals[Z].reshape(-1), vals.get("y", vals[Z]).reshape(-1), False,
                               True, False)
                if not torch.allclose(torch.diag(h.to(H.dtype)), H, rtol=1e-10, atol=1e-12):
                    raise AssertionError("the per-sample curvature disagrees with the verified "
                                         "Hessian; this is a bug in handgrad")
        return ""

    def check_chain_rule(self, point: dict, loss: ExpressionLoss) -> None:
        """The chain rule through z = X*w (X^T e, X^T diag(h) X) from these pieces equals
        the verified gradient and Hessian of the loss as written, at ``point`` (a bug in
        handgrad if not)."""
        from handgrad.notation.evaluate import Evaluator

        d = loss.derivation
        X, w = point["X"], point[loss.wrt]
        z = (X @ w).reshape(-1)
        y = point["y"].reshape(-1) if "y" in point else z
        f, e, h = self(z, y, True, self.has_hessian, True)
        sizes = {"n": X.shape[0], "d": X.shape[1]}
        mine = {"f": f.reshape(1, 1), "grad": X.T @ e.reshape(-1, 1)}
        if self.has_hessian and loss.has_hessian:
            mine["hess"] = X.T @ (X * h.unsqueeze(1))
        for key, got in mine.items():
            want = Evaluator(d.checker, point, None, d.defs, sizes).value(loss.formulas[key])
            scale = float(want.abs().max()) + 1e-300
            if got.shape != want.shape or not bool(((got - want).abs() <= 1e-9 * scale).all()):
                raise AssertionError(f"the per-sample pieces through z = X*{loss.wrt} disagree "
                                     f"with the verified {key}; this is a bug in handgrad")


def _sizes(d, vals: dict) -> dict[str, int]:
    return {"n": vals["X"].shape[0], "d": vals["X"].shape[1]}


def _drawn_point(d, n: int = 12, p: int = 4) -> dict:
    """A seeded generic point (X, y, w) in float64, for the chain-rule link."""
    gen = torch.Generator().manual_seed(0x636861696E)  # "chain"
    (wrt,) = d.wrt
    point = {"X": torch.randn(n, p, generator=gen, dtype=torch.float64),
             wrt: 0.3 * torch.randn(p, 1, generator=gen, dtype=torch.float64)}
    if "y" in d.decls:
        point["y"] = 2 * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    return point


def _data_point(d, data: Data, intercept: bool, rows: int = 40) -> dict:
    """The data's first rows as a verification point (see ExpressionLoss.from_hg)."""
    X = data.X[:rows].detach().to("cpu", torch.float64)
    X = X / X.abs().amax(0).clamp_min(1e-300)
    if intercept:
        X = torch.cat([X, X.new_ones(X.shape[0], 1)], 1)
    gen = torch.Generator().manual_seed(0x6C6F7373)  # "loss"
    point = {"X": X}
    (wrt,) = d.wrt
    point[wrt] = 0.5 * torch.randn(X.shape[1], 1, generator=gen, dtype=torch.float64) / X.shape[1] ** 0.5
    if "y" in d.decls:
        if data.y is None:
            raise UserError("the loss uses y: give the target column (--target).")
        point["y"] = data.y[:rows].detach().to("cpu", torch.float64).reshape(-1, 1)
    return point


def check_sum_over_rows(loss: ExpressionLoss, intercept: bool, *, trials: int = 3) -> None:
    """Refuse (UserError) a loss that is not a sum over rows: f(all rows) must equal
    f(rows 1..k) + f(rows k+1..n) at random X, y, w (float64, the notation's evaluator)."""
    from handgrad.notation.evaluate import Evaluator

    d = loss.derivation
    gen = torch.Generator().manual_seed(0x726F7773)  # "rows"
    for t in range(trials):
        n, p = 9 + 2 * t, 3 + t
        X = torch.randn(n, p, generator=gen, dtype=torch.float64)
        if intercept:
            X[:, -1] = 1.0
        vals = {"X": X, loss.wrt: 0.3 * torch.randn(p, 1, generator=gen, dtype=torch.float64)}
        if loss.uses_y:
            vals["y"] = 2 * torch.rand(n, 1, generator=gen, dtype=torch.float64)
        k = n // 2 - t

        def f(lo, hi):
            part = {name: (v[lo:hi] if name in ("X", "y") else v) for name, v in vals.items()}
            sizes = {"n": hi - lo, "d": p}
            checker = d.checker
            return float(Evaluator(checker, part, None, d.defs, sizes).value(d.f))

        whole, a, b = f(0, n), f(0, k), f(k, n)
        scale = abs(a) + abs(b) + abs(whole)
        if not (abs(whole - (a + b)) <= 1e-9 * scale + 1e-300) or whole != whole:
            raise UserError(
                f"--chunk-rows/--distributed need a loss that is a sum over rows, and "
                f"{loss.expr} is not: at a random point f(rows 1-{k}) + f(rows {k + 1}-{n}) = "
                f"{a + b:.6g} but f(all {n} rows) = {whole:.6g}; fit it in memory.")


def null_intercept(ps: PerSample | None, data: Data, max_iter: int = 50) -> float:
    """The start of the intercept: the minimiser of the loss over b alone with w = 0 (the
    intercept-only model: Poisson's log(mean y), logistic's logit(mean y)), by damped
    Newton in one variable on the verified per-sample pieces; 0 where there are none (no
    Hessian, no rows) or the loss has no finite minimum in b."""
    if ps is None or not ps.has_hessian or data.n == 0 or (ps.uses_y and data.y is None):
        return 0.0
    y = data.y.detach().to(torch.float64).reshape(-1) if ps.uses_y else None
    z = torch.zeros(data.n, dtype=torch.float64, device=data.X.device)

    def at(b, hess=True):
        return ps(z + b, y, True, hess, True)

    b = 0.0
    f, e, h = at(b)
    for _ in range(max_iter):
        g, H = float(e.sum()), float(h.sum())
        if not (math.isfinite(g) and math.isfinite(H) and H > 0):
            return 0.0
        step = -g / H
        # converged: the decrease left (the Newton decrement g^2 / 2H) is below what the
        # loss resolves, or the step below what b resolves
        if g * g / (2 * H) <= 64 * torch.finfo(torch.float64).eps * max(1.0, abs(float(f))) \
                or abs(step) <= 1e-12 * max(1.0, abs(b)):
            break
        t = 1.0
        while t > 1e-12:
            f_new, e_new, h_new = at(b + t * step)
            if bool(torch.isfinite(f_new)) and float(f_new) <= float(f):
                break
            t *= 0.5
        else:
            break
        b, f, e, h = b + t * step, f_new, e_new, h_new
    return b if math.isfinite(b) else 0.0


def entry(loss: ExpressionLoss, *, nll: bool = False) -> registry.Entry:
    """A registry Entry whose loss, gradient and Hessian are the verified formulas (in row
    blocks when the loss is a sum over rows: the same formulas, summed), or the verified
    per-sample pieces through the one chain rule (LinearLoss) where the loss is a sum over
    rows of z = X*w.  ``nll``: the loss is declared a negative log-likelihood (log L =
    -loss, nothing added), so the fit's summary is the likelihood table."""
    if loss.per_sample is not None:  # f = sum_i l(z_i, y_i), checked when the pieces were built
        loss.rowwise = True
    else:
        try:
            check_sum_over_rows(loss, True)
            check_sum_over_rows(loss, False)
            loss.rowwise = True
        except UserError:
            loss.rowwise = False
    wname = loss.wrt
    bname = "b" if wname != "b" else "b0"

    def init_params(data, *, intercept: bool = True, **_):
        p = {wname: data.X.new_zeros(data.d)}
        if intercept:
            p[bname] = data.X.new_tensor(null_intercept(loss.per_sample, data))
        return p

    def f(params, data, *, l2: float = 0.0, **_):
        v = loss.evaluate(["f"], params, data, wname, bname)["f"].reshape(())
        if l2:
            w = params[wname]
            v = v + 0.5 * l2 * (w @ w)
        return v

    def gradient(params, data, *, l2: float = 0.0, **_):
        g = loss.evaluate(["grad"], params, data, wname, bname)["grad"].reshape(-1)
        d = params[wname].numel()
        out = {wname: g[:d] + l2 * params[wname] if l2 else g[:d]}
        if bname in params:
            out[bname] = g[d].reshape(())
        return out

    def hessian(params, data, *, l2: float = 0.0, **_):
        H = loss.evaluate(["hess"], params, data, wname, bname)["hess"]
        if l2:
            H = H.clone()
            idx = torch.arange(params[wname].numel(), device=H.device)
            H[idx, idx] += l2
        return H

    linear = None
    if loss.per_sample is not None:  # the one chain rule: every fit path of the built-ins
        from handgrad.fitting.sums import LinearLoss

        linear = LinearLoss(loss.per_sample, weights=wname, intercept=bname)
        f = linear.loss  # the same per-sample losses the fit sums (no [X, 1] copy of X)
        gradient = linear.gradient
        hessian = linear.hessian if loss.per_sample.has_hessian else None
    elif not loss.has_hessian:
        hessian = None

    def synthetic(**_):
        raise UserError("fit --loss needs data: --data FILE (a CSV with --target, .npz, .npy).")

    def no_problems(*_a, **_k):
        return []

    mod = sys.modules[__name__]
    solvers = ("newton", "gd") if hessian is not None else ("gd",)
    model = Model(name=NAME, title=f"loss {loss.expr}", summary=f"the loss {loss.expr}",
                  target=Target.CONTINUOUS if loss.uses_y else Target.NONE,
                  params={wname: Role.WEIGHTS, bname: Role.INTERCEPT}, solvers=solvers,
                  default_solver=solvers[0], closed_solvers=(), hyper=(),
                  likelihood=Likelihood() if nll else None,
                  check_note="", module=mod, init_params=init_params, loss=f,
                  synthetic=synthetic, check_problems=no_problems)
    spec = DerivationSpec(mod, gradient, hessian, lambda: [], None, linear,
                          origin="handgrad-derived", value=linear.value if linear is not None else None)
    return registry.Entry(NAME, model, spec)


def fit(expr: str, wrt: str = "w", *, data_path=None, target=None, features=None,
        intercept: bool = True, data: Data | None = None, loss: ExpressionLoss | None = None,
        nll: bool = False, **fit_kw) -> dict:
    """Derive, verify and fit a loss written as an expression; the pipeline's result, with
    "loss_expression" (the formulas fitted and their verification) added.

    Standard errors: with ``nll`` (the loss is a negative log-likelihood) from the inverse
    Hessian at the optimum, with z, P, intervals, log-likelihood -loss, AIC and BIC, as for
    the built-in models; without it, sandwich (robust) standard errors
    H^-1 (sum_i g_i g_i') H^-1 where the loss is a sum over rows through X*w (g_i: row i's
    gradient), and otherwise none, with the reason in the summary.

    Raises NotVerified (nothing fitted) when a line of the derivation is not verified, and
    UserError for an expression out of the deriver's scope or a loss that is not a sum over
    rows under --chunk-rows / --distributed."""
    from handgrad.notation.ast import MAX_NESTING, deep, depth
    from handgrad.notation.parser import parse

    if loss is None and depth(parse(expr)) > MAX_NESTING // 2:
        # a long sum is as deep as it is long: derive, verify and fit where such a tree can
        # be walked (a thread with a large stack; Ctrl-C then stops it without a result)
        return deep(_fit)(expr, wrt, data_path=data_path, target=target, features=features,
                          intercept=intercept, data=data, loss=loss, nll=nll, **fit_kw)
    return _fit(expr, wrt, data_path=data_path, target=target, features=features, intercept=intercept,
                data=data, loss=loss, nll=nll, **fit_kw)


def _fit(expr: str, wrt: str, *, data_path, target, features, intercept: bool, data: Data | None,
         loss: ExpressionLoss | None, nll: bool, **fit_kw) -> dict:
    from handgrad.fitting import pipeline

    probe = data
    if probe is None and data_path:
        probe = _probe(data_path, target, features)
    if loss is None:
        loss = ExpressionLoss.derive(expr, wrt, data=probe, intercept=intercept)
    e = entry(loss, nll=nll)  # checks once whether f is a sum over rows (loss.rowwise)
    if (fit_kw.get("chunk_rows") or fit_kw.get("distributed_run")) and not loss.rowwise:
        check_sum_over_rows(loss, intercept)  # raises, naming the rows where it is not
    if loss.uses_y and data is None and data_path and target is None and \
            not str(data_path).lower().endswith((".npz", ".npy")):
        raise UserError("the loss uses y: name the target column with --target.")
    sandwich = not nll and loss.per_sample is not None and loss.per_sample.has_hessian
    out = pipeline.fit(e, data_path=data_path, target=target, features=features,
                       intercept=intercept, data=data, sandwich=sandwich, **fit_kw)
    out["loss_expression"] = {**describe(loss, intercept), "nll": nll}
    if nll and "summary" in out:
        out["conventions"].append(
            "log-likelihood = -(the loss as written) (--nll); a constant the expression leaves "
            "out (Poisson's -log y_i!) is not in it, nor in AIC/BIC, which statsmodels includes")
    elif not nll and not sandwich and "summary" not in out and "coefficients" in out:
        from handgrad.fitting import inference

        why = (loss.why_compiled if loss.per_sample is None else
               "its Hessian in z is not derived")
        out["summary"] = inference.without_errors(
            out["coefficients"], "no standard errors: the loss is not declared a negative "
            "log-likelihood (--nll), and robust (sandwich) ones need the gradient of each row "
            f"through X*{loss.wrt}, which this loss does not have ({why})")
    return out


def _probe(path, target, features) -> Data | None:
    """The first rows of a data file, for the verification at the data (None: no rows)."""
    import os

    from handgrad.fitting import source
    from handgrad.fitting.data import load

    if os.path.splitext(str(path))[1].lower() in (".npy", ".npz"):
        try:
            rows = source.FileRows(path, dtype=torch.float64, device="cpu")
        except UserError:
            return None
        first = next(rows.chunks(64), None)
        return None if first is None else Data(first[1], first[2])
    return load(path, target, features, needs_target=target is not None)


def describe(loss: ExpressionLoss, intercept: bool) -> dict:
    """What was fitted, JSON-ready: the formulas (input syntax) and their verification."""
    from handgrad.notation.render import to_text

    rep = loss.report
    ps = loss.per_sample
    if ps is not None:
        path = {"kind": "linear predictor",
                "text": (f"through z = X*{loss.wrt}: f = {to_text(ps.derivation.f)}, "
                         f"grad z = {to_text(ps.formulas['grad'])}"
                         + (f", hess z = {to_text(ps.hess_formula)}" if ps.has_hessian else "")
                         + f" ({ps.report['verdict']}), summed by the built-in models' chain "
                         "rule (row chunks, sampled Hessians, chord steps, processes)"),
                "derivation": ps.hg}
    else:
        path = {"kind": "compiled formulas",
                "text": ("as compiled torch code of the verified formulas (common "
                         f"subexpressions once), not through the chain rule: {loss.why_compiled}"),
                "derivation": None}
    return {"expression": loss.expr, "wrt": loss.wrt, "path": path,
            "intercept": ("a column of ones appended to X (X = [X, 1], "
                          f"{loss.wrt} = [{loss.wrt}; b])") if intercept else None,
            "gradient": to_text(loss.formulas["grad"]),
            "hessian": to_text(loss.formulas["hess"]) if loss.has_hessian else None,
            "evaluated_as": {k: to_text(v) for k, v in loss.plan.trees.items()},
            "verdict": rep["verdict"], "checked_at": rep["checked_at"]["points"],
            "checked_at_data": rep.get("checked_at_data"), "derivation": loss.hg}


__all__ = ["ExpressionLoss", "NotVerified", "check_sum_over_rows", "declarations", "entry", "fit"]
