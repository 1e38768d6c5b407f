"""Hand-derived gradient and Hessian of least squares .

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
from handgrad.verify.in_notation import InNotation, linear_values


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
gradient, hessian = LINEAR.gradient, LINEAR.hessian  # the same functions, by their usual names


# The derivation, line by line, is derivations/least_squares.hg (every line parsed and verified;
# `derive least_squares` links its read-offs to LINEAR's gradient and Hessian above).
NOTATION = InNotation("least_squares.hg", linear_values, absent=("b",))
