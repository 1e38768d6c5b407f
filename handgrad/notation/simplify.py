"""Tree builders and the simplifier the automatic deriver prints through.

``Ctx`` holds what the deriver knows about names (shapes, properties, named
subexpressions) and answers shape questions about new trees.  ``tidy`` removes what a
person would not write (``0 +``, ``1*``, ``X''``, ``-(-a)``, ``eye*A``, a transposed
scalar or symmetric matrix) from the derivation's lines: each identity is one small rule
of the list ``RULES``, applied bottom-up until none applies (a fixed point); ``simplify`` prints a read-off
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
        self.decimals = False  # whether the input wrote decimals: coefficients print in that style
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
# Each identity is one small rule: rule(ctx, e, push) gives the rewritten node, or None
# where it does not apply.  ``tidy`` applies the list RULES bottom-up until nothing
# changes (SymPy's ``exhaust(bottom_up(do_one(rules)))`` habit): at each node, children
# first, then the first rule that applies, again and again until none does; the subtrees
# a rule builds are brought to the same fixed point before the node is tried again.

class TidyCycle(RuntimeError):
    """Internal error: the rules kept rewriting one node (a cycle among them)."""


MAX_FIRINGS = 64   # rewrites of one node before the rules are taken to cycle
MAX_ROUNDS = 4     # whole-tree passes; the second one only confirms the fixed point

STATS = {"calls": 0, "rounds": 0, "max_rounds": 0, "firings": 0, "max_node_firings": 0}


def _on(kind, *ops):
    """The kind of node a rule rewrites (a Bin only with one of ops, where given): each
    node is tried only against the rules for its kind, in RULES order."""
    def mark(rule):
        rule.kind, rule.ops = kind, ops
        return rule
    return mark


@_on(Transpose)
def _t_twice(ctx, e, push):
    """(X')' = X"""
    if isinstance(e, Transpose) and isinstance(e.x, Transpose):
        return e.x.x


@_on(Transpose)
def _t_constant(ctx, e, push):
    """c' = c, I' = I"""
    if isinstance(e, Transpose) and (isinstance(e.x, Num) or isinstance(e.x, Call) and e.x.fn == "eye"):
        return e.x


@_on(Transpose)
def _t_symmetric(ctx, e, push):
    """S' = S for a symmetric S (declared sym/spd/diagonal, or diag(v))"""
    if isinstance(e, Transpose) and ctx.symmetric(e.x):
        return e.x


@_on(Transpose)
def _t_scalar(ctx, e, push):
    """a' = a for a scalar a"""
    if isinstance(e, Transpose) and not isinstance(e.x, Diff) and ctx.scalar(e.x):
        return e.x


@_on(Transpose)
def _t_neg(ctx, e, push):
    """(-A)' = -A'"""
    if isinstance(e, Transpose) and isinstance(e.x, Neg):
        return neg(T(e.x.x))


@_on(Transpose)
def _t_product(ctx, e, push):
    """(A*B)' = B'*A'  (pushing transposes inward)"""
    if push and isinstance(e, Transpose) and isinstance(e.x, Bin) and e.x.op == "*":
        return Bin("*", T(e.x.b), T(e.x.a))


@_on(Transpose)
def _t_sum(ctx, e, push):
    """(A + B)' = A' + B', and so for -, .*, ./ and kron  (pushing transposes inward)"""
    if push and isinstance(e, Transpose) and _bin(e.x, "+", "-", ".*", "./", "kron"):
        return Bin(e.x.op, T(e.x.a), T(e.x.b))


@_on(Transpose)
def _t_quotient(ctx, e, push):
    """(A/c)' = A'/c  (pushing transposes inward)"""
    if push and isinstance(e, Transpose) and isinstance(e.x, Bin) and e.x.op == "/":
        return Bin("/", T(e.x.a), e.x.b)


@_on(Transpose)
def _t_comm(ctx, e, push):
    """comm(A)' = comm(A')  (K_mn' = K_nm)"""
    if isinstance(e, Transpose) and isinstance(e.x, Call) and e.x.fn == "comm":
        return Call("comm", (T(e.x.args[0]),))


@_on(Call)
def _sum_onehot(ctx, e, push):
    """sum(y) = 1 for a one-hot column y"""
    if isinstance(e, Call) and e.fn == "sum" and isinstance(e.args[0], Sym) and ctx.column(e.args[0]) \
            and "onehot" in ctx.props.get(e.args[0].name, frozenset()):
        return Num(1.0)


@_on(Neg)
def _neg_neg(ctx, e, push):
    """-(-a) = a"""
    if isinstance(e, Neg) and isinstance(e.x, Neg):
        return e.x.x


@_on(Neg)
def _neg_number(ctx, e, push):
    """-(c) = (-c) for a number c, and -(c*A) = (-c)*A"""
    if isinstance(e, Neg) and (isinstance(e.x, Num) or isinstance(e.x, Bin) and e.x.op == "*"
                               and isinstance(e.x.a, Num)):
        return neg(e.x)


def _bin(e, *ops):
    return isinstance(e, Bin) and e.op in ops


def _lead(e: Node) -> Node | None:
    """The number leading a product chain (c*A*B, or 1/2*A), else None."""
    if not _bin(e, "*"):
        return None
    while _bin(e, "*"):
        e = e.a
    return e if _numeric(e) else None


def _value(c: Node) -> float:
    return c.value if isinstance(c, Num) else c.a.value / c.b.value


def _minus(c: Node) -> Node:
    """-c for a number as written (2, or 1/2)."""
    return Num(-c.value) if isinstance(c, Num) else Bin("/", Num(-c.a.value), c.b)


def _with_lead(e: Node, c: Node) -> Node:
    """The product chain e with its leading number replaced by c (dropped if c is 1)."""
    if _bin(e.a, "*"):
        return mul(_with_lead(e.a, c), e.b)
    return mul(c, e.b)


@_on(Neg)
def _neg_lead_number(ctx, e, push):
    """-(c*A*B) = (-c)*A*B"""
    c = _lead(e.x) if isinstance(e, Neg) else None
    if c is not None:
        return _with_lead(e.x, _minus(c))


@_on(Bin, "+", "-")
def _sum_lead_negative(ctx, e, push):
    """a + (-c)*B*C = a - c*B*C, a - (-c)*B*C = a + c*B*C"""
    c = _lead(e.b) if _bin(e, "+", "-") else None
    if c is not None and _value(c) < 0:
        return Bin("-" if e.op == "+" else "+", e.a, _with_lead(e.b, _minus(c)))


@_on(Bin, '+')
def _add_neg_first(ctx, e, push):
    """(-a) + b = b - a"""
    if _bin(e, "+") and isinstance(e.a, Neg):
        return sub(e.b, e.a.x)


@_on(Bin, '+')
def _add_zero(ctx, e, push):
    """0 + a = a + 0 = a"""
    if _bin(e, "+") and (is_num(e.a, 0) or is_num(e.b, 0)):
        return e.b if is_num(e.a, 0) else e.a


def _negative(b: Node) -> bool:
    """-b, or a product (-c)*b with a negative number c in front."""
    return isinstance(b, Neg) or _bin(b, "*") and isinstance(b.a, Num) and b.a.value < 0


@_on(Bin, '+')
def _add_neg(ctx, e, push):
    """a + (-b) = a - b, a + (-c)*b = a - c*b"""
    if _bin(e, "+") and _negative(e.b):
        return add(e.a, e.b)


@_on(Bin, '-')
def _sub_zero(ctx, e, push):
    """a - 0 = a, 0 - b = -b"""
    if _bin(e, "-") and (is_num(e.b, 0) or is_num(e.a, 0)):
        return sub(e.a, e.b)


@_on(Bin, '-')
def _sub_neg(ctx, e, push):
    """a - (-b) = a + b, a - (-c)*b = a + c*b"""
    if _bin(e, "-") and _negative(e.b):
        return sub(e.a, e.b)


def _sign_out(name: str, op: str, build):
    """The rule (-a) op b = a op (-b) = -(a op b), for a product op that build makes."""
    def rule(ctx, e, push):
        if _bin(e, op) and (isinstance(e.a, Neg) or isinstance(e.b, Neg)):
            a, b = e.a, e.b
            return neg(build(a.x if isinstance(a, Neg) else a, b.x if isinstance(b, Neg) else b))
    rule.__name__ = rule.__qualname__ = name
    rule.__doc__ = f"(-a){op}b = a{op}(-b) = -(a{op}b)"
    return _on(Bin, op)(rule)


_mul_neg = _sign_out("_mul_neg", "*", lambda a, b: mul(a, b))


@_on(Bin, '*')
def _mul_assoc(ctx, e, push):
    """a*(b*c) = (a*b)*c, except a matrix times a scalar product (eye*(x'*A*x))"""
    if _bin(e, "*") and _bin(e.b, "*") and (ctx.scalar(e.a) or not ctx.scalar(e.b)):
        return mul(mul(e.a, e.b.a), e.b.b)


@_on(Bin, '*')
def _mul_number_forward(ctx, e, push):
    """(A*c)*B = c*A*B for a number c"""
    if _bin(e, "*") and _bin(e.a, "*") and _numeric(e.a.b) and not _numeric(e.a.a):
        return mul(mul(e.a.b, e.a.a), e.b)


@_on(Bin, '*')
def _mul_numbers_merge(ctx, e, push):
    """c*(d*B) = (cd)*B for numbers c, d"""
    if _bin(e, "*") and isinstance(e.a, Num) and _bin(e.b, "*") and isinstance(e.b.a, Num):
        return mul(Num(e.a.value * e.b.a.value), e.b.b)


@_on(Bin, '*')
def _mul_number_left(ctx, e, push):
    """A*c = c*A for a number c"""
    if _bin(e, "*") and _numeric(e.b) and not _numeric(e.a):
        return mul(e.b, e.a)


@_on(Bin, '*')
def _mul_numbers(ctx, e, push):
    """c*d = (cd) for numbers c, d"""
    if _bin(e, "*") and isinstance(e.a, Num) and isinstance(e.b, Num):
        return Num(e.a.value * e.b.value)


@_on(Bin, '*')
def _mul_eye(ctx, e, push):
    """I*A = A*I = A for a matrix A"""
    if _bin(e, "*"):
        for one, other in ((e.a, e.b), (e.b, e.a)):
            if isinstance(one, Call) and one.fn == "eye" and not ctx.scalar(other):
                return other


@_on(Bin, '*')
def _mul_diag(ctx, e, push):
    """diag(u)*diag(v) = diag(u.*v), and A*diag(u)*diag(v) = A*diag(u.*v)"""
    if not _bin(e, "*") or _diag(e.b) is None:
        return None
    if _diag(e.a) is not None:
        return Call("diag", (had(_diag(e.a), _diag(e.b)),))
    if _bin(e.a, "*") and _diag(e.a.b) is not None:
        return mul(e.a.a, Call("diag", (had(_diag(e.a.b), _diag(e.b)),)))


@_on(Bin, '*')
def _mul_onehot(ctx, e, push):
    """Y*1 = 1 and 1'*Y' = 1' (each row of a one-hot Y sums to 1), 1'*y = 1 (a one-hot y),
    and (P*1')*Y' = P*1'"""
    if not _bin(e, "*"):
        return None
    out = _one_hot_sum(ctx, e.a, e.b)
    if out is None and _bin(e.a, "*"):
        inner = _one_hot_sum(ctx, e.a.b, e.b)
        out = None if inner is None else mul(e.a.a, inner)
    return out


@_on(Bin, '*')
def _mul_ones_outer(ctx, e, push):
    """1*1' = matrix(1), the matrix of ones"""
    a, b = (e.a, e.b) if _bin(e, "*") else (None, None)
    if ones_like(a) and ctx.column(a) and isinstance(b, Transpose) and ones_like(b.x) and ctx.column(b.x):
        return Call("matrix", (Num(1.0),))


@_on(Bin, '*')
def _mul_row_ones(ctx, e, push):
    """r*1 = sum(r') for a row r"""
    if _bin(e, "*") and ones_like(e.b) and not ctx.scalar(e.a) and ctx.shape(e.a)[0] == ONE:
        return Call("sum", (tidy(ctx, T(e.a), push=True),))


@_on(Bin, '*')
def _mul_ones_column(ctx, e, push):
    """1'*v = sum(v) for a column v"""
    if _bin(e, "*") and isinstance(e.a, Transpose) and ones_like(e.a.x) and ctx.column(e.b):
        return Call("sum", (e.b,))


@_on(Bin, '*')
def _mul_zero_one(ctx, e, push):
    """0*A = A*0 = 0, 1*A = A*1 = A"""
    if _bin(e, "*") and any(is_num(x, 0) or is_num(x, 1) for x in (e.a, e.b)):
        return mul(e.a, e.b)


_had_neg = _sign_out("_had_neg", ".*", lambda a, b: had(a, b))


@_on(Bin, '.*')
def _had_ones(ctx, e, push):
    """1.*A = A.*1 = A, with 1 the ones of A's shape"""
    if _bin(e, ".*"):
        for one, other in ((e.a, e.b), (e.b, e.a)):
            if ones_like(one) and not ctx.scalar(other):
                return other


@_on(Bin, '.*')
def _had_number(ctx, e, push):
    """c.*A = A.*c = c*A for a number c"""
    if _bin(e, ".*"):
        for one, other in ((e.a, e.b), (e.b, e.a)):
            if isinstance(one, Num):
                return mul(one, other)


@_on(Bin, '.*')
def _had_reciprocal(ctx, e, push):
    """(1./b).*a = a.*(1./b) = a./b"""
    if _bin(e, ".*"):
        for one, other in ((e.a, e.b), (e.b, e.a)):
            if _bin(one, "./") and is_num(one.a, 1):
                return Bin("./", other, one.b)


@_on(Bin, '/', './')
def _div_one(ctx, e, push):
    """a/1 = a./1 = a"""
    if _bin(e, "/", "./") and is_num(e.b, 1):
        return e.a


@_on(Bin, '/', './')
def _div_zero(ctx, e, push):
    """0/a = 0./a = 0"""
    if _bin(e, "/", "./") and is_num(e.a, 0):
        return ZERO


@_on(Bin, '/', './')
def _div_sigma(ctx, e, push):
    """exp(z)./(1 + exp(z)) = sigma(z)"""
    if _bin(e, "/", "./"):
        return _sigma(e.a, e.b)


@_on(Bin, '^', '.^')
def _pow_one(ctx, e, push):
    """a^1 = a.^1 = a"""
    if _bin(e, "^", ".^") and is_num(e.b, 1):
        return e.a


RULES = (
    _t_twice, _t_constant, _t_symmetric, _t_scalar, _t_neg, _t_product, _t_sum, _t_quotient, _t_comm,
    _sum_onehot,
    _neg_neg, _neg_number, _neg_lead_number,
    _add_neg_first, _add_zero, _add_neg,
    _sub_zero, _sub_neg, _sum_lead_negative,
    _mul_neg, _mul_assoc, _mul_number_forward, _mul_numbers_merge, _mul_number_left, _mul_numbers,
    _mul_eye, _mul_diag, _mul_onehot, _mul_ones_outer, _mul_row_ones, _mul_ones_column, _mul_zero_one,
    _had_neg, _had_ones, _had_number, _had_reciprocal,
    _div_one, _div_zero, _div_sigma,
    _pow_one,
)


_BY_KIND: dict[tuple, tuple] = {}


def _rules_for(e: Node) -> tuple:
    """The rules of RULES (in order) that may rewrite a node of e's kind."""
    key = (type(e), e.op if isinstance(e, Bin) else None)
    got = _BY_KIND.get(key)
    if got is None:
        got = _BY_KIND[key] = tuple(r for r in RULES if isinstance(e, r.kind)
                                     and (not r.ops or key[1] in r.ops))
    return got


def _children_done(e: Node, f) -> Node:
    """e with f applied to its children; e itself (the same object) where none changed."""
    if isinstance(e, (Neg, Transpose)):
        x = f(e.x)
        return e if x is e.x else type(e)(x)
    if isinstance(e, Bin):
        a, b = f(e.a), f(e.b)
        return e if a is e.a and b is e.b else Bin(e.op, a, b)
    if isinstance(e, Call) and e.fn != "eye":
        args = tuple(f(x) for x in e.args)
        return e if all(x is y for x, y in zip(args, e.args)) else Call(e.fn, args)
    return e


def _memo(ctx: Ctx, push: bool) -> dict:
    """Fixed points found so far in this context, by node identity (comparing trees by
    value would cost a long sum's length at each of its nodes); a new table once names
    are added (a shape question about an undeclared name is answered differently then)."""
    tables = ctx.__dict__.setdefault("_tidy", {})
    key = (push, len(ctx.checker.env), len(ctx.defs))
    table = tables.get(key)
    if table is None or len(table) > 400_000:
        if len(tables) > 8:
            tables.clear()
        table = tables[key] = {}
    return table


def _fixed(ctx: Ctx, e: Node, push: bool, memo: dict) -> Node:
    """e at a fixed point of RULES: children first, then the node until no rule applies."""
    got = memo.get(id(e))
    if got is not None and got[0] is e:
        return got[1]

    def down(c):
        return _fixed(ctx, c, push, memo)
    cur = _children_done(e, down)
    fired: list[str] = []
    while True:
        for rule in _rules_for(cur):
            out = rule(ctx, cur, push)
            if out is not None:  # a rule that applies gives a new node
                break
        else:
            break
        fired.append(rule.__name__)
        if len(fired) > MAX_FIRINGS:
            raise TidyCycle("tidy: the rules keep rewriting one node: " + " -> ".join(fired[-8:]))
        cur = _children_done(out, down)
    if fired:
        STATS["firings"] += len(fired)
        STATS["max_node_firings"] = max(STATS["max_node_firings"], len(fired))
    memo[id(e)] = (e, cur)
    memo[id(cur)] = (cur, cur)
    return cur


def tidy(ctx: Ctx, e: Node, push: bool = False) -> Node:
    """e with RULES applied bottom-up to a fixed point; ``push`` also moves transposes inward."""
    memo = _memo(ctx, push)
    STATS["calls"] += 1
    for rounds in range(1, MAX_ROUNDS + 1):
        out = _fixed(ctx, e, push, memo)
        if out is e:
            STATS["rounds"] += rounds
            STATS["max_rounds"] = max(STATS["max_rounds"], rounds)
            return out
        e = out
    raise TidyCycle(f"tidy: no fixed point after {MAX_ROUNDS} rounds")


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
