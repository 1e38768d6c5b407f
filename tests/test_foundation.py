"""The foundation: two models, the three-way checker, the solvers, the CLI contract."""

from __future__ import annotations

import dataclasses
import glob
import json
import math

import handgrad.derivations.least_squares as dls
import handgrad.derivations.logistic as dlog
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from handgrad import registry
from handgrad.contract import DerivationSpec
from handgrad.fitting import solvers
from handgrad.fitting.data import Data
from handgrad.params import flatten
from handgrad.verify import checker
from tests.conftest import invoke

LINEAR = ["least_squares", "logistic"]


@pytest.mark.parametrize("name", LINEAR)
def test_three_way_check_passes(name):
    reps = checker.check_entry(registry.get(name), seeds=(0, 1, 2))
    assert reps and all(r.ok for r in reps)
    kinds = {(c.quantity, c.hand_vs) for c in reps[0].comparisons}
    assert kinds == {(q, v) for q in ("gradient", "hessian")
                     for v in ("autograd", "fd", "autograd_vs_fd")} | {("loss", "model")}


# --- values computed by hand -------------------------------------------------------------

def test_least_squares_values_by_hand():
    X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    data = Data(X, torch.tensor([1.0, 1.0], dtype=torch.float64))
    P = {"w": torch.tensor([1.0, 0.0], dtype=torch.float64)}
    # r = Xw - y = [0, 2]; l = 4; grad = 2 X^T r = [12, 16]; H = 2 X^T X
    assert registry.get("least_squares").loss(P, data).item() == 4.0
    assert dls.gradient(P, data)["w"].tolist() == [12.0, 16.0]
    H = torch.tensor([[20.0, 28.0], [28.0, 40.0]], dtype=torch.float64)  # 2 X^T X
    torch.testing.assert_close(dls.hessian(P, data), H)


def test_logistic_values_by_hand():
    X = torch.tensor([[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    P = {"w": torch.zeros(2, dtype=torch.float64), "b": torch.tensor(0.0, dtype=torch.float64)}
    data = Data(X, y)
    # at A = 0: p = 1/2, l = 3 log 2, grad = X^T (1/2 - y), d l/db = 3/2 - 2, H = X_a^T X_a / 4
    assert registry.get("logistic").loss(P, data).item() == pytest.approx(3 * math.log(2), 1e-15)
    g = dlog.gradient(P, data)
    # p - y = [-1/2, 1/2, -1/2]: X^T (p - y) = [-1/2 + 1/4 - 1, 1 + 3/2 - 1/2]
    assert g["w"].tolist() == pytest.approx([-1.25, 2.0], abs=1e-15)
    assert g["b"].item() == pytest.approx(-0.5, abs=1e-15)
    H = dlog.hessian(P, data)
    assert H[0, 0].item() == pytest.approx((1 + 0.25 + 4) / 4)
    assert H[0, 2].item() == pytest.approx(3.5 / 4)
    assert H[2, 2].item() == pytest.approx(3 / 4)


# --- the checker must fail on wrong derivations -----------------------------------------

def _planted(module, **overrides):
    return dataclasses.replace(DerivationSpec(None, module.gradient, module.hessian), **overrides)


def _first_failure(name, planted):
    entry = registry.get(name)
    label, P, D, hp = entry.model.check_problems(0)[0]
    rep = checker.check_problem(entry, label, P, D, hp, seed=0, dtype=torch.float64,
                                derivation=planted)
    return rep, [c for c in rep.comparisons if not c.ok]


def test_planted_missing_factor_two_fails():
    def grad_missing_2(P, D, **hp):  # X^T r instead of 2 X^T r
        g = dls.gradient(P, D, **hp)
        return {k: v / 2 for k, v in g.items()}
    rep, bad = _first_failure("least_squares", _planted(dls, gradient=grad_missing_2))
    assert not rep.ok
    assert {(c.quantity, c.hand_vs) for c in bad} == {("gradient", "autograd"), ("gradient", "fd")}
    w = bad[0].worst
    assert w["parameter"] in ("w", "b") and w["abs_err"] > w["tol"]
    assert w["hand"] == pytest.approx(w["reference"] / 2, rel=1e-9)


def test_planted_transposed_factor_fails():
    # the notes' shape slip: (X X^T)-style transposition, here r^T X read as X r on a square block
    def grad_transposed(P, D, **hp):
        e = torch.sigmoid(D.X @ P["w"] + P.get("b", 0.0)) - D.y
        X = D.X[: D.d, : D.d] if D.n >= D.d else D.X
        g = {"w": torch.cat([X @ e[: X.shape[1]], D.X.new_zeros(D.d - X.shape[0])])}
        if "b" in P:
            g["b"] = e.sum()
        return g
    rep, bad = _first_failure("logistic", _planted(dlog, gradient=grad_transposed))
    assert not rep.ok and any(c.quantity == "gradient" for c in bad)


def test_planted_wrong_hessian_fails_and_names_entry():
    from handgrad.fitting.sums import LinearLoss

    def naive_pieces(z, y, grad=True, hess=True, value=True):  # p instead of p(1 - p)
        lz, e, _ = dlog.per_sample(z, y, grad, hess, value)
        return lz, e, torch.sigmoid(z) if hess else None
    hess_naive_weights = LinearLoss(naive_pieces).hessian
    rep, bad = _first_failure("logistic", _planted(dlog, hessian=hess_naive_weights))
    assert [c.hand_vs for c in bad] == ["autograd", "fd"]
    assert all(c.quantity == "hessian" for c in bad)
    assert bad[0].worst["parameter"].startswith("H[")


def test_planted_wrong_shape_is_reported():
    def grad_wrong_shape(P, D, **hp):
        g = dls.gradient(P, D, **hp)
        g["w"] = g["w"][:-1]
        return g
    rep, bad = _first_failure("least_squares", _planted(dls, gradient=grad_wrong_shape))
    assert bad and "shape mismatch" in bad[0].worst["message"]


def test_hand_derivatives_carry_no_graph():
    for name in LINEAR:
        entry = registry.get(name)
        _, P, D, hp = entry.model.check_problems(0)[0]
        P = {k: v.requires_grad_(True) for k, v in P.items()}
        with torch.no_grad():
            g = entry.gradient(P, D, **hp)
            H = entry.hessian(P, D, **hp)
        assert all(v.grad_fn is None for v in g.values()) and H.grad_fn is None


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 20), d=st.integers(1, 6), seed=st.integers(0, 10_000),
       scale=st.sampled_from([1e-3, 1.0, 30.0]), intercept=st.booleans(),
       l2=st.sampled_from([0.0, 0.5]))
def test_gradient_and_hessian_match_autograd_hypothesis(n, d, seed, scale, intercept, l2):
    g = torch.Generator().manual_seed(seed)
    X = scale * torch.randn(n, d, generator=g, dtype=torch.float64)
    for name in LINEAR:
        entry = registry.get(name)
        y = torch.randn(n, generator=g, dtype=torch.float64)
        if name == "logistic":
            y = (y > 0).to(torch.float64)
        D = Data(X, y)
        P = {"w": torch.randn(d, generator=g, dtype=torch.float64)}
        if intercept:
            P["b"] = torch.randn((), generator=g, dtype=torch.float64)
        x0 = flatten(P)

        def f(x, P=P, D=D, entry=entry):
            from handgrad.params import unflatten
            return entry.loss(unflatten(x, P), D, l2=l2)
        ga = torch.func.grad(f)(x0)
        gh = flatten(entry.gradient(P, D, l2=l2))
        torch.testing.assert_close(gh, ga, rtol=1e-9, atol=1e-9 * max(1.0, ga.abs().max().item()))
        Ha = torch.func.hessian(f)(x0)
        Hh = entry.hessian(P, D, l2=l2)
        torch.testing.assert_close(Hh, Ha, rtol=1e-9, atol=1e-9 * max(1.0, Ha.abs().max().item()))


def test_hessian_matches_hessian_vector_product():
    entry = registry.get("logistic")
    data, _ = entry.model.synthetic(n=300, d=4, seed=3)
    P = {"w": 0.3 * torch.ones(4, dtype=torch.float64), "b": torch.tensor(0.1, dtype=torch.float64)}
    v = {"w": torch.linspace(-1, 1, 4, dtype=torch.float64), "b": torch.tensor(0.7, dtype=torch.float64)}
    _, hvp = torch.func.jvp(torch.func.grad(lambda p: entry.loss(p, data)), (P,), (v,))
    torch.testing.assert_close(entry.hessian(P, data) @ flatten(v), flatten(hvp))


# --- solvers ------------------------------------------------------------------------------

def _fit(name, solver, data, intercept=True, l2=0.0, **kw):
    entry = registry.get(name)
    P0 = entry.model.init_params(data, intercept=intercept)
    obj = solvers.Objective(entry, data, P0, {"l2": l2})
    return solvers.SOLVERS[solver](obj, flatten(P0), **kw)


def test_newton_logistic_converges_quadratically_and_recovers_truth():
    entry = registry.get("logistic")
    data, truth = entry.model.synthetic()
    res = _fit("logistic", "newton", data)
    assert res.converged and res.iterations <= 10 and res.grad_norm < 1e-8
    g = [h["grad_norm"] for h in res.history]
    # quadratic convergence: g_{k+1} <= C g_k^2 over the last steps that are above round-off
    tail = [(a, b) for a, b in zip(g, g[1:]) if a < 1.0 and b > 1e-12]
    assert tail and all(b <= 10 * a * a for a, b in tail)
    H = entry.hessian(res.params, data)
    se = torch.linalg.inv(H).diagonal().sqrt()
    err = flatten(res.params) - flatten(truth)
    assert (err.abs() <= 4 * se).all(), (err, se)


@pytest.mark.parametrize("intercept,l2", [(True, 0.0), (False, 0.0), (True, 3.0)])
def test_least_squares_solvers_agree(intercept, l2):
    entry = registry.get("least_squares")
    data, _ = entry.model.synthetic(n=400, d=6, seed=5)
    closed, _ = entry.model.closed_form(data, intercept=intercept, l2=l2)
    ref = flatten(closed)
    for solver in ("newton", "gd"):
        res = _fit("least_squares", solver, data, intercept=intercept, l2=l2, tol=1e-9)
        assert res.converged, solver
        rel = (flatten(res.params) - ref).norm() / ref.norm()
        assert rel < 1e-8, (solver, rel.item())


def test_newton_warns_and_falls_back_on_collinear_columns():
    entry = registry.get("logistic")
    data, _ = entry.model.synthetic(n=500, d=2, seed=1)
    data.X = torch.cat([data.X, data.X[:, :1]], dim=1)  # x1, x2, x1
    with pytest.warns(RuntimeWarning, match="Cholesky failed"):
        res = _fit("logistic", "newton", data)
    assert res.warnings and "iteration" in res.warnings[0] and "--l2" in res.warnings[0]
    assert res.converged
    # with L2 the Hessian is positive definite: no fallback needed
    res2 = _fit("logistic", "newton", data, l2=1.0)
    assert res2.converged and not res2.warnings


def test_solvers_share_signature_and_callback():
    entry = registry.get("least_squares")
    data, _ = entry.model.synthetic(n=100, d=3)
    seen = []
    for solver in solvers.SOLVERS:
        if solver not in entry.solvers:
            continue
        res = _fit("least_squares", solver, data, callback=lambda k, h: seen.append((solver, k)))
        assert isinstance(res, solvers.FitResult) and res.history
        assert {"loss", "grad_norm", "step"} <= set(res.history[0])
    assert {s for s, _ in seen} >= {"newton", "gd"}


# --- CLI and JSON contract ----------------------------------------------------------------

def test_cli_list(runner):
    r, out = invoke(runner, "list", "--json")
    assert r.exit_code == 0
    assert {m["name"] for m in out["models"]} >= set(LINEAR)


def test_list_reads_the_same_as_the_loaded_contract_and_imports_no_torch():
    """list reads each pair's constants from source: the same rows as loading the modules
    through the contract, and no torch import (what makes it start fast)."""
    import subprocess
    import sys

    from handgrad import registry
    assert registry.describe() == registry.describe(load_models=True)
    code = ("import sys; from click.testing import CliRunner; from handgrad.cli import main; "
            "r = CliRunner().invoke(main, ['list']); assert r.exit_code == 0, r.output; "
            "print(r.output); print('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Logistic regression" in run.stdout and run.stdout.split()[-1] == "False"


def test_list_falls_back_to_loading_when_a_constant_is_not_a_literal(monkeypatch):
    import ast

    from handgrad import registry
    real = registry._module_ast

    def computed(modname):  # SOLVERS built by code: the source reader must not guess it
        tree = real(modname)
        if modname == "handgrad.models.logistic":
            tree = ast.parse(ast.unparse(tree).replace("SOLVERS = ('newton', 'gd')",
                                                       "SOLVERS = tuple(['newton', 'gd'])"))
        return tree
    monkeypatch.setattr(registry, "_module_ast", computed)
    assert registry._read_source("logistic") is None and registry._read_source("poisson") is not None
    assert registry.describe() == registry.describe(load_models=True)  # logistic's row loaded


def test_cli_check_json(runner):
    r, out = invoke(runner, "check", "logistic", "least_squares", "--json", "--seed", "1")
    assert r.exit_code == 0 and out["ok"] is True
    assert set(out["models"]) == {"logistic", "least_squares"}


def test_cli_fit_logistic_newton_json_contract(runner):
    r, out = invoke(runner, "fit", "logistic", "--newton", "--json")
    assert r.exit_code == 0, r.stderr
    for key in ("model", "solver", "device", "dtype", "converged", "iterations", "loss",
                "grad_norm", "seconds", "history", "coefficients", "std_errors"):
        assert key in out
    assert out["converged"] and out["iterations"] <= 10 and out["grad_norm"] < 1e-8
    assert out["solver"] == "newton" and out["derivatives"] == "hand"
    assert set(out["coefficients"]) == {f"x{j}" for j in range(5)} | {"intercept"}
    assert all({"loss", "grad_norm"} <= set(h) for h in out["history"])


def test_cli_fit_autograd_matches_hand(runner):
    _, hand = invoke(runner, "fit", "logistic", "--newton", "--json")
    _, auto = invoke(runner, "fit", "logistic", "--newton", "--autograd", "--json")
    assert auto["derivatives"] == "autograd"
    for k, v in hand["coefficients"].items():
        assert auto["coefficients"][k] == pytest.approx(v, rel=1e-10, abs=1e-12)


def test_cli_fit_csv_feature_names(runner, tmp_path):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 2, generator=g, dtype=torch.float64)
    y = 3 * X[:, 0] - X[:, 1] + 0.5 + 0.1 * torch.randn(200, generator=g, dtype=torch.float64)
    path = tmp_path / "d.csv"
    path.write_text("age,height,price\n" + "\n".join(
        f"{a},{b},{c}" for (a, b), c in zip(X.tolist(), y.tolist())))
    r, out = invoke(runner, "fit", "least_squares", "--data", path, "--target", "price", "--json")
    assert r.exit_code == 0, r.stderr
    assert set(out["coefficients"]) == {"age", "height", "intercept"}
    assert out["coefficients"]["age"] == pytest.approx(3, abs=0.05)
    assert set(out["std_errors"]) == set(out["coefficients"])


def test_cli_float32(runner):
    r, out = invoke(runner, "fit", "logistic", "--newton", "--dtype", "float32", "--json")
    assert r.exit_code == 0 and out["dtype"] == "float32" and out["converged"]


def test_cli_cuda_absent_is_a_clear_error(runner, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r, out = invoke(runner, "fit", "logistic", "--device", "cuda", "--json")
    assert r.exit_code == 2
    assert out["status"] == 2 and "CUDA is not available" in out["error"]
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_nonconvergence_exits_1(runner):
    r, out = invoke(runner, "fit", "logistic", "--solver", "gd", "--max-iter", "2", "--json")
    assert r.exit_code == 1 and out["converged"] is False
    assert "did not converge" in r.stderr


def test_cli_run_configs(runner):
    r, out = invoke(runner, "run", "configs/logistic_newton.toml", "--json")
    assert r.exit_code == 0 and out["converged"] and out["solver"] == "newton"
    r, out = invoke(runner, "run", "configs/least_squares.toml", "--json", "--device", "cpu")
    assert r.exit_code == 0 and out["solver"] == "closed" and out["device"] == "cpu"


def test_cli_run_rejects_unknown_key_listing_valid(runner, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('model = "logistic"\nlearning_speed = 3\n')
    r, _ = invoke(runner, "run", cfg)
    assert r.exit_code == 2
    assert "unknown key 'learning_speed'" in r.stderr and "solver" in r.stderr


def test_cli_run_flags_override_file(runner, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "logistic"\nsolver = "newton"\ndtype = "float64"\n')
    r, out = invoke(runner, "run", cfg, "--dtype", "float32", "--json")
    assert r.exit_code == 0 and out["dtype"] == "float32"


@pytest.mark.parametrize("path", sorted(glob.glob("configs/*_gpu.toml")))
def test_gpu_configs_ask_for_cuda_and_run_on_cpu_when_overridden(runner, path):
    from handgrad import config
    from handgrad.cli import _fit_key_types
    assert config.load(path, _fit_key_types())["device"] == "cuda"
    r, out = invoke(runner, "run", path, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert out["device"] == "cpu"


def test_json_output_is_one_object(runner):
    r, _ = invoke(runner, "fit", "least_squares", "--json")
    obj, end = json.JSONDecoder().raw_decode(r.stdout)  # exactly one document ...
    assert r.stdout[end:].strip() == ""  # ... and nothing else on stdout
    assert isinstance(obj, dict) and obj["model"] == "least_squares" and obj["converged"]
