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


@pytest.mark.parametrize("e", er.ERRATA, ids=KEYS)
def test_wrong_rejected_with_reason_right_accepted(e):
    w = derive._run_check(e.check_wrong, (0, 1, 2))
    r = derive._run_check(e.check_right, (0, 1, 2))
    assert not w.ok and w.reason.startswith(("shape mismatch: ", "worst entry ", "claimed ")), w.reason
    assert r.ok and r.residual <= derive.RTOL, r.reason
    for field in (e.wrong_text, e.wrong_latex, e.right_text, e.right_latex, e.layout, e.note, e.seed):
        assert field


def test_the_issues_four_errata_are_kept():
    assert {"E1_least_squares_solution", "E2_covariance_mle_sum_dropped",
            "E3_two_layer_W1_labelled_W2", "E4_dAx_dxj"} <= set(KEYS)
    assert len(er.ERRATA) >= 8
    assert all(e.seed[:3] in {"000", "001", "002", "003"} for e in er.ERRATA)


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
    assert _reason(e.check_wrong) == "shape mismatch: claimed 5 x 3, truth 4 x 5"


def test_dAx_dxj_is_a_column_not_A():
    e = next(e for e in er.ERRATA if e.key == "E4_dAx_dxj")
    assert _reason(e.check_wrong) == "shape mismatch: claimed 5 x 3, truth 5"


def test_seed_003_AT_is_right_in_denominator_layout_only():
    """Seed 003's d(Ax)/dx = A^T: rejected as a Jacobian (numerator), accepted as the
    denominator-layout gradient matrix, which is the Jacobian transposed."""
    e = next(e for e in er.ERRATA if e.key == "E5_dAx_dx_AT_as_jacobian")
    assert _reason(e.check_wrong).startswith("worst entry [")  # square A: caught by value
    g = torch.Generator().manual_seed(0)
    A, x = ids.rn(g, 4, 4), ids.rn(g, 4)
    J = torch.func.jacrev(lambda v: A @ v)(x)
    assert compare(A.T, J.T).ok and not compare(A.T, J).ok
    A, x = ids.rn(g, 5, 3), ids.rn(g, 3)  # non-square: the wrong layout is a shape mismatch
    J = torch.func.jacrev(lambda v: A @ v)(x)
    assert compare(A.T, J).reason == "shape mismatch: claimed 3 x 5, truth 5 x 3"


def test_chain_rule_product_and_extra_transpose_are_undefined_products():
    for key, names in [("E6_chain_rule_order_003", "dg/du = 2u is 5 x 1 but du/dx = -A is 5 x 3"),
                       ("E7_trYMY_extra_transpose", "W^T is 4 x 3 but"),
                       ("E8_gradient_relation_no_transpose", "df/dx is 3 x 1 but dx is 3 x 1"),
                       ("E9_kron_symbol_for_hadamard", "B kron C is 9 x 16")]:
        e = next(e for e in er.ERRATA if e.key == key)
        reason = _reason(e.check_wrong)
        assert reason.startswith("shape mismatch: ") and names in reason, (key, reason)


def test_mm_names_both_factors():
    with pytest.raises(er.ShapeError, match="P is 2 x 3 but Q is 2 x 1"):
        er.mm(("P", torch.zeros(2, 3)), ("Q", torch.zeros(2)))
    assert er.mm(("P", torch.ones(2, 3)), ("Q", torch.ones(3))).shape == (2, 1)
