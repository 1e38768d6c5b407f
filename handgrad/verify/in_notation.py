"""A built-in model's derivation written in the notation, and its link to the model.

``derivations/<model>.hg`` holds the derivation as the notes write it, every line one
parsed expression, so the formula printed is the formula evaluated (handgrad/notation).
``derive MODEL`` checks it twice:

1. the notation's verifier (handgrad.notation.verify): every line at points handgrad
   draws from the declarations, generic, with sizes redrawn, along independent random
   directions, against torch.func;
2. the link to the model (:func:`link`): at each of the model's own check problems the
   file's ``f`` is the model's loss, every read-off ``grad v`` is, entry by entry, the
   gradient ``fit`` runs (the registry entry's gradient, built from the per-sample pieces
   where the model has them), ``hess v`` is that block of the Hessian ``fit`` runs, and
   the ``d2f`` line along random directions is dP^T H dP with that Hessian.

The directions dP are drawn as the verifier draws them (handgrad.notation.sampling's
``draw_direction``), in the set the declared variable lives in: symmetric for ``spd`` or
``sym``, lower triangular for ``lower``, unconstrained otherwise.  The fitted Hessian is
a Hessian on that set (the Gaussian's symmetrises dSigma, and reads only tril(dL)), so
along a direction outside it dP^T H dP is not the d2f of the file's f, which reads every
entry: a non-symmetric dSigma, or a dL with entries above the diagonal, would fail a
correct line.

So a derivation line that is wrong fails (1), and a model whose fitted derivative is not
the one derived fails (2).  A problem without a parameter the file differentiates is the
model with that parameter held where the model holds it (``absent``: an intercept at 0,
the Gaussian's mean at the sample mean; ``values`` supplies it); the read-off for it is
then not compared.  A problem with a parameter the file does not differentiate (the
Gaussian's Sigma, for the file written in L), or with other model options (``when``: the
two-layer net's activation), is another file's: it is skipped, and said.
"""

from __future__ import annotations

import math
import os

import torch

from handgrad.notation.tolerance import RTOL, judge
from handgrad.params import flatten, slices
from handgrad.pieces import InNotation, path_of  # noqa: F401  (declared beside the contract)


def linear_values(params, data, hp) -> dict:
    """X, y, w, b, l2 for a model on a linear predictor z = X w + b 1 (b = 0 when absent)."""
    w = params["w"]
    return {"X": data.X, "y": data.y, "w": w, "b": params.get("b", w.new_zeros(())),
            "l2": w.new_tensor(float(hp.get("l2", 0.0)))}


def display_path(path: str) -> str:
    rel = os.path.relpath(path)
    if not rel.startswith(".."):
        return rel
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])  # derivations/<model>.hg, as in the source tree


def parse(module, spec: InNotation):
    from handgrad.notation.textfile import parse_file

    d = parse_file(path_of(module, spec))
    d.path = display_path(d.path)
    return d


def _sizes(d, vals) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for n, dc in d.decls.items():
        for dim, actual in zip(dc.shape, vals[n].shape):
            if len(dim.letters) == 1 and dim.coef == 1:
                sizes.setdefault(dim.letters[0], actual)
    return sizes


def _colmajor(shape) -> torch.Tensor:
    """Row-major flat index of each entry of vec(A) (column-major), A of ``shape``."""
    r, c = shape
    return torch.arange(r * c).reshape(r, c).mT.reshape(-1)


def _agree(claim, truth, mag) -> tuple[bool, float]:
    """The one rule (handgrad.notation.tolerance): (not wrong, residual in units of the terms).
    Rounding level (a gradient at an optimum) is no evidence of a mismatch."""
    claim, truth = claim.reshape(-1).to(torch.float64), truth.reshape(-1).to(torch.float64)
    if claim.shape != truth.shape:
        return False, math.inf
    mag = mag.reshape(-1).to(torch.float64).abs().expand_as(truth)
    mag = torch.where(torch.isfinite(mag), mag, claim.abs())  # no terms measured: the claim's size
    t = judge(claim, truth, mag, "the problem")
    if t.status in ("fail", "error"):
        return False, math.inf if t.status == "error" or not t.tol else t.residual / t.tol * RTOL
    return True, t.residual / t.tol * RTOL if t.tol else 0.0


def link(entry, spec: InNotation, d, problems, *, seed: int = 0) -> dict:
    """Compare the file's f, read-offs and d2f with the model's loss, gradient and Hessian
    at the model's check problems.  JSON-ready: one row per compared line."""
    from handgrad.notation.evaluate import Evaluator, as_matrix
    from handgrad.notation.sampling import draw_direction

    model_file = f"models/{entry.name}.py"
    rows: dict[str, dict] = {}

    def row(key, text, what):
        return rows.setdefault(key, {"line": text, "what": what, "ok": True, "residual": 0.0,
                                     "problems": [], "failures": []})

    def record(r, label, ok, residual):
        r["problems"].append(label)
        r["residual"] = max(r["residual"], residual)
        if not ok:
            r["ok"] = False
            r["failures"].append({"problem": label, "residual": residual})

    gen = torch.Generator().manual_seed(0x6C696E6B + seed)  # "link": directions for d2f
    skipped, why = [], []
    for label, P, D, hp in problems:
        reason = spec.skip_reason(d, P, hp)
        if reason is not None:
            skipped.append(label)
            if reason not in why:
                why.append(reason)
            continue
        vals = {k: as_matrix(v) for k, v in spec.values(P, D, hp).items()}
        ev = Evaluator(d.checker, vals, None, d.defs, _sizes(d, vals))
        loss = entry.loss(P, D, **hp)
        r = row("f", f"{d.fname} = {_text(d.f)}", f"the model's loss ({model_file})")
        record(r, label, *_agree(ev.value(d.f), loss, ev.magnitude(d.f)))
        G = entry.gradient(P, D, **hp)
        H = entry.hessian(P, D, **hp) if entry.has_hessian else None
        sl = slices(P)
        for line in d.lines:
            if line.kind == "grad" and line.wrt in P:
                r = row(f"grad {line.wrt}", f"{line.lhs} = {_text(line.expr)}", "the gradient fit uses")
                claim = ev.value(line.expr)
                want = G[line.wrt]
                shape_ok = claim.reshape(-1).shape == want.reshape(-1).shape
                record(r, label, *(_agree(claim, as_matrix(want), ev.magnitude(line.expr))
                                   if shape_ok else (False, math.inf)))
            elif line.kind == "hess" and line.wrt in P and H is not None:
                r = row(f"hess {line.wrt}", f"{line.lhs} = {_text(line.expr)}",
                        "its block of the Hessian fit uses")
                v = P[line.wrt]
                s = sl[line.wrt]
                idx = (_colmajor(v.shape) + s.start if v.dim() == 2  # hess is over column-major vec
                       else torch.arange(s.start, s.stop))
                block = H[idx][:, idx]
                claim = ev.value(line.expr)
                same = claim.shape == block.shape
                record(r, label, *(_agree(claim, block, ev.magnitude(line.expr)) if same
                                   else (False, math.inf)))
            elif line.kind == "d2f" and H is not None:
                r = row("d2f", f"{line.lhs} = {_text(line.expr)}", "dP' H dP, H the Hessian fit uses")
                for _ in range(2):
                    dP = {k: draw_direction(d.decls[k], vals[k], gen).reshape(v.shape).to(v)
                          for k, v in P.items()}
                    diffs = {n: as_matrix(dP[n]) if n in dP else torch.zeros_like(vals[n]) for n in d.wrt}
                    e2 = Evaluator(d.checker, vals, diffs, d.defs, _sizes(d, vals))
                    f = flatten(dP)
                    record(r, label, *_agree(e2.value(line.expr), f @ H @ f, e2.magnitude(line.expr)))
    out = list(rows.values())
    for r in out:
        if not r["problems"]:
            r["ok"] = False
            r["failures"].append({"problem": None, "residual": math.inf})
    return {"rows": out, "ok": bool(out) and all(r["ok"] for r in out),
            "problems": [p[0] for p in problems if p[0] not in skipped], "skipped_problems": skipped,
            "skipped_because": why,
            "rtol": RTOL}  # the one rule: the read-off and the fitted derivative differ by rounding


def _text(node) -> str:
    from handgrad.notation.render import to_text
    return to_text(node)


def derive(entry, spec: InNotation, module, problems, *, seed: int = 0) -> dict:
    """The notation report of the model's .hg file, with its link to the model."""
    from handgrad.notation.verify import verify

    d = parse(module, spec)
    rep = verify(d)
    rep["link"] = link(entry, spec, d, problems, seed=seed)
    rep["format"] = "notation"
    rep["ok"] = rep["ok"] and rep["link"]["ok"]
    return rep
