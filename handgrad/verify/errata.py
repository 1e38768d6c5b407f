"""The notes' known-wrong statements, each beside its correction, both checked.

The notes teach the differential method well but contain mistakes.  Each
:class:`Erratum` keeps the notes' statement (read literally, in the layout the notes use
around it) and the corrected one.  Both go through the same check as the identity
catalog: written in the notation, as claims (handgrad.notation.claims), so both texts are
printed from the parsed trees that are checked; the wrong one is rejected by dimension
analysis (naming the product that does not conform), by value, or, for a claimed
minimiser, by its gradient, curvature or domain.  The wrong statement must be rejected
with a reason and the correction accepted.  Inputs are random, non-symmetric, and
non-square where a square matrix would hide the mistake; two entries (E5, E10) use square
matrices on purpose, to show that a wrong transpose is still caught there, by value.

The notes, four parts (handgrad cites them as "notes part 1" to "part 4"): 000 (矩阵向量求导, notes after Liu Jianping and 长躯鬼侠), 001 (矩阵的求导, CSDN),
002 (标量函数矩阵求导方法), 003 (梯度计算中常用的矩阵微积分公式).
"""

from __future__ import annotations

from dataclasses import dataclass

from handgrad.notation.claims import Claim


@dataclass(frozen=True)
class Erratum:
    """The notes' statement and its correction, written in the notation (``wrong_claims``,
    ``right_claims``): the texts are printed from the parsed claims and checked by
    handgrad.notation.claims."""

    key: str
    where: str  # the notes' file number and section ("002 §6 example 4"; notes_part() names it)
    kind: str  # "wrong formula" | "wrong label" | "wrong layout" | "typesetting" | "unstated assumption"
    wrong_text: str
    wrong_latex: str
    right_text: str
    right_latex: str
    layout: str
    note: str  # what goes wrong, in a sentence
    reference: str  # what both are checked against
    wrong_claims: tuple = ()
    right_claims: tuple = ()


def written(key, where, kind, wrong, right, layout, note, reference, *, wrong_note="",
            right_note="") -> Erratum:
    """An erratum written in the notation: both texts printed from the parsed claims (a
    note, free text, in parentheses after them)."""
    from handgrad.notation.claims import Parsed

    def text(claims, extra):
        body = ";  ".join(Parsed(c).text() for c in claims)
        return body + (f"   ({extra})" if extra else "")

    def latex(claims):
        return ",\\qquad ".join(Parsed(c).latex() for c in claims)
    wrong, right = tuple(wrong), tuple(right)
    return Erratum(key, where, kind, text(wrong, wrong_note), latex(wrong), text(right, right_note),
                   latex(right), layout, note, reference, wrong, right)


_LS = "X: 7 x d; y: 7; w: d"
_COV = "X: 9 x d; Sigma: d x d spd; one = vector(1); N = one'*one; C = X - one*one'*X/N"
_COV_F = "logdet(Sigma) + tr(inv(Sigma)*C'*C)/N"
_AXJ = "A: m x n; x: n; e: 1 x n onehot; t: scalar"
_ARGMIN = "torch.func.grad (0 at a minimiser) and torch.func.hessian (positive curvature)"
_ONEHOT = "Y = y' one-hot (1 x K)"
_TWO_LAYER = "W1: h x d; W2: K x h; x: d; Y: 1 x K onehot"
_TWO_LAYER_LOSS = "-Y*log(softmax(W2*sigma(W1*x)))"
_TWO_LAYER_W1 = "((W2'*(softmax(W2*sigma(W1*x)) - Y')) .* sigma(W1*x) .* (vector(1) - sigma(W1*x)))*x'"
_TRYMY = "W: p x m; X: m x n; M: p x p sym"
_TRYMY_F = "tr(sigma(W*X)'*M*sigma(W*X))"
_TRYMY_G = "(2*M*sigma(W*X)) .* sigma(W*X) .* (matrix(1) - sigma(W*X))"

ERRATA: list[Erratum] = [
    written(
        "E1_least_squares_solution", "002 §6 example 4", "wrong formula",
        [Claim(_LS, "argmin", "norm2(X*w - y)^2", "inv(X*X')*X'*y", "w")],
        [Claim(_LS, "argmin", "norm2(X*w - y)^2", "inv(X'*X)*X'*y", "w")],
        "none (a solution, d x 1)",
        "X X^T is n x n (and rank d < n, singular) while X^T y has d entries: the product is "
        "undefined for n != d; for square invertible X it gives X^-T X^-1 X^T y, not X^-1 y",
        _ARGMIN, wrong_note="w = (X X^T)^-1 X^T y, the notes' formula",
        right_note="solve the normal equations; handgrad's fit uses QR"),
    written(
        "E2_covariance_mle_sum_dropped", "002 §6 example 5", "wrong formula",
        [Claim(_COV + "; e: 1 x 9 onehot", "argmin", _COV_F, "(e*C)'*(e*C)/N", "Sigma")],
        [Claim(_COV, "argmin", _COV_F, "C'*C/N", "Sigma")],
        "none (a d x d matrix)",
        "without the sum the right side depends on a free index i and is a rank-1 (singular) "
        "matrix, so log|Sigma| = -inf: it cannot be the maximiser",
        _ARGMIN, wrong_note="(1/N)(x_i - xbar)(x_i - xbar)', the sum over i dropped; e*C is the row c_i'",
        right_note="(1/N) sum_i (x_i - xbar)(x_i - xbar)' = C'C/N"),
    written(
        "E3_two_layer_W1_labelled_W2", "002 §6 example 7, second bullet", "wrong label",
        [Claim(_TWO_LAYER, "grad", _TWO_LAYER_LOSS, _TWO_LAYER_W1, "W2")],
        [Claim(_TWO_LAYER, "grad", _TWO_LAYER_LOSS, _TWO_LAYER_W1, "W1"),
         Claim(_TWO_LAYER, "grad", _TWO_LAYER_LOSS, "(softmax(W2*sigma(W1*x)) - Y')*sigma(W1*x)'", "W2")],
        "denominator (each gradient has its weight's shape)",
        "the formula differentiates through W1 (it ends in x^T and has W1's shape h x d); "
        "the derivation two lines above takes dW1, so the label should be dl/dW1",
        "torch.func.grad of the two-layer loss", wrong_note=_ONEHOT, right_note=_ONEHOT),
    written(
        "E4_dAx_dxj", "000 §6.1, step 2", "wrong formula",
        [Claim(_AXJ, "d", "A*(x + t*e')", "A*dt", "t")], [Claim(_AXJ, "d", "A*(x + t*e')", "A*e'*dt", "t")],
        "numerator (vector by scalar: a column)",
        "a derivative by one scalar x_j is a vector (column j of A); the whole matrix A is the "
        "derivative by the vector x, which is what step 1 set out to assemble",
        "torch.func.jvp", wrong_note="d(Ax)/dx_j = A; x_j moved by t, e = e_j' one-hot",
        right_note="d(Ax)/dx_j = A e_j = A[:, j], column j"),
    written(
        "E5_dAx_dx_AT_as_jacobian", "003 (vector by vector)", "wrong layout",
        [Claim("A: n x n; x: n", "jac", "A*x", "A'", "x")],
        [Claim("A: n x n; x: n", "jac", "A*x", "A", "x"), Claim("A: n x n; x: n", "jacT", "A*x", "A'", "x")],
        "numerator: Jacobian m x n, as torch.func.jacrev",
        "notes part 4 never names its layout; its scalar-by-vector results are columns, so A^T is "
        "right in denominator layout and wrong as a Jacobian.  Its A is n x n, which hides "
        "the difference in shape but not in value for non-symmetric A",
        "torch.func.jacrev", wrong_note="A^T read as the Jacobian: notes part 1's default for vector by vector"),
    written(
        "E6_chain_rule_order_003", "003 (composite function, step 3)", "wrong layout",
        [Claim("A: m x n; b: m; x: n", "grad", "norm2(b - A*x)^2", "-2*(b - A*x)*A", "x")],
        [Claim("A: m x n; b: m; x: n", "grad", "norm2(b - A*x)^2", "(-A)'*(2*(b - A*x))", "x")],
        "denominator gradients, numerator Jacobian (notes part 1 §4.4)",
        "notes part 4 mixes layouts: du/dx = -A is a Jacobian (numerator) while dg/du = 2u is a "
        "column (denominator), so 2u . (-A) is (m x 1)(m x n), undefined; its final answer "
        "-2A^T(b - Ax) is right only after silently transposing",
        "torch.func.grad", wrong_note="dg/du . du/dx = 2u . (-A) = -2 u A, u = b - A x",
        right_note="(du/dx)^T dg/du = -2 A^T (b - A x)"),
    written(
        "E7_trYMY_extra_transpose", "002 §6 example 3, last two lines", "wrong formula",
        [Claim(_TRYMY, "grad", _TRYMY_F, f"W'*({_TRYMY_G})'", "X")],
        [Claim(_TRYMY, "grad", _TRYMY_F, f"W'*({_TRYMY_G})", "X")],
        "denominator (the gradient has X's shape m x n)",
        "tr((G)^T W dX) = tr((W^T G)^T dX) reads off W^T G; the notes transpose G again, which "
        "has the wrong shape unless X is square",
        "torch.func.grad", wrong_note="Y = sigma(W X), M symmetric", right_note="Y = sigma(W X), M symmetric"),
    written(
        "E8_gradient_relation_no_transpose", "002 §2.1", "wrong formula",
        [Claim("A: m x n; x: n", "d", "sum(sin(A*x))", "(A'*cos(A*x))*dx", "x")],
        [Claim("A: m x n; x: n", "d", "sum(sin(A*x))", "(A'*cos(A*x))'*dx", "x")],
        "denominator (df/dx is n x 1, as notes part 3 §1 defines it)",
        "with df/dx a column (notes part 3 defines the derivative with X's shape) the product of two "
        "n x 1 columns is undefined; the inner product needs the transpose (notes part 3 §2.2 has it)",
        "torch.func.jvp", wrong_note="df = (df/dx) dx, df/dx = A' cos(A x) the column gradient",
        right_note="df = (df/dx)^T dx"),
    written(
        "E9_kron_symbol_for_hadamard", "002 §3 item 4, §4.1 item 5, §6", "typesetting",
        [Claim("A: m x n; B: m x n; C: m x n", "equal", "tr(A'*kron(B, C))", "tr(kron(A, B)'*C)")],
        [Claim("A: m x n; B: m x n; C: m x n", "equal", "tr(A'*(B .* C))", "tr((A .* B)'*C)"),
         Claim("A: m x n; B: m x n; C: m x n", "equal", "tr(A'*(B .* C))", "sum(A .* B .* C)")],
        "none (scalars)",
        "notes part 3 writes ⊗ for the elementwise product while notes part 1 uses ⊗ for Kronecker; read "
        "as Kronecker, B ⊗ C is m^2 x n^2 and A^T (B ⊗ C) is undefined",
        "both sides evaluated", wrong_note="⊗ read as the Kronecker product, notes part 1's meaning",
        right_note=".* the elementwise product"),
    written(
        "E10_derivative_of_transpose", "001 §8.1", "wrong formula",
        [Claim("X: n x n", "d", "X'", "dX")], [Claim("X: n x n", "d", "X'", "dX'")],
        "none (a differential, X's transposed shape)",
        "transposing moves the values; for non-square X the shapes differ, and for square "
        "non-symmetric X (as here) the entries do",
        "torch.func.jvp",
        wrong_note="'the derivative of the transpose is the derivative, since transposing does not change values'"),
    written(
        "E11_softmax_needs_one_hot", "002 §6 example 6", "unstated assumption",
        [Claim("W: K x d; x: d; y: K", "grad", "-y'*log(softmax(W*x))", "(softmax(W*x) - y)*x'", "W")],
        [Claim("W: K x d; x: d; y: K", "grad", "-y'*log(softmax(W*x))",
               "((vector(1)'*y)*softmax(W*x) - y)*x'", "W")],
        "denominator (W's shape k x d)",
        "the step -y^T 1 log(1^T exp(Wx)) -> log(1^T exp(Wx)) uses 1^T y = 1 (one-hot or a "
        "distribution) without saying so; for counts y it is wrong",
        "torch.func.grad", wrong_note="for any y", right_note="= (softmax(W x) - y) x' when 1' y = 1"),
    written(
        "E12_determinant_bars_lost", "000 §5.3 (table, determinant row)", "typesetting",
        [Claim("X: n x n invertible", "d", "X", "tr(adj(X)*dX)")],
        [Claim("X: n x n invertible", "d", "det(X)", "tr(adj(X)*dX)")],
        "none (a scalar differential)",
        "as printed the left side is the matrix dX and the right side a scalar",
        "torch.func.jvp", wrong_note="as printed: the bars of |X| are lost",
        right_note="X^# = adj(X), from cofactors"),
]
