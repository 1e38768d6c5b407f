"""fit --loss EXPR: a loss written as an expression, derived, verified, then fitted through the
one pipeline.  The reference for every coefficient is the built-in model's own fit of the same
data (fit logistic / least_squares / poisson), never this code's output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handgrad.fitting import expression, pipeline
from tests.conftest import invoke

LOGISTIC = "sum(log(vector(1) + exp(X*w))) - y'*X*w"
POISSON = "sum(exp(X*w)) - y'*X*w"
LEAST_SQUARES = ("norm2(X*w - y)^2", "(X*w-y)'*(X*w-y)")
TOL = 1e-10


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(abs(a[k] - b[k]) for k in a)


@pytest.fixture(scope="module")
def ls_csv(tmp_path_factory):
    """Seeded, well-conditioned least-squares data (the closed form is the reference)."""
    rng = np.random.default_rng(13)
    n, d = 400, 4
    X = rng.standard_normal((n, d))
    y = X @ np.array([1.5, -2.0, 0.25, 0.0]) + 0.7 + 0.3 * rng.standard_normal(n)
    path = tmp_path_factory.mktemp("ls") / "ls.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,c,e,y", comments="",
               fmt="%.17g")
    return str(path)


CASES = [  # (expression, built-in model, data, target, built-in solver)
    (LOGISTIC, "logistic", "data/anes96.csv", "vote", "newton"),
    (POISSON, "poisson", "data/randhie.csv", "mdvis", "newton"),
]


@pytest.mark.parametrize("chunk_rows", [None, 1000], ids=["memory", "chunks"])
@pytest.mark.parametrize("expr,model,path,target,solver", CASES, ids=["logistic", "poisson"])
def test_expression_fit_matches_builtin(expr, model, path, target, solver, chunk_rows):
    ref = pipeline.fit(model, data_path=path, target=target, solver=solver, device="cpu")
    out = expression.fit(expr, "w", data_path=path, target=target, solver="newton",
                         device="cpu", chunk_rows=chunk_rows)
    assert ref["converged"] and out["converged"]
    assert _max_diff(out["coefficients"], ref["coefficients"]) < TOL
    if chunk_rows:
        assert out["scale"]["chunk_rows"] == chunk_rows


@pytest.mark.parametrize("chunk_rows", [None, 64], ids=["memory", "chunks"])
@pytest.mark.parametrize("expr", LEAST_SQUARES, ids=["norm2", "quadratic"])
def test_least_squares_expression_matches_closed_form(ls_csv, expr, chunk_rows):
    ref = pipeline.fit("least_squares", data_path=ls_csv, target="y", device="cpu")  # QR
    out = expression.fit(expr, "w", data_path=ls_csv, target="y", solver="newton", device="cpu",
                         chunk_rows=chunk_rows)
    assert out["converged"]
    assert _max_diff(out["coefficients"], ref["coefficients"]) < TOL
    # the fitted loss is the expression's value: the residual sum of squares (numpy)
    A = np.loadtxt(ls_csv, delimiter=",", skiprows=1)
    c = ref["coefficients"]
    rss = float(((A[:, :4] @ np.array([c[k] for k in "abce"]) + c["intercept"] - A[:, 4]) ** 2).sum())
    assert out["loss"] == pytest.approx(rss, rel=1e-10)


def test_without_intercept_and_with_l2_match_builtin():
    kw = dict(data_path="data/anes96.csv", target="vote", solver="newton", device="cpu")
    for extra in ({"intercept": False}, {"l2": 2.5}):
        ref = pipeline.fit("logistic", **kw, **extra)
        out = expression.fit(LOGISTIC, "w", **kw, **extra)
        assert _max_diff(out["coefficients"], ref["coefficients"]) < TOL
    assert "intercept" not in expression.fit(LOGISTIC, "w", **kw, intercept=False)["coefficients"]


def test_streamed_npz_chunks_match_builtin(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 3))
    y = rng.poisson(np.exp(X @ np.array([0.3, -0.2, 0.1]) + 0.4)).astype(float)
    path = tmp_path / "counts.npz"
    np.savez(path, X=X, y=y)
    csv = tmp_path / "counts.csv"
    np.savetxt(csv, np.column_stack([X, y]), delimiter=",", header="x0,x1,x2,y", comments="",
               fmt="%.17g")
    ref = pipeline.fit("poisson", data_path=str(csv), target="y", solver="newton", device="cpu")
    out = expression.fit(POISSON, "w", data_path=str(path), solver="newton", device="cpu",
                         chunk_rows=500)
    assert out["data"]["source"].endswith("counts.npz")
    assert _max_diff(out["coefficients"], ref["coefficients"]) < TOL


def test_cli_fit_loss_json_matches_builtin(runner):
    args = ["--data", "data/anes96.csv", "--target", "vote", "--solver", "newton", "--json"]
    r, out = invoke(runner, "fit", "--loss", LOGISTIC, "--wrt", "w", *args)
    assert r.exit_code == 0, r.stderr
    _, ref = invoke(runner, "fit", "logistic", *args)
    assert _max_diff(out["coefficients"], ref["coefficients"]) < TOL
    le = out["loss_expression"]
    assert le["gradient"] == "X'*(sigma(X*w) - y)" and le["verdict"] == "verified"
    assert "column of ones" in le["intercept"]
    assert le["checked_at_data"]["ok"]
    # what it says is true: these derivatives were derived by handgrad, not written by hand
    assert out["derivatives"] == "handgrad-derived" and ref["derivatives"] == "hand"
    text, _ = invoke(runner, "fit", "--loss", LOGISTIC, *args[:-1])
    lines = text.stdout.splitlines()
    assert lines[2].startswith("fitted through z = X*w: ") and "grad z = sigma(z) - y" in lines[2]
    assert "with handgrad-derived derivatives" in lines[3]


def test_config_loss_key(runner, tmp_path):
    cfg = tmp_path / "pois.toml"
    cfg.write_text(f'loss = "{POISSON}"\nwrt = "w"\ndata = "{_abs("data/randhie.csv")}"\n'
                   'target = "mdvis"\nsolver = "newton"\ndevice = "cpu"\n')
    r, out = invoke(runner, "run", str(cfg), "--json")
    assert r.exit_code == 0, r.stderr
    ref = pipeline.fit("poisson", data_path="data/randhie.csv", target="mdvis", solver="newton",
                       device="cpu")
    assert _max_diff(out["coefficients"], ref["coefficients"]) < TOL
    both = tmp_path / "both.toml"
    both.write_text(f'model = "poisson"\nloss = "{POISSON}"\n')
    r, _ = invoke(runner, "run", str(both))
    assert r.exit_code == 2 and "not both" in r.stderr


def test_shipped_expression_config_matches_the_built_in_config(runner):
    r, out = invoke(runner, "run", "configs/poisson_randhie_expression.toml", "--json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    r, ref = invoke(runner, "run", "configs/poisson_randhie.toml", "--json", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert _max_diff(out["coefficients"], ref["coefficients"]) < TOL
    assert _max_diff(out["std_errors"], ref["std_errors"]) < 1e-6  # nll = true
    assert out["loss_expression"]["nll"] and out["summary"]["kind"] == "likelihood"
    assert out["derivatives"] != ref["derivatives"] == "hand"


def _abs(path: str) -> str:
    import os

    return os.path.abspath(path)


def test_out_of_scope_loss_is_one_line_exit_2(runner):
    r, _ = invoke(runner, "fit", "--loss", "sum(abs(X*w - y))", "--data", "data/anes96.csv",
                  "--target", "vote")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: --loss:") and len(r.stderr.strip().splitlines()) == 1
    r, _ = invoke(runner, "fit", "--loss", "sum(exp(X*v))", "--data", "data/anes96.csv",
                  "--target", "vote")
    assert r.exit_code == 2 and "unknown name 'v'" in r.stderr


def test_not_a_sum_over_rows_is_refused_in_chunks(runner):
    r, _ = invoke(runner, "fit", "--loss", "norm2(X*w - y)", "--data", "data/anes96.csv",
                  "--target", "vote", "--solver", "gd", "--chunk-rows", "100")
    assert r.exit_code == 2 and "is not: at a random point f(rows" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_planted_wrong_gradient_is_refused_before_any_fit(monkeypatch, runner):
    """A hand-edited derivation whose gradient has the wrong sign on y: the verifier names
    it and nothing is fitted (pipeline.fit is never reached), exit 1."""
    from handgrad.notation import auto

    real = auto.derive

    def planted(expr, let, wrt, hessian=False):
        hg, res = real(expr, let, wrt, hessian=hessian)
        wrong = hg.replace("grad w = X'*(sigma(X*w) - y)", "grad w = X'*(sigma(X*w) + y)")
        assert wrong != hg
        return wrong, res

    def no_fit(*a, **k):
        raise AssertionError("fitted with an unverified derivative")

    monkeypatch.setattr(auto, "derive", planted)
    monkeypatch.setattr(pipeline, "fit", no_fit)
    with pytest.raises(expression.NotVerified, match="grad w"):
        expression.fit(LOGISTIC, "w", data_path="data/anes96.csv", target="vote")
    r, out = invoke(runner, "fit", "--loss", LOGISTIC, "--data", "data/anes96.csv", "--target",
                    "vote", "--json")
    assert r.exit_code == 1 and out["status"] == 1 and "not verified" in out["error"]
    assert out["derivation"]["first_wrong"]["lhs"] == "grad w"


def test_planted_wrong_hessian_in_hg_is_refused():
    hg, _ = __import__("handgrad.notation.auto", fromlist=["derive"]).derive(
        POISSON, expression.declarations(POISSON, "w"), "w", hessian=True)
    wrong = hg.replace("hess w = X'*diag(exp(X*w))*X", "hess w = X'*X")
    assert wrong != hg
    with pytest.raises(expression.NotVerified, match="hess w"):
        expression.ExpressionLoss.from_hg(wrong)
    assert expression.ExpressionLoss.from_hg(hg).has_hessian  # the unedited one passes


def test_plan_is_the_verified_formula_and_stable():
    """The compiled plan (CSE, no diag formed, stable forms) against numpy: the logistic
    loss, gradient and Hessian at small z, and a finite loss at z = 800 where the written
    log(1 + exp(z)) overflows."""
    loss = expression.ExpressionLoss.derive(LOGISTIC, "w")
    e = expression.entry(loss)
    rng = np.random.default_rng(2)
    X, y, w = rng.standard_normal((50, 3)), (rng.random(50) < 0.5) * 1.0, rng.standard_normal(3)
    from handgrad.fitting.data import Data

    D = Data(torch.tensor(X), torch.tensor(y))
    P = {"w": torch.tensor(w)}
    z = X @ w
    p = 1 / (1 + np.exp(-z))
    assert float(e.loss(P, D)) == pytest.approx(np.sum(np.logaddexp(0, z) - y * z), rel=1e-13)
    np.testing.assert_allclose(e.gradient(P, D)["w"].numpy(), X.T @ (p - y), rtol=1e-12)
    np.testing.assert_allclose(e.hessian(P, D).numpy(), (X * (p * (1 - p))[:, None]).T @ X,
                               rtol=1e-12)
    big = Data(torch.tensor([[800.0]]), torch.tensor([0.0]))
    assert float(e.loss({"w": torch.tensor([1.0])}, big)) == pytest.approx(800.0, rel=1e-15)
    assert float(e.hessian({"w": torch.tensor([1.0])}, Data(torch.tensor([[40.0]]),
                                                            torch.tensor([0.0])))) > 0


def test_a_sum_over_rows_is_evaluated_in_row_blocks_with_the_same_values(monkeypatch):
    """In memory, a loss that is a sum over rows runs its verified formulas block by block
    (cache-resident X blocks) and sums them: f, gradient and Hessian equal the one-block
    evaluation (numpy, an independent reference, for the logistic gradient); a loss that is
    not a sum over rows (the norm, not its square) is never split."""
    from handgrad.fitting.data import Data

    g = torch.Generator().manual_seed(4)
    X = torch.randn(3000, 5, generator=g, dtype=torch.float64)
    y = (torch.rand(3000, generator=g) < 0.4).to(torch.float64)
    data = Data(X, y)
    loss = expression.ExpressionLoss.derive(LOGISTIC, "w", data=data, intercept=False)
    e = expression.entry(loss)
    assert loss.rowwise
    p = {"w": 0.3 * torch.randn(5, generator=g, dtype=torch.float64)}
    whole = {k: v.clone() for k, v in loss.evaluate(["f", "grad", "hess"], p, data, "w", "b").items()}
    monkeypatch.setattr(expression.ExpressionLoss, "BLOCK_BYTES", 256 * 8 * 5)  # 256-row blocks
    blocks = loss.evaluate(["f", "grad", "hess"], p, data, "w", "b")
    for k in whole:
        torch.testing.assert_close(blocks[k], whole[k], rtol=1e-12, atol=1e-12)
    Xn, yn, wn = X.numpy(), y.numpy(), p["w"].numpy()
    want = Xn.T @ (1 / (1 + np.exp(-Xn @ wn)) - yn)
    np.testing.assert_allclose(e.derivation.gradient(p, data)["w"].numpy(), want, rtol=1e-10)
    norm = expression.ExpressionLoss.derive("norm2(X*w - y)", "w", data=data, intercept=False)
    expression.entry(norm)
    assert not norm.rowwise


# ---- the path a loss takes: the one chain rule through z = X*w, or compiled formulas ----


@pytest.mark.parametrize("expr,path", [
    (LOGISTIC, "linear predictor"), (POISSON, "linear predictor"),
    (LEAST_SQUARES[0], "linear predictor"), (LEAST_SQUARES[1], "linear predictor"),
    ("norm2(X*w - y)", "compiled formulas"),  # not a sum over rows: its Hessian in z is full
    (POISSON + " + w'*w", "compiled formulas"),  # w outside X*w
    (POISSON + " + 5", "compiled formulas"),  # a constant: not a sum over rows of z
])
def test_the_path_taken_is_said_and_is_the_chain_rule_for_sums_through_xw(expr, path):
    from handgrad.fitting.sums import LinearLoss

    loss = expression.ExpressionLoss.derive(expr, "w")
    e = expression.entry(loss)
    said = expression.describe(loss, True)["path"]
    assert said["kind"] == path
    if path == "linear predictor":
        assert isinstance(e.derivation.linear, LinearLoss) and said["derivation"]
        assert "grad z =" in said["text"] and "chain rule" in said["text"]
    else:
        assert e.derivation.linear is None and "not through the chain rule: " in said["text"]


def test_per_sample_pieces_are_the_verified_derivatives_numpy():
    """l, dl/dz, d2l/dz2 of the logistic loss from the derived pieces, against numpy."""
    ps = expression.ExpressionLoss.derive(LOGISTIC, "w").per_sample
    rng = np.random.default_rng(8)
    z, y = rng.standard_normal(30) * 3, (rng.random(30) < 0.5) * 1.0
    f, e, h = ps(torch.tensor(z), torch.tensor(y), True, True, True)
    p = 1 / (1 + np.exp(-z))
    assert float(f) == pytest.approx(np.sum(np.logaddexp(0, z) - y * z), rel=1e-13)
    np.testing.assert_allclose(e.numpy(), p - y, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h.numpy(), p * (1 - p), rtol=1e-12)


def test_planted_wrong_per_sample_gradient_is_never_fitted(monkeypatch):
    """A wrong gradient in z (sign of y) fails the verifier: the loss is fitted as compiled
    formulas of its own verified derivation instead, saying why, with the right answer."""
    from handgrad.notation import auto

    real = auto.derive

    def planted(expr, let, wrt, hessian=False):
        hg, res = real(expr, let, wrt, hessian=hessian)
        if wrt == "z":
            wrong = hg.replace("grad z = sigma(z) - y", "grad z = sigma(z) + y")
            assert wrong != hg
            return wrong, res
        return hg, res

    monkeypatch.setattr(auto, "derive", planted)
    kw = dict(data_path="data/anes96.csv", target="vote", solver="newton", device="cpu")
    out = expression.fit(LOGISTIC, "w", **kw)
    path = out["loss_expression"]["path"]
    assert path["kind"] == "compiled formulas" and "failed" in path["text"]
    ref = pipeline.fit("logistic", **kw)
    assert _max_diff(out["coefficients"], ref["coefficients"]) < TOL


def test_planted_wrong_curvature_in_the_pieces_is_caught(monkeypatch):
    """Pieces whose curvature differs from the verified Hessian (a bug in how the diagonal
    is read off) stop the build: the chain rule is checked against the verified Hessian."""
    real = expression.PerSample.__call__

    def off(self, z, y, grad=True, hess=True, value=True):
        f, e, h = real(self, z, y, grad, hess, value)
        return f, e, None if h is None else 1.01 * h

    monkeypatch.setattr(expression.PerSample, "__call__", off)
    with pytest.raises(AssertionError, match="bug in handgrad"):
        expression.ExpressionLoss.derive(POISSON, "w")


def test_sampled_hessians_and_chord_steps_apply_to_an_expression():
    """Through the chain rule the expression gets the built-in's Newton: the same sampled
    Hessians, chord steps, passes and coefficients (1e-8) as fit logistic."""
    from handgrad.fitting.data import Data

    g = torch.Generator().manual_seed(11)
    n, d = 40000, 40
    X = torch.randn(n, d, generator=g, dtype=torch.float64) / d ** 0.5
    y = (torch.rand(n, generator=g, dtype=torch.float64) <
         torch.sigmoid(X @ torch.randn(d, generator=g, dtype=torch.float64))).to(torch.float64)
    data = Data(X, y)
    kw = dict(data=data, solver="newton", device="cpu", chunk_rows=1000)
    ref = pipeline.fit("logistic", **kw)
    out = expression.fit(LOGISTIC, "w", **kw)
    assert ref["converged"] and out["converged"]
    assert _max_diff(out["coefficients"], ref["coefficients"]) < 1e-8
    for key in ("hessian_chunk_stride", "hessian_from"):
        assert any(key in h for h in ref["history"])
        assert [key in h for h in out["history"]] == [key in h for h in ref["history"]]


# ---- inference: --nll (model-based), else sandwich (robust), else none and why ----------

BUILT_IN = [(LOGISTIC, "logistic", "data/anes96.csv", "vote"),
            (POISSON, "poisson", "data/randhie.csv", "mdvis")]


@pytest.mark.parametrize("expr,model,path,target", BUILT_IN, ids=["logistic", "poisson"])
def test_nll_gives_the_built_in_coefficients_and_standard_errors(expr, model, path, target):
    kw = dict(data_path=path, target=target, solver="newton", device="cpu")
    ref = pipeline.fit(model, **kw)
    out = expression.fit(expr, "w", nll=True, **kw)
    assert _max_diff(out["coefficients"], ref["coefficients"]) < 1e-8
    assert _max_diff(out["std_errors"], ref["std_errors"]) < 1e-6
    s = out["summary"]
    assert s["kind"] == "likelihood" and "covariance" not in s
    for a, b in zip(s["terms"], ref["summary"]["terms"]):
        assert a["p_value"] == pytest.approx(b["p_value"], rel=1e-6, abs=1e-300)
        assert a["ci_low"] == pytest.approx(b["ci_low"], abs=1e-6)
    k = len(out["coefficients"])
    assert s["log_likelihood"] == pytest.approx(-out["loss"], rel=1e-12)  # -loss, nothing added
    assert s["aic"] == pytest.approx(2 * k + 2 * out["loss"], rel=1e-12)
    assert s["bic"] == pytest.approx(k * np.log(s["n"]) + 2 * out["loss"], rel=1e-12)
    assert any("log-likelihood = -(the loss as written)" in c for c in out["conventions"])


def _statsmodels_hc0(model, path, target):
    import pandas as pd
    import statsmodels.api as sm

    df = pd.read_csv(path)
    X = sm.add_constant(df.drop(columns=target), prepend=False)
    if model == "logistic":
        r = sm.Logit(df[target], X).fit(cov_type="HC0", disp=0, tol=1e-12)
    else:
        r = sm.GLM(df[target], X, family=sm.families.Poisson()).fit(cov_type="HC0", tol=1e-12)
    return dict(zip(r.bse.index, r.bse.values)), dict(zip(r.params.index, r.params.values))


@pytest.mark.parametrize("chunk_rows", [None, 1000], ids=["memory", "chunks"])
@pytest.mark.parametrize("expr,model,path,target", BUILT_IN, ids=["logistic", "poisson"])
def test_without_nll_the_standard_errors_are_sandwich_as_statsmodels_hc0(expr, model, path,
                                                                         target, chunk_rows):
    se, coef = _statsmodels_hc0(model, path, target)
    out = expression.fit(expr, "w", data_path=path, target=target, solver="newton",
                         device="cpu", chunk_rows=chunk_rows)
    rename = {"intercept": "const"}
    for term, v in out["std_errors"].items():
        assert v == pytest.approx(se[rename.get(term, term)], rel=1e-6)
        assert out["coefficients"][term] == pytest.approx(coef[rename.get(term, term)], rel=1e-6)
    s = out["summary"]
    assert s["kind"] == "robust" and "sandwich" in s["covariance"] and "log_likelihood" not in s
    # the model-based errors differ: which covariance is used matters (and is said)
    nll = expression.fit(expr, "w", data_path=path, target=target, solver="newton", device="cpu",
                         nll=True)
    assert max(abs(nll["std_errors"][k] / v - 1) for k, v in out["std_errors"].items()) > 1e-3


def test_the_text_labels_robust_errors_and_says_why_there_are_none(runner, ls_csv):
    base = ["--data", "data/randhie.csv", "--target", "mdvis", "--newton"]
    r, _ = invoke(runner, "fit", "--loss", POISSON, *base)
    assert r.exit_code == 0, r.stderr
    assert "standard errors: sandwich (robust" in r.stdout
    r, _ = invoke(runner, "fit", "--loss", POISSON, "--nll", *base)
    assert "sandwich" not in r.stdout and "log-likelihood" in r.stdout and "AIC" in r.stdout
    # not a sum over rows through X*w: coefficients, no empty std err column, and why
    r, out = invoke(runner, "fit", "--loss", "norm2(X*w - y)", "--data", ls_csv, "--target", "y",
                    "--newton", "--json")
    assert r.exit_code == 0, r.stderr
    assert "std_errors" not in out and out["summary"]["kind"] == "none"
    assert out["summary"]["note"].startswith("no standard errors: the loss is not declared")
    r, _ = invoke(runner, "fit", "--loss", "norm2(X*w - y)", "--data", ls_csv, "--target", "y",
                  "--newton")
    assert "std err" not in r.stdout and "note: no standard errors" in r.stdout
    r, _ = invoke(runner, "fit", "poisson", "--nll")
    assert r.exit_code == 2 and r.stderr.strip() == \
        "error: --nll goes with --loss EXPR (the loss written as an expression)."


def test_the_intercept_starts_at_the_intercept_only_minimum_in_a_few_passes(monkeypatch):
    """Poisson's log(mean y), logistic's logit(mean y) (closed forms, numpy), found by a
    one-variable Newton on the verified pieces that stops at the loss's resolution (not
    after max_iter rounding-level steps over every row)."""
    from handgrad.fitting.data import Data

    rng = np.random.default_rng(3)
    X = torch.tensor(rng.standard_normal((200_000, 2)))
    counts = rng.poisson(1.3, 200_000).astype(float)
    labels = (rng.random(200_000) < 0.3).astype(float)
    for expr, y, want in ((POISSON, counts, np.log(counts.mean())),
                          (LOGISTIC, labels, np.log(labels.mean() / (1 - labels.mean())))):
        ps = expression.ExpressionLoss.derive(expr, "w").per_sample
        calls = []
        real = type(ps).__call__
        monkeypatch.setattr(type(ps), "__call__",
                            lambda self, *a, real=real: calls.append(1) or real(self, *a))
        b = expression.null_intercept(ps, Data(X, torch.tensor(y)))
        assert b == pytest.approx(want, abs=1e-7) and len(calls) <= 12, (b, want, len(calls))


def test_sandwich_errors_under_two_processes_equal_one_process():
    """The middle of the sandwich is summed across processes (one all-reduce): under
    torchrun the robust standard errors are the one-process ones."""
    from tests.test_distributed import _torchrun

    args = ["--data", "data/randhie.csv", "--target", "mdvis", "--newton", "--device", "cpu",
            "--json"]
    two = _torchrun("fit", "--loss", POISSON, "--wrt", "w", *args, "--chunk-rows", "2000")
    assert two["distributed"]["world_size"] == 2 and two["converged"]
    one = expression.fit(POISSON, "w", data_path="data/randhie.csv", target="mdvis",
                         solver="newton", device="cpu")
    assert two["summary"]["kind"] == "robust"
    for k, v in one["std_errors"].items():
        assert two["std_errors"][k] == pytest.approx(v, rel=1e-9), k


def test_a_loss_written_as_a_long_sum_is_derived_verified_and_fitted(ls_csv):
    """A 250-term loss (250 levels deep) fits: it used to end in RecursionError in the
    verifier, outside the deep-tree wrapper the deriver had.  The reference is numpy's ridge
    solution with the intercept penalised too (w'*w covers [w; b])."""
    lam = 250 / 1_000_000
    expr = "norm2(X*w - y)^2 + " + " + ".join(["1/1000000*w'*w"] * 250)
    out = expression.fit(expr, "w", data_path=ls_csv, target="y", solver="newton", device="cpu")
    assert out["converged"]
    A = np.loadtxt(ls_csv, delimiter=",", skiprows=1)
    X = np.column_stack([A[:, :4], np.ones(len(A))])
    want = np.linalg.solve(X.T @ X + lam * np.eye(5), X.T @ A[:, 4])
    got = np.array([out["coefficients"][k] for k in ("a", "b", "c", "e", "intercept")])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
