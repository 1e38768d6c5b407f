"""Rule texts typeset (handgrad/present/rules.py): formulas become MathML, words stay words,
and text it cannot read stays text (escaped)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from handgrad.present import rules


def _maths(html_text: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<math.*?</math>", html_text, re.S)]


def _text(html_text: str) -> str:
    return re.sub(r"<math.*?</math>", "#", html_text, flags=re.S)


def test_words_stay_words_formulas_become_mathml():
    out = rules.rule_html("wrong sign: d(X^-1) = -X^-1 dX X^-1")
    assert _text(out) == "wrong sign: #"
    (m,) = _maths(out)
    ns = "{http://www.w3.org/1998/Math/MathML}"
    sups = m.findall(f".//{ns}msup")
    assert len(sups) == 3  # three X^-1, each an exponent raised over its base
    for s in sups:
        base, exp = list(s)
        assert base.text == "X" and "".join(exp.itertext()) == "\u22121"


def test_transpose_greek_subscripts_and_sizes():
    out = rules.rule_html("tr(M') = tr(M); W1 and Sigma; 1 x n")
    maths = _maths(out)
    assert _text(out) == "#; # and #; #"
    flat = ["".join(m.itertext()) for m in maths]
    assert any("\u03a3" in f for f in flat)  # Sigma -> Σ
    assert any(f == "1\u00d7n" for f in flat)  # a size: 1 × n
    ns = "{http://www.w3.org/1998/Math/MathML}"
    assert any(s[1].text == "T" for m in maths for s in m.iter(f"{ns}msup"))
    assert [next(m.iter(f"{ns}msub"))[1].text for m in maths if list(m.iter(f"{ns}msub"))] == ["1"]


def test_prose_only_and_unreadable_text_is_escaped():
    assert rules.rule_html("collect by differential") == "collect by differential"
    out = rules.rule_html("labels in {0, 1} <script>x</script>")
    assert "<script" not in out and "&lt;script" in out  # never markup of its own
    assert rules.rule_html(None) == "" and rules.rule_html("") == ""


def test_every_rule_the_deriver_prints_is_typeset():
    """Each rule text of the deriver with a formula in it is typeset, every formula run
    readable (none falls back to plain text)."""
    from handgrad.notation.auto_rules import RULES

    for text in set(RULES.values()):
        out = rules.rule_html(text)
        assert ("<math" in out) == ("=" in text), text
        for kind, s in rules.split(text):
            if kind == "math":
                assert rules.mathml(s) is not None, (text, s)


def test_the_article_a_is_a_word_and_a_name_a_is_math():
    """"a scalar is its own trace" reads as words; "d(a'x) = a' dx" keeps a as a name."""
    from handgrad.present.rules import split

    assert split("linearity; a scalar is its own trace") == [
        ("text", "linearity; a scalar is its own trace")]
    assert split("d(a'x) = a' dx") == [("math", "d(a'x) = a' dx")]


# --- LaTeX and Markdown: the same layout, a second typesetter ---------------------------------


def _squeeze(tex: str) -> str:
    """Spacing that TeX ignores removed: blanks survive only between two letters (A B, where
    they keep two names apart)."""
    return re.sub(r"(?<![A-Za-z]) +| +(?![A-Za-z])", "", tex)


LATEX_CASES = [
    ("product rule d(UV) = dU V + U dV",
     r"product rule $\mathrm{d}\left(U V\right) = \mathrm{d}U V + U \mathrm{d}V$"),
    ("d(X^-1) = -X^-1 dX X^-1",
     r"$\mathrm{d}\left(X^{-1}\right) = -X^{-1} \mathrm{d}X X^{-1}$"),
    ("tr(AB) = tr(BA)",
     r"$\operatorname{tr}\left(A B\right) = \operatorname{tr}\left(B A\right)$"),
    ("‖u‖² = u'u", r"$\lVert u \rVert^{2} = u^{T} u$"),
    ("d softmax(U) = S ⊙ dU - S ⊙ (1 1'(S ⊙ dU)), S = softmax(U), column by column",
     r"$\mathrm{d} \operatorname{softmax}\left(U\right) = S \odot \mathrm{d}U - S \odot "
     r"\left(1\,1^{T} \left(S \odot \mathrm{d}U\right)\right)$, "
     r"$S = \operatorname{softmax}\left(U\right)$, column by column"),
    ("d(U ⊗ V) = dU ⊗ V + U ⊗ dV",
     r"$\mathrm{d}\left(U \otimes V\right) = \mathrm{d}U \otimes V + U \otimes \mathrm{d}V$"),
    ("tr(M') = tr(M); W1 and Sigma; 1 x n",
     r"$\operatorname{tr}\left(M^{T}\right) = \operatorname{tr}\left(M\right)$; $W_{1}$ and "
     r"$\Sigma$; $1 \times n$"),
    ("d σ(U) = σ(U) ⊙ (1 - σ(U)) ⊙ dU",
     r"$\mathrm{d} \sigma\left(U\right) = \sigma\left(U\right) \odot \left(1 - \sigma\left(U\right)"
     r"\right) \odot \mathrm{d}U$"),
    ("d log(U) = dU ⊘ U", r"$\mathrm{d} \log\left(U\right) = \mathrm{d}U \oslash U$"),
    ("d|X| = |X| tr(X^-1 dX)",
     r"$\mathrm{d} \lvert X \rvert = \lvert X \rvert \operatorname{tr}\left(X^{-1} \mathrm{d}X\right)$"),
    ("d2f = dx' H dx; mu and dmu",
     r"$\mathrm{d}^{2} f = {\mathrm{d}x}^{T} H \mathrm{d}x$; $\mu$ and $\mathrm{d}\mu$"),
    ("d(U^k) = sum of U^j dU U^(k-1-j)",  # "sum of" is words: sum is applied to nothing
     r"$\mathrm{d}\left(U^{k}\right) =$ sum of $U^{j} \mathrm{d}U U^{k - 1 - j}$"),
    ("linearity; a scalar is its own trace", "linearity; a scalar is its own trace"),
]


@pytest.mark.parametrize("text, expected", LATEX_CASES)
def test_rule_texts_in_latex(text, expected):
    assert _squeeze(rules.rule_latex(text)) == _squeeze(expected)


def test_rule_texts_in_markdown_are_words_and_dollar_math():
    assert _squeeze(rules.rule_markdown("product rule d(UV) = dU V + U dV")) == _squeeze(
        r"product rule $\mathrm{d}\left(U V\right) = \mathrm{d}U V + U \mathrm{d}V$")
    # Markdown's own characters in words are escaped, a lone operator is no formula
    assert rules.rule_markdown("use * for $5") == r"use \* for \$5"
    assert rules.rule_markdown(None) == "" and rules.rule_latex("") == ""


def test_unreadable_formulas_stay_escaped_text_in_latex():
    assert rules.rule_latex("labels in {0, 1}") == r"labels in \{0, 1\}"
    assert rules.rule_latex("f = a @ b") == "f = a @ b"  # @ is no operator: text
    assert rules.rule_latex("50% & more") == r"50\% \& more"
    out = rules.rule_latex("x_ and α_β")
    assert all(ord(c) < 128 for c in out)  # LaTeX text stays ASCII


def test_latex_and_mathml_come_from_one_layout():
    """Both typesetters print the same tree: a formula either of them cannot read, neither
    prints, and the superscripts they raise are the same ones."""
    for text in ["d(X^-1) = -X^-1 dX X^-1", "‖u‖² = u'u", "tr(AB) = tr(BA)", "x @ y"]:
        box = rules._parse(text)
        ml, tex = rules.mathml(text), rules.latex(text)
        assert (box is None) == (ml is None) == (tex is None), text
        if box is None:
            continue
        ns = "{http://www.w3.org/1998/Math/MathML}"
        assert len(list(ET.fromstring(ml).iter(f"{ns}msup"))) == tex.count("^"), text


def test_every_rule_the_deriver_prints_is_typeset_in_latex():
    from handgrad.notation.auto_rules import RULES

    for text in set(RULES.values()):
        for kind, s in rules.split(text):
            if kind == "math":
                assert rules.latex(s), (text, s)


def test_a_rule_text_prints_a_function_as_the_lines_do():
    """logdet(X) in a rule text is log|X|, as on the derivation's lines (one table entry
    prints both); sqrt(U) is a radical."""
    from handgrad.present.rules import rule_latex
    assert rule_latex("d logdet(X) = tr(X^-1 dX)") == \
        r"$\mathrm{d} \log\lvert X \rvert = \operatorname{tr} \left(X^{-1} \mathrm{d}X\right)$"
    assert rule_latex("d sqrt(U) = dU ⊘ (2 sqrt(U))") == \
        r"$\mathrm{d} \sqrt{U} = \mathrm{d}U \oslash \left(2 \sqrt{U}\right)$"
