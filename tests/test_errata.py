"""The notes' known-wrong statements: each rejected with its reason, its correction accepted."""

from __future__ import annotations

import pytest
import torch

from handgrad.verify import derive
from handgrad.verify import errata as er
from handgrad.verify.steps import compare
from tests.conftest import invoke

KEYS = [e.key for e in er.ERRATA]


def _verdicts(e):
    """(wrong, right) as {"ok", "reason", "residual"}, from the notation's claims."""
    return derive._claims_verdict(e.wrong_claims), derive._claims_verdict(e.right_claims)


@pytest.mark.parametrize("e", er.ERRATA, ids=KEYS)
def test_wrong_rejected_with_reason_right_accepted(e):
    w, r = _verdicts(e)
    assert not w["ok"] and w["reason"].startswith(("the shapes do not fit: ", "at point ")), w["reason"]
    assert r["ok"] and r["residual"] <= r["tol"], r["reason"]
    for field in (e.wrong_text, e.wrong_latex, e.right_text, e.right_latex, e.layout, e.note, e.where):
        assert field


def test_every_erratum_is_written_in_the_notation_and_printed_from_it():
    """What is printed is what is checked: an erratum's texts are its claims' texts."""
    from handgrad.notation.claims import Parsed
    for e in er.ERRATA:
        assert e.wrong_claims and e.right_claims, e.key
        assert e.wrong_text.startswith(";  ".join(Parsed(c).text() for c in e.wrong_claims))
        assert e.right_text.startswith(";  ".join(Parsed(c).text() for c in e.right_claims))


def test_the_issues_four_errata_are_kept():
    assert {"E1_least_squares_solution", "E2_covariance_mle_sum_dropped",
            "E3_two_layer_W1_labelled_W2", "E4_dAx_dxj"} <= set(KEYS)
    assert len(er.ERRATA) >= 8
    assert all(e.where[:3] in {"000", "001", "002", "003"} for e in er.ERRATA)


def test_identities_json_reports_every_erratum(runner):
    r, out = invoke(runner, "identities", "--json")
    assert r.exit_code == 0
    assert out["errata_count"] == len(er.ERRATA) == len(out["errata"])
    for e in out["errata"]:
        assert e["ok"] and e["wrong"]["rejected"] and e["right"]["accepted"], e["key"]
        assert e["wrong"]["reason"]


# --- the reasons, specifically ----------------------------------------------------------------

def _check(e, which, **change):
    import dataclasses

    from handgrad.notation.claims import check
    c = (e.wrong_claims if which == "wrong" else e.right_claims)[0]
    return check(dataclasses.replace(c, **change))


def _erratum(key):
    return next(e for e in er.ERRATA if e.key == key)


def test_least_squares_xxt_shape_mismatch_and_square_value_mismatch():
    e = _erratum("E1_least_squares_solution")
    w, _ = _verdicts(e)
    assert w["reason"] == "the shapes do not fit: inv(X*X') * X': (7 x 7) * (d x 7) do not conform"
    square = "X: d x d invertible; y: d; w: d"  # formable for square X, and still wrong, by value
    got = _check(e, "wrong", decls=square)
    assert got["verdict"] == "failed" and "the gradient at the claimed minimiser is" in got["reason"], got
    assert _check(e, "right", decls=square)["verdict"] == "verified"  # square: X^-1 y
    # the minimiser check against an independent reference: torch.linalg.lstsq's solution
    # is accepted, the same solution scaled by 1 + 1e-6 rejected
    g = torch.Generator().manual_seed(0)
    X = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(7, 1, generator=g, dtype=torch.float64)
    ref = torch.linalg.lstsq(X, y, driver="gelsd").solution
    from handgrad.notation.claims import Parsed
    from handgrad.notation.evaluate import Evaluator
    p = Parsed(e.right_claims[0])
    mine = Evaluator(p.checker, {"X": X, "y": y, "w": ref}, None, p.defs, {"d": 3}).value(p.rhs)
    assert torch.allclose(mine, ref, rtol=1e-12, atol=1e-13)


def test_covariance_without_the_sum_is_rank_one():
    e = _erratum("E2_covariance_mle_sum_dropped")
    w, r = _verdicts(e)
    assert w["reason"].startswith("at point 0 the claimed minimiser is not positive definite"), w["reason"]
    assert r["ok"]
    # against an independent reference: torch.cov of the samples is the claimed minimiser C'C/N
    from handgrad.notation.claims import Parsed
    from handgrad.notation.evaluate import Evaluator
    p = Parsed(e.right_claims[0])
    g = torch.Generator().manual_seed(1)
    Xs = torch.randn(9, 3, generator=g, dtype=torch.float64)
    Xs = Xs @ torch.randn(3, 3, generator=g, dtype=torch.float64)
    got = Evaluator(p.checker, {"X": Xs, "Sigma": torch.eye(3, dtype=torch.float64)}, None, p.defs,
                    {"d": 3}).value(p.rhs)
    assert torch.allclose(got, torch.cov(Xs.T, correction=0), rtol=1e-12)


def test_two_layer_label_is_a_shape_mismatch():
    e = next(e for e in er.ERRATA if e.key == "E3_two_layer_W1_labelled_W2")
    w, _ = _verdicts(e)
    assert w["reason"].endswith("is (h x d), but the derivative by W2 is (K x h)"), w["reason"]


def test_dAx_dxj_is_a_column_not_A():
    w, r = _verdicts(_erratum("E4_dAx_dxj"))
    assert w["reason"] == "the shapes do not fit: A*dt is (m x n), but d(A*(x + t*e')) is (m x 1)"
    assert r["ok"]


def test_notes_part_4_AT_is_right_in_denominator_layout_only():
    """Notes part 4's d(Ax)/dx = A^T: rejected as a Jacobian (numerator), accepted as the
    denominator-layout gradient matrix, which is the Jacobian transposed."""
    e = next(e for e in er.ERRATA if e.key == "E5_dAx_dx_AT_as_jacobian")
    w, r = _verdicts(e)
    assert w["reason"].startswith("at point 0 entry (") and r["ok"]  # square A: caught by value
    g = torch.Generator().manual_seed(0)
    A = torch.randn(4, 4, generator=g, dtype=torch.float64)
    x = torch.randn(4, generator=g, dtype=torch.float64)
    J = torch.func.jacrev(lambda v: A @ v)(x)
    assert compare(A.T, J.T).ok and not compare(A.T, J).ok
    non_square = _check(e, "wrong", decls="A: m x n; x: n")  # the wrong layout: a shape mismatch
    assert non_square["verdict"] == "failed", non_square
    m, n = (int(k) for k in non_square["reason"].split("the derivative (")[1].rstrip(")").split(", "))
    assert non_square["reason"] == f"at point 0: the claim is ({n}, {m}), the derivative ({m}, {n})"


def test_chain_rule_product_and_extra_transpose_are_undefined_products():
    """Dimension analysis before any number, naming the product that does not conform."""
    for key, names in [("E6_chain_rule_order_003", "-2*(b - A*x) * A: (m x 1) * (m x n) do not conform"),
                       ("E7_trYMY_extra_transpose", ": (m x p) * (n x p) do not conform"),
                       ("E8_gradient_relation_no_transpose",
                        "A'*cos(A*x) * dx: (n x 1) * (n x 1) do not conform"),
                       ("E9_kron_symbol_for_hadamard",
                        "A' * kron(B, C): (n x m) * (m*m x n*n) do not conform")]:
        e = next(e for e in er.ERRATA if e.key == key)
        w, _ = _verdicts(e)
        assert w["reason"].startswith("the shapes do not fit: ") and names in w["reason"], (key, w["reason"])
