"""`identities`: the notes' catalog, each entry verified numerically, none vacuously."""

from __future__ import annotations

import dataclasses

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


WRITTEN = ids.CATALOG


def test_the_whole_catalog_is_written_in_the_notation_and_printed_from_it():
    from handgrad.notation.claims import Parsed
    for e in ids.CATALOG:
        assert e.claims, e.key
        assert e.text == ";  ".join(Parsed(c).text() for c in e.claims)  # printed = parsed
        assert e.latex == ",\\quad ".join(Parsed(c).latex() for c in e.claims)


@pytest.mark.parametrize("ident", WRITTEN, ids=[e.key for e in WRITTEN])
def test_a_perturbed_notation_claim_is_rejected(ident):
    """Every claim verified, and the same claim with its right side off by 1e-6 (relative)
    fails at the notation's verifier, naming the entry where it differs."""
    import dataclasses

    from handgrad.notation.claims import check
    for c in ident.claims:
        assert check(c)["verdict"] == "verified", (ident.key, check(c)["reason"])
        bumped = check(dataclasses.replace(c, rhs=f"(1 + 1e-6)*({c.rhs})"))
        assert bumped["verdict"] == "failed" and bumped["reason"].startswith("at point"), bumped


SYMMETRIC = {"gaussian_gradient", "dsigma_dX"}  # symmetric and diagonal derivatives: layouts agree
LAYOUT = [e for e in WRITTEN if e.layout.startswith(("numerator", "denominator"))
          and e.group in ("layouts", "vec and Kronecker", "worked results") and e.key not in SYMMETRIC]


@pytest.mark.parametrize("ident", LAYOUT, ids=[e.key for e in LAYOUT])
def test_the_other_layout_is_rejected(ident):
    """Inputs are generic (non-square sizes drawn distinct, non-symmetric values): the
    transposed claim, the other layout, fails, by shape or by value."""
    import dataclasses

    from handgrad.notation.claims import check
    for c in ident.claims:
        if c.kind in ("hess", "d"):  # a Hessian is symmetric; a differential has no layout
            continue
        got = check(dataclasses.replace(c, rhs=f"({c.rhs})'"))
        assert got["verdict"] == "failed", (ident.key, got)


def test_layout_entries_state_shapes():
    from handgrad.notation.claims import Parsed
    from handgrad.notation.shapes import show
    by_key = {e.key: e for e in ids.CATALOG}
    num, den = (Parsed(by_key[k].claims[0]) for k in ("dAx_numerator", "dAx_denominator"))
    assert show(num.checker.shape(num.rhs)) == "(m x n)" and show(den.checker.shape(den.rhs)) == "(n x m)"
    assert "numerator" in by_key["dAx_numerator"].text and "denominator" in by_key["dAx_denominator"].text


# --- helpers against values computed by hand ------------------------------------------------

def test_vec_stacks_columns():
    from handgrad.notation.evaluate import evaluate
    X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=F64)
    assert evaluate("vec(X)", {"X": X}).reshape(-1).tolist() == [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]


def test_commutation_matrix_by_hand():
    # A 2 x 3: vec(A) = [a11 a21 a12 a22 a13 a23], vec(A^T) = [a11 a12 a13 a21 a22 a23]
    from handgrad.notation.evaluate import commutation  # the notation's comm(A), one copy
    K = commutation(2, 3)
    expected = torch.zeros(6, 6, dtype=F64)
    for row, col in enumerate([0, 2, 4, 1, 3, 5]):
        expected[row, col] = 1.0
    assert torch.equal(K, expected)


def test_kron_and_adjugate_by_hand():
    A = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    B = torch.tensor([[0.0, 1.0]], dtype=F64)
    from handgrad.notation.evaluate import evaluate
    assert evaluate("kron(A, B)", {"A": A, "B": B}).tolist() == [[0, 1, 0, 2], [0, 3, 0, 4]]
    assert evaluate("kron(A', B)", {"A": A, "B": B}).tolist() == [[0, 1, 0, 3], [0, 2, 0, 4]]  # transposed
    assert evaluate("kron(eye(2), B)", {"B": B}).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]  # a sized eye
    from handgrad.notation.evaluate import adjugate  # the notation's adj(X), from cofactors
    assert adjugate(A).tolist() == [[4.0, -2.0], [-3.0, 1.0]]  # [[d, -b], [-c, a]]
    B = torch.tensor([[2.0, 0.0, 1.0], [1.0, 3.0, 0.0], [0.0, 1.0, 4.0]], dtype=F64)
    assert torch.allclose(adjugate(B) @ B, torch.linalg.det(B) * torch.eye(3, dtype=F64))


def test_sample_cov_by_hand():
    """gaussian_mle's minimiser C'C/N, its named subexpressions evaluated as the claim does."""
    from handgrad.notation.claims import Parsed
    from handgrad.notation.evaluate import Evaluator
    claim = next(e for e in ids.CATALOG if e.key == "gaussian_mle").claims[0]
    p = Parsed(dataclasses.replace(claim, decls=claim.decls.replace("X: 9 x d", "X: 3 x d")))
    Xs = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]], dtype=F64)
    # xbar = (1, 1); deviations (-1,-1), (1,-1), (0,2): S = [[2, 0], [0, 6]] / 3
    at = {"X": Xs, "Sigma": torch.eye(2, dtype=F64)}
    got = Evaluator(p.checker, at, None, p.defs, {"d": 2}).value(p.rhs)
    assert torch.allclose(got, torch.tensor([[2.0, 0.0], [0.0, 6.0]], dtype=F64) / 3)


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
    assert "the notes' errata" in r.stdout
    assert "rejected: the shapes do not fit" in r.stdout  # an erratum, by dimension analysis
    assert "rejected: at point 0 the claimed minimiser is not positive definite" in r.stdout  # E2
    lines = r.stdout.splitlines()
    for e in ids.CATALOG:  # the verified mark on every entry: all are written in the notation
        row = next(ln for ln in lines if ln.endswith("  " + e.text))
        assert row.lstrip().startswith("\u2713"), row
    assert "~" not in r.stdout.split("the notes' errata")[0]
    assert "[notes part 3 §6 example 4; wrong formula]" in r.stdout  # file 002 is part 3
    assert "seed" not in r.stdout, "seed means a random seed"
    assert r.stdout.rstrip().endswith(f"{len(ids.CATALOG)} identities verified in the notation, every "
                                      "erratum rejected and its correction accepted")


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
