"""One evaluation plan for a derivation's f, gradient and Hessian: what a fit runs.

The verifier checks the read-offs as written (``grad w = X'*(sigma(X*w) - y)``); a fit
evaluates those same trees, many times, on large X.  :class:`Plan` compiles them once:

* named subexpressions (``let g = ...``) are inlined, so every formula is one tree;
* common subexpressions are computed once: two subtrees that are the same formula (the
  nodes are frozen dataclasses, compared without positions) share one value, across f,
  the gradient and the Hessian, and a value is kept for the next request at the same
  point (a line search asks for f, then the gradient, at one point: X*w once);
* a product chain is evaluated from its column end when it ends in a column
  (``y'*X*w`` = y'(Xw), reusing X*w), numbers are applied once to the chain's result;
* ``diag(v)`` inside a product is never formed: ``A*diag(v)*B`` is A (v ⊙ B), a row
  scaling of the neighbour (X^T diag(h) X costs an n x d product, not an n x n matrix);
* the stable forms the notes' naive formulas ask for: log(1 + exp(u)) is softplus(u)
  (logaddexp(0, u): no overflow at u > 709), and sigma(u) ⊙ (1 - sigma(u)) is
  sigma(u) ⊙ sigma(-u) (the naive product is exactly 0 in float64 for u >= 37).

Each rewrite is an identity, so the plan computes the verified functions; every other
operation is the notation's own (``Evaluator.apply``).  :meth:`Plan.check_against`
compares the plan with the notation Evaluator at a point, which the fit does before it
starts.  Values keep the inputs' dtype and device (float32 and CUDA fits).
"""

from __future__ import annotations

import weakref

import torch

from handgrad.notation.ast import Bin, Call, Diff, Neg, Node, Num, Sym, Transpose, children
from handgrad.notation.evaluate import Evaluator
from handgrad.notation.parser import NotationError
from handgrad.notation.shapes import ONE, ShapeChecker, Unknown, is_scalar


def inline(node: Node, defs: dict[str, Node]) -> Node:
    """The tree with every named subexpression replaced by its formula."""
    if isinstance(node, Sym) and node.name in defs:
        return inline(defs[node.name], defs)
    if isinstance(node, Diff):
        raise NotationError("a plan evaluates values, not differentials")
    if isinstance(node, Neg):
        return Neg(inline(node.x, defs))
    if isinstance(node, Transpose):
        return Transpose(inline(node.x, defs))
    if isinstance(node, Bin):
        return Bin(node.op, inline(node.a, defs), inline(node.b, defs))
    if isinstance(node, Call):
        return Call(node.fn, tuple(inline(a, defs) for a in node.args))
    return node


def _ones(node: Node) -> bool:
    """1 or vector(1) / matrix(1)."""
    if isinstance(node, Num):
        return node.value == 1.0
    return isinstance(node, Call) and node.fn in ("vector", "matrix") and \
        isinstance(node.args[0], Num) and node.args[0].value == 1.0


def _one_minus(node: Node) -> Node | None:
    """u where node is 1 - u (or vector(1) - u)."""
    if isinstance(node, Bin) and node.op == "-" and _ones(node.a):
        return node.b
    return None


def stable(node: Node) -> Node:
    """The stable equivalents of naive formulas (identities): see the module docstring."""
    if isinstance(node, Neg):
        return Neg(stable(node.x))
    if isinstance(node, Transpose):
        return Transpose(stable(node.x))
    if isinstance(node, Call):
        node = Call(node.fn, tuple(stable(a) for a in node.args))
        arg = node.args[0] if node.args else None
        if node.fn == "log" and isinstance(arg, Bin) and arg.op == "+":
            for one, other in ((arg.a, arg.b), (arg.b, arg.a)):
                if _ones(one) and isinstance(other, Call) and other.fn == "exp":
                    return Call("softplus", other.args)  # log(1 + e^u) = softplus(u)
        return node
    if isinstance(node, Bin):
        a, b = stable(node.a), stable(node.b)
        if node.op == ".*":
            for s, rest in ((a, b), (b, a)):
                if isinstance(s, Call) and s.fn == "sigma":
                    u = _one_minus(rest)
                    if u is not None and u == s:  # 1 - sigma(u) = sigma(-u)
                        return Bin(".*", s, Call("sigma", (Neg(s.args[0]),)))
        return Bin(node.op, a, b)
    return node


def fuse_sums(node: Node, checker: ShapeChecker) -> Node:
    """sum(a) - u'*v + ... = sum(a - u .* v + ...) (a, u, v columns of one size): sums over
    rows are added row by row, then summed once, so two large sums do not cancel (the
    Poisson loss sum(exp(z)) - y'z loses ~1e-11 the first way; a line search near the
    optimum compares losses that differ by less).  An identity; other terms stay."""
    from handgrad.notation.ast import terms

    parts = terms(node)
    if len(parts) < 2:
        return node
    bodies: dict[tuple, list] = {}
    rest: list = []
    for sign, t in parts:
        body = _row_sum(t, checker)
        if body is None:
            rest.append((sign, t))
        else:
            bodies.setdefault(tuple(str(d) for d in body[1]), []).append((sign, body[0]))
    if not any(len(v) > 1 for v in bodies.values()):
        return node
    for group in bodies.values():
        inner = None
        for sign, b in group:
            inner = (b if sign > 0 else Neg(b)) if inner is None else Bin("+" if sign > 0 else "-", inner, b)
        rest.append((1, Call("sum", (inner,))))
    out = None
    for sign, t in rest:
        out = (t if sign > 0 else Neg(t)) if out is None else Bin("+" if sign > 0 else "-", out, t)
    return out


def _row_sum(t: Node, checker: ShapeChecker):
    """(c, shape of c) with t = sum(c), c a column; None if t is not such a sum."""
    try:
        if isinstance(t, Call) and t.fn == "sum":
            sh = checker.shape(t.args[0])
            return (t.args[0], sh) if sh[1] == ONE and not isinstance(sh[0], Unknown) else None
        if not (isinstance(t, Bin) and t.op == "*"):
            return None
        factors = _product_factors(t)
        first = factors[0]
        if len(factors) < 2 or not isinstance(first, Transpose) or any(
                is_scalar(checker.shape(f)) for f in factors):
            return None
        u = first.x
        sh = checker.shape(u)
        if sh[1] != ONE or checker.shape(factors[-1])[1] != ONE or isinstance(sh[0], Unknown):
            return None
        v = factors[-1]
        for f in reversed(factors[1:-1]):
            v = Bin("*", f, v)
        return Bin(".*", u, v), sh
    except KeyError:  # a node the checker has not seen
        return None


class Plan:
    """Compiled evaluation of named formulas over the declarations of a derivation.

    ``outputs``: name -> formula (already parsed against the derivation's names, e.g. its
    f and read-off lines); ``decls``: name -> shape; ``defs``: named subexpressions.
    ``run(values, wanted)`` returns {name: 2-D tensor} for the wanted outputs."""

    def __init__(self, outputs: dict[str, Node], decls: dict, defs: dict[str, Node] | None = None):
        self.decls = dict(decls)
        trees = {k: stable(inline(e, defs or {})) for k, e in outputs.items()}
        pre = ShapeChecker(dict(self.decls))
        for e in trees.values():
            pre.infer(e)
        self.trees = {k: fuse_sums(e, pre) for k, e in trees.items()}
        self.checker = ShapeChecker(dict(self.decls))
        for e in self.trees.values():
            self.checker.infer(e)
        self.steps: list[tuple] = []  # (fn, arg ids, kind); kind: the node or a tag
        self._ids: dict[tuple, int] = {}
        self.out = {k: self._compile(e) for k, e in self.trees.items()}
        self.needs = {k: self._closure(i) for k, i in self.out.items()}
        self._memo: dict[int, torch.Tensor] = {}
        self._point: list | None = None

    # -- compiling ------------------------------------------------------------------------
    def _step(self, key: tuple, fn, args: tuple[int, ...]) -> int:
        if key not in self._ids:
            self._ids[key] = len(self.steps)
            self.steps.append((fn, args))
        return self._ids[key]

    def _shape(self, node: Node):
        return self.checker.shape(node)

    def _dims(self, node: Node):
        out = []
        for d in self._shape(node):
            if isinstance(d, Unknown):
                from handgrad.notation.render import to_text
                raise NotationError(f"the size of {to_text(node)} cannot be inferred from its context")
            out.append(d)
        return tuple(out)

    def _compile(self, node: Node) -> int:  # noqa: C901 - one case per node kind
        if isinstance(node, Sym):
            return self._step(("sym", node.name), ("input", node.name), ())
        if isinstance(node, Num):
            return self._step(("num", node.value), ("num", node.value), ())
        if isinstance(node, Call) and node.fn in ("vector", "matrix", "eye"):
            dims = self._dims(node)
            if node.fn == "eye":
                return self._step(("eye", dims), ("eye", dims), ())
            c = self._compile(node.args[0])
            return self._step(("fill", dims, c), ("fill", dims), (c,))
        if isinstance(node, Bin) and node.op == "*":
            return self._chain(node)
        if isinstance(node, Bin) and node.op in ("+", "-"):
            for side, other, sign in ((node.a, node.b, 1), (node.b, node.a, -1)):
                if isinstance(side, Call) and side.fn in ("vector", "matrix") and \
                        not is_scalar(self._shape(other)):  # c*vector(1) + u: broadcast c
                    c, u = self._compile(side.args[0]), self._compile(other)
                    tag = "c+u" if node.op == "+" else ("c-u" if sign == 1 else "u-c")
                    return self._step((tag, c, u), (tag,), (c, u))
        kids = tuple(self._compile(k) for k in _kids(node))
        what = (type(node).__name__, getattr(node, "op", None), getattr(node, "fn", None),
                node.b.value if isinstance(node, Bin) and isinstance(node.b, Num) else None)
        return self._step(("node", what, _shape_key(self, node), kids), ("apply", node), kids)

    def _chain(self, node: Bin) -> int:
        """A product chain: numbers aside, diag(v) folded into a neighbour, evaluated from
        its column end when it ends in a column."""
        factors = _product_factors(node)
        nums = [f for f in factors if is_scalar(self._shape(f))]
        mats = [f for f in factors if not is_scalar(self._shape(f))]
        if not mats:  # scalars only: their product
            ids = [self._compile(f) for f in nums]
            return self._fold_scalars(ids, None)
        items: list[int] = []
        i = 0
        pending_diag: list[int] = []
        while i < len(mats):
            f = mats[i]
            if isinstance(f, Call) and f.fn == "diag" and self._shape(f.args[0])[1] == ONE \
                    and len(mats) > 1:
                pending_diag.append(self._compile(f.args[0]))  # v of diag(v), a column
                i += 1
                continue
            cur = self._inverse_or(f, mats[i + 1] if i + 1 < len(mats) else None)
            if cur[1]:
                i += 1  # inv(A)*B consumed B
            fid = cur[0]
            for v in reversed(pending_diag):  # diag(v) * F = v ⊙ F (rows scaled)
                fid = self._step(("rows", v, fid), ("rows",), (v, fid))
            pending_diag = []
            items.append(fid)
            i += 1
        for v in pending_diag:  # F * diag(v) at the end: columns scaled
            items[-1] = self._step(("cols", items[-1], v), ("cols",), (items[-1], v))
        last = self._shape(mats[-1])
        if last[1] == ONE and len(items) > 1:  # from the column end
            acc = items[-1]
            for it in reversed(items[:-1]):
                acc = self._step(("mm", it, acc), ("mm",), (it, acc))
        else:
            acc = items[0]
            for it in items[1:]:
                acc = self._step(("mm", acc, it), ("mm",), (acc, it))
        return self._fold_scalars([self._compile(f) for f in nums], acc)

    def _inverse_or(self, f: Node, nxt: Node | None) -> tuple[int, bool]:
        a = f.args[0] if isinstance(f, Call) and f.fn == "inv" else \
            f.a if isinstance(f, Bin) and f.op == "^" and isinstance(f.b, Num) and f.b.value == -1 else None
        if a is not None and nxt is not None and not (isinstance(nxt, Call) and nxt.fn == "diag"):
            ai, bi = self._compile(a), self._compile(nxt)
            return self._step(("solve", ai, bi), ("solve",), (ai, bi)), True
        return self._compile(f), False

    def _fold_scalars(self, ids: list[int], acc: int | None) -> int:
        for s in ids:
            acc = s if acc is None else self._step(("smul", s, acc), ("smul",), (s, acc))
        return acc

    def _closure(self, i: int) -> list[int]:
        need, todo = set(), [i]
        while todo:
            j = todo.pop()
            if j not in need:
                need.add(j)
                todo.extend(self.steps[j][1])
        return sorted(need)

    # -- running --------------------------------------------------------------------------
    def _same_point(self, values: dict) -> bool:
        """The same tensors as last time (by identity), with the same entries (the
        parameters may be updated in place)."""
        p = self._point
        if p is None or set(p) != set(values):
            return False
        for k, v in values.items():
            ref, old = p[k]
            if ref() is not v or (old is not None and not torch.equal(old, v)):
                return False
        return True

    def run(self, values: dict[str, torch.Tensor], wanted, sizes: dict[str, int]) -> dict:
        """Values of the ``wanted`` outputs at ``values`` (2-D tensors of one dtype and
        device); ``sizes``: the size letters.  Values of the last point are reused."""
        if not self._same_point(values):
            self._memo = {}
            # small inputs (the parameters) are compared by value, large ones by identity
            self._point = {k: (weakref.ref(v), v.detach().clone() if v.numel() <= 65536 else None)
                           for k, v in values.items()}
        x0 = next(iter(values.values()))
        ev = Evaluator(self.checker, {}, sizes=sizes)
        memo = self._memo
        out = {}
        for name in wanted:
            for j in self.needs[name]:
                if j not in memo:
                    fn, args = self.steps[j]
                    memo[j] = _run(fn, [memo[a] for a in args], values, sizes, ev, x0)
            out[name] = memo[self.out[name]]
        # keep vectors for the next request at this point, drop n x d temporaries
        big = 4 * max(max(v.shape) for v in values.values())
        for j in [j for j, v in memo.items() if v.numel() > big]:
            memo.pop(j)
        return out

    def forget(self) -> None:
        """Drop the values kept from the last point (after views that will not recur)."""
        self._memo, self._point = {}, None

    def check_against(self, values: dict[str, torch.Tensor], sizes: dict[str, int],
                      defs: dict[str, Node], outputs: dict[str, Node], rtol: float = 1e-9) -> None:
        """The plan against the notation Evaluator at one point (float64): raise if apart."""
        from handgrad.notation.render import to_text
        vals = {k: v.to(torch.float64) for k, v in values.items()}
        self.forget()
        mine = self.run(vals, list(outputs), sizes)
        self.forget()
        ref_checker = ShapeChecker(dict(self.decls))
        for name, body in defs.items():
            ref_checker.env[name] = ref_checker.infer(body)
        for k, e in outputs.items():
            ref_checker.infer(e)
            want = Evaluator(ref_checker, vals, None, defs, sizes).value(e)
            got = mine[k]
            scale = want.abs().max().clamp_min(1e-300)
            if got.shape != want.shape or not bool(((got - want).abs() <= rtol * scale + 1e-300).all()):
                raise AssertionError(f"the compiled plan of {to_text(e)} disagrees with the "
                                     "notation's evaluator; this is a bug in handgrad")


def _product_factors(node: Node) -> list[Node]:
    """The factors of a product chain a * b * c, left to right."""
    if isinstance(node, Bin) and node.op == "*":
        return _product_factors(node.a) + _product_factors(node.b)
    return [node]


def _shape_key(plan: Plan, node: Node):
    return tuple(str(d) for d in plan.checker.shape(node))


_kids = children  # the tree's one definition of a node's children (handgrad/notation/ast.py)


def _scalar(t: torch.Tensor) -> bool:
    return t.shape == (1, 1)


def _run(fn, xs, values, sizes, ev, x0):  # noqa: C901 - one case per step kind
    kind = fn[0]
    if kind == "input":
        return values[fn[1]]
    if kind == "num":
        return torch.full((1, 1), fn[1], dtype=x0.dtype, device=x0.device)
    if kind == "eye":
        return torch.eye(fn[1][0].value(sizes), dtype=x0.dtype, device=x0.device)
    if kind == "fill":
        r, c = (d.value(sizes) for d in fn[1])
        return xs[0].expand(r, c).contiguous()
    if kind == "c+u":
        return xs[1] + xs[0]
    if kind == "c-u":
        return xs[0] - xs[1]
    if kind == "u-c":
        return xs[1] - xs[0]
    if kind == "mm":
        a, b = xs
        return a * b if _scalar(a) or _scalar(b) else a @ b
    if kind == "smul":
        return xs[0] * xs[1]
    if kind == "rows":  # diag(v) B
        return xs[0] * xs[1]
    if kind == "cols":  # A diag(v)
        return xs[0] * xs[1].mT
    if kind == "solve":
        return torch.linalg.solve(xs[0], xs[1])
    return ev.apply(fn[1], *xs)


__all__ = ["Plan", "inline", "stable"]
