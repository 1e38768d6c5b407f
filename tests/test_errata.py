"""The notes' known-wrong statements: each rejected with its reason, its correction accepted."""

from __future__ import annotations

import pytest
import torch

from handgrad.verify import derive
from handgrad.verify import errata as er
from handgrad.verify import identities as ids
from handgrad.verify.steps import compare
from tests.conftest import invoke

KEYS = [e.key for e in er.ERRATA]


def _verdicts(e):
    """(wrong, right) as {"ok", "reason", "residual"}: the notation's claims or Python checks."""
    if e.in_notation:
        return derive._claims_verdict(e.wrong_claims), derive._claims_verdict(e.right_claims)
    return (derive._run_check(e.check_wrong, (0, 1, 2)).as_dict(),
            derive._run_check(e.check_right, (0, 1, 2)).as_dict())


@pytest.mark.parametrize("e", er.ERRATA, ids=KEYS)
def test_wrong_rejected_with_reason_right_accepted(e):
    w, r = _verdicts(e)
    reasons = (("the shapes do not fit: ", "at point ") if e.in_notation
               else ("shape mismatch: ", "worst entry ", "claimed "))
    assert not w["ok"] and w["reason"].startswith(reasons), w["reason"]
    assert r["ok"] and r["residual"] <= (r.get("tol") or derive.RTOL), r["reason"]
    for field in (e.wrong_text, e.wrong_latex, e.right_text, e.right_latex, e.layout, e.note, e.where):
        assert field


def test_most_errata_are_written_in_the_notation_and_printed_from_it():
    """What is printed is what is checked: a notation erratum's texts are its claims' texts."""
    from handgrad.notation.claims import Parsed
    written = [e for e in er.ERRATA if e.in_notation]
    assert len(written) >= 8
    for e in written:
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

def _reason(check, seed=0):
    return derive._run_check(check, (seed,)).reason


def test_least_squares_xxt_shape_mismatch_and_square_value_mismatch():
    e = next(e for e in er.ERRATA if e.key == "E1_least_squares_solution")
    assert _reason(e.check_wrong) == ("shape mismatch: (X X^T)^-1 is 7 x 7 but X^T y is 3 x 1: "
                                      "the product is undefined")
    g = torch.Generator().manual_seed(3)
    X = torch.randn(4, 4, generator=g, dtype=torch.float64) + 4 * torch.eye(4, dtype=torch.float64)
    y = torch.randn(4, generator=g, dtype=torch.float64)
    v = compare(er.ls_wrong(X, y), er.ls_truth(X, y))  # square X: formable, still wrong
    assert not v.ok and v.reason.startswith("worst entry [")
    assert compare(er.ls_right(X, y), torch.linalg.solve(X, y)).ok  # square: X^-1 y


def test_covariance_without_the_sum_is_rank_one():
    e = next(e for e in er.ERRATA if e.key == "E2_covariance_mle_sum_dropped")
    claim, truth = e.check_wrong(torch.Generator().manual_seed(0))
    assert int(torch.linalg.matrix_rank(claim)) == 1 and int(torch.linalg.matrix_rank(truth)) == 3
    assert _reason(e.check_wrong).startswith("worst entry [")


def test_two_layer_label_is_a_shape_mismatch():
    e = next(e for e in er.ERRATA if e.key == "E3_two_layer_W1_labelled_W2")
    w, _ = _verdicts(e)
    assert w["reason"].endswith("is (h x d), but the derivative by W2 is (K x h)"), w["reason"]


def test_dAx_dxj_is_a_column_not_A():
    e = next(e for e in er.ERRATA if e.key == "E4_dAx_dxj")
    assert _reason(e.check_wrong) == "shape mismatch: claimed 5 x 3, truth 5"


def test_notes_part_4_AT_is_right_in_denominator_layout_only():
    """Notes part 4's d(Ax)/dx = A^T: rejected as a Jacobian (numerator), accepted as the
    denominator-layout gradient matrix, which is the Jacobian transposed."""
    e = next(e for e in er.ERRATA if e.key == "E5_dAx_dx_AT_as_jacobian")
    w, r = _verdicts(e)
    assert w["reason"].startswith("at point 0 entry (") and r["ok"]  # square A: caught by value
    g = torch.Generator().manual_seed(0)
    A, x = ids.rn(g, 4, 4), ids.rn(g, 4)
    J = torch.func.jacrev(lambda v: A @ v)(x)
    assert compare(A.T, J.T).ok and not compare(A.T, J).ok
    A, x = ids.rn(g, 5, 3), ids.rn(g, 3)  # non-square: the wrong layout is a shape mismatch
    J = torch.func.jacrev(lambda v: A @ v)(x)
    assert compare(A.T, J).reason == "shape mismatch: claimed 3 x 5, truth 5 x 3"


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


def test_mm_names_both_factors():
    with pytest.raises(er.ShapeError, match="P is 2 x 3 but Q is 2 x 1"):
        er.mm(("P", torch.zeros(2, 3)), ("Q", torch.zeros(2)))
    assert er.mm(("P", torch.ones(2, 3)), ("Q", torch.ones(3))).shape == (2, 1)
