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
