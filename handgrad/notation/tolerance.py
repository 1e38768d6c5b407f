"""The one tolerance rule and the one set of verdicts, for every format handgrad verifies.

A claimed tensor is compared with the truth entry by entry against a *scale*: the size of
the terms that floating point added up to make the two values (what rounding acts on),
never max(1, |truth|):

    |claim - truth| <= rtol * scale_i + floor * max(scale),   scale = terms + |truth|

How the terms are measured depends on what is compared, never the rule:

* a parsed line (.hg, --expr, the catalog, the link to a model): the sum of |terms| of its
  tree (``Evaluator.magnitude``, ``tangent_magnitude``);
* an opaque Python function (a Python step, the loss's jvp): :func:`sensitivity`, how much
  the result moves when every input is moved by a relative 2^-30.  That is the rounding a
  backward-stable evaluation commits, so it grows with the conditioning at the point: at a
  Hilbert matrix inv(H) moves by cond(H) times its size, and the tolerance with it.

A trial whose truth is below ``INCONCLUSIVE`` times its scale (rounding level: a factor 2
or a sign cannot be told) is *inconclusive*; a line that is not finite where the truth is
fails (log(det(X)) written for logdet(X) where det X < 0); an exception, or a truth that is
not finite, is an *error* (never "wrong"); a line is *verified* when no trial failed or errored and trials
at 2 or more points were conclusive, *failed* on one failing trial.
"""

from __future__ import annotations

import dataclasses

import torch

RTOL = 1e-9      # float64 steps agree with the truth to ~1e-15 of their terms; a wrong line misses by O(1)
FLOOR = 1e3 * torch.finfo(torch.float64).eps  # of the largest entry's scale: rounding in the small ones
INCONCLUSIVE = 1e-7  # truth below this fraction of its scale: rounding level, not evidence
PROBE = 2.0 ** -30   # relative move of the inputs that measures a Python function's rounding scale
VERDICTS = ("verified", "inconclusive", "failed", "error")


class Trial:
    """One comparison at one point: status pass / fail / inconclusive / error."""

    __slots__ = ("status", "residual", "tol", "reason", "point")

    def __init__(self, status, residual=0.0, tol=0.0, reason=None, point=None):
        self.status, self.residual, self.tol, self.reason, self.point = status, residual, tol, reason, point


def tolerance(scale: torch.Tensor, rtol: float = RTOL, floor: float = FLOOR) -> torch.Tensor:
    """The tolerance of each entry: rtol * scale + floor * max(scale)."""
    scale = scale.abs()
    top = scale.max() if scale.numel() else scale.new_zeros(())
    return rtol * scale + floor * top


def judge(claim, truth, scale, point, what="", sides=("claim", "autograd"), *, rtol: float = RTOL,
          floor: float = FLOOR) -> Trial:
    """Compare ``claim`` with ``truth`` (same shape); ``scale``: the terms of both, entrywise
    (broadcast to claim's shape); |truth| is added here.  ``point`` names where."""
    at = f"point {point}" if isinstance(point, int) else str(point)
    if not bool(torch.isfinite(truth).all()):
        return Trial("error", reason=f"the reference (autograd) is not finite at {at}", point=point)
    if not bool(torch.isfinite(claim).all()):  # evidence: the truth is a number there, the line is not
        return Trial("fail", float("inf"), 0.0, f"{what}at {at}: the line is not finite (nan/inf) where "
                     f"the reference is ({float(truth.reshape(-1)[0]) if truth.numel() == 1 else 'finite'})",
                     point)
    scale = (torch.as_tensor(scale, dtype=truth.dtype).abs() + truth.abs()).expand_as(truth)
    scale = torch.where(torch.isfinite(scale), scale, torch.full_like(scale, float("inf")))
    tol = tolerance(scale, rtol, floor)
    res = (claim - truth).abs()
    ratio = res / tol.clamp_min(1e-300)
    k = int(ratio.reshape(-1).argmax()) if ratio.numel() else 0
    if not res.numel():
        return Trial("pass", 0.0, 0.0, None, point)
    worst_res, worst_tol = float(res.reshape(-1)[k]), float(tol.reshape(-1)[k])
    if bool((res > tol).any()):
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(k), res.shape))
        where = "" if res.numel() == 1 else f" entry {idx}"
        return Trial("fail", worst_res, worst_tol,
                     f"{what}at {at}{where}: {sides[0]} {float(claim.reshape(-1)[k]):.6g}, "
                     f"{sides[1]} {float(truth.reshape(-1)[k]):.6g}", point)
    if not (float(truth.abs().max()) > INCONCLUSIVE * float(scale.max())):
        return Trial("inconclusive", worst_res, worst_tol,
                     f"at {at} the value is at rounding level relative to its terms", point)
    return Trial("pass", worst_res, worst_tol, None, point)


def verdict(trials: list[Trial], need: int = 2) -> tuple[str, Trial | None]:
    """(verdict, the trial that decides it): error, then failed, then verified when trials
    at ``need`` or more points were conclusive, else inconclusive."""
    for status, name in (("error", "error"), ("fail", "failed")):
        bad = [t for t in trials if t.status == status]
        if bad:
            return name, bad[0]
    conclusive = {t.point for t in trials if t.status == "pass"}
    worst = max(trials, key=lambda t: t.residual / max(t.tol, 1e-300), default=None)
    if len(conclusive) >= need:
        return "verified", worst
    t = next((t for t in trials if t.status == "inconclusive"), None)
    if t is None:
        t = Trial("inconclusive", worst.residual if worst else 0.0, worst.tol if worst else 0.0,
                  f"conclusive at {len(conclusive)} point(s) only; verified needs {need}")
    return "inconclusive", t


# ---------------------------------------------------------------- opaque functions

def _move(x, gen: torch.Generator, u: float):
    """Every floating-point tensor in x (dicts, lists, tuples, dataclasses) times (1 +- u)."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point() or x.numel() == 0:
            return x
        sign = torch.randint(0, 2, x.shape, generator=gen).to(x.dtype) * 2 - 1
        return x * (1 + u * sign.to(x.device))
    if isinstance(x, dict):
        return {k: _move(v, gen, u) for k, v in x.items()}
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(_move(v, gen, u) for v in x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        try:
            return dataclasses.replace(x, **{f.name: _move(getattr(x, f.name), gen, u)
                                            for f in dataclasses.fields(x) if f.init})
        except (TypeError, ValueError):
            return x
    return x


def sensitivity(fn, args: tuple, base: torch.Tensor, gen: torch.Generator, probes: int = 2) -> torch.Tensor:
    """The rounding scale of ``fn(*args)`` (= ``base``), entrywise: max over ``probes`` moves
    of every input by a relative +-PROBE of |fn(moved) - base| / PROBE.  For a sum of terms
    this is about the sum of |terms| (cancellation included); at an ill-conditioned point it
    grows with the condition number.  Where a move cannot be evaluated, the scale is inf
    (the trial is then inconclusive, never verified on a guess)."""
    base = base.detach()
    out = torch.zeros_like(base, dtype=torch.float64)
    for _ in range(probes):
        try:
            moved = torch.as_tensor(fn(*_move(args, gen, PROBE)), dtype=torch.float64).detach()
            diff = (moved.reshape(base.shape) - base).abs() / PROBE
        except Exception:  # noqa: BLE001 - any failure: no scale can be measured
            return torch.full_like(out, float("inf"))
        diff = torch.where(torch.isfinite(diff), diff, torch.full_like(diff, float("inf")))
        out = torch.maximum(out, diff)
    return out


__all__ = ["FLOOR", "INCONCLUSIVE", "PROBE", "RTOL", "Trial", "VERDICTS", "judge", "sensitivity",
           "tolerance", "verdict"]
