"""Hand-derived gradient and Hessian of the Gaussian covariance MLE (notes part 3 §6, example 5).

Shapes: X (N, d) samples as rows, mu (d,), Sigma (d, d) symmetric positive definite, or its
Cholesky factor L (d, d) lower-triangular with Sigma = L L^T.  S_l = S_mu + l2 I with
S_mu = (1/N) sum_i (x_i - mu)(x_i - mu)^T; l2 = 0 is the notes' loss.

    l    = log|Sigma| + (1/N) sum_i (x_i - mu)^T Sigma^-1 (x_i - mu) + l2 tr(Sigma^-1)
         = log|Sigma| + tr(Sigma^-1 S_l)
    dl   = tr(Sigma^-1 dSigma) + tr(d(Sigma^-1) S_l) - 2 (Sigma^-1 (xbar - mu))^T dmu
         = tr(Sigma^-1 dSigma) - tr(Sigma^-1 dSigma Sigma^-1 S_l) - 2 (...)^T dmu
         = tr( (Sigma^-1 - Sigma^-1 S_l Sigma^-1)^T dSigma ) - 2 (Sigma^-1 (xbar - mu))^T dmu
    dl/dSigma = G = Sigma^-1 - Sigma^-1 S_l Sigma^-1          (symmetric, d x d)
    dl/dmu    = -2 Sigma^-1 (xbar - mu)                        (d,)

(d log|Sigma| = tr(Sigma^-1 dSigma), Jacobi's formula; d(Sigma^-1) = -Sigma^-1 dSigma Sigma^-1.)
Setting both to zero: mu = xbar and Sigma^-1 = Sigma^-1 S Sigma^-1, i.e. Sigma = S =
(1/N) sum_i (x_i - xbar)(x_i - xbar)^T (+ l2 I) -- the notes' last line drops the sum.

Gradient with respect to the symmetric Sigma: the symmetric G with dl = tr(G^T dSigma) for
all symmetric dSigma (see models/gaussian.py: the loss reads sym(Sigma), so autograd and
entry-wise finite differences return this G; the lower-triangle convention 2G - diag(G)
is a different object and fails the check).

Through the Cholesky factor (the chain rule of the notes, dSigma = dL L^T + L dL^T):

    dl   = tr(G dSigma) = tr(G dL L^T) + tr(G L dL^T) = 2 tr((G L)^T dL)       (G = G^T)
    dl/dL = tril(2 G L) = tril( 2 L^-T (I - L^-1 S_l L^-T) )     (lower triangle: the
            entries above the diagonal are not parameters, their gradient is 0)
    dl/dmu = -2 L^-T L^-1 (xbar - mu)

Computed with triangular solves and cholesky_solve; no inverse of Sigma is formed except
Sigma^-1 itself in the Sigma-parametrised gradient (it is the answer: cholesky_inverse).
Hessian (``dgradient``, ``hessian``): with Si = Sigma^-1, r = xbar - mu, dS_mu = -(dmu r^T + r dmu^T),

    dG        = -Si dSigma Si + Si dSigma Si S_l Si + Si S_l Si dSigma Si - Si dS_mu Si
    d(dl/dmu) = 2 Si dSigma Si r + 2 Si dmu,      d(dl/dL) = tril(2 dG L + 2 G dL)

and H is the matrix of this differential over the flattened parameters (built column by
column, checked against torch.func.hessian).  It is for checking: no Newton solver is
offered (through L the loss is not convex, and a Newton step in Sigma can leave the
positive-definite cone).  Layout: denominator.

The derivation, line by line, is in the notation beside this file (gaussian.hg in Sigma,
gaussian_cholesky.hg through L), the gradient and the second differential, d2Sigma = 0
in Sigma and 2 dL dL^T through L:

    d2l = tr(dSigma Si dSigma (Si - 2G)) + 4 dmu^T Si dSigma Si (xbar - mu) + 2 dmu^T Si dmu
          [+ 2 tr(dL^T G dL) through L, with dSigma = dL L^T + L dL^T]

so hess mu = 2 Si; ``derive gaussian`` verifies each line and links d2l to dP^T H dP with
H = hessian() below (see the comment above ``_values``).
"""

from __future__ import annotations

import torch

from handgrad.verify.in_notation import InNotation


def _xbar_minus_mu(P, D):
    return D.X.mean(0) - _mean(P, D)  # exactly 0 without mu (the same mean, twice)


def _mean(P, D):
    return P["mu"] if "mu" in P else D.X.mean(0)


def _S(P, D, l2):
    """S_l = (1/N) sum_i (x_i - mu)(x_i - mu)^T + l2 I."""
    Xc = D.X - _mean(P, D)
    S = (Xc.T @ Xc) / D.n
    if l2:
        S = S + l2 * torch.eye(D.d, dtype=S.dtype, device=S.device)
    return S


def _chol(P):
    if "L" in P:
        return torch.tril(P["L"])
    S = P["Sigma"]
    return torch.linalg.cholesky(0.5 * (S + S.T))


def _G(P, D, l2):
    """Sigma^-1 - Sigma^-1 S_l Sigma^-1 by Cholesky solves, symmetrised against rounding."""
    C = _chol(P)
    A = torch.cholesky_solve(_S(P, D, l2), C)  # Sigma^-1 S_l
    Si = torch.cholesky_inverse(C)
    G = Si - torch.cholesky_solve(A.T.contiguous(), C)  # Sigma^-1 - Sigma^-1 (Sigma^-1 S_l)^T
    return 0.5 * (G + G.T)


def gradient(params, data, *, l2: float = 0.0, **_) -> dict[str, torch.Tensor]:
    C = _chol(params)
    g = {}
    if "mu" in params:
        r = (data.X.mean(0) - params["mu"]).unsqueeze(1)
        g["mu"] = -2.0 * torch.cholesky_solve(r, C).squeeze(1)
    if "L" in params:
        S = _S(params, data, l2)
        B = torch.linalg.solve_triangular(C, S, upper=False)  # L^-1 S_l
        A = torch.linalg.solve_triangular(C, B.T.contiguous(), upper=False)  # L^-1 S_l L^-T
        M = torch.eye(data.d, dtype=C.dtype, device=C.device) - A
        g["L"] = torch.tril(2.0 * torch.linalg.solve_triangular(C.T, M, upper=True))
    else:
        g["Sigma"] = _G(params, data, l2)
    return {k: g[k] for k in params}


def dgradient(params, data, dparams, *, l2: float = 0.0, **_) -> dict[str, torch.Tensor]:
    """The differential of the gradient along dP (a Hessian-vector product), by hand.

    With Si = Sigma^-1, r = xbar - mu, dSigma = sym(dSigma) or dL L^T + L dL^T, and
    dS_mu = -(dmu r^T + r dmu^T) (S_mu moves with mu):

        dG        = -Si dSigma Si + Si dSigma Si S_l Si + Si S_l Si dSigma Si - Si dS_mu Si
        d(dl/dmu) = 2 Si dSigma Si r + 2 Si dmu
        d(dl/dL)  = tril(2 dG L + 2 G dL)

    The directions may carry a leading batch dimension (many directions at once)."""
    C = _chol(params)
    Si = torch.cholesky_inverse(C)
    Si = 0.5 * (Si + Si.T)
    S = _S(params, data, l2)
    dSig = _dSigma(params, dparams)
    out = {}
    r = _xbar_minus_mu(params, data)
    A = Si @ dSig @ Si
    dG = -A + A @ (S @ Si) + (Si @ S) @ A
    if "mu" in params:
        dmu = dparams["mu"]
        out["mu"] = 2.0 * (A @ r) + 2.0 * (dmu @ Si)  # Si symmetric: Si dmu = (dmu^T Si)^T
        dS = -(dmu[..., :, None] * r + r[:, None] * dmu[..., None, :])  # dmu r^T + r dmu^T
        dG = dG - Si @ dS @ Si
    if "L" in params:
        L, dL = torch.tril(params["L"]), torch.tril(dparams["L"])
        out["L"] = torch.tril(2.0 * dG @ L + 2.0 * _G(params, data, l2) @ dL)
    else:
        out["Sigma"] = 0.5 * (dG + dG.mT)
    return {k: out[k] for k in params}


def hessian(params, data, *, l2: float = 0.0, **_) -> torch.Tensor:
    """The matrix of :func:`dgradient` over the parameters flattened in dict order (mu,
    then Sigma or L row-major): column j is d(grad) along the j-th unit direction (all
    directions in one batched pass).  Entries above the diagonal of L are not read by the
    loss: their rows and columns are 0."""
    x = torch.cat([v.reshape(-1) for v in params.values()])
    n = x.numel()
    E = torch.eye(n, dtype=x.dtype, device=x.device)
    dirs, i = {}, 0
    for k, v in params.items():
        dirs[k] = E[:, i:i + v.numel()].reshape(n, *v.shape)
        i += v.numel()
    out = dgradient(params, data, dirs, l2=l2)
    H = torch.cat([out[k].reshape(n, -1) for k in params], dim=1).T  # column j: direction j
    return 0.5 * (H + H.T)


# ---- the derivation, line by line -----------------------------------------------------
# The derivation is in the notation: derivations/gaussian.hg (in Sigma, the notes'
# example) and derivations/gaussian_cholesky.hg (through L, what gd moves), each with its
# gradient and its second differential d2l.  `derive gaussian` verifies every line of
# both and links them, at the check problems of their parametrisation, to the functions
# above: l to the model's loss, grad mu and grad Sigma / grad L to gradient(), hess mu to
# the mu block of hessian(), and d2l to dP' H dP with the whole (mu, Sigma or L) matrix
# of hessian(), along directions symmetric in Sigma and lower triangular in L.  (hess
# Sigma and hess L are not read off: no fit uses a Sigma Hessian (there is no Newton
# solver), and hessian()'s Sigma block is over symmetrised directions, P H P with
# P = (I + K)/2, where a read-off over vec(Sigma) is over independent entries; d2l along
# symmetric directions checks that same matrix.)

def _values(params, data, hp) -> dict:
    """The model's point in the files' names; mu is the sample mean when it is not a
    parameter (the model's mean_of)."""
    X = data.X
    out = {"X": X, "mu": _mean(params, data), "l2": X.new_tensor(float(hp["l2"]))}
    if "L" in params:
        out["L"] = torch.tril(params["L"])
    if "Sigma" in params:
        out["Sigma"] = params["Sigma"]
    return out


NOTATION = (InNotation("gaussian.hg", _values, absent=("mu",)),
            InNotation("gaussian_cholesky.hg", _values, absent=("mu",)))


def _dSigma(P, dP):
    """The direction in Sigma: symmetrised (the convention), or dL L^T + L dL^T."""
    if "L" in P:
        L, dL = torch.tril(P["L"]), torch.tril(dP["L"])
        return dL @ L.T + L @ dL.mT
    return 0.5 * (dP["Sigma"] + dP["Sigma"].mT)
