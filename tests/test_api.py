"""The Python API (handgrad.fit, handgrad.check_gradient): the CLI's results on arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import handgrad
from handgrad.errors import UserError
from tests.conftest import invoke

TIMINGS = ("seconds",)


def _without_timings(d: dict) -> dict:
    d = {k: v for k, v in d.items() if k not in TIMINGS}
    d["scale"] = {k: v for k, v in d["scale"].items() if k not in ("load_seconds", "peak_rss_mb")}
    d["data"] = {k: v for k, v in d["data"].items() if k != "source"}
    return d


def _logistic_arrays(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ [1.0, -1.0, 0.5] + 0.3)))).astype(float)
    return X, y


def test_fit_to_dict_equals_the_cli_json_on_the_same_data(runner, tmp_path):
    X, y = _logistic_arrays()
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y)
    res = handgrad.fit("logistic", X, y, solver="newton")
    r, cli = invoke(runner, "fit", "logistic", "--newton", "--data", str(path), "--json")
    assert r.exit_code == 0, r.stderr
    assert _without_timings(res.to_dict()) == _without_timings(cli)
    assert res.converged and set(res.coefficients) == {"x0", "x1", "x2", "intercept"}
    assert res.std_errors["x0"] > 0
    text = res.summary()
    assert "log-likelihood" in text and "intercept" in text and "converged in" in text


def test_fit_takes_tensors_and_feature_names_and_validates_like_a_file():
    X, y = _logistic_arrays()
    res = handgrad.fit("logistic", torch.from_numpy(X), torch.from_numpy(y),
                       feature_names=["age", "income", "score"])
    assert list(res.coefficients) == ["age", "income", "score", "intercept"]
    with pytest.raises(UserError, match="Unknown model"):
        handgrad.fit("probit", X, y)
    X[5, 1] = np.nan
    with pytest.raises(UserError, match=r"NaN \(row 5"):
        handgrad.fit("logistic", X, y)


def test_fit_without_arrays_uses_the_synthetic_set():
    res = handgrad.fit("least_squares", n_samples=200, n_features=2)
    assert res.converged and "true_params" in res.to_dict()


def test_check_gradient_catches_a_transposed_gradient_and_names_the_worst_entry():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 4, generator=g, dtype=torch.float64)
    X = torch.randn(3, 4, generator=g, dtype=torch.float64)
    B = torch.randn(4, 4, generator=g, dtype=torch.float64)

    def f(X):
        return torch.trace(X.T @ A @ B.T) + (X * X).sum()

    # df = tr(B A^T dX) + 2 tr(X^T dX): the gradient is A B^T + 2 X
    good = handgrad.check_gradient(f, lambda X: A @ B.T + 2 * X, X)
    assert good and good.worst is None and "all checks passed" in good.report
    bad = handgrad.check_gradient(f, lambda X: A @ B + 2 * X, X)  # B transposed
    assert not bad and "CHECK FAILED" in bad.report
    assert bad.worst["parameter"] == "x" and len(bad.worst["index"]) == 2
    i, j = bad.worst["index"]
    truth = (A @ B.T + 2 * X)[i, j].item()
    assert bad.worst["reference"] == pytest.approx(truth, rel=1e-12)  # autograd's value


def test_check_gradient_several_inputs_and_wrong_shapes():
    a, x = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    ok = handgrad.check_gradient(lambda a, x: a @ torch.exp(x), lambda a, x: (torch.exp(x), a * torch.exp(x)),
                                 a, x, names=["a", "x"])
    assert ok
    wrong_shape = handgrad.check_gradient(lambda X: (X ** 2).sum(), lambda X: 2 * X.T,
                                          torch.randn(2, 3))
    assert not wrong_shape and "shape" in wrong_shape.report
    with pytest.raises(UserError, match="NaN"):
        handgrad.check_gradient(lambda x: x.sum(), lambda x: torch.ones_like(x),
                                torch.tensor([1.0, float("nan")]))
