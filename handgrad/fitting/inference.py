"""Inference after a fit: the table a statistics package prints, and the fit statistics.

For a linear model with coefficients w (and intercept b):

* least squares: Cov = sigma_hat^2 (R^T R)^-1 from the QR factor of the design
  (sigma_hat^2 = RSS / (n - p)); t statistics on n - p degrees of freedom; R^2 (centred
  with an intercept, uncentred without, as statsmodels does), adjusted R^2, residual
  standard deviation, and the design's condition number (columns scaled to unit norm).
* likelihood models (logistic): Cov = H^-1, H the hand-derived Hessian of the negative
  log-likelihood at the optimum; z statistics; log-likelihood, the null log-likelihood
  (intercept only; p = 1/2 without an intercept), McFadden's pseudo R^2 = 1 - LL / LL0,
  the likelihood-ratio test against the null, AIC and BIC.

p-values are two-sided (scipy.stats), intervals are 95%.  With --standardize the fit runs
on standardized columns; :func:`to_original` maps the coefficients and their full
covariance back (a linear map), so the table is on the original scale.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import torch
from scipy import stats

from handgrad.errors import HandgradWarning, UserError
from handgrad.fitting.data import Data

LEVEL = 0.95


# --- standardization ---------------------------------------------------------------------

def standardize(data: Data, intercept: bool, maps_back: bool = True) -> tuple[Data, dict]:
    """Columns to mean 0 and standard deviation 1 (scaled only, not centred, without an
    intercept: centring would change a no-intercept model).  Returns (data, transform).
    ``maps_back``: whether the summary maps the coefficients back to the original scale
    (models with a coefficient table); otherwise the note says they stay standardized."""
    X = data.X
    mean = X.mean(0) if intercept else X.new_zeros(data.d)
    sd = (X - mean).pow(2).mean(0).sqrt() if intercept else X.pow(2).mean(0).sqrt()
    zero = (sd == 0).nonzero().flatten().tolist()
    if zero:
        names = ", ".join(repr(data.feature_names[j]) for j in zero[:5])
        raise UserError(f"--standardize: column(s) {names} are constant (standard deviation 0); "
                        "drop them (with an intercept they are collinear with it).")
    where = ("coefficients are reported on the original scale" if maps_back else
             "parameters are reported on the standardized scale (new data must be "
             "transformed the same way)")
    note = (f"features standardized (mean 0, sd 1) for the fit; {where}" if intercept else
            f"features scaled to root-mean-square 1 (not centred: no intercept) for the fit; {where}")
    out = replace(data, X=(X - mean) / sd, notes=[*data.notes, note])
    return out, {"mean": mean, "scale": sd, "centred": intercept}


def to_original(theta: torch.Tensor, cov: torch.Tensor | None, transform: dict,
                intercept: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """theta = (w', b') fitted on (X - m) / s  ->  w = w' / s, b = b' - sum_j w'_j m_j / s_j.

    The map is linear, theta = M theta', so Cov = M Cov' M^T."""
    m, s = transform["mean"], transform["scale"]
    d = len(s)
    M = torch.zeros(len(theta), len(theta), dtype=theta.dtype, device=theta.device)
    M[range(d), range(d)] = 1 / s
    if intercept:
        M[d, :d] = -m / s
        M[d, d] = 1.0
    return M @ theta, None if cov is None else M @ cov @ M.T


# --- covariances ---------------------------------------------------------------------------

def covariance_from_hessian(H: torch.Tensor, warns: list[str]):
    """H^-1 by Cholesky; None (with a warning) when H is (nearly) singular.

    Singularity is judged on the correlation-scaled Hessian, so column units do not count."""
    H = H.to(torch.float64)
    L, info = torch.linalg.cholesky_ex(H)
    cond = math.inf
    if int(info) == 0 and bool(torch.isfinite(H).all()):
        s = H.diagonal().clamp_min(torch.finfo(H.dtype).tiny).rsqrt()
        cond = torch.linalg.cond(H * s.unsqueeze(0) * s.unsqueeze(1)).item()
    if int(info) != 0 or not math.isfinite(cond) or cond > 1e14:
        msg = ("standard errors withheld: the Hessian at the optimum is singular or nearly "
               f"so (condition {cond:.2g}); collinear or constant columns? Remedy: drop the "
               "redundant column or pass --l2 > 0")
        warns.append(msg)
        warnings.warn(msg, HandgradWarning, stacklevel=2)
        return None
    return torch.cholesky_inverse(L)


# --- the summary ---------------------------------------------------------------------------

def has_table(entry, sandwich: bool = False) -> bool:
    """Whether summary() gives this model a coefficient table (least squares, likelihoods,
    and with ``sandwich`` a model through a linear predictor): one weight vector on the
    features (+ intercept), and a covariance rule."""
    m = entry.model
    robust = sandwich and entry.derivation.linear is not None
    return m.coefficient_vector and (m.covariance is not None or (
        (m.likelihood is not None or robust) and entry.has_hessian))


@dataclass
class FitStats:
    """What the summary needs from the data, gathered in one place by the fit pipeline
    (from tensors in memory, or in one pass over streamed or distributed rows)."""

    n: int
    loss0: float  # the loss at the estimate without its L2 term
    sum_y: float
    tss: float  # sum (y - mean y)^2 (about 0 without an intercept: sum y^2)
    offset: float  # sum_i offset(y_i) of the model's Likelihood (0 if none)


def summary(entry, theta: torch.Tensor, names: list[str], stats: FitStats, *,
            hessian: torch.Tensor | None, extra: dict, hp: dict, warns: list[str],
            intercept: bool, transform: dict | None = None,
            iterations: int | None = None, meat: torch.Tensor | None = None) -> dict | None:
    """The coefficient table and fit statistics, JSON-ready; None for models without a
    coefficient table.  ``theta`` is the flat estimate, ``hessian`` the hand Hessian at it
    (the fit's own final Hessian where it has one; least squares uses ``extra``'s factor).
    ``meat``: sum_i g_i g_i' of the rows' gradients; then Cov = H^-1 meat H^-1, the sandwich
    (robust; statsmodels' cov_type='HC0'), and the likelihood statistics only where the
    model has a likelihood."""
    if not has_table(entry, meat is not None):
        return None
    model = entry.model
    theta = theta.detach().cpu().to(torch.float64)  # the table is small: CPU
    p = len(theta)
    out: dict = {"scale": "original", "level": LEVEL}
    if model.covariance is not None:
        df = stats.n - p
        cov = model.covariance(extra, stats.loss0, stats.n)
        out.update(_least_squares_stats(stats, extra, df, intercept))
    else:
        df = None
        cov = None if hessian is None else covariance_from_hessian(hessian, warns)
        if meat is not None:
            if cov is not None:
                cov = cov @ meat.to(cov) @ cov
            out["covariance"] = SANDWICH
        if model.likelihood is not None:
            out.update(_likelihood_stats(model.likelihood, stats, intercept, p))
        else:
            out.update(kind="robust", n=stats.n)
    if cov is not None:
        cov = cov.detach().cpu().to(torch.float64)
    if transform is not None:
        out["standardized_coef"] = dict(zip(names, theta.tolist()))
        theta, cov = to_original(theta, cov, _f64(transform), intercept)
        out["fit_on_standardized"] = True
    if hp.get("l2"):
        out["note"] = ("l2 > 0: standard errors come from the penalised curvature (the "
                       "Gaussian-prior posterior), not from an unpenalised fit; read the "
                       "p-values and intervals as approximate")
    out["statistic"] = "t" if df is not None else "z"
    if df is not None:
        out["df_resid"] = df
    if iterations is not None:
        out["iterations"] = iterations
    out["terms"] = _table(names, theta, cov, df)
    if model.covariance is not None and _perfect(stats):
        _flag_perfect_fit(out, stats, warns)
    return out


PERFECT = 1e-20  # RSS below this share of sum (y - mean)^2 (or of sum y^2): an exact fit


def _perfect(st: FitStats) -> bool:
    """Residuals at rounding level: the target is a constant or an exact function of the
    features, and t statistics are ratios of rounding errors."""
    scale = max(st.tss, st.sum_y ** 2 / max(st.n, 1))
    return scale > 0 and st.loss0 <= PERFECT * scale


def _flag_perfect_fit(out: dict, st: FitStats, warns: list[str]) -> None:
    constant = st.tss <= PERFECT * st.sum_y ** 2 / max(st.n, 1)
    why = ("the target is constant" if constant else
           "the target is an exact linear function of the features")
    msg = (f"perfect fit: the residuals are at rounding level (RSS {st.loss0:.3g}) because "
           f"{why}; t statistics, p-values and intervals are withheld (they would be ratios "
           "of rounding errors)")
    for row in out["terms"]:
        row.update(stat=None, p_value=None, ci_low=None, ci_high=None)
    out["perfect_fit"] = True
    warns.append(msg)
    warnings.warn(msg, HandgradWarning, stacklevel=2)


SANDWICH = ("sandwich (robust, as statsmodels' cov_type='HC0'): H^-1 (sum_i g_i g_i') H^-1, "
            "g_i the gradient of row i's loss, H the Hessian at the estimate")


def without_errors(coefficients: dict, why: str) -> dict:
    """A coefficient table with no standard errors and the one-line reason."""
    return {"kind": "none", "scale": "original", "level": LEVEL, "statistic": "z",
            "note": why, "terms": [{"term": k, "coef": v, "std_err": None, "stat": None,
                                    "p_value": None, "ci_low": None, "ci_high": None}
                                   for k, v in coefficients.items()]}


def _f64(transform: dict) -> dict:
    return {k: (v.detach().cpu().to(torch.float64) if torch.is_tensor(v) else v)
            for k, v in transform.items()}


def _table(names, theta, cov, df) -> list[dict]:
    dist = stats.t(df) if df is not None and df > 0 else stats.norm()
    q = float(dist.ppf(0.5 + LEVEL / 2))
    se = cov.diagonal().clamp_min(0).sqrt().tolist() if cov is not None else [None] * len(theta)
    rows = []
    for name, c, s in zip(names, theta.cpu().tolist(), se):
        row = {"term": name, "coef": c, "std_err": s, "stat": None, "p_value": None,
               "ci_low": None, "ci_high": None}
        if s is not None and s > 0 and (df is None or df > 0):
            stat = c / s
            row.update(stat=stat, p_value=float(2 * dist.sf(abs(stat))),
                       ci_low=c - q * s, ci_high=c + q * s)
        rows.append(row)
    return rows


def _least_squares_stats(st: FitStats, extra, df, intercept) -> dict:
    rss, tss = st.loss0, st.tss
    r2 = 1 - rss / tss if tss > 0 else math.nan
    k = 1 if intercept else 0
    out = {"kind": "least_squares", "n": st.n, "rss": rss,
           "r_squared": r2, "r_squared_centred": intercept,
           "adj_r_squared": 1 - (1 - r2) * (st.n - k) / df if df > 0 else math.nan,
           "residual_std": math.sqrt(rss / df) if df > 0 else math.nan}
    for key in ("condition", "condition_unscaled", "rank", "refinement_steps"):
        if key in extra:
            out[key] = extra[key]
    return out


def _likelihood_stats(lik, st: FitStats, intercept, k) -> dict:
    ll = -st.loss0 + st.offset
    out: dict = {"kind": "likelihood", "n": st.n, "log_likelihood": ll,
                 "aic": 2 * k - 2 * ll, "bic": k * math.log(st.n) - 2 * ll}
    if lik.null is not None:
        ll0, name = lik.null(st.sum_y, st.n, intercept)
        ll0 += st.offset
        llr = 2 * (ll - ll0)
        df_model = k - (1 if intercept else 0)
        out.update(null_log_likelihood=ll0, null_model=name,
                   pseudo_r_squared=1 - ll / ll0 if ll0 != 0 else math.nan,
                   llr=llr, llr_df=df_model,
                   llr_p_value=float(stats.chi2.sf(llr, df_model)) if df_model > 0 else math.nan)
    return out


# --- printing ----------------------------------------------------------------------------

def _num(v, width: int, spec: str) -> str:
    return f"{'-' if v is None else format(v, spec):>{width}}"


def format_summary(s: dict, truth: dict | None = None) -> list[str]:
    """The table as text lines (cli.py echoes them); ``truth``: term -> true coefficient."""
    stat = s["statistic"]
    pct = f"{LEVEL:.0%}"
    lines = []
    if s["kind"] == "none":  # coefficients only, and why
        width = max([4] + [len(r["term"][:20]) for r in s["terms"]])
        lines.append(f"{'term':<{width}} {'coef':>17}")
        lines.append("-" * (width + 18))
        lines.extend(f"{r['term'][:20]:<{width}} {r['coef']:>17.10g}" for r in s["terms"])
        return lines + ["", f"note: {s['note']}"]
    head = (f"{'term':<20} {'coef':>17} {'std err':>11} {stat:>8} {'P>|' + stat + '|':>9} "
            f"{'[' + pct:>13} {'interval]':>12}")
    if "standardized_coef" in s:
        head += f" {'coef (std)':>12}"
    if truth:
        head += f" {'true':>10}"
    lines.append(head)
    lines.append("-" * len(head))
    for row in s["terms"]:
        line = (f"{row['term'][:20]:<20} {row['coef']:>17.10g} {_num(row['std_err'], 11, '.5g')} "
                f"{_num(row['stat'], 8, '.3f')} {_num(row['p_value'], 9, '.3g')} "
                f"{_num(row['ci_low'], 13, '.6g')} {_num(row['ci_high'], 12, '.6g')}")
        if "standardized_coef" in s:
            line += f" {s['standardized_coef'][row['term']]:>12.6g}"
        if truth:
            t = truth.get(row["term"])
            line += f" {_num(t, 10, '.4g')}"
        lines.append(line)
    lines.append("")
    if s["kind"] == "least_squares":
        r2 = "R^2" if s["r_squared_centred"] else "R^2 (uncentred, no intercept)"
        lines.append(f"{r2} {s['r_squared']:.6g}   adj. R^2 {s['adj_r_squared']:.6g}   "
                     f"residual std {s['residual_std']:.6g} (df {s['df_resid']})   n {s['n']}")
        if "condition" in s:
            lines.append(f"condition number {s['condition']:.3g} (columns scaled to unit norm; "
                         f"{s['condition_unscaled']:.3g} as given)   rank {s['rank']}"
                         + (f"   refinement steps {s['refinement_steps']}"
                            if s.get("refinement_steps") else ""))
    elif s["kind"] == "robust":
        lines.append(f"n {s['n']}   no log-likelihood: the loss is not declared a negative "
                     "log-likelihood")
    else:
        lines.append(f"log-likelihood {s['log_likelihood']:.10g}   AIC {s['aic']:.6g}   "
                     f"BIC {s['bic']:.6g}   n {s['n']}")
        if "null_log_likelihood" in s:
            lines.append(f"null log-likelihood {s['null_log_likelihood']:.10g} "
                         f"({s['null_model']})   pseudo R^2 (McFadden) "
                         f"{s['pseudo_r_squared']:.6g}   LR chi2({s['llr_df']}) {s['llr']:.6g}, "
                         f"p {s['llr_p_value']:.3g}")
    if s.get("covariance"):
        lines.append(f"standard errors: {s['covariance']}")
    if s.get("note"):
        lines.append(f"note: {s['note']}")
    extra = []
    if s.get("iterations") is not None:
        extra.append(f"iterations {s['iterations']}")
    extra.append(f"coefficients on the {s['scale']} scale"
                 + (" (fitted on standardized columns: 'coef (std)')"
                    if s.get("fit_on_standardized") else ""))
    lines.append("   ".join(extra))
    return lines
