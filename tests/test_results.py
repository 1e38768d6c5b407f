"""Results out (issue 24): FitResult's predict, pvalues, conf_int and std_errors against
statsmodels (an independent implementation), and the fit naming constant and collinear
columns by their own names before fitting, and flagging a perfect fit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import handgrad

sm = pytest.importorskip("statsmodels.api")


def design(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return rng, X


def test_least_squares_pvalues_intervals_std_errors_and_predict_match_ols():
    rng, X = design()
    y = X @ [1.0, -0.5, 0.02] + 0.3 + rng.normal(size=len(X))
    res = handgrad.fit("least_squares", X, y, feature_names=["a", "b", "c"])
    ref = sm.OLS(y, sm.add_constant(X)).fit()
    order = ["intercept", "a", "b", "c"]
    np.testing.assert_allclose([res.std_errors[k] for k in order], ref.bse, rtol=1e-9)
    np.testing.assert_allclose([res.pvalues[k] for k in order], ref.pvalues, rtol=1e-7)
    for alpha in (0.05, 0.2):
        ci = res.conf_int(alpha)
        np.testing.assert_allclose([ci[k] for k in order], ref.conf_int(alpha), rtol=1e-9)
    Xnew = rng.normal(size=(5, 3))
    np.testing.assert_allclose(res.predict(Xnew), ref.predict(sm.add_constant(Xnew)), rtol=1e-10)


def test_logistic_pvalues_intervals_and_predict_match_logit_and_labels_come_back_as_given():
    rng, X = design()
    p = 1 / (1 + np.exp(-(X @ [1.0, -1.0, 0.1] - 0.2)))
    y = rng.random(len(X)) < p
    labels = np.where(y, "buy", "skip")
    res = handgrad.fit("logistic", X, labels, feature_names=["a", "b", "c"])
    # sorted order: 'buy' -> 0, 'skip' -> 1, and the notes say so
    assert "'buy' -> 0, 'skip' -> 1" in res.raw["data"]["notes"][0]
    ref = sm.Logit((labels == "skip").astype(float), sm.add_constant(X)).fit(disp=0, tol=1e-12)
    order = ["intercept", "a", "b", "c"]
    np.testing.assert_allclose([res.pvalues[k] for k in order], ref.pvalues, rtol=1e-6)
    np.testing.assert_allclose([res.conf_int(0.1)[k] for k in order], ref.conf_int(0.1), rtol=1e-7)
    Xnew = rng.normal(size=(6, 3))
    prob = res.predict(Xnew)
    np.testing.assert_allclose(prob, ref.predict(sm.add_constant(Xnew)), rtol=1e-8)
    assert list(res.predict(Xnew, labels=True)) == ["skip" if q > 0.5 else "buy" for q in prob]


def test_poisson_and_softmax_predict_their_mean_response():
    rng, X = design()
    counts = rng.poisson(np.exp(X @ [0.3, -0.2, 0.1] + 0.5))
    res = handgrad.fit("poisson", X, counts)
    ref = sm.GLM(counts, sm.add_constant(X), family=sm.families.Poisson()).fit(tol=1e-12)
    np.testing.assert_allclose(res.predict(X[:4]), ref.predict(sm.add_constant(X[:4])), rtol=1e-7)
    k = (X[:, 0] > 0.5).astype(int) + (X[:, 1] > 0).astype(int)
    sres = handgrad.fit("softmax", X, k, test_fraction=0.0, solver="newton")
    P = sres.predict(X[:5])
    assert P.shape == (5, 3)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)
    # the class probabilities are those of statsmodels' MNLogit (a different gauge, the
    # same probabilities)
    mref = sm.MNLogit(k, sm.add_constant(X)).fit(disp=0, method="newton", tol=1e-12)
    np.testing.assert_allclose(P, mref.predict(sm.add_constant(X[:5])), rtol=1e-6, atol=1e-9)


def test_predict_matches_a_dataframe_by_column_name():
    pd = pytest.importorskip("pandas")
    rng, X = design()
    df = pd.DataFrame(X, columns=["u", "v", "w"])
    y = X @ [1.0, 2.0, 3.0] + rng.normal(size=len(X))
    res = handgrad.fit("least_squares", df, y)
    shuffled = df[["w", "u", "v"]].head(4)
    np.testing.assert_allclose(res.predict(shuffled), res.predict(X[:4]), rtol=1e-13)


def fit_warnings(model, X, y, names):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = handgrad.fit(model, X, y, feature_names=names)
    return res, [str(w.message) for w in rec]


@pytest.mark.parametrize("model", ["least_squares", "logistic"])
def test_a_constant_column_is_named_before_the_fit(model):
    rng, X = design()
    X[:, 2] = 3.0
    y = X[:, 0] + rng.normal(size=len(X))
    y = y if model == "least_squares" else (y > 0).astype(float)
    _, warns = fit_warnings(model, X, y, ["a", "b", "c"])
    first = warns[0]
    assert "column 'c' (= 3) is constant in every row" in first and "--exclude c" in first
    assert "'b'" not in first and "'a'" not in first


def test_collinear_columns_are_named_and_no_innocent_column_is():
    rng, X = design()
    X = np.c_[X, X[:, 0] - 2 * X[:, 1]]  # d = a - 2 b; c is innocent
    y = X[:, 0] + rng.normal(size=len(X))
    _, warns = fit_warnings("least_squares", X, y, ["a", "b", "c", "d"])
    first = warns[0]
    assert "columns 'a', 'b', 'd' are collinear (d = 1 * a - 2 * b in every row)" in first, first
    # least squares' own rank warning names the same three, not the innocent 'c'
    rank = next(w for w in warns if "rank deficient" in w)
    assert "'a', 'b', 'd'" in rank and "'c'" not in rank


def test_a_full_rank_design_gets_no_collinearity_warning():
    rng, X = design(n=20000)
    y = X @ [1.0, 2.0, 3.0] + rng.normal(size=len(X))
    _, warns = fit_warnings("least_squares", X, y, ["a", "b", "c"])
    assert not any("collinear" in w or "constant" in w for w in warns), warns


def test_a_perfect_fit_is_flagged_and_its_t_statistics_withheld():
    rng, X = design()
    res, warns = fit_warnings("least_squares", X, np.full(len(X), 2.0), ["a", "b", "c"])
    assert any(w.startswith("perfect fit") and "target is constant" in w for w in warns), warns
    assert res.raw["summary"]["perfect_fit"] is True
    assert all(p is None for p in res.pvalues.values())
    res, warns = fit_warnings("least_squares", X, X @ [1.0, 2.0, 3.0], ["a", "b", "c"])
    assert any("exact linear function of the features" in w for w in warns), warns
    # an ordinary fit is not flagged
    res, warns = fit_warnings("least_squares", X, X @ [1.0, 2.0, 3.0] + rng.normal(size=len(X)),
                              ["a", "b", "c"])
    assert not any("perfect fit" in w for w in warns) and "perfect_fit" not in res.raw["summary"]


def test_report_makes_the_page_for_your_own_data(runner, tmp_path):
    from tests.conftest import invoke

    rng, X = design(n=120)
    y = rng.random(len(X)) < 1 / (1 + np.exp(-X[:, 0]))
    rows = ["a,b,c,vote"] + [f"{r[0]!r},{r[1]!r},{r[2]!r},{'yes' if t else 'no'}"
                             for r, t in zip(X.tolist(), y.tolist())]
    path = tmp_path / "v.csv"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "pages"
    r, _ = invoke(runner, "report", "logistic", "--data", str(path), "--target", "vote",
                  "--out", str(out), "--no-plots")
    assert r.exit_code == 0, r.stderr
    page = (out / "logistic.md").read_text()
    assert "v.csv (n=120, d=3)" in page and "'no' -> 0, 'yes' -> 1" in page
    ref = sm.Logit(y.astype(float), sm.add_constant(X)).fit(disp=0, tol=1e-12)
    assert f"{ref.params[1]:.6g}"[:6] in page  # the page's table holds this fit's coefficient
    r, _ = invoke(runner, "report", "logistic", "--data", str(path), "--target", "nope",
                  "--out", str(out), "--no-plots")
    assert r.exit_code == 2 and "Target column 'nope' not in v.csv" in r.stderr


def test_predict_says_where_it_is_not_available():
    rng, X = design(n=60)
    with pytest.raises(handgrad.errors.UserError, match="models the features themselves"):
        handgrad.fit("gaussian", X).predict(X)
