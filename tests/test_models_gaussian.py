"""Gaussian covariance MLE: the symmetric-matrix gradient convention, the Cholesky-factor
gradient, the derivation in the notation (gradient and second differential) linked to what
fit runs, planted errors caught, the closed form against numpy.cov, singular data named,
gradient descent through L reaching the closed form, the CLI and the shipped data."""

from __future__ import annotations

import dataclasses
import math
import os

import handgrad.derivations.gaussian as dg
import handgrad.models.gaussian as mg
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from handgrad import registry
from handgrad.contract import DerivationSpec
from handgrad.errors import UserError
from handgrad.fitting import solvers
from handgrad.fitting.data import Data, load
from handgrad.params import flatten
from handgrad.verify import checker
from tests.conftest import ROOT, derive_edited_notation, invoke

ENTRY = registry.get("gaussian")
IRIS = os.path.join(ROOT, "data", "iris.csv")
WINE = os.path.join(ROOT, "data", "wine.csv")
MEASUREMENTS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _problems(seed):
    return mg.check_problems(seed, torch.float64, "cpu")


def _spd(d, g):
    B = torch.randn(d, d, generator=g, dtype=torch.float64)
    return B @ B.T / d + 0.5 * torch.eye(d, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_way_check_passes_both_parametrisations(seed):
    kinds = set()
    for label, p, data, hp in _problems(seed):
        rep = checker.check_problem(ENTRY, label, p, data, hp, seed=seed, dtype=torch.float64)
        assert rep.ok, (label, [c.worst for c in rep.comparisons if not c.ok])
        assert {c.quantity for c in rep.comparisons} == {"gradient", "hessian"}
        kinds.add("L" if "L" in p else "Sigma")
    assert kinds == {"L", "Sigma"}


@pytest.mark.parametrize("seed", [0, 1])
def test_every_derivation_line_verified_and_linked_at_every_problem(seed):
    """derivations/gaussian.hg (in Sigma) and gaussian_cholesky.hg (through L): every line
    verified, and between them every problem linked: their read-offs are the gradient fit
    uses and hess mu its block of hessian(), their d2l is dP' H dP with hessian(), at
    Sigma points and at L points, with mu a parameter or held at xbar."""
    from handgrad.verify import in_notation
    spec = ENTRY.derivation
    linked = []
    for one in spec.notation:
        rep = in_notation.derive(ENTRY, one, spec.module, _problems(seed), seed=seed)
        assert rep["verdict"] == "verified" and rep["link"]["ok"], (one.file, rep["link"]["rows"])
        rows = {r["line"].split(" = ")[0] for r in rep["link"]["rows"]}
        assert rows == {"l", "grad mu", "d2l", "hess mu"} | {f"grad {v}" for v in rep["wrt"]}, rows
        linked += rep["link"]["problems"]
    assert sorted(linked) == sorted(p[0] for p in _problems(seed))


def _edited(tmp_path, file, old, new):
    """derive gaussian's report of a copy of derivations/<file> with `old` replaced."""
    return derive_edited_notation(ENTRY, tmp_path, file, old, new, _problems(0))


@pytest.mark.parametrize("file,old,new,kind", [
    # the sign of dS's term: d tr(Sigma^-1 S) = ... + tr(Sigma^-1 dS), written with a minus
    ("gaussian_cholesky.hg", "+ tr(inv(Sigma)*(dC'*C + C'*dC))/N",
     "- tr(inv(Sigma)*(dC'*C + C'*dC))/N", "line"),
    # the product rule with one half: dSigma = dL L' (L dL' dropped)
    ("gaussian_cholesky.hg", "tr(G*(dL*L' + L*dL'))", "tr(G*(dL*L'))", "line"),
    # d(Sigma^-1) = -Sigma^-2 dSigma: true only when dSigma commutes with Sigma
    ("gaussian.hg", "- tr(inv(Sigma)*dSigma*inv(Sigma)*S)",
     "- tr(inv(Sigma)*inv(Sigma)*dSigma*S)", "line"),
    # a factor 2 lost in the mean's read-off
    ("gaussian.hg", "grad mu = -2*inv(Sigma)*C'*vector(1)/N",
     "grad mu = -inv(Sigma)*C'*vector(1)/N", "readoff"),
    # tril dropped: right on the lower triangle (so the notation's check passes), but not
    # the gradient fit uses (zero above the diagonal): the link fails
    ("gaussian_cholesky.hg", "grad L = tril(2*G*L)", "grad L = 2*G*L", "link"),
])
def test_a_planted_mistake_in_the_notation_files_is_caught(tmp_path, file, old, new, kind):
    rep = _edited(tmp_path, file, old, new)
    assert not rep["ok"]
    if kind == "link":
        assert rep["verdict"] == "verified"
        assert [r["line"].split(" = ")[0] for r in rep["link"]["rows"] if not r["ok"]] == ["grad L"]
    else:
        assert rep["verdict"] != "verified"
        wrong = rep["first_wrong"]["text"]
        assert new.split(" = ")[-1].strip() in wrong or wrong in new, (wrong, new)


def _line_of(file, old):
    """The line number of the one line of derivations/<file> that contains `old`."""
    from handgrad.verify import in_notation
    spec = ENTRY.derivation
    one = next(x for x in spec.notation if x.file == file)
    lines = open(in_notation.path_of(spec.module, one), encoding="utf-8").read().splitlines()
    hits = [i for i, ln in enumerate(lines, 1) if old in ln]
    assert len(hits) == 1, (old, hits)
    return hits[0]


@pytest.mark.parametrize("file,old,new", [
    # the sign of d2 log|Sigma| = -tr(Sigma^-1 dSigma Sigma^-1 dSigma) slipped
    ("gaussian.hg", "d2l = -tr(inv(Sigma)*dSigma*inv(Sigma)*dSigma) +",
     "d2l = tr(inv(Sigma)*dSigma*inv(Sigma)*dSigma) +"),
    # d2S = 0: forgetting that S moves with mu twice (S is quadratic in C)
    ("gaussian.hg", "*dS) + 2*tr(inv(Sigma)*dC'*dC)/N   # differentiate",
     "*dS)   # differentiate"),
    # dS written out as 2 C' dC/N but the 2 of the two equal transposed halves lost
    ("gaussian.hg", "- 4*tr(inv(Sigma)*dSigma*inv(Sigma)*C'*dC)/N",
     "- 2*tr(inv(Sigma)*dSigma*inv(Sigma)*C'*dC)/N"),
    # d2Sigma = 0 used through L, where Sigma = L L' is quadratic: d2Sigma = 2 dL dL'
    ("gaussian_cholesky.hg",
     "+ 2*tr(inv(Sigma)*dL*dL') + 2*tr(inv(Sigma)*dSigma*inv(Sigma)*dSigma*inv(Sigma)*S) "
     "- 2*tr(inv(Sigma)*dL*dL'*inv(Sigma)*S)",
     "+ 2*tr(inv(Sigma)*dSigma*inv(Sigma)*dSigma*inv(Sigma)*S)"),
    # dSigma written out with one half: dL L' (L dL' dropped)
    ("gaussian_cholesky.hg", "= tr((dL*L' + L*dL')*inv(Sigma)*(dL*L' + L*dL')*(inv(Sigma) - 2*G))",
     "= tr((dL*L')*inv(Sigma)*(dL*L' + L*dL')*(inv(Sigma) - 2*G))"),
])
def test_a_planted_mistake_in_the_second_differential_fails_at_that_line(tmp_path, file, old, new):
    """Each d2l line is checked on its own against the second directional derivative of l:
    a slip fails there, the lines above it keep their marks."""
    lineno = _line_of(file, old)
    rep = _edited(tmp_path, file, old, new)
    assert not rep["ok"] and rep["verdict"] == "failed"
    assert rep["first_wrong"]["source"].endswith(f"{file}:{lineno}"), rep["first_wrong"]
    assert rep["first_wrong"]["lhs"] == "d2l"
    rows = rep["lines"] + rep["readoff"]
    above = [r for r in rows if int(r["source"].rsplit(":", 1)[1]) < lineno]
    assert above and all(r["verdict"] == "verified" for r in above)
    assert not any(r["ok"] for r in rep["link"]["rows"] if r["line"].startswith("d2l"))


@pytest.mark.parametrize("file", ["gaussian.hg", "gaussian_cholesky.hg"])
def test_hess_mu_without_its_factor_2_fails_the_read_off_and_the_link(tmp_path, file):
    rep = _edited(tmp_path, file, "hess mu = 2*inv(Sigma)", "hess mu = inv(Sigma)")
    (hess,) = [r for r in rep["readoff"] if r["lhs"] == "hess mu"]
    assert hess["verdict"] == "failed" and rep["first_wrong"]["lhs"] == "hess mu"
    assert [r["lhs"] for r in rep["lines"] + rep["readoff"] if r["verdict"] != "verified"] == ["hess mu"]
    assert [r["line"].split(" = ")[0] for r in rep["link"]["rows"] if not r["ok"]] == ["hess mu"]


def test_a_wrong_fitted_hessian_fails_the_link_not_the_derivation():
    """Printed = fitted for the Hessian: the d2l lines stay true, but with the fitted
    Hessian missing S_mu's dependence on mu (the -Si dS_mu Si term) dP' H dP is not d2l
    where mu is a parameter, and hessian() x 2 fails hess mu as well."""
    from handgrad.verify import in_notation
    spec = ENTRY.derivation
    for hessian, bad_rows in [(_h_without_dS_mu, ["d2l"]),
                              (lambda P, D, **hp: 2 * dg.hessian(P, D, **hp), ["d2l", "hess mu"])]:
        entry = dataclasses.replace(ENTRY, derivation=dataclasses.replace(spec, hessian=hessian))
        for one in spec.notation:
            rep = in_notation.derive(entry, one, spec.module, _problems(0))
            assert rep["verdict"] == "verified" and not rep["ok"], one.file
            rows = {r["line"].split(" = ")[0]: r for r in rep["link"]["rows"]}
            assert [k for k, r in rows.items() if not r["ok"]] == bad_rows, (one.file, rows)
            failed_at = {f["problem"] for f in rows["d2l"]["failures"]}
            mu_problems = {lab for lab, p, _, _ in _problems(0) if "mu" in p} & set(rep["link"]["problems"])
            if hessian is _h_without_dS_mu:
                assert failed_at == mu_problems, (failed_at, mu_problems)


def test_the_link_draws_directions_where_sigma_and_l_live(monkeypatch):
    """hessian() is a Hessian on symmetric Sigma and lower-triangular L (it symmetrises
    dSigma and reads tril(dL)); the file's l reads every entry.  So d2l = dP' H dP holds
    along symmetric dSigma and lower-triangular dL, the directions the link draws, and
    fails along unconstrained ones: the check is not vacuous."""
    import handgrad.notation.sampling as sampling
    from handgrad.verify import in_notation

    spec = ENTRY.derivation
    for one in spec.notation:
        rep = in_notation.derive(ENTRY, one, spec.module, _problems(0))
        assert rep["ok"], one.file
    real = sampling.draw_direction
    monkeypatch.setattr(sampling, "draw_direction",  # as if undeclared: randn, every entry
                        lambda decl, value, gen: real(dataclasses.replace(decl, props=frozenset()),
                                                      value, gen))
    for one in spec.notation:
        d = in_notation.parse(spec.module, one)
        link = in_notation.link(ENTRY, one, d, _problems(0))
        rows = {r["line"].split(" = ")[0]: r for r in link["rows"]}
        assert not rows["d2l"]["ok"], one.file
        assert all(r["ok"] for k, r in rows.items() if k != "d2l")


@settings(max_examples=20, deadline=None)
@given(d=st.integers(1, 5), extra=st.integers(1, 8), with_mu=st.booleans(),
       l2=st.sampled_from([0.0, 0.25]), seed=st.integers(0, 10_000))
def test_sigma_gradient_is_the_symmetric_convention(d, extra, with_mu, l2, seed):
    """dl/dSigma = Sigma^-1 - Sigma^-1 S Sigma^-1, symmetric, equal to autograd of the loss
    (which reads sym(Sigma)) and to entry-wise central differences."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(d + extra, d, generator=g, dtype=torch.float64)
    data = Data(X)
    p = {"mu": torch.randn(d, generator=g, dtype=torch.float64)} if with_mu else {}
    p["Sigma"] = _spd(d, g)
    G = dg.gradient(p, data, l2=l2)
    torch.testing.assert_close(G["Sigma"], G["Sigma"].T, rtol=0, atol=1e-13)
    auto = torch.func.grad(lambda P: mg.loss(P, data, l2=l2))(p)
    for k in p:
        torch.testing.assert_close(G[k], auto[k], rtol=1e-9, atol=1e-10)
    # the formula itself, written out with explicit inverses (fine in a test)
    mu = p["mu"] if with_mu else X.mean(0)
    S = (X - mu).T @ (X - mu) / len(X) + l2 * torch.eye(d, dtype=torch.float64)
    Si = torch.linalg.inv(p["Sigma"])
    torch.testing.assert_close(G["Sigma"], Si - Si @ S @ Si, rtol=1e-9, atol=1e-10)


def test_entry_wise_finite_difference_sees_half_of_each_off_diagonal_pair():
    """Perturbing Sigma_01 alone moves sym(Sigma)_01 and _10 by h/2: the derivative is
    (G_01 + G_10)/2 = G_01, not 2 G_01 (the lower-triangle convention)."""
    g = torch.Generator().manual_seed(5)
    X = torch.randn(9, 3, generator=g, dtype=torch.float64)
    data = Data(X)
    p = {"Sigma": _spd(3, g)}
    G = dg.gradient(p, data)["Sigma"]
    h = 1e-6
    E = torch.zeros(3, 3, dtype=torch.float64)
    E[0, 1] = h
    fd = (mg.loss({"Sigma": p["Sigma"] + E}, data) - mg.loss({"Sigma": p["Sigma"] - E}, data)) / (2 * h)
    assert fd.item() == pytest.approx(G[0, 1].item(), rel=1e-6)
    assert abs(fd.item() - 2 * G[0, 1].item()) > 1e-3 * abs(G[0, 1].item())


def test_cholesky_gradient_formula():
    """dl/dL = tril(2 G L), G = Sigma^-1 - Sigma^-1 S Sigma^-1 with Sigma = L L^T."""
    g = torch.Generator().manual_seed(2)
    X = torch.randn(12, 4, generator=g, dtype=torch.float64)
    data = Data(X)
    L = torch.linalg.cholesky(_spd(4, g))
    p = {"mu": torch.randn(4, generator=g, dtype=torch.float64), "L": L}
    GL = dg.gradient(p, data)
    Gs = dg.gradient({"mu": p["mu"], "Sigma": L @ L.T}, data)
    torch.testing.assert_close(GL["L"], torch.tril(2 * Gs["Sigma"] @ L))
    torch.testing.assert_close(GL["mu"], Gs["mu"])
    assert (torch.triu(GL["L"], 1) == 0).all()
    assert all(v.grad_fn is None for v in GL.values())


# ---- planted wrong derivatives ---------------------------------------------------------

def _with(fn):
    return DerivationSpec(None, fn)


def _g_lower_triangle_convention(P, D, **hp):
    g = dg.gradient(P, D, **hp)
    if "Sigma" in g:
        G = g["Sigma"]
        g["Sigma"] = 2 * G - torch.diag(torch.diagonal(G))
    return g


def _g_unsymmetric_order(P, D, *, l2=0.0, **_):  # Sigma^-1 - S Sigma^-2 (order of products)
    g = dg.gradient(P, D, l2=l2)
    if "Sigma" in g:
        Si = torch.cholesky_inverse(torch.linalg.cholesky(P["Sigma"]))
        g["Sigma"] = Si - dg._S(P, D, l2) @ Si @ Si
    return g


def _g_L_missing_two(P, D, **hp):
    g = dg.gradient(P, D, **hp)
    if "L" in g:
        g["L"] = g["L"] / 2
    return g


def _g_L_unmasked(P, D, *, l2=0.0, **_):  # 2 G L without tril: upper entries are not free
    g = dg.gradient(P, D, l2=l2)
    if "L" in g:
        L = torch.tril(P["L"])
        g["L"] = 2 * dg._G({**P}, D, l2) @ L
    return g


def _g_mu_sign(P, D, **hp):
    g = dg.gradient(P, D, **hp)
    if "mu" in g:
        g["mu"] = -g["mu"]
    return g


def _g_seed_without_mean(P, D, *, l2=0.0, **_):  # S about 0 instead of about mu / xbar
    g = dg.gradient(P, D, l2=l2)
    if "Sigma" in g:
        Si = torch.cholesky_inverse(torch.linalg.cholesky(P["Sigma"]))
        S0 = D.X.T @ D.X / D.n + l2 * torch.eye(D.d, dtype=D.X.dtype)
        g["Sigma"] = Si - Si @ S0 @ Si
    return g


@pytest.mark.parametrize("fn,kind", [
    (_g_lower_triangle_convention, "Sigma"), (_g_unsymmetric_order, "Sigma"),
    (_g_L_missing_two, "L"), (_g_L_unmasked, "L"), (_g_mu_sign, "mu"),
    (_g_seed_without_mean, "Sigma"),
], ids=["2G-diagG", "S-Sigma^-2", "dL-half", "dL-unmasked", "mu-sign", "S-about-0"])
def test_planted_wrong_gradient_fails(fn, kind):
    verdicts = []
    for label, p, data, hp in _problems(1):
        if kind not in p:
            continue
        rep = checker.check_problem(ENTRY, label, p, data, hp, seed=1, dtype=torch.float64,
                                    derivation=_with(fn))
        verdicts.append(rep.ok)
        if not rep.ok:
            bad = [c for c in rep.comparisons if not c.ok]
            assert {c.hand_vs for c in bad} == {"autograd", "fd"}  # the references agree
            assert bad[0].worst["parameter"] == kind
    assert verdicts and not any(verdicts)


# ---- closed form, numerics, faults -----------------------------------------------------

@pytest.mark.parametrize("path,features,target", [(IRIS, MEASUREMENTS, None),
                                                  (WINE, None, "cultivar")],
                         ids=["iris", "wine"])
def test_closed_form_equals_numpy_cov_on_shipped_data(path, features, target):
    data = load(path, target, features, needs_target=False)
    data.y = None  # wine: the cultivar column is excluded from the features, not modelled
    params, _ = mg.closed_form(data)
    C = np.cov(data.X.numpy(), rowvar=False, bias=True)
    S = params["Sigma"].numpy()
    assert np.max(np.abs(S - C) / np.abs(C)) < 1e-12
    np.testing.assert_allclose(params["mu"].numpy(), data.X.numpy().mean(0), rtol=1e-14)
    g = flatten(dg.gradient(params, data))
    assert g.abs().max().item() < 1e-8 * max(1.0, torch.linalg.cond(params["Sigma"]).item())


def test_gradient_descent_through_L_reaches_the_closed_form():
    data, truth = mg.synthetic(n=400, d=3, seed=4)
    p0 = mg.init_params(data)
    assert set(p0) == {"mu", "L"}
    res = solvers.gradient_descent(solvers.Objective(ENTRY, data, p0, {}), flatten(p0),
                                   tol=1e-9, max_iter=20000)
    assert res.converged
    closed, _ = mg.closed_form(data)
    est = mg.estimate(res.params)
    torch.testing.assert_close(est["Sigma"], closed["Sigma"], rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(est["mu"], closed["mu"], rtol=1e-7, atol=1e-8)
    # the estimate is near the truth the data were drawn from
    assert (closed["Sigma"] - truth["Sigma"]).abs().max().item() < 0.25


def test_no_det_no_underflow_in_high_dimension():
    """det(0.1 I_400) = 1e-400 underflows to 0 in float64; the Cholesky loss does not."""
    d = 400
    X = torch.randn(d + 50, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.linalg.det(0.1 * torch.eye(d, dtype=torch.float64)).item() == 0.0
    p = {"mu": torch.zeros(d, dtype=torch.float64), "Sigma": 0.1 * torch.eye(d, dtype=torch.float64)}
    val = mg.loss(p, Data(X)).item()
    expect = d * math.log(0.1) + 10.0 * (X * X).sum().item() / len(X)
    assert val == pytest.approx(expect, rel=1e-12)


def test_held_out_log_likelihood_matches_scipy():
    from scipy.stats import multivariate_normal

    g = torch.Generator().manual_seed(3)
    X = torch.randn(20, 3, generator=g, dtype=torch.float64)
    mu, Sigma = torch.randn(3, generator=g, dtype=torch.float64), _spd(3, g)
    for p in ({"mu": mu, "Sigma": Sigma}, {"mu": mu, "L": torch.linalg.cholesky(Sigma)}):
        ev = mg.evaluate(p, Data(X))
        ref = multivariate_normal(mu.numpy(), Sigma.numpy()).logpdf(X.numpy()).mean()
        assert ev["log_likelihood"] == pytest.approx(ref, rel=1e-12)


def test_non_positive_definite_sigma_gives_infinite_loss():
    X = torch.randn(5, 2, dtype=torch.float64)
    p = {"Sigma": torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)}
    assert math.isinf(mg.loss(p, Data(X)).item())


def test_singular_data_is_named_with_a_shrinkage_remedy():
    X = torch.randn(3, 5, dtype=torch.float64)
    with pytest.raises(UserError, match=r"n = 3 samples <= d = 5.*shrinkage"):
        mg.closed_form(Data(X))
    X = torch.randn(20, 3, dtype=torch.float64)
    X[:, 1] = 4.0
    with pytest.raises(UserError, match=r"Column 'x1' is constant.*shrinkage"):
        mg.init_params(Data(X))
    X = torch.randn(20, 3, dtype=torch.float64)
    X[:, 2] = X[:, 0] - 2 * X[:, 1]
    with pytest.raises(UserError, match="linearly dependent"):
        mg.closed_form(Data(X))
    # with shrinkage the estimate exists: S + l2 I
    p, _ = mg.closed_form(Data(X), l2=0.1)
    Xc = X - X.mean(0)
    torch.testing.assert_close(p["Sigma"], Xc.T @ Xc / 20 + 0.1 * torch.eye(3, dtype=torch.float64))
    assert flatten(dg.gradient(p, Data(X), l2=0.1)).abs().max().item() < 1e-10


# ---- the command line ------------------------------------------------------------------

def test_cli_fit_synthetic_closed_form(runner):
    res, out = invoke(runner, "fit", "gaussian", "--device", "cpu", "--json")
    assert res.exit_code == 0, res.stderr
    assert out["solver"] == "closed" and out["converged"] and out["grad_norm"] < 1e-10
    Sigma, true = torch.tensor(out["estimate"]["Sigma"]), torch.tensor(out["true_params"]["Sigma"])
    assert (Sigma - true).abs().max().item() < 0.15
    assert "held_out" not in out and out["train"]["n"] == 2000


def test_cli_gd_and_closed_agree_on_iris(runner):
    base = ["--data", IRIS, "--features", ",".join(MEASUREMENTS), "--device", "cpu", "--json",
            "--test-fraction", "0.2"]
    r1, closed = invoke(runner, "fit", "gaussian", *base)
    r2, gd = invoke(runner, "fit", "gaussian", "--solver", "gd", "--max-iter", "20000", *base)
    assert r1.exit_code == 0 and r2.exit_code == 0, (r1.stderr, r2.stderr)
    assert gd["converged"] and set(gd["params"]) == {"mu", "L"}
    np.testing.assert_allclose(gd["estimate"]["Sigma"], closed["estimate"]["Sigma"], rtol=1e-6,
                               atol=1e-8)
    assert closed["held_out"]["n"] == 30
    assert gd["held_out"]["log_likelihood"] == pytest.approx(closed["held_out"]["log_likelihood"],
                                                             rel=1e-6)


def test_cli_singular_data_exit_2(runner, tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("a,b,c\n1,5,2\n2,5,3\n4,5,1\n3,5,0\n")
    res, out = invoke(runner, "fit", "gaussian", "--data", str(f), "--json")
    assert res.exit_code == 2
    assert "'b' is constant" in out["error"] and "shrinkage" in out["error"]
    res, out = invoke(runner, "fit", "gaussian", "--data", str(f), "--l2", "0.5", "--json")
    assert res.exit_code == 0 and out["converged"]


def test_shipped_config_runs(runner):
    res, out = invoke(runner, "run", os.path.join(ROOT, "configs", "gaussian_iris.toml"),
                      "--device", "cpu", "--json")
    assert res.exit_code == 0, res.stderr
    assert out["data"]["d"] == 4 and out["held_out"]["n"] == 30
    assert math.isfinite(out["held_out"]["log_likelihood"])


# ---- the Hessian ----------------------------------------------------------------------

def _h_without_dS_mu(P, D, *, l2=0.0, **_):
    """Planted: forgets that S_mu moves with mu (the -Si dS_mu Si term)."""
    from handgrad.params import unflatten

    x = flatten(P)
    cols = []
    for j in range(x.numel()):
        e = torch.zeros_like(x)
        e[j] = 1.0
        dP = unflatten(e, P)
        g = dg.dgradient(P, D, dP, l2=l2)
        if "mu" in P:  # add back +Si dS Si, i.e. remove the term
            Si = torch.cholesky_inverse(dg._chol(P))
            r = dg._xbar_minus_mu(P, D)
            dS = -(torch.outer(dP["mu"], r) + torch.outer(r, dP["mu"]))
            extra = Si @ dS @ Si
            if "Sigma" in g:
                g["Sigma"] = g["Sigma"] + extra
            else:
                g["L"] = g["L"] + torch.tril(2 * extra @ torch.tril(P["L"]))
        cols.append(flatten(g))
    return torch.stack(cols, 1)


def test_planted_wrong_hessian_fails_where_mu_is_a_parameter():
    planted = DerivationSpec(None, dg.gradient, _h_without_dS_mu)
    for label, p, data, hp in _problems(0):
        rep = checker.check_problem(ENTRY, label, p, data, hp, seed=0, dtype=torch.float64,
                                    derivation=planted)
        bad = [c for c in rep.comparisons if not c.ok]
        if "mu" in p:
            assert bad and all(c.quantity == "hessian" for c in bad), label
        else:
            assert not bad, label


def test_hessian_is_positive_definite_at_the_closed_form_in_sigma():
    """At mu = xbar, Sigma = S the Hessian in (mu, Sigma) is PD on symmetric directions
    (the MLE is a strict minimum there)."""
    data, _ = mg.synthetic(n=300, d=3, seed=1)
    p, _ = mg.closed_form(data)
    H = dg.hessian(p, data)
    d = 3
    # basis of (mu, symmetric Sigma) directions: d + d(d+1)/2 of them
    B = []
    for i in range(d):
        v = torch.zeros(d + d * d, dtype=torch.float64)
        v[i] = 1.0
        B.append(v)
    for i in range(d):
        for j in range(i, d):
            v = torch.zeros(d + d * d, dtype=torch.float64)
            v[d + i * d + j] = v[d + j * d + i] = 1.0
            B.append(v)
    B = torch.stack(B, 1)
    assert torch.linalg.eigvalsh(B.T @ H @ B).min().item() > 1e-6
