"""``emit_torch``: a derived gradient (and Hessian) as a small standalone torch function.

    >>> print(emit_torch(derive_expression("tr(X'*A*X) + logdet(X)", "X: n x n invertible; A: n x n", "X")))
    import torch

    def gradient(X, A):
        ...
        return (A + A.T) @ X + torch.linalg.inv(X).T

Arguments are the declared names in declaration order (vectors may be 1-D: they are
made n x 1 columns, as in the notation); the result has the variable's 2-D shape (a
tuple for several variables).  ``inv(A)*B`` becomes ``torch.linalg.solve(A, B)``.
"""

from __future__ import annotations

from handgrad.notation.ast import Bin, Call, Diff, Neg, Node, Num, Sym, Transpose
from handgrad.notation.operators import BINARY_TABLE, TABLE
from handgrad.notation.parser import NotationError
from handgrad.notation.render import number
from handgrad.notation.shapes import ONE, Unknown, is_scalar
from handgrad.notation.textfile import Derivation, parse_text


class _Emitter:
    def __init__(self, d: Derivation):
        self.d, self.c = d, d.checker

    def dim(self, dim) -> str:
        dim = self.c.find(dim)
        if isinstance(dim, Unknown):
            raise NotationError("emit_torch: a size cannot be inferred "
                                "(vector(c)/matrix(c)/eye out of context)")
        parts = [str(dim.coef)] if dim.coef != 1 or not dim.letters else []
        for letter in dim.letters:
            parts.append(self.letter(letter))
        return " * ".join(parts)

    def letter(self, letter: str) -> str:
        for name, decl in self.d.decls.items():
            for axis, s in enumerate(decl.shape):
                if s.letters == (letter,) and s.coef == 1:
                    return f"{py_name(name)}.shape[{axis}]"
        raise NotationError(f"emit_torch: no argument has the size {letter}")

    def scalar(self, e: Node) -> bool:
        return is_scalar(self.c.shape(e))

    def code(self, e: Node) -> str:  # noqa: C901 - one case per node kind
        if isinstance(e, Num):
            s = number(e.value)
            return s if "." in s or "e" in s else s + ".0"
        if isinstance(e, Sym):
            return py_name(e.name)
        if isinstance(e, Diff):
            raise NotationError("emit_torch: a differential in a read-off")
        if isinstance(e, Neg):
            return f"-({self.code(e.x)})"
        if isinstance(e, Transpose):
            inner = self.code(e.x)
            return f"{inner}.T" if inner.isidentifier() or inner.startswith("(") else f"({inner}).T"
        if isinstance(e, Bin):  # the operator's code, from the operator table
            entry = BINARY_TABLE[e.op]
            a, b = self.code(e.a), self.code(e.b)
            return entry.emit(self, e, a, b) if callable(entry.emit) else entry.emit.format(a=a, b=b)
        if isinstance(e, Call):
            return self.call(e)
        raise NotationError(f"emit_torch: cannot emit {e!r}")

    def call(self, e: Call) -> str:
        """The function's torch code, from its operator table entry."""
        op = TABLE[e.fn]
        if op.emit is None:
            raise NotationError(f"emit_torch: no torch for {e.fn}")
        a = None if op.size_argument or not e.args else self.code(e.args[0])
        return op.emit(self, e, a) if callable(op.emit) else op.emit.format(a=a)


def py_name(name: str) -> str:
    """A notation name as a Python name: a keyword (lambda) or one that would shadow the
    module the code uses (torch) gets a trailing underscore (lambda_, torch_)."""
    import keyword
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in ("torch", "gradient", "hessian",
                                                                              "jacobian"):
        return name + "_"
    return name


def _derivation(x) -> Derivation:
    if isinstance(x, Derivation):
        return x
    if isinstance(x, dict):
        if "hg" not in x:
            raise NotationError("emit_torch: the report has no 'hg' (use derive_expression's report)")
        x = x["hg"]
    return parse_text(x, path="<derived>")


def emit_torch(report_or_derivation, *, name: str = "gradient") -> str:
    """Python source of ``def gradient(<declared names>)`` (and ``def hessian`` when the
    derivation reads off a Hessian; ``def jacobian`` for a vector-valued f's ``jac``
    read-offs, in the numerator layout), using only torch.  Accepts derive_expression's
    report, a Derivation, or .hg text; needs ``grad`` or ``jac`` read-offs."""
    d = _derivation(report_or_derivation)
    em = _Emitter(d)
    args = ", ".join(py_name(n) for n in d.decls)
    head = []
    for n, decl in d.decls.items():
        n = py_name(n)
        if decl.shape[0] == ONE and decl.shape[1] == ONE:
            head.append(f"    {n} = torch.as_tensor({n}, dtype=torch.float64).reshape(1, 1)")
        elif decl.shape[1] == ONE:
            head.append(f"    {n} = torch.as_tensor({n}, dtype=torch.float64).reshape(-1, 1)")
        else:
            head.append(f"    {n} = torch.as_tensor({n}, dtype=torch.float64)")
    used = _used_defs(d)
    user_defs = [(k, v) for k, v in d.defs.items() if k != d.fname and k in used]
    if d.fname in used:  # the read-off names f itself (grad S = -1/2*f*...)
        user_defs.append((d.fname, d.f))
    head += [f"    {py_name(k)} = {em.code(v)}" for k, v in user_defs]
    out = ["import torch", ""]
    if not any(ln.kind in ("grad", "jac") for ln in d.lines):
        raise NotationError("emit_torch: the derivation has no grad (or jac) read-off")
    for kind, fname in (("grad", name), ("hess", "hessian"), ("jac", "jacobian")):
        lines = [ln for ln in d.lines if ln.kind == kind]
        if not lines:
            continue
        res = [em.code(ln.expr) for ln in lines]
        what = ", ".join(ln.wrt for ln in lines)
        out += [f"def {fname}({args}):",
                f'    """{_WHAT[kind]} of {d.fname} = '
                f'{d.f_text} with respect to {what} (derived and verified by handgrad)."""']
        out += head
        out += [f"    return {res[0] if len(res) == 1 else '(' + ', '.join(res) + ')'}", "", ""]
    return "\n".join(out).rstrip() + "\n"


_WHAT = {"grad": "Gradient", "hess": "Hessian over vec",
         "jac": "Jacobian d vec(f) / d vec(x) (numerator layout: vec(df) = J vec(dx), column-major vec)"}


def _used_defs(d: Derivation) -> set[str]:
    from handgrad.notation.ast import symbols
    used: set[str] = set()
    todo = [ln.expr for ln in d.lines if ln.kind in ("grad", "hess", "jac")]
    while todo:
        for s in symbols(todo.pop()):
            if s == d.fname and s not in used:
                used.add(s)
                todo.append(d.f)
            elif s in d.defs and s not in used:
                used.add(s)
                todo.append(d.defs[s])
    return used


__all__ = ["emit_torch"]
