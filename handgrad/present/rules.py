"""Rule texts typeset: the words of a rule ("product rule", "wrong sign") stay words, its
formulas ("d(UV) = dU V + U dV", "tr(AB) = tr(BA)", "d(X^-1) = -X^-1 dX X^-1") become
MathML like the derivation's lines (exponents raised, transposes as a superscript T,
Greek names as letters, W1 as W with a subscript 1).

A rule text is free text written for a reader, not a formula in the notation (products
are juxtaposed, ``AB`` is A times B), so it is not parsed by the notation's parser: a small
tokenizer marks each run of formula tokens between prose words, and each run is laid out
with superscripts and subscripts.  Anything it cannot read stays plain text, escaped.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

GREEK = dict(zip(
    ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
     "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi",
     "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi",
     "Psi", "Omega"], "αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΥΦΨΩ"))


class _Functions:
    """The notation's functions, read from its operator table when asked (entries registered
    later included; constants such as vector(1), English words such as "sign" and Greek
    letters such as sigma excepted), and kron, max and min."""

    _cache: tuple = ((), frozenset())

    def _names(self) -> frozenset[str]:
        from handgrad.notation.operators import SPELLINGS, TABLE
        key = tuple(SPELLINGS.items())  # rebuilt only when an entry is registered or removed
        if key != self._cache[0]:
            self._cache = (key, frozenset(s for s, n in SPELLINGS.items() if TABLE[n].kind != "const"
                                          and s not in GREEK and s != "sign") | {"kron", "max", "min"})
        return self._cache[1]

    def __contains__(self, word: str) -> bool:
        return word in self._names()

    def __iter__(self):
        return iter(sorted(self._names()))


FUNCTIONS = _Functions()
# short words that are English in a rule text; longer lowercase words are English unless
# they are a function, a Greek letter or a differential of a name (dmu, dSigma)
SHORT_WORDS = {"is", "of", "to", "in", "on", "by", "at", "as", "or", "an", "if", "it", "be",
               "so", "we", "no", "do"}
_SUP = "⁰¹²³⁴-⁹"  # superscript digits: ‖u‖² is ‖u‖ squared
TOKEN = re.compile(rf"\s+|[^\W\d{_SUP}](?:(?![{_SUP}])\w)*|[{_SUP}]+|\d+(?:\.\d+)?|\|\||\.[*/^]|.",
                   re.S)
MATH_NS = "http://www.w3.org/1998/Math/MathML"


def _is_name(word: str) -> bool:
    """A math name: a letter or two (A, AB, dX), a Greek letter, a name with digits (W1)."""
    base = re.sub(r"\d+$", "", word.split("_")[0])
    return (len(base) <= 2 or base in GREEK or base in FUNCTIONS
            or (base[0] == "d" and _is_name(base[1:]) and base[1:] not in FUNCTIONS))


def _prose(word: str) -> bool:
    if not word[0].isalpha():
        return False
    if word.lower() in SHORT_WORDS and word.islower():
        return True
    return word.isalpha() and len(word) >= 3 and not word.isupper() and not _is_name(word)


def _article(tokens: list[str], k: int) -> bool:
    """"a" before a word of prose is the article ("a scalar is its own trace"), not a name
    (as in "d(a'x) = a' dx")."""
    if tokens[k] != "a" or k + 2 >= len(tokens) or not tokens[k + 1].isspace():
        return False
    return _prose(tokens[k + 2])


def _fn_word(tokens: list[str], k: int) -> bool:
    """A function's name before a word or at a sentence's end is a word itself ("sum of
    U^j dU U^(k-1-j)", "vec stacks columns"); before an argument (log|X|, det L) it is math."""
    if tokens[k] not in FUNCTIONS or len(tokens[k]) < 3:
        return False
    nxt = next((t for t in tokens[k + 1:] if not t.isspace()), "")
    return nxt in ("", ",", ";", ":", ")", ".") or _prose(nxt)


def split(text: str) -> list[tuple[str, str]]:
    """[(kind, text)] with kind "text" or "math": runs of formula tokens between words."""
    tokens = TOKEN.findall(text)
    kinds = []
    depth = 0
    for k, t in enumerate(tokens):
        depth = max(0, depth + {"(": 1, ")": -1}.get(t, 0))
        if t.isspace():
            kinds.append("space")
        elif ((t in ",;:" and not depth) or t in ";:" or _prose(t) or _article(tokens, k)
              or _fn_word(tokens, k)):
            kinds.append("text")
        else:
            kinds.append("math")
    # a run of math tokens; spaces inside it stay in it, at its edges they are text
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        if kinds[i] != "math":
            _push(out, "text", tokens[i])
            i += 1
            continue
        j = i
        last = i
        while j < len(tokens) and kinds[j] in ("math", "space"):
            if kinds[j] == "math":
                last = j
            j += 1
        for kind, s in _trim(tokens[i:last + 1]):
            _push(out, kind, s)
        i = last + 1
    return out


def _trim(run: list[str]) -> list[tuple[str, str]]:
    """A run's unmatched brackets and a leading apostrophe (the notes' X) are text."""
    lead, tail = [], []
    while run and (run[0] in ("'", ")") or run[0].isspace()):
        lead.append(run.pop(0))
    depth, opened = 0, []
    for k, t in enumerate(run):
        if t == "(":
            opened.append(k)
        elif t == ")":
            if opened:
                opened.pop()
            else:
                depth += 1
    if opened:  # "... (" the rest in words: the bracket and what follows it go to text
        tail = run[opened[0]:]
        run = run[:opened[0]]
    elif depth:  # "0)": the closing brackets are the sentence's
        while run and run[-1] == ")" and depth:
            tail.insert(0, run.pop())
            depth -= 1
    while run and run[-1].isspace():
        tail.insert(0, run.pop())
    out = [("text", "".join(lead))] if lead else []
    if run:
        s = "".join(run)
        out.append(("text" if re.fullmatch(r"[.\-]", s) else "math", s))
    if tail:
        out.append(("text", "".join(tail)))
    return out


def _push(out: list, kind: str, s: str) -> None:
    if out and out[-1][0] == kind == "text":
        out[-1] = ("text", out[-1][1] + s)
    else:
        out.append((kind, s))


# ----------------------------------------------------------------------------- layout
# One parse of a formula run, two typesetters: the layout below reads the tokens into a
# small tree of boxes, and MathML (the report, the local page) and LaTeX (derive --format
# latex and markdown) are both printed from that tree.


@dataclass(frozen=True)
class Box:
    """One laid-out piece of a formula.

    kind: "name" (a letter or a Greek name: A, mu, σ), "fn" (tr, log), "upright" (the
    differential's d, the transpose's T), "num", "op" (its text the operator's symbol),
    "row" (boxes side by side), "sup" (base, exponent), "sub" (base, subscript) and
    "fence" (its text the bracket: "(", "|" or "‖"; one box inside)."""

    kind: str
    text: str = ""
    kids: tuple = ()


def _row(*kids: Box) -> Box:
    return kids[0] if len(kids) == 1 else Box("row", kids=tuple(kids))


def _name(word: str) -> Box:
    """W1 -> W with subscript 1; x_i -> x with subscript i; dX -> d X; mu -> μ."""
    if "_" in word:
        base, sub = word.split("_", 1)
        return Box("sub", kids=(_name(base), _name(sub) if sub else Box("name", "")))
    if word.isdigit():  # x_1's subscript
        return Box("num", word)
    if word in FUNCTIONS:
        return Box("fn", word)
    if word == "d":  # the differential's d, upright as on the derivation's lines
        return Box("upright", "d")
    m = re.fullmatch(r"(d2?)([A-Za-z].*)", word)
    if m and len(word) > 1 and _is_name(m.group(2)) and m.group(2) not in FUNCTIONS \
            and word not in GREEK:
        d = Box("upright", "d")
        if m.group(1) == "d2":
            d = Box("sup", kids=(d, Box("num", "2")))
        return _row(d, _name(m.group(2)))
    m = re.fullmatch(r"([A-Za-z]+?)(\d+)", word)
    if m:
        return Box("sub", kids=(_name(m.group(1)), Box("num", m.group(2))))
    if len(word) == 2 and word.isalpha() and word not in GREEK:  # AB: two factors, A B
        return _row(Box("name", word[0]), Box("op", "\u2062"), Box("name", word[1]))
    return Box("name", word)


OPS = {"*": "\u2062", "-": "\u2212", "=": "=", "+": "+", "/": "/", ",": ",", "⊗": "⊗",
       "⊙": "⊙", "⊘": "⊘", ".*": "⊙", "./": "⊘", ".": ".", "<": "<", ">": ">", "~": "~",
       "!": "!"}
SIZE = re.compile(r"\d+|[A-Za-z]")
SUPERSCRIPT = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789"))


class _Unreadable(Exception):
    pass


def _layout(tokens: list[str]) -> Box:
    """Atoms with their postfix ', ^e and ², operators between them; brackets nest."""
    items: list[Box] = []
    i = 0

    def atom_at(k: int) -> tuple[Box, int]:
        t = tokens[k]
        if t == "(":
            depth, j = 1, k + 1
            while j < len(tokens) and depth:
                depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                j += 1
            if depth:
                raise _Unreadable
            return Box("fence", "(", (_layout(tokens[k + 1:j - 1]),)), j
        if t in ("||", "|", "‖"):
            close = tokens.index(t, k + 1) if t in tokens[k + 1:] else -1
            if close < 0:
                raise _Unreadable
            bar = "|" if t == "|" else "‖"
            return Box("fence", bar, (_layout(tokens[k + 1:close]),)), close + 1
        if re.fullmatch(r"\d+(\.\d+)?", t):
            return Box("num", t), k + 1
        if re.fullmatch(r"[^\W\d]\w*", t) and t[0] not in SUPERSCRIPT:
            return _name(t), k + 1
        raise _Unreadable

    while i < len(tokens):
        t = tokens[i]
        if (t == "x" and 0 < i < len(tokens) - 1 and SIZE.fullmatch(tokens[i - 1])
                and SIZE.fullmatch(tokens[i + 1]) and "=" not in tokens and "(" not in tokens):
            items.append(Box("op", "\u00d7"))  # n x m: a size
            i += 1
            continue
        if t in OPS:
            items.append(Box("op", OPS[t]))
            i += 1
            continue
        a, i = atom_at(i)
        if a.kind == "fn" and i < len(tokens) and tokens[i] == "(":
            items.append(a)
            items.append(Box("op", "\u2061"))
            continue
        while i < len(tokens) and (tokens[i] in ("'", "^", ".^") or tokens[i][0] in SUPERSCRIPT):
            if tokens[i] == "'":
                a = Box("sup", kids=(a, Box("upright", "T")))
                i += 1
                continue
            if tokens[i][0] in SUPERSCRIPT:  # ‖u‖²
                if not all(c in SUPERSCRIPT for c in tokens[i]):
                    raise _Unreadable
                a = Box("sup", kids=(a, Box("num", "".join(SUPERSCRIPT[c] for c in tokens[i]))))
                i += 1
                continue
            k = i + 1
            sign = []
            if k < len(tokens) and tokens[k] == "-":
                sign = [Box("op", "\u2212")]
                k += 1
            if k >= len(tokens):
                raise _Unreadable
            if tokens[k] == "T":
                e, k = Box("upright", "T"), k + 1
            else:
                e, k = atom_at(k)
                if tokens[k - 1] == ")":  # x^(1/2): the brackets are the exponent's
                    e = e.kids[0]
            a = Box("sup", kids=(a, Box("row", kids=(*sign, e)) if sign else e))
            i = k
        items.append(a)
    return _row(*items) if items else Box("row")


def _parse(formula: str) -> Box | None:
    tokens = [t for t in TOKEN.findall(formula) if not t.isspace()]
    try:
        return _layout(tokens)
    except (_Unreadable, ValueError, IndexError):
        return None


# ----------------------------------------------------------------------------- MathML


def _el(tag: str, *children: ET.Element, text: str | None = None, **attrs: str) -> ET.Element:
    e = ET.Element(tag, attrs)
    if text is not None:
        e.text = text
    e.extend(children)
    return e


def _to_mathml(b: Box) -> ET.Element:
    if b.kind == "row":
        return _el("mrow", *(_to_mathml(k) for k in b.kids))
    if b.kind == "name":
        return _el("mi", text=GREEK.get(b.text, b.text))
    if b.kind == "fn":
        return _el("mi", text=b.text)
    if b.kind == "upright":
        return _el("mi", text=b.text, mathvariant="normal")
    if b.kind == "num":
        return _el("mn", text=b.text)
    if b.kind == "op":
        return _el("mo", text=b.text)
    if b.kind in ("sup", "sub"):
        return _el("m" + b.kind, *(_to_mathml(k) for k in b.kids))
    bar = "\u2016" if b.text == "‖" else b.text
    close = ")" if bar == "(" else bar
    return _el("mrow", _el("mo", text=bar), _to_mathml(b.kids[0]), _el("mo", text=close))


def mathml(formula: str) -> str | None:
    """One formula run as a <math> element, or None where it cannot be read."""
    body = _parse(formula)
    if body is None:
        return None
    m = _el("math", _to_mathml(body), xmlns=MATH_NS, display="inline")
    return ET.tostring(m, encoding="unicode")


# ----------------------------------------------------------------------------- LaTeX

_GREEK_CHAR = {c: n for n, c in GREEK.items()}
_LATEX_FN = {"max": "\\max", "min": "\\min", "det": "\\det"}  # besides the notation's own (its table)


def _table_latex(name: str) -> str | None:
    """The notation's LaTeX for a function (its operator table entry): a command such as
    \\log, or a template with {a} such as \\log\\lvert {a} \\rvert; None where it has none."""
    from handgrad.notation.operators import SPELLINGS, TABLE
    op = TABLE.get(SPELLINGS.get(name, ""))
    return op.latex if op is not None and isinstance(op.latex, str) else None
_LATEX_OP = {"\u2062": "", "\u2061": "", "\u2212": "-", "⊗": "\\otimes", "⊙": "\\odot",
             "⊘": "\\oslash", "\u00d7": "\\times", "~": "\\sim", "=": "=", "+": "+", "/": "/",
             ",": ",", ".": ".", "<": "<", ">": ">", "!": "!"}
_FENCE = {"(": ("\\left(", "\\right)"), "|": ("\\lvert ", "\\rvert"), "‖": ("\\lVert ", "\\rVert")}


def _latex_name(name: str) -> str:
    if name in GREEK:
        return "\\" + name
    if name in _GREEK_CHAR:
        return "\\" + _GREEK_CHAR[name]
    if name == "ℓ":
        return "\\ell"
    if not re.fullmatch(r"[A-Za-z]+", name):
        raise _Unreadable  # no letter LaTeX knows: the run stays text
    return name if len(name) <= 1 else f"\\mathrm{{{name}}}"


def _to_latex(b: Box) -> str:
    if b.kind == "row":
        parts, kids, i = [], b.kids, 0
        while i < len(kids):
            t = _table_latex(kids[i].text) if kids[i].kind == "fn" else None
            if t and "{a}" in t and i + 2 < len(kids) and kids[i + 2].kind == "fence" \
                    and kids[i + 2].text == "(":  # logdet(X) as the lines print it: log|X|
                parts.append(t.format(a=_to_latex(kids[i + 2].kids[0]).strip()))
                i += 3
                continue
            parts.append(_to_latex(kids[i]))
            i += 1
        out = ""
        for p in parts:
            if not out:  # a leading sign: -X, X^{-1}
                p = p.strip()
            if p and out and (out[-1].isalpha() and p[0].isalnum() or p[0] == "\\"
                              and out[-1] not in "({[_^"):
                out += " "
            elif p and out and out[-1].isdigit() and p[0].isdigit():
                out += "\\,"  # 1 1': two numbers, not eleven
            out += p
        return out
    if b.kind == "name":
        return _latex_name(b.text)
    if b.kind == "fn":
        t = _table_latex(b.text)
        return t if t and "{a}" not in t else _LATEX_FN.get(b.text, f"\\operatorname{{{b.text}}}")
    if b.kind == "upright":
        return "\\mathrm{d}" if b.text == "d" else b.text
    if b.kind == "num":
        return b.text
    if b.kind == "op":
        op = _LATEX_OP[b.text]
        return f" {op} " if op in ("=", "+", "-", "\\otimes", "\\odot", "\\oslash", "\\times",
                                   "\\sim", "<", ">") else op
    if b.kind in ("sup", "sub"):
        base, script = b.kids
        s = _to_latex(base)
        if base.kind in ("row", "sup", "sub") or (base.kind == "name" and len(s) > 1
                                                   and not s.startswith("\\")):
            s = "{" + s + "}"
        return f"{s}{'^' if b.kind == 'sup' else '_'}{{{_to_latex(script).strip()}}}"
    left, right = _FENCE[b.text]
    return f"{left}{_to_latex(b.kids[0]).strip()}{right}"


def latex(formula: str) -> str | None:
    """One formula run as LaTeX math (no $ around it), or None where it cannot be read."""
    body = _parse(formula)
    if body is None:
        return None
    try:
        out = _to_latex(body)
    except _Unreadable:
        return None
    return re.sub(r" {2,}", " ", out).strip()


# ----------------------------------------------------------------------------- rule texts


_TEX_TEXT = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
             "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
             "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
             "|": r"\textbar{}", "\u2019": "'", "\u2212": "-", "\u2014": "---", "\u2013": "--",
             "\u00a7": r"\S{}", "⊗": r"$\otimes$", "⊙": r"$\odot$", "⊘": r"$\oslash$",
             "\u2713": r"$\checkmark$", "\u2717": r"$\times$"}


def tex_text(s: str) -> str:
    """Words for LaTeX's text mode: specials escaped, symbols spelled out, ASCII only (the
    one escaper of derive --format latex: titles, notes and rule words)."""
    s = "".join(_TEX_TEXT.get(c, c) for c in s)
    return s.encode("ascii", "replace").decode("ascii")


def md_text(s: str, *, bar: bool = False) -> str:
    """Words for Markdown: emphasis, code and math characters escaped, and | with ``bar``
    (a table's cells escape it themselves)."""
    for ch in ("\\", "*", "_", "`", "<", ">", "#", "[", "]", "$") + (("|",) if bar else ()):
        s = s.replace(ch, "\\" + ch)
    return s


def _typeset(text: str, math, words) -> str:
    out = []
    for kind, s in split(text):
        m = math(s) if kind == "math" else None
        out.append(m if m is not None else words(s))
    return "".join(out)


def _dollars(formula: str) -> str | None:
    t = latex(formula)
    return f"${t}$" if t else None  # an operator alone ("*") is no formula: it stays text


def rule_latex(text: str | None) -> str:
    """A rule text for LaTeX's text mode (an \\intertext, a \\text): its words escaped, its
    formulas as $...$ math from the same layout as the MathML."""
    if not text:
        return ""
    return _typeset(text, _dollars, tex_text)


def rule_markdown(text: str | None) -> str:
    """A rule text for Markdown: its words escaped, its formulas as $...$ inline math."""
    if not text:
        return ""
    return _typeset(text, _dollars, md_text)


def rule_html(text: str | None) -> str:
    """A rule text as HTML: its words as text, its formulas as MathML (escaped text where a
    formula cannot be read)."""
    if not text:
        return ""
    out = []
    for kind, s in split(text):
        m = mathml(s) if kind == "math" else None
        out.append(m if m is not None else html.escape(s, quote=False))
    return "".join(out)


__all__ = ["Box", "latex", "mathml", "rule_html", "rule_latex", "rule_markdown", "split", "tex_text"]
