"""Logistic regression, the notes' worked example 8 (Newton's method).

    l(A) = sum_i [ -y_i A^T x_i + log(1 + exp(A^T x_i)) ] + (l2 / 2) ||w||^2

with A = (w, b): z_i = w^T x_i + b.  log(1 + e^z) is computed as logaddexp(0, z), which
is finite at z = 1000 and exact at z = -40 (the notes' naive form is not).  Not
F.softplus: its default threshold returns z itself for z > 20, an absolute error of
e^-z that makes its autograd Hessian exactly 0 there.
"""

from __future__ import annotations

import math

import torch

from handgrad.contract import Likelihood, Role, Target
from handgrad.fitting.data import Data, binary_labels

NAME = "logistic"
TITLE = "Logistic regression"
TARGET = Target.BINARY
PARAMS = {"w": Role.WEIGHTS, "b": Role.INTERCEPT}  # roles, in parameter order
SOLVERS = ("newton", "gd")
DEFAULT_SOLVER = "newton"


def init_params(data: Data, *, intercept: bool = True, **_) -> dict[str, torch.Tensor]:
    p = {"w": data.X.new_zeros(data.d)}
    if intercept:
        p["b"] = data.X.new_zeros(())
    return p


def logits(params, data: Data) -> torch.Tensor:
    z = data.X @ params["w"]
    if "b" in params:
        z = z + params["b"]
    return z


def loss(params, data: Data, *, l2: float = 0.0, **_) -> torch.Tensor:
    z = logits(params, data)
    out = torch.logaddexp(z, torch.zeros_like(z)).sum() - data.y @ z
    if l2:
        out = out + 0.5 * l2 * (params["w"] @ params["w"])
    return out


def prepare(data: Data) -> Data:
    """Re-encode two-valued targets to {0, 1} (and say so in data.notes)."""
    y, note = binary_labels(data.y, data.target or "y")
    if note:
        data.notes.append(note)
    data.y = y
    return data


def null_log_likelihood(sum_y: float, n: int, intercept: bool) -> tuple[float, str]:
    """log L of the model without features: intercept only (p = mean y), or p = 1/2."""
    if not intercept:
        return n * math.log(0.5), "p = 1/2"
    pbar = sum_y / n
    return sum_y * math.log(pbar) + (n - sum_y) * math.log1p(-pbar), "intercept only"


# the loss is the full negative log-likelihood: standard errors from H^-1 at the optimum
LIKELIHOOD = Likelihood(null=null_log_likelihood)


def predict_proba(params, data: Data) -> torch.Tensor:
    return torch.sigmoid(logits(params, data))


def synthetic(*, n: int = 5000, d: int = 5, seed: int = 0, **_):
    """y ~ Bernoulli(sigmoid(X w* + b*)), X standard normal; returns (data, true params)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    b = torch.tensor(-0.5, dtype=torch.float64)
    p = torch.sigmoid(X @ w + b)
    y = (torch.rand(n, generator=g, dtype=torch.float64) < p).to(torch.float64)
    return Data(X, y, target="y", source=f"synthetic data, seed {seed}"), {"w": w, "b": b}


def check_problems(seed: int, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(2000 + seed)
    out = []
    for n, d, intercept, l2 in [(9, 3, True, 0.0), (15, 4, False, 0.5), (6, 7, True, 2.0)]:
        X = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = (torch.rand(n, generator=g, dtype=torch.float64) < 0.5).to(torch.float64)
        data = Data(X, y).to(device, dtype)
        p = {"w": torch.randn(d, generator=g, dtype=torch.float64)}
        if intercept:
            p["b"] = torch.randn((), generator=g, dtype=torch.float64)
        p = {k: v.to(device, dtype) for k, v in p.items()}
        label = f"n={n} d={d}{' +b' if intercept else ''}{f' l2={l2}' if l2 else ''}"
        out.append((label, p, data, {"l2": l2}))
    return out
