"""Hand-derived gradient and Hessian of logistic regression (notes part 3 §6, example 8).

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
from handgrad.verify.in_notation import InNotation, linear_values


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
    # log(1 + e^z) = max(z, 0) + log(1 + e^-|z|): exact for every z (torch's softplus
    # returns z itself above z = 20, dropping e^-z, a million times the rounding there)
    lz = z.clamp_min(0.0) + torch.log1p(torch.exp(-z.abs())) - y * z if value else None
    e = torch.sigmoid(z) - y if grad or hess else None
    return lz, e, weights(z) if hess else None


LINEAR = LinearLoss(per_sample)
gradient, hessian = LINEAR.gradient, LINEAR.hessian  # the same functions, by their usual names


# The derivation, line by line, is derivations/logistic.hg (every line parsed and verified;
# `derive logistic` links its read-offs to LINEAR's gradient and Hessian above).
NOTATION = InNotation("logistic.hg", linear_values, absent=("b",))
