"""Printers: plain text (the input syntax), LaTeX and Presentation MathML, all from the tree.

``to_text`` round-trips: ``parse(to_text(e)) == e``.  It spells every node in the
input syntax (``X'``, ``inv(X)``, ``det(X)``, ``kron(A, B)``), whichever spelling the
formula was typed in.  ``to_latex`` writes the notes' notation (``X^T``, ``X^{-1}``,
``\\lvert X \\rvert``, ``\\odot``, ``\\otimes``, ``\\operatorname{tr}``); ``to_mathml``
the same as a ``<math>`` element, built with xml.etree so it is always well-formed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from handgrad.notation.ast import (
    BINARY,
    PREC_ATOM,
    PREC_MUL,
    PREC_NEG,
    PREC_POSTFIX,
    RIGHT_ASSOC,
    SIZE_ARGUMENT,
    Bin,
    Call,
    Diff,
    Neg,
    Node,
    Num,
    Sym,
    Transpose,
    precedence,
)
from handgrad.notation.operators import BINARY_TABLE, TABLE

GREEK = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
         "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi",
         "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi",
         "Psi", "Omega"]
_GREEK_CHAR = dict(zip(GREEK, "αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΥΦΨΩ"))


def number(v: float) -> str:
    """2.0 -> '2', 0.5 -> '0.5', 1e-20 -> '1e-20' (always reads back as the same float)."""
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _mixed(child: Node, parent: Bin) -> bool:
    """A product of another kind inside a product (A .* B inside * or the reverse):
    parenthesised for the reader, though left-to-right parsing would not need it."""
    return (isinstance(child, Bin) and child.op != parent.op and BINARY.get(child.op) == PREC_MUL
            and BINARY[parent.op] == PREC_MUL and "." in child.op + parent.op)


# ----------------------------------------------------------------------------- text
def _text_child(child: Node, parent: Bin, side: str) -> str:
    s = to_text(child)
    if isinstance(child, Bin) and BINARY_TABLE[child.op].as_call:
        return s  # kron(A, B) is a call in the text form: it needs no parentheses
    p, c = BINARY[parent.op], precedence(child)
    if parent.op in RIGHT_ASSOC:
        wrap = c <= p if side == "a" else (c < PREC_NEG and not isinstance(child, Num))
    else:
        wrap = c < p if side == "a" else c <= p
    return f"({s})" if wrap or _mixed(child, parent) else s


def to_text(node: Node) -> str:
    """The formula in the input syntax."""
    if isinstance(node, Num):
        return number(node.value)
    if isinstance(node, Sym):
        return node.name
    if isinstance(node, Diff):
        return "d" + node.name
    if isinstance(node, Neg):
        s = to_text(node.x)
        wrap = precedence(node.x) < PREC_NEG or isinstance(node.x, Num) and node.x.value >= 0
        return f"-({s})" if wrap else f"-{s}"
    if isinstance(node, Transpose):
        s = to_text(node.x)
        return (f"({s})" if precedence(node.x) < PREC_POSTFIX else s) + "'"
    if isinstance(node, Bin):
        if BINARY_TABLE[node.op].as_call:  # kron(A, B)
            return f"{node.op}({to_text(node.a)}, {to_text(node.b)})"
        sep = f" {node.op} " if node.op in "+-" else node.op
        return _text_child(node.a, node, "a") + sep + _text_child(node.b, node, "b")
    if isinstance(node, Call):
        if node.fn in SIZE_ARGUMENT:  # eye, eye(n)
            return f"{node.fn}({_size_text(node.args[0])})" if node.args else node.fn
        return f"{node.fn}({', '.join(to_text(a) for a in node.args)})"
    raise TypeError(f"not a notation node: {node!r}")


# ---------------------------------------------------------------------------- LaTeX
def _split_name(name: str) -> tuple[str, str]:
    """'l2' -> ('l', '2'), 'alpha_1' -> ('alpha', '1'), 'x' -> ('x', ''): trailing digits
    are a subscript, as the notes write ℓ₂ and x₁."""
    base, _, sub = name.partition("_")
    if not sub and len(base) > 1 and base[-1].isdigit() and base.rstrip("0123456789"):
        i = len(base.rstrip("0123456789"))
        base, sub = base[:i], base[i:]
    return base, sub


def latex_name(name: str) -> str:
    base, sub = _split_name(name)
    if base == "l" and sub:  # l2 is ℓ₂ (a lone l reads as 1 next to its subscript)
        return f"\\ell_{{{sub}}}"
    if base in GREEK:
        out = "\\" + base
    elif len(base) == 1:
        out = base
    else:
        out = f"\\mathrm{{{base}}}"
    return f"{out}_{{{sub}}}" if sub else out




def _paren(s: str) -> str:
    return f"\\left({s}\\right)"


def _kron_in_product(child: Node, parent: Bin) -> bool:
    """A ⊗ B beside another product: (B^T ⊗ A) vec(X), as the notes write it (the text
    form needs nothing: kron(A, B) is a call there)."""
    return (isinstance(child, Bin) and BINARY[parent.op] == PREC_MUL and child.op != parent.op
            and any(BINARY_TABLE[o].as_call for o in (child.op, parent.op))
            and BINARY.get(child.op) == PREC_MUL)


def _latex_child(child: Node, parent: Bin, side: str) -> str:
    s = to_latex(child)
    p, c = BINARY[parent.op], precedence(child)
    if parent.op == "*" and side == "b" and c <= PREC_NEG:
        return _paren(s)
    wrap = c < p if side == "a" else c <= p
    return _paren(s) if wrap or _mixed(child, parent) or _kron_in_product(child, parent) else s


def _sup(base: Node, exponent: str) -> str:
    s = to_latex(base)
    if precedence(base) < PREC_ATOM or _superscripted(base):
        s = _paren(s)
    elif not (isinstance(base, (Sym, Diff, Num)) and len(s) == 1):
        s = "{" + s + "}"
    return f"{s}^{{{exponent}}}"


def to_latex(node: Node) -> str:
    """The formula as the notes write it, in LaTeX."""
    if isinstance(node, Num):
        return number(node.value)
    if isinstance(node, Sym):
        return latex_name(node.name)
    if isinstance(node, Diff):
        return "\\mathrm{d}" + latex_name(node.name)
    if isinstance(node, Neg):
        s = to_latex(node.x)
        return "-" + (_paren(s) if precedence(node.x) < PREC_NEG else s)
    if isinstance(node, Transpose):
        return _sup(node.x, "T")
    if isinstance(node, Bin):  # the operator's LaTeX, from the operator table
        entry = BINARY_TABLE[node.op]
        if callable(entry.latex):
            return entry.latex(_PRINTER, node)
        return _latex_child(node.a, node, "a") + entry.latex + _latex_child(node.b, node, "b")
    if isinstance(node, Call):
        return _latex_call(node)
    raise TypeError(f"not a notation node: {node!r}")


def _size_text(a: Node) -> str:
    """eye(n)'s size: a letter or a whole number."""
    return f"{int(a.value)}" if isinstance(a, Num) else a.name


def _superscripted(node: Node) -> bool:
    """A function printed with a superscript of its own (X^{-1}): bracketed under another one."""
    op = TABLE.get(node.fn) if isinstance(node, Call) else None
    return op is not None and op.power_form


def _latex_call(node: Call) -> str:
    op = TABLE[node.fn]
    s = None if op.size_argument or not node.args else to_latex(node.args[0])
    if callable(op.latex):
        return op.latex(_PRINTER, node, s)
    if op.latex and "{a}" in op.latex:  # a template: |X|, ‖x‖, sqrt
        return op.latex.format(a=s)
    name = op.latex or f"\\operatorname{{{node.fn}}}"
    return name + _paren(s)


# --------------------------------------------------------------------------- MathML
MATHML_NS = "http://www.w3.org/1998/Math/MathML"


def _el(tag: str, *children: ET.Element, text: str | None = None, **attrs: str) -> ET.Element:
    e = ET.Element(tag, attrs)
    e.text = text
    e.extend(children)
    return e


def _mo(s: str, **attrs: str) -> ET.Element:
    return _el("mo", text=s, **attrs)


def _mparen(e: ET.Element) -> ET.Element:
    return _el("mrow", _mo("("), e, _mo(")"))


def _mname(name: str) -> ET.Element:
    base, sub = _split_name(name)
    base = "ℓ" if base == "l" and sub else _GREEK_CHAR.get(base, base)
    mi = _el("mi", text=base, **({"mathvariant": "normal"} if len(base) > 1 else {}))
    return _el("msub", mi, _el("mn" if sub.isdigit() else "mi", text=sub)) if sub else mi


def _mchild(child: Node, parent: Bin, side: str) -> ET.Element:
    e = _ml(child)
    p, c = BINARY[parent.op], precedence(child)
    wrap = (c < p if side == "a" else c <= p) or (parent.op == "*" and side == "b" and c <= PREC_NEG)
    return _mparen(e) if wrap or _mixed(child, parent) or _kron_in_product(child, parent) else e


def _msup(base: Node, exponent: ET.Element) -> ET.Element:
    b = _ml(base)
    if precedence(base) < PREC_ATOM or _superscripted(base):
        b = _mparen(b)
    return _el("msup", b, exponent)


def _ml(node: Node) -> ET.Element:  # noqa: C901 - one case per node kind
    if isinstance(node, Num):
        if node.value < 0:
            return _el("mrow", _mo("−"), _el("mn", text=number(-node.value)))
        return _el("mn", text=number(node.value))
    if isinstance(node, Sym):
        return _mname(node.name)
    if isinstance(node, Diff):
        return _el("mrow", _el("mi", text="d", mathvariant="normal"), _mname(node.name))
    if isinstance(node, Neg):
        e = _ml(node.x)
        return _el("mrow", _mo("−"), _mparen(e) if precedence(node.x) < PREC_NEG else e)
    if isinstance(node, Transpose):
        return _msup(node.x, _el("mi", text="T", mathvariant="normal"))
    if isinstance(node, Bin):  # the operator's MathML, from the operator table
        entry = BINARY_TABLE[node.op]
        if callable(entry.mathml):
            return entry.mathml(_PRINTER, node)
        return _el("mrow", _mchild(node.a, node, "a"), _mo(entry.mathml), _mchild(node.b, node, "b"))
    if isinstance(node, Call):
        op = TABLE[node.fn]
        e = None if op.size_argument or not node.args else _ml(node.args[0])
        if callable(op.mathml):
            return op.mathml(_PRINTER, node, e)
        return _el("mrow", _el("mi", text=op.mathml or node.fn), _mo("\u2061"), _mparen(e))
    raise TypeError(f"not a notation node: {node!r}")


def to_mathml(node: Node, display: str = "inline") -> str:
    """The formula as a Presentation MathML ``<math>`` element (a string)."""
    root = _el("math", _ml(node), xmlns=MATHML_NS, display=display)
    return ET.tostring(root, encoding="unicode")


def line_latex(lhs: str, node: Node) -> str:
    return f"{lhs} = {to_latex(node)}"


class _Printer:
    """What an operator table entry prints with (handgrad.notation.operators): brackets,
    superscripts and MathML elements, as the printers above use them."""

    paren, sup, size_text = staticmethod(_paren), staticmethod(_sup), staticmethod(_size_text)
    el, mo, mparen, msup = staticmethod(_el), staticmethod(_mo), staticmethod(_mparen), staticmethod(_msup)
    latex, latex_child = staticmethod(to_latex), staticmethod(_latex_child)
    mathml = staticmethod(_ml)


_PRINTER = _Printer()
