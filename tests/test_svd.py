"""--solver svd tells the truth: it solves the column-scaled design (so a column in cents
costs it no digits), and where its answer still differs from the default solver's by
more than 1e-10 (relative, in any coefficient) it says so, with the difference.

The reference is never the code under test: the exact least-squares solution of the
stored floats, in rational arithmetic (tests/ls_designs.py), or the certified answer.
"""

from __future__ import annotations

import warnings

import handgrad.models.least_squares as ls
import numpy as np
import pytest

from handgrad.fitting import lstsq
from tests.conftest import invoke
from tests.ls_designs import EXACT, ROUNDED, as_data, exact_polynomial, exact_solution, rounded_polynomial

AGREE = 1e-10


def ccard(cents: bool):
    """statsmodels' credit-card data (72 rows): AVGEXP on AGE, INCOME, INCOMESQ, OWNRENT.
    INCOME is in $10,000; with ``cents`` the income-squared column is in cents squared
    (INCOMESQ * 1e12), so its norm is ~1e14 times the others'."""
    pytest.importorskip("statsmodels")
    from statsmodels.datasets import ccard as cc

    d = cc.load_pandas().data
    X = np.column_stack([d.AGE, d.INCOME, d.INCOMESQ * (1e12 if cents else 1.0), d.OWNRENT])
    return X, d.AVGEXP.to_numpy(dtype=np.float64)


def rel(a, b) -> float:
    """max_j |a_j - b_j| / |b_j|: the worst coefficient's relative error."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def solve(X, y, method, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params, extra = ls.closed_form(as_data(X, y), intercept=True, method=method, **kw)
    return np.append(params["w"].numpy(), params["b"].item()), extra


def svd_warnings(extra) -> list[str]:
    return [w for w in extra["warnings"] if w.startswith("svd:")]


@pytest.mark.parametrize("cents", [False, True], ids=["income squared", "in cents"])
def test_svd_on_ccard_income_squared_in_cents_agrees_with_the_default_to_1e10(cents):
    X, y = ccard(cents)
    truth = exact_solution(X, y)
    svd, extra = solve(X, y, "svd")
    closed, _ = solve(X, y, "closed")
    assert rel(svd, truth) <= AGREE, rel(svd, truth)
    assert rel(closed, truth) <= 1e-13
    assert rel(svd, closed) <= AGREE
    assert not svd_warnings(extra), extra["warnings"]
    assert extra["rank"] == 5 and extra["condition"] < 100  # the scaled design is benign


def test_an_unscaled_svd_loses_digits_there_and_the_check_says_so(monkeypatch):
    """The planted mistake: without the column scaling (numpy's lstsq of the raw design,
    as before) the income-in-cents design keeps ~6 digits or drops a column; either way
    --solver svd now says so, and the difference it reports is the real error."""
    monkeypatch.setattr(lstsq, "column_scale", lambda A: np.ones(A.shape[1]))
    X, y = ccard(False)
    X[:, 2] *= 1e8  # income squared in dollars: no singular value dropped, digits lost
    truth = exact_solution(X, y)
    svd, extra = solve(X, y, "svd")
    assert rel(svd, truth) > 1e-8  # the bug the issue measured: ~6 digits
    (msg,) = svd_warnings(extra)
    assert "differ from the default solver's" in msg
    assert extra["differs_from_default"] == pytest.approx(rel(svd, truth), rel=1e-3)
    X, y = ccard(True)  # in cents: the plain SVD truncates, and says that
    _, extra = solve(X, y, "svd")
    (msg,) = svd_warnings(extra)
    assert "truncated design" in msg and "rcond" in msg


def _designs():
    for label, deg, lo, hi, seed in EXACT:
        X, y, c = exact_polynomial(deg, lo, hi, seed)
        yield label, X, y, c
    for label, deg, a, h, seed in ROUNDED + [("deg3 x~U[2,3]", 3, 2.0, 1.0, 12),
                                             ("deg4 x~U[0,1]", 4, 0.0, 1.0, 13)]:
        X, y = rounded_polynomial(deg, a, h, 60, seed)
        yield label, X, y, exact_solution(X, y)


def test_svd_is_within_1e10_of_the_exact_answer_or_warns():
    """On every certified design (condition 1e2 .. 1e15): silence means the answer is
    within 1e-10 of the exact least-squares solution; a difference warning means it is
    not, and names the real error; the rest are truncations, which say so."""
    silent = warned = 0
    for label, X, y, truth in _designs():
        svd, extra = solve(X, y, "svd")
        err = rel(svd, truth)
        msgs = svd_warnings(extra)
        if not msgs:
            assert err <= AGREE, (label, err)
            silent += 1
        elif extra["rank"] < X.shape[1] + 1:
            assert "truncated design" in msgs[0], (label, msgs)
        else:
            assert err > AGREE and extra["differs_from_default"] == pytest.approx(err, rel=1e-2), \
                (label, err, msgs)
            warned += 1
    assert silent >= 2 and warned >= 8  # both verdicts are exercised


def test_columns_a_billion_apart_keep_their_digits_under_svd():
    """Columns on scales 1e9, 1 and 1e-9: an unscaled SVD dropped the smallest column's
    singular value (and its coefficient, 1e9); the scaled one keeps it, to 1e-10."""
    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=200) * 1e9, rng.normal(size=200), rng.normal(size=200) * 1e-9]
    y = X @ [1e-9, 1.0, 1e9] + rng.normal(size=200)
    truth = exact_solution(X, y)
    svd, extra = solve(X, y, "svd")
    assert rel(svd, truth) <= AGREE and not svd_warnings(extra)
    assert abs(svd[2] / 1e9 - 1) < 0.1


def test_svd_with_l2_agrees_with_the_exact_ridge_solution():
    """l2 = 2: the ridge rows sqrt(l2/2) I = I on w are exact, so the reference is the
    exact least-squares solution of the augmented design."""
    X, y = ccard(True)
    d = X.shape[1]
    A = np.vstack([np.c_[X, np.ones(len(X))], np.c_[np.eye(d), np.zeros(d)]])
    truth = exact_solution(A, np.r_[y, np.zeros(d)], intercept=False)
    svd, extra = solve(X, y, "svd", l2=2.0)
    assert rel(svd, truth) <= AGREE and not svd_warnings(extra)


def test_cli_svd_on_the_cents_design_prints_the_default_coefficients(runner, tmp_path):
    X, y = ccard(True)
    path = tmp_path / "ccard_cents.csv"
    np.savetxt(path, np.c_[X, y], delimiter=",", header="AGE,INCOME,INCOMESQ,OWNRENT,AVGEXP",
               comments="", fmt="%.17g")
    outs = {}
    for solver in ("closed", "svd"):
        r, out = invoke(runner, "fit", "least_squares", "--data", path, "--target", "AVGEXP",
                        "--solver", solver, "--json")
        assert r.exit_code == 0, r.output
        outs[solver] = out
    names = list(outs["closed"]["coefficients"])
    a = [outs["svd"]["coefficients"][k] for k in names]
    b = [outs["closed"]["coefficients"][k] for k in names]
    assert rel(a, b) <= AGREE
    assert not [w for w in outs["svd"]["warnings"] if w.startswith("svd:")]
