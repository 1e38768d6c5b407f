"""Agreement with statsmodels on real data (skipped when statsmodels is not installed).

`fit logistic --newton` on the bundled CSVs must match statsmodels' Logit to >= 6
significant digits in the coefficients and >= 5 in the standard errors; least squares
must match OLS.  statsmodels is fitted on the same design (the same columns, a constant
added), with a tight tolerance so that its own convergence is not what is measured.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from tests.conftest import ROOT, invoke

sm = pytest.importorskip("statsmodels.api")

BREAST_FEATURES = ["mean_radius", "mean_texture", "mean_smoothness", "mean_concave_points",
                   "mean_symmetry", "worst_area"]
ANES_FEATURES = ["popul", "TVnews", "selfLR", "ClinLR", "DoleLR", "PID", "age", "educ",
                 "income"]

DATASETS = {
    "anes96": ("anes96.csv", "vote", ANES_FEATURES),
    "anes96-all-columns": ("anes96.csv", "vote", None),
    "breast_cancer": ("breast_cancer.csv", "malignant", BREAST_FEATURES),
}


def _read(name: str, target: str, features: list[str] | None):
    with open(os.path.join(ROOT, "data", name), newline="") as fh:
        rows = list(csv.reader(fh))
    header, values = rows[0], np.array(rows[1:], dtype=np.float64)
    features = features or [h for h in header if h != target]
    X = values[:, [header.index(f) for f in features]]
    return X, values[:, header.index(target)], features


def _digits(a: np.ndarray, b: np.ndarray) -> float:
    """Significant digits of agreement of the worst entry."""
    rel = np.max(np.abs(a - b) / np.abs(b))
    return 16.0 if rel == 0 else float(-np.log10(rel))


def _ours(runner, name, target, features, *extra):
    args = ["fit", "logistic", "--newton", "--data", os.path.join(ROOT, "data", name),
            "--target", target, "--json", *extra]
    if features:
        args += ["--features", ",".join(features)]
    r, out = invoke(runner, *args)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("standardize", [False, True], ids=["raw", "standardize"])
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_logistic_matches_statsmodels_logit(runner, dataset, standardize):
    name, target, features = DATASETS[dataset]
    out = _ours(runner, name, target, features, *(["--standardize"] if standardize else []))
    X, y, features = _read(name, target, features)
    res = sm.Logit(y, sm.add_constant(X, prepend=False)).fit(
        method="newton", tol=1e-10, maxiter=100, disp=0)
    terms = features + ["intercept"]
    coef = np.array([out["coefficients"][t] for t in terms])
    se = np.array([out["std_errors"][t] for t in terms])
    assert _digits(coef, res.params) >= 6
    assert _digits(se, res.bse) >= 5
    s = out["summary"]
    assert s["log_likelihood"] == pytest.approx(res.llf, rel=1e-9)
    assert s["null_log_likelihood"] == pytest.approx(res.llnull, rel=1e-9)
    assert s["pseudo_r_squared"] == pytest.approx(res.prsquared, rel=1e-7)
    assert s["aic"] == pytest.approx(res.aic, rel=1e-9)
    assert s["bic"] == pytest.approx(res.bic, rel=1e-9)
    p = np.array([t["p_value"] for t in s["terms"]])
    np.testing.assert_allclose(p, res.pvalues, rtol=1e-4, atol=1e-300)
    ci = np.array([[t["ci_low"], t["ci_high"]] for t in s["terms"]])
    np.testing.assert_allclose(ci, res.conf_int(), rtol=1e-5)


def test_logistic_without_intercept_matches_statsmodels(runner):
    name, target, features = DATASETS["anes96"]
    out = _ours(runner, name, target, features, "--no-intercept")
    X, y, features = _read(name, target, features)
    res = sm.Logit(y, X).fit(method="newton", tol=1e-10, maxiter=100, disp=0)
    coef = np.array([out["coefficients"][t] for t in features])
    se = np.array([out["std_errors"][t] for t in features])
    assert _digits(coef, res.params) >= 6 and _digits(se, res.bse) >= 5
    assert out["summary"]["log_likelihood"] == pytest.approx(res.llf, rel=1e-9)


@pytest.mark.parametrize("standardize", [False, True], ids=["raw", "standardize"])
def test_least_squares_matches_statsmodels_ols(runner, tmp_path, standardize):
    """The Longley data (statsmodels.datasets.longley, public domain): an ill-conditioned
    real regression, written to a CSV and fitted through the command line."""
    data = pytest.importorskip("statsmodels.datasets.longley").load_pandas()
    X, y = data.exog.to_numpy(float), data.endog.to_numpy(float)
    names = list(data.exog.columns)
    path = tmp_path / "longley.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names + ["TOTEMP"])
        w.writerows([[repr(float(v)) for v in (*row, t)] for row, t in zip(X, y)])
    r, out = invoke(runner, "fit", "least_squares", "--data", path, "--target", "TOTEMP",
                    "--json", *(["--standardize"] if standardize else []))
    assert r.exit_code == 0, r.output
    res = sm.OLS(y, sm.add_constant(X, prepend=False)).fit()
    terms = names + ["intercept"]
    coef = np.array([out["coefficients"][t] for t in terms])
    se = np.array([out["std_errors"][t] for t in terms])
    assert _digits(coef, res.params) >= 7
    assert _digits(se, res.bse) >= 6
    s = out["summary"]
    assert s["r_squared"] == pytest.approx(res.rsquared, rel=1e-10)
    assert s["adj_r_squared"] == pytest.approx(res.rsquared_adj, rel=1e-9)
    assert s["residual_std"] == pytest.approx(np.sqrt(res.scale), rel=1e-8)
    np.testing.assert_allclose([t["p_value"] for t in s["terms"]], res.pvalues, rtol=1e-5)
