"""`derive --expr ... --format latex | markdown`: documents a reader can compile and read —
the rule texts typeset, the let lines that later lines use (z, then dz) shown, every
command one amsmath/amssymb knows."""

from __future__ import annotations

import re

import pytest

from tests.conftest import invoke
from tests.test_derive import _tex_problems, assert_compiles

EXPRESSIONS = {
    "least squares": ("1/2*norm2(A*x-b)^2", "A: m x n; b: m; x: n", "x"),
    "gaussian": ("-1/2*logdet(S) - 1/2*x'*inv(S)*x", "S: n x n spd; x: n", "S"),
    "cross-entropy": ("-(y'*log(sigma(W*x)) + (1-y)'*log(1-sigma(W*x)))", "W: k x n; x: n; y: k",
                      "W"),
}

# LaTeX, amsmath and amssymb commands the documents may use; anything else would stop a
# LaTeX run ("Undefined control sequence") where no LaTeX binary is here to find it
KNOWN = {
    "documentclass", "usepackage", "begin", "end", "section", "subsection", "par", "noindent",
    "text", "intertext", "small", "footnotesize", "textit", "textbf", "texttt", "quad", "qquad",
    "frac", "left", "right", "lVert", "rVert", "lvert", "rvert", "mathrm", "mathbf",
    "operatorname", "partial", "log", "exp", "det", "tanh", "sin", "cos", "max", "min", "sqrt",
    "odot", "oslash", "otimes", "times", "cdot", "circ", "sim", "ell", "S", "checkmark",
    "textasciicircum", "textasciitilde", "textless", "textgreater", "textbar", "textbackslash",
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi",
    "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi",
    "Omega",
}


def _derive(runner, name: str, fmt: str) -> str:
    expr, let, wrt = EXPRESSIONS[name]
    r, _ = invoke(runner, "derive", "--expr", expr, "--let", let, "--wrt", wrt, "--format", fmt)
    assert r.exit_code == 0, r.stderr
    return r.stdout


def _json(runner, name: str) -> dict:
    expr, let, wrt = EXPRESSIONS[name]
    r, out = invoke(runner, "derive", "--expr", expr, "--let", let, "--wrt", wrt, "--json")
    assert r.exit_code == 0, r.stderr
    return out


def _unknown_commands(tex: str) -> set[str]:
    return {c for c in re.findall(r"\\([A-Za-z]+)", tex) if c not in KNOWN}


@pytest.mark.parametrize("name", list(EXPRESSIONS))
def test_each_latex_document_compiles(runner, tmp_path, name):
    tex = _derive(runner, name, "latex")
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    assert "amsmath" in tex  # \intertext, \text, \operatorname, \lVert come from it
    assert _tex_problems(tex) == []
    assert _unknown_commands(tex) == set()
    # an \intertext stands between two lines of an align*: right after a line's \\
    lines = tex.splitlines()
    for k, line in enumerate(lines):
        if line.startswith(r"\intertext"):
            assert lines[k - 1].endswith(r"\\"), lines[k - 1]
    assert tex.count(r"\intertext{") >= 3  # the rules are in the document, typeset
    assert_compiles(tex, tmp_path)


def test_the_whitelist_catches_what_latex_would_not_know():
    assert _unknown_commands(r"\frac{1}{2} \lVert x \rVert") == set()
    assert _unknown_commands(r"\tr(X) + \norm{x}") == {"tr", "norm"}


def test_latex_shows_the_let_lines_the_later_lines_use(runner):
    tex = _derive(runner, "least squares", "latex")
    # the text format prints "let z = A*x", and later lines use dz
    assert r"\text{let } z &= A x \\" in tex
    assert r"\mathrm{d}z" in tex
    assert tex.index(r"\text{let } z") < tex.index(r"\mathrm{d}z")
    # the rules: words as text, formulas as math
    assert r"\intertext{\small by product rule $\mathrm{d}" in tex
    assert r"$\lVert u\rVert^{2} = u^{T}u$" in tex


@pytest.mark.parametrize("name", list(EXPRESSIONS))
def test_every_differential_a_line_uses_is_declared_or_let(runner, name):
    """A reader meets no undefined dz: each d<name> in the LaTeX is a variable, or a name a
    let line defines."""
    tex = _derive(runner, name, "latex")
    out = _json(runner, name)
    expr, let, wrt = EXPRESSIONS[name]
    declared = {d.split(":")[0].strip() for d in let.split(";")}
    lets = {d["name"] for d in out["definitions"]}
    assert lets, "these derivations name intermediate results"
    body = tex.split(r"\begin{align*}")[1].split(r"\end{align*}")[0]
    shown = set(re.findall(r"\\text\{let \} (\S+) &=", body))
    from handgrad.notation.render import latex_name

    assert shown == {latex_name(n) for n in lets}
    used = set(re.findall(r"\\mathrm\{d\}(\\?[A-Za-z]+(?:_\{\w+\})?)",
                          re.sub(r"\\intertext\{.*\}", "", body)))  # the rules' dU, dX are generic
    assert used <= {latex_name(n) for n in declared | lets} | {"f"}, used


@pytest.mark.parametrize("name", list(EXPRESSIONS))
def test_markdown_math_runs_are_balanced_and_the_lets_appear(runner, name):
    md = _derive(runner, name, "markdown")
    out = _json(runner, name)
    for line in md.splitlines():
        dollars = re.sub(r"\\\$", "", line)  # an escaped \$ is a dollar sign in words
        assert dollars.count("$") % 2 == 0, line
        for inner in re.findall(r"\$\$(.+?)\$\$|\$(.+?)\$", dollars):
            tex = inner[0] or inner[1]
            assert tex.strip() == tex and tex, line  # $ x$ is not math in Markdown
            assert _tex_problems(tex) == [] and _unknown_commands(tex) == set(), tex
    let_line = next(ln for ln in md.splitlines() if ln.startswith("Let "))
    assert let_line.count("$") == 2 * len(out["definitions"])
    assert md.index(let_line) < md.index("$$")
    rules = [ln for ln in md.splitlines() if ln.startswith("✓ verified — ")]
    assert rules and any("$" in ln for ln in rules)


def test_markdown_least_squares_by_hand(runner):
    md = _derive(runner, "least squares", "markdown")
    assert "Let $z = A x$." in md
    assert r"✓ verified — product rule $\mathrm{d} \left(U V\right) = \mathrm{d}U V + U \mathrm{d}V$" in md


def test_the_local_page_typesets_the_let_lines(runner):
    import xml.etree.ElementTree as ET

    from handgrad.present.page import result_html

    out = _json(runner, "least squares")
    page = result_html(out, panel="p")
    (div,) = re.findall(r'<div class="def">(.*?)</div>', page, re.S)
    assert div.startswith("let z = <math")
    math = ET.fromstring(re.search(r"<math.*?</math>", div, re.S).group(0))
    assert "".join(math.itertext()) == "A\u2062x"  # A x, invisible times between
    assert "<code>A*x</code>" in div  # the text behind a disclosure, as the lines have it


def test_the_report_pages_show_the_let_lines():
    from handgrad.present import report

    lets = [{"name": "Sigma", "text": "L*L'", "latex": "L L^{T}", "mathml": "<math><mi>L</mi></math>"},
            {"name": "C", "text": "X - one*mu'", "latex": "X - u", "mathml": None}]
    assert report.to_markdown([("lets", lets)]) == r"Let $\Sigma = L L^{T}$, $C = X - u$." + "\n"
    html = report.to_html([("lets", lets)], title="t")
    assert "<p>Let Sigma = <math><mi>L</mi></math>, <code>C = X - one*mu&#x27;</code>.</p>" in html


def test_a_python_steps_rule_text_is_typeset_too(runner):
    """examples/my_derivation.py's why texts: "product rule; d log|X| = tr(X^-1 dX)"."""
    from tests.test_rules_typeset import _squeeze

    want = (r"product rule; $\mathrm{d} \log \lvert X \rvert = "
            r"\operatorname{tr}\left(X^{-1} \mathrm{d}X\right)$")
    for fmt in ("markdown", "latex"):
        r, _ = invoke(runner, "derive", "--file", "examples/my_derivation.py", "--format", fmt)
        assert r.exit_code == 0
        assert _squeeze(want) in _squeeze(r.stdout), fmt
