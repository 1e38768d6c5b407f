"""Hand-derived gradient and Hessian of softmax regression (seeds, worked example 6).

Shapes: X (n, d) with samples as rows, W (K, d) one row per class (the seed's W x),
b (K,), Y (n, K) one-hot (integer labels are turned into one-hot rows here).

    Z = X W^T + 1 b^T  (row i: z_i = W x_i + b),   P = softmax(Z) row-wise,   E = P - Y
    l  = sum_i -y_i^T log softmax(z_i) + (l2/2) tr(W^T W)
       = sum_i [ -y_i^T z_i + log(1^T exp(z_i)) ] + (l2/2) tr(W^T W)     (1^T y_i = 1)
    dl = sum_i (p_i - y_i)^T (dW x_i + db) + l2 tr(W^T dW)
       = tr( (E^T X + l2 W)^T dW ) + tr( (E^T 1)^T db )
    dl/dW = sum_i (p_i - y_i) x_i^T + l2 W = (P - Y)^T X + l2 W        (K, d)
    dl/db = sum_i (p_i - y_i)         = (P - Y)^T 1                    (K,)

Hessian (beyond the seed).  dp_i = (diag(p_i) - p_i p_i^T) dz_i, so with x_a = [x; 1] and
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
from handgrad.verify.steps import Derivation, Step, inner


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


def _dZ(P, D, dP):
    dZ = D.X @ dP["W"].T
    return dZ + dP["b"] if "b" in P else dZ


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
        order = torch.cat([idx[:, :d].reshape(-1), idx[:, d]])
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


def _l2(hp, P, dP):
    return hp.get("l2", 0.0) * (P["W"] * dP["W"]).sum()


def _seed_softmax(Z):
    """exp(z) / 1^T exp(z), the seed's ratio, evaluated with the max subtracted first
    (the same number; exp(1000) itself overflows)."""
    e = torch.exp(Z - Z.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def derivations() -> list[Derivation]:
    grad = Derivation(
        title="Softmax regression: dl/dW (and dl/db)",
        target="loss",
        layout="denominator: dl/dW has the shape of W (K, d); dl/db of b (K,)",
        steps=[
            Step("l = sum_i -y_i^T log softmax(z_i) + (l2/2) tr(W^T W),  z_i = W x_i + b",
                 r"l = -\sum_i y_i^T \log \operatorname{softmax}(z_i) + \tfrac{\lambda}{2}\operatorname{tr}(W^TW),\quad z_i = Wx_i + b",
                 lambda P, D, dP, hp: -(_Y(P, D) * torch.log_softmax(_Z(P, D), 1)).sum()
                 + 0.5 * hp.get("l2", 0.0) * (P["W"] ** 2).sum(),
                 "the seed's loss, summed over samples", kind="value"),
            Step("l = sum_i [ -y_i^T z_i + log(1^T exp(z_i)) ] + (l2/2) tr(W^T W)",
                 r"l = \sum_i \big[-y_i^T z_i + \log(\mathbf{1}^T e^{z_i})\big] + \tfrac{\lambda}{2}\operatorname{tr}(W^TW)",
                 lambda P, D, dP, hp: (-(_Y(P, D) * _Z(P, D)).sum(1)
                                       + torch.logsumexp(_Z(P, D), 1)).sum()
                 + 0.5 * hp.get("l2", 0.0) * (P["W"] ** 2).sum(),
                 "log softmax(z) = z - 1 log(1^T e^z) and y^T 1 = 1; log(1^T e^z) as logsumexp",
                 kind="value"),
            Step("dl = sum_i [ -y_i^T dz_i + 1^T(exp(z_i) o dz_i) / 1^T exp(z_i) ] + l2 tr(W^T dW),"
                 "  dz_i = dW x_i + db",
                 r"dl = \sum_i \Big[-y_i^T dz_i + \frac{\mathbf{1}^T(e^{z_i}\odot dz_i)}{\mathbf{1}^T e^{z_i}}\Big] + \lambda\operatorname{tr}(W^T dW)",
                 lambda P, D, dP, hp: (-(_Y(P, D) * _dZ(P, D, dP)).sum()
                                       + (_seed_softmax(_Z(P, D)) * _dZ(P, D, dP)).sum())
                 + _l2(hp, P, dP),
                 "d log u = du / u; d exp(z) = exp(z) o dz; dz = dW x + db (the seed's step)"),
            Step("dl = sum_i (softmax(z_i) - y_i)^T (dW x_i + db) + l2 tr(W^T dW)",
                 r"dl = \sum_i (\operatorname{softmax}(z_i) - y_i)^T (dW\,x_i + db) + \lambda\operatorname{tr}(W^T dW)",
                 lambda P, D, dP, hp: ((torch.softmax(_Z(P, D), 1) - _Y(P, D)) * _dZ(P, D, dP)).sum()
                 + _l2(hp, P, dP),
                 "1^T(e^z o dz) / 1^T e^z = softmax(z)^T dz"),
            Step("dl = sum_i tr( ((softmax(z_i) - y_i) x_i^T)^T dW ) + tr((softmax(z_i) - y_i)^T db)"
                 " + l2 tr(W^T dW)",
                 r"dl = \sum_i \operatorname{tr}\big(((\operatorname{softmax}(z_i) - y_i)x_i^T)^T dW\big) + \operatorname{tr}\big((\operatorname{softmax}(z_i) - y_i)^T db\big) + \lambda\operatorname{tr}(W^TdW)",
                 lambda P, D, dP, hp: sum(
                     (torch.outer(torch.softmax(_Z(P, D)[i], 0) - _Y(P, D)[i], D.X[i]) * dP["W"]).sum()
                     + (((torch.softmax(_Z(P, D)[i], 0) - _Y(P, D)[i]) * dP["b"]).sum() if "b" in P else 0.0)
                     for i in range(D.n)) + _l2(hp, P, dP),
                 "trace trick: a^T dW x = tr(x a^T dW) = tr((a x^T)^T dW) (the seed's per-sample form)"),
            Step("dl = tr( ((P - Y)^T X + l2 W)^T dW ) + tr( ((P - Y)^T 1)^T db )",
                 r"dl = \operatorname{tr}\big(((P - Y)^T X + \lambda W)^T dW\big) + \operatorname{tr}\big(((P - Y)^T\mathbf{1})^T db\big)",
                 lambda P, D, dP, hp: ((((torch.softmax(_Z(P, D), 1) - _Y(P, D)).T @ D.X)
                                        + hp.get("l2", 0.0) * P["W"]) * dP["W"]).sum()
                 + (((torch.softmax(_Z(P, D), 1) - _Y(P, D)).sum(0) * dP["b"]).sum() if "b" in P else 0.0),
                 "sum_i a_i x_i^T = A^T X with the a_i as rows of A (batch form)"),
            Step("=> dl/dW = (P - Y)^T X + l2 W,  dl/db = (P - Y)^T 1",
                 r"\Rightarrow \frac{\partial l}{\partial W} = (P - Y)^T X + \lambda W,\quad \frac{\partial l}{\partial b} = (P - Y)^T\mathbf{1}",
                 lambda P, D, dP, hp: inner(gradient(P, D, **hp), dP),
                 "read off: dl = tr(G^T dX) means dl/dX = G"),
        ],
        assumptions=["y_i is one-hot, so 1^T y_i = 1: the seed writes y^T 1 log(1^T e^z) as "
                     "log(1^T e^z)",
                     "the seed's example 6 is one sample; the sum over samples is the batch form"],
    )
    hess = Derivation(
        title="Softmax regression: Hessian over (W, b)",
        target="gradient",
        layout="Hessian over (W row-major, b) flattened, (Kd + K) square; symmetric; singular "
               "along the shift-invariant directions (see the module docstring)",
        steps=[
            Step("d(dl/dW) = dP^T X + l2 dW,  d(dl/db) = dP^T 1  (Y is constant)",
                 r"d\Big(\frac{\partial l}{\partial W}\Big) = dP^T X + \lambda\,dW,\quad d\Big(\frac{\partial l}{\partial b}\Big) = dP^T\mathbf{1}",
                 lambda P, D, dP, hp: _stack(P, D, _dsoftmax_jvp(P, D, dP)) + _ridge(P, dP, hp),
                 "differentiate the gradient; dP computed here by differentiating softmax directly"),
            Step("dp_i = (diag(p_i) - p_i p_i^T) dz_i,  dz_i = dW x_i + db",
                 r"dp_i = (\operatorname{diag}(p_i) - p_i p_i^T)\,dz_i",
                 lambda P, D, dP, hp: _stack(P, D, _dp(P, D, dP)) + _ridge(P, dP, hp),
                 "quotient rule on e^z / 1^T e^z"),
            Step("=> H = sum_i (diag(p_i) - p_i p_i^T) kron x_ai x_ai^T + l2 I_W,  x_a = [x; 1]",
                 r"\Rightarrow H = \sum_i (\operatorname{diag}(p_i) - p_ip_i^T)\otimes x_{ai}x_{ai}^T + \lambda I_W",
                 lambda P, D, dP, hp: hessian(P, D, **hp) @ torch.cat([v.reshape(-1) for v in dP.values()]),
                 "vec(a x^T) row-major = a kron x: vec(d grad) = H vec(dP)"),
        ],
    )
    return [grad, hess]


def _dp(P, D, dP):
    Pr = torch.softmax(_Z(P, D), 1)
    dZ = _dZ(P, D, dP)
    return Pr * dZ - Pr * (Pr * dZ).sum(1, keepdim=True)  # (diag(p) - p p^T) dz, row-wise


def _dsoftmax_jvp(P, D, dP):
    """d softmax(Z) along dZ by the product rule on e^(z - max) / sum e^(z - max)."""
    Z, dZ = _Z(P, D), _dZ(P, D, dP)
    e = torch.exp(Z - Z.max(1, keepdim=True).values)
    s = e.sum(1, keepdim=True)
    de = e * dZ
    return de / s - e * de.sum(1, keepdim=True) / s ** 2


def _stack(P, D, dPr):
    parts = [(dPr.T @ D.X).reshape(-1)]
    if "b" in P:
        parts.append(dPr.sum(0))
    return torch.cat(parts)


def _ridge(P, dP, hp):
    out = torch.zeros(numel(P), dtype=P["W"].dtype, device=P["W"].device)
    out[: P["W"].numel()] = hp.get("l2", 0.0) * dP["W"].reshape(-1)
    return out
