"""Lexer and Pratt (top-down operator precedence) parser for the notation.

Hand-written on purpose: the grammar is a dozen operators and a fixed list of
functions, a Pratt parser for it is ~200 lines, has no dependency to install, and gives
error messages that point at a character (``tr(X'*y``: "expected ')'").

Precedence, loosest first (as on matrixcalculus.org):

    + -                  binary, left
    * .* ./ / ⊙ o ⊗      binary, left ('o' only between two operands)
    -                    prefix:  -x^2 = -(x^2),  -a*b = (-a)*b
    ^ .^                 right:   X^-1, X^{-1}, X^2;  X^T and X^{T} are transposes
    '                    postfix transpose: a*b' = a*(b')

``dX`` is the differential of X when X is declared (or, with no declarations given,
any identifier ``d<name>``).  ``|X|`` is det(X), ``||x||`` is norm2(x), ``kron(A, B)``
and ``A ⊗ B`` are the Kronecker product, ``eye`` (no argument) the identity.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from handgrad.notation.ast import (
    BINARY,
    FUNCTIONS,
    MAX_DEPTH,
    MAX_NESTING,
    PREC_NEG,
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
    depth,
)
from handgrad.notation.errors import NotationError
from handgrad.notation.operators import BINARY_TABLE, INFIX, SPELLINGS, TABLE

CALL_FORM = {op for op, b in BINARY_TABLE.items() if b.as_call}  # kron(A, B)


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+(?:\.(?![*/^])\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\.\*|\./|\.\^|\|\||[-+*/^'(){}|,⊙⊗])
""", re.VERBOSE)


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """(kind, value, offset) triples, ending with ("end", "", len(text))."""
    out, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if not m:
            raise NotationError(f"unexpected character {text[i]!r}", text, i)
        kind = m.lastgroup
        if kind != "ws":
            out.append((kind, m.group(), i))
        i = m.end()
    out.append(("end", "", len(text)))
    return out




class _Parser:
    def __init__(self, text: str, declared: Collection[str] | None):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.declared = None if declared is None else set(declared)
        self.nesting = 0

    # -- token helpers
    def peek(self, k: int = 0) -> tuple[str, str, int]:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> tuple[str, str, int]:
        t = self.peek()
        self.i += 1
        return t

    def error(self, message: str, tok: tuple[str, str, int] | None = None) -> NotationError:
        tok = tok or self.peek()
        return NotationError(message, self.text, tok[2])

    def expect(self, value: str, what: str) -> tuple[str, str, int]:
        tok = self.peek()
        if tok[1] != value or tok[0] == "end":
            found = "the end" if tok[0] == "end" else repr(tok[1])
            raise self.error(f"expected {value!r} {what}, found {found}")
        return self.next()

    # -- grammar
    def parse(self) -> Node:
        if self.peek()[0] == "end":
            raise self.error("empty formula")
        node = self.expr(0)
        tok = self.peek()
        if tok[0] != "end":
            raise self.error(f"unexpected {tok[1]!r}")
        return node

    def infix_op(self) -> str | None:
        kind, value, _ = self.peek()
        if kind == "op":
            return INFIX.get(value)
        if kind == "ident" and value == "o":
            return ".*"
        return None

    def expr(self, rbp: int) -> Node:
        left = self.nud()
        while True:
            kind, value, pos = self.peek()
            if value == "'" and kind == "op":
                self.next()
                left = Transpose(left, pos=pos)
                continue
            op = self.infix_op()
            if op is None:
                if kind in ("ident", "num") or value == "(":
                    raise self.error(f"missing operator before {value!r} (write * for a product)")
                return left
            lbp = BINARY[op]
            if lbp <= rbp:
                return left
            self.next()
            if op in ("^", ".^"):
                left = self.power(left, op, pos)
                continue
            right = self.expr(lbp)
            left = Bin(op, left, right, pos=pos)

    def power(self, base: Node, op: str, pos: int) -> Node:
        kind, value, _ = self.peek()
        if op == "^" and kind == "ident" and value == "T":
            self.next()
            return Transpose(base, pos=pos)
        if value == "{":
            if op == "^" and self.peek(1)[1] == "T" and self.peek(2)[1] == "}":
                self.i += 3
                return Transpose(base, pos=pos)
            self.next()
            exponent = self.expr(0)
            self.expect("}", "to close the exponent")
        else:
            exponent = self.expr(BINARY[op] - (1 if op in RIGHT_ASSOC else 0))
        return Bin(op, base, exponent, pos=pos)

    def nud(self) -> Node:
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                raise self.error(f"the formula is nested more than {MAX_NESTING} levels deep (parentheses, "
                                 "functions, signs); name an inner part with let")
            return self._nud()
        finally:
            self.nesting -= 1

    def _nud(self) -> Node:
        kind, value, pos = tok = self.next()
        if kind == "num":
            return Num(float(value), pos=pos)
        if value in ("-", "+") and kind == "op":
            j = self.i
            operand = self.expr(PREC_NEG)
            if value == "+":
                return operand
            if isinstance(operand, Num) and self.i == j + 1:  # "-2" is the number -2
                return Num(-operand.value, pos=pos)
            return Neg(operand, pos=pos)
        if value == "(":
            inner = self.expr(0)
            self.expect(")", "to close '('")
            return inner
        if value in ("|", "||"):
            inner = self.expr(0)
            self.expect(value, f"to close {value!r}")
            fn = next(name for name, o in TABLE.items() if o.fence == value)  # |X| is det, ||x|| norm2
            return Call(fn, (inner,), pos=pos)
        if kind == "ident":
            return self.name(tok)
        if kind == "end":
            raise self.error("formula ends where an operand was expected", tok)
        raise self.error(f"expected an operand, found {value!r}", tok)

    def name(self, tok: tuple[str, str, int]) -> Node:
        _, value, pos = tok
        is_call = self.peek()[1] == "("
        if value in SPELLINGS or value in CALL_FORM:
            fn = SPELLINGS.get(value, value)
            if fn in SIZE_ARGUMENT and not is_call:
                return Call(fn, (), pos=pos)
            if fn in SIZE_ARGUMENT:  # eye(n), eye(3): the identity of a stated size (a size, not a formula)
                self.next()
                kind, size, at = tok2 = self.next()
                if kind not in ("num", "ident") or (kind == "num" and not size.isdigit()):
                    raise self.error(f"{value}(n) takes a size: a whole number or a size letter", tok2)
                if self.peek()[1] != ")":
                    raise self.error(f"{value}(n) takes a size: a whole number or a size letter, then ')'",
                                     self.peek())
                self.next()
                return Call(fn, (Num(float(size), pos=at) if kind == "num" else Sym(size, pos=at),),
                            pos=pos)
            if not is_call:
                raise self.error(f"{value} needs its argument in parentheses: {value}(...)", tok)
            self.next()
            args = [] if self.peek()[1] == ")" else [self.expr(0)]
            while self.peek()[1] == ",":
                self.next()
                args.append(self.expr(0))
            self.expect(")", f"to close {value}(")
            want = 2 if value in CALL_FORM else FUNCTIONS[fn][0]
            if len(args) != want:
                raise self.error(f"{value} takes {want} argument{'s' * (want != 1)}, got {len(args)}", tok)
            if value in CALL_FORM:  # kron(A, B) is A ⊗ B
                return Bin(value, args[0], args[1], pos=pos)
            return Call(fn, tuple(args), pos=pos)
        if value == "T":
            raise self.error("T is reserved for the transpose (X^T); use another name", tok)
        if self.declared is None:
            if value.startswith("d") and len(value) > 1:
                return Diff(value[1:], pos=pos)
            return Sym(value, pos=pos)
        if value in self.declared:
            return Sym(value, pos=pos)
        if value.startswith("d") and value[1:] in self.declared:
            return Diff(value[1:], pos=pos)
        if is_call:  # exq(x): a misspelled function, not a missing declaration
            near = _near(value, [*SPELLINGS, *CALL_FORM])
            raise self.error(f"unknown function {value!r}"
                             + (f"; did you mean {' or '.join(near)}?" if near else "")
                             + f" (the functions: {', '.join(sorted([*FUNCTIONS, *CALL_FORM]))})", tok)
        near = _near(value, self.declared)
        raise self.error(f"unknown name {value!r}"
                         + (f"; did you mean {' or '.join(near)}?" if near else "")
                         + f" (declare it with let {value}: SHAPE)", tok)


def _near(word: str, names: Collection[str]) -> list[str]:
    """Up to three names close to a misspelled one, closest first."""
    import difflib

    return [repr(n) for n in difflib.get_close_matches(word, sorted(names), n=3, cutoff=0.6)]


def parse(text: str, declared: Collection[str] | None = None) -> Node:
    """Parse one formula.  With ``declared`` (the names a file lets), unknown names are errors
    and ``dX`` is a differential only for a declared X."""
    node = _Parser(text, declared).parse()
    levels = depth(node)
    if levels > MAX_DEPTH:
        raise NotationError(f"the formula is {levels} levels deep (a sum of n terms is n deep); "
                            f"handgrad reads at most {MAX_DEPTH}: name parts of it with let", text, 0)
    return node
