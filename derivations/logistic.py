"""Hand-derived gradient and Hessian of logistic regression (seeds, worked example 8).

    l  = sum_i [ -y_i z_i + log(1 + e^{z_i}) ] + (l2/2) w^T w,   z = X w + b 1
    dl = sum_i ( -y_i + e^{z_i} / (1 + e^{z_i}) ) dz_i + l2 w^T dw = (p - y)^T (X dw + 1 db) + ...
    dl/dw = -sum_i x_i (y_i - p_i) + l2 w = X^T (p - y) + l2 w,    dl/db = 1^T (p - y)
    Hessian = sum_i x_i x_i^T p_i (1 - p_i) = X_a^T diag(p o (1 - p)) X_a  (+ l2 I_w)

p_i = sigmoid(z_i).  p_i (1 - p_i) is computed as sigmoid(z) * sigmoid(-z): the naive
product rounds to exactly 0 in float64 for z >= 37.  The sandwich never forms diag(.).
Layout: denominator (gradients have the parameter's shape).
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


def weights(z: torch.Tensor) -> torch.Tensor:
    """p (1 - p) as sigmoid(z) sigmoid(-z): positive and accurate for large |z|."""
    return torch.sigmoid(z) * torch.sigmoid(-z)


def per_sample(z: torch.Tensor, y: torch.Tensor, grad: bool = True, hess: bool = True,
               value: bool = True):
    """The derivation per sample, l_i = log(1 + e^{z_i}) - y_i z_i, for chunked sums.

    Returns (l_i, dl/dz_i = p_i - y_i, d^2l/dz_i^2 = p_i (1 - p_i)), None where not asked
    for.  These are the one source of the model's derivatives: LINEAR's chain rule through
    z = X w + b 1 gives the gradient X^T (p - y) + l2 w, 1^T (p - y) and the Hessian
    X_a^T diag(p (1 - p)) X_a + l2 I_w that ``check`` verifies and every fit path sums.
    """
    lz = torch.nn.functional.softplus(z) - y * z if value else None
    e = torch.sigmoid(z) - y if grad or hess else None
    return lz, e, weights(z) if hess else None


LINEAR = LinearLoss(per_sample)
gradient, hessian = LINEAR.gradient, LINEAR.hessian  # for the steps below; not a second copy


def _l2(hp, P, dP):
    return hp.get("l2", 0.0) * (P["w"] @ dP["w"])


def derivations() -> list[Derivation]:
    grad = Derivation(
        title="Logistic regression: dl/dA (A = w, b)",
        target="loss",
        layout="denominator: dl/dw has the shape of w (d,)",
        steps=[
            Step("l = sum_i [ -y_i z_i + log(1 + exp(z_i)) ] + (l2/2) w^T w,  z = Xw + b1",
                 r"l = \sum_i \big[-y_i z_i + \log(1 + e^{z_i})\big] + \tfrac{\lambda}{2} w^T w,\quad z = Xw + b\mathbf{1}",
                 lambda P, D, dP, hp: (-D.y * _z(P, D) + torch.logaddexp(_z(P, D), torch.zeros_like(_z(P, D)))).sum()
                 + 0.5 * hp.get("l2", 0.0) * P["w"] @ P["w"],
                 "the seed's loss; log(1 + e^z) evaluated stably as logaddexp(0, z)", kind="value"),
            Step("dl = sum_i [ -y_i dz_i + e^{z_i} / (1 + e^{z_i}) dz_i ] + l2 w^T dw,  dz = X dw + 1 db",
                 r"dl = \sum_i \Big[-y_i\,dz_i + \frac{e^{z_i}}{1 + e^{z_i}}\,dz_i\Big] + \lambda w^T dw",
                 lambda P, D, dP, hp: (-D.y * _dz(P, D, dP)).sum()
                 + (torch.sigmoid(_z(P, D)) * _dz(P, D, dP)).sum() + _l2(hp, P, dP),
                 "d log(1 + e^z) = e^z / (1 + e^z) dz; dz = X dw + 1 db"),
            Step("dl = (p - y)^T (X dw + 1 db) + l2 w^T dw,  p = sigmoid(z)",
                 r"dl = (p - y)^T (X\,dw + \mathbf{1}\,db) + \lambda w^T dw,\quad p = \sigma(z)",
                 lambda P, D, dP, hp: (torch.sigmoid(_z(P, D)) - D.y) @ _dz(P, D, dP) + _l2(hp, P, dP),
                 "collect the sum as an inner product"),
            Step("dl = tr((X^T (p - y) + l2 w)^T dw) + tr((1^T (p - y))^T db)",
                 r"dl = \operatorname{tr}\big((X^T(p - y) + \lambda w)^T dw\big) + \operatorname{tr}\big((\mathbf{1}^T(p - y))^T db\big)",
                 lambda P, D, dP, hp: (D.X.T @ (torch.sigmoid(_z(P, D)) - D.y) + hp.get("l2", 0.0) * P["w"]) @ dP["w"]
                 + ((torch.sigmoid(_z(P, D)) - D.y).sum() * dP["b"] if "b" in P else 0.0),
                 "trace trick: tr(a) = a, tr(AB) = tr(BA)"),
            Step("=> dl/dw = -sum_i x_i (y_i - p_i) + l2 w,  dl/db = -sum_i (y_i - p_i)",
                 r"\Rightarrow \frac{\partial l}{\partial w} = -\sum_i x_i (y_i - p_i) + \lambda w,\quad \frac{\partial l}{\partial b} = -\sum_i (y_i - p_i)",
                 lambda P, D, dP, hp: inner(gradient(P, D, **hp), dP),
                 "read off: dl = tr(G^T dX) means dl/dX = G"),
        ],
    )
    hess = Derivation(
        title="Logistic regression: Hessian d^2 l / dA dA^T",
        target="gradient",
        layout="Hessian over (w, b) flattened, (d+1) x (d+1); symmetric",
        steps=[
            Step("d(dl/dw) = sum_i x_i dp_i + l2 dw,  dp_i = e^{z_i} / (1 + e^{z_i})^2 dz_i",
                 r"d\Big(\frac{\partial l}{\partial w}\Big) = \sum_i x_i\, \frac{e^{z_i}}{(1 + e^{z_i})^2}\, dz_i + \lambda\, dw",
                 lambda P, D, dP, hp: _stack(P, D, torch.exp(_z(P, D)) / (1 + torch.exp(_z(P, D))) ** 2
                                             * _dz(P, D, dP)) + _ridge(P, D, dP, hp),
                 "quotient rule on e^z / (1 + e^z); the seed's form (overflows for z > 709)"),
            Step("= sum_i x_i p_i (1 - p_i) (x_i^T dw + db) + l2 dw",
                 r"= \sum_i x_i\, p_i (1 - p_i)\, (x_i^T dw + db) + \lambda\, dw",
                 lambda P, D, dP, hp: _stack(P, D, weights(_z(P, D)) * _dz(P, D, dP)) + _ridge(P, D, dP, hp),
                 "e^z / (1 + e^z)^2 = p (1 - p) = sigmoid(z) sigmoid(-z)"),
            Step("=> H = sum_i x_i x_i^T p_i (1 - p_i) + l2 I = X_a^T diag(p o (1 - p)) X_a + l2 I_w",
                 r"\Rightarrow H = \sum_i x_i x_i^T p_i(1 - p_i) + \lambda I_w = X_a^T \operatorname{diag}(p \odot (1 - p)) X_a + \lambda I_w",
                 lambda P, D, dP, hp: hessian(P, D, **hp) @ torch.cat([v.reshape(-1) for v in dP.values()]),
                 "vec(d grad) = H vec(dP); H as a sandwich, diag never formed"),
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
