"""`derive --file F.hg`: the plain-text notation through the CLI, same exit codes as the
built-ins (0 verified, 1 a wrong line, 2 a malformed file)."""

from __future__ import annotations

from tests.conftest import invoke


def test_a_correct_text_derivation_exits_0_with_every_line_marked(runner):
    r, _ = invoke(runner, "derive", "--file", "examples/trace_logdet.hg")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count("✓") == 4 and "verified: 3 points" in r.stdout


def test_a_wrong_text_derivation_exits_1_naming_the_first_wrong_line(runner):
    r, out = invoke(runner, "derive", "--file", "examples/wrong_symmetric_slip.hg", "--json")
    assert r.exit_code == 1 and not out["ok"]
    assert out["first_wrong"]["source"].endswith("wrong_symmetric_slip.hg:7")


def test_a_malformed_text_file_is_one_line_and_exit_2(runner, tmp_path):
    bad = tmp_path / "bad.hg"
    bad.write_text("let X: 3 x 7\nlet y: 3\nwrt X\nf = tr(X * y\n")
    r, _ = invoke(runner, "derive", "--file", str(bad))
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "bad.hg:4" in r.stderr


def test_text_derivations_print_as_markdown_and_latex_from_the_same_tree(runner):
    r, _ = invoke(runner, "derive", "--file", "examples/logdet.hg", "--format", "markdown")
    assert r.exit_code == 0 and "$$\\mathrm{d}f = " in r.stdout
    r, _ = invoke(runner, "derive", "--file", "examples/logdet.hg", "--format", "latex")
    assert r.exit_code == 0 and "\\begin{align*}" in r.stdout and "&&" in r.stdout


def test_derive_expr_writes_and_verifies_the_steps_and_emits_torch(runner):
    import torch

    r, out = invoke(runner, "derive", "--expr", "tr(X'*A*X) + logdet(X)", "--let",
                    "X: n x n invertible; A: n x n", "--wrt", "X", "--emit", "torch", "--json")
    assert r.exit_code == 0 and out["ok"], r.stderr
    assert all(x["verdict"] == "verified" for x in out["lines"] + out["readoff"])
    ns: dict = {}
    exec(out["torch"], ns)  # the pasted function, against autograd (independent of handgrad)
    g = torch.Generator().manual_seed(5)
    A = torch.randn(4, 4, generator=g, dtype=torch.float64)
    X = torch.randn(4, 4, generator=g, dtype=torch.float64) + 4 * torch.eye(4, dtype=torch.float64)
    auto = torch.func.grad(lambda X: torch.trace(X.T @ A @ X) + torch.linalg.slogdet(X)[1])(X)
    assert torch.allclose(ns["gradient"](X, A), auto, rtol=1e-12, atol=1e-12)


def test_derive_expr_outside_the_deriver_is_one_line_exit_2(runner):
    r, _ = invoke(runner, "derive", "--expr", "kron(X, A)", "--let", "A: m x m; X: n x n", "--wrt", "X")
    assert r.exit_code == 2 and "vec of this term is not read off" in r.stderr
    r, _ = invoke(runner, "derive", "--expr", "norm1(x)", "--let", "x: n", "--wrt", "x")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    r, _ = invoke(runner, "derive", "logistic", "--wrt", "w")
    assert r.exit_code == 2 and "go with --expr" in r.stderr
