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
from handgrad.verify.in_notation import InNotation, linear_values


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
gradient, hessian = LINEAR.gradient, LINEAR.hessian  # the same functions, by their usual names


# The derivation, line by line, is derivations/poisson.hg (every line parsed and verified;
# `derive poisson` links its read-offs to LINEAR's gradient and Hessian above).
NOTATION = InNotation("poisson.hg", linear_values, absent=("b",))
