"""The notation's parser and printers: precedence, the notes' spellings, errors, round trips."""

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handgrad.notation import (
    Bin,
    Call,
    Diff,
    Neg,
    NotationError,
    Num,
    Sym,
    Transpose,
    parse,
    to_latex,
    to_mathml,
    to_text,
)

X, Y, A, B, a, b, x = (Sym(n) for n in ("X", "Y", "A", "B", "a", "b", "x"))


@pytest.mark.parametrize("text, tree", [
    ("a + b*x", Bin("+", a, Bin("*", b, x))),
    ("a - b - x", Bin("-", Bin("-", a, b), x)),
    ("a*b'", Bin("*", a, Transpose(b))),
    ("(a*b)'", Transpose(Bin("*", a, b))),
    ("-x^2", Neg(Bin("^", x, Num(2)))),
    ("-a*b", Bin("*", Neg(a), b)),
    ("-2*x", Bin("*", Num(-2), x)),
    ("a^b^x", Bin("^", a, Bin("^", b, x))),
    ("X^-1*Y", Bin("*", Bin("^", X, Num(-1)), Y)),
    ("X^{-1}*Y", Bin("*", Bin("^", X, Num(-1)), Y)),
    ("X^T*Y", Bin("*", Transpose(X), Y)),
    ("X^{T}*Y", Bin("*", Transpose(X), Y)),
    ("X'*Y", Bin("*", Transpose(X), Y)),
    ("x'^2", Bin("^", Transpose(x), Num(2))),
    ("a .* b ./ x", Bin("./", Bin(".*", a, b), x)),
    ("a o b", Bin(".*", a, b)),
    ("a ⊙ b", Bin(".*", a, b)),
    ("A ⊗ B", Bin("kron", A, B)),
    ("kron(A, B)", Bin("kron", A, B)),
    ("|X|", Call("det", (X,))),
    ("log(|X|)", Call("log", (Call("det", (X,)),))),
    ("||x||^2", Bin("^", Call("norm2", (x,)), Num(2))),
    ("X.^2", Bin(".^", X, Num(2))),
    ("a*x/2", Bin("/", Bin("*", a, x), Num(2))),
    ("tr(dX'*A)", Call("tr", (Bin("*", Transpose(Diff("X")), A),))),
    ("eye*x", Bin("*", Call("eye", ()), x)),
    ("vector(1)'*x", Bin("*", Transpose(Call("vector", (Num(1),))), x)),
    ("sigma(X*x)", Call("sigma", (Bin("*", X, x),))),
    ("o", Sym("o")),
    ("1e-3*x", Bin("*", Num(0.001), x)),
    ("1.*x", Bin(".*", Num(1), x)),     # the dot belongs to .*, not to the number
    ("2.5.^x", Bin(".^", Num(2.5), x)),
])
def test_precedence_and_spellings(text, tree):
    assert parse(text) == tree


def test_declared_names_decide_differentials():
    assert parse("dX + dA", {"X", "A"}) == Bin("+", Diff("X"), Diff("A"))
    assert parse("d", {"d"}) == Sym("d")
    assert parse("dx", {"dx", "x"}) == Sym("dx")   # a declared name wins
    with pytest.raises(NotationError, match="unknown name 'Z'"):
        parse("X + Z", {"X"})


@pytest.mark.parametrize("text, message, col", [
    ("tr(X'*y", "expected ')' to close tr(", 7),
    ("2X", "missing operator before 'X'", 1),
    ("X +", "formula ends where an operand was expected", 3),
    ("tr X", "tr needs its argument in parentheses", 0),
    ("a $ b", "unexpected character '$'", 2),
    ("(a + b", "expected ')'", 6),
    ("kron(A)", "kron takes 2 arguments, got 1", 0),
    ("a * T", "T is reserved", 4),
    ("", "empty formula", 0),
    ("a b", "missing operator", 2),
])
def test_errors_point_at_the_character(text, message, col):
    with pytest.raises(NotationError) as info:
        parse(text)
    assert message in info.value.message
    assert info.value.pos == col
    assert str(info.value).splitlines()[-1] == "    " + " " * col + "^"


ROUND_TRIP = [
    "tr(X'*A*X) + logdet(X)", "tr(dX'*A*X + X'*A*dX) + tr(inv(X)*dX)", "tr(((A + A')*X + inv(X)')' * dX)",
    "-(2)", "--2", "a - -2", "a*-b", "(X^2)'", "(-2)^x", "-2^x", "x^(a*b)'", "(a^b)^x", "1 - p",
    "exp(-(x - mu)'*(x - mu)/2)", "X'^-1", "kron(A', B)*vec(X)", "|A*B|", "||x - y||", "p.*(1 - p)",
    "sum(softplus(X*w)) - y'*X*w", "diag(p .* (1-p))", "a/(b*x)", "(a/b)/x", "a/b/x", "1e-20*x", "1e20*x",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_text_round_trips(text):
    e = parse(text)
    assert parse(to_text(e)) == e
    assert to_text(parse(to_text(e))) == to_text(e)


NAMES = st.sampled_from(["a", "b", "X", "Y", "w"])
NUMS = st.sampled_from([0.5, 1.0, 2.0, -1.0, -3.0, 1e-20]).map(Num)
LEAF = st.one_of(NAMES.map(Sym), NAMES.map(Diff), NUMS, st.just(Call("eye", ())))
OPS = st.sampled_from(["+", "-", "*", ".*", "./", "/", "^", ".^", "kron"])
FNS = st.sampled_from(["tr", "inv", "exp", "sigma", "vec", "det", "norm2", "vector"])


def _extend(children):
    return st.one_of(
        st.builds(Neg, children), st.builds(Transpose, children),
        st.builds(Bin, OPS, children, children),
        st.builds(lambda f, c: Call(f, (c,)), FNS, children))


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@settings(max_examples=300, deadline=None)
@given(st.recursive(LEAF, _extend, max_leaves=8))
def test_any_tree_round_trips(tree):
    assert parse(to_text(tree)) == tree


@pytest.mark.parametrize("text, latex", [
    ("tr(X'*A*X) + logdet(X)", r"\operatorname{tr}\left(X^{T} A X\right) + \log\lvert X \rvert"),
    ("inv(X)'", r"\left(X^{-1}\right)^{T}"),
    ("X^-1", "X^{-1}"),
    ("|X|", r"\lvert X \rvert"),
    ("a .* b", r"a \odot b"),
    ("kron(A, B)", r"A \otimes B"),
    ("x'*A*x/2", r"\frac{x^{T} A x}{2}"),
    ("dX", r"\mathrm{d}X"),
    ("sigma(z)", r"\sigma\left(z\right)"),
    ("norm2(x)^2", r"{\lVert x \rVert}^{2}"),
    ("vector(1)", r"\mathbf{1}"),
    ("2*x", "2 x"),
    ("x*2", r"x \cdot 2"),
    ("a*-b", r"a \left(-b\right)"),
    ("mu_1 + Sigma", r"\mu_{1} + \Sigma"),
])
def test_latex(text, latex):
    assert to_latex(parse(text)) == latex


MORE = ["eye", "matrix(2)", "vector(c)", "sqrt(x)", "X.^2", "norm1(x)"]


@pytest.mark.parametrize("text", ROUND_TRIP + MORE)
def test_mathml_is_well_formed(text):
    root = ET.fromstring(to_mathml(parse(text)))
    assert root.tag == "{http://www.w3.org/1998/Math/MathML}math"
    assert len(list(root)) == 1


def test_mathml_structure():
    root = ET.fromstring(to_mathml(parse("X^T")))
    ns = "{http://www.w3.org/1998/Math/MathML}"
    sup = root.find(f"{ns}msup")
    assert [c.text for c in sup] == ["X", "T"]
    frac = ET.fromstring(to_mathml(parse("a/b"))).find(f"{ns}mfrac")
    assert [c.text for c in frac] == ["a", "b"]
