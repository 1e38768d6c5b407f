"""One verifier core: the Python derivation format (derive --file F.py) and the notation
(.hg) judge the same planted mistakes the same way.  Each case is a derivation a student
could write; the reference for "right" and "wrong" is hand algebra stated in the case (a
non-symmetric A, a symmetric point, a tiny scale, a Hilbert matrix, a least-squares optimum),
checked against torch.autograd where it matters, never the verifier's own output."""

from __future__ import annotations

import textwrap

import torch

from handgrad.notation.verify import verify as verify_hg
from handgrad.verify import derive

F64 = torch.float64


def _py(tmp_path, body: str, name: str = "case.py") -> dict:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return derive.derive_file(str(p))


def _verdicts_py(rep: dict) -> list[str]:
    return [s["verdict"] for s in rep["derivations"][0]["steps"]]


def _verdicts_hg(rep: dict) -> list[str]:
    return [r["verdict"] for r in sorted(rep["lines"] + rep["readoff"], key=lambda r: r["index"])]


def hilbert(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=F64)
    return 1.0 / (i[:, None] + i[None, :] + 1)


# --- 1. radial directions: the user's stream is not the direction stream ------------------

RADIAL = """
import torch
def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, generator=g, dtype=torch.float64)  # drawn first: the old dP was x itself
    A = torch.randn(4, 4, generator=g, dtype=torch.float64)  # not symmetric
    return {"x": x}, {"A": A}
def loss(P, D):
    return P["x"] @ D["A"] @ P["x"]
STEPS = [
    ("f = x^T A x", "f", lambda P, D, dP: P["x"] @ D["A"] @ P["x"], "the function", "value"),
    ("df = LINE", "df", lambda P, D, dP: DF, "rule"),
]
"""


def test_radial_direction_does_not_hide_a_missing_transpose(tmp_path):
    """df = 2 x^T A dx is wrong for non-symmetric A (right: x^T (A + A^T) dx), but equal
    along dx = x, the direction the user's own stream gives at seed 0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, generator=g, dtype=F64)
    A = torch.randn(4, 4, generator=g, dtype=F64)
    assert torch.allclose(2 * x @ A @ x, x @ (A + A.T) @ x)  # along dx = x the two agree
    wrong = _py(tmp_path, RADIAL.replace("DF", '2 * P["x"] @ D["A"] @ dP["x"]'))
    right = _py(tmp_path, RADIAL.replace("DF", 'P["x"] @ (D["A"] + D["A"].T) @ dP["x"]'))
    assert _verdicts_py(wrong) == ["verified", "failed"] and not wrong["ok"]
    assert _verdicts_py(right) == ["verified", "verified"] and right["ok"]
    hg = "let x: n\nlet A: n x n\nwrt x\nf = x'*A*x\ndf = {}\ngrad x = (A + A')*x\n"
    given = [{"x": x.reshape(-1, 1), "A": A}]
    assert _verdicts_hg(verify_hg(hg.format("2*x'*A*dx"), inputs=given))[0] == "failed"
    assert _verdicts_hg(verify_hg(hg.format("x'*(A + A')*dx"), inputs=given)) == ["verified"] * 2


# --- 2. special points: the given point is moved -----------------------------------------

SPECIAL = """
import torch
def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(3, 3, generator=g, dtype=torch.float64)
    return {"X": B + B.T}, {}  # symmetric: tr(X dX) = tr(X^T dX) there
def loss(P, D):
    return torch.trace(P["X"] @ P["X"])
STEPS = [("df = LINE", "df", lambda P, D, dP: DF, "rule")]
"""


def test_special_given_point_is_not_the_only_evidence(tmp_path):
    """d tr(X X) = 2 tr(X dX); 2 tr(X^T dX) agrees only where X is symmetric, as every
    given point is: the moves of the variables reject it."""
    wrong = _py(tmp_path, SPECIAL.replace("DF", '2 * torch.trace(P["X"].T @ dP["X"])'))
    right = _py(tmp_path, SPECIAL.replace("DF", '2 * torch.trace(P["X"] @ dP["X"])'))
    s = wrong["derivations"][0]["steps"][0]
    assert s["verdict"] == "failed" and all("moved" in f["problem"] for f in s["failures"])
    assert right["ok"] and _verdicts_py(right) == ["verified"]
    B = torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    hg = "let X: n x n\nwrt X\nf = tr(X*X)\ndf = {}\ngrad X = 2*X'\n"
    given = [{"X": B + B.T}]
    assert _verdicts_hg(verify_hg(hg.format("2*tr(X'*dX)"), inputs=given))[0] == "failed"
    assert _verdicts_hg(verify_hg(hg.format("2*tr(X*dX)"), inputs=given)) == ["verified"] * 2
    # declared symmetric (SYMMETRIC in Python, `sym` in the notation), X^T = X is no slip
    declared = _py(tmp_path, SPECIAL.replace("DF", '2 * torch.trace(P["X"].T @ dP["X"])')
                   + 'SYMMETRIC = ["X"]\n')
    assert declared["ok"] and _verdicts_py(declared) == ["verified"]
    sym = hg.replace("n x n", "n x n sym")
    assert _verdicts_hg(verify_hg(sym.format("2*tr(X'*dX)"), inputs=given)) == ["verified"] * 2


# --- 3. tiny scale: the tolerance is relative to the terms, never max(1, |truth|) ---------

TINY = """
import torch
def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    x = 1e-6 * torch.randn(4, generator=g, dtype=torch.float64)
    a = 1e-6 * torch.randn(4, generator=g, dtype=torch.float64)
    return {"x": x}, {"a": a}
def loss(P, D):
    return (D["a"] @ P["x"]) ** 2
STEPS = [("df = LINE", "df", lambda P, D, dP: DF, "rule")]
"""


def test_tiny_scale_is_not_an_absolute_pass(tmp_path):
    """d (a^T x)^2 = 2 (a^T x) a^T dx ~ 1e-18 here; a factor 3 instead of 2 misses by
    1e-18, far below any absolute tolerance, and must still fail."""
    wrong = _py(tmp_path, TINY.replace("DF", '3 * (D["a"] @ P["x"]) * (D["a"] @ dP["x"])'))
    right = _py(tmp_path, TINY.replace("DF", '2 * (D["a"] @ P["x"]) * (D["a"] @ dP["x"])'))
    assert _verdicts_py(wrong) == ["failed"] and _verdicts_py(right) == ["verified"]
    g = torch.Generator().manual_seed(1)
    given = [{"x": 1e-6 * torch.randn(4, 1, generator=g, dtype=F64),
              "a": 1e-6 * torch.randn(4, 1, generator=g, dtype=F64)}]
    hg = "let x: n\nlet a: n\nwrt x\nf = (a'*x)^2\ndf = {}\ngrad x = 2*(a'*x)*a\n"
    assert _verdicts_hg(verify_hg(hg.format("3*(a'*x)*a'*dx"), inputs=given))[0] == "failed"
    assert _verdicts_hg(verify_hg(hg.format("2*(a'*x)*a'*dx"), inputs=given)) == ["verified"] * 2


# --- 4. an ill-conditioned point: a Hilbert matrix ----------------------------------------

HILBERT = """
import torch
def inputs(seed):
    i = torch.arange(8, dtype=torch.float64)
    X = 1.0 / (i[:, None] + i[None, :] + 1)  # Hilbert: cond ~ 1.5e10, inverse entries ~ 1e9
    g = torch.Generator().manual_seed(seed)
    return {"X": X}, {"a": torch.randn(8, generator=g, dtype=torch.float64),
                      "b": torch.randn(8, generator=g, dtype=torch.float64)}
def loss(P, D):
    return D["a"] @ torch.linalg.solve(P["X"], D["b"])
def _g(P, D):
    Xi = torch.linalg.inv(P["X"])
    return -torch.outer(Xi.T @ D["a"], Xi @ D["b"])
STEPS = [
    ("f = a^T X^-1 b", "f", lambda P, D, dP: D["a"] @ torch.linalg.solve(P["X"], D["b"]), "f", "value"),
    ("df = -a^T X^-1 dX X^-1 b", "df", lambda P, D, dP: -D["a"] @ torch.linalg.solve(
        P["X"], dP["X"] @ torch.linalg.solve(P["X"], D["b"])), "d(X^-1) = -X^-1 dX X^-1"),
    ("df = tr(G^T dX)", "df", lambda P, D, dP: FACTOR * (_g(P, D) * dP["X"]).sum(), "read off"),
]
"""


def test_correct_lines_at_a_hilbert_matrix_pass(tmp_path):
    """d(a^T X^-1 b) = -a^T X^-1 dX X^-1 b (hand); at a Hilbert matrix the values are ~1e9
    and rounding is cond(X) eps of the terms: the correct lines are not failed (the given
    point is inconclusive or agrees, the moves verify), a factor 1.001 still fails."""
    assert float(torch.linalg.cond(hilbert(8))) > 1e10
    right = _py(tmp_path, HILBERT.replace("FACTOR", "1.0"))
    assert right["ok"] and _verdicts_py(right) == ["verified"] * 3, right["derivations"][0]["steps"]
    wrong = _py(tmp_path, HILBERT.replace("FACTOR", "1.001"))
    assert _verdicts_py(wrong) == ["verified", "verified", "failed"]
    g = torch.Generator().manual_seed(0)
    given = [{"X": hilbert(8), "a": torch.randn(8, 1, generator=g, dtype=F64),
              "b": torch.randn(8, 1, generator=g, dtype=F64)}]
    hg = ("let X: n x n invertible\nlet a: n\nlet b: n\nwrt X\nf = a'*inv(X)*b\n"
          "df = -(a'*inv(X)*dX*inv(X)*b)\ngrad X = {}\n")
    rep = verify_hg(hg.format("-(inv(X)'*a*b'*inv(X)')"), inputs=given)
    assert _verdicts_hg(rep) == ["verified"] * 2, rep["lines"] + rep["readoff"]
    assert _verdicts_hg(verify_hg(hg.format("-1.001*(inv(X)'*a*b'*inv(X)')"), inputs=given))[1] == "failed"


# --- 5. a least-squares optimum with y in the millions -------------------------------------

OPTIMUM = """
import torch
def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = 1e6 * (3 + torch.randn(40, generator=g, dtype=torch.float64))
    w = torch.linalg.lstsq(X, y.reshape(-1, 1)).solution.reshape(-1)  # the optimum: grad ~ 0
    return {"w": w}, {"X": X, "y": y}
def loss(P, D):
    r = D["X"] @ P["w"] - D["y"]
    return r @ r
def r(P, D):
    return D["X"] @ P["w"] - D["y"]
STEPS = [
    ("f = r^T r", "f", lambda P, D, dP: r(P, D) @ r(P, D), "f", "value"),
    ("df = 2 r^T X dw", "df", lambda P, D, dP: FACTOR * r(P, D) @ D["X"] @ dP["w"], "chain"),
]
"""


def test_correct_lines_at_an_optimum_with_large_data_pass(tmp_path):
    """d ||X w - y||^2 = 2 (X w - y)^T X dw (hand).  At the least-squares w that is 0 up to
    rounding of terms ~1e13: inconclusive there, verified at the moved points; a factor 3
    instead of 2 fails at the moved points."""
    right = _py(tmp_path, OPTIMUM.replace("FACTOR", "2"))
    assert right["ok"] and _verdicts_py(right) == ["verified", "verified"], right["derivations"][0]["steps"]
    wrong = _py(tmp_path, OPTIMUM.replace("FACTOR", "3"))
    assert _verdicts_py(wrong) == ["verified", "failed"]
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 3, generator=g, dtype=F64)
    y = 1e6 * (3 + torch.randn(40, 1, generator=g, dtype=F64))
    w = torch.linalg.lstsq(X, y).solution
    hg = ("let X: m x n\nlet y: m\nlet w: n\nwrt w\nf = (X*w - y)'*(X*w - y)\ndf = {}\n"
          "grad w = 2*X'*(X*w - y)\n")
    given = [{"X": X, "y": y, "w": w}]
    assert _verdicts_hg(verify_hg(hg.format("2*(X*w - y)'*X*dw"), inputs=given)) == ["verified"] * 2
    assert _verdicts_hg(verify_hg(hg.format("3*(X*w - y)'*X*dw"), inputs=given))[0] == "failed"


# --- 6. a torch exception in a line is an evaluation error, not a wrong line ---------------

RAISES = """
import torch
def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    return {"X": torch.randn(3, 3, generator=g, dtype=torch.float64)}, {}
def loss(P, D):
    return torch.trace(P["X"] @ P["X"])
STEPS = [
    ("df = 2 tr(X dX)", "df", lambda P, D, dP: 2 * torch.trace(P["X"] @ dP["X"][:2]), "typo: dX[:2]"),
    ("df = 2 tr(X dX)", "df", lambda P, D, dP: 2 * torch.trace(P["X"] @ dP["X"]), "product rule"),
]
"""


def test_an_exception_in_a_line_is_an_evaluation_error(tmp_path):
    rep = _py(tmp_path, RAISES)
    d = rep["derivations"][0]
    assert _verdicts_py(rep) == ["error", "verified"] and not rep["ok"]
    assert d["failed_lines"] == [] and d["first_failed_line"] is None and d["error_lines"] == [1]
    assert "RuntimeError" in d["steps"][0]["reason"]
    text = derive.format_text(rep)
    assert "first wrong line" not in text and "could not be evaluated" in text
    hg = "let X: n x n invertible\nwrt X\nf = logdet(X)\ndf = tr(inv(X - X)*dX)\n   = tr(inv(X)*dX)\n"
    rep = verify_hg(hg)
    assert _verdicts_hg(rep) == ["error", "verified"] and rep["first_wrong"] is None


# --- the three-way checker uses the same tolerance function ---------------------------------

def test_checker_tolerance_is_relative_not_an_absolute_floor_of_one():
    """f = 1e-12 x^T x has gradient 2e-12 x (hand); 3e-12 x misses by 1e-12 |x|, below the
    old floor atol * max(1, |ref|) = 1e-11, and must fail against autograd."""
    from handgrad.verify import checker

    x = torch.randn(5, generator=torch.Generator().manual_seed(2), dtype=F64)

    def f(x):
        return 1e-12 * (x @ x)
    right = checker.check_function(f, lambda x: 2e-12 * x, {"x": x})
    wrong = checker.check_function(f, lambda x: 3e-12 * x, {"x": x})
    assert right.ok
    bad = {(c.quantity, c.hand_vs) for c in wrong.comparisons if not c.ok}
    assert ("gradient", "autograd") in bad
