"""Derivations as Python steps, judged by the one verifier core.

A :class:`Derivation` is an ordered list of :class:`Step`.  Every step is a claim about
the same quantity, written differently:

* ``target="loss"``: a step of kind "value" restates l itself; a step of kind
  "differential" is a formula for dl along a direction dP (a scalar).  The true value
  is torch.func.jvp of the loss.
* ``target="gradient"``: each step is a formula for d(grad l) along dP (the Hessian
  derivation); the truth is jvp of torch.func.grad of the loss, flattened.

Each step carries its text (plain and LaTeX) and a torch function
``fn(P, D, dP, hp) -> Tensor`` giving that step's value at parameters P, data D and
direction dP.  A step remembers where it was written (``source``, "file:line").

A step's text is free text (not parsed), but its value is judged exactly as a parsed
line's (handgrad.notation.tolerance): at every given point and at random moves of its
variables (:func:`points`), along directions from handgrad's own stream (never the one a
user's ``inputs(seed)`` draws from), with the tolerance scaled to the terms' size at the
point (:func:`handgrad.notation.tolerance.sensitivity`, which grows with the conditioning);
rounding level is "inconclusive", an exception in a line an "evaluation error", and a
differential line is also checked to be linear in dP.

:func:`compare` is the comparison of one claimed tensor with the truth by the same rule
(a gradient function, a fitted last line), with a reason that names the worst entry.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from handgrad.notation.sampling import DIRECTION_SEED, PERTURB_SEED
from handgrad.notation.tolerance import FLOOR, RTOL, Trial, judge, sensitivity, tolerance
from handgrad.params import Params, flatten, slices

PROBE_SEED = 0x70726F62  # "prob": the relative moves that measure a step's rounding scale


def _caller_source() -> str:
    """'file:line' of the code that built the Step (skipping dataclass machinery)."""
    frame = sys._getframe(3)  # _caller_source <- __post_init__ <- __init__ <- caller
    while frame is not None and frame.f_code.co_filename.endswith(("dataclasses.py", "<string>")):
        frame = frame.f_back
    if frame is None:
        return ""
    path = frame.f_code.co_filename
    try:
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else path
    except ValueError:  # another drive (Windows)
        pass
    return f"{path}:{frame.f_lineno}"


@dataclass(frozen=True)
class Step:
    text: str
    latex: str
    fn: Callable
    why: str = ""  # the rule used, e.g. "product rule", "trace trick: tr(AB) = tr(BA)"
    kind: str = "differential"  # "value" | "differential"
    source: str = field(default="", compare=False)  # "file:line" where the step is written

    def __post_init__(self) -> None:
        if not self.source:
            object.__setattr__(self, "source", _caller_source())


@dataclass(frozen=True)
class Derivation:
    title: str
    target: str  # "loss" | "gradient"
    layout: str
    steps: list[Step]
    assumptions: list[str] = field(default_factory=list)
    symmetric: tuple[str, ...] = ()  # variables declared symmetric: moved and differentiated as such


@dataclass
class Verdict:
    """Result of :func:`compare`: ok, residual (max abs error over the tolerance's scale)."""

    ok: bool
    residual: float
    tol: float
    reason: str = ""
    worst: dict | None = None

    def as_dict(self) -> dict:
        return {"ok": self.ok, "residual": self.residual, "tol": self.tol,
                "reason": self.reason, "worst": self.worst}


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def compare(
    claimed,
    truth: torch.Tensor,
    *,
    rtol: float = RTOL,
    strict_shape: bool = True,
    namer: Callable[[int], str] | None = None,
    scale: torch.Tensor | None = None,
) -> Verdict:
    """Compare a claimed tensor with the truth, entry by entry, by the one tolerance rule
    (handgrad.notation.tolerance): |claimed - truth| <= rtol * s + FLOOR * max(s), with s
    the terms' size (``scale``, entrywise; by default |claimed|) plus |truth|.

    With ``strict_shape`` the shapes must agree exactly (a transposed non-square matrix has
    the right number of entries and the wrong shape); otherwise only the entry count must.
    A rejection says why: "shape mismatch: ..." or "worst entry [i, j]: claimed ..., truth
    ... (abs err ..., tol ...)".  ``namer`` maps a flat index to a label for the worst entry.
    The residual is the worst error in units of the scale (comparable with ``rtol``).
    """
    truth = torch.as_tensor(truth)
    claimed = torch.as_tensor(claimed, dtype=truth.dtype, device=truth.device)
    same = (tuple(claimed.shape) == tuple(truth.shape) if strict_shape
            else claimed.numel() == truth.numel())
    if not same:
        return Verdict(False, float("inf"), rtol,
                       f"shape mismatch: claimed {_shape(claimed)}, truth {_shape(truth)}")
    c, t = claimed.reshape(-1), truth.reshape(-1)
    if t.numel() == 0:
        return Verdict(True, 0.0, rtol)
    s = (c.abs() if scale is None else torch.as_tensor(scale, dtype=t.dtype).reshape(-1).abs()) + t.abs()
    s = torch.where(torch.isfinite(s), s, torch.zeros_like(s))
    tol = tolerance(s, rtol)
    err = (c - t).abs()
    err = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), err)
    ratio = err / tol.clamp_min(1e-300)
    k = int(torch.argmax(ratio))
    max_err = err[k].item()
    ok = bool((err <= tol).all())
    residual = float((err / (s + FLOOR * s.max()).clamp_min(1e-300)).max())
    where = namer(k) if namer else _index(k, tuple(truth.shape))
    worst = {"index": where, "claimed": c[k].item(), "truth": t[k].item(), "abs_err": max_err}
    what = f"worst entry {where}: claimed" if t.numel() > 1 else "claimed"
    reason = "" if ok else (
        f"{what} {_fmt(c[k].item())}, truth {_fmt(t[k].item())} "
        f"(abs err {max_err:.3g}, tol {tol[k].item():.3g})")
    if not ok and not torch.isfinite(c).all():
        bad = int((~torch.isfinite(c)).sum())
        reason = f"not finite: the claimed value has {bad} NaN/inf entries; " + reason
    return Verdict(ok, residual, rtol, reason, worst if t.numel() > 1 else None)


def _shape(t: torch.Tensor) -> str:
    return "scalar" if t.dim() == 0 else " x ".join(str(s) for s in t.shape)


def _index(k: int, shape: tuple[int, ...]) -> str:
    if len(shape) <= 1:
        return f"[{k}]"
    idx = []
    for s in reversed(shape):
        idx.append(k % s)
        k //= s
    return "[" + ", ".join(str(i) for i in reversed(idx)) + "]"


def param_namer(params: Params) -> Callable[[int], str]:
    """Flat index over the parameters (dict order) -> 'w[2]', 'W1[0, 3]', 'b'."""
    sl = slices(params)

    def name(k: int) -> str:
        for pname, s in sl.items():
            if s.start <= k < s.stop:
                shape = tuple(params[pname].shape)
                return pname + (_index(k - s.start, shape) if shape else "")
        return f"[{k}]"
    return name


def inner(G: Params, dP: Params) -> torch.Tensor:
    """tr(G^T dP) summed over parameters: the pairing that defines a gradient."""
    return sum((G[k] * dP[k]).sum() for k in dP)




# ---------------------------------------------------------------- the points and directions

def random_direction(params: Params, seed: int) -> Params:
    """A direction for every parameter from handgrad's own direction stream (never the
    stream a user's ``inputs(seed)`` draws from: along dX = X a wrong line can agree)."""
    g = torch.Generator().manual_seed(DIRECTION_SEED + seed)
    return {k: torch.randn(v.shape, generator=g, dtype=torch.float64).to(v.device, v.dtype)
            for k, v in params.items()}


def _props(v: torch.Tensor) -> str:
    """What a given value looks like, so its perturbation stays in the same set."""
    if v.dim() == 2 and v.shape[0] == v.shape[1] > 1 and torch.allclose(v, v.mT, rtol=0, atol=0):
        if int(torch.linalg.cholesky_ex(v)[1]) == 0:
            return "spd"
        return "sym"
    if v.numel() and bool((v > 0).all()):
        return "positive"
    return ""


def perturb_value(v: torch.Tensor, gen: torch.Generator, shrink: float = 1.0, keep: bool = False
                  ) -> torch.Tensor:
    """A generic point near ``v``: v + 0.3 s B, s its root-mean-square size (times ``shrink``),
    B randn, so a symmetric or otherwise special given value is not the only evidence.  With
    ``keep`` (when the generic move leaves the loss's domain) the move stays in the set ``v``
    appears to live in: positive definite, symmetric or entrywise positive."""
    b = torch.randn(v.shape, generator=gen, dtype=torch.float64).to(v.device, v.dtype)
    rms = v.pow(2).mean().sqrt().item() if v.numel() else 0.0
    s = 0.3 * shrink * (rms if rms > 0 else 1.0)
    kind = _props(v) if keep else ""
    if kind == "spd":
        return v + s * b @ b.mT / v.shape[0]
    if kind == "sym":
        return v + s * (b + b.mT) / 2
    if kind == "positive":
        return v * (0.3 * shrink * b).exp()
    return v + s * b


def _direction(v: torch.Tensor, gen: torch.Generator, symmetric: bool) -> torch.Tensor:
    b = torch.randn(v.shape, generator=gen, dtype=torch.float64).to(v.device, v.dtype)
    return (b + b.mT) / 2 if symmetric and v.dim() == 2 else b


@dataclass
class Point:
    label: str  # "seed 0", "seed 0, moved 1"
    problem: str  # the given problem it comes from
    params: Params
    data: object
    hp: dict


def _finite_loss(loss, P, D, hp) -> bool:
    try:
        v = loss(P, D, **hp)
        return bool(torch.isfinite(torch.as_tensor(v)).all())
    except Exception:  # noqa: BLE001 - a point where the loss cannot be evaluated is not used
        return False


def points(problems, loss, *, seed: int = 0, perturbations: int = 2, symmetric=()
           ) -> tuple[list[Point], list[str]]:
    """Each given problem, then ``perturbations`` random moves of its variables (handgrad's
    own stream), so a special given point (a symmetric X, an optimum, x = 0) is not the only
    evidence.  A move where the loss is not finite is redrawn closer (up to 4 times); the
    notes say what was redrawn and why."""
    gen = torch.Generator().manual_seed(PERTURB_SEED + seed)
    out, notes = [], []
    for label, P, D, hp in problems:
        if _finite_loss(loss, P, D, hp):
            out.append(Point(label, label, P, D, hp))
        else:
            notes.append(f"{label}: not used (the loss is not finite there, or raised); its moves are")
        for j in range(perturbations):
            for attempt in range(6):  # generic, then in the given values' set, then closer
                keep = attempt % 2 == 1
                moved = {k: perturb_value(v, gen, 0.5 ** (attempt // 2), keep or k in symmetric)
                         for k, v in P.items()}
                if _finite_loss(loss, moved, D, hp):
                    if attempt:
                        notes.append(f"{label}, moved {j + 1}: redrawn {attempt} time(s)"
                                     + (", keeping the given values' symmetry, definiteness or sign"
                                        if keep else "") + (" and closer to the given point"
                                                            if attempt > 1 else "")
                                     + " (the loss was not finite, or raised, at the generic move)")
                    out.append(Point(f"{label}, moved {j + 1}", label, moved, D, hp))
                    break
            else:
                notes.append(f"{label}, moved {j + 1}: not used (the loss is not finite at any move "
                             "tried)")
    return out, notes


# ---------------------------------------------------------------- judging a Python step

def _as_claim(got, ref: torch.Tensor) -> torch.Tensor:
    got = torch.as_tensor(got)
    if not got.is_floating_point():
        got = got.to(torch.float64)
    return got.to(ref.dtype)


def _references(derivation, loss, pt: Point, dP, gen):
    """(value, its scale), (dl or d(grad l) along dP, its scale), from torch.func."""
    D, hp = pt.data, pt.hp

    def f(P, D):
        return loss(P, D, **hp)

    def df(P, D, dP):
        return torch.func.jvp(lambda p: loss(p, D, **hp), (P,), (dP,))[1]

    def dgrad(P, D, dP):
        return flatten(torch.func.jvp(torch.func.grad(lambda p: loss(p, D, **hp)), (P,), (dP,))[1])

    value = f(pt.params, D).detach()
    vscale = sensitivity(f, (pt.params, D), value, gen)
    fn = df if derivation.target == "loss" else dgrad
    ref = fn(pt.params, D, dP).detach()
    return (value, vscale), (ref, sensitivity(fn, (pt.params, D, dP), ref, gen))


def _eval(step, pt: Point, dP):
    return step.fn(pt.params, pt.data, dP, pt.hp)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _judge_step(step, pt: Point, dP, truth, tscale, gen) -> Trial:
    try:
        got = _as_claim(_eval(step, pt, dP), truth).detach()
    except Exception as exc:  # noqa: BLE001 - an exception in a line is an evaluation error
        return Trial("error", reason=f"evaluation error at {pt.label}: {_short(exc)}", point=pt.label)
    if got.numel() != truth.numel():
        return Trial("fail", float("inf"), 0.0, f"at {pt.label}: the line gives {_shape(got)}, the "
                     f"reference is {_shape(truth)}", pt.label)
    got = got.reshape(truth.shape)
    cscale = sensitivity(lambda P, D, d: _as_claim(step.fn(P, D, d, pt.hp), truth), (pt.params, pt.data, dP),
                         got, gen)
    scale = cscale.reshape(truth.shape) + tscale.reshape(truth.shape) + got.abs()
    return judge(got, truth, scale, pt.label, sides=("the line", "torch.func"))


def _homogeneity(step, pt: Point, d1, d2, gen) -> list[Trial]:
    """A differential line is linear in dP: E(2 d) = 2 E(d), E(d1 + d2) = E(d1) + E(d2)."""
    def ev(d):
        return torch.as_tensor(_eval(step, pt, d), dtype=torch.float64).detach().reshape(-1)
    try:
        e1, e2 = ev(d1), ev(d2)
        e_2 = ev({k: 2 * v for k, v in d1.items()})
        e12 = ev({k: d1[k] + d2[k] for k in d1})
    except Exception:  # noqa: BLE001 - reported by the comparison at the same point
        return []
    if not (e1.shape == e2.shape == e_2.shape == e12.shape):
        return []
    out = []
    scale = sensitivity(lambda P, D, d: torch.as_tensor(step.fn(P, D, d, pt.hp), dtype=torch.float64),
                        (pt.params, pt.data, d1), e1, gen).reshape(-1)
    for lhs, rhs, sides in ((e_2, 2 * e1, ("E(2 d)", "2 E(d)")),
                            (e12, e1 + e2, ("E(d1 + d2)", "E(d1) + E(d2)"))):
        t = judge(lhs, rhs, 4 * scale + lhs.abs() + rhs.abs(), pt.label,
                  "not linear in the differentials ", sides)
        if t.status == "fail":
            out.append(t)
    return out


def judge_points(derivation: Derivation, loss, pts: list[Point], *, seed: int = 0,
                 directions: int = 2) -> list[list[Trial]]:
    """Every step at every point along ``directions`` directions from handgrad's stream:
    one list of trials per step (see handgrad.notation.tolerance for the rule)."""
    dgen = torch.Generator().manual_seed(DIRECTION_SEED + seed)
    pgen = torch.Generator().manual_seed(PROBE_SEED + seed)
    trials: list[list[Trial]] = [[] for _ in derivation.steps]
    for pt in pts:
        dirs = [{k: _direction(v, dgen, k in derivation.symmetric) for k, v in pt.params.items()}
                for _ in range(max(directions, 2))]
        refs = [_references(derivation, loss, pt, dP, pgen) for dP in dirs]
        for i, step in enumerate(derivation.steps):
            for dP, ((value, vscale), (ref, rscale)) in zip(dirs, refs):
                if derivation.target == "loss" and step.kind == "value":
                    trials[i].append(_judge_step(step, pt, dP, value.reshape(()), vscale.reshape(()), pgen))
                else:
                    trials[i].append(_judge_step(step, pt, dP, ref, rscale, pgen))
            if step.kind == "differential":
                trials[i].extend(_homogeneity(step, pt, dirs[0], dirs[1], pgen))
    return trials


def relative(t: Trial) -> float:
    """A trial's residual in units of its terms' size (comparable with RTOL)."""
    if t.status == "error" or t.tol == 0.0 and t.residual:
        return math.inf
    return t.residual / t.tol * RTOL if t.tol else 0.0


def references(loss_fn, params: Params, dP: Params):
    """(l(P), dl along dP, d(grad l) along dP flattened), all from torch.func."""
    value, dl = torch.func.jvp(loss_fn, (params,), (dP,))
    _, dgrad = torch.func.jvp(torch.func.grad(loss_fn), (params,), (dP,))
    return value, dl, flatten(dgrad)
