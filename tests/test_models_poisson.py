"""Poisson regression: hand gradient and Hessian (built from the per-sample pieces) vs
autograd, planted wrong per-sample derivatives caught by `check`, the log-likelihood with
its log(y_i!) term, the count-target checks, Newton from bad starts, and the fit on real
counts (RAND HIE doctor visits) against statsmodels' GLM(Poisson) to 1e-8."""

from __future__ import annotations

import math
import os
import types

import handgrad.derivations.poisson as dpo
import handgrad.models.poisson as mpo
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from handgrad import registry
from handgrad.contract import load_derivation
from handgrad.errors import UserError
from handgrad.fitting import solvers
from handgrad.fitting.data import Data, load
from handgrad.fitting.sums import LinearLoss
from handgrad.params import flatten
from handgrad.verify import checker
from tests.conftest import ROOT, invoke

ENTRY = registry.get("poisson")
RANDHIE = os.path.join(ROOT, "data", "randhie.csv")

pytestmark = pytest.mark.usefixtures("one_thread")


def _problems(seed):
    return mpo.check_problems(seed, torch.float64, "cpu")


# --- the derivatives -----------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_way_check_passes(seed):
    for label, p, data, hp in _problems(seed):
        rep = checker.check_problem(ENTRY, label, p, data, hp, seed=seed, dtype=torch.float64)
        assert rep.ok, (label, [c for c in rep.comparisons if not c.ok])
        assert {c.quantity for c in rep.comparisons} == {"gradient", "hessian", "loss"}


def test_every_derivation_line_verified_and_linked():
    """derivations/poisson.hg: every line verified, and at these problems its read-offs
    are the gradient and Hessian fit uses (LINEAR's)."""
    from handgrad import registry
    from handgrad.verify import in_notation
    entry = registry.get("poisson")
    spec = entry.derivation
    rep = in_notation.derive(entry, spec.notation[0], spec.module, _problems(0))
    assert rep["verdict"] == "verified" and rep["link"]["ok"], rep["link"]["rows"]
    assert len(rep["link"]["problems"]) == len(_problems(0))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), d=st.integers(1, 5), bias=st.booleans(),
       l2=st.sampled_from([0.0, 0.7]), seed=st.integers(0, 10_000))
def test_gradient_and_hessian_match_autograd_any_shape(n, d, bias, l2, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.poisson(torch.full((n,), 3.0, dtype=torch.float64), generator=g)
    data = Data(X, y)
    p = {"w": 0.5 * torch.randn(d, generator=g, dtype=torch.float64)}
    if bias:
        p["b"] = torch.randn((), generator=g, dtype=torch.float64)
    hp = {"l2": l2}
    x0 = flatten(p)

    def f(x):
        w = x[:d]
        z = X @ w + (x[d] if bias else 0.0)
        return (torch.exp(z) - y * z).sum() + 0.5 * l2 * (w @ w)  # written out, not mpo.loss

    auto_g = torch.func.grad(f)(x0)
    auto_H = torch.func.hessian(f)(x0)
    torch.testing.assert_close(flatten(ENTRY.gradient(p, data, **hp)), auto_g, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ENTRY.hessian(p, data, **hp), auto_H, rtol=1e-10, atol=1e-10)
    # the closed forms of the issue: X^T (exp(z) - y) and X_a^T diag(exp(z)) X_a
    Xa = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], 1) if bias else X
    mu = torch.exp(Xa @ x0)
    ridge = torch.diag(torch.tensor([l2] * d + [0.0] * bias, dtype=X.dtype))
    torch.testing.assert_close(ENTRY.hessian(p, data, **hp), Xa.T @ (mu[:, None] * Xa) + ridge)
    torch.testing.assert_close(flatten(ENTRY.gradient(p, data, **hp)),
                               Xa.T @ (mu - y) + ridge @ x0)


def test_fit_path_runs_the_checked_pieces():
    """The registry's derivation is LINEAR: check and every fit sum the same per_sample."""
    assert ENTRY.derivation.linear is dpo.LINEAR
    assert dpo.LINEAR.per_sample is dpo.per_sample


# --- planted wrong per-sample derivatives ------------------------------------------------

def _wrong_grad(z, y, grad=True, hess=True, value=True):  # 1.1 exp(z) - y for dl/dz
    mu = torch.exp(z)
    return (mu - y * z if value else None), 1.1 * mu - y, (mu if hess else None)


def _wrong_hess(z, y, grad=True, hess=True, value=True):  # 1.1 exp(z) for d2l/dz2
    mu = torch.exp(z)
    return (mu - y * z if value else None), mu - y, (1.1 * mu if hess else None)


def _planted(per_sample):
    mod = types.ModuleType("planted_poisson")
    mod.LINEAR = LinearLoss(per_sample)
    return load_derivation(mod, ENTRY.model)


@pytest.mark.parametrize("wrong, bad", [(_wrong_grad, {"gradient"}),
                                        (_wrong_hess, {"hessian"})])
def test_planted_wrong_per_sample_is_caught(wrong, bad):
    reps = checker.check_entry(ENTRY, derivation=_planted(wrong))
    assert reps and not any(r.ok for r in reps)
    failed = {c.quantity for r in reps for c in r.comparisons if not c.ok}
    assert failed == bad
    # the references still agree with each other: the fault is the hand derivative's
    assert all(c.ok for r in reps for c in r.comparisons if c.hand_vs == "autograd_vs_fd")


def test_planted_wrong_per_sample_fails_the_check_command(runner, monkeypatch):
    """Plant 1.1 exp(z) - y in the one LINEAR the registry holds: `check poisson` fails."""
    monkeypatch.setattr(dpo.LINEAR, "per_sample", _wrong_grad)
    r, out = invoke(runner, "check", "poisson", "--json")
    assert r.exit_code != 0
    assert out["ok"] is False and out["models"]["poisson"]["ok"] is False


# --- likelihood ----------------------------------------------------------------------------

def test_log_likelihood_is_minus_loss_plus_offset():
    """log L = -l + sum_i offset(y_i) is sum_i log Poisson(y_i; exp(z_i))."""
    sps = pytest.importorskip("scipy.stats")
    data, truth = mpo.synthetic(n=300, d=3, seed=4)
    ll = -float(mpo.loss(truth, data)) + float(mpo.LIKELIHOOD.offset(data.y).sum())
    mu = mpo.predict_mean(truth, data).numpy()
    assert ll == pytest.approx(float(sps.poisson.logpmf(data.y.numpy(), mu).sum()), rel=1e-12)


@pytest.mark.parametrize("intercept", [True, False])
def test_null_log_likelihood_is_the_featureless_fit(intercept):
    """null() is -l (without the offset) at the optimum of the model without features."""
    data, _ = mpo.synthetic(n=400, d=2, seed=1)
    ll0, name = mpo.LIKELIHOOD.null(float(data.y.sum()), data.n, intercept)
    b = math.log(float(data.y.mean())) if intercept else 0.0
    z = torch.full((data.n,), b, dtype=torch.float64)
    assert ll0 == pytest.approx(-float((torch.exp(z) - data.y * z).sum()), rel=1e-13)
    assert name == ("intercept only" if intercept else "mu = 1")


# --- the target ----------------------------------------------------------------------------

@pytest.mark.parametrize("y, msg", [([0.0, 2.0, -1.0], "row 3 is -1"),
                                    ([1.0, 2.5, 3.0], "row 2 is 2.5"),
                                    ([0.0, 0.0, 0.0], "0 in every row")])
def test_prepare_rejects_non_counts(y, msg):
    data = Data(torch.zeros(3, 1, dtype=torch.float64), torch.tensor(y), target="visits")
    with pytest.raises(UserError, match=msg) as exc:
        mpo.prepare(data)
    assert "\n" not in str(exc.value) and "'visits'" in str(exc.value)


def test_cli_names_the_bad_row(runner, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("x,count\n1,0\n2,3\n3,1.5\n")
    r, _ = invoke(runner, "fit", "poisson", "--newton", "--data", path, "--target", "count")
    assert r.exit_code != 0
    assert "row 3 is 1.5" in r.output and "Traceback" not in r.output


# --- Newton --------------------------------------------------------------------------------

def test_init_is_the_intercept_only_optimum():
    data, _ = mpo.synthetic(n=500, d=3, seed=2)
    p = mpo.init_params(data)
    assert float(p["w"].abs().max()) == 0.0
    assert float(ENTRY.gradient(p, data)["b"]) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("scale", [1, 100])
def test_newton_from_zeros_survives_overflow(scale):
    """From b = 0 on counts ~ 286 the first full Newton step reaches z ~ 285 and beyond;
    exp overflows to inf there and the line search backs off: same optimum as from the
    default start."""
    data = mpo.prepare(load(RANDHIE, "mdvis"))
    data.y = data.y * scale
    fits = []
    for start in ("default", "zeros"):
        p0 = mpo.init_params(data)
        if start == "zeros":
            p0 = {k: torch.zeros_like(v) for k, v in p0.items()}
        res = solvers.newton(solvers.Objective(ENTRY, data, p0, {"l2": 0.0}), flatten(p0))
        assert res.converged, (start, res.message)
        fits.append(flatten(res.params))
    torch.testing.assert_close(fits[0], fits[1], rtol=1e-9, atol=1e-11)


def test_synthetic_fit_recovers_truth():
    from handgrad.fitting import pipeline

    out = pipeline.fit("poisson", solver="newton", n_samples=20000, n_features=4, seed=3)
    assert out["converged"]
    true = out["true_params"]
    for (k, c), t in zip(out["coefficients"].items(), list(true["w"]) + [true["b"]]):
        assert abs(c - t) < 0.05, (k, c, t)


# --- statsmodels ---------------------------------------------------------------------------

def _worst(ours: dict, ref, names) -> tuple[float, float]:
    diff = [abs(ours[k] - float(ref[k])) for k in names]
    return max(diff), max(d / abs(float(ref[k])) for d, k in zip(diff, names))


@pytest.fixture(scope="module")
def statsmodels_randhie():
    sm = pytest.importorskip("statsmodels.api")
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(RANDHIE)
    X = sm.add_constant(df.drop(columns="mdvis"), prepend=False).rename(
        columns={"const": "intercept"})
    res = sm.GLM(df["mdvis"], X, family=sm.families.Poisson()).fit(tol=1e-13)
    assert res.converged
    return res


def test_randhie_matches_statsmodels_glm_poisson(statsmodels_randhie):
    from handgrad.fitting import pipeline

    ref = statsmodels_randhie
    out = pipeline.fit("poisson", solver="newton", data_path=RANDHIE, target="mdvis")
    assert out["converged"], out["message"]
    names = list(ref.params.index)
    assert list(out["coefficients"]) == names
    coef_abs, coef_rel = _worst(out["coefficients"], ref.params, names)
    se_abs, se_rel = _worst(out["std_errors"], ref.bse, names)
    ll = out["summary"]["log_likelihood"]
    assert coef_rel < 1e-8 and coef_abs < 1e-8, (coef_abs, coef_rel)
    assert se_rel < 1e-8 and se_abs < 1e-8, (se_abs, se_rel)
    assert abs(ll - ref.llf) <= 1e-8 * abs(ref.llf), (ll, ref.llf)
    s = out["summary"]
    if "null_log_likelihood" in s:  # same offset on both sides: statsmodels' llnull
        assert abs(s["null_log_likelihood"] - ref.llnull) <= 1e-8 * abs(ref.llnull)
    if "aic" in s:
        assert s["aic"] == pytest.approx(ref.aic, rel=1e-9)


def test_cli_fit_on_randhie(runner, statsmodels_randhie):
    r, out = invoke(runner, "fit", "poisson", "--newton", "--data", RANDHIE, "--target", "mdvis",
                    "--json")
    assert r.exit_code == 0, r.output
    ref = statsmodels_randhie
    _, coef_rel = _worst(out["coefficients"], ref.params, list(ref.params.index))
    assert coef_rel < 1e-8
    assert abs(out["summary"]["log_likelihood"] - ref.llf) <= 1e-8 * abs(ref.llf)
