"""derive --at FILE.npz: the derived gradient and Hessian at the user's arrays (numpy is the
reference), verified there too; missing or mis-shaped arrays are one line, exit 2."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import invoke

LS = ["--expr", "norm2(X*w - y)^2", "--let", "X: n x d; y: n; w: d", "--wrt", "w"]


@pytest.fixture
def point(tmp_path):
    rng = np.random.default_rng(7)
    X, y, w = rng.standard_normal((7, 3)), rng.standard_normal(7), rng.standard_normal(3)
    path = tmp_path / "point.npz"
    np.savez(path, X=X, y=y, w=w)
    return str(path), X, y, w


def test_expr_at_gives_gradient_and_hessian(runner, point):
    path, X, y, w = point
    r, out = invoke(runner, "derive", *LS, "--hessian", "--at", path, "--json")
    assert r.exit_code == 0, r.stderr
    g = np.array(out["gradient_at"]["w"])
    assert g.shape == (3, 1)  # a column, as the notation's vectors
    np.testing.assert_allclose(g[:, 0], 2 * X.T @ (X @ w - y), rtol=1e-12)
    np.testing.assert_allclose(np.array(out["hessian_at"]["w"]), 2 * X.T @ X, rtol=1e-12)
    assert out["value_at"] == pytest.approx(float(np.sum((X @ w - y) ** 2)), rel=1e-13)
    assert out["checked_at_given"]["verdict"] == "verified" and out["ok"]
    assert out["checked_at_given"]["points"][0]["origin"] == "given 0"
    for key in ("lines", "readoff", "hg", "gradient", "hessian", "steps", "verdict"):
        assert key in out  # derive --expr's keys are kept
    assert out["steps"][0]["verdict"] == "verified"


def test_gradient_text_pastes_back(runner, point):
    """The gradient is printed in the input syntax: parsed and evaluated again, it gives the
    same numbers (logistic: X'(sigma(Xw) - y), numpy reference)."""
    from handgrad.notation import evaluate

    path, X, y, w = point
    y01 = (y > 0).astype(float)
    np.savez(path, X=X, y=y01, w=w)
    r, out = invoke(runner, "derive", "--expr", "sum(log(vector(1) + exp(X*w))) - y'*X*w",
                    "--let", "X: n x d; y: n; w: d", "--wrt", "w", "--at", path, "--json")
    assert r.exit_code == 0
    p = 1 / (1 + np.exp(-X @ w))
    np.testing.assert_allclose(np.array(out["gradient_at"]["w"])[:, 0], X.T @ (p - y01),
                               rtol=1e-12)
    again = evaluate(out["gradient"]["w"], {"X": X, "y": y01, "w": w})
    np.testing.assert_allclose(again.numpy()[:, 0], X.T @ (p - y01), rtol=1e-12)
    assert out["hessian_at"] is None  # not asked for


def test_text_output_says_where_it_was_checked(runner, point):
    path, *_ = point
    r, _ = invoke(runner, "derive", *LS, "--at", path)
    assert r.exit_code == 0
    assert "grad w = [[" in r.stdout
    assert "checked at your arrays and 2 random perturbations" in r.stdout


def test_file_at(runner, point):
    path, X, y, w = point
    r, out = invoke(runner, "derive", "--file", "examples/least_squares.hg", "--at", path,
                    "--json")
    assert r.exit_code == 0, r.stderr
    np.testing.assert_allclose(np.array(out["gradient_at"]["w"])[:, 0], 2 * X.T @ (X @ w - y),
                               rtol=1e-12)
    assert out["gradient"]["w"] == "2*X'*(X*w - y)"


def test_wrong_file_at_given_point_fails(runner, point, tmp_path):
    path, *_ = point
    bad = tmp_path / "bad.hg"
    bad.write_text("let X: m x n\nlet y: m\nlet w: n\nwrt w\nl = norm2(X*w - y)^2\n"
                   "grad w = X'*(X*w - y)\n")  # the factor 2 is missing
    r, out = invoke(runner, "derive", "--file", str(bad), "--at", path, "--json")
    assert r.exit_code == 1 and not out["ok"]
    assert out["checked_at_given"]["verdict"] == "failed"
    assert out["checked_at_given"]["first_wrong"]["lhs"] == "grad w"


@pytest.mark.parametrize("arrays,needle", [
    ({"X": (7, 3), "w": (3,)}, "no array 'y' for `let y: n`"),
    ({"X": (7, 3), "y": (6,), "w": (3,)}, "y is 6 (1-D), which does not fit `let y: n` (n = 7 from X"),
    ({"X": (7, 3), "y": (7,), "w": (1, 3)}, "w is 1x3 (2-D), which does not fit `let w: d`"),
    ({"X": (7, 3, 1), "y": (7,), "w": (3,)}, "X is 3-D"),
], ids=["missing", "wrong-length", "row-not-column", "3-D"])
def test_bad_arrays_are_one_line_exit_2(runner, tmp_path, arrays, needle):
    path = tmp_path / "p.npz"
    np.savez(path, **{k: np.ones(s) for k, s in arrays.items()})
    r, _ = invoke(runner, "derive", *LS, "--at", str(path))
    assert r.exit_code == 2
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_at_needs_expr_or_hg(runner, point):
    path, *_ = point
    r, _ = invoke(runner, "derive", "logistic", "--at", path)
    assert r.exit_code == 2 and "--at FILE.npz goes with" in r.stderr
