"""`identities`: the notes' catalog, each entry verified numerically, none vacuously."""

from __future__ import annotations

import pytest
import torch

from handgrad.verify import derive
from handgrad.verify import identities as ids
from handgrad.verify.steps import compare
from tests.conftest import invoke

F64 = torch.float64


@pytest.fixture(scope="module")
def report():
    return derive.identities_report()


def test_identities_json_at_least_30_all_verified(runner):
    r, out = invoke(runner, "identities", "--json")
    assert r.exit_code == 0, r.stderr
    assert out["count"] >= 30 and out["verified"] == out["count"] and out["ok"]
    for e in out["entries"]:
        assert e["verified"] and e["residual"] <= e["tol"], (e["key"], e["reason"])
        assert e["text"] and e["latex"] and e["layout"] and e["reference"], e["key"]
    keys = [e["key"] for e in out["entries"]]
    assert len(keys) == len(set(keys))


def test_every_group_of_the_issue_is_covered(report):
    assert set(report["groups"]) == set(ids.GROUPS)
    assert all(n >= 5 for n in report["groups"].values()), report["groups"]
    keys = {e["key"] for e in report["entries"]}
    for k in ["d_inverse", "d_det_adjugate", "d_det_inverse", "d_hadamard", "d_elementwise",
              "tr_cyclic", "tr_hadamard", "aXb", "a_exp_Xb", "tr_YMY", "xAx", "b_minus_Ax", "ax",
              "least_squares_solution", "gaussian_mle", "logdet", "chain_scalar_vectors", "chain_AXB",
              "dAx_numerator", "dAx_denominator", "vec_AXB", "vec_outer", "kron_transpose",
              "kron_mixed_product", "commutation", "commutation_inverse", "dAXB_dX"]:
        assert k in keys, k


@pytest.mark.parametrize("ident", ids.CATALOG, ids=[e.key for e in ids.CATALOG])
def test_a_perturbed_claim_is_rejected(ident):
    """The check is not vacuous: the claim off by 1e-6 (relative) fails, naming why."""
    claimed, truth = ident.check(torch.Generator().manual_seed(5))
    assert compare(claimed, truth).ok
    bumped = claimed * (1 + 1e-6) + 1e-6 * (claimed.abs().max() + 1)
    v = compare(bumped, truth)
    assert not v.ok and v.reason.startswith(("worst entry", "claimed"))


@pytest.mark.parametrize("ident", [e for e in ids.CATALOG if e.layout.startswith(("numerator",
                                                                                 "denominator"))
                                   and e.group in ("layouts", "vec and Kronecker")],
                         ids=lambda e: e.key)
def test_transposed_claim_is_rejected_for_layout_entries(ident):
    """Layout entries use non-square or non-symmetric inputs: the other layout is rejected."""
    claimed, truth = ident.check(torch.Generator().manual_seed(1))
    if claimed.dim() == 2 and claimed.shape[0] != claimed.shape[1]:
        assert compare(claimed.T, truth).reason.startswith("shape mismatch")
    elif claimed.dim() == 2 and not torch.allclose(claimed, claimed.T):
        assert compare(claimed.T, truth).reason.startswith("worst entry")


def test_layout_entries_state_shapes():
    g = torch.Generator().manual_seed(0)
    by_key = {e.key: e for e in ids.CATALOG}
    num, _ = by_key["dAx_numerator"].check(g)
    den, _ = by_key["dAx_denominator"].check(torch.Generator().manual_seed(0))
    assert num.shape == (5, 3) and den.shape == (3, 5)  # m x n vs n x m, A is 5 x 3
    assert "m x n" in by_key["dAx_numerator"].layout or "m x n" in by_key["dAx_numerator"].text


# --- helpers against values computed by hand ------------------------------------------------

def test_vec_stacks_columns():
    X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=F64)
    assert ids.vec(X).tolist() == [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    assert torch.equal(ids.unvec(ids.vec(X), 2, 3), X)


def test_commutation_matrix_by_hand():
    # A 2 x 3: vec(A) = [a11 a21 a12 a22 a13 a23], vec(A^T) = [a11 a12 a13 a21 a22 a23]
    K = ids.commutation(2, 3)
    expected = torch.zeros(6, 6, dtype=F64)
    for row, col in enumerate([0, 2, 4, 1, 3, 5]):
        expected[row, col] = 1.0
    assert torch.equal(K, expected)


def test_kron_and_adjugate_by_hand():
    A = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    B = torch.tensor([[0.0, 1.0]], dtype=F64)
    assert ids.kron(A, B).tolist() == [[0, 1, 0, 2], [0, 3, 0, 4]]
    assert ids.kron(A.T, B).tolist() == [[0, 1, 0, 3], [0, 2, 0, 4]]  # a transposed factor
    assert ids.adjugate(A).tolist() == [[4.0, -2.0], [-3.0, 1.0]]  # [[d, -b], [-c, a]]


def test_sample_cov_by_hand():
    Xs = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]], dtype=F64)
    # xbar = (1, 1); deviations (-1,-1), (1,-1), (0,2): S = [[2, 0], [0, 6]] / 3
    assert torch.allclose(ids.sample_cov(Xs), torch.tensor([[2.0, 0.0], [0.0, 6.0]], dtype=F64) / 3)


def test_compare_reasons():
    t = torch.arange(6, dtype=F64).reshape(2, 3)
    assert compare(t.T, t).reason == "shape mismatch: claimed 3 x 2, truth 2 x 3"
    bad = t.clone()
    bad[1, 2] += 0.5
    v = compare(bad, t)
    assert not v.ok and v.reason.startswith("worst entry [1, 2]: claimed 5.5, truth 5")
    assert v.worst["index"] == "[1, 2]"
    assert compare(torch.tensor(float("nan")), torch.tensor(1.0)).reason.startswith("not finite")
    assert compare(t + 1e-12, t).ok


def test_identities_text_lists_groups_and_errata(runner):
    r, _ = invoke(runner, "identities")
    assert r.exit_code == 0
    for g in ids.GROUPS:
        assert f"\n{g} (" in r.stdout
    assert "the notes' errata" in r.stdout and "rejected: shape mismatch" in r.stdout
    assert "\u2713" not in r.stdout, "a catalog entry's text is not parsed: never the verified mark"
    assert "[notes part 3 §6 example 4; wrong formula]" in r.stdout  # file 002 is part 3
    assert "seed" not in r.stdout.replace("seeds 0, 1, 2", ""), "seed means a random seed"
    assert r.stdout.rstrip().endswith("every erratum rejected and its correction accepted")


def test_every_formula_is_valid_latex(tmp_path):
    """Every catalog and errata formula, in one document: compiled when pdflatex is present,
    else checked for balanced braces, environments and delimiters."""
    import shutil
    import subprocess

    from handgrad.verify.errata import ERRATA
    from tests.test_derive import _tex_problems

    formulas = [e.latex for e in ids.CATALOG]
    formulas += [f for e in ERRATA for f in (e.wrong_latex, e.right_latex)]
    for f in formulas:
        assert _tex_problems(f) == [], f
    doc = (derive.LATEX_PREAMBLE + "\n".join(r"\[ " + f + r" \]" for f in formulas)
           + "\n\\end{document}\n")
    if shutil.which("pdflatex"):
        (tmp_path / "f.tex").write_text(doc)
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "f.tex"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-3000:]
