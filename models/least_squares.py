"""Least squares, the notes' worked example 3 (linear regression).

    l(w, b) = ||X w + b 1 - y||^2 + (l2 / 2) ||w||^2          (a sum over samples)

Parameters: w (d,), b () when an intercept is fitted.  The closed form is computed by
Householder QR of the column-scaled (ridge-augmented) design followed by iterative
refinement with double-double residuals, never by forming (X^T X)^-1: the notes'
w = (X^T X)^-1 X^T y is the derivation, not the numerics (it is kept as
``method="normal"`` to show what it loses).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.linalg import qr, solve_triangular

from handgrad.contract import Role, Target
from handgrad.errors import HandgradWarning, UserError
from handgrad.fitting.data import Data
from handgrad.fitting.validate import dependent_columns

NAME = "least_squares"
TITLE = "Least squares"
TARGET = Target.CONTINUOUS
PARAMS = {"w": Role.WEIGHTS, "b": Role.INTERCEPT}  # roles, in parameter order
SOLVERS = ("closed", "qr", "normal", "svd", "newton", "gd")
DEFAULT_SOLVER = "closed"


def init_params(data: Data, *, intercept: bool = True, **_) -> dict[str, torch.Tensor]:
    p = {"w": data.X.new_zeros(data.d)}
    if intercept:
        p["b"] = data.X.new_zeros(())
    return p


def residual(params, data: Data) -> torch.Tensor:
    r = data.X @ params["w"] - data.y
    if "b" in params:
        r = r + params["b"]
    return r


def loss(params, data: Data, *, l2: float = 0.0, **_) -> torch.Tensor:
    r = residual(params, data)
    out = r @ r
    if l2:
        out = out + 0.5 * l2 * (params["w"] @ params["w"])
    return out


def design(data: Data, intercept: bool) -> torch.Tensor:
    if not intercept:
        return data.X
    return torch.cat([data.X, data.X.new_ones(data.n, 1)], dim=1)


# --- closed forms ------------------------------------------------------------------------
#
# "closed" (the default) is the accurate one: Householder QR of the column-scaled design,
# then Bjorck's iterative refinement of the augmented system [I A; A^T 0][r; z] = [y; 0]
# with its residuals computed in double-double arithmetic (error-free transformations,
# about 106 bits), so the solution is accurate to about the working precision whenever
# cond(A D) * eps < 1, even where the data's own condition number is 1e15.
# "qr" is plain Householder QR (about cond * eps relative error), "normal" the notes'
# (X^T X)^-1 X^T y by Cholesky (about cond^2 * eps), "svd" numpy's SVD of the column-scaled
# design (singular values below eps * max(n, p) * s_max dropped; it warns where it differs
# from the default by more than SVD_AGREES).

CLOSED_SOLVERS = ("closed", "qr", "normal", "svd")
ILL_CONDITIONED = 1e8  # warn above this condition number (column-scaled design)
FAST_ROWS = 100_000  # from here on, well-conditioned designs take the Cholesky-QR path
FAST_MAX_COND = 1e5  # corrected semi-normal equations match Householder QR below this
_REFINE_ABOVE = 1e3  # below this condition, QR alone is accurate to ~1e-13: skip refinement
_EPS = float(np.finfo(np.float64).eps)
SVD_AGREES = 1e-10  # --solver svd warns where it differs from the default by more (relative)


def _augmented(data: Data, intercept: bool, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """The design [X, 1] and y as float64 numpy, with ridge rows sqrt(l2/2) I on w."""
    A = design(data, intercept).detach().cpu().to(torch.float64).numpy()
    y = data.y.detach().cpu().to(torch.float64).numpy()
    if l2:
        ridge = np.zeros((data.d, A.shape[1]))
        ridge[:, : data.d] = math.sqrt(l2 / 2) * np.eye(data.d)
        A, y = np.vstack([A, ridge]), np.concatenate([y, np.zeros(data.d)])
    return A, y


def _two_sum(a, b):
    """s + e == a + b exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    c = 134217729.0 * a  # 2^27 + 1 (Dekker)
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a, b):
    """p + e == a * b exactly (Dekker), elementwise with broadcasting."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _sum2(v: np.ndarray) -> float:
    """sum(v) as if in double-double, rounded once: pairwise two_sum of contiguous
    halves (v zero-padded to a power of two), the rounding errors collected."""
    if len(v) == 0:
        return 0.0
    buf = np.zeros(1 << (len(v) - 1).bit_length())
    buf[: len(v)] = v
    err = 0.0
    while len(buf) > 1:
        h = len(buf) // 2
        buf, e = _two_sum(buf[:h], buf[h:])
        err += float(e.sum())
    return float(buf[0]) + err


def _dd_residual(A: np.ndarray, y: np.ndarray, r: np.ndarray, z: np.ndarray) -> np.ndarray:
    """f = y - r - A z, each entry computed in double-double and rounded once (Dot2 of
    Ogita, Rump & Oishi, column by column: A is Fortran-ordered so columns are contiguous)."""
    s, err = _two_sum(y, -r)
    for j in range(A.shape[1]):
        p, e = _two_prod(A[:, j], -z[j])
        s, e2 = _two_sum(s, p)
        err += e + e2
    return s + err


def _dd_At_r(A: np.ndarray, r: np.ndarray) -> np.ndarray:
    """A^T r in double-double, rounded once."""
    out = np.empty(A.shape[1])
    for j in range(A.shape[1]):
        p, e = _two_prod(A[:, j], r)
        out[j] = _sum2(p) + float(e.sum())
    return out


def _refine(A, y, Q, R, z, max_steps: int = 40) -> tuple[np.ndarray, int]:
    """Bjorck's refinement of min ||A z - y|| via the augmented system, QR factors reused.

    Corrections solve [I A; A^T 0][dr; dz] = [f; g], f = y - r - A z, g = -A^T r:
    h = R^-T g, dz = R^-1 (Q^T f - h), dr = f - Q (Q^T f - h).  Each step shrinks the
    error by about cond(A) * eps.  Stops when every |dz_j| <= eps |z_j|, or when the
    corrections stop shrinking (the previous iterate is then kept).
    """
    r = _dd_residual(A, y, np.zeros_like(y), z)
    prev, steps = math.inf, 0
    for _ in range(max_steps):
        f = _dd_residual(A, y, r, z)
        g = -_dd_At_r(A, r)
        h = solve_triangular(R, g, trans="T")
        u = Q.T @ f - h
        dz = solve_triangular(R, u)
        size = float(np.abs(dz).max())
        if not math.isfinite(size) or size >= prev:
            break  # diverging or at the noise floor: the previous iterate is the best
        z, r = z + dz, r + (f - Q @ u)
        steps += 1
        prev = size
        if np.all(np.abs(dz) <= _EPS * np.abs(z)):
            break
    return z, steps


def _column_scale(A: np.ndarray) -> np.ndarray:
    """Powers of two nearest each column's 2-norm (exact to apply and undo); 1 for zeros."""
    norms = np.linalg.norm(A, axis=0)
    return np.where(norms > 0, np.exp2(np.round(np.log2(np.where(norms > 0, norms, 1.0)))), 1.0)


def _conditioning(R: np.ndarray) -> tuple[float, int, np.ndarray]:
    """2-norm condition of R (= of the design it factors), numerical rank, right vectors.

    Rank counts singular values above p * eps * s_max (p columns): a design closer than
    that to a singular one is within the backward error of Householder QR itself.
    """
    _, s, Vt = np.linalg.svd(R)
    cond = float(s[0] / s[-1]) if s[-1] > 0 else math.inf
    rank = int((s > s[0] * R.shape[0] * _EPS).sum()) if s[0] > 0 else 0
    return cond, rank, Vt


def _term_names(data: Data, intercept: bool) -> list[str]:
    return list(data.feature_names) + (["intercept"] if intercept else [])


def _warn(msg: str, warns: list[str]) -> None:
    warns.append(msg)
    warnings.warn(msg, HandgradWarning, stacklevel=3)


def closed_form(data: Data, *, intercept: bool = True, l2: float = 0.0, method: str = "closed",
                factor_only: bool = False, **_) -> tuple[dict[str, torch.Tensor], dict]:
    """min ||A theta - y||^2 (+ ridge rows sqrt(l2/2) I on w), A = [X, 1].

    method: "closed" (scaled Householder QR + double-double refinement, the default),
    "qr", "normal" or "svd" (for comparison; see the comment above).  Returns (params,
    extra); extra holds the triangular factor for the standard errors ("R" on the
    original scale, "R_scaled" and "scale" with A = Q R_scaled diag(scale)), the
    condition estimate, the rank, the refinement steps and any warnings.  factor_only: the
    caller wants the factor for another solver's fit (its standard errors), so the warnings
    describe the design and make no claim about which solution is returned.
    """
    if method not in CLOSED_SOLVERS:
        raise UserError(f"Unknown closed-form method {method!r}; choose from "
                        f"{', '.join(CLOSED_SOLVERS)}.")
    if method == "closed" and data.n >= FAST_ROWS and data.n >= 50 * (data.d + 1):
        fast = _cholesky_qr(data, intercept, l2)
        if fast is not None:
            return fast
    A, y = _augmented(data, intercept, l2)
    m, p = A.shape
    names = _term_names(data, intercept)
    warns: list[str] = []
    extra: dict = {"method": method, "warnings": warns}
    if method == "normal":
        theta = _normal_equations(A, y, warns)
    elif method == "svd":
        theta = _svd(data, A, y, intercept, l2, names, extra, warns)
    else:
        D = _column_scale(A)
        As = np.asfortranarray(A) / D  # Fortran order: LAPACK's layout, contiguous columns
        Q, Rs = qr(As, mode="economic", check_finite=False)  # Householder (geqrf + orgqr)
        cond, rank, Vt = _conditioning(Rs)
        extra.update(condition=cond, rank=rank, refinement_steps=0,
                     solver="column-scaled Householder QR" + (
                         " + double-double refinement" if method == "closed" else ""))
        extra["condition_unscaled"] = _conditioning(Rs * D)[0]
        if rank < p:
            weak = dependent_columns(Vt, rank)  # the null space's columns: no innocent one
            _warn(f"design is rank deficient (numerical rank {rank} of {p} columns, condition "
                  f"{cond:.2g}): the coefficients are not identified; columns "
                  f"{', '.join(repr(names[j]) for j in sorted(weak))} are (nearly) collinear. "
                  + ("" if factor_only else
                     "Returned the least-squares solution of least norm in the column-scaled "
                     "coordinates (min ||D theta||, D the column norms rounded to powers of "
                     "two), not numpy's/pinv's minimum-norm one (min ||theta||: --solver svd "
                     "returns that). ")
                  + "Drop a column or pass --l2 > 0 to identify the coefficients.", warns)
            z = np.linalg.lstsq(As, y, rcond=None)[0]
        else:
            z = solve_triangular(Rs, Q.T @ y)
            if method == "closed" and cond > _REFINE_ABOVE:
                z, extra["refinement_steps"] = _refine(As, y, Q, Rs, z)
            if cond > ILL_CONDITIONED:
                _warn(f"design is ill-conditioned (condition {cond:.2g} with columns scaled to "
                      f"unit norm): a change in the last digit of the data can change the "
                      f"coefficients by ~{min(cond * _EPS, 1.0):.0e} relative; centring or "
                      "rescaling the features (--standardize) or an orthogonal basis helps.",
                      warns)
        theta = z / D
        extra.update(R=torch.from_numpy(Rs * D), R_scaled=Rs, scale=D)
    dev, dt = data.X.device, data.X.dtype
    theta_t = torch.from_numpy(np.ascontiguousarray(theta)).to(device=dev, dtype=dt)
    params = {"w": theta_t[: data.d]}
    if intercept:
        params["b"] = theta_t[data.d]
    if "R" in extra:
        extra["R"] = extra["R"].to(device=dev, dtype=dt)
    return params, extra


def _svd(data, A, y, intercept, l2, names, extra, warns) -> np.ndarray:
    """numpy's SVD solve of the column-scaled design (handgrad.fitting.lstsq.svd_solve),
    checked against the default solver: where the two differ by more than SVD_AGREES
    (relative, in any coefficient) it says so, with the difference."""
    from handgrad.fitting import lstsq

    theta, info = lstsq.svd_solve(A, y)
    p = A.shape[1]
    extra.update(rank=info["rank"], condition=info["cond"], rcond=info["rcond"],
                 condition_unscaled=info["cond_unscaled"], solver="SVD of the column-scaled design")
    if info["rank"] < p:  # SVD truncation: singular values below rcond * s_max set to zero
        dropped = extra["singular_values_dropped"] = info["dropped"]
        shown = ", ".join(f"{v:.3g}" for v in dropped[:4])
        _warn(f"svd: {p - info['rank']} of {p} singular values are below rcond * s_max "
              f"(columns scaled to unit norm; rcond {info['rcond']:.2g}; dropped {shown}) and "
              "were treated as zero: this is the least-squares solution of a truncated design, not "
              "of the one given; of its solutions, the one of least norm ||theta|| (numpy's/"
              "pinv's choice) is returned", warns)
        return theta
    with warnings.catch_warnings():  # the default's own warnings come with the fit's factor
        warnings.simplefilter("ignore", HandgradWarning)
        ref, _ = closed_form(data, intercept=intercept, l2=l2)
    ref = np.append(ref["w"].detach().cpu().double().numpy(),
                    [float(ref["b"])] if intercept else [])
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(theta == ref, 0.0, np.abs(theta - ref) / np.abs(ref))
    extra["differs_from_default"] = worst = float(gap.max())
    if worst > SVD_AGREES:
        j = int(np.argmax(gap))
        _warn(f"svd: its coefficients differ from the default solver's by up to {worst:.1g} "
              f"relative (coefficient {names[j]!r}; column-scaled condition "
              f"{info['cond']:.2g}): an SVD is not refined, and this design needs refinement "
              "for full precision; the default solver (column-scaled QR with iterative "
              "refinement) gives it", warns)
    return theta


def _cholesky_qr(data: Data, intercept: bool, l2: float):
    """Tall, well-conditioned designs: Cholesky-QR with corrected semi-normal equations
    (handgrad.fitting.lstsq.least_squares), a few passes over X instead of a Householder QR of an
    n x p copy.  Used only while the column-scaled condition is <= FAST_MAX_COND, where it
    is as accurate as Householder QR; otherwise None (the caller's QR + refinement runs)."""
    from handgrad.fitting import lstsq, source

    X, y = data.X.to(torch.float64), data.y.to(torch.float64)
    theta, R, info = lstsq.least_squares(source.TensorRows(X, y), intercept=intercept, l2=l2,
                                          max_cond=FAST_MAX_COND, fallback="none")
    if theta is None:
        return None
    R = R.cpu().numpy()
    D = np.sqrt((R * R).sum(0))  # column norms of the design: R_s = R diag(D)^-1 is scaled
    Rs = R / D
    cond = info["cond"]
    extra = {"method": "closed", "solver": info["method"], "passes": info["passes"],
             "warnings": [], "condition": cond, "rank": R.shape[0], "refinement_steps": 0,
             "condition_unscaled": _conditioning(R)[0], "R_scaled": Rs, "scale": D}
    dev, dt = data.X.device, data.X.dtype
    extra["R"] = torch.from_numpy(R).to(device=dev, dtype=dt)
    theta = theta.to(device=dev, dtype=dt)
    params = {"w": theta[: data.d]}
    if intercept:
        params["b"] = theta[data.d]
    return params, extra


def _normal_equations(A: np.ndarray, y: np.ndarray, warns: list[str]) -> np.ndarray:
    """The notes' theta = (A^T A)^-1 A^T y, by Cholesky of A^T A (LU if that fails)."""
    G, c = A.T @ A, A.T @ y
    try:
        L = np.linalg.cholesky(G)
        return solve_triangular(L.T, solve_triangular(L, c, lower=True))
    except np.linalg.LinAlgError:
        _warn("normal equations: Cholesky of X^T X failed (numerically singular: the "
              "coefficients are not identified); solved by LU instead, which returns one of "
              "many solutions, not the minimum-norm one (--solver svd returns numpy's/pinv's)",
              warns)
    try:
        return np.linalg.solve(G, c)
    except np.linalg.LinAlgError:
        _warn("normal equations: X^T X is singular; returned the least-squares solution "
              "of X^T X theta = X^T y", warns)
        return np.linalg.lstsq(G, c, rcond=None)[0]


def covariance(extra: dict, rss: float, n: int) -> torch.Tensor | None:
    """sigma_hat^2 (R^T R)^-1 over (w, b), sigma_hat^2 = RSS / (n - p); None if n <= p.

    ``extra`` holds the design's triangular factor: "R_scaled" and "scale" from the
    Householder QR (A = Q R_scaled diag(scale)), or "R" with R^T R = A^T A.  With l2 > 0, R
    factors the ridge-augmented design: this is sigma^2 (X^T X + l2/2 I)^-1, the
    Gaussian-prior posterior covariance, not a sampling covariance.
    """
    Rs, D = extra.get("R_scaled"), extra.get("scale")
    if Rs is None:
        R = extra.get("R")
        if R is None:
            return None
        Rs, D = R.detach().cpu().to(torch.float64).numpy(), np.ones(R.shape[1])
    p = Rs.shape[0]
    if n <= p or extra.get("rank", p) < p:
        return None
    sigma2 = rss / (n - p)
    Rinv = solve_triangular(Rs, np.eye(p)) / D[:, None]  # (R_s diag(D))^-1 = D^-1 R_s^-1
    return torch.from_numpy(sigma2 * (Rinv @ Rinv.T))


def synthetic(*, n: int = 1000, d: int = 5, seed: int = 0, noise: float = 0.5, **_):
    """y = X w* + b* + noise, X standard normal; returns (data, true params)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    b = torch.tensor(1.5, dtype=torch.float64)
    y = X @ w + b + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return Data(X, y, target="y", source=f"synthetic data, seed {seed}"), {"w": w, "b": b}


def check_problems(seed: int, dtype=torch.float64, device="cpu"):
    """Random non-symmetric inputs at several shapes, with and without intercept and L2."""
    g = torch.Generator().manual_seed(1000 + seed)
    out = []
    for n, d, intercept, l2 in [(7, 3, True, 0.0), (12, 5, False, 0.7), (5, 8, True, 1.3)]:
        X = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = torch.randn(n, generator=g, dtype=torch.float64)
        data = Data(X, y).to(device, dtype)
        p = {"w": torch.randn(d, generator=g, dtype=torch.float64)}
        if intercept:
            p["b"] = torch.randn((), generator=g, dtype=torch.float64)
        p = {k: v.to(device, dtype) for k, v in p.items()}
        label = f"n={n} d={d}{' +b' if intercept else ''}{f' l2={l2}' if l2 else ''}"
        out.append((label, p, data, {"l2": l2}))
    return out
