"""Least squares keeps its digits: certified answers at condition numbers 1e6 .. 4e14.

The answers come from tests/ls_designs.py: either the polynomial's own integer
coefficients (data stored exactly, checked in integer arithmetic) or the exact rational
least-squares solution of the stored floats, never from the code under test.
"""

from __future__ import annotations

import os
import warnings

import handgrad.models.least_squares as ls
import numpy as np
import pytest
import torch

from handgrad.errors import HandgradWarning
from handgrad.fitting.data import Data
from tests.conftest import ROOT, invoke
from tests.ls_designs import (
    EXACT,
    ROUNDED,
    as_data,
    certify_exact,
    digits,
    exact_polynomial,
    exact_solution,
    rounded_polynomial,
)
from tests.reference_values import LONGLEY_COEF, LONGLEY_SE


def _theta(params) -> np.ndarray:
    return np.append(params["w"].numpy(), params["b"].item())


def _solve(data, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HandgradWarning)
        return ls.closed_form(data, intercept=True, method=method)


def _raw_condition(X: np.ndarray) -> float:
    """Independent of the code under test: SVD of the design with unit-norm columns."""
    A = np.hstack([X, np.ones((len(X), 1))])
    s = np.linalg.svd(A / np.linalg.norm(A, axis=0), compute_uv=False)
    return float(s[0] / s[-1])


EXACT_CASES = [pytest.param(*c[1:], id=c[0]) for c in EXACT] + [
    pytest.param(10, 16, 32, seed, id=f"deg10 x=16..32 seed{seed}") for seed in (21, 22)]
ROUNDED_CASES = [pytest.param(*c[1:], id=c[0]) for c in ROUNDED] + [
    pytest.param(10, 2.0, 1.0, seed, id=f"deg10 x~U[2,3] seed{seed}") for seed in (31, 32)]


@pytest.mark.parametrize("degree,lo,hi,seed", EXACT_CASES)
def test_exact_polynomial_recovered_to_full_precision(degree, lo, hi, seed):
    X, y, c = exact_polynomial(degree, lo, hi, seed)
    assert certify_exact(X, y, c)  # the stored data is exactly y = A c: the answer is c
    data = as_data(X, y)
    params, extra = _solve(data, "closed")
    assert digits(_theta(params), c) >= 7, _theta(params) - c
    assert extra["rank"] == X.shape[1] + 1
    # the condition estimate is the unit-norm-column condition, up to the power-of-two scaling
    assert 0.25 <= extra["condition"] / _raw_condition(X) <= 4
    # the notes' normal equations get no digit of the worst coefficient here
    normal, _ = _solve(data, "normal")
    assert digits(_theta(normal), c) < 1


@pytest.mark.parametrize("degree,a,h,seed", ROUNDED_CASES)
def test_rounded_polynomial_matches_exact_rational_solution(degree, a, h, seed):
    X, y = rounded_polynomial(degree, a, h, 60, seed)
    truth = exact_solution(X, y)
    data = as_data(X, y)
    params, extra = _solve(data, "closed")
    assert digits(_theta(params), truth) >= 7
    cond = _raw_condition(X)
    if cond >= 1e13:
        normal, _ = _solve(data, "normal")
        assert digits(_theta(normal), truth) < 1
        assert extra["refinement_steps"] >= 1


def test_ill_conditioned_designs_cover_1e13_and_beyond():
    """The suite is not tuned to easy cases: several designs sit at condition >= 1e13."""
    conds = [_raw_condition(rounded_polynomial(d, a, h, 60, s)[0]) for _, d, a, h, s in ROUNDED]
    assert sum(c >= 1e13 for c in conds) >= 3 and max(conds) >= 1e14


def test_refinement_is_what_buys_the_digits():
    """Plain (scaled) Householder QR, no refinement, loses about cond * eps."""
    X, y = rounded_polynomial(10, 2.0, 1.0, 60, 9)
    truth = exact_solution(X, y)
    qr, _ = _solve(as_data(X, y), "qr")
    closed, _ = _solve(as_data(X, y), "closed")
    assert digits(_theta(qr), truth) < 6 <= 7 <= digits(_theta(closed), truth)


def test_ill_conditioned_design_warns():
    X, y, _ = exact_polynomial(8, 32, 64, 1)
    with pytest.warns(HandgradWarning, match="ill-conditioned"):
        _, extra = ls.closed_form(as_data(X, y), intercept=True)
    assert extra["warnings"] and extra["condition"] > ls.ILL_CONDITIONED


def test_well_conditioned_solvers_agree_and_do_not_warn():
    g = torch.Generator().manual_seed(5)
    X = torch.randn(200, 4, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64) + 0.1 * torch.randn(
        200, generator=g, dtype=torch.float64)
    data = Data(X, y)
    # independent reference: numpy's SVD least squares on the same design
    ref = np.linalg.lstsq(np.hstack([X.numpy(), np.ones((200, 1))]), y.numpy(), rcond=None)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", HandgradWarning)
        for method in ls.CLOSED_SOLVERS:
            params, extra = ls.closed_form(data, intercept=True, method=method)
            np.testing.assert_allclose(_theta(params), ref, rtol=1e-11, atol=1e-12)
            assert not extra["warnings"]


def test_ridge_closed_form_matches_penalised_normal_equations():
    g = torch.Generator().manual_seed(6)
    X = torch.randn(50, 3, generator=g, dtype=torch.float64)
    y = torch.randn(50, generator=g, dtype=torch.float64)
    l2 = 3.0
    params, _ = ls.closed_form(Data(X, y), intercept=False, l2=l2)
    # gradient 2 X^T (Xw - y) + l2 w = 0  <=>  (X^T X + l2/2 I) w = X^T y
    ref = torch.linalg.solve(X.T @ X + l2 / 2 * torch.eye(3, dtype=torch.float64), X.T @ y)
    torch.testing.assert_close(params["w"], ref, rtol=1e-12, atol=1e-12)


def test_rank_deficient_design_warns_and_names_columns():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64)
    X = torch.cat([x, x[:, :1] + x[:, 1:]], dim=1)  # third column = first + second
    y = torch.randn(40, generator=g, dtype=torch.float64)
    data = Data(X, y, ["a", "b", "a_plus_b"])
    with pytest.warns(HandgradWarning, match="rank deficient") as rec:
        params, extra = ls.closed_form(data, intercept=True)
    assert "'a_plus_b'" in str(rec[0].message)
    assert extra["rank"] == 3
    theta = _theta(params)
    A = np.hstack([X.numpy(), np.ones((40, 1))])
    assert np.isfinite(theta).all()
    # still a least-squares solution: the normal equations hold
    np.testing.assert_allclose(A.T @ (A @ theta - y.numpy()), 0, atol=1e-9)
    assert ls.covariance(extra, _rss(ls, params, data), data.n) is None  # not identified: no standard errors


def test_float32_data_gets_the_float64_answer_rounded():
    X, y, c = exact_polynomial(6, 64, 128, 0)
    data = as_data(X, y).to(dtype=torch.float32)
    params, _ = _solve(data, "closed")
    assert params["w"].dtype == torch.float32
    # the float32 data itself is rounded (x^6 needs 42 bits), so only check it is sane
    assert np.isfinite(_theta(params)).all()


@pytest.mark.parametrize("kind", ["exact", "rounded"])
def test_cli_json_keeps_seven_digits_and_reports_condition(runner, tmp_path, kind):
    if kind == "exact":
        X, y, truth = exact_polynomial(10, 24, 40, 5)
    else:
        X, y = rounded_polynomial(10, 3.0, 1.0, 60, 11)
        truth = exact_solution(X, y)
    path = tmp_path / "poly.csv"
    header = ",".join([f"x{k}" for k in range(1, 11)] + ["y"])
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="",
               fmt="%.17g")
    r, out = invoke(runner, "fit", "least_squares", "--data", path, "--target", "y", "--json")
    assert r.exit_code == 0, r.output
    coef = out["coefficients"]
    est = np.array([coef[f"x{k}"] for k in range(1, 11)] + [coef["intercept"]])
    assert digits(est, truth) >= 7
    s = out["summary"]
    assert s["condition_unscaled"] >= 1e13 and s["condition"] >= 1e12
    assert s["rank"] == 11
    assert any("ill-conditioned" in w for w in out["warnings"])
    # the notes' normal equations, asked for explicitly, lose every digit on the same file
    r, out = invoke(runner, "fit", "least_squares", "--data", path, "--target", "y",
                    "--solver", "normal", "--json")
    coef = out["coefficients"]
    est = np.array([coef[f"x{k}"] for k in range(1, 11)] + [coef["intercept"]])
    assert digits(est, truth) < 1


@pytest.mark.parametrize("solver", ["qr", "normal", "svd", "closed", "newton", "gd"])
def test_cli_every_least_squares_solver_runs(runner, solver):
    r, out = invoke(runner, "fit", "least_squares", "--solver", solver, "--json",
                    "--n-samples", "200", "--n-features", "3")
    assert r.exit_code == 0, r.output
    assert out["solver"] == solver and out["summary"]["kind"] == "least_squares"
    assert set(out["coefficients"]) == {"x0", "x1", "x2", "intercept"}


# NIST's certified Longley values: tests/reference_values.py


def test_longley_matches_nist_certified_values(runner):
    path = os.path.join(ROOT, "data", "longley.csv")
    r, out = invoke(runner, "fit", "least_squares", "--data", path, "--target", "TOTEMP",
                    "--json")
    assert r.exit_code == 0, r.output
    names = list(LONGLEY_COEF)
    est = np.array([out["coefficients"][k] for k in names])
    se = np.array([out["std_errors"][k] for k in names])
    assert digits(est, np.array([LONGLEY_COEF[k] for k in names])) >= 11
    assert digits(se, np.array([LONGLEY_SE[k] for k in names])) >= 10
    s = out["summary"]
    assert s["residual_std"] == pytest.approx(304.854073561965, rel=1e-10)
    assert s["r_squared"] == pytest.approx(0.995479004577296, rel=1e-12)
    # the notes' normal equations keep only about 6 digits on the same data
    _, normal = invoke(runner, "fit", "least_squares", "--data", path, "--target", "TOTEMP",
                       "--solver", "normal", "--json")
    est = np.array([normal["coefficients"][k] for k in names])
    assert digits(est, np.array([LONGLEY_COEF[k] for k in names])) < 9


def test_tall_well_conditioned_designs_take_cholesky_qr_and_match_householder():
    """n >= FAST_ROWS: the fast path (corrected semi-normal equations) agrees with Householder
    QR to ~1e-13 and gives the same standard errors; an ill-conditioned tall design does
    not take it (the scaled QR + refinement runs instead)."""
    import handgrad.models.least_squares as ls

    from handgrad.fitting.data import Data

    g = torch.Generator().manual_seed(7)
    n, d = ls.FAST_ROWS, 6
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.logspace(-2, 2, d, dtype=torch.float64)
    noise = 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, generator=g, dtype=torch.float64) + noise
    data = Data(X, y)
    fast, e_fast = ls.closed_form(data, intercept=True)
    assert e_fast["solver"].startswith("cholesky-qr")
    ref, e_ref = ls.closed_form(data, intercept=True, method="qr")
    a = torch.cat([fast["w"], fast["b"].reshape(1)])
    b = torch.cat([ref["w"], ref["b"].reshape(1)])
    assert ((a - b).abs() / b.abs()).max() < 1e-11
    se_fast = ls.covariance(e_fast, _rss(ls, fast, data), data.n).diagonal().sqrt()
    se_ref = ls.covariance(e_ref, _rss(ls, ref, data), data.n).diagonal().sqrt()
    assert ((se_fast - se_ref).abs() / se_ref).max() < 1e-10
    # nearly collinear columns: condition far above FAST_MAX_COND, so no fast path
    X2 = torch.cat([X, X[:, :1] + 1e-7 * X[:, 1:2]], dim=1)
    _, e_ill = ls.closed_form(Data(X2, y), intercept=True)
    assert not e_ill["solver"].startswith("cholesky-qr") and e_ill["condition"] > ls.FAST_MAX_COND


def _rss(ls, params, data) -> float:
    r = ls.residual(params, data)
    return float(r @ r)
