"""Closed forms over row chunks: the covariance MLE in one shifted pass, and least squares
(corrected semi-normal equations, or Householder QR / TSQR); and least squares in memory by
the SVD of the column-scaled design (``--solver svd``)."""

from __future__ import annotations

import math

import numpy as np
import torch

from handgrad.errors import UserError
from handgrad.fitting.source import Reduce, Rows, TensorRows, default_chunk_rows

# --------------------------------------------------------------------------- covariance


def covariance(rows: Rows, *, chunk_rows: int | None = None, reduce: Reduce | None = None,
               dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and MLE covariance S = (1/n) sum_i (x_i - m)(x_i - m)^T over row chunks.

    One pass, about a shift s (the first chunk's mean):  S = (1/n) sum (x - s)(x - s)^T
    - (m - s)(m - s)^T.  With s within a standard error of m, the correction is tiny
    and nothing cancels (unlike sum x x^T / n - m m^T).  Across processes the shift is
    agreed first (rank 0's first chunk, via ``reduce`` of a one-hot-weighted sum), so
    the reduced sums are about the same point.  Returns (mean, S, n).
    """
    chunk_rows = int(chunk_rows or default_chunk_rows(rows.d))
    d = rows.d
    shift = None
    if reduce is not None:
        first = next(rows.chunks(chunk_rows), None)
        local = torch.zeros(d + 1, dtype=dtype)
        if first is not None and first[0] == 0:  # the process holding global row 0
            local[:d] = first[1].to(dtype).mean(0).cpu()
            local[d] = 1.0
        agreed = reduce(local.to(_device_of(rows)))
        shift = (agreed[:d] / agreed[d]).to(dtype)
    s1 = S = None
    n = 0
    for _, X, _ in rows.chunks(chunk_rows):
        X = X.to(dtype)
        if shift is None:
            shift = X.mean(0)
        if S is None:
            S = torch.zeros(d, d, dtype=dtype, device=X.device)
            s1 = torch.zeros(d, dtype=dtype, device=X.device)
        Xc = X - shift
        S.addmm_(Xc.T, Xc)
        s1 += Xc.sum(0)
        n += X.shape[0]
    if reduce is not None:
        dev = _device_of(rows)
        if S is None:
            S, s1 = torch.zeros(d, d, dtype=dtype, device=dev), torch.zeros(d, dtype=dtype, device=dev)
        buf = reduce(torch.cat([S.reshape(-1), s1, torch.tensor([float(n)], dtype=dtype, device=dev)]))
        S, s1, n = buf[: d * d].reshape(d, d), buf[d * d: d * d + d], int(round(float(buf[-1])))
    if not n:
        raise UserError("covariance of zero rows")
    delta = s1 / n
    S = S / n - torch.outer(delta, delta)
    S = 0.5 * (S + S.T)
    return shift + delta, S, n


def _device_of(rows: Rows) -> torch.device:
    return getattr(rows, "device", torch.device("cpu"))


# ------------------------------------------------------------------------ least squares


def least_squares(rows: Rows, *, intercept: bool = True, l2: float = 0.0,
                  chunk_rows: int | None = None, max_cond: float = 1e5, refine: int = 3,
                  fallback: str = "qr") -> tuple[torch.Tensor, torch.Tensor, dict]:
    """min ||X w + b - y||^2 + (l2/2)||w||^2, fast where that keeps the digits.

    Pass 1 forms the Gram matrix G = A^T A (A = [X, 1]) and A^T y chunk by chunk.  With
    D = diag(G)^(-1/2) (column scaling), D G D = R_s^T R_s by Cholesky; kappa = cond(R_s)
    equals the condition number of the column-scaled design.  If kappa <= max_cond the
    solution is taken from the corrected semi-normal equations: theta = R^-1 R^-T A^T y,
    then up to ``refine`` correction passes theta += R^-1 R^-T A^T (y - A theta), which
    give Householder-QR accuracy (about kappa * eps) while kappa^2 * eps is small
    (Bjorck, Numerical Methods for Least Squares Problems, sec. 2.5.4).  Otherwise (or
    if Cholesky fails) it falls back to Householder QR: in one piece for tensors in
    memory, chunked (TSQR: QR of [R; next chunk]) for files; with fallback="none" it
    returns (None, None, info) instead, for callers with their own accurate solver.

    Returns (theta, R with R^T R = A^T A (+ ridge), info dict: method, cond, passes).
    """
    chunk_rows = int(chunk_rows or default_chunk_rows(rows.d))
    d = rows.d
    p = d + int(intercept)
    dt = torch.float64
    dev = _device_of(rows)
    G = torch.zeros(p, p, dtype=dt, device=dev)
    Aty = torch.zeros(p, dtype=dt, device=dev)
    for _, X, y in rows.chunks(chunk_rows):
        X, y = X.to(dt), y.to(dt)
        G[:d, :d].addmm_(X.T, X)
        if intercept:
            xy = X.T @ torch.stack([torch.ones_like(y), y], 1)
            G[:d, d] += xy[:, 0]
            G[d, d] += X.shape[0]
            Aty[:d] += xy[:, 1]
            Aty[d] += y.sum()
        else:
            Aty += X.T @ y
    if intercept:
        G[d, :d] = G[:d, d]
    if l2:
        idx = torch.arange(d, device=dev)
        G[idx, idx] += l2 / 2
    scale = G.diagonal().clamp_min(torch.finfo(dt).tiny).rsqrt()
    Gs = G * scale.unsqueeze(0) * scale.unsqueeze(1)
    Rs, info = torch.linalg.cholesky_ex(Gs, upper=True)
    kappa = math.inf
    if int(info) == 0 and bool(torch.isfinite(Rs).all()):
        kappa = float(torch.linalg.cond(Rs))
    if kappa > max_cond:
        if fallback == "none":  # the caller has its own accurate solver for this case
            return None, None, {"method": None, "cond": kappa, "passes": 1}
        theta, R = _householder(rows, intercept, l2, chunk_rows)
        return theta, R, {"method": "householder", "cond": kappa, "passes": 2}
    R = Rs / scale.unsqueeze(0)  # R^T R = G

    def solve(rhs):
        u = torch.linalg.solve_triangular(R.T, rhs.unsqueeze(1), upper=False)
        return torch.linalg.solve_triangular(R, u, upper=True).squeeze(1)

    theta = solve(Aty)
    passes = 1
    for _ in range(refine):
        r = _normal_residual(rows, theta, intercept, l2, chunk_rows)
        passes += 1
        delta = solve(r)
        theta = theta + delta
        if float(delta.norm()) <= 1e-14 * float(theta.norm()):
            break
    return theta, R, {"method": "cholesky-qr (corrected semi-normal equations)",
                      "cond": kappa, "passes": passes}


def _normal_residual(rows, theta, intercept, l2, chunk_rows):
    """A^T (y - A theta) - (l2/2) w: the gradient of the loss, over -2, in one pass."""
    d = rows.d
    w = theta[:d]
    out = torch.zeros_like(theta)
    for _, X, y in rows.chunks(chunk_rows):
        X, y = X.to(theta.dtype), y.to(theta.dtype)
        r = y - X @ w
        if intercept:
            r = r - theta[d]
            out[d] += r.sum()
        out[:d] += X.T @ r
    if l2:
        out[:d] -= (l2 / 2) * w
    return out


def _householder(rows, intercept, l2, chunk_rows):
    """Householder QR of [A, y] (tensors: one piece; files: chunk by chunk, TSQR)."""
    d = rows.d
    p = d + int(intercept)
    dt = torch.float64
    dev = _device_of(rows)
    Rall = torch.zeros(0, p + 1, dtype=dt, device=dev)
    if l2:
        ridge = torch.zeros(d, p + 1, dtype=dt, device=dev)
        ridge[:, :d] = math.sqrt(l2 / 2) * torch.eye(d, dtype=dt, device=dev)
        Rall = ridge
    size = rows.n if isinstance(rows, TensorRows) else max(chunk_rows, 4 * p)
    for _, X, y in rows.chunks(size):
        cols = [X.to(dt)] + ([torch.ones(X.shape[0], 1, dtype=dt, device=dev)] if intercept
                             else []) + [y.to(dt).unsqueeze(1)]
        Rall = torch.linalg.qr(torch.cat([Rall, torch.cat(cols, 1)]), mode="r")[1]
    R = Rall[:p, :p]
    qty = Rall[:p, p]
    theta = torch.linalg.solve_triangular(R, qty.unsqueeze(1), upper=True).squeeze(1)
    return theta, R




# ------------------------------------------------------------------ least squares by SVD


def column_scale(A: np.ndarray) -> np.ndarray:
    """Powers of two nearest each column's 2-norm (exact to apply and undo); 1 for zeros."""
    norms = np.linalg.norm(A, axis=0)
    return np.where(norms > 0, np.exp2(np.round(np.log2(np.where(norms > 0, norms, 1.0)))), 1.0)


def svd_solve(A: np.ndarray, y: np.ndarray, rcond: float | None = None) -> tuple[np.ndarray, dict]:
    """min ||A theta - y|| by the SVD of the column-scaled design A D^-1 (D: column_scale).

    Scaling the columns first is what keeps the digits on a badly scaled design (a
    column in cents beside one in years): the SVD's error is about cond(A D^-1) * eps
    relative instead of cond(A) * eps, and a singular value is dropped only when the
    columns are (nearly) dependent, not because one column is measured in small units.
    Singular values of A D^-1 at or below rcond * s_max (numpy's default rcond
    max(m, p) * eps) are treated as zero; the design is then rank deficient and, of the
    least-squares solutions of the truncated design, the one of least norm ||theta||
    (the choice of numpy's lstsq and pinv) is returned.

    Returns (theta, info): ``cond`` (condition of A D^-1), ``cond_unscaled`` (of A),
    ``rank``, ``rcond``, ``dropped`` (the singular values of A D^-1 treated as zero),
    ``scale`` (D).
    """
    m, p = A.shape
    eps = float(np.finfo(np.float64).eps)
    rcond = max(m, p) * eps if rcond is None else float(rcond)
    D = column_scale(A)
    U, s, Vt = np.linalg.svd(A / D, full_matrices=False)
    keep = s > rcond * s[0] if s[0] > 0 else np.zeros(p, dtype=bool)
    z = Vt[keep].T @ ((U[:, keep].T @ y) / s[keep])
    theta = z / D
    if not keep.all():  # remove theta's part in the null space of the truncated design
        N = Vt[~keep].T / D[:, None]  # that null space, in theta's coordinates
        Q = np.linalg.qr(N)[0]
        theta = theta - Q @ (Q.T @ theta)
    raw = np.linalg.svd(s[:, None] * Vt * D, compute_uv=False)  # A's singular values
    return theta, {"cond": float(s[0] / s[-1]) if s[-1] > 0 else math.inf,
                   "cond_unscaled": float(raw[0] / raw[-1]) if raw[-1] > 0 else math.inf,
                   "rank": int(keep.sum()), "rcond": rcond,
                   "dropped": [float(v) for v in s[~keep]], "scale": D}
