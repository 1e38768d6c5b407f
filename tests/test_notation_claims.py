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


# --- named subexpressions, eye(n), and claimed minimisers ----------------------------------

LS = "X: 7 x d; y: 7; w: d"
COV = "X: 9 x d; Sigma: d x d spd; one = vector(1); N = one'*one; C = X - one*one'*X/N"


def test_named_subexpressions_are_evaluated_and_printed_after_the_claim():
    right = Claim("A: m x n; c: m; x: n; y = tanh(A*x)", "grad", "c'*y + y'*y",
                  "(diag(vector(1) - y.^2)*A)'*(c + 2*y)", "x")
    got = check(right)
    assert got["verdict"] == "verified", got
    assert got["text"].endswith("   where y = tanh(A*x)")
    assert "\\text{where } y = \\tanh" in got["latex"]
    # the chain rule with dz/dy missing its factor 2: the named y is re-evaluated at each x
    wrong = check(Claim(right.decls, "grad", right.lhs, "(diag(vector(1) - y.^2)*A)'*(c + y)", "x"))
    assert wrong["verdict"] == "failed" and wrong["reason"].startswith("at point"), wrong


def test_eye_with_a_size():
    xax = "X: n x n; A: n x n"
    ok = check(Claim(xax, "vecjac", "X*A*X", "kron(A*X, eye(n)) + kron(eye(n), (X*A)')", "X"))
    assert ok["verdict"] == "verified" and "I_{n}" in ok["latex"], ok
    swapped = check(Claim(xax, "vecjac", "X*A*X", "kron(X*A, eye(n)) + kron(eye(n), (A*X)')", "X"))
    assert swapped["verdict"] == "failed", swapped
    assert "(3 x 3) * (4 x 4) do not conform" in check(Claim("X: 3 x 3", "equal", "X*eye(4)", "X"))["reason"]
    stray = check(Claim("X: 3 x 3", "equal", "tr(eye(k))", "tr(X)"))
    assert stray["verdict"] == "error" and "k is not the size of any declared name" in stray["reason"], stray
    from handgrad.notation.parser import NotationError, parse
    with pytest.raises(NotationError, match="eye\\(n\\) takes a size"):
        parse("eye(n + 1)")


def test_a_claimed_minimiser_is_verified_and_each_way_to_be_wrong_is_named():
    assert check(Claim(LS, "argmin", "norm2(X*w - y)^2", "inv(X'*X)*X'*y", "w"))["verdict"] == "verified"
    assert check(Claim(COV, "argmin", "logdet(Sigma) + tr(inv(Sigma)*C'*C)/N", "C'*C/N", "Sigma"))[
        "verdict"] == "verified"
    cases = [  # (claim, the reason's words)
        (Claim(LS, "argmin", "norm2(X*w - y)^2", "inv(X*X')*X'*y", "w"), "(7 x 7) * (d x 7) do not conform"),
        (Claim(LS, "argmin", "norm2(X*w - y)^2", "1.000001*inv(X'*X)*X'*y", "w"),
         "the gradient at the claimed minimiser is"),
        (Claim(LS, "argmin", "-norm2(X*w - y)^2", "inv(X'*X)*X'*y", "w"),
         "not a minimum (a maximum or a saddle)"),
        (Claim(COV, "argmin", "logdet(Sigma) + tr(inv(Sigma)*C'*C)/N", "X'*X/N", "Sigma"),  # not centred
         "the gradient at the claimed minimiser is"),
        (Claim(COV + "; e: 1 x 9 onehot", "argmin", "logdet(Sigma) + tr(inv(Sigma)*C'*C)/N", "(e*C)'*(e*C)/N",
               "Sigma"), "is not positive definite"),
        (Claim(COV + "; B: d x d", "argmin", "logdet(Sigma) + tr(inv(Sigma)*C'*C)/N", "C'*C/N + B - B'",
               "Sigma"),
         "is not symmetric"),
    ]
    for claim, words in cases:
        got = check(claim)
        assert got["verdict"] == "failed" and words in got["reason"], (claim.rhs, got)
    flat = check(Claim("x: n", "argmin", "0*x'*x", "x", "x"))
    assert flat["verdict"] == "inconclusive"  # flat: nothing to tell
