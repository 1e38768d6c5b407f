"""No silent choices: the summary's footer states every default that differs from
statsmodels / scikit-learn, and every printed parameter carries its column names.

The footer's claims are checked against independent references (scikit-learn's
LogisticRegression with C = 1/l2, statsmodels' llnull, numpy), and the expected text is
built from the option values passed, not copied from handgrad's output.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest

from tests.conftest import ROOT, invoke

ANES = os.path.join(ROOT, "data", "anes96.csv")
IRIS = os.path.join(ROOT, "data", "iris.csv")
LONGLEY = os.path.join(ROOT, "data", "longley.csv")
FEATS = ["PID", "selfLR", "ClinLR"]


def columns(path, names):
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[float(r[c]) for c in names] for r in rows])


def footer(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("conventions ("))
    return [ln.strip()[2:] for ln in lines[start + 1:] if ln.startswith("  - ")]


def fit(runner, *args):
    r, _ = invoke(runner, "fit", *args)
    assert r.exit_code == 0, r.output
    _, out = invoke(runner, "fit", *args, "--json")
    return r.stdout, out


@pytest.mark.parametrize("standardize", [True, False], ids=["standardized", "raw"])
def test_the_footer_says_where_l2_acts_and_it_is_true(runner, standardize):
    sklearn = pytest.importorskip("sklearn.linear_model")
    l2 = 0.5
    args = ["logistic", "--newton", "--data", ANES, "--target", "vote", "--features",
            ",".join(FEATS), "--l2", str(l2)] + (["--standardize"] if standardize else [])
    text, out = fit(runner, *args)
    (line,) = [ln for ln in footer(text) if ln.startswith("L2:")]
    assert f"l2 = {l2:g}" in line and f"C = 1/l2 = {1 / l2:g}" in line
    assert "intercept" not in line or "b not penalised" in line
    assert ("penalises the standardized coefficients" in line) == standardize
    assert ("penalises the weights in the columns' own units" in line) == (not standardize)
    # the claim itself: scikit-learn's LogisticRegression with C = 1/l2, on the columns as
    # the footer says they are penalised, gives the same coefficients
    X = columns(ANES, FEATS)
    y = columns(ANES, ["vote"]).ravel()
    Z = (X - X.mean(0)) / X.std(0) if standardize else X
    peer = sklearn.LogisticRegression(C=1 / l2, tol=1e-12, max_iter=10_000).fit(Z, y)
    ours = (out["summary"]["standardized_coef"] if standardize else out["coefficients"])
    np.testing.assert_allclose([ours[f] for f in FEATS], peer.coef_.ravel(), rtol=1e-5)
    np.testing.assert_allclose(ours["intercept"], peer.intercept_[0], rtol=1e-5)


def test_no_l2_no_intercept_default_split_means_no_footer_line_for_them(runner):
    text, _ = fit(runner, "logistic", "--newton", "--data", ANES, "--target", "vote",
                  "--features", ",".join(FEATS))
    assert "conventions (" not in text  # every choice here is the peers' default


def test_without_an_intercept_the_footer_names_the_null_model(runner):
    sm = pytest.importorskip("statsmodels.api")
    text, out = fit(runner, "logistic", "--newton", "--data", ANES, "--target", "vote",
                    "--features", ",".join(FEATS), "--no-intercept")
    (line,) = [ln for ln in footer(text) if ln.startswith("null model")]
    assert "p = 1/2" in line and "statsmodels" in line
    y = columns(ANES, ["vote"]).ravel()
    n, k = len(y), y.sum()
    ll_half = n * math.log(0.5)
    assert out["summary"]["null_log_likelihood"] == pytest.approx(ll_half, rel=1e-12)
    assert f"null log-likelihood {ll_half:.10g} (p = 1/2)" in text
    # and statsmodels does what the footer says: an intercept-only null without a constant
    res = sm.Logit(y, columns(ANES, FEATS)).fit(disp=0)
    p = k / n
    assert res.llnull == pytest.approx(k * math.log(p) + (n - k) * math.log(1 - p), rel=1e-8)
    assert abs(res.llnull - ll_half) > 1


def test_least_squares_without_an_intercept_says_r2_is_uncentred(runner):
    names = ["GNPDEFL", "GNP", "UNEMP", "ARMED", "POP", "YEAR"]
    text, out = fit(runner, "least_squares", "--data", LONGLEY, "--target", "TOTEMP",
                    "--no-intercept")
    assert any(ln.startswith("R^2 is uncentred") for ln in footer(text))
    X, y = columns(LONGLEY, names), columns(LONGLEY, ["TOTEMP"]).ravel()
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    r2 = 1 - ((y - X @ w) ** 2).sum() / (y ** 2).sum()
    assert out["summary"]["r_squared"] == pytest.approx(r2, rel=1e-9)


def test_the_default_hold_out_is_stated_and_an_explicit_one_is_not_a_silent_choice(runner):
    n, fraction = 150, 0.2  # iris: 50 rows per class, stratified: 10 of each held out
    n_test = round(n * fraction)
    text, out = fit(runner, "softmax", "--data", IRIS, "--target", "species", "--l2", "1")
    (line,) = [ln for ln in footer(text) if "held out by default" in ln]
    assert line.startswith(f"{n_test} of {n} rows ({fraction:.0%}) held out by default")
    assert f"the fit uses the other {n - n_test}" in line
    assert out["data"]["n"] == n - n_test and out["held_out"]["n"] == n_test
    asked, _ = fit(runner, "softmax", "--data", IRIS, "--target", "species", "--l2", "1",
                   "--test-fraction", str(fraction))
    assert not any("held out by default" in ln for ln in footer(asked))
    none, out0 = fit(runner, "softmax", "--data", IRIS, "--target", "species", "--l2", "1",
                     "--test-fraction", "0")
    assert "held out" not in none and out0["data"]["n"] == n


def test_softmax_weights_print_with_feature_and_class_labels_normalised_as_stated(runner):
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    text, out = fit(runner, "softmax", "--data", IRIS, "--target", "species", "--l2", "1",
                    "--test-fraction", "0")
    lines = text.splitlines()
    i = lines.index("W =")
    assert lines[i + 1].split() == names
    W = np.array(out["params"]["W"])
    for k in range(W.shape[0]):
        row = lines[i + 2 + k].split()
        assert row[0] == f"species={k}"
        np.testing.assert_allclose([float(v) for v in row[1:]], W[k], rtol=1e-5)
    assert any("normalised to sum to zero over classes" in ln for ln in footer(text))
    np.testing.assert_allclose(W.sum(0), 0, atol=1e-10 * np.abs(W).max())
    np.testing.assert_allclose(sum(out["params"]["b"]), 0, atol=1e-10)


def test_gaussian_mu_and_sigma_print_with_column_names_and_sigma_divides_by_n(runner):
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    text, _ = fit(runner, "gaussian", "--data", IRIS, "--features", ",".join(names))
    X = columns(IRIS, names)
    n = len(X)
    lines = text.splitlines()
    i = lines.index("mu =")
    assert lines[i + 1].split() == names
    np.testing.assert_allclose([float(v) for v in lines[i + 2].split()], X.mean(0), rtol=1e-5)
    j = lines.index("Sigma =")
    assert lines[j + 1].split() == names
    mle, unbiased = np.cov(X.T, bias=True), np.cov(X.T)
    for r, name in enumerate(names):
        row = lines[j + 2 + r].split()
        assert row[0] == name
        np.testing.assert_allclose([float(v) for v in row[1:]], mle[r], rtol=1e-5)
    assert not np.allclose(mle, unbiased, rtol=1e-5)  # the divisor is visible at 6 digits
    (line,) = [ln for ln in footer(text) if ln.startswith("Sigma")]
    assert f"divides by n = {n}" in line and "n - 1" in line
