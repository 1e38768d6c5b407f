"""Derivations as verified steps, in the seeds' differential style.

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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from handgrad.params import Params, flatten


@dataclass(frozen=True)
class Step:
    text: str
    latex: str
    fn: Callable
    why: str = ""  # the rule used, e.g. "product rule", "trace trick: tr(AB) = tr(BA)"
    kind: str = "differential"  # "value" | "differential"


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
) -> list[StepResult]:
    """Evaluate every step at (params, data, random dP) and compare with the truth."""
    dP = random_direction(params, seed)
    value, dl, dgrad = references(loss_fn, params, dP)
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
            err = (got.reshape(-1) - ref.reshape(-1)).abs().max().item()
            scale = max(1.0, ref.abs().max().item())
            tol = rtol * scale
            results.append(StepResult(
                i, step.text, _scalar(got), _scalar(ref), err / scale, rtol, err <= tol
            ))
        except Exception as exc:  # a broken step is a failed step, named by its line
            results.append(StepResult(i, step.text, None, _scalar(ref), float("inf"), rtol,
                                      False, f"{type(exc).__name__}: {exc}"))
    return results


def _scalar(t):
    t = torch.as_tensor(t)
    return t.item() if t.numel() == 1 else t.norm().item()
