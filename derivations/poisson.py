"""Hand-derived gradient and Hessian of Poisson regression (log link).

    l  = sum_i [ exp(z_i) - y_i z_i ] + (l2/2) w^T w = 1^T exp(z) - y^T z + ...,  z = X w + b 1
    dl = 1^T (exp(z) o dz) - y^T dz + l2 w^T dw = (mu - y)^T (X dw + 1 db) + l2 w^T dw
    dl/dw = X^T (mu - y) + l2 w,    dl/db = 1^T (mu - y)
    Hessian = sum_i x_i x_i^T mu_i = X_a^T diag(mu) X_a  (+ l2 I_w)

mu = exp(z), the Poisson mean.  The first differential is the notes' example 2
(f = a^T exp(X b), df = a^T (exp(X b) o (dX b))) with a = 1 and the direction in z.
The per-sample pieces below are the single source of both derivatives (LINEAR); the
sandwich never forms diag(mu).  Layout: denominator (gradients have the parameter's shape).
"""

from __future__ import annotations

import torch

from handgrad.fitting.sums import LinearLoss
from handgrad.verify.steps import Derivation, Step, inner


def _z(P, D):
    z = D.X @ P["w"]
    return z + P["b"] if "b" in P else z


def _dz(P, D, dP):
    dz = D.X @ dP["w"]
    return dz + dP["b"] if "b" in P else dz


def per_sample(z: torch.Tensor, y: torch.Tensor, grad: bool = True, hess: bool = True,
               value: bool = True):
    """The derivation per sample, l_i = exp(z_i) - y_i z_i, for chunked sums.

    Returns (l_i, dl/dz_i = mu_i - y_i, d^2l/dz_i^2 = mu_i), mu_i = exp(z_i), None where
    not asked for.  LINEAR's chain rule through z = X w + b 1 turns these into the
    gradient X^T (mu - y) + l2 w, 1^T (mu - y) and the Hessian X_a^T diag(mu) X_a + l2 I_w
    that ``check`` verifies and every fit path sums.
    """
    mu = torch.exp(z)
    lz = mu - y * z if value else None
    e = mu - y if grad or hess else None
    return lz, e, mu if hess else None


LINEAR = LinearLoss(per_sample)
gradient, hessian = LINEAR.gradient, LINEAR.hessian  # for the steps below; not a second copy


def _mu(P, D):
    return torch.exp(_z(P, D))


def _l2(hp, P, dP):
    return hp.get("l2", 0.0) * (P["w"] @ dP["w"])


def derivations() -> list[Derivation]:
    grad = Derivation(
        title="Poisson regression: dl/dA (A = w, b)",
        target="loss",
        layout="denominator: dl/dw has the shape of w (d,)",
        steps=[
            Step("l = 1^T exp(z) - y^T z + (l2/2) w^T w,  z = Xw + b1",
                 r"l = \mathbf{1}^T \exp(z) - y^T z + \tfrac{\lambda}{2} w^T w,\quad z = Xw + b\mathbf{1}",
                 lambda P, D, dP, hp: torch.exp(_z(P, D)).sum() - D.y @ _z(P, D)
                 + 0.5 * hp.get("l2", 0.0) * P["w"] @ P["w"],
                 "sum_i [exp(z_i) - y_i z_i]: the Poisson negative log-likelihood without "
                 "sum_i log(y_i!)", kind="value"),
            Step("dl = 1^T (exp(z) o dz) - y^T dz + l2 w^T dw,  dz = X dw + 1 db",
                 r"dl = \mathbf{1}^T (\exp(z) \odot dz) - y^T dz + \lambda w^T dw,\quad dz = X\,dw + \mathbf{1}\,db",
                 lambda P, D, dP, hp: (torch.exp(_z(P, D)) * _dz(P, D, dP)).sum()
                 - D.y @ _dz(P, D, dP) + _l2(hp, P, dP),
                 "d exp(z) = exp(z) o dz (elementwise), as in the notes' example 2"),
            Step("dl = (mu - y)^T (X dw + 1 db) + l2 w^T dw,  mu = exp(z)",
                 r"dl = (\mu - y)^T (X\,dw + \mathbf{1}\,db) + \lambda w^T dw,\quad \mu = \exp(z)",
                 lambda P, D, dP, hp: (_mu(P, D) - D.y) @ _dz(P, D, dP) + _l2(hp, P, dP),
                 "1^T (a o b) = a^T b; collect the terms in dz"),
            Step("dl = tr((X^T (mu - y) + l2 w)^T dw) + tr((1^T (mu - y))^T db)",
                 r"dl = \operatorname{tr}\big((X^T(\mu - y) + \lambda w)^T dw\big) + \operatorname{tr}\big((\mathbf{1}^T(\mu - y))^T db\big)",
                 lambda P, D, dP, hp: (D.X.T @ (_mu(P, D) - D.y) + hp.get("l2", 0.0) * P["w"]) @ dP["w"]
                 + ((_mu(P, D) - D.y).sum() * dP["b"] if "b" in P else 0.0),
                 "trace trick: tr(a) = a, tr(AB) = tr(BA)"),
            Step("=> dl/dw = X^T (mu - y) + l2 w,  dl/db = 1^T (mu - y)",
                 r"\Rightarrow \frac{\partial l}{\partial w} = X^T (\mu - y) + \lambda w,\quad \frac{\partial l}{\partial b} = \mathbf{1}^T (\mu - y)",
                 lambda P, D, dP, hp: inner(gradient(P, D, **hp), dP),
                 "read off: dl = tr(G^T dX) means dl/dX = G"),
        ],
    )
    hess = Derivation(
        title="Poisson regression: Hessian d^2 l / dA dA^T",
        target="gradient",
        layout="Hessian over (w, b) flattened, (d+1) x (d+1); symmetric",
        steps=[
            Step("d(dl/dw) = X^T dmu + l2 dw,  d(dl/db) = 1^T dmu,  dmu = exp(z) o dz",
                 r"d\Big(\frac{\partial l}{\partial w}\Big) = X^T (\exp(z) \odot dz) + \lambda\, dw,\quad d\Big(\frac{\partial l}{\partial b}\Big) = \mathbf{1}^T (\exp(z) \odot dz)",
                 lambda P, D, dP, hp: _stack(P, D, torch.exp(_z(P, D)) * _dz(P, D, dP))
                 + _ridge(P, D, dP, hp),
                 "y does not depend on A; d exp(z) = exp(z) o dz"),
            Step("= X_a^T diag(mu) (X_a dA) + l2 [dw; 0],  X_a = [X, 1], dA = [dw; db]",
                 r"= X_a^T \operatorname{diag}(\mu)\, X_a\, dA + \lambda \begin{bmatrix} dw \\ 0 \end{bmatrix},\quad X_a = [X, \mathbf{1}]",
                 lambda P, D, dP, hp: _stack(P, D, _mu(P, D) * _dz(P, D, dP)) + _ridge(P, D, dP, hp),
                 "a o b = diag(a) b; dz = X dw + 1 db = X_a dA"),
            Step("=> H = sum_i x_i x_i^T mu_i + l2 I = X_a^T diag(mu) X_a + l2 I_w",
                 r"\Rightarrow H = \sum_i x_i x_i^T \mu_i + \lambda I_w = X_a^T \operatorname{diag}(\mu)\, X_a + \lambda I_w",
                 lambda P, D, dP, hp: hessian(P, D, **hp) @ torch.cat([v.reshape(-1) for v in dP.values()]),
                 "vec(d grad) = H vec(dA); H as a sandwich, diag never formed"),
        ],
    )
    return [grad, hess]


def _stack(P, D, s):
    """[X^T s; 1^T s] over the flattened (w, b)."""
    parts = [D.X.T @ s]
    if "b" in P:
        parts.append(s.sum().reshape(1))
    return torch.cat(parts)


def _ridge(P, D, dP, hp):
    out = torch.zeros(sum(v.numel() for v in P.values()), dtype=D.X.dtype, device=D.X.device)
    out[: D.d] = hp.get("l2", 0.0) * dP["w"]
    return out
