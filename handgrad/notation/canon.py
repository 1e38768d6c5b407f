"""The canonical form the simplifier prints through (SymPy's ``as_coeff_matrices`` habit).

A *term* is a rational coefficient, scalar atoms with rational exponents (dividing by s is
s^-1, sqrt(s) is s^(1/2)) and an ordered list of matrix factors, equal neighbours merged
into powers (X*X -> X^2, X*inv(X) -> nothing).  A *sum* maps terms to coefficients, so
like terms are collected by construction.  Transposes are pushed to the atoms and dropped
on symmetric ones; symmetry is computed once per node and propagates (declared sym/spd/
diagonal, eye, diag(v), inv(S), S^k, c S, S1 +- S2, M' S M, A + A').  A product whose
value is a scalar (u'A v) becomes one scalar atom, in one orientation (u'Av and v'A'u
are the same atom).  Elementwise products are collected the same way (factors commute;
u ./ v is u .* v^-1), so (1 - y) ./ (1 - p) .* p .* (1 - p) is (1 - y) .* p.

A sum inside a product stays a group, (A*x - b), unless expanding it makes the printed
form shorter; printing takes out a common factor where that is shorter too, and writes
each term with a numerator and a denominator.  Every rewrite is an identity, and what
is printed is checked by the verifier anyway.
"""

from __future__ import annotations

import re
from fractions import Fraction

from handgrad.notation.ast import Bin, Call, Diff, Neg, Node, Num, Sym, Transpose
from handgrad.notation.operators import TABLE
from handgrad.notation.render import to_text
from handgrad.notation.shapes import ONE

Q = Fraction
ONE_Q = Q(1)
MAX_EXPAND = 64   # terms an expansion may produce before the group is kept as it is
MAX_TRY = 200     # terms above which only the plain (unfactored) form is printed


def q(v: float) -> Q:
    """A float as the fraction a person wrote (0.5 -> 1/2), exactly when it is not one."""
    f = Q(v).limit_denominator(10**6)
    return f if f and abs(float(f) - v) <= 1e-12 * abs(v) else Q(v)


_DECIMAL = re.compile(r"(?<![\w.])\d*\.\d+(?:[eE][-+]?\d+)?")


def writes_decimals(*texts: str) -> bool:
    """Whether the input writes a number with a decimal point that is not whole (0.5, not
    2.0 or 1/2): its coefficients are then printed as decimals too."""
    return any(not float(m).is_integer() for t in texts for m in _DECIMAL.findall(t))


def decimal(c: Q, decimals: bool = False) -> bool:
    """Whether the coefficient c prints as a decimal number (0.37) rather than a fraction
    (1/2).  A decimal only where it is exact (0.37, never 0.3333333333333333 for 1/3) or
    c is no fraction a person wrote (1e-20); then where the input wrote decimals, or the
    denominator is past 12 (37/100 is written 0.37)."""
    if c.denominator == 1:
        return False
    if c.denominator > 10**6:
        return True
    d = c.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1 and (decimals or c.denominator > 12)


def _num(c: Q, decimals: bool = False) -> Node:
    """The coefficient c as a number node: 2, 0.5 or 1/2 (see ``decimal``)."""
    if c.denominator == 1 or decimal(c, decimals):
        return Num(float(c))
    return Bin("/", Num(float(c.numerator)), Num(float(c.denominator)))


def _ones(e: Node) -> bool:
    return isinstance(e, Call) and e.fn in ("vector", "matrix") and isinstance(e.args[0], Num) \
        and e.args[0].value == 1


def _count_t(e: Node) -> int:
    from handgrad.notation.ast import walk
    return sum(isinstance(n, Transpose) for n in walk(e))


class Canon:
    """Canonical forms over one context (shapes and properties of names); memoised."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._canon: dict[Node, dict] = {}
        self._sym: dict[Node, bool] = {}
        self._tatom: dict[Node, Node] = {}
        self._text: dict[Node, str] = {}
        self._node: dict[tuple, Node] = {}

    # ------------------------------------------------------------------ helpers
    def text(self, e: Node) -> str:
        t = self._text.get(e)
        if t is None:
            t = self._text[e] = to_text(e)
        return t

    def scalar(self, e: Node) -> bool:
        return self.ctx.scalar(e)

    @property
    def decimals(self) -> bool:
        """Whether the input wrote decimals (the context's ``decimals``, set by the deriver)."""
        return self.ctx.decimals

    def simp(self, e: Node) -> Node:
        return self.node(self.canon(e))

    # ------------------------------------------------------------------ sums
    @staticmethod
    def const(c: Q) -> dict:
        return {((), ()): c} if c else {}

    def atom(self, n: Node, k: Q | int = 1) -> dict:
        if self.scalar(n):
            return {(((n, Q(k)),), ()): ONE_Q}
        return {((), ((n, int(k)),)): ONE_Q}

    @staticmethod
    def add(a: dict, b: dict, sign: int = 1) -> dict:
        out = dict(a)
        for k, c in b.items():
            v = out.get(k, 0) + sign * c
            if v:
                out[k] = v
            else:
                out.pop(k, None)
        return out

    @staticmethod
    def scale(a: dict, c: Q) -> dict:
        return {k: v * c for k, v in a.items()} if c else {}

    def _merge_scal(self, a: tuple, b: tuple) -> tuple:
        d: dict[Node, Q] = dict(a)
        for n, e in b:
            d[n] = d.get(n, 0) + e
        for n, e in list(d.items()):  # exp(u) / (1 + exp(u)) = sigma(u)
            u = _one_plus_exp(n)
            if u is not None and e < 0 and d.get(Call("exp", (u,)), 0) > 0:
                k = min(-e, d[Call("exp", (u,))])
                d[n] += k
                d[Call("exp", (u,))] -= k
                s = Call("sigma", (u,))
                d[s] = d.get(s, 0) + k
        return tuple(sorted(((n, e) for n, e in d.items() if e), key=lambda p: self.text(p[0])))

    def _merge_mats(self, a: tuple, b: tuple) -> tuple:
        out = list(a)
        for n, k in b:
            if out and out[-1][0] == n:
                out[-1] = (n, out[-1][1] + k)
            elif out and _inv_pair(out[-1][0], n):
                m, j = out[-1]
                if j > k:
                    out[-1] = (m, j - k)
                    continue
                out.pop()
                if k > j:
                    out.append((n, k - j))
                continue
            else:
                out.append((n, k))
            if out[-1][1] == 0:
                out.pop()
        eyes = [p for p in out if isinstance(p[0], Call) and p[0].fn == "eye"]
        if eyes and len(eyes) < len(out):
            out = [p for p in out if p not in eyes]
        if not out and (a or b):  # inv(A)*A: the identity matrix, not the number 1
            out = [(Call("eye", ()), 1)]
        return tuple(out)

    def term_mul(self, k1: tuple, k2: tuple) -> dict:
        """The product of two terms (keys) as a sum (a scalar product becomes one atom)."""
        scal = self._merge_scal(k1[0], k2[0])
        mats = self._merge_mats(k1[1], k2[1])
        merged = self._mixed_product(mats)
        if merged is not None:
            return self.mul({(scal, ()): ONE_Q}, merged)
        return self._fold_scalar((scal, mats))

    def _mixed_product(self, mats: tuple) -> dict | None:
        """kron(A, B)*kron(C, D) = kron(A*C, B*D) where both products conform (the notes'
        mixed-product rule), the chain's other factors kept; None where no neighbours do."""
        shape = self.ctx.shape
        for i in range(len(mats) - 1):
            (p, j), (r, k) = mats[i], mats[i + 1]
            if not (j == k == 1 and isinstance(p, Bin) and p.op == "kron" and isinstance(r, Bin)
                    and r.op == "kron"):
                continue
            if shape(p.a)[1] != shape(r.a)[0] or shape(p.b)[1] != shape(r.b)[0]:
                continue
            merged = self.canon(Bin("kron", Bin("*", p.a, r.a), Bin("*", p.b, r.b)))
            left = {((), mats[:i]): ONE_Q} if i else self.const(ONE_Q)
            right = {((), mats[i + 2:]): ONE_Q} if mats[i + 2:] else self.const(ONE_Q)
            return self.mul(self.mul(left, merged), right)
        return None

    def _fold_scalar(self, key: tuple) -> dict:
        scal, mats = key
        if not mats:
            return {key: ONE_Q}
        first, last = self.ctx.shape(mats[0][0]), self.ctx.shape(mats[-1][0])
        if not (first[0] == ONE and last[1] == ONE) or (len(mats) == 1 and mats[0][1] == 1
                                                          and self.scalar(mats[0][0])):
            return {key: ONE_Q}
        chain = self._mats_node(mats)
        flip = self._mats_node(tuple((self.tatom(n), k) for n, k in reversed(mats)))
        pick = min((chain, flip), key=lambda n: (_count_t(n), self.text(n)))
        if self._onehot_sum(pick):
            return {(scal, ()): ONE_Q}
        return {(self._merge_scal(scal, ((pick, ONE_Q),)), ()): ONE_Q}

    def _onehot_sum(self, e: Node) -> bool:
        """1'*y or sum(y) for a column y declared onehot: 1."""
        if isinstance(e, Call) and e.fn == "sum":
            y = e.args[0]
        elif isinstance(e, Bin) and e.op == "*" and isinstance(e.a, Transpose) and _ones(e.a.x):
            y = e.b
        else:
            return False
        return isinstance(y, Sym) and "onehot" in self.ctx.props.get(y.name, frozenset()) \
            and self.ctx.column(y)

    def mul(self, a: dict, b: dict) -> dict:
        """The product, multiplied out (printing takes common factors out again); a sum
        stays a group where multiplying out would give more than MAX_EXPAND terms."""
        if not a or not b:
            return {}
        if len(a) * len(b) > MAX_EXPAND:
            a = a if len(a) == 1 else self.group(a)
            b = b if len(b) == 1 else self.group(b)
        out: dict = {}
        for k1, c1 in a.items():
            for k2, c2 in b.items():
                out = self.add(out, self.scale(self.term_mul(k1, k2), c1 * c2))
        return out

    def group(self, s: dict) -> dict:
        """A sum of two or more terms as one atom, in the orientation with fewer transposes."""
        n = self.node(s, factor=False)
        if self.scalar(n):
            return self.atom(n)
        st = self.transpose(s)
        if st == s:
            return self.atom(n)
        nt = self.node(st, factor=False)
        if (_count_t(nt), self.text(nt)) < (_count_t(n), self.text(n)):
            return self.atom(Transpose(nt))
        return self.atom(n)

    def power(self, s: dict, p: Q) -> dict:
        if p == 1:
            return s
        if not s:
            return {} if p > 0 else {((), ()): ONE_Q}  # caller guards division by zero
        if len(s) == 1:
            (key, c), = s.items()
            scal, mats = key
            if not mats and (p.denominator == 1 or c == 1 or _root(c, p) is not None):
                cp = c ** int(p) if p.denominator == 1 else (ONE_Q if c == 1 else _root(c, p))
                return {(self._merge_scal((), tuple((n, e * p) for n, e in scal)), ()): cp}
            if len(mats) == 1 and not scal and c == 1 and p.denominator == 1 and p > 0:
                return {((), ((mats[0][0], mats[0][1] * int(p)),)): ONE_Q}
        n = self.node(s, factor=False)
        if self.scalar(n):
            return {(((n, p),), ()): ONE_Q}
        if p.denominator == 1 and p > 0:
            return {((), ((n, int(p)),)): ONE_Q}
        return self.atom(Bin("^", n, Num(float(p))))

    def invert(self, s: dict) -> dict:
        return self.power(s, Q(-1))

    # ------------------------------------------------------------------ transpose, symmetry
    def transpose(self, s: dict) -> dict:
        out: dict = {}
        for (scal, mats), c in s.items():
            if not mats:
                out = self.add(out, {(scal, mats): c})
                continue
            rev = tuple((self.tatom(n), k) for n, k in reversed(mats))
            out = self.add(out, self.scale(self._fold_scalar((scal, self._merge_mats((), rev))), c))
        return out

    def tatom(self, a: Node) -> Node:
        got = self._tatom.get(a)
        if got is None:
            got = self._tatom[a] = self._tatom_of(a)
        return got

    def _tatom_of(self, a: Node) -> Node:  # noqa: C901 - one case per kind of atom
        if self.scalar(a) and not isinstance(a, Diff):
            return a
        if isinstance(a, Transpose):
            return a.x
        if self.symmetric(a):
            return a
        if isinstance(a, Call) and TABLE[a.fn].transposes and a.args:  # f(A)' = f(A'), K_mn' = K_nm
            inside = Call(a.fn, (self.simp(Transpose(a.args[0])),))
            if _count_t(inside) <= _count_t(a):  # sigma(W*x)' stays: sigma(x'*W') reads worse
                return inside
        if isinstance(a, Bin) and a.op in (".*", "./"):
            h = self.hcanon(Bin(a.op, Transpose(a.a), Transpose(a.b)))
            if len(h) == 1 and next(iter(h.values())) == 1 and len(next(iter(h))) > 1:
                return self._hprod(list(next(iter(h))))
        if isinstance(a, Bin) and a.op in (".*", "./", "kron", ".^"):
            b = a.b if a.op == ".^" or self.scalar(a.b) else self.simp(Transpose(a.b))
            return Bin(a.op, self.simp(Transpose(a.a)), b)
        if isinstance(a, Bin) and a.op == "^":
            return Bin("^", self.simp(Transpose(a.a)), a.b)
        return Transpose(a)

    def symmetric(self, a: Node) -> bool:
        got = self._sym.get(a)
        if got is None:
            self._sym[a] = False  # a cycle reads as not known to be symmetric
            got = self._sym[a] = self._symmetric(a)
        return got

    def _symmetric(self, a: Node) -> bool:  # noqa: C901 - one case per rule
        ctx = self.ctx
        if isinstance(a, Sym):
            return bool(ctx.props.get(a.name, frozenset()) & {"sym", "spd", "diagonal"})
        if isinstance(a, Call) and a.fn == "eye":
            return True
        if isinstance(a, Call) and a.fn == "diag":
            return ctx.column(a.args[0])
        if _ones(a) and isinstance(a, Call) and a.fn == "matrix":
            return False
        if isinstance(a, Call) and TABLE[a.fn].keeps_symmetry and a.args and not TABLE[a.fn].size_argument:
            return self.symmetric_expr(a.args[0])
        if isinstance(a, Transpose):
            return self.symmetric(a.x)
        if isinstance(a, Bin) and a.op in ("^", ".^"):
            return self.symmetric_expr(a.a)
        if isinstance(a, Bin) and a.op in (".*", "./", "kron"):
            return all(self.scalar(x) or self.symmetric_expr(x) for x in (a.a, a.b))
        if isinstance(a, Bin) and a.op in ("+", "-", "*", "/"):
            return self.symmetric_expr(a)
        return False

    def symmetric_expr(self, e: Node) -> bool:
        try:
            sh = self.ctx.shape(e)
        except Exception:  # noqa: BLE001 - an expression whose shape is not known
            return False
        if sh[0] != sh[1]:
            return False
        s = self.canon(e)
        if len(s) == 1:
            (key, _), = s.items()
            if not key[1]:
                return True
            if len(key[1]) == 1:
                return self.symmetric(key[1][0][0])
        return self.transpose(s) == s

    # ------------------------------------------------------------------ canon
    def canon(self, e: Node) -> dict:
        got = self._canon.get(e)
        if got is None:
            got = self._canon[e] = self._canon_of(e)
        return got

    def _canon_of(self, e: Node) -> dict:  # noqa: C901 - one case per node kind
        if isinstance(e, Num):
            return self.const(q(e.value))
        if isinstance(e, (Sym, Diff)):
            return self.atom(e)
        if isinstance(e, Neg):
            return self.scale(self.canon(e.x), Q(-1))
        if isinstance(e, Transpose):
            return self.transpose(self.canon(e.x))
        if isinstance(e, Bin):
            op = e.op
            if op in ("+", "-"):
                out = self.add(self.canon(e.a), self.canon(e.b), 1 if op == "+" else -1)
                c = out.get(((), ()))
                if c is not None and not self.scalar(e):  # 1 - p: the ones of p's shape
                    out = self.add(out, {((), ()): c}, -1)
                    out = self.add(out, self.scale(self.atom(self._ones_like(e)), c))
                return out
            if op == "*":
                return self.mul(self.canon(e.a), self.canon(e.b))
            if op in ("/", "./") and self.scalar(e.b):
                d = self.canon(e.b)
                if not d:
                    return self.atom(e)
                return self.mul(self.canon(e.a), self.invert(d))
            if op == ".*" and (self.scalar(e.a) or self.scalar(e.b)):
                return self.mul(self.canon(e.a), self.canon(e.b))
            if op in ("^", ".^") and isinstance(e.b, Num) and (op == "^" or self.scalar(e.a)):
                p = q(e.b.value)
                if p == -1 and not self.scalar(e.a):
                    return self.canon(Call("inv", (e.a,)))
                if self.scalar(e.a) or p.denominator == 1 and p > 0:
                    return self.power(self.canon(e.a), p)
            if op in (".*", "./", ".^"):
                return self.from_h(self.hcanon(e), e)
            if op == "kron":
                if self.scalar(e.a) or self.scalar(e.b):  # kron(A, c) = kron(c, A) = c A
                    return self.mul(self.canon(e.a), self.canon(e.b))
                return self.atom(Bin("kron", self.simp(e.a), self.simp(e.b)))
            return self.atom(Bin(op, self.simp(e.a), self.simp(e.b)))
        if isinstance(e, Call):
            return self._call(e)
        return self.atom(e)

    def _call(self, e: Call) -> dict:  # noqa: C901 - one case per function
        fn = e.fn
        if fn == "eye" or not e.args:
            return self.atom(e)
        u = e.args[0]
        if fn in ("tr", "sum", "det") and self.scalar(u):
            return self.canon(u)
        if self._onehot_sum(e):
            return self.const(ONE_Q)
        if fn == "diag" and _ones(u) and self.ctx.column(u):  # diag(1) = I
            return self.atom(Call("eye", ()))
        if fn == "sqrt" and self.scalar(u):
            return self.power(self.canon(u), Q(1, 2))
        if fn == "tr":
            out: dict = {}
            for (scal, mats), c in self.canon(u).items():
                inner = self._trace_atom(mats)
                out = self.add(out, self.scale(self.term_mul((scal, ()), ((), ()) if inner is None else
                                                              (((inner, ONE_Q),), ())), c))
            return out
        if fn == "inv":
            s = self.canon(u)
            if len(s) == 1:
                (key, c), = s.items()
                scal, mats = key
                if mats and (len(mats) == 1 or all(self._square(m) for m, _ in mats)):
                    # inv(A X B) = inv(B) inv(X) inv(A) for square factors (then A' inv(A)' cancels)
                    out = self.invert({(scal, ()): c})
                    for m, k in reversed(mats):
                        out = self.mul(out, {((), (self._inv_atom(m, k),)): ONE_Q})
                    return out
            return self.atom(Call("inv", (self.node(s),)))
        s = self.canon(u)
        if TABLE[fn].projection and all(mats for (_, mats) in s):
            out = {}  # tril(c A + B) = c tril(A) + tril(B), tril(tril(A)) = tril(A), tril(I) = I
            for (scal, mats), c in s.items():
                m = self._mats_node(mats)
                if not (isinstance(m, Call) and (m.fn == fn or TABLE[m.fn].size_argument)):
                    m = Call(fn, (m,))
                out = self.add(out, self.scale(self.mul({(scal, ()): ONE_Q}, self.atom(m)), c))
            return out
        if fn in ("log", "exp") and self.scalar(u) is not None:
            a = self.simp(u)
            other = "exp" if fn == "log" else "log"
            if isinstance(a, Call) and a.fn == other:
                return self.canon(a.args[0])
            return self.atom(Call(fn, (a,)))
        return self.atom(Call(fn, tuple(self.simp(x) for x in e.args)))

    def _square(self, m: Node) -> bool:
        shape = self.ctx.shape(m)
        return shape[0] == shape[1]

    def _inv_atom(self, m: Node, k) -> tuple:
        """inv(m^k) as one factor: inv(inv(X)) = X, inv(I) = I, inv(X') = inv(X)' (the notes' X^-T)."""
        if isinstance(m, Call) and m.fn == "inv":
            return (m.args[0], k)
        if isinstance(m, Call) and m.fn == "eye":
            return (m, 1)
        if isinstance(m, Transpose):
            return (self.tatom(Call("inv", (m.x,))), k)
        return (Call("inv", (m,)), k)

    def _trace_atom(self, mats: tuple) -> Node | None:
        """tr of a matrix product, in one rotation and orientation (tr(AB) = tr(BA) = tr(B'A'))."""
        if not mats:
            return None
        seqs = []
        for ms in (mats, tuple((self.tatom(n), k) for n, k in reversed(mats))):
            for i in range(len(ms)):
                seqs.append(ms[i:] + ms[:i])
        nodes = [self._mats_node(self._merge_mats((), s)) for s in seqs]
        best = min(nodes, key=lambda n: (_count_t(n), self.text(n)))
        if self.scalar(best):
            return best
        return Call("tr", (best,))

    # ------------------------------------------------------------------ elementwise
    def hcanon(self, e: Node) -> dict:
        """An elementwise expression as a sum of commuting factors: {((node, exp), ...): coef}."""
        if isinstance(e, Num):
            return {(): q(e.value)} if e.value else {}
        if _ones(e) or isinstance(e, Transpose) and _ones(e.x):
            return {(): ONE_Q}
        if isinstance(e, Neg):
            return self.scale(self.hcanon(e.x), Q(-1))
        if isinstance(e, Bin) and e.op in ("+", "-"):
            return self.add(self.hcanon(e.a), self.hcanon(e.b), 1 if e.op == "+" else -1)
        if isinstance(e, Bin) and e.op in (".*", "./") or isinstance(e, Bin) and e.op in ("*", "/") \
                and self.scalar(e.b) or isinstance(e, Bin) and e.op == "*" and self.scalar(e.a):
            a, b = self.hcanon(e.a), self.hcanon(e.b)
            if e.op in ("./", "/"):
                b = self.hpower(b, Q(-1))
                if b is None:
                    return self._hatom(e)
            return self.hmul(a, b, expand=False)
        if isinstance(e, Bin) and e.op == ".^" and isinstance(e.b, Num):
            got = self.hpower(self.hcanon(e.a), q(e.b.value))
            return self._hatom(e) if got is None else got
        if isinstance(e, Transpose) and isinstance(e.x, Bin) and e.x.op in ("+", "-", ".*", "./"):
            return self.hcanon(Bin(e.x.op, Transpose(e.x.a), Transpose(e.x.b)))
        return self._hatom(e)

    def _hatom(self, e: Node) -> dict:
        n = self.simp(e)
        if isinstance(n, Num):
            return {(): q(n.value)} if n.value else {}
        if isinstance(n, Bin) and n.op == "*":  # (1/2*A*r).*p is 1/2*(A*r).*p: the number comes out
            s = self.canon(n)
            mags = {abs(c) for c in s.values()}
            if len(mags) == 1 and all(k[1] for k in s):
                m = mags.pop() * (-1 if all(c < 0 for c in s.values()) else 1)
                if m != 1:
                    return {((self.node(self.scale(s, 1 / m)), ONE_Q),): m}
        return {((n, ONE_Q),): ONE_Q}

    def _hmerge(self, a: tuple, b: tuple) -> tuple:
        return self._merge_scal(a, b)

    def hmul(self, a: dict, b: dict, expand: bool = True) -> dict:
        if not expand or len(a) * len(b) > MAX_EXPAND:
            a = a if len(a) <= 1 else self._hgroup(a)
            b = b if len(b) <= 1 else self._hgroup(b)
        out: dict = {}
        for k1, c1 in a.items():
            for k2, c2 in b.items():
                out = self.add(out, {self._hmerge(k1, k2): c1 * c2})
        return out

    def _hgroup(self, s: dict) -> dict:
        return {((self.hnode(s, None), ONE_Q),): ONE_Q}

    def hpower(self, s: dict, p: Q) -> dict | None:
        if not s:
            return None if p < 0 else {}
        if len(s) == 1:
            (key, c), = s.items()
            if p.denominator == 1 or c == 1:
                return {tuple((n, e * p) for n, e in key): c ** int(p) if p.denominator == 1 else ONE_Q}
        return {((self.hnode(s, None), p),): ONE_Q}

    def hexpand(self, s: dict) -> dict:
        """Groups with positive integer exponents multiplied out, like terms collected."""
        out: dict = {}
        for key, c in s.items():
            acc = {(): c}
            for n, e in key:
                sub = self._hsum_of(n) if e.denominator == 1 and e > 0 else None
                sub = None if sub is None else self.hexpand(sub)
                factor = {((n, e),): ONE_Q} if sub is None else _hpow_expand(self, sub, int(e))
                if factor is None:
                    factor = {((n, e),): ONE_Q}
                acc = self.hmul(acc, factor, expand=True)
                if len(acc) > MAX_EXPAND:
                    return s
            out = self.add(out, acc)
        return out

    def _hsum_of(self, n: Node) -> dict | None:
        if isinstance(n, Bin) and n.op in ("+", "-"):
            s = self.hcanon(n)
            return s if len(s) > 1 else None
        return None

    def from_h(self, h: dict, e: Node) -> dict:
        """An elementwise sum back to a (matrix) canonical sum, expanded where shorter."""
        h = self.hexpand(h)
        out: dict = {}
        for key, c in h.items():
            scal = [(n, p) for n, p in key if self.scalar(n)]
            mat = [(n, p) for n, p in key if not self.scalar(n)]
            t = self.const(c)
            for n, p in scal:
                t = self.mul(t, self.power(self.canon(n), p))
            if not mat:  # a constant of a matrix sum: c times the ones of e's shape
                if not self.scalar(e):
                    t = self.mul(t, self.atom(self._ones_like(e)))
            elif len(mat) == 1 and mat[0][1] == 1:
                t = self.mul(t, self.canon(mat[0][0]))
            else:
                t = self.mul(t, self.atom(self._hprod(mat)))
            out = self.add(out, t)
        return out

    def _ones_like(self, e: Node) -> Node:
        return Call("vector" if self.ctx.column(e) else "matrix", (Num(1.0),))

    def _hprod(self, factors) -> Node:
        num = [(n, p) for n, p in factors if p > 0]
        den = [(n, -p) for n, p in factors if p < 0]

        def pw(n, p):
            return n if p == 1 else Bin(".^", n, Num(float(p)))
        out = None
        for n, p in num:
            out = pw(n, p) if out is None else Bin(".*", out, pw(n, p))
        if out is None:
            out = Num(1.0)
        for n, p in den:
            out = Bin("./", out, pw(n, p))
        return out

    def hnode(self, s: dict, e: Node | None) -> Node:
        terms = []
        for key, c in s.items():
            body = self._hprod(list(key)) if key else None
            terms.append((c, body))
        return _sum_node(terms, self.text, self.decimals)

    # ------------------------------------------------------------------ printing
    def _mats_node(self, mats: tuple) -> Node:
        out = None
        for n, k in mats:
            f = n if k == 1 else Bin("^", n, Num(float(k)))
            out = f if out is None else Bin("*", out, f)
        return out if out is not None else Num(1.0)

    def times(self, a: Node | None, b: Node) -> Node:
        """a*b with b's product chain kept flat (2*A'*r, not 2*(A'*r)); a scalar product
        on the right keeps its parentheses (x*(x'*A*x))."""
        if a is None:
            return b
        if isinstance(b, Bin) and b.op == "*" and not self.scalar(b):
            return Bin("*", self.times(a, b.a), b.b)
        return Bin("*", a, b)

    @staticmethod
    def _flat_mul(a: Node, b: Node) -> Node:
        """a*b with a product b written without parentheses (1/2*x'*x)."""
        if isinstance(b, Bin) and b.op == "*":
            return Bin("*", Canon._flat_mul(a, b.a), b.b)
        return Bin("*", a, b)

    def term_node(self, c: Q, key: tuple) -> Node:
        """c (> 0) times a term, with a numerator and a denominator."""
        scal, mats = key
        num_f = [(n, p) for n, p in scal if p > 0]
        den_f = [(n, -p) for n, p in scal if p < 0]
        factors: list[Node] = [Num(float(c.numerator))] if c.numerator != 1 else []
        den_c = c.denominator
        if decimal(c, self.decimals):  # 0.5*x/s, 1e-20*x: the number itself
            factors, den_c = ([_num(c, True)] if c != 1 else []), 1
        if den_c != 1 and not den_f and (num_f or mats):
            factors, den_c = [_num(c)], 1
        chains = []
        for n, p in num_f:
            if isinstance(n, Bin) and n.op == "*" and p == 1 and (mats or len(num_f) > 1):
                chains.append(n)  # a scalar product (x'*A*x) is written in parentheses
            else:
                factors.extend(_pow_factors(n, p))
        factors.extend(n if k == 1 else Bin("^", n, Num(float(k))) for n, k in mats)
        out = None
        for f in factors:
            out = f if out is None else self._flat_mul(out, f)
        for ch in chains:
            out = ch if out is None else Bin("*", out, ch)
        if out is None:
            out = Num(1.0)
        if den_f or den_c != 1:
            dens = [Num(float(den_c))] if den_c != 1 else []
            for n, p in den_f:
                dens.extend(_pow_factors(n, p))
            d = dens[0]
            for f in dens[1:]:
                d = Bin("*", d, f)
            out = Bin("/", out, d)
        return out

    def node(self, s: dict, factor: bool = True) -> Node:
        key = (tuple(s.items()), factor)
        got = self._node.get(key)
        if got is None:
            got = self._node[key] = _sum_node(self.items(s, factor), self.text, self.decimals)
        return got

    def _number_if_ones(self, c: Q, key: tuple, n: int) -> Node:
        """c*vector(1) in a sum with other terms is written c (1 - p, broadcast)."""
        if n > 1 and not key[0] and len(key[1]) == 1 and key[1][0][1] == 1 and _ones(key[1][0][0]):
            from handgrad.notation.render import number
            if c.denominator == 1 or len(number(float(c))) <= 8:  # only a written number broadcasts
                return Num(float(c))
        return self.term_node(c, key)

    def items(self, s: dict, factor: bool = True) -> list[tuple[bool, Node]]:
        """The sum as (negative, term) items, common factors taken out where shorter."""
        plain = [(c < 0, self._number_if_ones(abs(c), k, len(s))) for k, c in s.items()]
        if not factor or len(s) < 2 or len(s) > MAX_TRY:
            return plain
        best, best_len = plain, len(self.text(_sum_node(plain, self.text)))
        for cand, slack in self._factorings(s):
            n = len(self.text(_sum_node(cand, self.text))) - slack
            if n <= best_len:  # a tie goes to the factored form, (A + A')*X
                best, best_len = cand, n
        return best

    def _factorings(self, s: dict):
        """Candidates: a common scalar factor of all terms; a common first or last matrix
        factor of two or more terms (the rest of each then all matrices, or all scalars)."""
        keys = list(s)
        common = dict(keys[0][0])
        for scal, _ in keys[1:]:
            d = dict(scal)
            common = {n: (min(p, d[n]) if p > 0 else max(p, d[n])) for n, p in common.items()
                      if n in d and (p > 0) == (d[n] > 0)}
        coefs = [abs(c) for c in s.values()]
        cc = coefs[0] if len(set(coefs)) == 1 else ONE_Q
        if all(c < 0 for c in s.values()):
            cc = -cc
        if common or cc != 1:
            head = tuple(sorted(common.items(), key=lambda p: self.text(p[0])))
            rest: dict = {}
            for (scal, mats), c in s.items():
                left = self._merge_scal(scal, tuple((n, -p) for n, p in head))
                rest = self.add(rest, {(left, mats): c / cc})
            h = self.term_node(abs(cc), (head, ())) if head or abs(cc) != 1 else None
            ones = ((), ()) in rest and head  # p*(1 - p), as the notes write sigma'
            yield [(cc < 0, self.times(h, self.node(rest)))], 3 if ones else 0
            if head and all(p < 0 for _, p in head):  # c*(...)/den
                a = abs(cc)
                top_c, den_c = (a, ONE_Q) if decimal(a, self.decimals) else (Q(a.numerator), Q(a.denominator))
                den = self.term_node(den_c, (tuple((n, -p) for n, p in head), ()))
                top = self.node(rest)
                if top_c != 1:
                    top = self.times(_num(top_c, True), top)
                yield [(cc < 0, Bin("/", top, den))], 0
        hf = self._hfactor(s)
        if hf is not None:
            yield [(False, hf)], 3  # p.*(1 - p), as the notes write sigma', even if 3 longer
        hg = self._hgrouped(s) if hf is None else None
        if hg is not None:
            yield [(False, hg)], 3  # (1 - t.^2).*r, as the notes write tanh', even if 3 longer
        for side in (0, -1):
            groups: dict = {}
            for k in keys:
                if k[1]:
                    groups.setdefault(k[1][side], []).append(k)
            for f, ks in groups.items():
                if len(ks) < 2:
                    continue
                rests: dict = {}
                for k in ks:
                    m = k[1][1:] if side == 0 else k[1][:-1]
                    rests = self.add(rests, self.scale(self._fold_scalar((k[0], m)), s[k]))
                if len(rests) < 2 or len({bool(m) for (_, m) in rests}) != 1:
                    continue
                neg = all(c < 0 for c in rests.values())
                mags = {abs(c) for c in rests.values()}
                cc = next(iter(mags)) if len(mags) == 1 else ONE_Q
                rests = self.scale(rests, (-1 if neg else 1) / cc)
                inner = self.node(rests)
                fn = self._mats_node((f,))
                prod = self.times(fn, inner) if side == 0 else Bin("*", inner, fn)
                if cc != 1:
                    prod = self.times(_num(cc, self.decimals), prod)
                others = {k: c for k, c in s.items() if k not in ks}
                yield [(neg, prod)] + (self.items(others) if others else []), 0

    def _hfactor(self, s: dict) -> Node | None:
        """A common elementwise factor: p - p.^2 = p .* (1 - p)."""
        if any(len(m) > 1 or m and m[0][1] != 1 for (_, m) in s) or len({m for (_, m) in s}) == 1:
            return None
        plain = _sum_node([(c < 0, self.term_node(abs(c), k)) for k, c in s.items()], self.text)
        if self.scalar(plain):
            return None
        h = self.hcanon(plain)
        if len(h) < 2:
            return None
        keys = list(h)
        common = {n: p for n, p in keys[0] if p > 0}
        for k in keys[1:]:
            d = dict(k)
            common = {n: min(p, d[n]) for n, p in common.items() if d.get(n, 0) > 0}
        common = {n: p for n, p in common.items() if not self.scalar(n)}
        if not common:
            scalar_terms = any(k and all(self.scalar(n) for n, _ in k) for k in h)
            grouped = None if scalar_terms else self._grouped(h)
            return None if grouped is None else Bin(".*", *grouped)  # (1 - t.^2).*(W'*r)
        head = tuple(sorted(common.items(), key=lambda p: self.text(p[0])))
        rest: dict = {}
        for k, c in h.items():
            rest = self.add(rest, {self._merge_scal(k, tuple((n, -p) for n, p in head)): c})
        if all(not k for k in rest):
            return None
        if any(k and all(self.scalar(n) for n, _ in k) for k in rest):
            return None  # p.*b - s*p is not p.*(b - s): a scalar s would need s*vector(1) there
        grouped = self._grouped(rest)
        if grouped is not None:  # p.*(a - p.*a - b + p.*b) = p.*(1 - p).*(a - b)
            one_plus, r0 = grouped
            return Bin(".*", Bin(".*", self._hprod(list(head)), one_plus), r0)
        return Bin(".*", self._hprod(list(head)), self.hnode(rest, None))

    def _hgrouped(self, s: dict) -> Node | None:
        """A sum of matrix terms that is r - r.*t.^2 entry by entry, as (1 - t.^2).*r."""
        if not 2 <= len(s) <= 8:
            return None
        plain = _sum_node([(c < 0, self.term_node(abs(c), k)) for k, c in s.items()], self.text)
        if self.scalar(plain):
            return None
        h = self.hcanon(plain)
        if len(h) < 2 or any(k and all(self.scalar(n) for n, _ in k) for k in h):
            return None
        grouped = self._grouped(h)
        return None if grouped is None else Bin(".*", *grouped)

    def _grouped(self, rest: dict) -> tuple[Node, Node] | None:
        """rest = R0 + c t.^e.*R0 for an entrywise factor t, an exponent e > 0 and a number c,
        as (1 + c t.^e, R0): a - p.*a - b + p.*b = (1 - p).*(a - b), with R0 in its own
        shortest form."""
        atoms = {(n, p) for k in rest for n, p in k if p > 0 and not self.scalar(n)}
        for t, e in sorted(atoms, key=lambda a: (self.text(a[0]), a[1])):
            r0: dict = {}
            r1: dict = {}
            for k, c in rest.items():
                d = dict(k)
                if t not in d:
                    r0[k] = c
                elif d[t] == e:
                    r1[tuple((n, p) for n, p in k if n != t)] = c
                else:
                    break
            else:
                if not r0 or not r1 or any(not k for k in r0):
                    continue
                c0, c1 = (r0, r1) if set(r0) == set(r1) else \
                    (self.canon(self.hnode(r0, None)), self.canon(self.hnode(r1, None)))  # equal as values
                if not c0 or set(c0) != set(c1):
                    continue
                ratios = {c1[k] / c0[k] for k in c0}
                if len(ratios) != 1:
                    continue
                c = ratios.pop()
                one_plus = self.hnode({(): ONE_Q, ((t, e),): c}, None)
                r0_node = self.hnode(r0, None)
                if len(r0) > 1 and all(len(k) == 1 and k[0][1] == 1 for k in r0):
                    r0_node = self.node(self.canon(r0_node))  # W2'*s - W2'*y = W2'*(s - y)
                return one_plus, r0_node
        return None

    def with_name(self, s: dict, name: str, body: Node) -> dict:
        """Terms that contain body's scalar factors written with its name (f in -1/2*f*...),
        where body is one term of two or more scalar factors (a density, not x'*x)."""
        fs = self.canon(body)
        if len(fs) != 1:
            return s
        (fkey, fc), = fs.items()
        if fkey[1] or len(fkey[0]) < 2 and not (len(fkey[0]) == 1 and isinstance(fkey[0][0][0], Call)
                                                 and fkey[0][0][0].fn == "exp"):
            return s
        out: dict = {}
        for (scal, mats), c in s.items():
            d = dict(scal)
            k = None
            for n, p in fkey[0]:
                e = d.get(n, 0)
                r = e / p if e and (e > 0) == (p > 0) else 0
                k = int(r) if k is None else min(k, int(r))
            if k and k >= 1:
                left = self._merge_scal(scal, tuple((n, -p * k) for n, p in fkey[0]))
                left = self._merge_scal(left, ((Sym(name), Q(k)),))
                out = self.add(out, {(left, mats): c / fc ** k})
            else:
                out = self.add(out, {(scal, mats): c})
        return out


def _pow_factors(n: Node, p: Q) -> list[Node]:
    if p == 1:
        return [n]
    if p == Q(1, 2):
        return [Call("sqrt", (n,))]
    if p.denominator == 1:
        return [Bin("^", n, Num(float(p)))]
    if p.denominator == 2:
        whole = p - Q(1, 2)
        return _pow_factors(n, whole) + [Call("sqrt", (n,))]
    return [Bin("^", n, Num(float(p)))]


def _prod_node(head: Node | None, rest: Node, negative: bool) -> Node:
    if head is None:
        return Neg(rest) if negative else rest
    if negative:
        head = Neg(head) if not isinstance(head, Num) else Num(-head.value)
    return Bin("*", head, rest)


def _sum_node(items: list, text, decimals: bool = False) -> Node:
    """Items (negative, term) or (coef, term) as t1 + t2 - t3: constants first, then by
    text; a positive term leads."""
    if not items:
        return Num(0.0)
    norm = []
    for neg, body in items:
        if not isinstance(neg, bool):  # (coef, body) of the elementwise printer
            c = neg
            neg = c < 0
            body = _written(abs(c)) if body is None else body if abs(c) == 1 \
                else Bin("*", _num(abs(c), decimals), body)
        norm.append((neg, body))
    order = sorted(norm, key=lambda p: (not isinstance(p[1], Num) and not _is_const(p[1]),
                                        text(p[1]).lstrip("0123456789./*(")))
    for i, (neg, _) in enumerate(order):
        if not neg:
            order = [order[i]] + order[:i] + order[i + 1:]
            break
    out = None
    for neg, t in order:
        if out is None:
            out = _lead_neg(t) if neg else t
        else:
            out = Bin("-" if neg else "+", out, t)
    return out


def _written(c: Q) -> Node:
    """A constant of an elementwise sum, as a written number (only that broadcasts: 1 - p)."""
    return Num(float(c)) if c.denominator <= 10**6 else _num(c)


def _is_const(n: Node) -> bool:
    return isinstance(n, Bin) and n.op == "/" and isinstance(n.a, Num) and isinstance(n.b, Num)


def _lead_neg(t: Node) -> Node:
    """-t, the sign on the first factor (-2*x, -X*Y) rather than around the product."""
    if isinstance(t, Num):
        return Num(-t.value)
    if isinstance(t, Bin) and t.op == "/" and isinstance(t.a, Num) and isinstance(t.b, Num):
        return Bin("/", Num(-t.a.value), t.b)
    if isinstance(t, Bin) and t.op in ("*", "/") and _leftmost_plain(t):
        return Bin(t.op, _lead_neg(t.a), t.b)
    return Neg(t)


def _leftmost_plain(t: Node) -> bool:
    while isinstance(t, Bin) and t.op in ("*", "/"):
        t = t.a
    return isinstance(t, (Num, Sym, Call, Transpose))


def _one_plus_exp(n: Node) -> Node | None:
    """u where n is 1 + exp(u)."""
    if isinstance(n, Bin) and n.op == "+":
        for one, other in ((n.a, n.b), (n.b, n.a)):
            if (isinstance(one, Num) and one.value == 1 or _ones(one)) and isinstance(other, Call) \
                    and other.fn == "exp":
                return other.args[0]
    return None


def _pure_scalar(s: dict) -> bool:
    return len(s) == 1 and not next(iter(s))[1]


def _inv_pair(a: Node, b: Node) -> bool:
    """inv(X) X, X inv(X), and their transposes X' inv(X)', inv(X)' X': the identity."""
    if isinstance(a, Transpose) and isinstance(b, Transpose):
        a, b = a.x, b.x
    return isinstance(a, Call) and a.fn == "inv" and a.args[0] == b or \
        isinstance(b, Call) and b.fn == "inv" and b.args[0] == a


def _root(c: Q, p: Q) -> Q | None:
    """c^p for a rational p where it is rational (4^(1/2) = 2), else None."""
    if c <= 0:
        return None
    num, den = c.numerator, c.denominator
    r = p.denominator

    def iroot(v):
        x = round(v ** (1 / r))
        return x if x ** r == v else None
    a, b = iroot(num), iroot(den)
    if a is None or b is None:
        return None
    return Q(a, b) ** p.numerator


def _hpow_expand(cn: Canon, s: dict, k: int) -> dict | None:
    acc = {(): ONE_Q}
    for _ in range(k):
        acc = cn.hmul(acc, s, expand=True)
        if len(acc) > MAX_EXPAND:
            return None
    return acc


__all__ = ["Canon", "decimal", "q", "writes_decimals"]
