"""The notes' known-wrong statements, each beside its correction, both checked.

The source documents (/work/shared/seeds, see DESIGN.md) teach the differential method
well but contain mistakes.  Each :class:`Erratum` keeps the notes' statement exactly as
written (read literally, in the layout the notes use around it) and the corrected one.
Both go through the same check as the identity catalog (handgrad.verify.steps.compare against
torch.func or an independent computation): the wrong statement must be rejected with a
reason (a shape mismatch, or the worst entry with both values) and the correction
accepted.  Inputs are random, non-symmetric, and non-square where a square matrix would
hide the mistake; two entries (E5, E10) use square matrices on purpose, to show that a
wrong transpose is still caught there, by value.

The notes, four parts (handgrad cites them as "notes part 1" to "part 4"): 000 (矩阵向量求导, notes after Liu Jianping and 长躯鬼侠), 001 (矩阵的求导, CSDN),
002 (标量函数矩阵求导方法), 003 (梯度计算中常用的矩阵微积分公式).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from handgrad.verify.identities import (
    F64,
    adjugate,
    dsigmoid,
    grad,
    invertible,
    jvp,
    kron,
    one_hot,
    rn,
    sample_cov,
    softmax,
)


class ShapeError(ValueError):
    """A claim that cannot even be formed: its factors' shapes do not fit."""


@dataclass(frozen=True)
class Erratum:
    key: str
    seed: str  # which seed file and where
    kind: str  # "wrong formula" | "wrong label" | "wrong layout" | "typesetting" | "unstated assumption"
    wrong_text: str
    wrong_latex: str
    right_text: str
    right_latex: str
    layout: str
    note: str  # what goes wrong, in a sentence
    reference: str  # what both are checked against
    check_wrong: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    check_right: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def mm(a: tuple[str, torch.Tensor], b: tuple[str, torch.Tensor]) -> torch.Tensor:
    """Matrix product with a named shape check (1-D tensors are columns), as written on paper."""
    (na, A), (nb, B) = a, b
    A2 = A.reshape(-1, 1) if A.dim() == 1 else A
    B2 = B.reshape(-1, 1) if B.dim() == 1 else B
    if A2.shape[1] != B2.shape[0]:
        raise ShapeError(f"{na} is {A2.shape[0]} x {A2.shape[1]} but {nb} is "
                         f"{B2.shape[0]} x {B2.shape[1]}: the product is undefined")
    return A2 @ B2


# ---------------------------------------------------------------- E1 least-squares solution

def ls_wrong(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Notes part 3's w = (X X^T)^-1 X^T y, literally."""
    XXt = X @ X.T
    Xty = X.T @ y
    mm(("(X X^T)^-1", XXt), ("X^T y", Xty))  # fails for n != d before any inverse is taken
    return torch.linalg.solve(XXt, Xty)


def ls_right(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.solve(X.T @ X, X.T @ y)


def ls_truth(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.lstsq(X, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)


def _ls(claim):
    def check(g):
        X, y = rn(g, 7, 3), rn(g, 7)
        return claim(X, y), ls_truth(X, y)
    return check


# ---------------------------------------------------------------- E2 covariance MLE

def _cov(sum_dropped: bool):
    def check(g):
        Xs = rn(g, 9, 3) @ rn(g, 3, 3)
        xbar = Xs.mean(0)
        if sum_dropped:  # (1/N)(x_i - xbar)(x_i - xbar)^T has a free index i: read at i = 1
            claim = torch.outer(Xs[0] - xbar, Xs[0] - xbar) / len(Xs)
        else:
            claim = sample_cov(Xs)
        return claim, torch.cov(Xs.T, correction=0)
    return check


# ---------------------------------------------------------------- E3 two-layer label

def _two_layer(label_as_w2: bool):
    def check(g):
        W1, W2, x, y = rn(g, 5, 3), rn(g, 4, 5), rn(g, 3), one_hot(g, 4)

        def loss(A, B):
            return -(y * torch.log_softmax(B @ torch.sigmoid(A @ x), 0)).sum()
        e = softmax(W2 @ torch.sigmoid(W1 @ x)) - y
        claim = torch.outer((W2.T @ e) * dsigmoid(W1 @ x), x)  # the notes' formula (5 x 3)
        g1, g2 = torch.func.grad(loss, argnums=(0, 1))(W1, W2)
        return claim, (g2 if label_as_w2 else g1)
    return check


# ---------------------------------------------------------------- E4 dAx/dx_j

def _dax_dxj(wrong: bool):
    def check(g):
        A, x = rn(g, 5, 3), rn(g, 3)
        j = 2
        e = torch.zeros(3, dtype=F64)
        e[j] = 1.0
        return (A if wrong else A[:, j]), jvp(lambda v: A @ v, (x,), (e,))
    return check


# ---------------------------------------------------------------- E5 d(Ax)/dx = A^T as a Jacobian

def _dax_numerator(wrong: bool):
    def check(g):
        A, x = rn(g, 4, 4), rn(g, 4)  # the notes' A is n x n; non-symmetric
        return (A.T if wrong else A), torch.func.jacrev(lambda v: A @ v)(x)
    return check


# ---------------------------------------------------------------- E6 notes part 4's chain rule product

def _chain_003(wrong: bool):
    def check(g):
        A, b, x = rn(g, 5, 3), rn(g, 5), rn(g, 3)
        u = b - A @ x
        truth = grad(lambda v: (b - A @ v) @ (b - A @ v), x)
        if wrong:  # dg/du . du/dx = 2u . (-A) with 2u the column dg/du
            return mm(("dg/du = 2u", 2 * u), ("du/dx = -A", -A)).reshape(-1), truth
        return (-A).T @ (2 * u), truth
    return check


# ---------------------------------------------------------------- E7 tr(Y^T M Y) extra transpose

def _trymy(wrong: bool):
    def check(g):
        W, X, B = rn(g, 3, 4), rn(g, 4, 5), rn(g, 3, 3)
        M = B + B.T
        Z = W @ X
        inner = (2 * M @ torch.sigmoid(Z)) * dsigmoid(Z)  # p x n = 3 x 5
        truth = grad(lambda V: torch.trace(torch.sigmoid(W @ V).T @ M @ torch.sigmoid(W @ V)), X)
        if wrong:
            return mm(("W^T", W.T), ("(2M sigma(WX) o sigma'(WX))^T", inner.T)), truth
        return W.T @ inner, truth
    return check


# ---------------------------------------------------------------- E8 df = (df/dx) dx

def _df_dx(wrong: bool):
    def check(g):
        A, x, dx = rn(g, 4, 3), rn(g, 3), rn(g, 3)

        def f(v):
            return torch.sin(A @ v).sum()
        gcol = A.T @ torch.cos(A @ x)  # df/dx, a column (denominator layout)
        truth = jvp(f, (x,), (dx,))
        if wrong:
            return mm(("df/dx", gcol), ("dx", dx)).reshape(()), truth
        return gcol @ dx, truth
    return check


# ---------------------------------------------------------------- E9 ⊗ for the elementwise product

def _kron_for_hadamard(wrong: bool):
    def check(g):
        A, B, C = rn(g, 3, 4), rn(g, 3, 4), rn(g, 3, 4)
        truth = (A * B * C).sum()  # sum_ij A_ij B_ij C_ij, what both sides must equal
        if wrong:  # notes part 1 uses ⊗ for Kronecker; read that way the left side is undefined
            return torch.trace(mm(("A^T", A.T), ("B kron C", kron(B, C)))), truth
        return torch.trace(A.T @ (B * C)), truth
    return check


# ---------------------------------------------------------------- E10 derivative of a transpose

def _transpose(wrong: bool):
    def check(g):
        X, dX = rn(g, 4, 4), rn(g, 4, 4)  # square, so only the values can tell
        return (dX if wrong else dX.T), jvp(lambda Z: Z.T, (X,), (dX,))
    return check


# ---------------------------------------------------------------- E11 softmax with 1^T y != 1

def _softmax_counts(wrong: bool):
    def check(g):
        W, x = rn(g, 4, 3), rn(g, 3)
        y = torch.tensor([2.0, 0.0, 1.0, 0.0], dtype=F64)  # counts: 1^T y = 3
        s = softmax(W @ x)
        truth = grad(lambda V: -(y * torch.log_softmax(V @ x, 0)).sum(), W)
        if wrong:
            return torch.outer(s - y, x), truth
        return torch.outer(y.sum() * s - y, x), truth
    return check


# ---------------------------------------------------------------- E12 d X = tr(X^# dX)

def _det_bars(wrong: bool):
    def check(g):
        X, dX = invertible(g, 4), rn(g, 4, 4)
        rhs = torch.trace(adjugate(X) @ dX)
        if wrong:  # read as written: the differential of X itself equals the scalar
            return rhs, jvp(lambda Z: Z, (X,), (dX,))
        return rhs, jvp(torch.linalg.det, (X,), (dX,))
    return check


ERRATA: list[Erratum] = [
    Erratum(
        "E1_least_squares_solution", "002 §6 example 4", "wrong formula",
        "w = (X X^T)^-1 X^T y", r"w = (XX^T)^{-1}X^T y",
        "w = (X^T X)^-1 X^T y   (solve the normal equations; handgrad uses QR)",
        r"w = (X^TX)^{-1}X^T y", "none (a solution, d x 1)",
        "X X^T is n x n (and rank d < n, singular) while X^T y has d entries: the product is "
        "undefined for n != d; for square invertible X it gives X^-T X^-1 X^T y, not X^-1 y",
        "torch.linalg.lstsq (SVD-based least squares)", _ls(ls_wrong), _ls(ls_right)),
    Erratum(
        "E2_covariance_mle_sum_dropped", "002 §6 example 5", "wrong formula",
        "Sigma = (1/N) (x_i - xbar)(x_i - xbar)^T   (the sum over i dropped; read at i = 1)",
        r"\Sigma = \frac{1}{N}(x_i - \bar x)(x_i - \bar x)^T",
        "Sigma = (1/N) sum_i (x_i - xbar)(x_i - xbar)^T",
        r"\Sigma = \frac{1}{N}\sum_{i=1}^N (x_i - \bar x)(x_i - \bar x)^T", "none (a d x d matrix)",
        "without the sum the right side depends on a free index i and is a rank-1 (singular) "
        "matrix, so log|Sigma| = -inf: it cannot be the maximiser",
        "torch.cov(X^T, correction=0)", _cov(True), _cov(False)),
    Erratum(
        "E3_two_layer_W1_labelled_W2", "002 §6 example 7, second bullet", "wrong label",
        "dl/dW2 = ((W2^T (softmax(a) - y)) o sigma'(W1 x)) x^T",
        r"\frac{\partial l}{\partial W_2} = \big((W_2^T(\operatorname{softmax}(a) - y)) \odot \sigma'(W_1x)\big)\,x^T",
        "dl/dW1 = ((W2^T (softmax(a) - y)) o sigma'(W1 x)) x^T;  dl/dW2 = (softmax(a) - y) sigma(W1 x)^T",
        r"\frac{\partial l}{\partial W_1} = \big((W_2^T(\operatorname{softmax}(a) - y)) \odot \sigma'(W_1x)\big)\,x^T",
        "denominator (each gradient has its weight's shape)",
        "the formula differentiates through W1 (it ends in x^T and has W1's shape h x d); "
        "the derivation two lines above takes dW1, so the label should be dl/dW1",
        "torch.func.grad of the two-layer loss", _two_layer(True), _two_layer(False)),
    Erratum(
        "E4_dAx_dxj", "000 §6.1, step 2", "wrong formula",
        "d(Ax)/dx_j = A", r"\frac{\partial Ax}{\partial x_j} = A",
        "d(Ax)/dx_j = A[:, j] (column j); d(Ax)/dx = A (numerator layout, all columns)",
        r"\frac{\partial Ax}{\partial x_j} = A_{:,j},\qquad \frac{\partial Ax}{\partial x} = A",
        "numerator (vector by scalar: a column)",
        "a derivative by one scalar x_j is a vector (column j of A); the whole matrix A is the "
        "derivative by the vector x, which is what step 1 set out to assemble",
        "torch.func.jvp along e_j", _dax_dxj(True), _dax_dxj(False)),
    Erratum(
        "E5_dAx_dx_AT_as_jacobian", "003 (vector by vector)", "wrong layout",
        "d(Ax)/dx = A^T, read as the Jacobian (numerator layout, notes part 1's default for vector by vector)",
        r"\frac{\partial (Ax)}{\partial x} = A^T",
        "d(Ax)/dx = A in numerator layout (m x n Jacobian); A^T is the denominator-layout "
        "gradient matrix (n x m), which notes part 4 uses without saying so",
        r"\frac{\partial (Ax)}{\partial x} = A \ (\text{numerator}),\qquad A^T \ (\text{denominator})",
        "numerator: Jacobian m x n, as torch.func.jacrev",
        "notes part 4 never names its layout; its scalar-by-vector results are columns, so A^T is "
        "right in denominator layout and wrong as a Jacobian.  Its A is n x n, which hides "
        "the difference in shape but not in value for non-symmetric A",
        "torch.func.jacrev", _dax_numerator(True), _dax_numerator(False)),
    Erratum(
        "E6_chain_rule_order_003", "003 (composite function, step 3)", "wrong layout",
        "d g(u(x))/dx = dg/du . du/dx = 2u . (-A)   (2u the column gradient, -A the Jacobian)",
        r"\frac{\partial g}{\partial x} = \frac{\partial g}{\partial u}\cdot\frac{\partial u}{\partial x} = 2u\cdot(-A)",
        "dg/dx = (du/dx)^T dg/du = (-A)^T 2u = -2 A^T (b - Ax)",
        r"\frac{\partial g}{\partial x} = \Big(\frac{\partial u}{\partial x}\Big)^T \frac{\partial g}{\partial u} = -2A^T(b - Ax)",
        "denominator gradients, numerator Jacobian (notes part 1 §4.4)",
        "notes part 4 mixes layouts: du/dx = -A is a Jacobian (numerator) while dg/du = 2u is a "
        "column (denominator), so 2u . (-A) is (m x 1)(m x n), undefined; its final answer "
        "-2A^T(b - Ax) is right only after silently transposing",
        "torch.func.grad", _chain_003(True), _chain_003(False)),
    Erratum(
        "E7_trYMY_extra_transpose", "002 §6 example 3, last two lines", "wrong formula",
        "d tr(Y^T M Y)/dX = W^T (2M sigma(WX) o sigma'(WX))^T",
        r"\frac{\partial f}{\partial X} = W^T\big(2M\sigma(WX) \odot \sigma'(WX)\big)^T",
        "d tr(Y^T M Y)/dX = W^T (2M sigma(WX) o sigma'(WX))",
        r"\frac{\partial f}{\partial X} = W^T\big(2M\sigma(WX) \odot \sigma'(WX)\big)",
        "denominator (the gradient has X's shape m x n)",
        "tr((G)^T W dX) = tr((W^T G)^T dX) reads off W^T G; the notes transpose G again, which "
        "has the wrong shape unless X is square",
        "torch.func.grad", _trymy(True), _trymy(False)),
    Erratum(
        "E8_gradient_relation_no_transpose", "002 §2.1", "wrong formula",
        "df = sum_i (df/dx_i) dx_i = (df/dx) dx   (df/dx the column gradient)",
        r"df = \frac{\partial f}{\partial x}\, dx",
        "df = (df/dx)^T dx", r"df = \Big(\frac{\partial f}{\partial x}\Big)^T dx",
        "denominator (df/dx is n x 1, as 002 §1 defines it)",
        "with df/dx a column (002 defines the derivative with X's shape) the product of two "
        "n x 1 columns is undefined; the inner product needs the transpose (002 §2.2 has it)",
        "torch.func.jvp", _df_dx(True), _df_dx(False)),
    Erratum(
        "E9_kron_symbol_for_hadamard", "002 §3 item 4, §4.1 item 5, §6", "typesetting",
        "tr(A^T (B ⊗ C)) = tr((A ⊗ B)^T C) with ⊗ read as the Kronecker product (notes part 1's meaning)",
        r"\operatorname{tr}\big(A^T(B \otimes C)\big) = \operatorname{tr}\big((A \otimes B)^T C\big)",
        "tr(A^T (B o C)) = tr((A o B)^T C) = sum_ij A_ij B_ij C_ij   (o: elementwise product)",
        r"\operatorname{tr}\big(A^T(B \odot C)\big) = \operatorname{tr}\big((A \odot B)^T C\big)",
        "none (scalars)",
        "notes part 3 writes ⊗ for the elementwise product while notes part 1 uses ⊗ for Kronecker; read "
        "as Kronecker, B ⊗ C is 9 x 16 and A^T (B ⊗ C) is undefined",
        "sum_ij A_ij B_ij C_ij", _kron_for_hadamard(True), _kron_for_hadamard(False)),
    Erratum(
        "E10_derivative_of_transpose", "001 §8.1", "wrong formula",
        "d(X^T) = dX   ('the derivative of the transpose is the derivative, since transposing does not change values')",
        r"d(X^T) = dX",
        "d(X^T) = (dX)^T", r"d(X^T) = (dX)^T", "none (a differential, X's transposed shape)",
        "transposing moves the values; for non-square X the shapes differ, and for square "
        "non-symmetric X the entries do",
        "torch.func.jvp", _transpose(True), _transpose(False)),
    Erratum(
        "E11_softmax_needs_one_hot", "002 §6 example 6", "unstated assumption",
        "d(-y^T log softmax(Wx))/dW = (softmax(Wx) - y) x^T for any y",
        r"\frac{\partial l}{\partial W} = (\operatorname{softmax}(Wx) - y)\,x^T",
        "d(-y^T log softmax(Wx))/dW = ((1^T y) softmax(Wx) - y) x^T; = (softmax(Wx) - y) x^T when 1^T y = 1",
        r"\frac{\partial l}{\partial W} = \big((\mathbf{1}^T y)\operatorname{softmax}(Wx) - y\big)\,x^T",
        "denominator (W's shape k x d)",
        "the step -y^T 1 log(1^T exp(Wx)) -> log(1^T exp(Wx)) uses 1^T y = 1 (one-hot or a "
        "distribution) without saying so; for counts y it is wrong",
        "torch.func.grad", _softmax_counts(True), _softmax_counts(False)),
    Erratum(
        "E12_determinant_bars_lost", "000 §5.3 (table, determinant row)", "typesetting",
        "d X = tr(X^# dX)   (as printed: the bars of |X| are lost)", r"d X = \operatorname{tr}(X^{\#} dX)",
        "d|X| = tr(X^# dX),  X^# = adj(X)", r"d|X| = \operatorname{tr}(X^{\#} dX)",
        "none (a scalar differential)",
        "as printed the left side is the matrix dX and the right side a scalar",
        "torch.func.jvp", _det_bars(True), _det_bars(False)),
]
