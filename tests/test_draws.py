"""Draws that cover the domain: invertible matrices with both signs of det; a draw where f
is not defined is replaced (and said, with the declaration that would help); points given
with --at count.  References: hand-derived gradients evaluated here in plain torch, and
the sign of det computed here, never the verifier's own output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handgrad.notation.auto import derive_expression
from handgrad.notation.sampling import draw_value
from handgrad.notation.textfile import parse_text
from handgrad.notation.verify import verify
from tests.conftest import invoke

F64 = torch.float64


def _rows(rep):
    return sorted(rep["lines"] + rep["readoff"], key=lambda r: r["index"])


def test_invertible_draws_have_both_signs_of_det():
    d = parse_text("let X: n x n invertible\nlet S: n x n sym invertible\nwrt X\nf = det(X)\n")
    gen = torch.Generator().manual_seed(7)
    for name in ("X", "S"):
        signs = {bool(torch.linalg.det(draw_value(d.decls[name], {"n": n}, gen, negative_det=k % 2 == 1)) > 0)
                 for k, n in enumerate((2, 3, 4, 5))}
        assert signs == {True, False}, name
    S = draw_value(d.decls["S"], {"n": 4}, gen, negative_det=True)
    assert torch.allclose(S, S.mT) and torch.linalg.det(S) < 0
    assert torch.linalg.cond(S) < 1e3  # still generic: well conditioned


@pytest.mark.parametrize("wrong, right", [
    ("abs(det(X))*tr(inv(X)*dX)", "det(X)*tr(inv(X)*dX)"),  # |det X| written for det X
])
def test_abs_det_for_det_is_rejected(wrong, right):
    """d det X = det X tr(X^-1 dX) (hand); |det X| agrees only where det X > 0."""
    hg = "let X: n x n invertible\nwrt X\nf = det(X)\ndf = {}\ngrad X = det(X)*inv(X)'\n"
    assert [r["verdict"] for r in _rows(verify(hg.format(wrong)))][0] == "failed"
    assert [r["verdict"] for r in _rows(verify(hg.format(right)))] == ["verified", "verified"]


def test_log_det_for_logdet_is_rejected():
    """logdet(X) = log|det X|; log(det(X)) is not a number where det X < 0, where f is."""
    hg = "let X: n x n invertible\nwrt X\nf = logdet(X)\n  = {}\ndf = tr(inv(X)*dX)\ngrad X = inv(X)'\n"
    bad = verify(hg.format("log(det(X))"))
    assert [r["verdict"] for r in _rows(bad)] == ["failed", "verified", "verified"]
    assert bad["first_wrong"]["text"] == "log(det(X))" and "not finite" in bad["first_wrong"]["reason"]
    assert verify(hg.format("log(abs(det(X)))"))["verdict"] == "verified"


def test_log_det_undeclared_is_verified_where_defined_and_hints_the_declaration():
    rep = derive_expression("log(det(X))", "X: n x n", "X")
    assert rep["verdict"] == "verified" and rep["ok"]
    assert any("declare X spd" in r and "logdet(X)" in r for r in rep["checked_at"]["redrawn"])


def _hand_grads(X, a):
    """Hand-derived gradients (denominator layout) of the three functions of X'X."""
    Si = torch.linalg.inv(X.T @ X)
    return {"logdet(X'*X)": 2 * X @ Si,
            "tr(inv(X'*X))": -2 * X @ Si @ Si,
            "a'*inv(X'*X)*a": -2 * X @ Si @ a @ a.T @ Si}


@pytest.mark.parametrize("expr", ["logdet(X'*X)", "tr(inv(X'*X))", "a'*inv(X'*X)*a"])
def test_functions_of_XtX_are_verified_and_their_gradient_is_right_at_given_arrays(runner, tmp_path, expr):
    rep = derive_expression(expr, "X: m x n; a: n", "X")
    assert rep["verdict"] == "verified", [(r["lhs"], r["verdict"], r["reason"]) for r in _rows(rep)]
    assert all(p["sizes"]["m"] >= p["sizes"]["n"] for p in rep["checked_at"]["points"])
    for r in rep["checked_at"]["redrawn"]:
        assert "m >= n is needed for X'*X to be invertible" in r
    g = torch.Generator().manual_seed(3)
    X, a = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(3, 1, generator=g, dtype=F64)
    path = tmp_path / "p.npz"
    np.savez(path, X=X.numpy(), a=a.numpy().reshape(-1))
    r, out = invoke(runner, "derive", "--expr", expr, "--let", "X: m x n; a: n", "--wrt", "X",
                    "--at", str(path), "--json")
    assert r.exit_code == 0, r.stdout[-2000:]
    got = torch.tensor(out["gradient_at"]["X"], dtype=F64)
    assert torch.allclose(got, _hand_grads(X, a)[expr], rtol=1e-10, atol=1e-12)
    assert out["checked_at_given"]["verdict"] == "verified"


def test_no_defined_draw_says_which_declaration_would_help():
    """X'*X with X 2 x 3 is singular at every draw: no line is called wrong, and the
    report says 2 >= 3 would be needed."""
    rep = verify("let X: 2 x 3\nwrt X\nf = logdet(X'*X)\ndf = tr(inv(X'*X)*(dX'*X + X'*dX))\n")
    assert rep["first_wrong"] is None and rep["verdict"] != "failed"
    assert "2 >= 3 is needed for X'*X to be invertible" in rep["function"]["errors"][0]


def test_given_points_count_when_no_draw_is_defined(runner, tmp_path):
    """sum(log(x)) with x undeclared: few draws are defined; at the user's positive x the
    derivation is verified, and derive exits 0."""
    path = tmp_path / "x.npz"
    np.savez(path, x=np.array([0.5, 1.5, 2.0, 3.0]))
    r, out = invoke(runner, "derive", "--expr", "sum(log(x))", "--let", "x: n", "--wrt", "x",
                    "--at", str(path), "--json")
    assert r.exit_code == 0 and out["checked_at_given"]["verdict"] == "verified"
    assert out["gradient_at"]["x"] == [[1 / 0.5], [1 / 1.5], [1 / 2.0], [1 / 3.0]]
    assert any("declare x positive" in s for s in out["checked_at"]["redrawn"])
