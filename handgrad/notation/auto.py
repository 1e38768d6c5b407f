"""The automatic deriver: an expression in, a derivation in the notes' style out, verified.

    >>> r = derive_expression("tr(X'*A*X) + logdet(X)", "X: n x n invertible; A: n x n", "X")
    >>> r["ok"], r["gradient"]["X"]                                   # doctest: +SKIP
    (True, "(A + A')*X + inv(X)'")
    >>> print(r["hg"])                                                # doctest: +SKIP

The derivation is written as a ``.hg`` text (``r["hg"]``, which a user can save and
edit) and then checked by the one verifier, ``handgrad.notation.verify`` — so a mistake
of the deriver is caught exactly like a student's (``r["ok"]`` is False and the report
names the first wrong line).  The steps:

  0. value rewrites where the rules need them (log|X| = logdet(X), ‖u‖² = u'u, ...);
  1. the differential, one level of rules per line (handgrad.notation.auto_rules);
  2. the trace trick, one identity per line (handgrad.notation.auto_trace);
  3. df collected into tr(G' dX) per variable, and ``grad X = G`` read off, simplified;
  Hessian (``hessian=True``, one vector or scalar variable): ``let g = G``,
  d2f = dw' dg expanded by the same rules, ``hess w = H`` read off dg = H dw.
  A vector-valued f (a column; vector or scalar variables): no trace, df is collected
  into J dx and ``jac x = J`` (numerator layout) and ``jacT x = J'`` are read off.

Out of scope, each a one-line ``DeriveError`` (a NotationError): a matrix-valued f or a
Jacobian by a matrix variable (the vec/Kronecker form), abs/norm1/relu/sign (kinks), a
variable in an exponent, matrix powers
other than X^-1 and X^k, d moved out of vec/kron (except vec(A)'vec(dX) = tr(A' dX) and a
kron of two columns, kron(du, a) = kron(I, a) du),
Hessians over several variables at
once.  Sizes that do not conform (inv of a non-square
expression) are one-line NotationErrors from the shape checker; syntax errors keep the
parser's caret.
"""

from __future__ import annotations

import re

from handgrad.notation.ast import Call, Diff, Node, Num, Sym, deep
from handgrad.notation.auto_rules import DeriveError, Expander
from handgrad.notation.auto_trace import Term, coefficient, expand, jacobian, move, wrap
from handgrad.notation.canon import writes_decimals
from handgrad.notation.parser import NotationError, parse
from handgrad.notation.render import to_text
from handgrad.notation.shapes import SCALAR, show
from handgrad.notation.simplify import Ctx, T, fold_defs, is_num, mul, neg, simplify, sub, tidy, total
from handgrad.notation.textfile import parse_text
from handgrad.notation.verify import verify

MAX_LINES = 40


def parse_let(let: str) -> list[tuple[str, str, str]]:
    """'X: n x n invertible; A: n x n; p = sigma(X*w)' -> [(name, ':' or '=', rest)]."""
    out = []
    for part in re.split(r"[;\n]", let):
        part = part.strip()
        if part.startswith("let "):
            part = part[4:].strip()
        if not part:
            continue
        m = re.match(r"^([A-Za-z_]\w*)\s*([:=])(.*)$", part)
        if not m:
            raise DeriveError(f"--let: expected 'NAME: SHAPE [properties]' or 'NAME = formula', got {part!r}")
        out.append((m.group(1), m.group(2), m.group(3).strip()))
    return out


def _fname(taken: set[str]) -> str:
    for n in ("f", "l", "loss", "fx"):
        if n not in taken and "d" + n not in taken and "d2" + n not in taken:
            return n
    raise DeriveError("no free name for the function (f, l, loss and fx are all declared)")


class _Writer:
    """Rows of a derivation: the first of a group names its lhs, the rest start with '='.
    A named subexpression (``let p = sigma(z)``) is written by its name in the rows."""

    def __init__(self, ctx: Ctx, lets: dict[str, Node] | None = None):
        self.ctx, self.rows, self.group = ctx, [], None
        self.lets = lets if lets is not None else {}

    def line(self, lhs: str, e: Node, rules, *, names: bool = True) -> None:
        e = fold_defs(self.ctx, tidy(self.ctx, e))
        if names and self.lets:
            e = _fold_lets(e, {b: n for n, b in self.lets.items() if not n.startswith("__")})
        text = to_text(e)
        if lhs == "=":
            lhs = self.group
        if self.rows and self.rows[-1][1] == text and self.group == lhs:
            return
        shown = "=" if self.group == lhs else lhs
        self.group = lhs
        self.rows.append((shown, text, "; ".join(r for r in rules if r)))

    def render(self) -> list[str]:
        width = max([len(lhs) for lhs, _, _ in self.rows] + [1])
        out = []
        for lhs, text, rule in self.rows:
            s = f"{lhs if lhs != '=' else '':>{width}} = {text}"
            out.append(f"{s:<60} # {rule}" if rule else s)
        return out


@deep
def derive(expr: str, let: str, wrt: str, *, hessian: bool = False) -> tuple[str, dict]:
    """The derivation as .hg text, and {"gradient": {v: text}, "hessian": {v: text}}."""
    decl_lines, env, props, defs, taken = [], {}, {}, {}, set()
    from handgrad.notation.textfile import _parse_shape
    for name, kind, rest in parse_let(let):
        if name in taken:
            raise DeriveError(f"--let: {name} is declared twice")
        taken.add(name)
        if kind == ":":
            shape, pr = _parse_shape(rest, f"--let {name}", rest)
            env[name], props[name] = shape, pr
            decl_lines.append(f"let {name}: {rest}")
        else:
            try:
                defs[name] = parse(rest, taken)
            except NotationError as e:
                raise NotationError(f"--let {name} = ...: {e.message}", rest, e.pos) from None
            decl_lines.append(f"let {name} = {to_text(defs[name])}")
    wrt_names = [w.strip() for w in re.split(r"[,\s]+", wrt) if w.strip()]
    if not wrt_names:
        raise DeriveError("--wrt: name at least one variable")
    for w in wrt_names:
        if w not in env:
            raise DeriveError(f"--wrt {w}: {w} is not declared with a shape in --let")
    f = parse(expr, taken)
    ctx = Ctx(env, props, {}, wrt_names)
    ctx.decimals = writes_decimals(expr, let)  # 0.5*x'*A*x reads off 0.5*(A + A')*x, not 1/2*...
    try:
        for name, body in defs.items():
            ctx.checker.env[name] = ctx.shape(body)
            ctx.defs[name] = body
        fshape = ctx.shape(f)
    except NotationError as e:
        raise DeriveError(f"{expr}: {e.message}") from None
    vector_valued = fshape != SCALAR
    if vector_valued and hessian:
        raise DeriveError(f"--hessian: f is {show(fshape)}; a Hessian is of a scalar f")
    by_vec = vector_valued and not (ctx.column(f) and all(ctx.scalar(Sym(v)) or ctx.column(Sym(v))
                                                           for v in wrt_names))
    fname = _fname(taken)
    if not vector_valued:
        ctx.checker.env[fname] = SCALAR  # f itself may be used after its line
    ex = Expander(ctx, taken | {fname})
    w = _Writer(ctx, ex.lets)

    # step 0: value rewrites
    g0, rules0 = _rewrite(ctx, f)
    values = [(g0, rules0)] if g0 != f else []

    # step 1: the differential
    cur, n = Diff("__f"), 0
    ex.lets["__f"] = g0
    while True:
        pend = ex.pending(cur)
        if not pend:
            break
        cur = tidy(ctx, ex.expand_line(cur))
        n += 1
        if n > MAX_LINES:
            raise DeriveError(f"{expr}: the differential did not finish in {MAX_LINES} lines")
        w.line("d" + fname, cur, ex.rules)
    del ex.lets["__f"]
    if not expand(ctx, cur):
        raise DeriveError(f"{expr} does not depend on {', '.join(wrt_names)}")
    if vector_valued:
        return _jacobians(ctx, ex, w, f, fname, cur, wrt_names, decl_lines, values, by_vec)

    # step 2: the trace trick
    terms = []
    first_rules = []
    for s, t in expand(ctx, cur):
        term, r = wrap(ctx, s, t)
        terms.append(term)
        first_rules.append(r)
    if len(expand(ctx, cur)) > 1 or any(first_rules):
        rules0 = ["linearity"] * (len(terms) > 1) + sorted({r for r in first_rules if r})
        w.line("=", _terms_node(terms), rules0)
    for _ in range(MAX_LINES):
        rules: list[str] = []
        for t in terms:
            if not t.done:
                r = move(ctx, t)
                if r and r not in rules:
                    rules.append(r)
        if rules:
            w.line("=", _terms_node(terms), rules)
        if all(t.done for t in terms):
            break
    else:
        raise DeriveError(f"{expr}: the trace trick did not finish in {MAX_LINES} lines")

    # step 3: collect and read off
    grads, collected = {}, []
    for v in wrt_names:
        mine = [t for t in terms if t.factors[-1] == Diff(v)]
        g = simplify(ctx, total([coefficient(ctx, t) for t in mine]), {fname: f}) if mine else None
        grads[v] = g
        if g is None:
            continue
        dv = Diff(v)
        if ctx.scalar(dv):
            collected.append(mul(g, dv))
        elif ctx.column(dv):
            collected.append(mul(T(g), dv))
        else:
            collected.append(Call("tr", (mul(T(g), dv),)))
    w.line("=", total(collected), [f"collect: d{fname} = tr(G' dX), G the gradient"], names=False)
    readoffs = []
    for v in wrt_names:
        g = grads[v]
        if g is None:
            g = Call("vector" if ctx.column(Sym(v)) else "matrix", (Num(0.0),))
        readoffs.append((v, g))
    out = {"gradient": {v: to_text(g) for v, g in readoffs}, "hessian": {}}

    hess_lines = []
    if hessian:
        hess_lines = _hessian(ctx, ex, fname, wrt_names, dict(readoffs), out, f)
    lets = _let_lines(ex.lets)
    text = [f"# {fname} = {to_text(f)}   (derived by handgrad)", *decl_lines, *lets,
            f"wrt {', '.join(wrt_names)}"]
    text.append(f"{fname} = {to_text(f)}")
    for g, rs in values:
        text.append(f"{'':>{len(fname)}} = {to_text(g):<56} # {'; '.join(rs)}")
    text += w.render()
    text += [f"grad {v} = {to_text(g)}" for v, g in readoffs]
    text += hess_lines
    return "\n".join(text) + "\n", out


def _jacobians(ctx: Ctx, ex: Expander, w: _Writer, f: Node, fname: str, cur: Node, wrt: list[str],
               decl_lines: list[str], values, by_vec: bool) -> tuple[str, dict]:
    """Steps 2-3 for a vector-valued f: df collected into J dx per variable (no trace: df
    is a column); for a matrix-valued f or a matrix variable, vectorised first (notes
    part 1 §7: vec(dF) = J vec(dX), Kronecker products).  ``jac x = J`` (numerator layout,
    d vec(f) / d vec(x)) and ``jacT x = J'`` (denominator layout) are read off."""
    from handgrad.notation.ast import differentials
    from handgrad.notation.auto_trace import jacobian as read_off
    from handgrad.notation.auto_vec import R_LINEAR, vec_coefficient, vec_jacobian

    signed = expand(ctx, cur)
    if by_vec:
        lhs = f"vec(d{fname})"

        def vec(e):
            return Call("vec", (e,))
        if len(signed) > 1:
            w.line(lhs, total([vec(t) if s > 0 else neg(vec(t)) for s, t in signed]), [R_LINEAR])
        rules: list[str] = []
        parts = []
        for s, t in signed:
            v = next(iter(differentials(t)))
            m = mul(vec_coefficient(ctx, t, v, rules), vec(Diff(v)))
            parts.append(m if s > 0 else neg(m))
        w.line(lhs, total(parts), rules)
        jacs = {v: vec_jacobian(ctx, signed, v, []) for v in wrt}
        w.line(lhs, total([mul(j, vec(Diff(v))) for v, j in jacs.items() if j is not None]),
               ["collect: vec(df) = J vec(dX), J the Jacobian (numerator layout)"], names=False)
    else:
        jacs = {}
        for v in wrt:
            mine = [t if s > 0 else neg(t) for s, t in signed if v in differentials(t)]
            jacs[v] = read_off(ctx, total(mine), v) if mine else None
        w.line("=", total([mul(j, Diff(v)) for v, j in jacs.items() if j is not None]),
               ["read off df = J dx, J the Jacobian (numerator layout)"], names=False)
    zero = Call("matrix", (Num(0.0),))
    readoffs = [(v, j if j is not None else zero) for v, j in jacs.items()]
    lets = _let_lines(ex.lets)
    text = [f"# {fname} = {to_text(f)}   (derived by handgrad)", *decl_lines, *lets, f"wrt {', '.join(wrt)}",
            f"{fname} = {to_text(f)}"]
    for g, rs in values:
        text.append(f"{'':>{len(fname)}} = {to_text(g):<56} # {'; '.join(rs)}")
    text += w.render()
    denominator = {v: simplify(ctx, T(j)) for v, j in readoffs}
    for v, j in readoffs:
        text.append(f"jac {v} = {to_text(j)}")
        text.append(f"jacT {v} = {to_text(denominator[v])}")
    out = {"gradient": {}, "hessian": {}, "jacobian": {v: to_text(j) for v, j in readoffs},
           "jacobian_denominator": {v: to_text(j) for v, j in denominator.items()}}
    return "\n".join(text) + "\n", out


def _let_lines(lets: dict[str, Node]) -> list[str]:
    """The named subexpressions, each written with the others' names (let z = W*x, then
    let p = sigma(z)), a name defined before it is used."""
    bodies = {}
    for name, body in lets.items():
        others = {b: n for n, b in lets.items() if n != name and not n.startswith("__")}
        bodies[name] = _fold_lets_below(body, others)
    from handgrad.notation.ast import symbols
    done: list[str] = []

    def visit(name, seen=()):
        if name in done or name in seen:
            return
        for dep in sorted(symbols(bodies[name]) & set(bodies), key=list(bodies).index):
            visit(dep, seen + (name,))
        done.append(name)
    for name in bodies:
        visit(name)
    return [f"let {k} = {to_text(bodies[k])}" for k in done]


def _fold_lets_below(e: Node, names: dict[Node, str]) -> Node:
    """_fold_lets of e's parts (e itself kept: a let is not its own name)."""
    from handgrad.notation.simplify import _rebuild
    return _rebuild(e, lambda c: _fold_lets(c, names))


def _fold_lets(e: Node, names: dict[Node, str]) -> Node:
    """Each subtree that is a let's body written as the let's name (outermost first)."""
    from handgrad.notation.simplify import _rebuild
    if e in names:
        return Sym(names[e])
    return _rebuild(e, lambda c: _fold_lets(c, names))


def _terms_node(terms: list[Term]) -> Node:
    return total([t.node() for t in terms])


def _rewrite(ctx: Ctx, f: Node) -> tuple[Node, list[str]]:
    rules: list[str] = []

    def go(e: Node) -> Node:
        from handgrad.notation.simplify import _rebuild
        e = _rebuild(e, go)
        if isinstance(e, Call) and e.fn == "log" and isinstance(e.args[0], Call) and e.args[0].fn == "det":
            rules.append("log|X| = logdet(X)")
            return go(Call("logdet", e.args[0].args))
        if isinstance(e, Call) and e.fn == "logdet" and isinstance(e.args[0], Call) and e.args[0].fn == "inv":
            rules.append("logdet(X^-1) = -logdet(X)")
            return neg(Call("logdet", e.args[0].args))
        if (isinstance(e, Call) and e.fn == "log" and isinstance(e.args[0], Call)
                and e.args[0].fn == "softmax"):
            rules.append("log softmax(Z) = Z - 1 logsumexp(Z), column by column")
            z = e.args[0].args[0]
            return sub(z, mul(Call("vector", (Num(1.0),)), Call("logsumexp", (z,))))
        if (hasattr(e, "op") and e.op in ("^", ".^") and is_num(e.b, 2) and isinstance(e.a, Call)
                and e.a.fn == "norm2"):
            u = e.a.args[0]
            rules.append("‖u‖² = u'u" if ctx.column(u) else "‖U‖² = tr(U'U)")
            return mul(T(u), u) if ctx.column(u) else Call("tr", (mul(T(u), u),))
        return e

    out = go(f)
    return out, list(dict.fromkeys(rules))


def _hessian(ctx: Ctx, ex: Expander, fname: str, wrt: list[str], grads: dict, out: dict,
             f: Node) -> list[str]:
    if len(wrt) != 1:
        raise DeriveError("hessian: one variable at a time (the verifier's d2f is along every wrt variable)")
    v = wrt[0]
    matrix = not (ctx.scalar(Sym(v)) or ctx.column(Sym(v)))
    g = grads[v]
    from handgrad.notation.ast import symbols
    if fname in symbols(g):  # f named inside its gradient: written out again, as g depends on v through it
        from handgrad.notation.simplify import substitute
        g = simplify(ctx, substitute(g, Sym(fname), f))
    gname = next(n for n in ("g", "g1", "g2", "gw", "grad1") if n not in ex.taken and "d" + n not in ex.taken)
    ex.taken.add(gname)
    ex.lets[gname] = g
    ctx.checker.env[gname] = ctx.shape(g)
    dv = Diff(v)
    head = T(dv) if ctx.column(dv) or matrix else dv

    def d2(dg):  # d2f = dw' dg, or tr(dX' dG) for a matrix X
        return Call("tr", (mul(head, dg),)) if matrix else mul(head, dg)
    w = _Writer(ctx, {k: b for k, b in ex.lets.items() if k != gname})
    cur = Diff(gname)
    w.line("d2" + fname, d2(cur),
           [f"d2{fname} = tr(d{v}' d{gname}), {gname} the gradient" if matrix
            else f"d2{fname} = d{v}' d{gname}, {gname} the gradient" if ctx.column(dv)
            else f"d2{fname} = d{v} d{gname}, {gname} the gradient"])
    for _ in range(MAX_LINES):
        if not ex.pending(cur):
            break
        cur = tidy(ctx, ex.expand_line(cur))
        w.line("d2" + fname, d2(cur), ex.rules)
    if matrix:  # vec(dG) = H vec(dX) (notes part 1 §7), so d2f = vec(dX)' H vec(dX)
        from handgrad.notation.auto_vec import vec_jacobian
        rules: list[str] = []
        h = vec_jacobian(ctx, expand(ctx, cur), v, rules)
        if h is None:
            h = Call("matrix", (Num(0.0),))
        vdx = Call("vec", (dv,))
        w.line("d2" + fname, mul(mul(T(vdx), h), vdx), rules + ["read off vec(dG) = H vec(dX)"], names=False)
        out["hessian"][v] = to_text(h)
        return w.render() + [f"hess {v} = {to_text(h)}"]
    h = jacobian(ctx, cur, v)
    if is_num(h, 0):
        h = Call("matrix", (Num(0.0),))
    w.line("d2" + fname, mul(mul(head, h), dv), [f"read off d{gname} = H d{v}"], names=False)
    out["hessian"][v] = to_text(h)
    return w.render() + [f"hess {v} = {to_text(h)}"]


@deep
def derive_expression(expr: str, let: str, wrt: str, *, hessian: bool = False, **verify_options) -> dict:
    """Derive, then verify: the verifier's report (as ``derive_text_file`` returns, so
    ``format_text`` prints it) plus ``hg`` (the derivation text), ``gradient`` and
    ``hessian`` ({variable: the read-off in the input syntax}).  Raises DeriveError
    (a NotationError, one line) where the expression is out of scope."""
    text, result = derive(expr, let, wrt, hessian=hessian)
    report = verify(parse_text(text, path="<derived>"), **verify_options)
    report.update(result)
    report["hg"] = text
    return report


__all__ = ["DeriveError", "derive", "derive_expression", "emit_torch", "parse_let"]


def emit_torch(report_or_derivation, **options) -> str:
    """See handgrad.notation.emit.emit_torch."""
    from handgrad.notation.emit import emit_torch as _emit
    return _emit(report_or_derivation, **options)
