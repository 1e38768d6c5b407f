"""The text derivation format and its verifier: true derivations accepted, each planted
mistake rejected at the right line, rounding-level lines inconclusive, and the verdicts
backed by torch.autograd computed here, independently of the notation's evaluator."""

import json
from pathlib import Path

import pytest
import torch

from handgrad.notation import NotationError, derive_text_file, parse_text, verify

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# file -> (overall verdict, line number of the first wrong line, or None)
EXPECTED = {
    "aXb.hg": ("verified", None),
    "a_exp_Xb.hg": ("verified", None),
    "least_squares.hg": ("verified", None),
    "quadratic_form.hg": ("verified", None),
    "quadratic_form_sym.hg": ("verified", None),
    "residual_norm.hg": ("verified", None),
    "logdet.hg": ("verified", None),
    "trace_logdet.hg": ("verified", None),
    "logistic.hg": ("verified", None),
    "logistic_bias.hg": ("verified", None),
    "trace_AXBXC.hg": ("verified", None),
    "inverse_differential.hg": ("verified", None),
    "gaussian_mle_spd.hg": ("verified", None),
    "gaussian_density.hg": ("verified", None),
    "kron_hessian.hg": ("verified", None),
    "jacobian_A_exp_x.hg": ("verified", None),
    "matrix_by_matrix_XAX.hg": ("verified", None),
    "wrong_kron_order.hg": ("failed", 8),
    "wrong_symmetric_slip.hg": ("failed", 7),
    "wrong_scalar_rule_square.hg": ("failed", 6),
    "wrong_scalar_rule_inverse.hg": ("failed", 5),
    "wrong_sign_inverse.hg": ("failed", 6),
    "wrong_readoff_shape.hg": ("failed", 9),
    "wrong_readoff_transposed.hg": ("failed", 8),
    "wrong_dropped_term.hg": ("failed", 8),
    "wrong_tiny_gaussian.hg": ("failed", 6),
    "wrong_least_squares_readoff.hg": ("failed", 8),
    "wrong_not_linear.hg": ("failed", 5),
    "wrong_hessian_row_major.hg": ("failed", 8),
    "inconclusive_undefined.hg": ("inconclusive", None),
    "error_evaluation.hg": ("error", None),
    "inconclusive_zero.hg": ("inconclusive", None),
}


def test_every_example_has_an_expected_verdict():
    assert sorted(p.name for p in EXAMPLES.glob("*.hg")) == sorted(EXPECTED)
    assert sum(v == "verified" for v, _ in EXPECTED.values()) >= 15


@pytest.fixture(scope="module")
def reports():
    return {name: derive_text_file(str(EXAMPLES / name)) for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_verdict(reports, name):
    verdict, first_wrong = EXPECTED[name]
    r = reports[name]
    assert r["verdict"] == verdict
    assert r["ok"] == (verdict == "verified")
    rows = r["lines"] + r["readoff"]
    if verdict == "verified":
        assert all(row["verdict"] == "verified" for row in rows)
        assert r["first_wrong"] is None
    if first_wrong is not None:
        assert r["first_wrong"]["source"].endswith(f"{name}:{first_wrong}")
        # lines above the first wrong one keep their own marks
        above = [row for row in rows if int(row["source"].rsplit(":", 1)[1]) < first_wrong]
        assert all(row["verdict"] == "verified" for row in above)
    json.dumps(r, allow_nan=False)


def test_report_layout(reports):
    r = reports["trace_logdet.hg"]
    assert r["title"] == "f(X) = tr(X' A X) + log|X|"
    assert "denominator" in r["layout"]
    row = r["lines"][0]
    assert set(row) >= {"index", "text", "latex", "mathml", "rule", "verdict", "residual", "tol", "reason",
                        "source"}
    assert row["rule"] == "product rule" and row["source"].endswith("trace_logdet.hg:6")
    assert row["text"] == "tr(dX'*A*X + X'*A*dX) + tr(inv(X)*dX)"  # printed from the checked tree
    pts = r["checked_at"]["points"]
    assert len(pts) >= 3 and r["checked_at"]["directions_per_point"] >= 2
    assert len({p["sizes"]["n"] for p in pts}) >= 2                # several sizes for a letter


def test_symmetric_convention_is_printed(reports):
    conv = " ".join(reports["gaussian_mle_spd.hg"]["conventions"])
    assert "symmetric" in conv and "(G + G^T)/2" in conv


def test_shape_failures_name_the_layout(reports):
    row = reports["wrong_readoff_shape.hg"]["readoff"][0]
    assert row["reason"] == ("grad X = B*A is (5 x 3), but X is (3 x 5); in the denominator layout the "
                             "gradient has X's shape")


def test_nonlinear_line_is_named_as_such(reports):
    assert "not linear in the differentials" in reports["wrong_not_linear.hg"]["first_wrong"]["reason"]


def test_errors_name_the_line(reports):
    r = reports["error_evaluation.hg"]
    assert r["first_error"]["source"].endswith("error_evaluation.hg:5")
    assert r["first_error"]["reason"].startswith("evaluation error")
    assert [row["verdict"] for row in r["lines"] + r["readoff"]] == ["error", "verified", "verified"]



def test_draws_where_f_is_undefined_are_replaced_with_the_declaration_that_helps(reports):
    """log(x) for x not declared positive: a random x has a negative entry at most draws;
    those are replaced, said, with the hint, and no line is called wrong."""
    r = reports["inconclusive_undefined.hg"]
    assert not r["function"]["errors"] and r["first_wrong"] is None
    assert all(row["verdict"] in ("verified", "inconclusive") for row in r["lines"] + r["readoff"])
    said = " ".join(r["checked_at"]["redrawn"])
    assert "f is not finite" in said and "declare x positive" in said
    fixed = verify(open(EXAMPLES / "inconclusive_undefined.hg").read().replace("x: n", "x: n positive"))
    assert fixed["verdict"] == "verified" and not fixed["checked_at"]["redrawn"]


def test_rounding_level_line_is_inconclusive(reports):
    rows = reports["inconclusive_zero.hg"]["lines"]
    assert [row["verdict"] for row in rows] == ["inconclusive", "inconclusive"]
    assert "rounding level" in rows[0]["reason"]


# -- independent references: torch.autograd on hand-written torch, not the notation's evaluator

def _autograd(f, X):
    X = X.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(X), X)
    return g


def test_autograd_agrees_the_symmetric_slip_is_wrong():
    gen = torch.Generator().manual_seed(1)
    X, A = (torch.randn(4, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    g = _autograd(lambda X: torch.trace(X.T @ A @ X), X)
    assert not torch.allclose(g, 2 * A @ X)                    # what the wrong file claims
    torch.testing.assert_close(g, (A + A.T) @ X)               # what the right file claims


def test_autograd_agrees_with_the_true_examples():
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(3, 3, generator=gen, dtype=torch.float64) + 3 * torch.eye(3, dtype=torch.float64)
    A = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    g = _autograd(lambda X: torch.trace(X.T @ A @ X) + torch.logdet(X), X)
    torch.testing.assert_close(g, (A + A.T) @ X + torch.inverse(X).T)
    m = torch.randn(3, 1, generator=gen, dtype=torch.float64)
    X2, y = torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(5, 1, generator=gen,
                                                                             dtype=torch.float64)
    g = _autograd(lambda w: (torch.nn.functional.softplus(X2 @ w) - y * (X2 @ w)).sum(), m)
    torch.testing.assert_close(g, X2.T @ (torch.sigmoid(X2 @ m) - y))


def test_tiny_magnitude_is_not_an_absolute_pass():
    """df ~ 1e-20: an absolute tolerance max(1, |truth|) would accept the wrong factor."""
    gen = torch.Generator().manual_seed(3)
    x, mu = (torch.randn(20, generator=gen, dtype=torch.float64) for _ in range(2))
    dens = lambda x: (2 * torch.pi) ** -10 * torch.exp(-(x - mu) @ (x - mu) / 2)  # noqa: E731
    g = _autograd(dens, x)
    wrong = 2 * dens(x) * (x - mu)
    assert (wrong - g).abs().max() < 1e-9           # what an absolute tolerance would have accepted
    torch.testing.assert_close(g, -dens(x) * (x - mu), rtol=1e-12, atol=0)


TEXT = """
let X: n x n
let A: n x n
wrt X
f = tr(X'*A*X)
grad X = X*(A + A')
"""


def test_given_points_are_perturbed():
    """At X = I the wrong read-off X (A + A') equals (A + A') X; a perturbation catches it."""
    gen = torch.Generator().manual_seed(4)
    point = {"X": torch.eye(3, dtype=torch.float64),
             "A": torch.randn(3, 3, generator=gen, dtype=torch.float64)}
    only = verify(TEXT, inputs=[point], perturbations=0)
    assert only["verdict"] == "inconclusive"     # one point is not enough to say verified
    assert only["readoff"][0]["reason"] == "conclusive at 1 point(s) only; verified needs 2"
    r = verify(TEXT, inputs=[point])
    assert r["verdict"] == "failed"
    assert [p["origin"] for p in r["checked_at"]["points"]] == ["given 0", "perturbed 1 from given 0",
                                                                 "perturbed 2 from given 0"]
    assert "at point 1" in r["readoff"][0]["reason"] or "at point 2" in r["readoff"][0]["reason"]


def test_given_points_in_the_models_shapes():
    text = (EXAMPLES / "logistic_bias.hg").read_text()
    gen = torch.Generator().manual_seed(5)
    point = {"X": torch.randn(30, 4, generator=gen, dtype=torch.float64),
             "y": (torch.rand(30, generator=gen) < 0.5).double(),
             "w": torch.zeros(4, dtype=torch.float64), "b": torch.tensor(0.0, dtype=torch.float64)}
    r = verify(text, inputs=[point])
    assert r["ok"], r
    assert r["checked_at"]["points"][0]["sizes"] == {"m": 30, "n": 4}
    with pytest.raises(NotationError, match="does not fit"):
        verify(text, inputs=[dict(point, w=torch.zeros(5, dtype=torch.float64))])


def test_draws_do_not_touch_or_depend_on_the_global_stream():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    r0 = verify(TEXT)
    assert torch.equal(before, torch.random.get_rng_state())
    torch.manual_seed(123)
    r1 = verify(TEXT)
    assert r0 == r1


def test_correct_line_with_large_cancelling_terms_passes():
    text = """
let X: n x n
let A: n x n
wrt X
f = tr(A'*X)
df = tr((A + 1e5*X)'*dX) - 1e5*tr(X'*dX)
grad X = A
"""
    r = verify(text)
    assert [row["verdict"] for row in r["lines"]] == ["verified"]


@pytest.mark.parametrize("text, message", [
    ("let X: n x n\nwrt Y\nf = tr(X)", "wrt Y: Y is not declared"),
    ("let X: n x n\nwrt X\nf = tr(X) +", "formula ends where an operand was expected"),
    ("let X: n x n weird\n", "unknown property 'weird'"),
    ("let X: 3 x 5 sym\n", "needs a square shape"),
    ("let X: n x n\nwrt X\nf = tr(Z)", "unknown name 'Z'"),
    ("let X: n x n\nwrt X\nf = tr(dX)", "cannot contain a differential"),
    ("let X: n x n\nwrt X\n= tr(X)", "continues a formula"),
    ("let X: n x m\nwrt X\nf = tr(X)", "tr(X): X is (n x m), not square"),
])
def test_format_errors_say_where(text, message):
    with pytest.raises(NotationError) as info:
        parse_text(text, path="my.hg")
    assert message in str(info.value)
    assert "my.hg:" in str(info.value)


def test_format_error_points_at_the_column():
    with pytest.raises(NotationError) as info:
        parse_text("let X: n x n\nwrt X\nf  = tr(X' * Q)\n", path="p.hg")
    assert str(info.value).startswith("p.hg:3:14: unknown name 'Q'")


def test_non_conforming_line_fails_without_numbers():
    text = "let X: 7 x 3\nlet y: 3\nwrt X\nf = sum(X*y)\ndf = tr(X' * y)\n"
    r = verify(text)
    assert r["lines"][0]["verdict"] == "failed"
    assert r["lines"][0]["reason"] == "X' * y: (3 x 7) * (3 x 1) do not conform"


@pytest.mark.parametrize("body, verdicts", [
    # orthogonal Q: directions Q K (K skew); the read-off is compared on that tangent space
    ("let Q: n x n orthogonal\nlet A: n x n\nwrt Q\nf = tr(A*Q)\ndf = tr(A*dQ)\ngrad Q = A'",
     ["verified", "verified"]),
    ("let Q: n x n orthogonal\nlet A: n x n\nwrt Q\nf = tr(A*Q)\ngrad Q = A", ["failed"]),
    # diagonal D: only the diagonal of the gradient is determined
    ("let D: n x n diagonal\nlet A: n x n\nwrt D\nf = tr(A*D)\ngrad D = A'", ["verified"]),
    ("let D: n x n diagonal\nlet A: n x n\nwrt D\nf = tr(A*D)\ngrad D = 2*A'", ["failed"]),
    # a wrong second differential, and one that is not quadratic
    ("let x: n\nlet A: n x n\nwrt x\nf = x'*A*x\nd2f = 2*dx'*A*dx\nhess x = A + A'",
     ["verified", "verified"]),
    ("let x: n\nlet A: n x n\nwrt x\nf = x'*A*x\nd2f = 4*dx'*A*dx", ["failed"]),
    ("let x: n\nlet A: n x n\nwrt x\nf = x'*A*x\nd2f = 2*dx'*A*x", ["failed"]),
    # a line that is not finite while f is fine is wrong on that line only (evidence: f is a
    # number there), an exception in a line is an evaluation error (examples/error_evaluation.hg)
    ("let x: n\nwrt x\nf = x'*x\ndf = 2*x'*dx\n   = sum(log(x - x)) + 2*x'*dx\ngrad x = 2*x",
     ["verified", "failed", "verified"]),
])
def test_properties_second_differentials_and_nan_lines(body, verdicts):
    r = verify(body)
    assert [row["verdict"] for row in r["lines"] + r["readoff"]] == verdicts


def test_text_report_marks_the_lines(reports):
    from handgrad.notation import format_text
    text = format_text(reports["wrong_dropped_term.hg"])
    lines = text.splitlines()
    assert lines[0] == "WRONG: a dropped term   (" + str(EXAMPLES / "wrong_dropped_term.hg") + ")"
    assert "✓    = tr(X'*A'*dX) + tr(X'*A*dX)" in text
    assert any(line.strip().startswith("✗    = tr(X'*A*dX)") and "the first term is gone" in line
               for line in lines)
    assert "first wrong line: " in text and "wrong_dropped_term.hg:8" in text


@pytest.mark.parametrize("body, verdicts", [
    # d2 log|X| = -tr(X^-1 dX X^-1 dX) (d2X = 0); torch's jvp of a jvp of slogdet is 0
    ("let X: n x n spd\nwrt X\nf = logdet(X)\nd2f = -tr(inv(X)*dX*inv(X)*dX)", ["verified"]),
    ("let X: n x n spd\nwrt X\nf = logdet(X) + tr(X)*tr(X)\nd2f = 2*tr(dX)*tr(dX)", ["failed"]),
    # inv(X)*A is evaluated as solve(X, A), whose jvp of a jvp is half the truth
    ("let X: n x n invertible\nlet A: n x n\nwrt X\nf = tr(inv(X)*A)\n"
     "d2f = 2*tr(inv(X)*dX*inv(X)*dX*inv(X)*A)", ["verified"]),
    ("let X: n x n invertible\nlet A: n x n\nwrt X\nf = tr(inv(X)*A)\n"
     "d2f = tr(inv(X)*dX*inv(X)*dX*inv(X)*A)", ["failed"]),
    ("let X: n x n invertible\nwrt X\nf = det(X)\n"
     "d2f = det(X)*(tr(inv(X)*dX)^2 - tr(inv(X)*dX*inv(X)*dX))", ["verified"]),
])
def test_second_differentials_through_det_logdet_and_solve(body, verdicts):
    """The d2f reference is the second directional derivative by forward over reverse:
    torch's forward-mode rules for det, slogdet and solve are not themselves
    differentiable, so a jvp of a jvp drops d(X^-1): it fails these true lines and
    verifies the wrong ones (d2 log|X| dropped, half a solve's second derivative)."""
    r = verify(body)
    assert [row["verdict"] for row in r["lines"] + r["readoff"]] == verdicts


def test_the_second_differentials_above_agree_with_autograd_hessians():
    gen = torch.Generator().manual_seed(6)
    B, A, dX = (torch.randn(4, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    X = B @ B.T / 4 + torch.eye(4, dtype=torch.float64)
    Xi = torch.linalg.inv(X)

    def along(f):  # vec(dX)' H vec(dX), H from torch.autograd (reverse over reverse)
        H = torch.autograd.functional.hessian(lambda x: f(x.reshape(4, 4)), X.reshape(-1))
        return dX.reshape(-1) @ H @ dX.reshape(-1)
    torch.testing.assert_close(along(lambda x: torch.logdet(x)), -torch.trace(Xi @ dX @ Xi @ dX))
    torch.testing.assert_close(along(lambda x: torch.trace(torch.linalg.inv(x) @ A)),
                               2 * torch.trace(Xi @ dX @ Xi @ dX @ Xi @ A))
