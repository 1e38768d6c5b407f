"""Hand-derived gradient and Hessian of softmax regression (notes part 3 §6, example 6).

Shapes: X (n, d) with samples as rows, W (K, d) one row per class (the notes' W x),
b (K,), Y (n, K) one-hot (integer labels are turned into one-hot rows here).

    Z = X W^T + 1 b^T  (row i: z_i = W x_i + b),   P = softmax(Z) row-wise,   E = P - Y
    l  = sum_i -y_i^T log softmax(z_i) + (l2/2) tr(W^T W)
       = sum_i [ -y_i^T z_i + log(1^T exp(z_i)) ] + (l2/2) tr(W^T W)     (1^T y_i = 1)
    dl = sum_i (p_i - y_i)^T (dW x_i + db) + l2 tr(W^T dW)
       = tr( (E^T X + l2 W)^T dW ) + tr( (E^T 1)^T db )
    dl/dW = sum_i (p_i - y_i) x_i^T + l2 W = (P - Y)^T X + l2 W        (K, d)
    dl/db = sum_i (p_i - y_i)         = (P - Y)^T 1                    (K,)

Hessian (beyond the notes).  dp_i = (diag(p_i) - p_i p_i^T) dz_i, so with x_a = [x; 1] and
A = [W, b] (K, d+1) vectorised row by row,

    H_AA = sum_i (diag(p_i) - p_i p_i^T) kron x_ai x_ai^T  (+ l2 I on the W entries),

returned over the parameters flattened in dict order (W row-major, then b), a
(K d + K) square matrix.  It is built as -M^T M with M = [p_ik x_ai] (n, K (d+1)) for the
off-diagonal blocks and X_a^T diag(p_k o (1 - p_k)) X_a for the diagonal ones, with
1 - p_k summed from the other classes' probabilities (p_k - p_k^2 would cancel when p_k is
near 1: in float32 the check then fails at logits of a few hundred); the n Kronecker
products are never formed.

The Hessian is singular, because the loss is.  softmax(z + c 1) = softmax(z), so adding a
constant to every b_k, or (without L2) one vector c to every row of W, changes nothing:
H v = 0 along v = (0, 1_K) and v = (1_K kron c, 0), and the gradient is orthogonal to
them (each column of P - Y sums to zero across classes).  ``flat_directions`` returns
these directions; Newton's method (handgrad/solvers.py) solves H d = -g on their
orthogonal complement by adding s N^T N to H (exact there, not damping: g is orthogonal
to N, so the step is the minimum-norm Newton step and keeps sum_k b_k, and without L2
the column sums of W, where they started).  With l2 > 0 only the bias direction is
flat.  Layout: denominator (gradients have the parameter's shape).
"""

from __future__ import annotations

import math

import torch

from handgrad.params import numel
from handgrad.verify.in_notation import InNotation


def _Y(P, D):
    K = P["W"].shape[0]
    if D.y.dim() == 2:
        return D.y.to(D.X.dtype)
    return torch.nn.functional.one_hot(D.y.long(), K).to(D.X.dtype)


def _Z(P, D):
    return torch.addmm(P["b"], D.X, P["W"].T) if "b" in P else D.X @ P["W"].T


def _residual(P, D):
    """P - Y in place on the softmax, subtracting the labels by index (Y never formed)."""
    E = torch.softmax(_Z(P, D), dim=1)
    if D.y.dim() == 2:
        return E.sub_(D.y.to(E.dtype))
    E[torch.arange(E.shape[0], device=E.device), D.y.long()] -= 1.0
    return E


def gradient(params, data, *, l2: float = 0.0, **_) -> dict[str, torch.Tensor]:
    E = _residual(params, data)  # P - Y, (n, K)
    g = {"W": E.T @ data.X}
    if l2:
        g["W"] = g["W"] + l2 * params["W"]
    if "b" in params:
        g["b"] = E.sum(0)
    return g


def hessian(params, data, *, l2: float = 0.0, **_) -> torch.Tensor:
    W = params["W"]
    K, d = W.shape
    Pr = torch.softmax(_Z(params, data), dim=1)  # (n, K)
    Xa = torch.cat([data.X, data.X.new_ones(data.n, 1)], 1) if "b" in params else data.X
    m = Xa.shape[1]
    M = (Pr.unsqueeze(2) * Xa.unsqueeze(1)).reshape(data.n, K * m)  # rows: p_i kron x_ai
    H = -(M.T @ M)  # the off-diagonal blocks -X_a^T diag(p_k o p_l) X_a are right as they are
    # diagonal blocks: X_a^T diag(p_k (1 - p_k)) X_a, with 1 - p_k summed from the other
    # classes' probabilities (p_k - p_k^2 cancels when p_k ~ 1, badly so in float32)
    others = Pr @ (torch.ones(K, K, dtype=Pr.dtype, device=Pr.device)
                   - torch.eye(K, dtype=Pr.dtype, device=Pr.device))
    for k in range(K):
        H[k * m:(k + 1) * m, k * m:(k + 1) * m] = Xa.T @ (Xa * (Pr[:, k] * others[:, k]).unsqueeze(1))
    if "b" in params:  # reorder (W_k, b_k) interleaved rows to (W row-major, then b)
        idx = torch.arange(K * m, device=H.device).reshape(K, m)
        order = torch.cat([idx[:, :d].reshape(-1), idx[:, d:].reshape(-1)])
        H = H[order][:, order]
    if l2:
        i = torch.arange(K * d, device=H.device)
        H[i, i] += l2
    return H


def flat_directions(params, data, *, l2: float = 0.0, **_) -> torch.Tensor:
    """Orthonormal rows spanning the directions along which the loss is exactly constant
    (the shift invariance of softmax); empty (0, P) when there are none."""
    W = params["W"]
    K, d = W.shape
    P = numel(params)
    rows = []
    s = 1.0 / math.sqrt(K)
    if not l2:
        for j in range(d):
            v = W.new_zeros(P)
            v[torch.arange(K, device=W.device) * d + j] = s
            rows.append(v)
    if "b" in params:
        v = W.new_zeros(P)
        v[K * d:] = s
        rows.append(v)
    return torch.stack(rows) if rows else W.new_zeros(0, P)


def _values(params, data, hp) -> dict:
    """The model's point in softmax.hg's names: Y one-hot (n, K), W (K, d), b (K,)."""
    W = params["W"]
    return {"X": data.X, "Y": _Y(params, data), "W": W, "b": params.get("b", W.new_zeros(W.shape[0])),
            "l2": W.new_tensor(float(hp["l2"]))}


# The derivation, line by line, is derivations/softmax.hg (every line parsed and verified;
# `derive softmax` links its read-offs to gradient() and hessian() above).
NOTATION = InNotation("softmax.hg", _values, absent=("b",))
