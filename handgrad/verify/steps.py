"""Derivations as verified steps, in the notes' differential style.

A :class:`Derivation` is an ordered list of :class:`Step`.  Every step is a claim about
the same quantity, written differently:

* ``target="loss"``: a step of kind "value" restates l itself; a step of kind
  "differential" is a formula for dl along a direction dP (a scalar).  The true value
  is torch.func.jvp of the model's loss.
* ``target="gradient"``: each step is a formula for d(grad l) along dP (the Hessian
  derivation); the truth is jvp of torch.func.grad of the loss, flattened.

Each step carries its text (plain and LaTeX) and a torch function
``fn(P, D, dP, hp) -> Tensor`` giving that step's value at parameters P, data D and
direction dP.  The final step of a gradient derivation evaluates tr(G^T dP) with G the
derivations module's own ``gradient``, so what is printed and what fits are one formula.

A step remembers where it was written (``source``, "file:line"), so a failed step is
named by its line in the derivation and by the line of code that states it.

:func:`compare` is the one comparison used for steps, the identity catalog and the
the notes' errata: a claimed tensor against the truth, with a verdict that names the reason
for a rejection (a shape mismatch, or the worst entry with both values).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from handgrad.params import Params, flatten, slices


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


@dataclass
class StepResult:
    index: int  # 1-based line number
    text: str
    value: float | None
    reference: float | None
    residual: float
    tol: float
    ok: bool
    error: str | None = None
    reason: str = ""  # why the step was rejected ("" when verified)
    worst: dict | None = None  # for vector-valued steps: the worst entry
    source: str = ""  # "file:line" of the step


@dataclass
class Verdict:
    """Result of :func:`compare`: ok, residual (max abs error / max(1, max |truth|))."""

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
    rtol: float = 1e-9,
    strict_shape: bool = True,
    namer: Callable[[int], str] | None = None,
) -> Verdict:
    """Compare a claimed tensor with the truth, entry by entry.

    Accepted when max |claimed - truth| <= rtol * max(1, max |truth|).  With
    ``strict_shape`` the shapes must agree exactly (a transposed non-square matrix has the
    right number of entries and the wrong shape); otherwise only the entry count must.
    A rejection says why: "shape mismatch: ..." or "worst entry [i, j]: claimed ..., truth
    ... (abs err ..., tol ...)".  ``namer`` maps a flat index to a label for the worst entry.
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
    finite_t = t[torch.isfinite(t)]
    scale = max(1.0, finite_t.abs().max().item()) if finite_t.numel() else 1.0
    err = (c - t).abs()
    err = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), err)
    k = int(torch.argmax(err))
    max_err = err[k].item()
    residual = max_err / scale
    ok = residual <= rtol
    where = namer(k) if namer else _index(k, tuple(truth.shape))
    worst = {"index": where, "claimed": c[k].item(), "truth": t[k].item(), "abs_err": max_err}
    what = f"worst entry {where}: claimed" if t.numel() > 1 else "claimed"
    reason = "" if ok else (
        f"{what} {_fmt(c[k].item())}, truth {_fmt(t[k].item())} "
        f"(abs err {max_err:.3g}, residual {residual:.3g} > tol {rtol:.0e})")
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


def random_direction(params: Params, seed: int) -> Params:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=g, dtype=torch.float64).to(v.device, v.dtype)
        for k, v in params.items()
    }


def references(loss_fn, params: Params, dP: Params):
    """(l(P), dl along dP, d(grad l) along dP flattened), all from torch.func."""
    value, dl = torch.func.jvp(loss_fn, (params,), (dP,))
    _, dgrad = torch.func.jvp(torch.func.grad(loss_fn), (params,), (dP,))
    return value, dl, flatten(dgrad)


def verify(
    derivation: Derivation,
    loss_fn,
    params: Params,
    data,
    hp: dict,
    *,
    seed: int = 0,
    rtol: float = 1e-9,
    direction: Params | None = None,
) -> list[StepResult]:
    """Evaluate every step at (params, data, random dP) and compare with the truth.

    ``loss_fn(params)`` is the model's loss at fixed data and hyperparameters.  The
    direction is random (seeded) unless given.  A step that raises is a failed step,
    named by its line, with the exception as the reason."""
    dP = direction if direction is not None else random_direction(params, seed)
    if derivation.target == "loss":  # the Hessian-vector product is not needed
        value, dl = torch.func.jvp(loss_fn, (params,), (dP,))
        dgrad = None
    else:
        value, dl, dgrad = references(loss_fn, params, dP)
    namer = param_namer(params)
    results = []
    for i, step in enumerate(derivation.steps, start=1):
        if derivation.target == "loss":
            ref = value if step.kind == "value" else dl
        else:
            ref = dgrad
        try:
            got = step.fn(params, data, dP, hp)
            got = torch.as_tensor(got, dtype=ref.dtype, device=ref.device)
            if got.reshape(-1).shape != ref.reshape(-1).shape:
                raise ValueError(
                    f"shape mismatch: step gives {tuple(got.shape)}, truth is {tuple(ref.shape)}"
                )
            v = compare(got.reshape(-1), ref.reshape(-1), rtol=rtol,
                        namer=namer if ref.numel() > 1 else None)
            if not v.ok and ref.numel() == 1:  # a scalar line: name both sides
                truth = "l" if step.kind == "value" else "torch.func.jvp (dl along dP)"
                v.reason = (f"line gives {_fmt(got.item())}, {truth} gives {_fmt(ref.item())} "
                            f"(residual {v.residual:.3g} > tol {rtol:.0e})")
            results.append(StepResult(
                i, step.text, _scalar(got), _scalar(ref), v.residual, rtol, v.ok,
                reason=v.reason, worst=v.worst, source=step.source,
            ))
        except Exception as exc:  # a broken step is a failed step, named by its line
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
            results.append(StepResult(i, step.text, None, _scalar(ref), float("inf"), rtol,
                                      False, msg, reason=f"step raised {msg}",
                                      source=step.source))
    return results


def _scalar(t):
    t = torch.as_tensor(t)
    return t.item() if t.numel() == 1 else t.norm().item()
