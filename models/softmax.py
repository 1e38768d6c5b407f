"""Softmax (multinomial logistic) regression, the notes' worked example 6.

    l(W, b) = sum_i -y_i^T log softmax(W x_i + b) + (l2 / 2) ||W||_F^2

Parameters: W (K, d) as the notes write it (one row per class), b (K,) when an intercept
is fitted.  y_i is one-hot; labels may be given as integers 0..K-1 or one-hot rows.  The
log-probabilities are computed by log_softmax (logsumexp), finite at logits of 1000.
The loss is invariant under adding one vector c to every row of W, or one constant to
every b_k (softmax(z + c 1) = softmax(z)): see derivations/softmax.py for what this does
to the Hessian and to Newton's method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from handgrad.contract import Role, Target
from handgrad.fitting.data import Data, prepare_class_labels

NAME = "softmax"
TITLE = "Softmax regression"
TARGET = Target.LABELS
PARAMS = {"W": Role.CLASS_WEIGHTS, "b": Role.CLASS_BIAS}  # roles, in parameter order
SOLVERS = ("newton", "gd", "sgd", "adam")
DEFAULT_SOLVER = "newton"


def n_classes(data: Data) -> int:
    y = data.y
    return int(y.shape[1]) if y.dim() == 2 else int(y.max().item()) + 1


def onehot(y: torch.Tensor, K: int, dtype) -> torch.Tensor:
    """(n, K) one-hot Y from integer labels (or one-hot already)."""
    if y.dim() == 2:
        return y.to(dtype)
    return F.one_hot(y.long(), K).to(dtype)


def init_params(data: Data, *, intercept: bool = True, **_) -> dict[str, torch.Tensor]:
    K = n_classes(data)
    p = {"W": data.X.new_zeros(K, data.d)}
    if intercept:
        p["b"] = data.X.new_zeros(K)
    return p


def logits(params, data: Data) -> torch.Tensor:
    """Z = X W^T + 1 b^T, (n, K): row i is W x_i + b."""
    Z = data.X @ params["W"].T
    if "b" in params:
        Z = Z + params["b"]
    return Z


def loss(params, data: Data, *, l2: float = 0.0, **_) -> torch.Tensor:
    Z = logits(params, data)
    logp = F.log_softmax(Z, dim=1)
    if data.y.dim() == 2:
        out = -(data.y.to(Z.dtype) * logp).sum()
    else:
        out = -logp.gather(1, data.y.long().unsqueeze(1)).sum()
    if l2:
        out = out + 0.5 * l2 * (params["W"] * params["W"]).sum()
    return out


prepare = prepare_class_labels  # labels to int64 0..K-1, re-encoding said in data.notes


def predict_proba(params, data: Data) -> torch.Tensor:
    return torch.softmax(logits(params, data), dim=1)


def evaluate(params, data: Data, **_) -> dict:
    """Accuracy and mean log-likelihood per sample (log p(y_i | x_i), natural log)."""
    Z = logits(params, data)
    logp = F.log_softmax(Z, dim=1)
    y = data.y.argmax(1) if data.y.dim() == 2 else data.y.long()
    return {"n": data.n, "accuracy": (Z.argmax(1) == y).to(Z.dtype).mean().item(),
            "log_likelihood": logp.gather(1, y.unsqueeze(1)).mean().item()}


def synthetic(*, n: int = 2000, d: int = 4, seed: int = 0, k: int = 3, **_):
    """Labels drawn from softmax(W* x + b*), X standard normal; returns (data, true params).

    The true parameters are normalised as the fit reports them (rows of W* and b* summing
    to zero), since only differences between classes are identified."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    W = 1.5 * torch.randn(k, d, generator=g, dtype=torch.float64)
    b = torch.randn(k, generator=g, dtype=torch.float64)
    W, b = W - W.mean(0), b - b.mean()
    P = torch.softmax(X @ W.T + b, dim=1)
    y = torch.multinomial(P, 1, generator=g).reshape(-1)
    data = Data(X, y, target="y", source=f"synthetic data with {k} classes, seed {seed}")
    return data, {"W": W, "b": b}


def check_problems(seed: int, dtype=torch.float64, device="cpu"):
    """Random non-symmetric W, labels as integers and as one-hot rows, with and without
    bias and L2, including a row of logits near 1000 (the naive softmax overflows)."""
    g = torch.Generator().manual_seed(3000 + seed)
    out = []
    for n, d, K, intercept, l2, hot in [(9, 3, 3, True, 0.0, False), (14, 4, 5, False, 0.6, True),
                                        (6, 5, 2, True, 1.5, False), (11, 2, 4, True, 0.3, True)]:
        X = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = torch.randint(0, K, (n,), generator=g)
        p = {"W": torch.randn(K, d, generator=g, dtype=torch.float64)}
        if intercept:
            p["b"] = torch.randn(K, generator=g, dtype=torch.float64)
        if n == 11:  # one sample with huge logits: log_softmax must stay finite
            X[0] = 400.0 * X[0] / X[0].norm()
        yy = F.one_hot(y, K).to(torch.float64) if hot else y
        data = Data(X, yy).to(device, dtype)
        p = {k: v.to(device, dtype) for k, v in p.items()}
        label = (f"n={n} d={d} K={K}{' +b' if intercept else ''}{f' l2={l2}' if l2 else ''}"
                 f"{' one-hot' if hot else ''}{' big logits' if n == 11 else ''}")
        out.append((label, p, data, {"l2": l2}))
    return out


def estimate(params) -> dict[str, torch.Tensor]:
    """W (one row per class) and b, as fitted (printed by `fit` beside the truth)."""
    return dict(params)
