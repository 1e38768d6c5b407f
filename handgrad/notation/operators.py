"""The operator table: everything handgrad knows about one function of the notation, in one
entry (micrograd's habit: an operation's forward value and its backward rule side by side).

An entry gives the function's spellings, its shape rule, its torch evaluation, its
differential rule with the rule text a derivation prints beside the line, the letter the
notes name such a subexpression by, how it is printed (text, LaTeX, MathML) and the torch
code ``--emit torch`` writes for it.  The parser, the shape checker, the evaluator, the
deriver, the printers and the emitter read this table; adding a function is adding an entry
(``register``), and the deriver's round trip still holds for it: every line it prints is
parsed back and verified against autograd, so an entry whose rule is wrong is caught by the
verifier, not trusted.

Kinds: "linear" (a linear map of its argument: the differential passes through it,
d tr(U) = tr(dU)), "elementwise" (a scalar function applied entry by entry: its rule is
f'(U) ⊙ dU, from ``deriv``), "matrix" (any other function: its rule is ``d``), "const" (no
differentiable argument: vector(c), matrix(c), eye, comm(A)).

The grammar's infix operators (+ - * .* ./ / ^ .^ kron) have entries too (BinaryOperator,
BINARY_TABLE, after the functions): binding power, spellings (⊙, ⊗), shape rule, evaluation,
the product or quotient rule and its text, printing and emitted code.  What stays in the
grammar is syntax: the transpose ', X^T, unary minus, |X| and ||x|| (read from ``fence``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from handgrad.notation import ast as _ast
from handgrad.notation.ast import Bin, Call, Node, Num
from handgrad.notation.sizes import ONE, SCALAR, Unknown, eye_size, is_scalar, show

LINEAR, ELEMENTWISE, MATRIX, CONST = "linear", "elementwise", "matrix", "const"


@dataclass(frozen=True)
class Rule:
    """Where a differential rule is applied: e = f(u), du the argument's differential (already
    expanded, or a named subexpression's d), ``scalar``/``column`` what u is."""

    e: Call
    u: Node
    du: Node
    scalar: bool
    column: bool
    b: object  # the tree builders (handgrad.notation.simplify: mul, had, neg, sub, prod, T)


@dataclass(frozen=True)
class Operator:
    """One function of the notation.  Only ``name`` and ``kind`` are required; a field left
    out means the function does not have that (no rule: not derived; no emit: --emit refuses)."""

    name: str
    kind: str
    arity: int = 1
    aliases: tuple[str, ...] = ()      # other spellings the parser reads (printed as ``name``)
    fence: str | None = None           # |X| is det(X), ||x|| is norm2(x)
    size_argument: bool = False        # eye(n): the argument is a size, not a formula
    # shapes: (checker, node, argument's raw shape, its resolved shape) -> shape
    shape: Callable | None = None
    # evaluation: torch (2-D tensor -> 2-D tensor) or value (evaluator, node, tensor) -> tensor
    torch: Callable | None = None
    value: Callable | None = None
    # the tolerance's scales: magnitude (evaluator, node) -> |terms|; tangent
    # (evaluator, node, argument's value, argument's tangent magnitude) -> |terms of the derivative|
    magnitude: Callable | None = None
    tangent: Callable | None = None
    # the differential: deriv (Rule) -> f'(u) for an elementwise f; d (Rule) -> the differential
    deriv: Callable | None = None
    d: Callable | None = None
    rule: str | None = None            # the rule's text, printed beside the line it gives
    kink: str | None = None            # why it is not derived (no subgradients)
    role: str | None = None            # the letter the notes name a subexpression f(u) by
    # printing: latex is a command (r"\exp", then the argument in brackets), a template with
    # {a} for the argument's LaTeX (r"\lvert {a} \rvert"), or (printer, node, the argument's
    # LaTeX) -> LaTeX; mathml a name shown or
    # (printer, node, the argument's element) -> element (the printer: handgrad.notation.render)
    latex: str | Callable | None = None
    mathml: str | Callable | None = None
    # emitted torch: a template with {a} for the argument's code, or (emitter, node, code) -> code
    emit: str | Callable | None = None
    power_form: bool = False           # printed as a power (X^{-1}): bracketed when raised again
    # algebra the simplifier and the verifier use
    transposes: bool = False           # f(A)' is printed f(A') (elementwise functions, comm; inv(A)' stays)
    keeps_symmetry: bool = False       # f(S) is symmetric when S is (elementwise functions, inv)
    domain: str | None = None          # "positive": a log or sqrt of a value that is not > 0 is undefined
    needs_inverse: bool = False        # undefined at a singular argument (inv, logdet)
    projection: bool = False           # linear and f(f(A)) = f(A), f(I) = I (tril)


TABLE: dict[str, Operator] = {}
SPELLINGS: dict[str, str] = {}   # every spelling (name or alias) -> name


def register(op: Operator) -> Operator:
    """Add (or replace) an entry; the parser, checker, evaluator, deriver, printers and the
    emitter see it at once."""
    if op.kind not in (LINEAR, ELEMENTWISE, MATRIX, CONST):
        raise ValueError(f"{op.name}: kind {op.kind!r} is not one of linear, elementwise, matrix, const")
    if op.kind == ELEMENTWISE:
        op = _elementwise_defaults(op)
    TABLE[op.name] = op
    for s in (op.name, *op.aliases):
        SPELLINGS[s] = op.name
    _ast.FUNCTIONS[op.name] = (op.arity, op.kind)
    if op.size_argument:
        _ast.SIZE_ARGUMENT.add(op.name)
    return op


def unregister(name: str) -> None:
    op = TABLE.pop(name)
    for s in (op.name, *op.aliases):
        SPELLINGS.pop(s, None)
    _ast.FUNCTIONS.pop(name, None)
    _ast.SIZE_ARGUMENT.discard(name)


def of(node: Node) -> Operator | None:
    """The entry of a Call node (None for any other node)."""
    return TABLE.get(node.fn) if isinstance(node, Call) else None


def _elementwise_defaults(o: Operator) -> Operator:
    from dataclasses import replace
    return replace(o, shape=o.shape or same, transposes=True, keeps_symmetry=True)


# ------------------------------------------------------------------ shape rules
def same(chk, node, s, r):
    return s


def scalar(chk, node, s, r):
    return SCALAR


def square_to_scalar(chk, node, s, r):
    chk.square_arg(node, s)
    return SCALAR


def square_to_same(chk, node, s, r):
    chk.square_arg(node, s)
    return s


def _known(chk, node, r):
    if any(isinstance(d, Unknown) for d in r):
        raise chk.error(node, f"{chk.text(node)}: the size of {chk.text(node.args[0])} cannot be inferred")


def _vec_shape(chk, node, s, r):
    _known(chk, node, r)
    return (r[0].times(r[1]), ONE)


def _comm_shape(chk, node, s, r):  # K_mn: mn x mn for an m x n argument
    _known(chk, node, r)
    mn = r[0].times(r[1])
    return (mn, mn)


def _diag_shape(chk, node, s, r):
    if is_scalar(r):
        return SCALAR
    if r[1] == ONE:
        return (r[0], r[0])
    if r[0] == ONE:
        return (r[1], r[1])
    chk.square_arg(node, s, "diag of a matrix (its diagonal as a vector)")
    return (s[0], ONE)


def _fill_shape(kind):
    def shape(chk, node, s, r):
        if not is_scalar(r):
            raise chk.error(node, f"{chk.text(node)}: the fill value {chk.text(node.args[0])} is {show(r)}, "
                                  "not a scalar")
        return (chk.fresh(), ONE) if kind == "vector" else (chk.fresh(), chk.fresh())
    return shape


def _eye_shape(chk, node, s, r):
    d = eye_size(node) or chk.fresh()
    return (d, d)


def _lse_shape(chk, node, s, r):  # log(1' exp(z)) for each column z: 1 x (columns)
    return (ONE, s[1])


# ------------------------------------------------------------------ evaluation helpers
def _one(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, 1)


def _diag_value(ev, node, a):
    arg = node.args[0]
    if ev.scalar(arg):
        return a
    s = ev.checker.shape(arg)
    if s[1] == ONE:
        return torch.diag(a[:, 0])
    if s[0] == ONE:
        return torch.diag(a[0])
    return torch.diagonal(a).reshape(-1, 1)


def _fill_value(ev, node, a):
    return a * torch.ones(ev.dims(node), dtype=a.dtype)


def _eye_value(ev, node, *a):
    return torch.eye(ev.dims(node)[0], dtype=torch.float64)


def _comm_value(ev, node, a):
    return commutation(*a.shape, dtype=a.dtype, device=a.device)


def _adj_value(ev, node, a):
    return adjugate(a)


def adjugate(a: torch.Tensor) -> torch.Tensor:
    """adj(A) = C^T, C_ij = (-1)^(i+j) det(A without row i and column j): from cofactors,
    never from A^-1 (so d|X| = tr(adj(X) dX) is checked against an independent adj)."""
    n = a.shape[0]
    if n == 1:
        return torch.ones_like(a)

    def minor(i, j):
        return a[[r for r in range(n) if r != i]][:, [c for c in range(n) if c != j]]
    cof = torch.stack([torch.stack([(-1) ** (i + j) * torch.linalg.det(minor(i, j)) for j in range(n)])
                       for i in range(n)])
    return cof.mT


def commutation(m: int, n: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """K_mn (mn x mn), K_mn vec(A) = vec(A^T) for A m x n (vec stacks columns): row j + i n
    has its one in column i + j m, since vec(A^T)[j + i n] = A[i, j] = vec(A)[i + j m]."""
    K = torch.zeros(m * n, m * n, dtype=dtype, device=device)
    i = torch.arange(m).repeat_interleave(n)
    j = torch.arange(n).repeat(m)
    K[(j + i * n).to(K.device), (i + j * m).to(K.device)] = 1.0
    return K


def _inv_tangent(ev, node, x, tm):
    inv = torch.linalg.inv(x).abs()
    return inv @ tm @ inv


def _logdet_tangent(ev, node, x, tm):
    return (torch.linalg.inv(x).abs().mT * tm).sum().reshape(1, 1)


def _det_tangent(ev, node, x, tm):
    return _logdet_tangent(ev, node, x, tm) * ev.value(node).abs()


def linear_magnitude(ev, node):
    """|terms| of a linear map (or a fill): the map applied to the argument's |terms|."""
    return ev.apply(node, *[ev.magnitude(c) for c in _ast.children(node)])


def _norm1_magnitude(ev, node):
    return ev.magnitude(node.args[0]).sum().reshape(1, 1)


# ------------------------------------------------------------------ differential helpers
def _inv_d(r: Rule) -> Node:
    b = r.b
    return b.neg(b.prod([r.e, r.du, r.e]))


def _det_d(r: Rule) -> Node:
    b = r.b
    return b.mul(r.e, Call("tr", (b.mul(Call("inv", (r.u,)), r.du),)))


def _logdet_d(r: Rule) -> Node:
    return Call("tr", (r.b.mul(Call("inv", (r.u,)), r.du),))


def _norm2_d(r: Rule) -> Node:
    b = r.b
    inner = b.mul(b.T(r.u), r.du) if r.column else Call("tr", (b.mul(b.T(r.u), r.du),))
    return Bin("/", inner, r.e)


def _lse_col(r: Rule) -> Node:  # 1'(softmax(U) ⊙ dU), column by column
    b = r.b
    ones = Call("vector", (Num(1.0),))
    return b.mul(b.T(ones), b.had(Call("softmax", (r.u,)), r.du))


def _softmax_d(r: Rule) -> Node:
    b = r.b
    ones = Call("vector", (Num(1.0),))
    return b.sub(b.had(r.e, r.du), b.had(r.e, b.mul(ones, _lse_col(r))))


def _log_d(r: Rule) -> Node:
    return Bin("/" if r.scalar else "./", r.du, r.u)


def _sqrt_d(r: Rule) -> Node:
    return Bin("/" if r.scalar else "./", r.du, r.b.mul(Num(2.0), r.e))


# ------------------------------------------------------------------ printing helpers
def _latex_sup(exponent):
    return lambda P, node, s: P.sup(node.args[0], exponent)


def _mathml_fence(bar, prefix=None, sub=None):
    def ml(P, node, e):
        parts = ([P.el("mi", text=prefix)] if prefix else []) + [P.mo(bar, fence="true"), e,
                                                                 P.mo(bar, fence="true")]
        body = P.el("mrow", *parts)
        return P.el("msub", body, P.el("mn", text=sub)) if sub else body
    return ml


def _latex_fill(ones):
    def tex(P, node, s):
        arg = node.args[0]
        if isinstance(arg, Num) and arg.value == 1:
            return ones
        return (P.paren(s) if _ast.precedence(arg) < _ast.PREC_POW else s) + " " + ones
    return tex


def _mathml_fill(matrix):
    def ml(P, node, e):
        arg = node.args[0]
        ones = P.el("mn", text="1", mathvariant="bold")
        if matrix:
            ones = P.el("mrow", ones, P.el("msup", P.el("mn", text="1", mathvariant="bold"),
                                           P.el("mi", text="T", mathvariant="normal")))
        if isinstance(arg, Num) and arg.value == 1:
            return ones
        return P.el("mrow", e if _ast.precedence(arg) >= _ast.PREC_POW else P.mparen(e), P.mo("\u2062"), ones)
    return ml


def _eye_latex(P, node, s=None):
    return f"I_{{{P.size_text(node.args[0])}}}" if node.args else "I"


def _eye_mathml(P, node, e=None):
    eye = P.el("mi", text="I", mathvariant="normal")
    n = P.size_text(node.args[0]) if node.args else ""
    return P.el("msub", eye, P.el("mn" if n.isdigit() else "mi", text=n)) if n else eye


# ------------------------------------------------------------------ emitting helpers
def _emit_fill(em, node, a):
    shape = em.c.shape(node)
    return f"torch.full(({em.dim(shape[0])}, {em.dim(shape[1])}), {a}, dtype=torch.float64)"


def _emit_eye(em, node, a=None):
    return f"torch.eye({em.dim(em.c.shape(node)[0])}, dtype=torch.float64)"


def _emit_comm(em, node, a):  # K_mn of arg's shape: K vec(A) = vec(A'), rows of the identity permuted
    rows, cols = (em.dim(d) for d in em.c.shape(node.args[0]))
    return (f"torch.eye({rows} * {cols}, dtype=torch.float64)"
            f"[torch.arange({rows} * {cols}).reshape({cols}, {rows}).T.reshape(-1)]")


def _emit_diag(em, node, a):
    s = em.c.shape(node.args[0])
    if is_scalar(s):
        return a
    if s[1] == ONE:
        return f"torch.diag(({a})[:, 0])"
    if s[0] == ONE:
        return f"torch.diag(({a})[0])"
    return f"torch.diagonal({a}).reshape(-1, 1)"


def _kink(fn):
    return f"{fn}(u) has a kink where an entry of u is 0"


# ------------------------------------------------------------------ the table
for _op in [
    # linear maps: the differential passes through (d tr(U) = tr(dU))
    Operator("tr", LINEAR, shape=square_to_scalar, torch=lambda a: _one(torch.diagonal(a).sum()),
             magnitude=linear_magnitude, d=LINEAR, rule="d tr(U) = tr(dU)",
             latex=r"\operatorname{tr}", emit="torch.trace({a}).reshape(1, 1)"),
    Operator("sum", LINEAR, shape=scalar, torch=lambda a: _one(a.sum()), magnitude=linear_magnitude,
             d=LINEAR, rule="d sum(U) = sum(dU)", latex=r"\operatorname{sum}",
             emit="{a}.sum().reshape(1, 1)"),
    Operator("vec", LINEAR, shape=_vec_shape, torch=lambda a: a.mT.reshape(-1, 1), magnitude=linear_magnitude,
             d=LINEAR, rule="d vec(U) = vec(dU)", latex=r"\operatorname{vec}", emit="{a}.mT.reshape(-1, 1)"),
    Operator("diag", LINEAR, shape=_diag_shape, value=_diag_value, magnitude=linear_magnitude,
             d=LINEAR, rule="d diag(U) = diag(dU)", latex=r"\operatorname{diag}", emit=_emit_diag),
    # the lower triangle, diagonal included (a Cholesky factor's gradient)
    Operator("tril", LINEAR, shape=same, torch=torch.tril, magnitude=linear_magnitude,
             d=LINEAR, rule="d tril(U) = tril(dU)", latex=r"\operatorname{tril}", emit="torch.tril({a})",
             projection=True),
    # matrix functions
    Operator("det", MATRIX, fence="|", shape=square_to_scalar, torch=lambda a: _one(torch.linalg.det(a)),
             tangent=_det_tangent, d=_det_d, rule="d|X| = |X| tr(X^-1 dX)", role="D",
             latex=r"\lvert {a} \rvert", mathml=_mathml_fence("|"),
             emit="torch.linalg.det({a}).reshape(1, 1)"),
    Operator("logdet", MATRIX, shape=square_to_scalar, torch=lambda a: _one(torch.linalg.slogdet(a)[1]),
             tangent=_logdet_tangent, d=_logdet_d, rule="d logdet(X) = tr(X^-1 dX)",
             latex=r"\log\lvert {a} \rvert",
             mathml=_mathml_fence("|", prefix="log"),
             emit="torch.linalg.slogdet({a})[1].reshape(1, 1)", needs_inverse=True),
    Operator("inv", MATRIX, shape=square_to_same, torch=torch.linalg.inv, tangent=_inv_tangent, d=_inv_d,
             rule="d(X^-1) = -X^-1 dX X^-1", role="V", latex=_latex_sup("-1"),
             mathml=lambda P, node, e: P.msup(node.args[0], P.el("mrow", P.mo("−"), P.el("mn", text="1"))),
             emit="torch.linalg.inv({a})", power_form=True, keeps_symmetry=True, needs_inverse=True),
    # the adjugate (the notes' X^#), from cofactors; not derived through
    Operator("adj", MATRIX, shape=square_to_same, value=_adj_value, latex=_latex_sup(r"\#"),
             mathml=lambda P, node, e: P.msup(node.args[0], P.el("mo", text="#"))),
    Operator("norm1", MATRIX, shape=scalar, torch=lambda a: _one(a.abs().sum()), magnitude=_norm1_magnitude,
             kink=_kink("norm1"), latex=r"\lVert {a} \rVert_1",
             mathml=_mathml_fence("‖", sub="1"), emit="{a}.abs().sum().reshape(1, 1)"),
    Operator("norm2", MATRIX, fence="||", shape=scalar, torch=lambda a: _one(torch.linalg.vector_norm(a)),
             d=_norm2_d, rule="d‖u‖ = u'du / ‖u‖", role="nu", latex=r"\lVert {a} \rVert",
             mathml=_mathml_fence("‖"), emit="torch.linalg.vector_norm({a}).reshape(1, 1)"),
    # column by column, as the notes' z
    Operator("softmax", MATRIX, shape=same, torch=lambda a: torch.softmax(a, dim=0), d=_softmax_d,
             rule="d softmax(U) = S ⊙ dU - S ⊙ (1 1'(S ⊙ dU)), S = softmax(U), column by column",
             role="p", latex=r"\operatorname{softmax}", emit="torch.softmax({a}, dim=0)"),
    Operator("logsumexp", MATRIX, shape=_lse_shape, torch=lambda a: torch.logsumexp(a, dim=0, keepdim=True),
             d=_lse_col, rule="d logsumexp(U) = 1'(softmax(U) ⊙ dU), column by column", role="lse",
             latex=r"\operatorname{logsumexp}", emit="torch.logsumexp({a}, dim=0, keepdim=True)"),
    # elementwise: the rule is f'(U) ⊙ dU (f'(u) du for a scalar u)
    Operator("exp", ELEMENTWISE, torch=torch.exp, deriv=lambda r: r.e, rule="d exp(U) = exp(U) ⊙ dU",
             role="q", latex=r"\exp", emit="torch.exp({a})"),
    Operator("log", ELEMENTWISE, torch=torch.log, d=_log_d, rule="d log(U) = dU ⊘ U", role="l",
             latex=r"\log", emit="torch.log({a})", domain="positive"),
    Operator("sin", ELEMENTWISE, torch=torch.sin, deriv=lambda r: Call("cos", (r.u,)),
             rule="d sin(U) = cos(U) ⊙ dU", latex=r"\sin", emit="torch.sin({a})"),
    Operator("cos", ELEMENTWISE, torch=torch.cos, deriv=lambda r: r.b.neg(Call("sin", (r.u,))),
             rule="d cos(U) = -sin(U) ⊙ dU", latex=r"\cos", emit="torch.cos({a})"),
    Operator("tanh", ELEMENTWISE, torch=torch.tanh,
             deriv=lambda r: r.b.sub(Num(1.0), Bin(".^", r.e, Num(2.0))),
             rule="d tanh(U) = (1 - tanh(U)^2) ⊙ dU", role="t", latex=r"\tanh", emit="torch.tanh({a})"),
    Operator("abs", ELEMENTWISE, torch=torch.abs, kink=_kink("abs"), latex=r"\operatorname{abs}",
             emit="torch.abs({a})"),
    Operator("sign", ELEMENTWISE, torch=torch.sign,
             kink="sign(u) jumps where an entry of u is 0 (its derivative is not a function there)",
             latex=r"\operatorname{sign}", emit="torch.sign({a})"),
    Operator("relu", ELEMENTWISE, torch=torch.relu, kink=_kink("relu"), latex=r"\operatorname{relu}",
             emit="torch.relu({a})"),
    Operator("sigma", ELEMENTWISE, aliases=("sigmoid",), torch=torch.sigmoid,
             deriv=lambda r: r.b.had(r.e, r.b.sub(Num(1.0), r.e)), rule="d σ(U) = σ(U) ⊙ (1 - σ(U)) ⊙ dU",
             role="p", latex=r"\sigma", mathml="σ", emit="torch.sigmoid({a})"),
    Operator("softplus", ELEMENTWISE, torch=lambda z: torch.logaddexp(torch.zeros_like(z), z),
             deriv=lambda r: Call("sigma", (r.u,)), rule="d softplus(U) = σ(U) ⊙ dU", role="sp",
             latex=r"\operatorname{softplus}", emit="torch.nn.functional.softplus({a})"),
    Operator("sqrt", ELEMENTWISE, torch=torch.sqrt, d=_sqrt_d, rule="d sqrt(U) = dU ⊘ (2 sqrt(U))", role="s",
             latex=r"\sqrt{{{a}}}", mathml=lambda P, node, e: P.el("msqrt", e),
             emit="torch.sqrt({a})", domain="positive"),
    # constants: no differentiable argument
    Operator("vector", CONST, shape=_fill_shape("vector"), value=_fill_value, magnitude=linear_magnitude,
             latex=_latex_fill(r"\mathbf{1}"), mathml=_mathml_fill(False), emit=_emit_fill),
    Operator("matrix", CONST, shape=_fill_shape("matrix"), value=_fill_value, magnitude=linear_magnitude,
             latex=_latex_fill(r"\mathbf{1}\mathbf{1}^T"), mathml=_mathml_fill(True), emit=_emit_fill),
    Operator("eye", CONST, arity=0, size_argument=True, shape=_eye_shape, value=_eye_value,
             latex=_eye_latex, mathml=_eye_mathml, emit=_emit_eye, keeps_symmetry=True),
    # comm(A): the commutation matrix K_mn of A's shape (m x n), K vec(A) = vec(A')
    Operator("comm", CONST, shape=_comm_shape, value=_comm_value, latex=lambda P, node, s: "K" + P.paren(s),
             emit=_emit_comm, transposes=True),
]:
    register(_op)
del _op



# ================================================================== the grammar's operators
@dataclass(frozen=True)
class BinaryOperator:
    """One infix operator of the notation (+ - * .* ./ / ^ .^ kron): as for a function, its
    spellings, binding, shape rule, torch evaluation, differential rule and its text,
    printing and emitted code in one entry.

    shape (checker, node, a's shape, b's shape, a's resolved, b's resolved) -> shape;
    torch (evaluator, node, a, b) -> tensor; d (expander, node) -> the differential, with
    the expander's ``arg`` (an argument's differential), ``ctx`` and ``note`` (a rule's text
    printed); latex / mathml a symbol between the operands (" \\odot ", "⊙") or
    (printer, node) -> LaTeX / element; emit a template with {a} and {b} or
    (emitter, node, a's code, b's code) -> code."""

    op: str
    precedence: int
    shape: Callable
    torch: Callable
    right: bool = False                 # ^ and .^ group to the right
    spellings: tuple[str, ...] = ()     # other tokens the parser reads (⊙ for .*, ⊗ for kron)
    as_call: bool = False               # written kron(A, B) in the text form
    d: Callable | None = None
    rule: str | None = None
    latex: str | Callable | None = None
    mathml: str | Callable | None = None
    emit: str | Callable | None = None
    # the tolerance's scales: magnitude (evaluator, node) -> |terms|; tangent (evaluator,
    # node, the operands' |values|, their tangent magnitudes) -> |terms of the derivative|,
    # or None for the generic one (|jvp| of the operation at the operands' tangent magnitudes)
    magnitude: Callable | None = None
    tangent: Callable | None = None
    # evaluation from the operands' trees, before their values: (evaluator, node) -> tensor, or
    # None to evaluate the operands and apply ``torch``
    value: Callable | None = None


BINARY_TABLE: dict[str, BinaryOperator] = {}
INFIX: dict[str, str] = {}   # every token spelling an operator -> its op


def register_binary(b: BinaryOperator) -> BinaryOperator:
    BINARY_TABLE[b.op] = b
    for t in (() if b.as_call else (b.op,)) + b.spellings:
        INFIX[t] = b.op
    _ast.BINARY[b.op] = b.precedence
    if b.right:
        _ast.RIGHT_ASSOC.add(b.op)
    return b


def _is_number(node: Node) -> bool:
    return isinstance(node, Num) or (isinstance(node, _ast.Neg) and isinstance(node.x, Num))


def _add_shape(chk, node, sa, sb, ra, rb):
    """+ and -: conforming operands; a written number broadcasts (1 - p), nothing else does."""
    if _is_number(node.a) and not is_scalar(rb):
        return sb
    if _is_number(node.b) and not is_scalar(ra):
        return sa
    if is_scalar(ra) != is_scalar(rb):
        big, small = (node.b, node.a) if is_scalar(ra) else (node.a, node.b)
        raise chk.error(node, f"{chk.text(node)}: a scalar {node.op} a {show(chk.shape(big))} matrix; "
                              f"write {chk.text(small)}*vector(1) (or matrix(1)) to broadcast")
    return chk.conform(node, sa, sb, node.op)


def _mul_shape(chk, node, sa, sb, ra, rb):
    """*: a 1 x 1 operand multiplies as a scalar; otherwise (m x k) * (k x n)."""
    if is_scalar(ra):
        return sb
    if is_scalar(rb):
        return sa
    if not chk.unify(sa[1], sb[0]):
        raise chk.error(node, f"{chk.text(node.a)} * {chk.text(node.b)}: "
                              f"{show(ra)} * {show(rb)} do not conform")
    return (sa[0], sb[1])


def _had_shape(chk, node, sa, sb, ra, rb):
    if is_scalar(ra):
        return sb
    if is_scalar(rb):
        return sa
    return chk.conform(node, sa, sb, node.op)


def _div_shape(chk, node, sa, sb, ra, rb):
    if not is_scalar(rb):
        raise chk.error(node, f"{chk.text(node)}: / divides by a scalar only, and {chk.text(node.b)} is "
                              f"{show(rb)}; use ./ for entrywise division")
    return sa


def _pow_shape(chk, node, sa, sb, ra, rb):
    if not is_scalar(rb):
        raise chk.error(node, f"{chk.text(node)}: the exponent {chk.text(node.b)} is {show(rb)}, "
                              "not a scalar")
    if node.op == ".^" or is_scalar(ra):
        return sa
    chk.square_of(node, node.a, sa, f"{chk.text(node)}: a matrix power")
    if not (isinstance(node.b, Num) and float(node.b.value).is_integer()):
        raise chk.error(node, f"{chk.text(node)}: a matrix power needs an integer exponent "
                              "(use .^ for entrywise powers)")
    return sa


def _kron_shape(chk, node, sa, sb, ra, rb):
    dims = [chk.find(d) for d in (*ra, *rb)]
    if any(isinstance(d, Unknown) for d in dims):
        raise chk.error(node, f"{chk.text(node)}: the sizes of the factors cannot be inferred")
    return (dims[0].times(dims[2]), dims[1].times(dims[3]))


def inverse_of(node: Node) -> Node | None:
    """A where node is inv(A) or A^-1 (one inverse, two spellings), else None."""
    if isinstance(node, Call) and node.fn == "inv":
        return node.args[0]
    if isinstance(node, Bin) and node.op == "^" and isinstance(node.b, Num) and node.b.value == -1:
        return node.a
    return None


def _mul_value(ev, node, a, b):
    return a * b if ev.scalar(node.a) or ev.scalar(node.b) else a @ b


def _solve_value(ev, node):
    """inv(A)*B is solve(A, B) and B*inv(A) is solve(A^T, B^T)^T: no inverse is formed."""
    if ev.scalar(node.a) or ev.scalar(node.b):
        return None
    left, right = inverse_of(node.a), inverse_of(node.b)
    if left is not None:
        return torch.linalg.solve(ev.value(left), ev.value(node.b))
    if right is not None:
        return torch.linalg.solve(ev.value(right).mT, ev.value(node.a).mT).mT
    return None


def _pow_value(ev, node, a, b):
    if node.op == "^" and not ev.scalar(node.a):
        return torch.linalg.matrix_power(a, int(node.b.value))
    return a ** b


# the tolerance's scales
def _sum_magnitude(ev, node):
    return ev.magnitude(node.a) + ev.magnitude(node.b)


def _sum_tangent(ev, node, va, tm):
    return tm[0] + tm[1]


def _product_magnitude(ev, node):
    """|a| |b| as the product forms them; through a solve (inv(A)*B), the operands' values."""
    if inverse_of(node.a) is None and inverse_of(node.b) is None:
        return ev.apply(node, ev.magnitude(node.a), ev.magnitude(node.b))
    return ev.apply(node, ev.value(node.a).abs(), ev.value(node.b).abs())


def _product_tangent(ev, node, va, tm):
    return ev.apply(node, tm[0], va[1]) + ev.apply(node, va[0], tm[1])


def _quotient_magnitude(ev, node):
    return ev.magnitude(node.a) / ev.value(node.b).abs()


def _quotient_tangent(ev, node, va, tm):
    return tm[0] / va[1] + va[0] * tm[1] / va[1] ** 2


def _power_tangent(ev, node, va, tm):
    """A constant power: |p| |a|^(p-1) |da| (the generic jvp takes log(a): nan for a < 0)."""
    if not (node.op == ".^" or ev.scalar(node.a)) or bool(tm[1].any()):
        return None
    p = ev.value(node.b)
    return torch.where(tm[0] == 0, torch.zeros_like(tm[0]), p.abs() * va[0] ** (p - 1) * tm[0])


# the differentials (x: the deriver's expander; x.arg(u) is du, named where u is nonlinear)
def _mul_d(x, e):
    """product rule over the whole chain: d(ABC) = dA BC + A dB C + AB dC."""
    b = x.b
    fs = b.flat(e)
    x.note("*")
    return b.total([b.prod(fs[:i] + [x.arg(f)] + fs[i + 1:]) for i, f in enumerate(fs) if x.ctx.depends(f)])


def _pair_d(mk):
    def d(x, e):
        b = x.b
        x.note(e.op)
        out = []
        if x.ctx.depends(e.a):
            out.append(mk(b, x.arg(e.a), e.b))
        if x.ctx.depends(e.b):
            out.append(mk(b, e.a, x.arg(e.b)))
        return b.total(out)
    return d


def _div_d(x, e):
    b = x.b
    x.note(e.op)
    out = x.arg(e.a) if x.ctx.depends(e.a) else b.ZERO
    first = Bin(e.op, out, e.b) if out != b.ZERO else b.ZERO
    if not x.ctx.depends(e.b):
        return first
    if e.op == "./":
        return b.sub(first, b.had(Bin("./", e.a, b.had(e.b, e.b)), x.arg(e.b)))
    return b.sub(first, b.mul(Bin("/", e.a, Bin("^", e.b, Num(2.0))), x.arg(e.b)))


def _pow_d(x, e):
    from handgrad.notation.errors import DeriveError
    b = x.b
    if x.ctx.depends(e.b):
        raise DeriveError(f"{x.text(e)}: a variable in an exponent is not derived (write exp(b*log(u)))")
    p = e.b.value if isinstance(e.b, Num) else None
    if e.op == "^" and not x.ctx.scalar(e.a):
        if p == -1:  # X^-1 is inv(X): inv's rule
            x.note("inv")
            return b.neg(b.prod([e, x.arg(e.a), e]))
        if p is None or p < 1 or p != int(p):
            raise DeriveError(f"{x.text(e)}: only X^-1 and X^k, k = 1, 2, ... of a matrix are derived")
        x.note("^m")
        k, du = int(p), x.arg(e.a)

        def pw(j):
            return Num(1.0) if j == 0 else e.a if j == 1 else Bin("^", e.a, Num(float(j)))
        return b.total([b.prod([pw(j), du, pw(k - 1 - j)]) for j in range(k)])
    x.note(e.op)
    lower = Bin(e.op, e.a, Num(p - 1)) if p is not None else Bin(e.op, e.a, Bin("-", e.b, Num(1.0)))
    c = b.mul(e.b, lower)
    return b.had(c, x.arg(e.a)) if e.op == ".^" else b.mul(c, x.arg(e.a))


# printing
def _latex_frac(P, node):
    return f"\\frac{{{P.latex(node.a)}}}{{{P.latex(node.b)}}}"


def _latex_pow(P, node):
    return P.sup(node.a, ("\\circ " if node.op == ".^" else "") + P.latex(node.b))


def _latex_mul(P, node):
    a, b = P.latex_child(node.a, node, "a"), P.latex_child(node.b, node, "b")
    if b[:1].isdigit() or b[:2] == "\\f":
        return f"{a} \\cdot {b}"
    return f"{a}\\, {b}" if a.endswith("}") and "_{" in a else f"{a} {b}"  # ℓ₂ I, not ℓ₂I


def _mathml_frac(P, node):
    return P.el("mfrac", P.mathml(node.a), P.mathml(node.b))


def _mathml_pow(P, node):
    e = P.mathml(node.b)
    return P.msup(node.a, P.el("mrow", P.mo("∘"), e) if node.op == ".^" else e)


# emitted code
def _emit_mul(em, node, a, b):
    if em.scalar(node.a) or em.scalar(node.b):
        return f"({a} * {b})"
    left = inverse_of(node.a)  # inv(A)*B is solve(A, B), as evaluated
    if left is not None:
        return f"torch.linalg.solve({em.code(left)}, {b})"
    return f"({a} @ {b})"


def _emit_pow(em, node, a, b):
    if node.op == "^" and not em.scalar(node.a):
        if isinstance(node.b, Num) and node.b.value == -1:
            return f"torch.linalg.inv({a})"
        return f"torch.linalg.matrix_power({a}, {int(node.b.value)})"
    return f"({a} ** {b})"


for _b in [
    BinaryOperator("+", _ast.PREC_ADD, _add_shape, lambda ev, n, a, b: a + b, latex=" + ", mathml="+",
                   emit="({a} + {b})", magnitude=_sum_magnitude, tangent=_sum_tangent),
    BinaryOperator("-", _ast.PREC_ADD, _add_shape, lambda ev, n, a, b: a - b, latex=" - ", mathml="−",
                   emit="({a} - {b})", magnitude=_sum_magnitude, tangent=_sum_tangent),
    BinaryOperator("*", _ast.PREC_MUL, _mul_shape, _mul_value, d=_mul_d,
                   rule="product rule d(UV) = dU V + U dV",
                   latex=_latex_mul, mathml="\u2062", emit=_emit_mul,
                   magnitude=_product_magnitude, tangent=_product_tangent, value=_solve_value),
    BinaryOperator(".*", _ast.PREC_MUL, _had_shape, lambda ev, n, a, b: a * b, spellings=("⊙",),
                   d=_pair_d(lambda b, u, v: b.had(u, v)), rule="d(U ⊙ V) = dU ⊙ V + U ⊙ dV",
                   latex=" \\odot ", mathml="⊙", emit="({a} * {b})",
                   magnitude=_product_magnitude, tangent=_product_tangent),
    BinaryOperator("./", _ast.PREC_MUL, _had_shape, lambda ev, n, a, b: a / b, d=_div_d,
                   rule="d(U ⊘ V) = dU ⊘ V - (U ⊘ V ⊘ V) ⊙ dV", latex=" \\oslash ", mathml="⊘",
                   emit="({a} / {b})", magnitude=_quotient_magnitude, tangent=_quotient_tangent),
    BinaryOperator("/", _ast.PREC_MUL, _div_shape, lambda ev, n, a, b: a / b, d=_div_d,
                   rule="d(U / c) = dU / c - U dc / c^2", latex=_latex_frac, mathml=_mathml_frac,
                   emit="({a} / {b})", magnitude=_quotient_magnitude, tangent=_quotient_tangent),
    # contiguous copies: torch 2.13's CPU kron fails on a transposed input
    BinaryOperator("kron", _ast.PREC_MUL, _kron_shape,
                   lambda ev, n, a, b: torch.kron(a.contiguous(), b.contiguous()),
                   spellings=("⊗",), as_call=True,
                   d=_pair_d(lambda b, u, v: Bin("kron", u, v)), rule="d(U ⊗ V) = dU ⊗ V + U ⊗ dV",
                   latex=" \\otimes ", mathml="⊗", emit="torch.kron({a}.contiguous(), {b}.contiguous())",
                   magnitude=_product_magnitude, tangent=_product_tangent),
    BinaryOperator("^", _ast.PREC_POW, _pow_shape, _pow_value, right=True, d=_pow_d,
                   rule="d(u^p) = p u^(p-1) du", latex=_latex_pow, mathml=_mathml_pow, emit=_emit_pow,
                   tangent=_power_tangent),
    BinaryOperator(".^", _ast.PREC_POW, _pow_shape, _pow_value, right=True, d=_pow_d,
                   rule="d(U.^p) = p U.^(p-1) ⊙ dU", latex=_latex_pow, mathml=_mathml_pow, emit=_emit_pow,
                   tangent=_power_tangent),
]:
    register_binary(_b)
del _b


__all__ = ["BINARY_TABLE", "CONST", "ELEMENTWISE", "INFIX", "LINEAR", "MATRIX", "BinaryOperator", "Operator",
           "Rule", "SPELLINGS", "TABLE", "inverse_of", "of", "register", "register_binary", "unregister"]
