"""Hand-derived gradient and Hessian of least squares (seeds, worked example 3).

    l  = r^T r + (l2/2) w^T w,            r = X w + b 1 - y
    dl = (X dw + 1 db)^T r + r^T (X dw + 1 db) + l2 w^T dw
       = tr((2 X^T r + l2 w)^T dw) + tr((2 1^T r)^T db)
    dl/dw = 2 X^T (X w + b 1 - y) + l2 w          dl/db = 2 1^T r
    Hessian = 2 X_a^T X_a + l2 I_w,   X_a = [X, 1]  (flattened order: w, then b)

Layout: denominator (gradients have the parameter's shape).
"""

from __future__ import annotations

import torch

from handgrad.fitting.sums import LinearLoss
from handgrad.verify.steps import Derivation, Step, inner


def _r(P, D):
    r = D.X @ P["w"] - D.y
    return r + P["b"] if "b" in P else r


def _dr(P, D, dP):
    dr = D.X @ dP["w"]
    return dr + dP["b"] if "b" in P else dr


def per_sample(z: torch.Tensor, y: torch.Tensor, grad: bool = True, hess: bool = True,
               value: bool = True):
    """The derivation per sample, l_i = (z_i - y_i)^2 with z = X w + b 1, for chunked sums.

    Returns (l_i, dl/dz_i = 2 r_i, d^2l/dz_i^2 = 2), None where not asked for.  These are
    the one source of the model's derivatives: LINEAR's chain rule through z gives the
    gradient 2 X^T r + l2 w, 2 1^T r and the Hessian 2 X_a^T X_a + l2 I_w that ``check``
    verifies and every fit path sums (handgrad/fitting/sums.py).
    """
    r = z - y
    lz = r * r if value else None
    return (lz, r.mul_(2.0) if grad or hess else None,  # r is ours: doubled in place
            torch.full_like(z, 2.0) if hess else None)


LINEAR = LinearLoss(per_sample)
gradient, hessian = LINEAR.gradient, LINEAR.hessian  # for the steps below; not a second copy


def _l2(hp, P, dP):
    return hp.get("l2", 0.0) * (P["w"] @ dP["w"])


def derivations() -> list[Derivation]:
    grad = Derivation(
        title="Least squares: dl/dw (and dl/db)",
        target="loss",
        layout="denominator: dl/dw has the shape of w (d,)",
        steps=[
            Step("l = (Xw + b1 - y)^T (Xw + b1 - y) + (l2/2) w^T w",
                 r"l = (Xw + b\mathbf{1} - y)^T (Xw + b\mathbf{1} - y) + \tfrac{\lambda}{2} w^T w",
                 lambda P, D, dP, hp: _r(P, D) @ _r(P, D) + 0.5 * hp.get("l2", 0.0) * P["w"] @ P["w"],
                 "norm squared as an inner product", kind="value"),
            Step("dl = (X dw + 1 db)^T r + r^T (X dw + 1 db) + l2 w^T dw,  r = Xw + b1 - y",
                 r"dl = (X\,dw + \mathbf{1}\,db)^T r + r^T (X\,dw + \mathbf{1}\,db) + \lambda w^T dw",
                 lambda P, D, dP, hp: _dr(P, D, dP) @ _r(P, D) + _r(P, D) @ _dr(P, D, dP) + _l2(hp, P, dP),
                 "product rule d(u^T v) = du^T v + u^T dv; dy = 0"),
            Step("dl = 2 r^T (X dw + 1 db) + l2 w^T dw",
                 r"dl = 2\, r^T (X\,dw + \mathbf{1}\,db) + \lambda w^T dw",
                 lambda P, D, dP, hp: 2 * _r(P, D) @ _dr(P, D, dP) + _l2(hp, P, dP),
                 "a scalar equals its transpose"),
            Step("dl = tr((2 X^T r + l2 w)^T dw) + tr((2 1^T r)^T db)",
                 r"dl = \operatorname{tr}\big((2X^T r + \lambda w)^T dw\big) + \operatorname{tr}\big((2\,\mathbf{1}^T r)^T db\big)",
                 lambda P, D, dP, hp: (2 * D.X.T @ _r(P, D) + hp.get("l2", 0.0) * P["w"]) @ dP["w"]
                 + (2 * _r(P, D).sum() * dP["b"] if "b" in P else 0.0),
                 "wrap in a trace, move dw to the right: tr(AB) = tr(BA)"),
            Step("=> dl/dw = 2 X^T (Xw + b1 - y) + l2 w,  dl/db = 2 1^T (Xw + b1 - y)",
                 r"\Rightarrow \frac{\partial l}{\partial w} = 2X^T(Xw + b\mathbf{1} - y) + \lambda w,\quad \frac{\partial l}{\partial b} = 2\,\mathbf{1}^T(Xw + b\mathbf{1} - y)",
                 lambda P, D, dP, hp: inner(gradient(P, D, **hp), dP),
                 "read off: dl = tr(G^T dX) means dl/dX = G"),
        ],
        assumptions=["setting dl/dw = 0 gives the normal equations X^T X w = X^T y; "
                     "handgrad solves them by Householder QR, not by inverting X^T X"],
    )
    hess = Derivation(
        title="Least squares: Hessian",
        target="gradient",
        layout="Hessian over (w, b) flattened, (d+1) x (d+1); symmetric",
        steps=[
            Step("d(dl/dw) = 2 X^T (X dw + 1 db) + l2 dw,  d(dl/db) = 2 1^T (X dw + 1 db)",
                 r"d\Big(\frac{\partial l}{\partial w}\Big) = 2X^T(X\,dw + \mathbf{1}\,db) + \lambda\,dw",
                 lambda P, D, dP, hp: torch.cat([
                     2 * D.X.T @ _dr(P, D, dP) + hp.get("l2", 0.0) * dP["w"],
                     (2 * _dr(P, D, dP).sum()).reshape(1) if "b" in P else D.X.new_zeros(0)]),
                 "differentiate the gradient; X and y are constants"),
            Step("=> H = 2 X_a^T X_a + l2 I_w,  X_a = [X, 1]",
                 r"\Rightarrow H = 2 X_a^T X_a + \lambda I_w,\quad X_a = [X,\ \mathbf{1}]",
                 lambda P, D, dP, hp: hessian(P, D, **hp) @ torch.cat([v.reshape(-1) for v in dP.values()]),
                 "vec(d grad) = H vec(dP)"),
        ],
    )
    return [grad, hess]
