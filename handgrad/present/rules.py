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

GREEK = dict(zip(
    ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
     "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi",
     "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi",
     "Psi", "Omega"], "αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΥΦΨΩ"))
FUNCTIONS = {"tr", "log", "exp", "vec", "diag", "det", "sum", "softmax", "sqrt", "tanh",
             "inv", "norm2", "kron", "logdet", "softplus", "sigmoid", "relu", "max", "min"}
# short words that are English in a rule text; longer lowercase words are English unless
# they are a function, a Greek letter or a differential of a name (dmu, dSigma)
SHORT_WORDS = {"is", "of", "to", "in", "on", "by", "at", "as", "or", "an", "if", "it", "be",
               "so", "we", "no", "do"}
TOKEN = re.compile(r"\s+|[^\W\d][\w]*|\d+(?:\.\d+)?|\|\||\.[*/^]|.", re.S)
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


def split(text: str) -> list[tuple[str, str]]:
    """[(kind, text)] with kind "text" or "math": runs of formula tokens between words."""
    tokens = TOKEN.findall(text)
    kinds = []
    depth = 0
    for k, t in enumerate(tokens):
        depth = max(0, depth + {"(": 1, ")": -1}.get(t, 0))
        if t.isspace():
            kinds.append("space")
        elif (t in ",;:" and not depth) or t in ";:" or _prose(t) or _article(tokens, k):
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


def _el(tag: str, *children: ET.Element, text: str | None = None, **attrs: str) -> ET.Element:
    e = ET.Element(tag, attrs)
    if text is not None:
        e.text = text
    e.extend(children)
    return e


def _name(word: str) -> ET.Element:
    """W1 -> W with subscript 1; x_i -> x with subscript i; dX -> d X; mu -> μ."""
    if "_" in word:
        base, sub = word.split("_", 1)
        return _el("msub", _name(base), _name(sub) if sub else _el("mi", text=""))
    if word in FUNCTIONS:
        return _el("mi", text=word)
    if word == "d":  # the differential's d, upright as on the derivation's lines
        return _el("mi", text="d", mathvariant="normal")
    m = re.fullmatch(r"(d2?)([A-Za-z].*)", word)
    if m and len(word) > 1 and _is_name(m.group(2)) and m.group(2) not in FUNCTIONS \
            and word not in GREEK:
        d = _el("mi", text="d", mathvariant="normal")
        if m.group(1) == "d2":
            d = _el("msup", d, _el("mn", text="2"))
        return _el("mrow", d, _name(m.group(2)))
    m = re.fullmatch(r"([A-Za-z]+?)(\d+)", word)
    if m:
        return _el("msub", _name(m.group(1)), _el("mn", text=m.group(2)))
    if word in GREEK:
        return _el("mi", text=GREEK[word])
    if len(word) == 2 and word.isalpha():  # AB: two factors, A B
        return _el("mrow", _el("mi", text=word[0]), _el("mo", text="\u2062"),
                   _el("mi", text=word[1]))
    return _el("mi", text=word)


OPS = {"*": "\u2062", "-": "\u2212", "=": "=", "+": "+", "/": "/", ",": ",", "⊗": "⊗",
       "⊙": "⊙", "⊘": "⊘", ".*": "⊙", "./": "⊘", ".": ".", "<": "<", ">": ">", "~": "~",
       "!": "!"}
SIZE = re.compile(r"\d+|[A-Za-z]")


class _Unreadable(Exception):
    pass


def _layout(tokens: list[str]) -> ET.Element:
    """Atoms with their postfix ' and ^e, operators between them; brackets nest."""
    items: list[ET.Element] = []
    i = 0

    def atom_at(k: int) -> tuple[ET.Element, int]:
        t = tokens[k]
        if t == "(":
            depth, j = 1, k + 1
            while j < len(tokens) and depth:
                depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                j += 1
            if depth:
                raise _Unreadable
            inner = _layout(tokens[k + 1:j - 1])
            return _el("mrow", _el("mo", text="("), inner, _el("mo", text=")")), j
        if t in ("||", "|", "‖"):
            close = tokens.index(t, k + 1) if t in tokens[k + 1:] else -1
            if close < 0:
                raise _Unreadable
            bar = "|" if t == "|" else "\u2016"
            return _el("mrow", _el("mo", text=bar), _layout(tokens[k + 1:close]),
                       _el("mo", text=bar)), close + 1
        if re.fullmatch(r"\d+(\.\d+)?", t):
            return _el("mn", text=t), k + 1
        if re.fullmatch(r"[^\W\d]\w*", t):
            return _name(t), k + 1
        raise _Unreadable

    while i < len(tokens):
        t = tokens[i]
        if (t == "x" and 0 < i < len(tokens) - 1 and SIZE.fullmatch(tokens[i - 1])
                and SIZE.fullmatch(tokens[i + 1]) and "=" not in tokens and "(" not in tokens):
            items.append(_el("mo", text="\u00d7"))  # n x m: a size
            i += 1
            continue
        if t in OPS:
            items.append(_el("mo", text=OPS[t]))
            i += 1
            continue
        a, i = atom_at(i)
        if a.tag == "mi" and a.text in FUNCTIONS and i < len(tokens) and tokens[i] == "(":
            items.append(a)
            items.append(_el("mo", text="\u2061"))
            continue
        while i < len(tokens) and tokens[i] in ("'", "^", ".^"):
            if tokens[i] == "'":
                a = _el("msup", a, _el("mi", text="T", mathvariant="normal"))
                i += 1
                continue
            k = i + 1
            sign = []
            if k < len(tokens) and tokens[k] == "-":
                sign = [_el("mo", text="\u2212")]
                k += 1
            if k >= len(tokens):
                raise _Unreadable
            if tokens[k] == "T":
                e, k = _el("mi", text="T", mathvariant="normal"), k + 1
            else:
                e, k = atom_at(k)
                if tokens[k - 1] == ")":  # x^(1/2): the brackets are the exponent's
                    e = e[1]
            a = _el("msup", a, _el("mrow", *sign, e) if sign else e)
            i = k
        items.append(a)
    return _el("mrow", *items) if len(items) != 1 else items[0]


def mathml(formula: str) -> str | None:
    """One formula run as a <math> element, or None where it cannot be read."""
    tokens = [t for t in TOKEN.findall(formula) if not t.isspace()]
    try:
        body = _layout(tokens)
    except (_Unreadable, ValueError, IndexError):
        return None
    m = _el("math", body, xmlns=MATH_NS, display="inline")
    return ET.tostring(m, encoding="unicode")


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


__all__ = ["mathml", "rule_html", "split"]
