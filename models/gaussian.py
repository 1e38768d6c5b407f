"""Gaussian covariance MLE, the notes' worked example 5.

    l(mu, Sigma) = log|Sigma| + (1/N) sum_i (x_i - mu)^T Sigma^-1 (x_i - mu)  [+ l2 tr(Sigma^-1)]
                 = log|Sigma| + tr(Sigma^-1 S_mu)                            [S_mu + l2 I]

with S_mu = (1/N) sum_i (x_i - mu)(x_i - mu)^T.  This is the notes' loss: 2/N times the
negative log-likelihood of N(mu, Sigma), less the constant d log(2 pi).  (It keeps the
notes' 1/N, an exception to the project's sums-over-samples convention.)

The mean.  By default mu is a parameter, estimated jointly with Sigma (the joint MLE;
its gradient is derived too).  With ``intercept=False`` (``--no-intercept``) mu is not a
parameter: the loss uses the sample mean xbar, exactly the notes' l(Sigma).  The
optimum is the same either way: mu = xbar, Sigma = S = (1/N) sum_i (x_i - xbar)(x_i - xbar)^T
(the notes' last line drops the sum; handgrad states it with the sum).

Two parametrisations of the covariance, each checked against autograd:

* ``{"mu", "Sigma"}`` -- Sigma itself (the closed form, the notes' derivation).  Sigma is
  symmetric; the loss is evaluated at sym(Sigma) = (Sigma + Sigma^T)/2, so it is defined
  for every square matrix and perturbing one entry Sigma_ij alone moves sym(Sigma)_ij and
  sym(Sigma)_ji by half each.  Convention for the gradient with respect to a symmetric
  matrix: the symmetric G with dl = tr(G^T dSigma) for every (symmetric) dSigma.  That G
  is what autograd and entry-wise finite differences of this loss return, so the
  three-way check compares like with like.  (The other convention in the literature,
  differentiating the d(d+1)/2 free entries of the lower triangle, gives 2G - diag(G);
  the tests plant it as a wrong variant and the check rejects it.)
* ``{"mu", "L"}`` -- a Cholesky factor, Sigma = L L^T, used by gradient descent: every
  iterate is positive definite while L is nonsingular.  Only the lower triangle of L is
  read (the loss uses tril(L)), so dl/dL is zero above the diagonal.

Numerics: a Cholesky factor (given, or torch.linalg.cholesky_ex of sym(Sigma)), triangular
solves, and log|Sigma| = 2 sum_j log|L_jj| -- never det, never an inverse of Sigma.  A
Sigma that is not positive definite gives loss +inf (so a line search backs off).

``l2`` here is shrinkage: the penalty l2 tr(Sigma^-1) replaces S by S + l2 I, and the
closed form becomes Sigma = S + l2 I.  It is the remedy the error messages suggest when
n <= d or a column is constant (the sample covariance is then singular).
"""

from __future__ import annotations

import math

import torch

from handgrad.contract import Role, Target
from handgrad.errors import UserError
from handgrad.fitting.data import Data

NAME = "gaussian"
TITLE = "Gaussian covariance MLE"
TARGET = Target.NONE
PARAMS = {"mu": Role.LOCATION, "L": Role.COVARIANCE}  # roles, in parameter order
SOLVERS = ("closed", "gd")  # no Newton: see derivations/gaussian.py (Hessian)
DEFAULT_SOLVER = "closed"
CHECK_NOTE = ("gaussian: a gradient with respect to the symmetric Sigma is the symmetric G "
              "with dl = tr(G^T dSigma); the loss reads sym(Sigma) = (Sigma + Sigma^T)/2, so "
              "autograd and entry-wise finite differences give that G.  dl/dL is masked to "
              "the lower triangle (Sigma = L L^T).")


def mean_of(params, data: Data) -> torch.Tensor:
    """mu when it is a parameter, else the sample mean (the notes' xbar)."""
    return params["mu"] if "mu" in params else data.X.mean(0)


def factor(params) -> tuple[torch.Tensor, bool]:
    """(lower Cholesky factor of Sigma, ok).  ok is False when sym(Sigma) is not PD."""
    if "L" in params:
        return torch.tril(params["L"]), True
    S = params["Sigma"]
    L, info = torch.linalg.cholesky_ex(0.5 * (S + S.T))
    return L, int(info) == 0


def loss(params, data: Data, *, l2: float = 0.0, **_) -> torch.Tensor:
    L, ok = factor(params)
    if not ok:
        return data.X.new_tensor(math.inf)
    Xc = data.X - mean_of(params, data)
    Z = torch.linalg.solve_triangular(L, Xc.T, upper=False)  # L^-1 (x_i - mu), columns
    out = 2.0 * torch.log(torch.abs(torch.diagonal(L))).sum() + (Z * Z).sum() / data.n
    if l2:  # l2 tr(Sigma^-1) = l2 ||L^-1||_F^2
        eye = torch.eye(data.d, dtype=L.dtype, device=L.device)
        Li = torch.linalg.solve_triangular(L, eye, upper=False)
        out = out + l2 * (Li * Li).sum()
    return out


def sample_covariance(data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    """(xbar, S) with S = (1/N) sum_i (x_i - xbar)(x_i - xbar)^T (two-pass, centred first)."""
    xbar = data.X.mean(0)
    Xc = data.X - xbar
    return xbar, (Xc.T @ Xc) / data.n


def validate(data: Data, l2: float = 0.0) -> None:
    """n <= d, a constant column or dependent columns make S singular: say which, and
    suggest shrinkage (l2 > 0), instead of failing inside a factorisation."""
    if l2 > 0:
        return
    n, d = data.n, data.d
    remedy = ("use shrinkage, e.g. --l2 0.01 (Sigma = S + l2 I), or fewer columns")
    if n <= d:
        raise UserError(f"The sample covariance is singular: n = {n} samples <= d = {d} columns, "
                        f"so the Gaussian MLE does not exist; {remedy}.")
    X = data.X
    const = (X.max(0).values == X.min(0).values).nonzero().reshape(-1)
    if len(const):
        j = int(const[0])
        raise UserError(f"Column {data.feature_names[j]!r} is constant ({X[0, j].item():g} in every "
                        f"row): its variance is 0, the sample covariance is singular and the "
                        f"Gaussian MLE does not exist; {remedy}.")
    _, S = sample_covariance(data)
    _dependence(S, remedy)


def _dependence(S: torch.Tensor, remedy: str) -> None:
    sd = S.diagonal().sqrt()
    R = S / torch.outer(sd, sd)  # correlation: scale-free test of dependence
    _, info = torch.linalg.cholesky_ex(R)
    ev = torch.linalg.eigvalsh(R)
    if int(info) != 0 or ev[0].item() <= 1e-12 * ev[-1].item():
        raise UserError(f"The columns are (nearly) linearly dependent (correlation matrix "
                        f"eigenvalues from {max(ev[0].item(), 0.0):.3g} to {ev[-1].item():.3g}): "
                        f"the sample covariance is singular and the Gaussian MLE does not exist; "
                        f"{remedy}.")


def init_params(data: Data, *, intercept: bool = True, l2: float = 0.0,
                **_) -> dict[str, torch.Tensor]:
    """Gradient descent starts from mu = 0, L = diag(root mean square of each column)."""
    validate(data, l2)
    rms = (data.X * data.X).mean(0).sqrt().clamp_min(1e-3)
    p = {}
    if intercept:
        p["mu"] = data.X.new_zeros(data.d)
    p["L"] = torch.diag(rms)
    return p


def closed_form(data: Data, *, intercept: bool = True, l2: float = 0.0, **_):
    """mu = xbar, Sigma = S (+ l2 I): where the hand gradient vanishes."""
    validate(data, l2)
    xbar, S = sample_covariance(data)
    if l2:
        S = S + l2 * torch.eye(data.d, dtype=S.dtype, device=S.device)
    p = {"mu": xbar} if intercept else {}
    p["Sigma"] = S
    return p, {}


def closed_form_moments(mean: torch.Tensor, S: torch.Tensor, n: int, names: list[str], *,
                        intercept: bool = True, l2: float = 0.0):
    """The closed form from streamed sums (``--chunk-rows``, ``--distributed``): mu = xbar and
    Sigma = S (+ l2 I), with xbar and S = (1/n) sum_i (x_i - xbar)(x_i - xbar)^T summed over
    row chunks and processes (handgrad/fitting/lstsq.py ``covariance``).

    Returns (params, data, extra).  ``data`` is 2d rows with exactly this mean and
    covariance, xbar +- sqrt(d lambda_j) v_j (S = V diag(lambda) V^T): the loss reads the
    rows only through their mean and (1/N) covariance, so the checked ``gradient`` and
    ``loss`` evaluated on these rows are those of the whole data set; the fit reports them
    (and the log-likelihood) without holding the rows."""
    remedy = "use shrinkage, e.g. --l2 0.01 (Sigma = S + l2 I), or fewer columns"
    d = S.shape[0]
    if l2 <= 0:
        if n <= d:
            raise UserError(f"The sample covariance is singular: n = {n} samples <= d = {d} "
                            f"columns, so the Gaussian MLE does not exist; {remedy}.")
        tiny = (16 * torch.finfo(S.dtype).eps * mean.abs().clamp_min(
            torch.finfo(S.dtype).tiny)) ** 2
        const = (S.diagonal() <= tiny).nonzero().reshape(-1)
        if len(const):
            j = int(const[0])
            raise UserError(f"Column {names[j]!r} is constant ({mean[j].item():g} in every row): "
                            "its variance is 0, the sample covariance is singular and the "
                            f"Gaussian MLE does not exist; {remedy}.")
        _dependence(S, remedy)
    lam, V = torch.linalg.eigh(S)
    R = (V * (d * lam.clamp_min(0)).sqrt()).T  # row j: sqrt(d lambda_j) v_j^T
    rows = Data(torch.cat([mean + R, mean - R]), None, feature_names=list(names),
                source="the streamed mean and covariance")
    Sigma = S + l2 * torch.eye(d, dtype=S.dtype, device=S.device) if l2 else S
    params = {"mu": mean} if intercept else {}
    params["Sigma"] = Sigma
    return params, rows, {}


def estimate(params) -> dict[str, torch.Tensor]:
    """mu (when a parameter) and Sigma, whichever parametrisation was fitted."""
    out = {"mu": params["mu"]} if "mu" in params else {}
    if "L" in params:
        L = torch.tril(params["L"])
        out["Sigma"] = L @ L.T
    else:
        out["Sigma"] = params["Sigma"]
    return out


def evaluate(params, data: Data, **_) -> dict:
    """Mean log-likelihood per sample, log N(x_i; mu, Sigma) (natural log).  Without a fitted
    mu the held-out rows' own mean is used (the notes' form), and said so."""
    L, ok = factor(params)
    if not ok:
        return {"n": data.n, "log_likelihood": -math.inf}
    Xc = data.X - mean_of(params, data)
    Z = torch.linalg.solve_triangular(L, Xc.T, upper=False)
    logdet = 2.0 * torch.log(torch.abs(torch.diagonal(L))).sum()
    ll = -0.5 * (data.d * math.log(2 * math.pi) + logdet + (Z * Z).sum(0))
    out = {"n": data.n, "log_likelihood": ll.mean().item()}
    if "mu" not in params:
        out["mean"] = "the evaluated rows' own mean (mu was not fitted)"
    return out


def synthetic(*, n: int = 2000, d: int = 4, seed: int = 0, **_):
    """x_i ~ N(mu*, Sigma*), Sigma* = B B^T / d + I/2 (well conditioned, not diagonal)."""
    g = torch.Generator().manual_seed(seed)
    mu = 2.0 * torch.randn(d, generator=g, dtype=torch.float64)
    B = torch.randn(d, d, generator=g, dtype=torch.float64)
    Sigma = B @ B.T / d + 0.5 * torch.eye(d, dtype=torch.float64)
    L = torch.linalg.cholesky(Sigma)
    X = mu + torch.randn(n, d, generator=g, dtype=torch.float64) @ L.T
    return Data(X, None, source=f"synthetic data, seed {seed}"), {"mu": mu, "Sigma": Sigma}


def check_problems(seed: int, dtype=torch.float64, device="cpu"):
    """Both parametrisations, with and without mu, with and without shrinkage, at random
    non-diagonal points (Sigma = B B^T/d + I/2, L with |diag| >= 1/2)."""
    g = torch.Generator().manual_seed(4000 + seed)
    out = []
    for n, d, kind, with_mu, l2 in [(9, 3, "Sigma", True, 0.0), (12, 4, "Sigma", False, 0.0),
                                    (7, 2, "Sigma", True, 0.4), (10, 3, "L", True, 0.0),
                                    (8, 4, "L", False, 0.3)]:
        X = torch.randn(n, d, generator=g, dtype=torch.float64)
        p = {}
        if with_mu:
            p["mu"] = torch.randn(d, generator=g, dtype=torch.float64)
        if kind == "Sigma":
            B = torch.randn(d, d, generator=g, dtype=torch.float64)
            p["Sigma"] = B @ B.T / d + 0.5 * torch.eye(d, dtype=torch.float64)
        else:
            L = torch.tril(torch.randn(d, d, generator=g, dtype=torch.float64), -1)
            sign = torch.where(torch.rand(d, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
            L = L + torch.diag(sign * (0.5 + torch.rand(d, generator=g, dtype=torch.float64)))
            p["L"] = L
        data = Data(X, None).to(device, dtype)
        p = {k: v.to(device, dtype) for k, v in p.items()}
        label = f"n={n} d={d} {kind}{' +mu' if with_mu else ' (xbar)'}{f' l2={l2}' if l2 else ''}"
        out.append((label, p, data, {"l2": l2}))
    return out
