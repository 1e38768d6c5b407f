"""``derive --at FILE.npz``: a derivation's gradient (and Hessian) at the user's arrays.

One array per declared name (``X``, ``y``, ``w`` in the .npz); a 0-d array is a scalar, a
1-D array a column vector, as in the notation.  Size letters take the arrays' sizes (the
first array that uses a letter fixes it; every other use must agree).  A missing or
mis-shaped array is one line naming it and its declaration (a NotationError, which the
CLI turns into exit 2).

The given point is also handed to the one verifier (``verify(d, inputs=[point])``: the
point itself and 2 random perturbations of its variables), so the read-offs printed here
are checked where they are evaluated, besides at the verifier's own drawn points.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from handgrad.notation.evaluate import DTYPE, Evaluator
from handgrad.notation.parser import NotationError
from handgrad.notation.render import to_text
from handgrad.notation.shapes import ONE, SCALAR
from handgrad.notation.textfile import Decl, Derivation


def declaration(decl: Decl) -> str:
    """'let X: n x d' (with its properties), as a user would write it."""
    if decl.shape == SCALAR:
        shape = "scalar"
    elif decl.shape[1] == ONE:
        shape = str(decl.shape[0])
    else:
        shape = f"{decl.shape[0]} x {decl.shape[1]}"
    props = " ".join(sorted(decl.props))
    return f"let {decl.name}: {shape}" + (f" {props}" if props else "")


def load_point(d: Derivation, path: str) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The arrays of ``path`` for the derivation's declarations, and the size letters."""
    if not os.path.exists(path):
        raise NotationError(f"--at: no such file: {path}")
    if not path.lower().endswith(".npz"):
        raise NotationError(f"--at {path}: give an .npz file with one array per declared name "
                            f"({', '.join(d.decls)}), e.g. numpy.savez(path, X=X, y=y)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise NotationError(f"--at {path}: cannot read it as .npz ({exc})") from None
    values: dict[str, torch.Tensor] = {}
    sizes: dict[str, int] = {}
    fixed_by: dict[str, str] = {}
    for name, decl in d.decls.items():
        what = declaration(decl)
        if name not in arrays:
            raise NotationError(f"--at {path}: no array {name!r} for `{what}` "
                                f"(the file has: {', '.join(arrays) or 'nothing'})")
        a = arrays[name]
        if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise NotationError(f"--at {path}: {name} is {a.dtype}, not real numbers (`{what}`)")
        if a.ndim > 2:
            raise NotationError(f"--at {path}: {name} is {a.ndim}-D {a.shape}; `{what}` needs a "
                                "scalar, a vector or a matrix")
        t = torch.as_tensor(a.astype(np.float64)).reshape(
            (1, 1) if a.ndim == 0 else (-1, 1) if a.ndim == 1 else a.shape)
        for dim, actual in zip(decl.shape, t.shape):
            if dim.letters and len(dim.letters) == 1 and dim.coef == 1:
                letter = dim.letters[0]
                if letter not in sizes:
                    sizes[letter], fixed_by[letter] = actual, name
                    continue
                want, why = sizes[letter], f"{letter} = {sizes[letter]} from {fixed_by[letter]}"
            elif not dim.letters:
                want, why = dim.coef, f"size {dim.coef}"
            else:
                continue  # a product of letters (m*n): its letters are fixed elsewhere
            if actual != want:
                shown = "x".join(str(s) for s in a.shape) or "scalar"
                raise NotationError(f"--at {path}: {name} is {shown} ({a.ndim}-D), which does not "
                                    f"fit `{what}` ({why}; 1-D arrays are column vectors)")
        if not bool(torch.isfinite(t).all()):
            raise NotationError(f"--at {path}: {name} has NaN or inf entries (`{what}`)")
        _check_props(path, name, what, decl, t)
        values[name] = t.to(DTYPE)
    return values, sizes


def _check_props(path, name, what, decl, t) -> None:
    p = decl.props
    tol = 1e-10 * max(float(t.abs().max()), 1.0)
    bad = None
    if p & {"sym", "spd"} and float((t - t.mT).abs().max()) > tol:
        bad = "is not symmetric"
    elif "spd" in p and int(torch.linalg.cholesky_ex(t)[1]) != 0:
        bad = "is not positive definite"
    elif "diagonal" in p and float((t - torch.diag_embed(torch.diagonal(t))).abs().max()) > tol:
        bad = "is not diagonal"
    elif "orthogonal" in p and float((t.mT @ t - torch.eye(t.shape[0], dtype=t.dtype)).abs().max()) > 1e-8:
        bad = "is not orthogonal"
    elif "positive" in p and not bool((t > 0).all()):
        bad = "has entries <= 0"
    if bad:
        raise NotationError(f"--at {path}: {name} {bad}, as `{what}` declares")


def evaluate_at(d: Derivation, values: dict, sizes: dict) -> dict:
    """f, the gradient, Hessian (and a vector-valued f's Jacobian) read-offs at the point (2-D lists)."""
    ev = Evaluator(d.checker, values, None, d.defs, sizes)
    out = {"value_at": float(ev.value(d.f).reshape(-1)[0]) if ev.value(d.f).numel() == 1 else
           ev.value(d.f).tolist(), "gradient_at": {}, "hessian_at": {}}
    keys = {"grad": "gradient_at", "hess": "hessian_at", "jac": "jacobian_at"}
    for line in d.lines:
        if line.kind in keys:
            val = Evaluator(d.checker, values, None, d.defs, sizes).value(line.expr).tolist()
            out.setdefault(keys[line.kind], {})[line.wrt] = val
    if not out["hessian_at"]:
        out["hessian_at"] = None
    return out


def read_offs(d: Derivation) -> tuple[dict, dict]:
    """{variable: the read-off in the input syntax} for grad and hess lines (pasteable)."""
    grads = {ln.wrt: to_text(ln.expr) for ln in d.lines if ln.kind == "grad"}
    hess = {ln.wrt: to_text(ln.expr) for ln in d.lines if ln.kind == "hess"}
    return grads, hess


def at(report: dict, d: Derivation, path: str) -> dict:
    """The report of a derivation (already verified at drawn points), extended with its
    values at the arrays of ``path`` and the verification at that point."""
    from handgrad.notation.verify import verify

    values, sizes = load_point(d, path)
    out = dict(report)
    grads, hess = read_offs(d)
    out.setdefault("gradient", grads)
    if hess:
        out.setdefault("hessian", hess)
    out.update(evaluate_at(d, values, sizes))
    given = verify(d, inputs=[values])
    out["checked_at_given"] = {
        "file": path, "sizes": sizes, "verdict": given["verdict"], "ok": given["ok"],
        "points": given["checked_at"]["points"], "first_wrong": given["first_wrong"],
        "lines": [{"index": r["index"], "lhs": r["lhs"], "verdict": r["verdict"],
                   "reason": r["reason"]} for r in given["lines"] + given["readoff"]]}
    # the user's points count as points: the drawn ones need only show no wrong line (they may
    # be inconclusive, or undefined everywhere when f lives on a set no declaration names)
    drawn_clear = (report["ok"] or report["verdict"] == "inconclusive"
                   or report["checked_at"].get("no_defined_draw", False))
    out["ok"] = bool(drawn_clear and given["ok"])
    out["steps"] = [{"lhs": r["lhs"], "text": r["text"], "rule": r["rule"], "verdict": r["verdict"]}
                    for r in sorted(report["lines"] + report["readoff"], key=lambda r: r["index"])]
    return out


def format_at(out: dict) -> str:
    """The values at the point and the verdict there, as terminal text."""
    g = out["checked_at_given"]
    size = ", ".join(f"{k}={v}" for k, v in g["sizes"].items())
    lines = ["", f"at {g['file']}" + (f" ({size})" if size else "") + ":"]
    lines.append(f"  f = {out['value_at']!r}" if isinstance(out["value_at"], float) else
                 f"  f = {out['value_at']}")
    for key, head in (("gradient_at", "grad"), ("hessian_at", "hess"), ("jacobian_at", "jac")):
        for v, val in (out.get(key) or {}).items():
            text = np.array2string(np.array(val), precision=10, max_line_width=100,
                                   threshold=200)
            lines.append(f"  {head} {v} = " + text.replace("\n", "\n" + " " * (len(head) + len(v) + 5)))
    verdict = g["verdict"]
    where = "your arrays and 2 random perturbations of their variables"
    lines.append(f"checked at {where} as well as at the verifier's drawn points: {verdict}")
    if g["first_wrong"]:
        fw = g["first_wrong"]
        lines.append(f"  first wrong line there: {fw['lhs']} = {fw['text']} ({fw['reason']})")
    return "\n".join(lines)


__all__ = ["at", "declaration", "evaluate_at", "format_at", "load_point", "read_offs"]
