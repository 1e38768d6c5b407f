"""Run derivations step by step, run the identity catalog and the notes' errata, and format.

``derive`` checks every line of a derivation at several problems (each model's
``check_problems``; for a user file, its ``inputs(seed)``), at random moves of their
variables and along directions from handgrad's own stream, against torch.func.jvp of the
loss (or of its gradient, for a Hessian derivation), by the one verifier core
(handgrad.verify.steps on handgrad.notation.tolerance).  The report keeps, per line: the
verdict, the largest residual seen, where the step is written (file:line) and, for a line
not verified, the point and the reason.

Formats: plain text (terminal), Markdown, a standalone LaTeX document, and JSON (the
report dicts themselves).  Every printed derivative states its layout.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from handgrad.errors import UserError
from handgrad.notation.tolerance import RTOL, verdict
from handgrad.params import flatten
from handgrad.present.rules import md_text, rule_latex, rule_markdown, tex_text
from handgrad.verify.steps import (
    PROBE_SEED,
    Derivation,
    Step,
    Verdict,
    compare,
    inner,
    judge_points,
    param_namer,
    points,
    random_direction,
    relative,
)

# ---------------------------------------------------------------- running a derivation

def _applies(derivation: Derivation, problem) -> bool:
    """False when every line raises KeyError at the problem: it is about parameters this
    derivation does not use (another parametrisation of the model)."""
    label, P, D, hp = problem
    dP = random_direction(P, 0)
    for step in derivation.steps:
        try:
            step.fn(P, D, dP, hp)
        except KeyError:
            continue
        except Exception:  # noqa: BLE001 - judged (as an evaluation error) later
            return True
        return True
    return False


def run_derivation(derivation: Derivation, problems: Sequence, loss: Callable, *, seed: int = 0,
                   rtol: float = RTOL) -> dict:
    """Verify every step of ``derivation`` at every problem (label, params, data, hp) and at
    2 random moves of each problem's variables, along 2 directions from handgrad's own
    stream, by the one rule (handgrad.notation.tolerance).

    ``loss(params, data, **hp)`` is the reference.  Returns a JSON-ready dict with one
    entry per line: its verdict (verified, inconclusive, failed, error), the worst residual
    (in units of its terms' size), and the trials that were not verified."""
    skip = [not _applies(derivation, p) for p in problems]
    if all(skip):
        skip = [False] * len(problems)
    used = [p for p, s in zip(problems, skip) if not s]
    skipped = [p[0] for p, s in zip(problems, skip) if s]
    pts, redrawn = points(used, loss, seed=seed, symmetric=derivation.symmetric)
    trials = judge_points(derivation, loss, pts, seed=seed)
    steps = []
    for i, (step, ts) in enumerate(zip(derivation.steps, trials), start=1):
        v, t = verdict(ts)
        bad = [x for x in ts if x.status in ("fail", "error")]
        steps.append({
            "line": i, "kind": step.kind, "text": step.text, "latex": step.latex, "why": step.why,
            "source": step.source, "verdict": v, "ok": v == "verified",
            "residual": max((relative(x) for x in ts if x.status != "error"), default=0.0)
            if v != "error" else math.inf,
            "tol": rtol, "reason": "" if v == "verified" or t is None else (t.reason or ""),
            "failures": [{"problem": x.point, "residual": relative(x), "reason": x.reason or "",
                          "verdict": "error" if x.status == "error" else "failed"} for x in bad],
        })
    failed = [s["line"] for s in steps if s["verdict"] == "failed"]
    errors = [s["line"] for s in steps if s["verdict"] == "error"]
    inconclusive = [s["line"] for s in steps if s["verdict"] == "inconclusive"]
    first = steps[failed[0] - 1] if failed else None
    first_err = steps[errors[0] - 1] if errors else None
    overall = ("failed" if failed else "error" if errors else
               "inconclusive" if inconclusive else "verified")
    ok = not failed and not errors and bool(steps) and steps[-1]["verdict"] == "verified"
    return {
        "format": "python", "text_checked": False,  # a Python step's text is not parsed
        "title": derivation.title, "target": derivation.target, "layout": derivation.layout,
        "reference": ("torch.func.jvp of the loss (value lines: the loss itself)"
                      if derivation.target == "loss" else "torch.func.jvp of torch.func.grad of the loss"),
        "assumptions": list(derivation.assumptions), "ok": ok, "verdict": overall,
        "failed_lines": failed, "error_lines": errors, "inconclusive_lines": inconclusive,
        "problems": [p[0] for p in used], "skipped_problems": skipped,
        "points": [p.label for p in pts], "redrawn": redrawn,
        "first_failed_line": failed[0] if failed else None,
        "first_failed_source": first["source"] if first else None,
        "first_error_line": errors[0] if errors else None,
        "first_error_source": first_err["source"] if first_err else None,
        "steps": steps,
    }


def _symmetric_inputs(params: dict, data) -> list[str]:
    """Names of square 2-D inputs that are symmetric (they would hide a transpose).

    Pass params={} to look at the data only (a model's symmetric parameter, such as a
    covariance, is symmetric by construction and is checked by its own convention)."""
    found = []
    tensors = dict(params)
    if hasattr(data, "X"):
        tensors["X"] = data.X
    elif isinstance(data, dict):
        tensors.update({k: v for k, v in data.items() if isinstance(v, torch.Tensor)})
    for name, t in tensors.items():
        if (isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[0] == t.shape[1] > 1
                and t.is_floating_point() and torch.allclose(t, t.mT)):
            found.append(name)
    return found


def _final_is_fitted(entry, derivation: Derivation, problem, seed: int) -> bool | None:
    """Does the last line equal the registered gradient (or Hessian) that `fit` uses?"""
    label, params, data, hp = problem
    dP = random_direction(params, seed)
    last = derivation.steps[-1]
    try:
        got = torch.as_tensor(last.fn(params, data, dP, hp))
        if derivation.target == "loss":
            want = inner(entry.gradient(params, data, **hp), dP)
        elif entry.has_hessian:
            want = entry.hessian(params, data, **hp) @ flatten(dP)
        else:
            return None
        return compare(got.reshape(-1), want.reshape(-1), rtol=RTOL).ok
    except Exception:
        return False


def derive_entry(entry, *, seed: int = 0, device="cpu", rtol: float = RTOL) -> dict:
    """Every derivation a registry entry holds, verified at its check problems."""
    spec = entry.derivation
    report = {"model": entry.name, "title": entry.title, "seed": seed, "source": None,
              "derivations": [], "problems": [], "notes": [], "ok": True,
              "has_derivation": spec.derivations is not None or spec.notation is not None}
    if not report["has_derivation"]:
        report["notes"].append(f"{spec.module.__name__} defines no derivations(): "
                               "no step-by-step derivation to check (its gradient is still "
                               "checked by `check`)")
        return report
    problems = entry.model.check_problems(seed, torch.float64, device)
    report["problems"] = [p[0] for p in problems]
    for label, _, data, _ in problems:
        sym = _symmetric_inputs({}, data)
        if sym:
            report["notes"].append(f"problem {label}: symmetric input(s) {', '.join(sym)} "
                                   "(a symmetric matrix hides a transpose)")
    if spec.notation is not None:
        from handgrad.verify import in_notation

        for one in spec.notation:
            report["derivations"].append(in_notation.derive(entry, one, spec.module, problems, seed=seed))
    derivations = entry.derivations()
    for d in derivations:
        rep = run_derivation(d, problems, entry.loss, seed=seed, rtol=rtol)
        applies = [p for p in problems if p[0] in rep["problems"]] or problems
        rep["final_line_is_fitted"] = _final_is_fitted(entry, d, applies[0], seed)
        report["derivations"].append(rep)
    report["ok"] = all(d["ok"] for d in report["derivations"])
    if not report["derivations"]:
        report["notes"].append("derivations() returned no derivation")
    return report


def derive_models(names: Sequence[str], *, seed: int = 0) -> dict:
    from handgrad import registry

    reports = {n: derive_entry(registry.get(n), seed=seed) for n in names}
    return {"models": reports, "ok": all(r["ok"] for r in reports.values()), "seed": seed}


# ---------------------------------------------------------------- user derivation files

FILE_FORMAT = """\
A derivation file is Python.  Required names:
  loss(P, D) -> scalar tensor          the function, in plain torch (the reference)
  inputs(seed) -> (P, D)               P: dict name -> float64 tensor (the variables),
                                       D: anything the steps need (constants)
  STEPS = [...]                        each Step(text, latex, fn, why) from handgrad.verify.steps,
                                       or a tuple (text, latex, fn[, why[, kind]]);
                                       fn(P, D, dP) (or fn(P, D, dP, hp)) gives the line's
                                       value for a direction dP (same keys as P)
Optional: TITLE, LAYOUT, TARGET ("loss": lines are df; "gradient": lines are d(grad f)),
  ASSUMPTIONS (list of str), gradient(P, D) -> dict like P (checked entry by entry
  against torch.func.grad), SEEDS (default (0, 1, 2)), SYMMETRIC (names of square
  variables that are symmetric, as `sym` in the notation: their moves and directions are
  symmetric; undeclared, a variable is moved and differentiated in every direction).
Every line is judged at each inputs(seed) point and at 2 random moves of its variables P
(a move where the loss is not finite is redrawn, and said), along 2 directions handgrad
draws from its own stream, by the notation's rule: tolerance scaled to the terms' size at
the point, "inconclusive" at rounding level, an exception in a line an evaluation error."""


@dataclass
class UserDerivation:
    path: str
    title: str
    derivation: Derivation
    loss: Callable
    inputs: Callable
    gradient: Callable | None = None
    seeds: tuple = (0, 1, 2)
    notes: list = field(default_factory=list)


def _where(path: str, exc: BaseException) -> str:
    """'line N' of the deepest traceback frame inside the user's file."""
    line = None
    for fr in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(fr.filename) == os.path.abspath(path):
            line = fr.lineno
    return f", line {line}" if line else ""


def _bad(path: str, msg: str) -> UserError:
    return UserError(f"{path}: {msg}")


def _arity(fn: Callable) -> int | None:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind in (p.VAR_POSITIONAL,) for p in params):
        return None
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               and p.default is p.empty)


def _display_path(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _as_step(path: str, i: int, item) -> Step:
    if isinstance(item, Step):
        fn, step = item.fn, item
    elif isinstance(item, (tuple, list)) and 3 <= len(item) <= 5:
        text, latex, fn = item[:3]
        why = item[3] if len(item) > 3 else ""
        kind = item[4] if len(item) > 4 else "differential"
        if not isinstance(text, str) or not isinstance(latex, str) or not isinstance(why, str):
            raise _bad(path, f"STEPS[{i}]: text, latex and why must be strings")
        if kind not in ("value", "differential"):
            raise _bad(path, f"STEPS[{i}]: kind must be 'value' or 'differential', not {kind!r}")
        src = ""
        code = getattr(fn, "__code__", None)
        if code is not None:
            src = f"{_display_path(code.co_filename)}:{code.co_firstlineno}"
        step = Step(text, latex, fn, why, kind, source=src)
    else:
        raise _bad(path, f"STEPS[{i}] should be Step(text, latex, fn, why) or a tuple "
                         f"(text, latex, fn[, why[, kind]]); got {type(item).__name__}")
    if not callable(fn):
        raise _bad(path, f"STEPS[{i}]: fn is not callable ({type(fn).__name__})")
    n = _arity(fn)
    if n == 3:
        user_fn = fn
        step = Step(step.text, step.latex, lambda P, D, dP, hp, f=user_fn: f(P, D, dP), step.why,
                    step.kind, source=step.source)
    elif n not in (4, None):
        raise _bad(path, f"STEPS[{i}]: fn takes {n} arguments; write fn(P, D, dP) "
                         "(or fn(P, D, dP, hp))")
    return step


def load_user_file(path: str) -> UserDerivation:
    """Load and validate a derivation file; every problem is a UserError (exit 2, one line)."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file (derive --file expects a Python derivation file)")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, not a derivation file")
    if not path.endswith(".py"):
        raise UserError(f"{path}: a derivation file must be Python (.py); "
                        "see examples/my_derivation.py")
    try:
        with open(path, encoding="utf-8") as fh:
            source = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    try:
        code = compile(source, path, "exec")
    except SyntaxError as exc:
        raise UserError(f"{path}, line {exc.lineno}: syntax error: {exc.msg}") from None
    name = "handgrad_user_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
    spec = importlib.util.spec_from_loader(name, loader=None, origin=path)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = path
    try:
        exec(code, module.__dict__)  # the user's own file, run as a script would be
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{path}{_where(path, exc)}: {type(exc).__name__} while loading"
                        + (f": {msg}" if msg else "")) from None
    ns = module.__dict__
    missing = [k for k in ("loss", "inputs", "STEPS") if k not in ns]
    if missing:
        raise _bad(path, f"missing {', '.join(missing)}: a derivation file defines loss(P, D), "
                         "inputs(seed) and STEPS (see examples/my_derivation.py)")
    for k in ("loss", "inputs"):
        if not callable(ns[k]):
            raise _bad(path, f"{k} must be a function, not {type(ns[k]).__name__}")
    steps_in = ns["STEPS"]
    if not isinstance(steps_in, (list, tuple)) or not steps_in:
        raise _bad(path, "STEPS must be a non-empty list of steps")
    steps = [_as_step(path, i, s) for i, s in enumerate(steps_in)]
    target = ns.get("TARGET", "loss")
    if target not in ("loss", "gradient"):
        raise _bad(path, f"TARGET must be 'loss' or 'gradient', not {target!r}")
    title = str(ns.get("TITLE", os.path.basename(path)))
    layout = str(ns.get("LAYOUT", "denominator: df/dX has the shape of X"))
    assumptions = ns.get("ASSUMPTIONS", [])
    if not isinstance(assumptions, (list, tuple)) or not all(isinstance(a, str) for a in assumptions):
        raise _bad(path, "ASSUMPTIONS must be a list of strings")
    gradient = ns.get("gradient")
    if gradient is not None and not callable(gradient):
        raise _bad(path, "gradient must be a function gradient(P, D) -> dict")
    seeds = ns.get("SEEDS", (0, 1, 2))
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or not all(isinstance(s, int) for s in seeds)):
        raise _bad(path, "SEEDS must be a non-empty list of ints")
    symmetric = ns.get("SYMMETRIC", ())
    if (not isinstance(symmetric, (list, tuple)) or not all(isinstance(k, str) for k in symmetric)):
        raise _bad(path, "SYMMETRIC must be a list of variable names")
    deriv = Derivation(title, target, layout, steps, list(assumptions), tuple(symmetric))
    return UserDerivation(path, title, deriv, ns["loss"], ns["inputs"], gradient, tuple(seeds))


def _user_problems(ud: UserDerivation) -> list:
    problems = []
    for s in ud.seeds:
        try:
            out = ud.inputs(s)
        except Exception as exc:
            raise _bad(ud.path, f"inputs({s}) raised {type(exc).__name__}{_where(ud.path, exc)}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        if not (isinstance(out, tuple) and len(out) == 2):
            raise _bad(ud.path, f"inputs({s}) must return a pair (P, D), got {type(out).__name__}")
        P, D = out
        if not isinstance(P, dict) or not P:
            raise _bad(ud.path, f"inputs({s}): P must be a non-empty dict name -> tensor")
        for k, v in P.items():
            if not isinstance(v, torch.Tensor) or not v.is_floating_point():
                raise _bad(ud.path, f"inputs({s}): P[{k!r}] must be a floating-point tensor")
        P = {k: v.to(torch.float64) for k, v in P.items()}
        odd = [k for k in ud.derivation.symmetric if k not in P or P[k].dim() != 2
               or P[k].shape[0] != P[k].shape[1] or not torch.equal(P[k], P[k].mT)]
        if odd:
            raise _bad(ud.path, f"SYMMETRIC names {odd[0]!r}, but inputs({s}) gives no symmetric "
                                "square matrix by that name in P")
        try:
            value = ud.loss(P, D)
        except Exception as exc:
            raise _bad(ud.path, f"loss(P, D) raised {type(exc).__name__}{_where(ud.path, exc)}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise _bad(ud.path, "loss(P, D) must return a scalar tensor, got "
                                + (f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                                   else type(value).__name__))
        problems.append((f"seed {s}", P, D, {}))
    return problems


def _user_gradient_check(ud: UserDerivation, problems) -> dict:
    """gradient(P, D) against torch.func.grad of the loss, entry by entry, at the points the
    steps are judged at (each given point and its moves), by the one rule: the scale is the
    rounding scale of both (handgrad.notation.tolerance.sensitivity)."""
    from handgrad.notation.tolerance import sensitivity

    def loss(P, D, **_):
        return ud.loss(P, D)
    pts, _ = points(problems, loss, symmetric=ud.derivation.symmetric)
    gen = torch.Generator().manual_seed(PROBE_SEED)
    verdicts = []
    for pt in pts:
        P, D = pt.params, pt.data
        try:
            G = ud.gradient(P, D)
            if not isinstance(G, dict) or set(G) != set(P):
                raise ValueError(f"gradient(P, D) must return a dict with keys {sorted(P)}")
            shapes = [k for k in P if tuple(torch.as_tensor(G[k]).shape) != tuple(P[k].shape)]
            if shapes:
                k = shapes[0]
                v = Verdict(False, math.inf, RTOL, f"shape mismatch: gradient[{k!r}] is "
                            f"{tuple(torch.as_tensor(G[k]).shape)}, {k} is {tuple(P[k].shape)}")
            else:
                def truth_fn(P, D):
                    return flatten(torch.func.grad(lambda p: ud.loss(p, D))(P))

                def hand_fn(P, D):
                    G = ud.gradient(P, D)
                    return torch.cat([torch.as_tensor(G[k], dtype=torch.float64).reshape(-1) for k in P])
                truth, got = truth_fn(P, D).detach(), hand_fn(P, D).detach()
                scale = (sensitivity(truth_fn, (P, D), truth, gen) + sensitivity(hand_fn, (P, D), got, gen)
                         + got.abs())
                v = compare(got, truth, rtol=RTOL, namer=param_namer(P), scale=scale)
        except Exception as exc:  # noqa: BLE001 - reported as the reason
            v = Verdict(False, math.inf, RTOL, f"{type(exc).__name__}: {exc}".splitlines()[0])
        verdicts.append((pt.label, v))
    bad = [(label, v) for label, v in verdicts if not v.ok]
    return {"ok": not bad, "residual": max(v.residual for _, v in verdicts), "tol": RTOL,
            "reference": "torch.func.grad of loss", "points": [label for label, _ in verdicts],
            "failures": [{"problem": label, "reason": v.reason, "worst": v.worst} for label, v in bad]}


def derive_file(path: str) -> dict:
    ud = load_user_file(path)
    problems = _user_problems(ud)
    report = {"model": None, "title": ud.title, "source": path, "seed": list(ud.seeds),
              "problems": [p[0] for p in problems], "notes": [], "has_derivation": True}
    for label, P, D, _ in problems:
        sym = _symmetric_inputs(P, D)
        if sym:
            report["notes"].append(f"{label}: symmetric input(s) {', '.join(sym)} "
                                   "(a symmetric matrix hides a transpose; use random non-symmetric ones)")
    try:
        rep = run_derivation(ud.derivation, problems, lambda P, D, **_: ud.loss(P, D))
    except Exception as exc:  # the reference itself: jvp of the user's loss
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise _bad(path, f"torch.func.jvp cannot differentiate loss(P, D){_where(path, exc)}: "
                         f"{type(exc).__name__}: {msg}") from None
    rep["final_line_is_fitted"] = None
    report["derivations"] = [rep]
    if ud.gradient is not None:
        report["gradient_check"] = _user_gradient_check(ud, problems)
    report["ok"] = rep["ok"] and report.get("gradient_check", {"ok": True})["ok"]
    return report


def expression_report(expr: str, let: str, wrt: str, *, hessian: bool = False,
                      emit: str | None = None, at_path: str | None = None) -> dict:
    """``derive --expr EXPR --let DECLS --wrt VARS [--hessian] [--emit torch] [--at F]``: the
    object its --json prints (``serve`` returns the same).  Bad input is a UserError whose
    message is one line."""
    from handgrad import notation
    from handgrad.notation.auto import derive_expression, emit_torch

    if not wrt:
        raise UserError("--expr needs --wrt (the variables to differentiate by, e.g. --wrt X).")
    try:
        out = derive_expression(expr, let or "", wrt, hessian=hessian)
        code = emit_torch(out) if emit else None
        if at_path:
            from handgrad.notation.auto_at import at

            out = at(out, notation.parse_text(out["hg"], path="<derived>"), at_path)
    except notation.NotationError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    if code is not None:
        out["torch"] = code
    out["path"] = f"wrt {wrt}"
    return out


def text_report(text: str, path: str, *, at_path: str | None = None) -> dict:
    """``derive --file F.hg [--at F.npz]`` on the file's text: the object its --json prints
    (``serve`` returns the same for a pasted derivation; ``path`` only names it)."""
    from handgrad import notation

    try:
        derivation = notation.parse_text(text, path=str(path))
        out = notation.verify(derivation)
        if at_path:
            from handgrad.notation.auto_at import at

            out = at(out, derivation, at_path)
    except notation.NotationError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    return out


# ---------------------------------------------------------------- identities and errata

def _claims_verdict(claims) -> dict:
    """ok when every claim is verified; else the first claim that is not, with its reason."""
    from handgrad.notation.claims import check as check_claim

    res = [check_claim(c) for c in claims]
    bad = next((r for r in res if r["verdict"] != "verified"), None)
    worst = bad or max(res, key=lambda r: r["residual"] / max(r["tol"], 1e-300))
    return {"ok": bad is None, "verdict": worst["verdict"], "residual": worst["residual"],
            "tol": worst["tol"], "reason": worst["reason"]}


def identities_report() -> dict:
    """Every catalog entry and erratum, checked by handgrad.notation.claims."""
    from handgrad.notation.claims import POINTS, declarations
    from handgrad.verify.errata import ERRATA
    from handgrad.verify.identities import CATALOG, GROUPS

    entries = []
    for e in CATALOG:
        head = {"key": e.key, "group": e.group, "text": e.text, "latex": e.latex,
                "layout": e.layout, "reference": e.reference, "source": e.source, "note": e.note,
                "text_checked": True,  # parsed claims, checked by the notation's verifier
                "let": " | ".join(dict.fromkeys(declarations(c.decls) for c in e.claims))}
        v = _claims_verdict(e.claims)
        entries.append({**head, "verdict": v["verdict"], "verified": v["ok"],
                        "residual": v["residual"], "tol": v["tol"], "reason": v["reason"]})
    errata = []
    for e in ERRATA:
        w, r = _claims_verdict(e.wrong_claims), _claims_verdict(e.right_claims)
        errata.append({
            "key": e.key, "notes": notes_part(e.where), "kind": e.kind, "layout": e.layout,
            "note": e.note, "reference": e.reference, "text_checked": True,
            "wrong": {"text": e.wrong_text, "latex": e.wrong_latex, "rejected": not w["ok"],
                      "reason": w["reason"], "residual": w["residual"]},
            "right": {"text": e.right_text, "latex": e.right_latex, "accepted": r["ok"],
                      "residual": r["residual"], "reason": r["reason"]},
            "ok": (not w["ok"]) and r["ok"],
        })
    return {
        "count": len(entries), "verified": sum(e["verified"] for e in entries),
        "in_notation": sum(e["text_checked"] for e in entries),
        "groups": {g: sum(e["group"] == g for e in entries) for g in GROUPS},
        "points": POINTS, "entries": entries,
        "errata": errata, "errata_count": len(errata),
        "ok": all(e["verified"] for e in entries) and all(e["ok"] for e in errata),
    }


# ---------------------------------------------------------------- formatting

def marks(ascii_only: bool = False) -> tuple[str, str]:
    return ("ok", "FAIL") if ascii_only else ("\u2713", "\u2717")


def _reports(obj: dict) -> list[dict]:
    return list(obj["models"].values()) if "models" in obj else [obj]


def _header(rep: dict) -> str:
    if rep.get("model"):
        return f"{rep['model']}: {rep['title']}"
    return f"{rep['title']} ({rep['source']})"


def _checked_at(rep: dict) -> str:
    if rep.get("model"):
        where = f"check_problems(seed={rep['seed']})"
    else:
        where = "inputs(seed) for seeds " + ", ".join(str(s) for s in rep["seed"])
    n = len(rep["problems"])
    moved = sum(len(d.get("points") or []) for d in rep["derivations"] if d.get("format") == "python")
    moved = max(moved - n, 0) // max(sum(d.get("format") == "python" for d in rep["derivations"]), 1)
    return (f"checked at {n} problem{'s' if n != 1 else ''} from {where} ({'; '.join(rep['problems'])})"
            + (f" and {moved} random moves of their variables" if moved else "")
            + ", 2 random directions each from handgrad's own stream (not the inputs' stream)")


def _failure_line(s: dict) -> str:
    fails = [f for f in s["failures"] if f.get("verdict", "failed") == s["verdict"]] or s["failures"]
    where = f" ({s['source']})" if s["source"] else ""
    if not fails:  # inconclusive: the reason, no failure
        return f"line {s['line']}{where} inconclusive: {s['reason']}"
    f = max(fails, key=lambda f: f["residual"])  # the worst trial
    more = f" (and {len(fails) - 1} more trials)" if len(fails) > 1 else ""
    head = "not evaluated (an error, not a wrong line)" if s["verdict"] == "error" else "FAILED"
    return f"line {s['line']}{where} {head}: {f['reason']}{more}"


def _first_failed(d: dict) -> str:
    out = ""
    if d.get("first_failed_line"):
        src = f" ({d['first_failed_source']})" if d["first_failed_source"] else ""
        out += (f"; the first wrong line is {d['first_failed_line']}{src}"
                " (the lines after it may only carry the mistake forward)")
    if d.get("first_error_line"):
        src = f" ({d['first_error_source']})" if d["first_error_source"] else ""
        out += f"; line {d['first_error_line']}{src} raised an error (fix it to have it judged)"
    return out


def _counts(d: dict) -> str:
    n = len(d["steps"])
    ok = sum(s["verdict"] == "verified" for s in d["steps"])
    extra = [f"{len(d.get(k) or [])} {w}" for k, w in (("inconclusive_lines", "inconclusive"),
                                                       ("error_lines", "evaluation error(s)"))
             if d.get(k)]
    return f"{ok}/{n} lines evaluated and agree" + (f" ({', '.join(extra)})" if extra else "")


PY_MARKS = {"verified": "~", "inconclusive": "?", "failed": None, "error": "!"}


def _py_mark(s: dict, bad_mark: str) -> str:
    return PY_MARKS.get(s.get("verdict", "verified" if s["ok"] else "failed")) or bad_mark


EVALUATED = "~"  # a Python step that agreed: its formula ran, its printed text is not parsed
EVALUATED_NOTE = ("~ evaluated; text not checked: a Python step's formula ran and agreed, but its "
                  "printed text is free text, not parsed (write it in the notation, a .hg file, "
                  "to have the text itself checked)")


def _all_python(obj: dict) -> list[dict]:
    return [d for rep in _reports(obj) for d in rep.get("derivations") or [] if d.get("format") == "python"]


def _why_not_ok(obj: dict) -> str:
    """'failed' when some line (or link, or gradient) is wrong, else 'error' or 'inconclusive'."""
    kinds = set()
    for rep in _reports(obj):
        if not (rep.get("gradient_check") or {"ok": True})["ok"]:
            kinds.add("failed")
        for d in rep.get("derivations") or []:
            if d.get("ok"):
                continue
            link_bad = "link" in d and not d["link"]["ok"]
            v = d.get("verdict")
            kinds.add("failed" if link_bad or v not in ("error", "inconclusive", "verified") else
                      "inconclusive" if v == "verified" else v)
    return "failed" if "failed" in kinds or not kinds else "error" if "error" in kinds else "inconclusive"


def _verdict_line(obj: dict) -> str:
    if not obj["ok"]:
        why = _why_not_ok(obj)
        if why == "error":
            return "DERIVATION NOT VERIFIED: a line could not be evaluated (an error, not a wrong line)"
        if why == "inconclusive":
            return "DERIVATION NOT VERIFIED: inconclusive (no line is wrong; too few conclusive points)"
        return "DERIVATION CHECK FAILED"
    py = _all_python(obj)
    if not py:
        return "all lines verified"
    n = sum(len(d["steps"]) for d in py)
    unsure = sum(len(d.get("inconclusive_lines") or []) for d in py)
    if unsure:
        return (f"no line disagrees with autograd; {unsure} Python line(s) inconclusive (rounding level "
                "at every point), the others evaluated and agree; their text is not checked")
    return (f"every line agrees with autograd; {n} Python line(s) evaluated, their text not checked"
            if len(py) < sum(len(r.get("derivations") or []) for r in _reports(obj))
            else "all lines evaluated and agree; their text is not checked (Python steps)")


def _link_lines(d: dict, ok_mark: str, bad_mark: str) -> list[str]:
    lk = d["link"]
    n = len(lk["problems"])
    out = [f"  linked to the model at {n} check problem{'s' if n != 1 else ''} "
           f"({'; '.join(lk['problems'])}), tol {lk['rtol']:.0e} relative to the terms' size:"]
    for r in lk["rows"]:
        res = "error" if math.isinf(r["residual"]) else f"{r['residual']:.1e}"
        out.append(f"    {ok_mark if r['ok'] else bad_mark} {r['line']}")
        out.append(f"        is {r['what']}: " + ("yes" if r["ok"] else "NO")
                   + f" (largest difference {res}"
                   + (f"; fails at {', '.join(str(f['problem']) for f in r['failures'])}"
                      if r["failures"] else "") + ")")
    if lk["skipped_problems"]:
        why = " or ".join(lk.get("skipped_because") or ["another parametrisation"])
        out.append(f"    not linked at {', '.join(lk['skipped_problems'])} ({why}: another file's)")
    return out


def _notation_text(d: dict, ascii_only: bool) -> list[str]:
    from handgrad.notation.report import format_text as notation_text

    ok_mark, bad_mark = marks(ascii_only)
    lines = ["  " + x for x in notation_text(d).split("\n")] + _link_lines(d, ok_mark, bad_mark)
    if ascii_only:
        lines = [x.replace("\u2713", "ok").replace("\u2717", "FAIL").replace("\u2297", "(x)")
                 .encode("ascii", "replace").decode("ascii") for x in lines]
    return lines


def format_text(obj: dict, *, ascii_only: bool = False) -> str:
    ok_mark, bad_mark = marks(ascii_only)
    out = []
    for rep in _reports(obj):
        out.append(_header(rep))
        for note in rep["notes"]:
            out.append(f"  note: {note}")
        if not rep["derivations"]:
            out.append("")
            continue
        for d in rep["derivations"]:
            out.append("")
            if d.get("format") == "notation":
                out += _notation_text(d, ascii_only)
                continue
            out.append("  " + _checked_at(rep))
            out.append(f"  {d['title']}")
            out.append(f"  layout: {d['layout']}")
            out.append(f"  each line vs {d['reference']}, tol {d['steps'][0]['tol']:.0e} (relative)")
            for s in d["steps"]:
                mark = _py_mark(s, bad_mark)
                res = "  error " if math.isinf(s["residual"]) else f"{s['residual']:.1e}"
                out.append(f"  {s['line']:>3} {mark:<4} {res:>8}  {s['text']}")
                if s["why"]:
                    out.append(f"  {'':>3} {'':<4} {'':>8}    [{s['why']}]")
            for a in d["assumptions"]:
                out.append(f"  assumption: {a}")
            if d.get("final_line_is_fitted") is not None:
                out.append("  last line = the gradient/Hessian `fit` uses: "
                           + ("yes" if d["final_line_is_fitted"] else "NO"))
            for note in d.get("redrawn") or []:
                out.append(f"  redrawn: {note}")
            for s in d["steps"]:
                if not s["ok"]:
                    out.append("  " + _failure_line(s))
            out.append("  " + _counts(d) + _first_failed(d))
            out.append(f"  {EVALUATED_NOTE}")
        gc = rep.get("gradient_check")
        if gc:
            out.append("")
            out.append(f"  gradient(P, D) vs {gc['reference']}: "
                       + (f"{ok_mark} residual {gc['residual']:.1e}" if gc["ok"]
                          else f"{bad_mark} {gc['failures'][0]['reason']}"))
        out.append("")
    out.append(_verdict_line(obj))
    return "\n".join(out)


def format_markdown(obj: dict) -> str:
    ok_mark, bad_mark = marks()
    out = []
    for rep in _reports(obj):
        out.append(f"## {_md(_header(rep))}")
        out.append("")
        for note in rep["notes"]:
            out.append(f"> note: {_md(note)}")
            out.append("")
        if not rep["derivations"]:
            continue
        for d in rep["derivations"]:
            if d.get("format") == "notation":
                from handgrad.notation.report import format_markdown as notation_md

                out.append(notation_md(d))
                out += [_md(x.strip()) + "  " for x in _link_lines(d, ok_mark, bad_mark)] + [""]
                continue
            out.append(_md(_checked_at(rep)) + ".")
            out.append("")
            out.append(f"### {_md(d['title'])}")
            out.append("")
            out.append(f"*Layout:* {_md(d['layout'])}.  *Each line checked against* "
                       f"{_md(d['reference'])}, relative tolerance {d['steps'][0]['tol']:.0e}.")
            out.append("")
            for s in d["steps"]:
                mark = {"verified": "~ evaluated, text not checked", "inconclusive": "? inconclusive",
                        "error": "! evaluation error"}.get(s.get("verdict", ""), f"{bad_mark} **FAILED**")
                res = "error" if math.isinf(s["residual"]) else f"{s['residual']:.1e}"
                why = f" — {rule_markdown(s['why'])}" if s["why"] else ""  # formulas typeset
                out.append(f"{s['line']}. {mark} residual `{res}`{why}")
                out.append("")
                out.append(f"   $${s['latex']}$$")
                out.append("")
            for a in d["assumptions"]:
                out.append(f"*Assumption:* {_md(a)}")
                out.append("")
            for note in d.get("redrawn") or []:
                out.append(f"*Redrawn:* {_md(note)}.")
                out.append("")
            if d.get("final_line_is_fitted") is not None:
                out.append("The last line is the gradient/Hessian that `fit` uses: "
                           + ("**yes**." if d["final_line_is_fitted"] else "**NO**."))
                out.append("")
            for s in d["steps"]:
                if not s["ok"]:
                    out.append(f"**{_md(_failure_line(s))}**")
                    out.append("")
            if not d["ok"]:
                out.append(_md(_first_failed(d)[2:]).capitalize() + ".")
                out.append("")
        gc = rep.get("gradient_check")
        if gc:
            out.append(f"`gradient(P, D)` vs {gc['reference']}: "
                       + (f"{ok_mark} residual `{gc['residual']:.1e}`" if gc["ok"]
                          else f"{bad_mark} {_md(gc['failures'][0]['reason'])}"))
            out.append("")
    if _all_python(obj):
        out += [_md(EVALUATED_NOTE) + ".", ""]
    out.append(f"**{_md(_verdict_line(obj)).capitalize()}.**")
    return "\n".join(out) + "\n"


def _md(s: str) -> str:
    """Plain text in Markdown, | escaped too (one escaper with the rule texts')."""
    return md_text(s, bar=True)


tex_escape = tex_text  # plain text for LaTeX: one escaper with the rule texts'


LATEX_PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage{amsmath,amssymb}
\usepackage[margin=2cm]{geometry}
\allowdisplaybreaks
\begin{document}
"""


def format_latex(obj: dict) -> str:
    out = [LATEX_PREAMBLE]
    for rep in _reports(obj):
        out.append(r"\section*{" + tex_escape(_header(rep)) + "}")
        for note in rep["notes"]:
            out.append(r"\noindent\textit{Note:} " + tex_escape(note) + r"\par")
        if not rep["derivations"]:
            continue
        for d in rep["derivations"]:
            if d.get("format") == "notation":
                from handgrad.notation.report import latex_section

                out.append(latex_section(d).replace("\\section*", "\\subsection*", 1))
                out += [r"\noindent " + tex_escape(x.strip()) + r"\par"
                        for x in _link_lines(d, "\u2713", "\u2717")]
                continue
            out.append(r"\noindent " + tex_escape(_checked_at(rep)) + r".\par")
            out.append(r"\subsection*{" + tex_escape(d["title"]) + "}")
            out.append(r"\noindent\textit{Layout:} " + tex_escape(d["layout"])
                       + r". \textit{Each line checked against} " + tex_escape(d["reference"])
                       + f", relative tolerance ${_tex_num(d['steps'][0]['tol'])}$." + r"\par")
            out.append(r"\begin{enumerate}")
            for s in d["steps"]:
                mark = {"verified": r"evaluated, text not checked:", "inconclusive": r"inconclusive:",
                        "error": r"\textbf{evaluation error}"}.get(s.get("verdict", ""), r"\textbf{FAILED}")
                res = "error" if math.isinf(s["residual"]) else f"${_tex_num(s['residual'])}$"
                why = (r" \quad \textit{" + rule_latex(s["why"]) + "}") if s["why"] else ""
                out.append(r"\item " + mark + " residual " + res + why)
                out.append(r"\[ " + s["latex"] + r" \]")
            out.append(r"\end{enumerate}")
            for a in d["assumptions"]:
                out.append(r"\noindent\textit{Assumption:} " + tex_escape(a) + r"\par")
            if d.get("final_line_is_fitted") is not None:
                out.append(r"\noindent The last line is the gradient/Hessian that \texttt{fit} uses: "
                           + ("yes." if d["final_line_is_fitted"] else r"\textbf{no}.") + r"\par")
            for s in d["steps"]:
                if not s["ok"]:
                    out.append(r"\noindent\textbf{" + tex_escape(_failure_line(s)) + r"}\par")
            if not d["ok"]:
                out.append(r"\noindent " + tex_escape(_first_failed(d)[2:]).capitalize() + r".\par")
        gc = rep.get("gradient_check")
        if gc:
            out.append(r"\noindent\texttt{gradient(P, D)} vs " + tex_escape(gc["reference"]) + ": "
                       + (f"$\\checkmark$ residual ${_tex_num(gc['residual'])}$" if gc["ok"]
                          else r"\textbf{FAILED} " + tex_escape(gc["failures"][0]["reason"])) + r"\par")
    out.append(r"\bigskip\noindent\textbf{" + tex_escape(_verdict_line(obj)).capitalize() + ".}")
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def _tex_num(x: float) -> str:
    if x == 0:
        return "0"
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant} \\times 10^{{{int(exp)}}}"


def notes_part(where: str) -> str:
    """'002 §6 example 4' -> 'notes part 3 §6 example 4' (files 000-003 are parts 1-4)."""
    head, _, rest = where.partition(" ")
    if head.isdigit() and len(head) == 3:
        return f"notes part {int(head) + 1}" + (f" {rest}" if rest else "")
    return where


def format_identities(rep: dict, *, ascii_only: bool = False) -> str:

    ok_mark, bad_mark = marks(ascii_only)
    out = [f"{rep['count']} identities, each written in the notation: {rep['verified']} verified",
           f"{ok_mark} verified: the printed formula is the parsed one that was checked, at {rep['points']} "
           "points handgrad draws (sizes redrawn, generic values and directions), against torch.func; "
           "a rule about an abstract f or chain is checked on the instance its note names"]
    group = None
    for e in rep["entries"]:
        if e["group"] != group:
            group = e["group"]
            out += ["", f"{group} ({rep['groups'][group]})"]
        mark = ok_mark if e["verified"] else bad_mark
        out.append(f"  {mark:<4} {e['residual']:.1e}  {e['text']}")
        if e.get("let"):
            out.append(f"  {'':<4} {'':>7}    let {e['let']}")
        if e.get("note"):
            out.append(f"  {'':<4} {'':>7}    [{e['note']}]")
        out.append(f"  {'':<4} {'':>7}    layout: {e['layout']}; vs {e['reference']}")
        if not e["verified"]:
            out.append(f"  {'':<4} {'':>7}    REJECTED ({e['verdict']}): {e['reason']}")
    out += ["", f"the notes' errata ({rep['errata_count']}): the notes' statement, rejected with its "
                "reason, beside the correction, accepted"]
    for e in rep["errata"]:
        out.append("")
        out.append(f"  {e['key']}  [{e['notes']}; {e['kind']}]")
        w, r = e["wrong"], e["right"]
        out.append(f"    notes:   {w['text']}")
        out.append(f"             {'rejected' if w['rejected'] else 'NOT REJECTED'}: {w['reason']}")
        out.append(f"    correct: {r['text']}")
        verdict = (ok_mark + " verified") if r["accepted"] else bad_mark + " " + r["reason"]
        out.append(f"             {verdict}"
                   + (f", residual {r['residual']:.1e}" if r["accepted"] else ""))
        out.append(f"    layout: {e['layout']}; why: {e['note']}")
    out += ["", f"{rep['verified']} identities verified in the notation, every erratum rejected and its "
                "correction accepted" if rep["ok"] else "IDENTITY CHECK FAILED"]
    return "\n".join(out)


def stdout_is_unicode() -> bool:
    enc = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "\u2713\u2717".encode(enc)
        return True
    except (UnicodeEncodeError, LookupError):
        return False
