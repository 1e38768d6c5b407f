"""Summary tables against answers known in closed form, standardization round trips, and
the data-in contract (CSV faults, .npz / .npy) through the command line."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from scipy import stats

from handgrad.errors import UserError
from handgrad.fitting import inference, pipeline
from handgrad.fitting.data import Data, _load_numpy, load
from tests.conftest import ROOT, invoke

ANES = os.path.join(ROOT, "data", "anes96.csv")
ANES_FEATURES = "popul,TVnews,selfLR,ClinLR,DoleLR,PID,age,educ,income"


def _terms(out) -> dict:
    return {r["term"]: r for r in out["summary"]["terms"]}


def _write(tmp_path, name, text) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# --- logistic regression with one binary feature: everything is known in closed form -------

def _two_by_two(tmp_path, n00=30, n01=10, n10=15, n11=25) -> str:
    rows = ([(0, 0)] * n00 + [(0, 1)] * n01 + [(1, 0)] * n10 + [(1, 1)] * n11)
    return _write(tmp_path, "t.csv", "x,y\n" + "".join(f"{x},{y}\n" for x, y in rows))


def test_logistic_summary_matches_the_two_by_two_table(runner, tmp_path):
    n00, n01, n10, n11 = 30, 10, 15, 25
    path = _two_by_two(tmp_path, n00, n01, n10, n11)
    r, out = invoke(runner, "fit", "logistic", "--newton", "--data", path, "--target", "y",
                    "--json")
    assert r.exit_code == 0, r.output
    t = _terms(out)
    # MLE: the fitted probabilities are the group proportions (odds ratio, log odds)
    b = math.log(n01 / n00)
    w = math.log(n11 / n10) - b
    se_b = math.sqrt(1 / n00 + 1 / n01)
    se_w = math.sqrt(1 / n00 + 1 / n01 + 1 / n10 + 1 / n11)  # Woolf's log-odds-ratio s.e.
    assert t["intercept"]["coef"] == pytest.approx(b, rel=1e-9)
    assert t["x"]["coef"] == pytest.approx(w, rel=1e-9)
    assert t["intercept"]["std_err"] == pytest.approx(se_b, rel=1e-9)
    assert t["x"]["std_err"] == pytest.approx(se_w, rel=1e-9)
    assert t["x"]["stat"] == pytest.approx(w / se_w, rel=1e-9)
    assert t["x"]["p_value"] == pytest.approx(math.erfc(abs(w / se_w) / math.sqrt(2)), rel=1e-7)
    assert t["x"]["ci_low"] == pytest.approx(w - 1.959963984540054 * se_w, rel=1e-9)
    s = out["summary"]
    n0, n1, n = n00 + n10, n01 + n11, n00 + n01 + n10 + n11
    ll = (n00 * math.log(n00 / (n00 + n01)) + n01 * math.log(n01 / (n00 + n01))
          + n10 * math.log(n10 / (n10 + n11)) + n11 * math.log(n11 / (n10 + n11)))
    ll0 = n1 * math.log(n1 / n) + n0 * math.log(n0 / n)
    assert s["statistic"] == "z"
    assert s["log_likelihood"] == pytest.approx(ll, rel=1e-12)
    assert s["null_log_likelihood"] == pytest.approx(ll0, rel=1e-12)
    assert s["pseudo_r_squared"] == pytest.approx(1 - ll / ll0, rel=1e-10)
    assert s["llr_p_value"] == pytest.approx(stats.chi2.sf(2 * (ll - ll0), 1), rel=1e-8)
    assert out["std_errors"] == {"x": t["x"]["std_err"], "intercept": t["intercept"]["std_err"]}


def test_logistic_two_valued_labels_are_re_encoded_and_said_so(runner, tmp_path):
    base = _two_by_two(tmp_path)
    text = open(base).read().splitlines()
    recoded = [text[0]] + [f"{ln.split(',')[0]},{7 if ln.endswith('1') else 3}" for ln in text[1:]]
    path = _write(tmp_path, "r.csv", "\n".join(recoded) + "\n")
    _, a = invoke(runner, "fit", "logistic", "--data", base, "--target", "y", "--json")
    r, b = invoke(runner, "fit", "logistic", "--data", path, "--target", "y", "--json")
    assert r.exit_code == 0
    assert any("re-encoded" in n and "3 -> 0" in n and "7 -> 1" in n for n in b["data"]["notes"])
    assert a["coefficients"] == pytest.approx(b["coefficients"], rel=1e-12)


# --- least squares: simple linear regression against scipy.stats.linregress ----------------

def test_least_squares_summary_matches_linregress(runner, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, 25)
    y = 1.5 - 0.7 * x + rng.normal(0, 1.3, 25)
    path = _write(tmp_path, "lr.csv", "x,y\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(x, y)))
    r, out = invoke(runner, "fit", "least_squares", "--data", path, "--target", "y", "--json")
    assert r.exit_code == 0, r.output
    ref = stats.linregress(x, y)
    t, s = _terms(out), out["summary"]
    assert t["x"]["coef"] == pytest.approx(ref.slope, rel=1e-12)
    assert t["intercept"]["coef"] == pytest.approx(ref.intercept, rel=1e-12)
    assert t["x"]["std_err"] == pytest.approx(ref.stderr, rel=1e-10)
    assert t["intercept"]["std_err"] == pytest.approx(ref.intercept_stderr, rel=1e-10)
    assert t["x"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-8)
    assert s["r_squared"] == pytest.approx(ref.rvalue ** 2, rel=1e-12)
    assert s["statistic"] == "t" and s["df_resid"] == 23
    q = stats.t.ppf(0.975, 23)
    assert t["x"]["ci_high"] == pytest.approx(ref.slope + q * ref.stderr, rel=1e-10)
    resid = y - (ref.intercept + ref.slope * x)
    assert s["residual_std"] == pytest.approx(math.sqrt(resid @ resid / 23), rel=1e-10)
    assert s["condition"] >= 1 and s["rank"] == 2


def test_least_squares_without_intercept_uses_uncentred_r2(runner, tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 2))
    y = X @ [2.0, -1.0] + rng.normal(0, 0.5, 30) + 3.0
    path = _write(tmp_path, "ni.csv", "a,b,y\n" + "".join(
        f"{float(r[0])!r},{float(r[1])!r},{float(v)!r}\n" for r, v in zip(X, y)))
    r, out = invoke(runner, "fit", "least_squares", "--data", path, "--target", "y",
                    "--no-intercept", "--json")
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    rss = float(((y - X @ w) ** 2).sum())
    s = out["summary"]
    assert s["r_squared_centred"] is False
    assert s["r_squared"] == pytest.approx(1 - rss / float(y @ y), rel=1e-10)
    assert s["df_resid"] == 28 and "intercept" not in out["coefficients"]


# --- standardization: same model, reported on the original scale ---------------------------

@pytest.mark.parametrize("model,extra", [("logistic", ["--newton"]), ("least_squares", [])])
def test_standardize_reports_the_original_scale(runner, model, extra):
    args = ["fit", model, *extra, "--data", ANES, "--target", "vote" if model == "logistic"
            else "selfLR", "--features", "PID,age,educ,income,TVnews", "--json"]
    _, plain = invoke(runner, *args)
    r, std = invoke(runner, *args, "--standardize")
    assert r.exit_code == 0, r.output
    assert std["summary"]["fit_on_standardized"] is True
    assert std["coefficients"] == pytest.approx(plain["coefficients"], rel=1e-8)
    assert std["std_errors"] == pytest.approx(plain["std_errors"], rel=1e-7)
    p_std = {t["term"]: t["p_value"] for t in std["summary"]["terms"]}
    p_plain = {t["term"]: t["p_value"] for t in plain["summary"]["terms"]}
    assert p_std == pytest.approx(p_plain, rel=1e-5)
    # the standardized coefficients are the original ones times the column's sd
    X = load(ANES, "vote", ["age"]).X[:, 0]
    sd = float(X.std(unbiased=False))
    assert std["summary"]["standardized_coef"]["age"] == pytest.approx(
        plain["coefficients"]["age"] * sd, rel=1e-7)


def test_to_original_is_the_inverse_map():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(20, 3, generator=g, dtype=torch.float64) * 5 + 2
    data = Data(X, torch.zeros(20, dtype=torch.float64))
    sdata, tr = inference.standardize(data, intercept=True)
    theta = torch.tensor([0.3, -1.0, 2.0, 0.7], dtype=torch.float64)
    orig, _ = inference.to_original(theta, None, tr, intercept=True)
    # same linear predictor on every row
    lhs = sdata.X @ theta[:3] + theta[3]
    rhs = X @ orig[:3] + orig[3]
    torch.testing.assert_close(lhs, rhs)


def test_standardize_rejects_constant_column(runner, tmp_path):
    path = _write(tmp_path, "c.csv", "a,k,y\n1,5,0\n2,5,1\n3,5,0\n4,5,1\n")
    r, _ = invoke(runner, "fit", "logistic", "--data", path, "--target", "y", "--standardize")
    assert r.exit_code == 2 and "'k'" in r.stderr and "constant" in r.stderr


# --- the printed table, feature names everywhere ---------------------------------------------

def test_human_summary_table(runner):
    r, _ = invoke(runner, "fit", "logistic", "--newton", "--data", ANES, "--target", "vote",
                  "--features", ANES_FEATURES)
    assert r.exit_code == 0, r.output
    out = r.stdout
    for needle in ("coef", "std err", "P>|z|", "[95%", "interval]", "log-likelihood",
                   "null log-likelihood", "pseudo R^2 (McFadden)", "iterations"):
        assert needle in out
    for name in ANES_FEATURES.split(",") + ["intercept"]:
        assert any(line.startswith(name + " ") for line in out.splitlines()), name


def test_feature_names_flow_in_the_order_given(runner):
    feats = ["income", "PID", "age"]
    r, out = invoke(runner, "fit", "logistic", "--data", ANES, "--target", "vote",
                    "--features", ",".join(feats), "--json")
    assert list(out["coefficients"]) == feats + ["intercept"]
    assert list(out["std_errors"]) == feats + ["intercept"]
    assert [t["term"] for t in out["summary"]["terms"]] == feats + ["intercept"]


def test_python_api_fit_carries_the_summary():
    out = pipeline.fit("least_squares", n_samples=50, n_features=2, device="cpu")
    assert "summary" in out
    assert out["summary"]["kind"] == "least_squares"


# --- CSV faults: one line, exit status 2 (docs/RELIABILITY.md) ------------------------------------

CSV_FAULTS = {
    "missing file": (None, "not found"),
    "missing target": ("a,b\n1,2\n3,4\n", "columns are: a, b"),
    "non-numeric": ("a,y\n1,0\n2,zz\n", "non-numeric value 'zz' in column 'y', row 2"),
    "NaN": ("a,y\n1,0\nnan,1\n3,1\n", ("NaN", "row", "column 'a'")),
    "inf": ("a,y\n1,0\n2,1\n3,inf\n", ("inf", "row", "'y'")),
    "empty file": ("", "empty"),
    "header only": ("a,y\n", "no data rows"),
    "ragged": ("a,b,y\n1,2,0\n3,1\n", "ragged row at line 3"),
}


@pytest.mark.parametrize("fault", list(CSV_FAULTS))
@pytest.mark.parametrize("as_json", [False, True])
def test_csv_fault_is_one_line_and_exit_2(runner, tmp_path, fault, as_json):
    text, needles = CSV_FAULTS[fault]
    needles = (needles,) if isinstance(needles, str) else needles
    path = str(tmp_path / "f.csv") if text is None else _write(tmp_path, "f.csv", text)
    target = "missing" if fault == "missing target" else "y"
    args = ["fit", "logistic", "--data", path, "--target", target] + (["--json"] if as_json else [])
    r, out = invoke(runner, *args)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert all(n in lines[0] for n in needles), lines
    assert "Traceback" not in r.output
    if as_json:
        assert out["status"] == 2 and all(n in out["error"] for n in needles)
    else:
        assert r.stdout == ""


# --- .npz and .npy ------------------------------------------------------------------------------

def _arrays(seed=0, n=120):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = (X @ [1.0, -1.0, 0.5] + rng.standard_normal(n) > 0).astype(np.float64)
    return X, y


def test_npz_with_feature_names(runner, tmp_path):
    X, y = _arrays()
    path = str(tmp_path / "d.npz")
    np.savez(path, X=X, y=y, feature_names=np.array(["alpha", "beta", "gamma"]))
    r, out = invoke(runner, "fit", "logistic", "--data", path, "--json")
    assert r.exit_code == 0, r.output
    assert list(out["coefficients"]) == ["alpha", "beta", "gamma", "intercept"]
    # the same numbers as from a CSV of the same values
    csv = _write(tmp_path, "d.csv", "alpha,beta,gamma,y\n" + "".join(
        ",".join(repr(float(v)) for v in (*row, t)) + "\n" for row, t in zip(X, y)))
    _, ref = invoke(runner, "fit", "logistic", "--data", csv, "--target", "y", "--json")
    assert out["coefficients"] == pytest.approx(ref["coefficients"], rel=1e-12)


def test_npy_pair_is_memory_mapped(runner, tmp_path):
    X, y = _arrays(1)
    np.save(tmp_path / "X_train.npy", X)
    np.save(tmp_path / "y_train.npy", y)
    Xm, ym, _ = _load_numpy(str(tmp_path / "X_train.npy"))
    assert isinstance(Xm, np.memmap) and isinstance(ym, np.memmap)
    data = load(str(tmp_path / "X_train.npy"))
    torch.testing.assert_close(data.X, torch.from_numpy(X), rtol=0, atol=0)
    if os.path.exists("/proc/self/maps"):  # the tensor's memory is the file's mapping: no copy
        ptr, spans = data.X.data_ptr(), []
        for line in open("/proc/self/maps"):
            if line.rstrip().endswith(str(tmp_path / "X_train.npy")):
                lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
                spans.append((lo, hi))
        assert any(lo <= ptr < hi for lo, hi in spans)
    r, out = invoke(runner, "fit", "logistic", "--data", tmp_path / "X_train.npy", "--json")
    assert r.exit_code == 0 and list(out["coefficients"]) == ["x0", "x1", "x2", "intercept"]


@pytest.mark.parametrize("kind", ["npz", "npy"])
def test_numpy_without_target_is_exit_2(runner, tmp_path, kind):
    X, _ = _arrays()
    path = tmp_path / f"X.{kind}"
    np.savez(path, X=X) if kind == "npz" else np.save(path, X)
    r, _ = invoke(runner, "fit", "logistic", "--data", path)
    assert r.exit_code == 2 and "holds no target" in r.stderr


def test_load_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="Unsupported data file"):
        load(_write(tmp_path, "d.txt", "a,y\n1,0\n"), "y")


def test_boolean_labels_pass_through(runner, tmp_path):
    base = _two_by_two(tmp_path)
    text = open(base).read().splitlines()
    booleans = [text[0]] + [f"{ln.split(',')[0]},{'True' if ln.endswith('1') else 'false'}"
                            for ln in text[1:]]
    path = _write(tmp_path, "b.csv", "\n".join(booleans) + "\n")
    _, a = invoke(runner, "fit", "logistic", "--data", base, "--target", "y", "--json")
    r, b = invoke(runner, "fit", "logistic", "--data", path, "--target", "y", "--json")
    assert r.exit_code == 0 and not any("re-encoded" in n for n in b["data"]["notes"])
    assert a["coefficients"] == b["coefficients"]


def test_run_config_with_standardize(runner, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'model = "logistic"\nsolver = "newton"\ndata = "{ANES}"\ntarget = "vote"\n'
                   'features = ["PID", "age"]\nstandardize = true\n')
    r, out = invoke(runner, "run", cfg, "--json")
    assert r.exit_code == 0, r.output
    assert out["summary"]["fit_on_standardized"] is True
    assert list(out["coefficients"]) == ["PID", "age", "intercept"]


def test_penalised_fit_says_its_standard_errors_are_approximate(runner):
    r, out = invoke(runner, "fit", "logistic", "--data", ANES, "--target", "vote",
                    "--features", "PID,age", "--l2", "1", "--json")
    assert "penalised" in out["summary"]["note"]
