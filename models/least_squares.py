"""Least squares, the seeds' worked example 3 (linear regression).

    l(w, b) = ||X w + b 1 - y||^2 + (l2 / 2) ||w||^2          (a sum over samples)

Parameters: w (d,), b () when an intercept is fitted.  The closed form is computed by
a Householder QR solve of the (ridge-augmented) design, never by forming (X^T X)^-1:
the seed's w = (X^T X)^-1 X^T y is the derivation, not the numerics.
"""

from __future__ import annotations

import math

import torch

from handgrad.data import Data

NAME = "least_squares"
TITLE = "Least squares"
TARGET = "continuous"
SOLVERS = ("closed", "newton", "gd")
DEFAULT_SOLVER = "closed"


def init_params(data: Data, *, intercept: bool = True, **_) -> dict[str, torch.Tensor]:
    p = {"w": data.X.new_zeros(data.d)}
    if intercept:
        p["b"] = data.X.new_zeros(())
    return p


def residual(params, data: Data) -> torch.Tensor:
    r = data.X @ params["w"] - data.y
    if "b" in params:
        r = r + params["b"]
    return r


def loss(params, data: Data, *, l2: float = 0.0, **_) -> torch.Tensor:
    r = residual(params, data)
    out = r @ r
    if l2:
        out = out + 0.5 * l2 * (params["w"] @ params["w"])
    return out


def design(data: Data, intercept: bool) -> torch.Tensor:
    if not intercept:
        return data.X
    return torch.cat([data.X, data.X.new_ones(data.n, 1)], dim=1)


def closed_form(data: Data, *, intercept: bool = True, l2: float = 0.0, **_):
    """Householder QR solve of min ||A theta - y||^2 (+ ridge rows sqrt(l2/2) I on w)."""
    A, y = design(data, intercept), data.y
    if l2:
        d = data.d
        ridge = A.new_zeros(d, A.shape[1])
        ridge[:, :d] = math.sqrt(l2 / 2) * torch.eye(d, dtype=A.dtype, device=A.device)
        A = torch.cat([A, ridge])
        y = torch.cat([y, y.new_zeros(d)])
    Q, R = torch.linalg.qr(A, mode="reduced")  # LAPACK geqrf: Householder reflections
    theta = torch.linalg.solve_triangular(R, (Q.T @ y).unsqueeze(1), upper=True).squeeze(1)
    params = {"w": theta[: data.d]}
    if intercept:
        params["b"] = theta[data.d]
    return params, {"R": R}


def std_errors(params, data: Data, extra: dict) -> dict[str, torch.Tensor] | None:
    """sigma_hat^2 (R^T R)^-1 from the QR factor: se_j = sigma_hat * ||row j of R^-1||."""
    R = extra.get("R")
    if R is None or data.n <= R.shape[0]:
        return None
    p = R.shape[0]
    r = residual(params, data)
    sigma2 = (r @ r) / (data.n - p)
    eye = torch.eye(p, dtype=R.dtype, device=R.device)
    Rinv = torch.linalg.solve_triangular(R, eye, upper=True)
    se = torch.sqrt(sigma2) * Rinv.norm(dim=1)
    out = {"w": se[: data.d]}
    if "b" in params:
        out["b"] = se[data.d]
    return out


def synthetic(*, n: int = 1000, d: int = 5, seed: int = 0, noise: float = 0.5, **_):
    """y = X w* + b* + noise, X standard normal; returns (data, true params)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    b = torch.tensor(1.5, dtype=torch.float64)
    y = X @ w + b + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return Data(X, y, target="y", source=f"synthetic(n={n}, d={d}, seed={seed})"), {"w": w, "b": b}


def check_problems(seed: int, dtype=torch.float64, device="cpu"):
    """Random non-symmetric inputs at several shapes, with and without intercept and L2."""
    g = torch.Generator().manual_seed(1000 + seed)
    out = []
    for n, d, intercept, l2 in [(7, 3, True, 0.0), (12, 5, False, 0.7), (5, 8, True, 1.3)]:
        X = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = torch.randn(n, generator=g, dtype=torch.float64)
        data = Data(X, y).to(device, dtype)
        p = {"w": torch.randn(d, generator=g, dtype=torch.float64)}
        if intercept:
            p["b"] = torch.randn((), generator=g, dtype=torch.float64)
        p = {k: v.to(device, dtype) for k, v in p.items()}
        label = f"n={n} d={d}{' +b' if intercept else ''}{f' l2={l2}' if l2 else ''}"
        out.append((label, p, data, {"l2": l2}))
    return out
