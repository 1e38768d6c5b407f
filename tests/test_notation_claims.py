"""handgrad.notation.claims: one-line claims (the catalog's and the errata's formulas),
each kind accepted when true and rejected when false, against references computed here."""

from __future__ import annotations

import pytest

from handgrad.notation.claims import Claim, Parsed, check


@pytest.mark.parametrize("claim", [
    Claim("X: m x n; Y: n x p", "d", "X*Y", "dX*Y + X*dY"),
    Claim("X: n x n invertible", "d", "inv(X)", "-inv(X)*dX*inv(X)"),
    Claim("A: m x n; B: n x m", "equal", "tr(A*B)", "tr(B*A)"),
    Claim("a: m; X: m x n; b: n", "grad", "a'*X*b", "a*b'", "X"),
    Claim("a: m; X: m x n; b: n", "gradT", "a'*X*b", "b*a'", "X"),
    Claim("x: n; A: n x n", "hess", "x'*A*x", "A + A'", "x"),
    Claim("A: m x n; x: n", "jac", "A*x", "A", "x"),
    Claim("A: m x n; x: n", "jacT", "A*x", "A'", "x"),
    Claim("A: p x m; X: m x n; B: n x q", "vecjac", "A*X*B", "kron(B, A')", "X"),
], ids=lambda c: f"{c.kind}:{c.rhs}")
def test_true_claims_are_verified(claim):
    got = check(claim)
    assert got["verdict"] == "verified" and got["residual"] <= got["tol"], got


@pytest.mark.parametrize("claim,reason", [
    # the symmetric-A slip: true only for symmetric A, and A is drawn generic
    (Claim("x: n; A: n x n", "grad", "x'*A*x", "2*A*x", "x"), "at point"),
    # a scalar rule applied to matrices: d(X^2) = 2 X dX
    (Claim("X: n x n", "d", "X*X", "2*X*dX"), "at point"),
    # a wrong sign in d(X^-1)
    (Claim("X: n x n invertible", "d", "inv(X)", "inv(X)*dX*inv(X)"), "at point"),
    # the other order in the product rule: the shapes do not fit
    (Claim("X: m x n; Y: n x p", "d", "X*Y", "Y*dX + X*dY"), "the shapes do not fit: Y * dX"),
    # a wrong-shaped read-off: b a' is n x m, X is m x n
    (Claim("a: m; X: m x n; b: n", "grad", "a'*X*b", "b*a'", "X"),
     "is (n x m), but the derivative by X is (m x n)"),
    # the denominator form claimed as the Jacobian
    (Claim("A: m x n; x: n", "jac", "A*x", "A'", "x"), "the claim is"),
    # kron's factors swapped
    (Claim("A: p x m; X: m x n; B: n x q", "vecjac", "A*X*B", "kron(A', B)", "X"), ""),
])
def test_wrong_claims_are_rejected_with_their_reason(claim, reason):
    got = check(claim)
    assert got["verdict"] == "failed" and reason in got["reason"], got


def test_rounding_level_is_inconclusive_never_verified():
    """X - X is exactly 0: a claim about a value at rounding level is not evidence."""
    got = check(Claim("X: m x n", "equal", "X - X", "0*X"))
    assert got["verdict"] == "inconclusive", got


def test_text_and_latex_come_from_the_parsed_trees():
    p = Parsed(Claim("X: m x n; Y: n x p", "d", "X * Y", "dX*Y+X*dY"))
    assert p.text() == "d(X*Y) = dX*Y + X*dY"  # re-printed from the tree, not the input string
    assert p.latex().startswith("d\\left(X Y\\right) = ")


def test_an_unknown_kind_or_a_missing_variable_is_refused():
    with pytest.raises(ValueError, match="claim kind"):
        Claim("x: n", "integral", "x", "x")
    with pytest.raises(ValueError, match="by one variable"):
        Claim("x: n", "grad", "x'*x", "2*x")
