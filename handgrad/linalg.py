"""Linear-algebra helpers shared by every linear model."""

from __future__ import annotations

import torch


def sandwich(X: torch.Tensor, w: torch.Tensor, intercept: bool) -> torch.Tensor:
    """X_a^T diag(w) X_a without forming diag(w) (X_a = [X, 1] when intercept).

    Computed as Xs^T Xs with Xs = X * sqrt(w) (a symmetric rank-k update) when w >= 0,
    which is cheaper than X^T (X * w); falls back to X^T (X * w) otherwise.
    """
    if bool((w >= 0).all()):
        # in row chunks of ~4 MB: each Xs_c = X_c * sqrt(w_c) is formed and used while it
        # is in cache (H += Xs_c^T Xs_c), instead of writing and re-reading an n x d copy
        sw = w.sqrt()
        step = max(256, (4 << 20) // max(1, X.shape[1] * X.element_size()))
        H = X.new_zeros(X.shape[1], X.shape[1])
        for i in range(0, X.shape[0], step):
            Xs = X[i:i + step] * sw[i:i + step].unsqueeze(1)
            H.addmm_(Xs.T, Xs)
    else:
        H = X.T @ (X * w.unsqueeze(1))
    if not intercept:
        return H
    d = X.shape[1]
    out = X.new_empty(d + 1, d + 1)
    out[:d, :d] = H
    xw = X.T @ w
    out[:d, d] = xw
    out[d, :d] = xw
    out[d, d] = w.sum()
    return out


def add_ridge(H: torch.Tensor, l2: float, n_weights: int) -> torch.Tensor:
    """H + l2 * I on the weight block (the first n_weights coordinates), in place."""
    if l2:
        idx = torch.arange(n_weights, device=H.device)
        H[idx, idx] += l2
    return H
