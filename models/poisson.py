"""Poisson regression (log link) for counts, fitted by Newton's method.

    l(A) = sum_i [ exp(z_i) - y_i z_i ] + (l2 / 2) ||w||^2,   z_i = w^T x_i + b

with A = (w, b) and mean mu_i = exp(z_i).  This is the negative log-likelihood of
y_i ~ Poisson(mu_i) without its parameter-free part: log L = -l(A; l2 = 0) - sum_i log(y_i!)
(``LIKELIHOOD.offset``), so the Hessian at the optimum is the observed information.
The loss is convex; exp(z) overflows to inf for z > 709 (float64), which a line search
rejects as an infinite loss.
"""

from __future__ import annotations

import math

import torch

from handgrad.contract import Likelihood, Role, Target
from handgrad.errors import UserError
from handgrad.fitting.data import Data

NAME = "poisson"
TITLE = "Poisson regression"
TARGET = Target.COUNTS
PARAMS = {"w": Role.WEIGHTS, "b": Role.INTERCEPT}  # roles, in parameter order
SOLVERS = ("newton", "gd")
DEFAULT_SOLVER = "newton"


def init_params(data: Data, *, intercept: bool = True, **_) -> dict[str, torch.Tensor]:
    """w = 0 and b = log(mean y): the intercept-only model's maximum-likelihood estimate
    (its gradient 1^T (exp(b) 1 - y) = n exp(b) - sum y vanishes there), so Newton starts
    at the null model instead of at mu = 1.  From b = 0 with mean counts in the hundreds
    the first Newton step on b is about mean(y) - 1 and overflows exp."""
    p = {"w": data.X.new_zeros(data.d)}
    if intercept:
        ybar = float(data.y.to(torch.float64).mean()) if data.y is not None and data.n else 0.0
        p["b"] = data.X.new_tensor(math.log(ybar) if ybar > 0 else 0.0)
    return p


def linear_predictor(params, data: Data) -> torch.Tensor:
    """The linear predictor z = X w + b (log of the mean).  Not named ``logits``: the
    contract's ``logits`` is the classifiers' separation check, which counts do not have."""
    z = data.X @ params["w"]
    if "b" in params:
        z = z + params["b"]
    return z


def loss(params, data: Data, *, l2: float = 0.0, **_) -> torch.Tensor:
    z = linear_predictor(params, data)
    out = torch.exp(z).sum() - data.y @ z
    if l2:
        out = out + 0.5 * l2 * (params["w"] @ params["w"])
    return out


def prepare(data: Data) -> Data:
    """The target must hold counts: non-negative integers, not all zero."""
    name = data.target or "y"
    y = data.y
    if y is None:
        raise UserError(f"Target {name!r} is missing: Poisson regression needs counts.")
    bad = (y < 0) | (y != torch.round(y))
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise UserError(f"Target {name!r} must hold counts (non-negative integers); row {i + 1} "
                        f"is {float(y[i]):g}.")
    if not bool((y > 0).any()):
        raise UserError(f"Target {name!r} is 0 in every row: the Poisson maximum-likelihood "
                        "estimate does not exist (the mean goes to 0, z to -inf).")
    return data


def neg_log_factorial(y: torch.Tensor) -> torch.Tensor:
    """-log(y_i!) per sample: the part of log L that does not depend on (w, b)."""
    return -torch.lgamma(y.to(torch.float64) + 1)


def null_log_likelihood(sum_y: float, n: int, intercept: bool) -> tuple[float, str]:
    """-l at the model without features, WITHOUT the offset (the shared code adds
    sum_i offset(y_i) to this as to the fitted model's -l): with an intercept, mu = mean y
    and -l = sum_y log(mu) - n mu; without one, z = 0, mu = 1 and -l = -n."""
    if not intercept:
        return -float(n), "mu = 1"
    mu = sum_y / n
    return (sum_y * math.log(mu) if sum_y > 0 else 0.0) - n * mu, "intercept only"


LIKELIHOOD = Likelihood(offset=neg_log_factorial, null=null_log_likelihood)


def predict_mean(params, data: Data) -> torch.Tensor:
    return torch.exp(linear_predictor(params, data))


def synthetic(*, n: int = 5000, d: int = 5, seed: int = 0, **_):
    """y ~ Poisson(exp(X w* + b*)), X standard normal, w* ~ N(0, 0.3^2 I) so the means stay
    moderate (z has standard deviation ~0.3 sqrt(d)); returns (data, true params)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = 0.3 * torch.randn(d, generator=g, dtype=torch.float64)
    b = torch.tensor(0.5, dtype=torch.float64)
    y = torch.poisson(torch.exp(X @ w + b), generator=g)
    return Data(X, y, target="y", source=f"synthetic data, seed {seed}"), {"w": w, "b": b}


def check_problems(seed: int, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(3000 + seed)
    out = []
    for n, d, intercept, l2 in [(9, 3, True, 0.0), (15, 4, False, 0.5), (6, 7, True, 2.0)]:
        X = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = torch.poisson(torch.full((n,), 2.0, dtype=torch.float64), generator=g)
        data = Data(X, y).to(device, dtype)
        p = {"w": 0.5 * torch.randn(d, generator=g, dtype=torch.float64)}
        if intercept:
            p["b"] = torch.randn((), generator=g, dtype=torch.float64)
        p = {k: v.to(device, dtype) for k, v in p.items()}
        label = f"n={n} d={d}{' +b' if intercept else ''}{f' l2={l2}' if l2 else ''}"
        out.append((label, p, data, {"l2": l2}))
    return out
