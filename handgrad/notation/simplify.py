"""Tree builders and the simplifier the automatic deriver prints through.

``Ctx`` holds what the deriver knows about names (shapes, properties, named
subexpressions) and answers shape questions about new trees.  ``tidy`` removes what a
person would not write (``0 +``, ``1*``, ``X''``, ``-(-a)``, ``eye*A``, a transposed
scalar or symmetric matrix) from the derivation's lines; ``simplify`` prints a read-off
from its canonical form (handgrad.notation.canon: like terms collected, transposes on
symmetric factors dropped, exp(z) ./ (1 + exp(z)) = sigma(z), common factors taken out
where shorter).  Every rewrite is an identity, and everything printed is checked by the
verifier anyway.
"""

from __future__ import annotations

from handgrad.notation.ast import Bin, Call, Diff, Neg, Node, Num, Sym, Transpose
from handgrad.notation.parser import NotationError
from handgrad.notation.shapes import ONE, ShapeChecker, is_scalar

ZERO = Num(0.0)


def is_num(e: Node, v: float | None = None) -> bool:
    return isinstance(e, Num) and (v is None or e.value == v)


_HAS_DIFF: dict[int, tuple[Node, bool]] = {}


def has_diff(e: Node) -> bool:
    """Whether a differential appears in e (remembered per node: the trace trick asks of
    every subtree of a long sum)."""
    got = _HAS_DIFF.get(id(e))
    if got is not None and got[0] is e:
        return got[1]
    if isinstance(e, Diff):
        out = True
    elif isinstance(e, (Num, Sym)):
        out = False
    else:
        from handgrad.notation.ast import children
        out = any(has_diff(c) for c in children(e))
    if len(_HAS_DIFF) > 200_000:
        _HAS_DIFF.clear()
    _HAS_DIFF[id(e)] = (e, out)
    return out


def ones_like(e: Node) -> bool:
    return isinstance(e, Call) and e.fn in ("vector", "matrix") and is_num(e.args[0], 1)


class Ctx:
    """Names and shapes: ``env`` name -> shape, ``props`` name -> properties, ``defs``
    the user's named subexpressions (``Y = sigma(W*X)``), ``wrt`` the variables."""

    def __init__(self, env, props, defs, wrt):
        self.env, self.props, self.defs, self.wrt = dict(env), dict(props), dict(defs), list(wrt)
        self.checker = ShapeChecker(self.env)
        self._shapes: dict[int, tuple] = {}
        self._by_value: dict[Node, tuple] = {}
        self._canon = None
        for name, body in self.defs.items():
            self.checker.env[name] = self.checker.infer(body)

    def shape(self, e: Node):
        """e's shape, inferred once per node (by identity, then by value)."""
        s = self._shapes.get(id(e))
        if s is not None and s[0] is e:
            return s[1]
        s = self._by_value.get(e)
        if s is None:
            self.checker.infer(e)
            s = self._by_value[e] = self.checker.shape(e)
        self._shapes[id(e)] = (e, s)
        return s

    @property
    def canon(self):
        """The canonical-form builder over this context (memoised; see handgrad.notation.canon)."""
        if self._canon is None:
            from handgrad.notation.canon import Canon
            self._canon = Canon(self)
        return self._canon

    def scalar(self, e: Node) -> bool:
        try:
            return is_scalar(self.shape(e))
        except NotationError:
            return False

    def column(self, e: Node) -> bool:
        s = self.shape(e)
        return s[1] == ONE and s[0] != ONE

    def symmetric(self, e: Node) -> bool:
        if isinstance(e, Call) and e.fn == "diag" and self.column(e.args[0]):
            return True  # diag(v): a diagonal matrix
        return isinstance(e, Sym) and bool(self.props.get(e.name, frozenset()) & {"sym", "spd", "diagonal"})

    def depends(self, e: Node) -> bool:
        """Whether e depends on a variable (a differential, a variable, or a name defined
        through one); remembered per node."""
        memo = self.__dict__.setdefault("_depends", {})
        got = memo.get(id(e))
        if got is not None and got[0] is e:
            return got[1]
        if isinstance(e, Diff):
            out = True
        elif isinstance(e, Sym):
            out = e.name in self.wrt or e.name in self.defs and self.depends(self.defs[e.name])
        else:
            from handgrad.notation.ast import children
            out = any(self.depends(c) for c in children(e))
        memo[id(e)] = (e, out)
        return out


# --------------------------------------------------------------------------- builders
def neg(a: Node) -> Node:
    if isinstance(a, Num):
        return Num(-a.value)
    if isinstance(a, Bin) and a.op == "*" and isinstance(a.a, Num):
        return mul(Num(-a.a.value), a.b)
    return a.x if isinstance(a, Neg) else Neg(a)


def add(a: Node, b: Node) -> Node:
    if is_num(a, 0):
        return b
    if is_num(b, 0):
        return a
    if isinstance(b, Neg):
        return Bin("-", a, b.x)
    if isinstance(b, Bin) and b.op == "*" and isinstance(b.a, Num) and b.a.value < 0:
        return Bin("-", a, mul(Num(-b.a.value), b.b))
    return Bin("+", a, b)


def sub(a: Node, b: Node) -> Node:
    if is_num(b, 0):
        return a
    if is_num(a, 0):
        return neg(b)
    if isinstance(b, Neg):
        return Bin("+", a, b.x)
    if isinstance(b, Bin) and b.op == "*" and isinstance(b.a, Num) and b.a.value < 0:
        return Bin("+", a, mul(Num(-b.a.value), b.b))
    return Bin("-", a, b)


def total(terms: list[Node]) -> Node:
    out: Node = ZERO
    for t in terms:
        out = add(out, t)
    return out


def mul(a: Node, b: Node) -> Node:
    if is_num(a, 0) or is_num(b, 0):
        return ZERO
    if is_num(a, 1):
        return b
    if is_num(b, 1):
        return a
    return Bin("*", a, b)


def prod(factors: list[Node]) -> Node:
    out: Node = Num(1.0)
    for f in factors:
        out = mul(out, f)
    return out


def had(a: Node, b: Node) -> Node:
    if is_num(a, 0) or is_num(b, 0):
        return ZERO
    return Bin(".*", a, b)


def T(a: Node) -> Node:
    return Transpose(a)


def flat(e: Node) -> list[Node]:
    """A product chain as its factors, in order."""
    if isinstance(e, Bin) and e.op == "*":
        return flat(e.a) + flat(e.b)
    return [e]


def substitute(e: Node, old: Node, new: Node) -> Node:
    if e == old:
        return new
    return _rebuild(e, lambda c: substitute(c, old, new))


def _rebuild(e: Node, f) -> Node:
    if isinstance(e, Neg):
        return Neg(f(e.x))
    if isinstance(e, Transpose):
        return Transpose(f(e.x))
    if isinstance(e, Bin):
        return Bin(e.op, f(e.a), f(e.b))
    if isinstance(e, Call):
        return Call(e.fn, tuple(f(a) for a in e.args))
    return e


# --------------------------------------------------------------------------- tidy
def tidy(ctx: Ctx, e: Node, push: bool = False) -> Node:
    """Bottom-up local identities; ``push`` also moves transposes inward."""
    e = _rebuild(e, lambda c: tidy(ctx, c, push))
    return _local(ctx, e, push)


def _local(ctx: Ctx, e: Node, push: bool) -> Node:  # noqa: C901 - one case per identity
    if isinstance(e, Neg):
        return neg(e.x)
    if isinstance(e, Transpose):
        x = e.x
        if isinstance(x, Transpose):
            return x.x
        if isinstance(x, Num) or isinstance(x, Call) and x.fn == "eye" or ctx.symmetric(x):
            return x
        if not isinstance(x, Diff) and ctx.scalar(x):
            return x
        if isinstance(x, Neg):
            return neg(_local(ctx, Transpose(x.x), push))
        if push and isinstance(x, Bin) and x.op == "*":
            return _local(ctx, Bin("*", _local(ctx, T(x.b), push), _local(ctx, T(x.a), push)), push)
        if push and isinstance(x, Bin) and x.op in ("+", "-", ".*", "./"):
            return _local(ctx, Bin(x.op, _local(ctx, T(x.a), push), _local(ctx, T(x.b), push)), push)
        if push and isinstance(x, Bin) and x.op == "/":
            return Bin("/", _local(ctx, T(x.a), push), x.b)
        if push and isinstance(x, Bin) and x.op == "kron":  # (A ⊗ B)' = A' ⊗ B'
            return Bin("kron", _local(ctx, T(x.a), push), _local(ctx, T(x.b), push))
        if isinstance(x, Call) and x.fn == "comm":  # K_mn' = K_nm
            return Call("comm", (_local(ctx, T(x.args[0]), push),))
        return e
    if isinstance(e, Call) and e.fn == "sum" and isinstance(e.args[0], Sym) and ctx.column(e.args[0]) \
            and "onehot" in ctx.props.get(e.args[0].name, frozenset()):
        return Num(1.0)  # 1' y = 1 for a one-hot y
    if not isinstance(e, Bin):
        return e
    a, b, op = e.a, e.b, e.op
    if op == "+":
        if isinstance(a, Neg):
            return sub(b, a.x)
        return add(a, b)
    if op == "-":
        return sub(a, b)
    if op == "*":
        if isinstance(a, Neg) or isinstance(b, Neg):
            return neg(mul(a.x if isinstance(a, Neg) else a, b.x if isinstance(b, Neg) else b))
        if isinstance(b, Bin) and b.op == "*" and (ctx.scalar(a) or not ctx.scalar(b)):
            # a*(b*c) = (a*b)*c, except a matrix times a scalar product: eye*(x'*A*x)
            return _local(ctx, mul(_local(ctx, mul(a, b.a), push), b.b), push)
        if isinstance(a, Bin) and a.op == "*" and _numeric(a.b) and not _numeric(a.a):
            return _local(ctx, mul(mul(a.b, a.a), b), push)
        if isinstance(a, Num) and isinstance(b, Bin) and b.op == "*" and isinstance(b.a, Num):
            return mul(Num(a.value * b.a.value), b.b)
        if _numeric(b) and not _numeric(a):
            return _local(ctx, mul(b, a), push)
        if isinstance(a, Num) and isinstance(b, Num):
            return Num(a.value * b.value)
        for one, other in ((a, b), (b, a)):
            if isinstance(one, Call) and one.fn == "eye" and not ctx.scalar(other):
                return other
        if _diag(a) is not None and _diag(b) is not None:
            return Call("diag", (had(_diag(a), _diag(b)),))
        if isinstance(a, Bin) and a.op == "*" and _diag(a.b) is not None and _diag(b) is not None:
            return mul(a.a, Call("diag", (had(_diag(a.b), _diag(b)),)))
        one_hot = _one_hot_sum(ctx, a, b)
        if one_hot is not None:
            return one_hot
        if isinstance(a, Bin) and a.op == "*":  # (P 1') Y' = P (Y 1)' for rows one-hot
            inner = _one_hot_sum(ctx, a.b, b)
            if inner is not None:
                return _local(ctx, mul(a.a, inner), push)
        if ones_like(a) and ctx.column(a) and isinstance(b, Transpose) and ones_like(b.x) and ctx.column(b.x):
            return Call("matrix", (Num(1.0),))  # 1 1' = the matrix of ones
        if ones_like(b) and not ctx.scalar(a) and ctx.shape(a)[0] == ONE:
            return Call("sum", (tidy(ctx, T(a), push=True),))
        if isinstance(a, Transpose) and ones_like(a.x) and ctx.column(b):
            return Call("sum", (b,))
        return mul(a, b)
    if op == ".*":
        if isinstance(a, Neg) or isinstance(b, Neg):
            return neg(had(a.x if isinstance(a, Neg) else a, b.x if isinstance(b, Neg) else b))
        for one, other in ((a, b), (b, a)):
            if ones_like(one) and not ctx.scalar(other):
                return other
            if isinstance(one, Num):
                return _local(ctx, mul(one, other), push)
        for one, other in ((a, b), (b, a)):
            if isinstance(one, Bin) and one.op == "./" and is_num(one.a, 1):
                return Bin("./", other, one.b)
        return had(a, b)
    if op in ("./", "/"):
        if is_num(b, 1):
            return a
        if is_num(a, 0):
            return ZERO
        s = _sigma(a, b)
        if s is not None:
            return s
        return e
    if op in ("^", ".^") and is_num(b, 1):
        return a
    return e


def _numeric(e: Node) -> bool:
    """A number as written: 2, or 1/2."""
    return isinstance(e, Num) or isinstance(e, Bin) and e.op == "/" and isinstance(e.a, Num) \
        and isinstance(e.b, Num)


def _one_hot_sum(ctx: Ctx, a: Node, b: Node) -> Node | None:
    """Labels declared onehot sum to one: Y 1 = 1 and 1' Y' = 1' (each row of Y one-hot),
    1' y = 1 (a one-hot column y).  None when a*b is not one of these."""
    def onehot(x):
        return isinstance(x, Sym) and "onehot" in ctx.props.get(x.name, frozenset())
    ones_row = isinstance(a, Transpose) and ones_like(a.x)
    if onehot(a) and ones_like(b) and ctx.column(b) and not ctx.column(a):
        return b
    if ones_row and isinstance(b, Transpose) and onehot(b.x) and not ctx.column(b.x):
        return a
    if ones_row and onehot(b) and ctx.column(b):
        return Num(1.0)
    return None


def _diag(e: Node) -> Node | None:
    return e.args[0] if isinstance(e, Call) and e.fn == "diag" and not has_diff(e) else None


def _sigma(a: Node, b: Node) -> Node | None:
    """exp(z) ./ (1 + exp(z)) -> sigma(z)."""
    if not (isinstance(a, Call) and a.fn == "exp" and isinstance(b, Bin) and b.op == "+"):
        return None
    for one, other in ((b.a, b.b), (b.b, b.a)):
        if (ones_like(one) or is_num(one, 1)) and other == a:
            return Call("sigma", a.args)
    return None


def fold_defs(ctx: Ctx, e: Node) -> Node:
    """Write a user's named subexpression by its name (sigma(W*X) -> Y)."""
    for name, body in ctx.defs.items():
        if e == body:
            return Sym(name)
    return _rebuild(e, lambda c: fold_defs(ctx, c))


# --------------------------------------------------------------------------- simplify
def simplify(ctx: Ctx, e: Node, names: dict[str, Node] | None = None) -> Node:
    """A read-off in canonical form (handgrad.notation.canon), printed with the user's
    names; ``names`` (f -> its formula) are recognised inside it (-1/2*f*inv(S))."""
    cn = ctx.canon
    s = cn.canon(tidy(ctx, e))
    for name, body in (names or {}).items():
        s = cn.with_name(s, name, body)
    return fold_defs(ctx, cn.node(s))
