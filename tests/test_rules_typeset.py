"""Rule texts typeset (handgrad/present/rules.py): formulas become MathML, words stay words,
and text it cannot read stays text (escaped)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

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
