"""Linear-algebra helpers shared by every linear model."""

from __future__ import annotations

import torch


def sandwich(X: torch.Tensor, w: torch.Tensor, intercept: bool) -> torch.Tensor:
    """X_a^T diag(w) X_a without forming diag(w) (X_a = [X, 1] when intercept).

    Computed as Xs^T Xs with Xs = X * sqrt(w) (a symmetric rank-k update) when w >= 0,
    which is cheaper than X^T (X * w); falls back to X^T (X * w) otherwise.
    """
    d = X.shape[1]
    xw = None
    if bool((w >= 0).all()):
        # in row chunks of ~1.5 MB: each Xs_c = X_c * sqrt(w_c) is formed and used while it
        # is in cache (H += Xs_c^T Xs_c, and the intercept column X_c^T w_c = Xs_c^T sqrt(w_c)),
        # instead of writing and re-reading an n x d copy or reading X again for X^T w
        sw = w.sqrt()
        step = max(256, (3 << 19) // max(1, d * X.element_size()))
        H = X.new_zeros(d, d)
        xw = X.new_zeros(d) if intercept else None
        for i in range(0, X.shape[0], step):
            Xs = X[i:i + step] * sw[i:i + step].unsqueeze(1)
            H.addmm_(Xs.T, Xs)
            if intercept:
                xw.addmv_(Xs.T, sw[i:i + step])
    else:
        H = X.T @ (X * w.unsqueeze(1))
    if not intercept:
        return H
    out = X.new_empty(d + 1, d + 1)
    out[:d, :d] = H
    if xw is None:
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
