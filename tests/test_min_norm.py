"""Rank-deficient least squares: each solver says which of the many solutions it returns,
and that is the one it returns (checked against numpy's pinv, an independent reference)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import handgrad


def collinear(seed=0, n=50):
    """x2 = x0 + x1/100 exactly, and x1 on a scale 100 times x0's: the column-scaled and
    the plain minimum-norm solutions differ."""
    g = np.random.default_rng(seed)
    x0, x1 = g.normal(size=n), 100 * g.normal(size=n)
    X = np.c_[x0, x1, x0 + x1 / 100]
    y = 1 + 2 * x0 + 0.03 * x1 + 0.1 * g.normal(size=n)
    return X, y, np.c_[X, np.ones(n)]


def fit(solver):
    X, y, _ = collinear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = handgrad.fit("least_squares", X, y, solver=solver).to_dict()
    return np.array(list(out["coefficients"].values())), out["warnings"]


def test_the_default_solver_returns_the_column_scaled_minimum_norm_solution_and_says_so():
    _, y, A = collinear()
    norms = np.linalg.norm(A, axis=0)
    D = np.exp2(np.round(np.log2(norms)))  # the column scales, powers of two (as the warning says)
    want = np.linalg.pinv(A / D) @ y / D  # min ||D theta|| among the least-squares solutions
    for solver in ("closed", "qr"):
        theta, warns = fit(solver)
        np.testing.assert_allclose(theta, want, rtol=1e-6, atol=1e-9)
        msg = next(w for w in warns if "rank deficient" in w)
        assert "column-scaled coordinates" in msg and "not numpy's/pinv's" in msg
        assert "--solver svd" in msg


def test_svd_returns_pinv_and_claims_nothing_else():
    _, y, A = collinear()
    theta, warns = fit("svd")
    np.testing.assert_allclose(theta, np.linalg.pinv(A) @ y, rtol=1e-8, atol=1e-10)
    assert any("singular values are below rcond" in w for w in warns)
    # the QR run for the standard errors describes the design, not what was returned
    assert not any("Returned" in w for w in warns), warns
    assert any("rank deficient" in w for w in warns)


def test_the_two_minimum_norm_solutions_differ_here():
    a, _ = fit("closed")
    b, _ = fit("svd")
    assert np.abs(a - b).max() > 0.1  # so the warning's distinction is not academic


def test_normal_equations_say_their_answer_is_one_of_many():
    _, warns = fit("normal")
    msg = next(w for w in warns if "normal equations" in w)
    assert "not the minimum-norm one" in msg and "--solver svd" in msg


@pytest.mark.parametrize("solver", ["closed", "svd", "normal"])
def test_every_solution_is_a_least_squares_solution(solver):
    """Whichever is returned, it minimises ||A theta - y|| (the residual of pinv's)."""
    _, y, A = collinear()
    theta, _ = fit(solver)
    best = np.linalg.norm(A @ (np.linalg.pinv(A) @ y) - y)
    assert np.linalg.norm(A @ theta - y) == pytest.approx(best, rel=1e-6)
