"""Bad input and numerical faults (docs/RELIABILITY.md): one test (at least) per item.

Every user mistake: exit status 2, a one-line message naming the problem, no traceback.
Numerical trouble: a warning naming the iteration and a remedy, or a documented fallback.
Expected values at the breaking inputs are computed by hand (math module), not by handgrad.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from handgrad.errors import HandgradWarning, UserError
from handgrad.fitting import inference, pipeline, solvers, validate
from handgrad.fitting.data import Data, validate_arrays
from handgrad.present import io
from handgrad.registry import REGISTRY
from handgrad.verify import checker

# ----------------------------------------------------------------------------- helpers


def run(runner, *args):
    """cli.py with args; stdout and stderr apart; an escaping exception fails the test."""
    import handgrad.cli as cli

    result = runner.invoke(cli.main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"exception escaped: {result.exception!r}\n{result.stderr}")
    return result


def user_error(runner, *args, contains=()):
    """Exit 2, a single 'error: ...' line on stderr, no traceback, nothing on stdout."""
    r = run(runner, *args)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    for s in contains:
        assert s in lines[0], (s, lines[0])
    # the same command under --json: exactly one JSON object with the error and status 2
    j = run(runner, *args, "--json")
    assert j.exit_code == 2
    obj = json.loads(j.stdout)
    assert obj["status"] == 2 and obj["error"] and "\n" not in obj["error"]
    return lines[0]


def write_csv(path, header, rows):
    with open(path, "w") as fh:
        fh.write(",".join(header) + "\n")
        for r in rows:
            fh.write(",".join(str(v) for v in r) + "\n")
    return str(path)


def logistic_rows(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] + rng.normal(size=n) > 0).astype(int)
    return [[float(a), float(b), int(t)] for (a, b), t in zip(X, y)]


@pytest.fixture
def good_csv(tmp_path):
    return write_csv(tmp_path / "good.csv", ["a", "b", "y"], logistic_rows())


# ------------------------------------------------------------------- input: values, shapes


def test_nan_in_x_names_row_and_column(runner, tmp_path):
    rows = logistic_rows()
    rows[16][1] = "nan"
    path = write_csv(tmp_path / "nan.csv", ["age", "b", "y"], rows)
    msg = user_error(runner, "fit", "logistic", "--data", path, "--target", "y",
                     contains=("NaN", "row 17", "column 'b'", "line 18"))
    assert "Input X" in msg


def test_inf_in_target_named(runner, tmp_path):
    rows = logistic_rows()
    rows[3][2] = "inf"
    path = write_csv(tmp_path / "inf.csv", ["a", "b", "y"], rows)
    user_error(runner, "fit", "least_squares", "--data", path, "--target", "y",
               contains=("inf", "target 'y'", "row 4"))


def test_nan_in_an_unused_column_is_ignored(runner, tmp_path):
    rows = [r + [("nan" if i == 2 else 1.0)] for i, r in enumerate(logistic_rows())]
    path = write_csv(tmp_path / "x.csv", ["a", "b", "y", "junk"], rows)
    r = run(runner, "fit", "least_squares", "--data", path, "--target", "y", "--features", "a,b")
    assert r.exit_code == 0, r.stderr


def test_array_nan_names_row_and_column():
    X = np.ones((5, 3))
    X[2, 1] = np.nan
    with pytest.raises(UserError, match=r"NaN \(row 2, column 'age'\)"):
        validate_arrays(X, np.zeros(5), ["a", "age", "c"])


@pytest.mark.parametrize("X, msg", [
    (np.ones(5), "must be 2-D"),
    (np.ones((5, 2, 2)), "must be 2-D"),
    (np.ones((0, 3)), "empty"),
    (np.ones((4, 0)), "empty"),
])
def test_bad_x_shapes(X, msg):
    with pytest.raises(UserError, match=msg):
        validate_arrays(X, None)


def test_length_mismatch():
    with pytest.raises(UserError, match="X has 5 rows but y has 4"):
        validate_arrays(np.ones((5, 2)), np.ones(4))


def test_y_column_vector_is_flattened_other_2d_rejected():
    X, y = validate_arrays(np.ones((4, 2)), np.arange(4.0).reshape(4, 1))
    assert y.shape == (4,) and y.tolist() == [0, 1, 2, 3]
    with pytest.raises(UserError, match="y must be 1-D"):
        validate_arrays(np.ones((4, 2)), np.ones((4, 2)))


@pytest.mark.parametrize("X, y, msg", [
    (np.ones(6), np.ones(6), "must be 2-D"),
    (np.ones((6, 2, 2)), np.ones(6), "must be 2-D"),
    (np.ones((6, 2)), np.ones(5), "X has 6 rows but y has 5"),
    (np.ones((6, 2)), np.ones((6, 3)), "y must be 1-D"),
])
def test_bad_npz_through_the_cli(runner, tmp_path, X, y, msg):
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y)
    user_error(runner, "fit", "least_squares", "--data", path, contains=(msg,))


def test_npz_y_column_vector_fits(runner, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 2))
    np.savez(tmp_path / "d.npz", X=X, y=(X @ [1.0, -2.0] + 0.5).reshape(30, 1))
    r = run(runner, "fit", "least_squares", "--data", tmp_path / "d.npz", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["data"]["n"] == 30


def test_from_arrays_is_the_python_api_door():
    d = validate.from_arrays([[1.0, 2.0], [3.0, 4.0]], [[0.0], [1.0]], ["p", "q"])
    assert d.y.shape == (2,) and d.feature_names == ["p", "q"]
    with pytest.raises(UserError, match="NaN"):
        validate.from_arrays([[1.0, float("nan")]], [1.0])
    with pytest.raises(UserError, match="3 feature names given for 2 columns"):
        validate.from_arrays([[1.0, 2.0]], [1.0], ["a", "b", "c"])


# -------------------------------------------------------------------------- input: labels


def test_continuous_target_for_a_classifier(runner, tmp_path):
    rows = [[a, b, a + 0.1] for a, b, _ in logistic_rows()]
    path = write_csv(tmp_path / "c.csv", ["a", "b", "y"], rows)
    user_error(runner, "fit", "logistic", "--data", path, "--target", "y",
               contains=("distinct values", "needs two classes"))


@pytest.mark.parametrize("lo, hi", [(1, 2), (-1, 1)])
def test_two_other_labels_are_reencoded_and_said(runner, tmp_path, lo, hi):
    rows = [[a, b, hi if t else lo] for a, b, t in logistic_rows()]
    path = write_csv(tmp_path / "l.csv", ["a", "b", "y"], rows)
    r = run(runner, "fit", "logistic", "--data", path, "--target", "y", "--json")
    assert r.exit_code == 0, r.stderr
    notes = json.loads(r.stdout)["data"]["notes"]
    assert any(f"{lo} -> 0" in n and f"{hi} -> 1" in n for n in notes), notes


def test_only_one_class(runner, tmp_path):
    rows = [[a, b, 1] for a, b, _ in logistic_rows()]
    path = write_csv(tmp_path / "o.csv", ["a", "b", "y"], rows)
    user_error(runner, "fit", "logistic", "--data", path, "--target", "y",
               contains=("only one class",))


@pytest.mark.skipif("softmax" not in REGISTRY, reason="softmax not registered yet")
def test_softmax_rejects_fractional_labels(runner, tmp_path):
    rows = [[a, b, 0.5 if i == 3 else t] for i, (a, b, t) in enumerate(logistic_rows())]
    path = write_csv(tmp_path / "f.csv", ["a", "b", "y"], rows)
    user_error(runner, "fit", "softmax", "--data", path, "--target", "y",
               contains=("class labels",))


# ----------------------------------------------------------------------------- input: CSV


def test_missing_file(runner, tmp_path):
    user_error(runner, "fit", "logistic", "--data", tmp_path / "nope.csv", "--target", "y",
               contains=("not found",))


def test_missing_target_lists_columns(runner, good_csv):
    user_error(runner, "fit", "logistic", "--data", good_csv, "--target", "label",
               contains=("'label'", "columns are: a, b, y"))


def test_headerless_csv_hint(runner, tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("1,2,3\n4,5,6\n")
    user_error(runner, "fit", "least_squares", "--data", path, "--target", "y",
               contains=("header row",))


@pytest.mark.parametrize("text, expect", [
    ("a,b,y\n1,2,1\n3,abc,0\n", ("non-numeric", "'abc'", "column 'b'", "row 2", "line 3")),
    ("", ("empty",)),
    ("a,b,y\n", ("no data rows",)),
    ("a,b,y\n1,2,1\n3,4\n", ("ragged row", "line 3", "2 cells")),
    ("a,b,y\n1,2,1\n\n\n3,,0\n", ("empty cell", "column 'b'", "line 5")),
    ("a,a,y\n1,2,1\n", ("duplicate column",)),
    ("a,,y\n1,2,1\n", ("empty column name",)),
])
def test_csv_faults(runner, tmp_path, text, expect):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    user_error(runner, "fit", "least_squares", "--data", path, "--target", "y", contains=expect)


def test_binary_file_as_csv(runner, tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00\x01garbage\x00")
    user_error(runner, "fit", "least_squares", "--data", path, "--target", "y")


# -------------------------------------------------------------------------- input: config


@pytest.mark.parametrize("text, expect", [
    ('model = "logistic"\nlearning_rate = 3\n', ("unknown key 'learning_rate'", "valid keys:",
                                                 "solver", "l2")),
    ('model = "logistic"\nl2 = "big"\n', ("'l2' must be float",)),
    ('model = "logistic"\nmax_iter = 2.5\n', ("'max_iter' must be int",)),
    ('model = "logistic"\nmax_iter = -3\n', ("'max_iter'", "range")),
    ('model = "nope"\n', ("unknown model 'nope'", "logistic")),
    ('solver = "gd"\n', ("'model' is required",)),
    ('model = "logistic"\nsolver = "bogus"\n', ("'solver'", "bogus")),
    ('model = "logistic"\nsolver = "closed"\n', ("not available for logistic",)),
    ('model = "logistic"\ndtype = "float16"\n', ("'dtype'", "float16")),
    ('model = "logistic"\ndevice = "tpu"\n', ("Unknown device 'tpu'",)),
    ('model = "logistic\n', ("invalid TOML",)),
    ('model = "logistic"\ndata = "missing.csv"\ntarget = "y"\n', ("not found",)),
])
def test_config_faults(runner, tmp_path, text, expect):
    path = tmp_path / "c.toml"
    path.write_text(text)
    user_error(runner, "run", path, contains=expect)


def test_missing_config(runner, tmp_path):
    user_error(runner, "run", tmp_path / "none.toml", contains=("not found",))


# -------------------------------------------------------------------------- input: device


def test_cuda_asked_for_but_absent(runner, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    user_error(runner, "fit", "logistic", "--device", "cuda",
               contains=("CUDA is not available", "--device cpu"))
    user_error(runner, "check", "logistic", "--device", "cuda:0",
               contains=("CUDA is not available",))


@pytest.mark.parametrize("args, expect", [
    (["--l2", "-1"], "--l2"), (["--tol", "-1"], "--tol"), (["--tol", "nan"], "--tol"),
])
def test_bad_numeric_flags(runner, args, expect):
    user_error(runner, "fit", "logistic", "--n-samples", "50", *args, contains=(expect,))


# --------------------------------------------------------------- Newton and friends


def _coll_csv(tmp_path):
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=60), rng.normal(size=60)
    y = (x1 - x2 + rng.normal(size=60) > 0).astype(int)
    return write_csv(tmp_path / "coll.csv", ["x1", "x2", "x3", "y"],
                     [[a, b, a, t] for a, b, t in zip(x1, x2, y)])


def test_collinear_columns_warn_fall_back_and_withhold_std_errors(runner, tmp_path):
    path = _coll_csv(tmp_path)
    r = run(runner, "fit", "logistic", "--data", path, "--target", "y")
    assert r.exit_code == 0, r.stderr
    warns = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert any("Newton iteration" in w and "Cholesky failed" in w and "--l2" in w
               for w in warns), r.stderr
    assert any("standard errors withheld" in w for w in warns), r.stderr
    j = json.loads(run(runner, "fit", "logistic", "--data", path, "--target", "y",
                       "--json").stdout)
    assert "std_errors" not in j
    assert any("standard errors withheld" in w for w in j["warnings"])
    # x1 and x3 share the effect; their sum is identified and finite
    c = j["coefficients"]
    assert math.isfinite(c["x1"] + c["x3"]) and math.isfinite(c["x2"])
    # the suggested remedy works: with L2 the Hessian is positive definite, no fallback
    k = json.loads(run(runner, "fit", "logistic", "--data", path, "--target", "y",
                       "--l2", "1", "--json").stdout)
    assert k["converged"] and not any("Cholesky" in w for w in k["warnings"])
    assert abs(k["coefficients"]["x1"] - k["coefficients"]["x3"]) < 1e-8  # symmetric split


def test_std_errors_withheld_when_hessian_singular():
    entry = REGISTRY["logistic"]
    X = torch.tensor([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0], [-1.0, -2.0]], dtype=torch.float64)
    data = Data(X, torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64))
    params = {"w": torch.zeros(2, dtype=torch.float64)}
    warns: list[str] = []
    with pytest.warns(HandgradWarning, match="standard errors withheld"):
        cov = inference.covariance_from_hessian(entry.hessian(params, data, l2=0.0), warns)
    assert cov is None and warns and "singular" in warns[0]


def _separated_csv(tmp_path):
    x = np.linspace(-2, 2, 40)
    return write_csv(tmp_path / "sep.csv", ["x", "y"], [[v, int(v > 0)] for v in x])


def test_perfect_separation_detected_and_l2_converges(runner, tmp_path):
    path = _separated_csv(tmp_path)
    r = run(runner, "fit", "logistic", "--data", path, "--target", "y")
    assert r.exit_code == 1
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1
    assert "separation" in err[0] and "maximum-likelihood estimate does not exist" in err[0]
    assert "--l2" in err[0]
    assert "iterations" in err[0]  # still says what was reached
    j = json.loads(run(runner, "fit", "logistic", "--data", path, "--target", "y",
                       "--json").stdout)
    assert j["separation"] is True and j["converged"] is False and "std_errors" not in j
    # with L2 the penalised MLE exists: converged, exit 0, finite moderate weights
    k = run(runner, "fit", "logistic", "--data", path, "--target", "y", "--l2", "1", "--json")
    assert k.exit_code == 0, k.stderr
    out = json.loads(k.stdout)
    assert out["converged"] and "separation" not in out
    assert 0 < out["coefficients"]["x"] < 50 and out["grad_norm"] <= 1e-8


def test_separation_with_gd_too(runner, tmp_path):
    r = run(runner, "fit", "logistic", "--solver", "gd", "--max-iter", "300",
            "--data", _separated_csv(tmp_path), "--target", "y")
    assert r.exit_code == 1 and "does not exist" in r.stderr


def test_overlapping_classes_are_not_called_separated():
    entry = REGISTRY["logistic"]
    X = torch.tensor([[-1.0], [0.5], [-0.5], [1.0]], dtype=torch.float64)
    data = Data(X, torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64))
    assert validate.separation(entry, {"w": torch.tensor([5.0], dtype=torch.float64)},
                               data, {"l2": 0.0}) is None
    sep = Data(X, (X[:, 0] > 0).to(torch.float64))
    assert validate.separation(entry, {"w": torch.tensor([5.0], dtype=torch.float64)},
                               sep, {"l2": 0.0})
    assert validate.separation(entry, {"w": torch.tensor([5.0], dtype=torch.float64)},
                               sep, {"l2": 1.0}) is None  # penalised: the MLE exists


def test_max_iter_reached_reports_what_was_reached(runner):
    r = run(runner, "fit", "logistic", "--n-samples", "300", "--max-iter", "2")
    assert r.exit_code == 1
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "did not converge after 2 iterations" in err[0]
    assert "reached loss" in err[0] and "|g|" in err[0]
    j = run(runner, "fit", "logistic", "--n-samples", "300", "--max-iter", "2", "--json")
    assert j.exit_code == 1
    out = json.loads(j.stdout)
    assert out["converged"] is False and out["iterations"] == 2
    assert math.isfinite(out["loss"]) and len(out["history"]) == 3


class _Quadratic:
    """A duck-typed Objective: f(x) = 1/2 x^T A x - b^T x, with hooks to break it."""

    def __init__(self, A, b, value=None):
        self.A, self.b, self._value = A, b, value
        self.like = {"w": torch.zeros(len(b), dtype=torch.float64)}
        self.entry = SimpleNamespace(derivation=SimpleNamespace(flat_directions=None),
                                    model=SimpleNamespace())
        self.hp, self.data = {}, None

    def value(self, x):
        if self._value is not None:
            return self._value(x)
        return 0.5 * x @ self.A @ x - self.b @ x

    def grad(self, x):
        return self.A @ x - self.b

    def hess(self, x):
        return self.A.clone()


def test_non_descent_newton_step_warns_and_takes_a_gradient_step(monkeypatch):
    A = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))
    b = torch.tensor([1.0, 1.0], dtype=torch.float64)
    # a broken direction (pointing uphill) must be caught, not followed
    monkeypatch.setattr(solvers, "_newton_direction", lambda H, g: (g.clone(), ""))
    with pytest.warns(HandgradWarning, match=r"Newton iteration 0: step does not descend"):
        res = solvers.newton(_Quadratic(A, b), torch.zeros(2, dtype=torch.float64),
                             max_iter=200)
    assert res.converged
    assert torch.allclose(res.params["w"], torch.tensor([1.0, 0.5], dtype=torch.float64))


def test_cholesky_failure_adds_damping_and_names_iteration():
    A = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)  # singular, PSD
    b = torch.tensor([1.0, 1.0], dtype=torch.float64)  # consistent: minimisers exist
    with pytest.warns(HandgradWarning, match=r"Newton iteration 0: Hessian not positive "
                                             r"definite.*--l2"):
        res = solvers.newton(_Quadratic(A, b), torch.zeros(2, dtype=torch.float64))
    assert res.converged and abs(res.params["w"].sum().item() - 1.0) < 1e-8


def test_line_search_is_capped():
    A = torch.eye(2, dtype=torch.float64)
    b = torch.ones(2, dtype=torch.float64)
    x0 = torch.zeros(2, dtype=torch.float64)

    def value(x):  # finite only at the start: every trial step fails
        return torch.tensor(0.0 if bool((x == 0).all()) else math.inf, dtype=torch.float64)

    calls = {"n": 0}
    obj = _Quadratic(A, b, value)
    orig = obj.value

    def counted(x):
        calls["n"] += 1
        return orig(x)

    obj.value = counted
    with pytest.warns(HandgradWarning, match="line search exhausted after 40 halvings"):
        res = solvers.newton(obj, x0)
    assert not res.converged and res.message == "line search exhausted"
    assert calls["n"] <= 1 + 41  # the start + the first trial + 40 halvings
    assert torch.equal(res.params["w"], x0)


@pytest.mark.parametrize("scale", [1e24])
@pytest.mark.parametrize("model, solver", [("logistic", "newton"), ("logistic", "gd"),
                                           ("least_squares", "closed"),
                                           ("least_squares", "newton")])
def test_extreme_magnitudes_no_nan_no_exception(runner, tmp_path, scale, model, solver):
    rows = [[a * scale, b, t] for a, b, t in logistic_rows()]
    path = write_csv(tmp_path / "big.csv", ["a", "b", "y"], rows)
    r = run(runner, "fit", model, "--solver", solver, "--data", path, "--target", "y",
            "--max-iter", "60", "--json")
    assert r.exit_code in (0, 1), r.stderr
    out = json.loads(r.stdout)
    if solver == "closed":  # column-scaled QR: exact at any scale, so no warning (it would be false)
        assert not any("ill-scaled" in w for w in out["warnings"]), out["warnings"]
        ref = json.loads(run(runner, "fit", model, "--data", write_csv(
            tmp_path / "plain.csv", ["a", "b", "y"], logistic_rows()), "--target", "y", "--json").stdout)
        got = out["coefficients"]["a"] * scale
        assert got == pytest.approx(ref["coefficients"]["a"], rel=1e-12)
    else:  # the scale is named with its remedy whatever the outcome
        assert any("ill-scaled" in w and "column 'a'" in w and "standardiz" in w
                   for w in out["warnings"]), out["warnings"]
    for k in ("loss", "grad_norm"):
        assert isinstance(out[k], float) and math.isfinite(out[k]), out[k]
    flat = [v for p in out["params"].values() for v in np.ravel(p)]
    assert all(isinstance(v, float) and math.isfinite(v) for v in flat)
    if r.exit_code == 1:
        assert "standardiz" in out["message"]


def test_overflowing_magnitudes_are_a_clear_user_error(runner, tmp_path):
    rows = [[a * 1e200, b, t] for a, b, t in logistic_rows()]
    path = write_csv(tmp_path / "huge.csv", ["a", "b", "y"], rows)
    user_error(runner, "fit", "logistic", "--data", path, "--target", "y",
               contains=("overflows", "column 'a'", "standardiz"))


def test_float32_range(runner, tmp_path):
    rows = [[a * 1e39, b, t] for a, b, t in logistic_rows()]
    path = write_csv(tmp_path / "f.csv", ["a", "b", "y"], rows)
    user_error(runner, "fit", "logistic", "--data", path, "--target", "y", "--dtype", "float32",
               contains=("float32", "--dtype float64", "column 'a'"))


# ------------------------------------------------------------------------- Gaussian MLE

needs_gaussian = pytest.mark.skipif("gaussian" not in REGISTRY, reason="gaussian not registered")


@needs_gaussian
@pytest.mark.parametrize("make, expect", [
    (lambda: np.random.default_rng(0).normal(size=(3, 5)), ("n = 3", "d = 5", "--l2")),
    (lambda: np.c_[np.random.default_rng(0).normal(size=(30, 2)), np.full(30, 7.0)],
     ("'c2'", "constant", "--l2")),
])
def test_gaussian_singular_covariance_named(runner, tmp_path, make, expect):
    X = make()
    path = write_csv(tmp_path / "g.csv", [f"c{j}" for j in range(X.shape[1])], X.tolist())
    user_error(runner, "fit", "gaussian", "--data", path, contains=expect)
    # shrinkage, the suggested remedy, makes it fit
    r = run(runner, "fit", "gaussian", "--data", path, "--l2", "0.1")
    assert r.exit_code == 0, r.stderr


@needs_gaussian
def test_gaussian_symmetric_convention_is_stated_and_checked():
    m = REGISTRY["gaussian"].model
    assert "symmetric" in m.check_note
    out = checker.check_models(["gaussian"], seeds=(0,))
    assert out["ok"], out


@needs_gaussian
def test_gaussian_loss_finite_where_det_underflows():
    d = 500
    assert torch.det(0.1 * torch.eye(d, dtype=torch.float64)).item() == 0.0  # the trap
    m = REGISTRY["gaussian"].model
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.normal(scale=0.3, size=(4, d)))
    data = Data(X, None)
    mu = torch.zeros(d, dtype=torch.float64)
    # by hand: log det(0.1 I) = d log 0.1; quadratic term 10 * sum_i ||x_i||^2 / n
    expect = d * math.log(0.1) + 10.0 * float((X * X).sum()) / len(X)
    keys = set(m.check_problems(0)[0][1])
    for params in ({"mu": mu, "Sigma": 0.1 * torch.eye(d, dtype=torch.float64)},
                   {"mu": mu, "L": math.sqrt(0.1) * torch.eye(d, dtype=torch.float64)}):
        if not set(params) - {"mu"} <= keys | {"L", "Sigma"}:
            continue
        val = m.loss(params, data).item()
        assert math.isfinite(val)
        # the loss is a sum or a mean over samples; both are pinned by hand
        per = [expect, expect * len(X)]
        assert min(abs(val - e) / abs(e) for e in per) < 1e-12, (val, per)


# ------------------------------------------------------------ numerics at breaking inputs


def _logistic_one(z: float, y: float):
    data = Data(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([y], dtype=torch.float64))
    return {"w": torch.tensor([z], dtype=torch.float64)}, data


@pytest.mark.parametrize("z, y, expect", [
    (1000.0, 0.0, 1000.0),               # softplus(1000) = 1000 + log(1 + e^-1000) = 1000
    (1000.0, 1.0, 0.0),                  # log(1 + e^-1000) -> 0 (e^-1000 below float64 min)
    (-1000.0, 1.0, 1000.0),
    (-1000.0, 0.0, 0.0),
    (-40.0, 0.0, math.exp(-40.0)),       # log1p(e^-40) = e^-40 (1 - e^-40/2 ...) ; naive: 0
    (37.0, 1.0, math.log1p(math.exp(-37.0))),
])
def test_logistic_loss_gradient_hessian_at_extreme_logits(z, y, expect):
    entry = REGISTRY["logistic"]
    params, data = _logistic_one(z, y)
    f = entry.loss(params, data).item()
    assert math.isfinite(f)
    assert abs(f - expect) <= 1e-15 * max(1.0, abs(expect)) or \
        (expect > 0 and abs(f - expect) / expect < 1e-13), (f, expect)
    g = entry.gradient(params, data)["w"].item()
    p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    assert math.isfinite(g) and abs(g - (p - y)) < 1e-15
    H = entry.hessian(params, data).item()
    # p(1-p) = e^-|z| / (1 + e^-|z|)^2, by hand
    e = math.exp(-abs(z))
    w = e / (1.0 + e) ** 2
    assert math.isfinite(H) and H >= 0
    assert (H == 0.0 and w < 1e-300) or abs(H - w) / w < 1e-13, (H, w)


def test_p_one_minus_p_positive_at_z_37():
    entry = REGISTRY["logistic"]
    params, data = _logistic_one(37.0, 1.0)
    H = entry.hessian(params, data).item()
    naive = torch.sigmoid(torch.tensor(37.0, dtype=torch.float64)).item()
    assert naive * (1 - naive) == 0.0  # the trap: the naive product is exactly 0
    exact = math.exp(-37.0) / (1.0 + math.exp(-37.0)) ** 2
    assert H > 0 and abs(H - exact) / exact < 1e-14


@pytest.mark.skipif("softmax" not in REGISTRY, reason="softmax not registered yet")
def test_softmax_of_equal_huge_logits():
    entry = REGISTRY["softmax"]
    data = Data(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([0]))
    params = {"W": torch.tensor([[1000.0], [1000.0]], dtype=torch.float64)}
    f = entry.loss(params, data).item()
    assert abs(f - math.log(2.0)) < 1e-15  # -log(e^1000 / (2 e^1000)) = log 2
    g = entry.gradient(params, data)["W"]
    assert torch.equal(g, torch.tensor([[-0.5], [0.5]], dtype=torch.float64))  # P - Y, exact
    if entry.has_hessian:
        H = entry.hessian(params, data)
        assert bool(torch.isfinite(H).all())
    p = torch.softmax(torch.tensor([1000.0, 1000.0], dtype=torch.float64), 0)
    assert p.tolist() == [0.5, 0.5]


# --------------------------------------------------------------------- checking gradients


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_float32_checks_use_float64_references(name, one_thread):
    """Hand derivatives computed in float32 agree with the float64 references to float32
    tolerances (softmax includes logits of several hundred, where p_k - p_k^2 would cancel)."""
    out = checker.check_models([name], dtype="float32", seeds=(0, 1))
    assert out["ok"], [p["label"] for p in out["models"][name]["problems"] if not p["ok"]]


def test_checks_turn_tf32_off():
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        checker.check_models(["least_squares"], seeds=(0,))
        assert torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False


@pytest.mark.skipif("two_layer" not in REGISTRY, reason="two_layer not registered yet")
def test_relu_check_points_are_away_from_the_kink():
    m = REGISTRY["two_layer"].model
    assert "kink" in m.check_note
    for seed in (0, 1):
        for label, params, data, hp in m.check_problems(seed):
            if hp.get("activation") != "relu":
                continue
            A1 = data.X @ params["W1"].T + (params["b1"] if "b1" in params else 0.0)
            assert A1.abs().min().item() >= 0.05 - 1e-12, label


# --------------------------------------------------------------------- interrupts, files


def test_ctrl_c_in_a_fit_returns_what_was_reached():
    calls = []

    def cb(k, entry):
        calls.append(entry["loss"])
        if k == 2:
            raise KeyboardInterrupt

    out = pipeline.fit("logistic", solver="gd", n_samples=200, callback=cb)
    assert out["interrupted"] is True and out["converged"] is False
    assert out["iterations"] == 2 and "interrupted at iteration 2" in out["message"]
    # the reported loss is the one at the reported parameters
    entry = REGISTRY["logistic"]
    data, _ = pipeline.get_data(entry, n_samples=200)
    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in out["params"].items()}
    assert abs(entry.loss(params, data).item() - out["loss"]) <= 1e-9 * abs(out["loss"])
    assert out["loss"] == calls[-1]


def test_ctrl_c_through_the_cli_exits_130(runner, monkeypatch):
    orig, n = solvers.Objective.evaluate, {"k": 0}

    def evaluate(self, x, **kw):  # Ctrl-C in the pass forming iteration 3's Hessian
        n["k"] += int(kw.get("hess", False))
        if n["k"] == 4:
            raise KeyboardInterrupt
        return orig(self, x, **kw)

    monkeypatch.setattr(solvers.Objective, "evaluate", evaluate)
    r = run(runner, "fit", "logistic", "--n-samples", "300")
    assert r.exit_code == 130
    assert "Traceback" not in r.stderr
    last = [ln for ln in r.stderr.splitlines() if ln.startswith("interrupted")]
    assert len(last) == 1 and "iteration 2" in last[0] and "loss" in last[0] and "|g|" in last[0]
    n["k"] = 0
    j = run(runner, "fit", "logistic", "--n-samples", "300", "--json")
    assert j.exit_code == 130 and json.loads(j.stdout)["interrupted"] is True


def test_input_file_never_modified(runner, good_csv, tmp_path):
    before = hashlib.sha256(open(good_csv, "rb").read()).hexdigest()
    mtime = os.stat(good_csv).st_mtime_ns
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'model = "logistic"\ndata = "{good_csv}"\ntarget = "y"\n')
    cfg_before = hashlib.sha256(cfg.read_bytes()).hexdigest()
    assert run(runner, "fit", "logistic", "--data", good_csv, "--target", "y").exit_code == 0
    assert run(runner, "run", cfg, "--json").exit_code == 0
    assert run(runner, "fit", "logistic", "--data", good_csv, "--target", "zz").exit_code == 2
    assert hashlib.sha256(open(good_csv, "rb").read()).hexdigest() == before
    assert os.stat(good_csv).st_mtime_ns == mtime
    assert hashlib.sha256(cfg.read_bytes()).hexdigest() == cfg_before


def test_atomic_write_whole_or_not_at_all(tmp_path):
    path = tmp_path / "out.json"
    io.write_json(path, {"a": 1.5, "nan": float("nan")})
    first = path.read_text()
    assert json.loads(first) == {"a": 1.5, "nan": "nan"}
    os.chmod(path, 0o640)
    with pytest.raises(TypeError):  # unserialisable: nothing touches the disk
        io.write_json(path, {"a": object()})
    for exc in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(exc), io.atomic_path(path) as tmp:
            with open(tmp, "w") as fh:
                fh.write('{"half": ')
            raise exc
    assert path.read_text() == first
    assert os.listdir(tmp_path) == ["out.json"]  # no temporary files left behind
    io.write_text(path, "new\n")
    assert path.read_text() == "new\n" and (os.stat(path).st_mode & 0o777) == 0o640
    with pytest.raises(UserError, match="does not exist"):
        io.write_text(tmp_path / "no" / "such" / "f.txt", "x")
    with pytest.raises(UserError, match="is a directory"):
        io.write_text(tmp_path, "x")


def test_atomic_path_keeps_the_extension(tmp_path):
    with io.atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "wb").write(b"\x89PNG")
    assert (tmp_path / "plot.png").read_bytes() == b"\x89PNG"


# -------------------------------------------------------------------- the --json contract


def test_every_error_path_gives_one_json_object(runner, tmp_path, monkeypatch, good_csv):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "nope"\n')
    cases = [
        (["fit", "nosuch"], 2),                                     # click: bad choice
        (["fit", "logistic", "--bogus"], 2),                        # click: unknown option
        (["fit", "logistic", "--max-iter", "-1"], 2),               # click: out of range
        (["check", "nosuch"], 2),
        (["fit", "logistic", "--data", good_csv, "--target", "q"], 2),  # UserError
        (["run", cfg], 2),                                          # config: unknown model
        (["run", tmp_path / "none.toml"], 2),                       # config: missing
        (["fit", "logistic", "--n-samples", "200", "--max-iter", "1"], 1),  # not converged
    ]
    for args, status in cases:
        r = run(runner, *args, "--json")
        assert r.exit_code == status, (args, r.exit_code, r.stderr)
        obj = json.loads(r.stdout)  # exactly one object, nothing else on stdout
        assert isinstance(obj, dict)
        if status == 2:
            assert obj == {"error": obj["error"], "status": 2}, obj

    def boom(*a, **k):
        raise RuntimeError("simulated fault\nsecond line")

    monkeypatch.setattr(pipeline, "fit", boom)
    r = run(runner, "fit", "logistic", "--json")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    obj = json.loads(r.stdout)
    assert obj["status"] == 1 and "simulated fault" in obj["error"] and "--debug" in obj["error"]
    r = run(runner, "fit", "logistic")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "internal error" in r.stderr


def test_debug_shows_the_traceback(runner, tmp_path):
    import handgrad.cli as cli

    r = runner.invoke(cli.main, ["--debug", "fit", "logistic", "--data",
                                 str(tmp_path / "none.csv"), "--target", "y"])
    assert isinstance(r.exception, UserError)  # propagated, so a traceback is printed


def test_warnings_are_not_printed_on_stdout_under_json(runner, tmp_path):
    r = run(runner, "fit", "logistic", "--data", _coll_csv(tmp_path), "--target", "y", "--json")
    json.loads(r.stdout)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "warning:" not in r.stdout


@pytest.mark.skipif("softmax" not in REGISTRY, reason="softmax not registered yet")
def test_softmax_hessian_positive_at_saturated_logits():
    # one sample, x = 1, logits (37, 0): the Hessian in W is p0 p1 [[1, -1], [-1, 1]] with
    # p0 p1 = e^-37 / (1 + e^-37)^2 by hand; the naive diagonal p0 - p0^2 rounds to 0,
    # which makes the 2x2 Hessian indefinite.
    entry = REGISTRY["softmax"]
    data = Data(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([0]))
    H = entry.hessian({"W": torch.tensor([[37.0], [0.0]], dtype=torch.float64)}, data)
    w = math.exp(-37.0) / (1.0 + math.exp(-37.0)) ** 2
    expect = torch.tensor([[w, -w], [-w, w]], dtype=torch.float64)
    assert torch.allclose(H, expect, rtol=1e-12, atol=0.0), H


def test_repeated_fallback_warnings_fold_into_one_line(runner, tmp_path):
    import handgrad.cli as cli

    folded = cli.fold_warnings([
        "Newton iteration 2: Hessian not positive definite; added damping 7.2e-08 I.",
        "Newton iteration 3: Hessian not positive definite; added damping 6.3e-08 I.",
        "standard errors withheld",
        "Newton iteration 4: Hessian not positive definite; added damping 6.2e-08 I.",
    ])
    assert folded == [
        "Newton iteration 2: Hessian not positive definite; added damping 7.2e-08 I. "
        "(again at iterations 3, 4)",
        "standard errors withheld",
    ]
    r = run(runner, "fit", "logistic", "--data", _coll_csv(tmp_path), "--target", "y")
    chol = [ln for ln in r.stderr.splitlines() if "Cholesky" in ln]
    assert len(chol) == 1  # the JSON keeps every one; the terminal gets one line


def test_float32_range_row_is_counted_like_the_csv_loader(tmp_path):
    rows = [[1.0, 0.0, 0], [1e39, 0.0, 1], [2.0, 1.0, 1]]
    path = write_csv(tmp_path / "f.csv", ["a", "b", "y"], rows)
    with pytest.raises(UserError, match=r"row 2, column 'a'"):
        pipeline.fit("logistic", data_path=path, target="y", dtype="float32")


def _direct_writes(path: str) -> list[str]:
    """Calls that write a file straight to its final name: open(..., "w"/"a"/"x"),
    np.save/np.savez/torch.save/.to_csv, or .savefig(x) with x not the temporary name."""
    import ast

    tree = ast.parse(open(path).read())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name == "open":
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax"):
                found.append(f"{os.path.basename(path)}:{node.lineno} open(..., {mode.value!r})")
        elif name in ("save", "savez", "savez_compressed", "to_csv", "savefig", "savetxt"):
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Name) and first.id == "tmp"):
                found.append(f"{os.path.basename(path)}:{node.lineno} {name}(...)")
    return found


def test_every_output_file_goes_through_handgrad_io(tmp_path):
    """Static guard: outside handgrad/io.py nothing writes a file straight to its final
    name (writes go through io.atomic_path / write_text / write_json: whole or not at all)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [os.path.join(root, "cli.py")]
    for folder in ("handgrad", "models", "derivations"):
        paths += [os.path.join(root, folder, n) for n in sorted(os.listdir(os.path.join(root, folder)))
                  if n.endswith(".py") and (folder, n) != ("handgrad", "io.py")]
    offenders = [hit for p in paths for hit in _direct_writes(p)]
    assert not offenders, offenders
    # and the guard itself catches a direct write
    probe = tmp_path / "probe.py"
    probe.write_text('open("out.json", "w").write("{}")\nfig.savefig("p.png")\n')
    assert len(_direct_writes(str(probe))) == 2


def _quasi_csv(tmp_path):
    # x separates the classes except two samples at x = 0, one of each class
    x = [v for v in np.linspace(-2, 2, 40) if abs(v) > 0.01]
    rows = [[v, int(v > 0)] for v in x] + [[0.0, 0], [0.0, 1]]
    return write_csv(tmp_path / "quasi.csv", ["x", "y"], rows)


def test_quasi_complete_separation_detected_and_l2_converges(runner, tmp_path):
    path = _quasi_csv(tmp_path)
    r = run(runner, "fit", "logistic", "--data", path, "--target", "y")
    assert r.exit_code == 1
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "quasi-complete separation" in err[0]
    assert "2 of 42 stay on the boundary" in err[0] and "does not exist" in err[0]
    assert "--l2" in err[0]
    k = run(runner, "fit", "logistic", "--data", path, "--target", "y", "--l2", "1", "--json")
    assert k.exit_code == 0 and json.loads(k.stdout)["converged"]


def test_far_outlier_is_not_called_separated(runner, tmp_path):
    """Probabilities at 0/1 for one far, correctly classified point trigger the exact
    (linear-programming) test, which must find the classes overlapping elsewhere."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] + 0.5 * rng.normal(size=80) > 0).astype(int)
    X[0], y[0] = [40.0, 0.0], 1
    path = write_csv(tmp_path / "o.csv", ["a", "b", "y"],
                     [[a, b, t] for (a, b), t in zip(X.tolist(), y.tolist())])
    out = pipeline.fit("logistic", data_path=path, target="y")
    assert out["converged"] and "separation" not in out
    z = X @ np.array([out["coefficients"]["a"], out["coefficients"]["b"]]) + \
        out["coefficients"]["intercept"]
    assert np.abs(z).max() > validate.QUASI_TRIGGER  # the exact test did run


def test_column_magnitudes_in_row_blocks_match_numpy():
    """validate.column_magnitudes reads X in ~4 MB row blocks (no n x d |X| temporary): the
    same max |x_ij| per column as numpy's, across block edges and for an empty X."""
    from handgrad.fitting import validate
    from handgrad.fitting.data import Data
    g = torch.Generator().manual_seed(0)
    for n in (0, 3, 150_001):
        X = torch.randn(n, 9, generator=g, dtype=torch.float64)
        if n > 100_000:
            X[149_999, 4] = -77.0  # the extreme in the last block, negative
        got = validate.column_magnitudes(Data(X, None)).numpy()
        want = np.abs(X.numpy()).max(axis=0) if n else np.zeros(9)
        assert np.array_equal(got, want), n


# ---------------------------------------------------- files, names, sizes, running, Ctrl-C
# (issue 24: each case used to end in "internal error", a traceback or a misleading line)


def test_seed_beyond_what_generators_take(runner):
    user_error(runner, "fit", "logistic", "--seed", str(2**70), contains=("--seed", "4294967295"))
    user_error(runner, "check", "logistic", "--seed", "-1", contains=("--seed",))


@pytest.mark.parametrize("args, contains", [
    (["fit", "logistic", "--n-samples", str(10**12)], ("1,000,000,000,000 rows", "--n-samples")),
    (["fit", "two_layer", "--hidden", str(10**12)], ("--hidden", "fewer hidden units")),
    (["derive", "--expr", "tr(A)", "--let", "A: 100000 x 100000", "--wrt", "A"],
     ("100000 x 100000", "memory")),
])
def test_sizes_beyond_memory_refused_before_allocating(runner, args, contains):
    user_error(runner, *args, contains=contains + ("available",))


def test_hg_sizes_beyond_memory(runner, tmp_path):
    big = tmp_path / "big.hg"
    big.write_text("let A: 100000 x 100000\nwrt A\nf = tr(A)\ndf = tr(dA)\n")
    user_error(runner, "derive", "--file", big, contains=("big.hg:1", "100000 x 100000"))
    hess = tmp_path / "hess.hg"  # a small X whose Hessian, (mn)^2 entries, is not small
    hess.write_text("let X: 300 x 300\nwrt X\nf = tr(X)\ndf = tr(dX)\nhess X = 0*eye\n")
    user_error(runner, "derive", "--file", hess, contains=("hess.hg:5", "90000 x 90000"))


def test_memory_check_reads_what_is_available(runner, monkeypatch):
    """The check compares with the memory available now: with 1 MB left, 100,000 rows x 5
    columns (4.8 MB) are refused; when the platform cannot say, nothing is refused."""
    from handgrad import errors

    monkeypatch.setattr(errors, "available_memory", lambda: 10**6)
    user_error(runner, "fit", "logistic", "--n-samples", "100000", contains=("4.8 MB", "1.0 MB"))
    monkeypatch.setattr(errors, "available_memory", lambda: None)
    assert run(runner, "fit", "logistic", "--n-samples", "300", "-q").exit_code == 0


def test_available_memory_is_a_plausible_number():
    from handgrad import errors

    avail = errors.available_memory()
    assert avail is None or 10**6 < avail < 10**16


def test_allocator_failure_is_a_one_line_error(runner, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 40000000000000 bytes.")

    monkeypatch.setattr(pipeline, "fit", boom)
    user_error(runner, "fit", "logistic", contains=("out of memory", "40 TB"))


def test_binary_hg_file_is_named(runner, tmp_path):
    f = tmp_path / "b.hg"
    f.write_bytes(b"let x: n\n\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
    user_error(runner, "derive", "--file", f, contains=("b.hg", "not a text file", "0xd0"))
    f.write_bytes(b"\x00\x00\x00")
    user_error(runner, "derive", "--file", f, contains=("not a text file", "NUL"))


def test_size_zero_declaration(runner, tmp_path):
    f = tmp_path / "z.hg"
    f.write_text("let x: 0\nwrt x\nf = sum(x)\ndf = sum(dx)\n")
    user_error(runner, "derive", "--file", f, contains=("z.hg:1", ">= 1", "got 0"))
    user_error(runner, "derive", "--expr", "x'*x", "--let", "x: 0", "--wrt", "x",
               contains=("got 0",))


def test_unknown_function_is_called_one(runner, tmp_path):
    f = tmp_path / "u.hg"
    f.write_text("let x: n\nwrt x\nf = sum(exq(x))\ndf = sum(dx)\n")
    msg = user_error(runner, "derive", "--file", f,
                     contains=("u.hg:3:9", "unknown function 'exq'", "did you mean 'exp'?"))
    assert "declare" not in msg
    f.write_text("let x: n\nwrt x\nf = sum(foo(x))\ndf = sum(dx)\n")
    assert "logsumexp" in user_error(runner, "derive", "--file", f)  # nothing near: the list
    f.write_text("let xs: n\nwrt xs\nf = sum(x)\ndf = sum(dxs)\n")  # a name, not a function
    user_error(runner, "derive", "--file", f,
               contains=("unknown name 'x'", "did you mean 'xs'?", "declare it with let"))


@pytest.mark.parametrize("body", ["import sys\nsys.exit(3)\n", "raise SystemExit('bye')\n",
                                  "import sys\nsys.exit(0)\n"])
def test_derive_file_that_exits_is_one_error(runner, tmp_path, body):
    f = tmp_path / "ex.py"
    f.write_text(body)
    user_error(runner, "derive", "--file", f, contains=("ex.py", "sys.exit"))


def test_derive_file_that_exits_inside_loss(runner, tmp_path):
    src = open(os.path.join(os.path.dirname(__file__), "..", "examples",
                            "my_derivation.py")).read()
    f = tmp_path / "late.py"
    f.write_text(src.replace("def loss(P, D):", "def loss(P, D):\n    import sys; sys.exit(5)"))
    user_error(runner, "derive", "--file", f, contains=("sys.exit(5)",))


def test_distributed_without_torchrun_is_refused(runner, monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    user_error(runner, "fit", "logistic", "--n-samples", "100", "--distributed",
               contains=("torchrun", "drop --distributed"))
    with pytest.raises(UserError, match="torchrun"):
        pipeline.fit("logistic", n_samples=100, distributed_run=True)


def test_ctrl_c_while_parsing_exits_130(runner, monkeypatch):
    import handgrad.cli as cli

    def convert(self, value, param, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.ModelName, "convert", convert)
    r = run(runner, "fit", "logistic")
    assert r.exit_code == 130 and r.stderr.strip() == "interrupted" and r.stdout == ""
    j = run(runner, "fit", "logistic", "--json")
    assert j.exit_code == 130 and json.loads(j.stdout) == {"error": "interrupted", "status": 130}


def test_ctrl_c_before_the_first_iteration_says_nothing_was_reached(runner, monkeypatch):
    def interrupted(self, x, **_):
        raise KeyboardInterrupt

    for method in ("value", "evaluate"):  # however the solver's first pass reads the loss
        monkeypatch.setattr(solvers.Objective, method, interrupted)
    r = run(runner, "fit", "logistic", "--n-samples", "200")
    last = r.stderr.strip().splitlines()[-1]
    assert r.exit_code == 130 and "before its first iteration" in last and "nan" not in last


def _sigint_when(marker: str, args: list[str], then: float = 0.0):
    """Start cli.py (-X importtime: a stderr line as each module finishes importing), send
    SIGINT once ``marker`` appears (plus ``then`` seconds); (status, stderr without the
    import lines)."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    p = subprocess.Popen([sys.executable, "-X", "importtime", "cli.py", *args], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    seen = []
    for line in p.stderr:
        seen.append(line)
        if marker in line:
            break
    time.sleep(then)
    p.send_signal(signal.SIGINT)
    _, rest = p.communicate(timeout=300)
    text = "".join(seen) + rest
    return p.returncode, [ln for ln in text.splitlines() if not ln.startswith("import time:")]


@pytest.mark.parametrize("marker, args, then", [
    ("click.core", ["check", "logistic"], 0.0),              # while handgrad.cli imports
    ("torch._C", ["check", "logistic"], 0.0),                # inside torch's import
    ("torch._C", ["fit", "logistic", "--solver", "gd", "--n-samples", "200000",
                  "--max-iter", "100000"], 2.0),             # later: importing or fitting
])
def test_ctrl_c_at_any_moment_exits_130(marker, args, then):
    status, lines = _sigint_when(marker, args, then)
    assert status == 130, lines
    assert not any("Traceback" in ln for ln in lines), lines
    assert lines and lines[-1].startswith("interrupted"), lines


# ---------------------------------------------------------------- Gaussian MLE, streamed


def _gaussian_file(tmp_path, n=1001, d=4):
    rng = np.random.default_rng(11)
    B = rng.normal(size=(d, d))
    X = 3.0 + rng.normal(size=(n, d)) @ B.T  # mean 3: far from 0, so a naive sum would cancel
    path = tmp_path / "g.npy"
    np.save(path, X)
    return X, str(path)


@needs_gaussian
@pytest.mark.parametrize("chunk", [1, 97, 5000])
def test_gaussian_closed_form_streams_with_chunk_rows(tmp_path, chunk):
    """fit gaussian --chunk-rows: mean and covariance as sums over row chunks, the closed form
    from them; equal to numpy's mean and biased covariance; the loss and the checked
    gradient it reports are those of the whole data (autograd of the loss on every row)."""
    X, path = _gaussian_file(tmp_path)
    out = pipeline.fit("gaussian", data_path=path, chunk_rows=chunk, device="cpu")
    C, m = np.cov(X, rowvar=False, bias=True), X.mean(0)
    S, mu = np.array(out["estimate"]["Sigma"]), np.array(out["estimate"]["mu"])
    assert np.abs(S - C).max() <= 1e-12 * np.abs(C).max() and np.abs(mu - m).max() <= 1e-12
    assert out["scale"]["method"].startswith("mean and covariance") and out["data"]["n"] == len(X)
    entry = REGISTRY["gaussian"]
    P = {"mu": torch.tensor(mu, requires_grad=True), "Sigma": torch.tensor(S, requires_grad=True)}
    f = entry.loss(P, Data(torch.tensor(X)))
    g = torch.autograd.grad(f, list(P.values()))
    assert abs(f.item() - out["loss"]) <= 1e-12 * abs(f.item())
    assert out["grad_norm"] <= 1e-10 and torch.cat([t.reshape(-1) for t in g]).norm() <= 1e-10
    # the held log-likelihood per row, against scipy on every row
    from scipy.stats import multivariate_normal

    ll = multivariate_normal(mean=m, cov=C).logpdf(X).mean()
    assert abs(out["train"]["log_likelihood"] - ll) <= 1e-10 * abs(ll)
    assert out["train"]["n"] == len(X)


@needs_gaussian
def test_gaussian_streamed_through_the_cli_and_in_memory_chunks(runner, tmp_path):
    X, path = _gaussian_file(tmp_path, n=300, d=3)
    a = json.loads(run(runner, "fit", "gaussian", "--data", path, "--json").stdout)
    b = json.loads(run(runner, "fit", "gaussian", "--data", path, "--chunk-rows", "64",
                       "--json").stdout)
    csv = write_csv(tmp_path / "g.csv", ["a", "b", "c"], X.tolist())
    c = json.loads(run(runner, "fit", "gaussian", "--data", csv, "--chunk-rows", "64",
                       "--json").stdout)
    for o in (b, c):
        for k in ("mu", "Sigma"):
            assert np.abs(np.array(a["estimate"][k]) - np.array(o["estimate"][k])).max() <= 1e-12
        assert abs(a["loss"] - o["loss"]) <= 1e-12 * abs(a["loss"])
    assert c["estimate_labels"]["Sigma"]["rows"] == ["a", "b", "c"]


@needs_gaussian
def test_gaussian_streamed_singular_named(runner, tmp_path):
    X = np.c_[np.random.default_rng(0).normal(size=(50, 2)), np.full(50, 0.1)]
    np.save(tmp_path / "c.npy", X)
    user_error(runner, "fit", "gaussian", "--data", tmp_path / "c.npy", "--chunk-rows", "7",
               contains=("'x2'", "constant", "--l2"))
    np.save(tmp_path / "s.npy", X[:3])
    user_error(runner, "fit", "gaussian", "--data", tmp_path / "s.npy", "--chunk-rows", "2",
               contains=("n = 3", "d = 3"))
    assert run(runner, "fit", "gaussian", "--data", tmp_path / "c.npy", "--chunk-rows", "7",
               "--l2", "0.1").exit_code == 0
    # gradient descent on the per-row average cannot be chunked: said, with the way that can
    user_error(runner, "fit", "gaussian", "--data", tmp_path / "c.npy", "--chunk-rows", "7",
               "--solver", "gd", "--l2", "0.1", contains=("--solver closed",))


def _gaussian_rank(rank: int, world: int, port: int, path: str, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    out = pipeline.fit("gaussian", data_path=path, chunk_rows=50, distributed_run=True,
                       device="cpu")
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump({"Sigma": out["estimate"]["Sigma"], "mu": out["estimate"]["mu"],
                   "n": out["data"]["n"], "world": out["distributed"]["world_size"],
                   "loss": out["loss"]}, fh)


@needs_gaussian
def test_gaussian_closed_form_across_two_processes(tmp_path):
    import socket

    import torch.multiprocessing as mp

    X, path = _gaussian_file(tmp_path, n=501, d=3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gaussian_rank, args=(2, port, path, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.load(open(tmp_path / f"rank{r}.json")) for r in (0, 1))
    C = np.cov(X, rowvar=False, bias=True)
    assert r0["world"] == 2 and r0["n"] == 501 and r0 == r1
    assert np.abs(np.array(r0["Sigma"]) - C).max() <= 1e-12 * np.abs(C).max()
    assert np.abs(np.array(r0["mu"]) - X.mean(0)).max() <= 1e-12


# ------------------------------------------------------------------------- running code


def test_help_and_readme_say_a_python_derivation_file_is_executed(runner):
    import handgrad.cli as cli
    from tests.conftest import ROOT

    helptext = " ".join(runner.invoke(cli.main, ["derive", "--help"]).stdout.split())
    assert "executed as Python" in helptext and "never run" in helptext
    readme = " ".join(open(os.path.join(ROOT, "README.md")).read().split())
    assert "A `.py` derivation file is executed as Python" in readme
    assert "only parsed, never executed" in readme
