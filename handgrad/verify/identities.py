"""The matrix-calculus catalog the notes teach, each entry checked numerically.

Every entry states a formula (plain text and LaTeX), the layout it is written in, and a
check: a function of a seeded torch.Generator returning (claimed, truth), where the claim
is the formula evaluated by hand and the truth comes from torch.func (jvp for
differentials, grad for scalar-by-matrix results, jacrev for Jacobians and
matrix-by-matrix derivatives) or, for algebraic identities, from evaluating the other
side directly.  Inputs are random, non-symmetric and (where it matters) non-square: a
symmetric or square test matrix hides a missing transpose.

Layouts (DESIGN.md, and the notes part 1 section 2 table):

* scalar by vector / matrix: denominator layout, the gradient has the shape of the
  variable (n x 1 for x, m x n for X), as torch.func.grad returns;
* vector by vector: numerator layout, the Jacobian dy/dx is m x n (y has m entries,
  x has n), as torch.func.jacrev returns; the denominator layout is its transpose;
* matrix by matrix (notes part 1 section 7): dF/dX = d vec(F) / d vec(X) with vec stacking
  columns, in denominator layout an mn x pq matrix (X is m x n, F is p x q), so that
  vec(dF) = (dF/dX)^T vec(dX); jacrev of vec(F) gives the pq x mn numerator form.

References for the notes: 000 (sections 5.3 differential rules, 5.4 trace tricks, 5.6
worked examples, 6 vector-by-vector, 7 matrix-by-matrix), 002 (sections 3-6), 003.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

F64 = torch.float64

DENOM = "denominator: the gradient has the shape of the variable"
NUMER = "numerator: Jacobian dy/dx is m x n (rows follow y), as torch.func.jacrev"
MATMAT = "denominator, via vec: dF/dX is mn x pq (X m x n, F p x q), vec(dF) = (dF/dX)^T vec(dX)"
NONE = "none: an equality of matrices (no derivative is laid out)"
DIFF = "none: an equality of differentials (same shape as the function's value)"

GROUPS = ("differential rules", "trace tricks", "worked results", "chain rules", "layouts",
          "vec and Kronecker")


@dataclass(frozen=True)
class Identity:
    key: str
    group: str
    text: str
    latex: str
    layout: str
    reference: str  # what the claim is checked against
    check: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]  # -> (claimed, truth)
    source: str = ""  # where the notes state it


# ---------------------------------------------------------------- helpers (no autograd in claims)

def rn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=F64)


def invertible(g: torch.Generator, n: int) -> torch.Tensor:
    """Random non-symmetric, well-conditioned n x n matrix."""
    return rn(g, n, n) + n * torch.eye(n, dtype=F64)


def spd(g: torch.Generator, n: int) -> torch.Tensor:
    B = rn(g, n, n)
    return B @ B.T / n + torch.eye(n, dtype=F64)


def kron(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Kronecker product A kron B = [A_ij B] (torch.kron on contiguous copies)."""
    return torch.kron(A.contiguous(), B.contiguous())


def vec(X: torch.Tensor) -> torch.Tensor:
    """Stack the columns (column-major), as the notes' vec."""
    return X.mT.reshape(-1)


def unvec(v: torch.Tensor, m: int, n: int) -> torch.Tensor:
    return v.reshape(n, m).mT


def commutation(m: int, n: int) -> torch.Tensor:
    """K_mn (mn x mn) with K_mn vec(A) = vec(A^T) for A m x n, built from its definition."""
    K = torch.zeros(m * n, m * n, dtype=F64)
    for i in range(m):
        for j in range(n):
            K[j + i * n, i + j * m] = 1.0  # vec(A^T)[j + i n] = A[i, j] = vec(A)[i + j m]
    return K


def adjugate(X: torch.Tensor) -> torch.Tensor:
    """adj(X) = transpose of the cofactor matrix, from minors (never from X^-1)."""
    n = X.shape[0]
    C = torch.empty_like(X)
    for i in range(n):
        for j in range(n):
            rows = [r for r in range(n) if r != i]
            cols = [c for c in range(n) if c != j]
            C[i, j] = (-1) ** (i + j) * torch.linalg.det(X[rows][:, cols])
    return C.T


def vec_jacobian(F: Callable, X: torch.Tensor) -> torch.Tensor:
    """Numerator form d vec(F) / d vec(X) (pq x mn) from torch.func.jacrev."""
    m, n = X.shape
    return torch.func.jacrev(lambda v: vec(F(unvec(v, m, n))))(vec(X))


def jvp(f: Callable, primals: tuple, tangents: tuple) -> torch.Tensor:
    return torch.func.jvp(f, primals, tangents)[1]


def grad(f: Callable, x: torch.Tensor) -> torch.Tensor:
    return torch.func.grad(f)(x)


def dsigmoid(z: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(z) * torch.sigmoid(-z)


def softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z - z.max())
    return e / e.sum()


def one_hot(g: torch.Generator, k: int) -> torch.Tensor:
    y = torch.zeros(k, dtype=F64)
    y[int(torch.randint(k, (1,), generator=g))] = 1.0
    return y


def gaussian_nll(Sigma: torch.Tensor, Xs: torch.Tensor) -> torch.Tensor:
    """The notes' l(Sigma) = log|Sigma| + (1/N) sum_i (x_i - xbar)^T Sigma^-1 (x_i - xbar)."""
    R = Xs - Xs.mean(0)
    return torch.linalg.slogdet(Sigma)[1] + (R * torch.linalg.solve(Sigma, R.T).T).sum() / len(Xs)


def sample_cov(Xs: torch.Tensor) -> torch.Tensor:
    """(1/N) sum_i (x_i - xbar)(x_i - xbar)^T, written as the notes' sum."""
    xbar = Xs.mean(0)
    return sum(torch.outer(x - xbar, x - xbar) for x in Xs) / len(Xs)


# ---------------------------------------------------------------- the catalog

def _differential_rules() -> list[Identity]:
    G = "differential rules"
    out = []

    def add(key, text, latex, check, source="notes part 1 §5.3; notes part 3 §3"):
        out.append(Identity(key, G, text, latex, DIFF, "torch.func.jvp", check, source))

    def plus_minus(g):
        X, Y, dX, dY = rn(g, 3, 4), rn(g, 3, 4), rn(g, 3, 4), rn(g, 3, 4)
        truth = jvp(lambda A, B: torch.stack([A + B, A - B]), (X, Y), (dX, dY))
        return torch.stack([dX + dY, dX - dY]), truth
    add("d_sum", "d(X +- Y) = dX +- dY", r"d(X \pm Y) = dX \pm dY", plus_minus)

    def product(g):
        X, Y, dX, dY = rn(g, 3, 4), rn(g, 4, 2), rn(g, 3, 4), rn(g, 4, 2)
        return dX @ Y + X @ dY, jvp(torch.matmul, (X, Y), (dX, dY))
    add("d_product", "d(XY) = (dX) Y + X (dY)", r"d(XY) = (dX)\,Y + X\,(dY)", product)

    def transpose(g):
        X, dX = rn(g, 3, 4), rn(g, 3, 4)
        return dX.T, jvp(lambda A: A.T, (X,), (dX,))
    add("d_transpose", "d(X^T) = (dX)^T", r"d(X^T) = (dX)^T", transpose)

    def trace(g):
        X, dX = rn(g, 4, 4), rn(g, 4, 4)
        return torch.trace(dX), jvp(torch.trace, (X,), (dX,))
    add("d_trace", "d tr(X) = tr(dX)", r"d\,\operatorname{tr}(X) = \operatorname{tr}(dX)", trace)

    def inverse(g):
        X, dX = invertible(g, 4), rn(g, 4, 4)
        Xi = torch.linalg.inv(X)
        return -Xi @ dX @ Xi, jvp(torch.linalg.inv, (X,), (dX,))
    add("d_inverse", "d(X^-1) = -X^-1 dX X^-1", r"d(X^{-1}) = -X^{-1}\,dX\,X^{-1}", inverse)

    def det_adj(g):
        X, dX = invertible(g, 4), rn(g, 4, 4)
        return torch.trace(adjugate(X) @ dX), jvp(torch.linalg.det, (X,), (dX,))
    add("d_det_adjugate", "d|X| = tr(adj(X) dX)   (adj(X) = X^#, the adjugate, from cofactors)",
        r"d|X| = \operatorname{tr}\big(X^{\#}\,dX\big)", det_adj)

    def det_inv(g):
        X, dX = invertible(g, 4), rn(g, 4, 4)
        return torch.linalg.det(X) * torch.trace(torch.linalg.solve(X, dX)), \
            jvp(torch.linalg.det, (X,), (dX,))
    add("d_det_inverse", "d|X| = |X| tr(X^-1 dX)   (X invertible)",
        r"d|X| = |X|\,\operatorname{tr}(X^{-1} dX)", det_inv)

    def hadamard(g):
        X, Y, dX, dY = rn(g, 3, 4), rn(g, 3, 4), rn(g, 3, 4), rn(g, 3, 4)
        return dX * Y + X * dY, jvp(torch.mul, (X, Y), (dX, dY))
    add("d_hadamard", "d(X o Y) = dX o Y + X o dY   (o: elementwise product)",
        r"d(X \odot Y) = dX \odot Y + X \odot dY", hadamard)

    def sigma(g):
        X, dX = rn(g, 3, 4), rn(g, 3, 4)
        return dsigmoid(X) * dX, jvp(torch.sigmoid, (X,), (dX,))
    add("d_elementwise", "d sigma(X) = sigma'(X) o dX   (sigma = logistic sigmoid, applied entrywise)",
        r"d\,\sigma(X) = \sigma'(X) \odot dX", sigma)

    def sin(g):
        X, dX = rn(g, 3, 4), rn(g, 3, 4)
        return torch.cos(X) * dX, jvp(torch.sin, (X,), (dX,))
    add("d_sin", "d sin(X) = cos(X) o dX", r"d\sin(X) = \cos(X) \odot dX", sin,
        "notes part 1 §5.3 (example of the elementwise rule)")
    return out


def _trace_tricks() -> list[Identity]:
    G = "trace tricks"
    out = []

    def add(key, text, latex, check, source="notes part 1 §5.4; notes part 3 §4.1"):
        out.append(Identity(key, G, text, latex, NONE, "both sides evaluated", check, source))

    def scalar(g):
        a = rn(g, 1, 1)
        return a.reshape(()), torch.trace(a)
    add("tr_scalar", "a = tr(a) for a scalar a (a 1 x 1 matrix)", r"a = \operatorname{tr}(a)", scalar)

    def tr_t(g):
        A = rn(g, 4, 4)
        return torch.trace(A.T), torch.trace(A)
    add("tr_transpose", "tr(A^T) = tr(A)", r"\operatorname{tr}(A^T) = \operatorname{tr}(A)", tr_t)

    def tr_lin(g):
        A, B = rn(g, 4, 4), rn(g, 4, 4)
        return torch.stack([torch.trace(A) + torch.trace(B), torch.trace(A) - torch.trace(B)]), \
            torch.stack([torch.trace(A + B), torch.trace(A - B)])
    add("tr_linear", "tr(A +- B) = tr(A) +- tr(B)",
        r"\operatorname{tr}(A \pm B) = \operatorname{tr}(A) \pm \operatorname{tr}(B)", tr_lin)

    def cyclic(g):
        A, B = rn(g, 3, 5), rn(g, 5, 3)  # A and B^T the same size; AB 3x3, BA 5x5
        return torch.trace(A @ B), torch.trace(B @ A)
    add("tr_cyclic", "tr(AB) = tr(BA)   (A and B^T the same size; both = sum_ij A_ij B_ji)",
        r"\operatorname{tr}(AB) = \operatorname{tr}(BA)", cyclic)

    def had_swap(g):
        A, B, C = rn(g, 3, 4), rn(g, 3, 4), rn(g, 3, 4)
        return torch.trace(A.T @ (B * C)), torch.trace((A * B).T @ C)
    add("tr_hadamard", "tr(A^T (B o C)) = tr((A o B)^T C)   (A, B, C the same size; both = sum_ij A_ij B_ij C_ij)",
        r"\operatorname{tr}\big(A^T (B \odot C)\big) = \operatorname{tr}\big((A \odot B)^T C\big)", had_swap)

    def inner_product(g):
        A, B = rn(g, 3, 4), rn(g, 3, 4)
        return torch.trace(A.T @ B), (A * B).sum()
    add("tr_inner", "tr(A^T B) = sum_ij A_ij B_ij   (the matrix inner product)",
        r"\operatorname{tr}(A^T B) = \sum_{i,j} A_{ij} B_{ij}", inner_product, "notes part 3 §2.2")
    return out


def _worked_results() -> list[Identity]:
    G = "worked results"
    out = []

    def add(key, text, latex, check, source, layout=DENOM, reference="torch.func.grad"):
        out.append(Identity(key, G, text, latex, layout, reference, check, source))

    def aXb(g):
        a, X, b = rn(g, 4), rn(g, 4, 3), rn(g, 3)
        return torch.outer(a, b), grad(lambda Z: a @ Z @ b, X)
    add("aXb", "d(a^T X b)/dX = a b^T   (X m x n; result m x n)",
        r"\frac{\partial\, a^T X b}{\partial X} = a b^T", aXb, "notes part 1 §5.1, §5.6 ex. 1; notes part 3 §6 ex. 1")

    def aexpXb(g):
        a, X, b = rn(g, 4), 0.5 * rn(g, 4, 3), rn(g, 3)
        return torch.outer(a * torch.exp(X @ b), b), grad(lambda Z: a @ torch.exp(Z @ b), X)
    add("a_exp_Xb", "d(a^T exp(Xb))/dX = (a o exp(Xb)) b^T",
        r"\frac{\partial\, a^T \exp(Xb)}{\partial X} = (a \odot \exp(Xb))\, b^T", aexpXb,
        "notes part 1 §5.6 ex. 2; notes part 3 §6 ex. 2")

    def trYMY(g):
        W, X, B = rn(g, 3, 4), rn(g, 4, 5), rn(g, 3, 3)
        M = B + B.T  # symmetric, as the notes assume
        Y = torch.sigmoid(W @ X)
        return W.T @ ((2 * M @ Y) * dsigmoid(W @ X)), \
            grad(lambda Z: torch.trace(torch.sigmoid(W @ Z).T @ M @ torch.sigmoid(W @ Z)), X)
    add("tr_YMY", "d tr(Y^T M Y)/dX = W^T ((2 M Y) o sigma'(WX)),  Y = sigma(WX), M symmetric",
        r"\frac{\partial \operatorname{tr}(Y^T M Y)}{\partial X} = W^T\big((2MY) \odot \sigma'(WX)\big),\quad Y = \sigma(WX)",
        trYMY, "notes part 3 §6 ex. 3 (corrected: no transpose on the bracket)")

    def quad(g):
        A, x = rn(g, 4, 4), rn(g, 4)
        return (A + A.T) @ x, grad(lambda z: z @ A @ z, x)
    add("xAx", "d(x^T A x)/dx = (A + A^T) x   (2Ax only when A is symmetric)",
        r"\frac{\partial\, x^T A x}{\partial x} = (A + A^T)\, x", quad, "notes part 4")

    def xx(g):
        x = rn(g, 5)
        return 2 * x, grad(lambda z: z @ z, x)
    add("xx", "d(x^T x)/dx = 2x", r"\frac{\partial\, x^T x}{\partial x} = 2x", xx, "notes part 1 §4.3; notes part 4")

    def ax(g):
        a, x = rn(g, 5), rn(g, 5)
        return a, grad(lambda z: a @ z, x)
    add("ax", "d(a^T x)/dx = a", r"\frac{\partial\, a^T x}{\partial x} = a", ax, "notes part 1 §4.1; notes part 4")

    def resid(g):
        A, b, x = rn(g, 5, 3), rn(g, 5), rn(g, 3)
        return -2 * A.T @ (b - A @ x), grad(lambda z: (b - A @ z) @ (b - A @ z), x)
    add("b_minus_Ax", "d||b - Ax||^2/dx = -2 A^T (b - Ax)   (A m x n, result n x 1)",
        r"\frac{\partial \lVert b - Ax\rVert^2}{\partial x} = -2A^T(b - Ax)", resid, "notes part 4")

    def ls_grad(g):
        X, y, w = rn(g, 7, 3), rn(g, 7), rn(g, 3)
        return 2 * X.T @ (X @ w - y), grad(lambda v: (X @ v - y) @ (X @ v - y), w)
    add("least_squares_gradient", "d||Xw - y||^2/dw = 2 X^T (Xw - y)",
        r"\frac{\partial \lVert Xw - y\rVert^2}{\partial w} = 2X^T(Xw - y)", ls_grad,
        "notes part 1 §5.6 ex. 3; notes part 3 §6 ex. 4")

    def ls_solution(g):
        X, y = rn(g, 7, 3), rn(g, 7)
        return torch.linalg.solve(X.T @ X, X.T @ y), \
            torch.linalg.lstsq(X, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    add("least_squares_solution", "w = (X^T X)^-1 X^T y minimises ||Xw - y||^2   (X n x d, full column rank)",
        r"w^\star = (X^T X)^{-1} X^T y", ls_solution, "notes part 1 §5.6 ex. 3 (notes part 3 writes (X X^T)^-1: see errata)",
        layout=NONE, reference="torch.linalg.lstsq (SVD-based least squares)")

    def normal_eq(g):
        X, y = rn(g, 7, 3), rn(g, 7)
        w = torch.linalg.lstsq(X, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
        return torch.zeros(3, dtype=F64), grad(lambda v: (X @ v - y) @ (X @ v - y), w)
    add("normal_equations", "at the least-squares solution the gradient vanishes: 2 X^T (Xw - y) = 0",
        r"\frac{\partial l}{\partial w}\Big|_{w^\star} = 2X^T(Xw^\star - y) = 0", normal_eq,
        "notes part 1 §5.6 ex. 3", reference="torch.func.grad at the lstsq solution")

    def logdet(g):
        X = invertible(g, 4)
        return torch.linalg.inv(X).T, grad(lambda Z: torch.linalg.slogdet(Z)[1], X)
    add("logdet", "d log|X| / dX = X^-T   (X^-1 when X is symmetric)",
        r"\frac{\partial \log|X|}{\partial X} = X^{-T}", logdet, "notes part 3 §3 (determinant rule), §6 ex. 5")

    def gauss_grad(g):
        Xs, S0 = rn(g, 9, 3), spd(g, 3)
        R = Xs - Xs.mean(0)
        S = R.T @ R / len(Xs)
        Si = torch.linalg.inv(S0)
        return Si - Si @ S @ Si, grad(lambda Z: gaussian_nll(Z, Xs), S0)
    add("gaussian_gradient",
        "d/dSigma [log|Sigma| + (1/N) sum_i (x_i - xbar)^T Sigma^-1 (x_i - xbar)] = Sigma^-1 - Sigma^-1 S Sigma^-1,"
        "  S = (1/N) sum_i (x_i - xbar)(x_i - xbar)^T   (at symmetric positive-definite Sigma; entries perturbed independently)",
        r"\frac{\partial l}{\partial \Sigma} = \Sigma^{-1} - \Sigma^{-1} S \Sigma^{-1},\quad S = \frac{1}{N}\sum_{i=1}^N (x_i - \bar x)(x_i - \bar x)^T",
        gauss_grad, "notes part 3 §6 ex. 5")

    def gauss_mle(g):
        Xs = rn(g, 9, 3) @ rn(g, 3, 3)
        return sample_cov(Xs), torch.cov(Xs.T, correction=0)
    add("gaussian_mle", "Sigma_MLE = (1/N) sum_i (x_i - xbar)(x_i - xbar)^T",
        r"\hat\Sigma = \frac{1}{N}\sum_{i=1}^N (x_i - \bar x)(x_i - \bar x)^T", gauss_mle,
        "notes part 3 §6 ex. 5 (the notes drop the sum: see errata)", layout=NONE,
        reference="torch.cov(X^T, correction=0)")

    def softmax_ce(g):
        W, x, y = rn(g, 4, 3), rn(g, 3), one_hot(g, 4)
        return torch.outer(softmax(W @ x) - y, x), \
            grad(lambda V: -(y * torch.log_softmax(V @ x, 0)).sum(), W)
    add("softmax_ce", "d(-y^T log softmax(Wx))/dW = (softmax(Wx) - y) x^T   (y one-hot, 1^T y = 1)",
        r"\frac{\partial\,(-y^T \log\operatorname{softmax}(Wx))}{\partial W} = (\operatorname{softmax}(Wx) - y)\,x^T",
        softmax_ce, "notes part 3 §6 ex. 6")

    def two_layer(g):
        W1, W2, x, y = rn(g, 5, 3), rn(g, 4, 5), rn(g, 3), one_hot(g, 4)

        def loss(A, B):
            return -(y * torch.log_softmax(B @ torch.sigmoid(A @ x), 0)).sum()
        e = softmax(W2 @ torch.sigmoid(W1 @ x)) - y
        g1, g2 = torch.func.grad(loss, argnums=(0, 1))(W1, W2)
        claimed = torch.cat([vec(torch.outer(e, torch.sigmoid(W1 @ x))),
                             vec(torch.outer((W2.T @ e) * dsigmoid(W1 @ x), x))])
        return claimed, torch.cat([vec(g2), vec(g1)])
    add("two_layer", "l = -y^T log softmax(W2 sigma(W1 x)):  dl/dW2 = (softmax(a) - y) sigma(W1 x)^T,"
        "  dl/dW1 = ((W2^T (softmax(a) - y)) o sigma'(W1 x)) x^T,  a = W2 sigma(W1 x)",
        r"\frac{\partial l}{\partial W_2} = (\operatorname{softmax}(a) - y)\,\sigma(W_1x)^T,\quad \frac{\partial l}{\partial W_1} = \big((W_2^T(\operatorname{softmax}(a) - y)) \odot \sigma'(W_1x)\big)\,x^T",
        two_layer, "notes part 3 §6 ex. 7 (the notes label the W1 result dl/dW2: see errata)")

    def logistic_grad(g):
        X, A = rn(g, 8, 3), rn(g, 3)
        y = (rn(g, 8) > 0).to(F64)
        p = torch.sigmoid(X @ A)
        loss = lambda v: (-y * (X @ v) + torch.nn.functional.softplus(X @ v)).sum()  # noqa: E731
        return -X.T @ (y - p), grad(loss, A)
    add("logistic_gradient", "l(A) = sum_i [-y_i A^T x_i + log(1 + e^{A^T x_i})]:  dl/dA = -sum_i x_i (y_i - p_i)",
        r"\frac{\partial l}{\partial A} = -\sum_i x_i\,(y_i - p_i),\quad p_i = \sigma(A^T x_i)",
        logistic_grad, "notes part 3 §6 ex. 8")

    def logistic_hess(g):
        X, A = rn(g, 8, 3), rn(g, 3)
        y = (rn(g, 8) > 0).to(F64)
        w = dsigmoid(X @ A)
        loss = lambda v: (-y * (X @ v) + torch.nn.functional.softplus(X @ v)).sum()  # noqa: E731
        return sum(w[i] * torch.outer(X[i], X[i]) for i in range(8)), torch.func.hessian(loss)(A)
    add("logistic_hessian", "d^2 l / dA dA^T = sum_i x_i x_i^T p_i (1 - p_i)",
        r"\frac{\partial^2 l}{\partial A\,\partial A^T} = \sum_i x_i x_i^T\, p_i (1 - p_i)",
        logistic_hess, "notes part 3 §6 ex. 8", layout="Hessian d x d (symmetric: layouts agree)",
        reference="torch.func.hessian")
    return out


def _chain_rules() -> list[Identity]:
    G = "chain rules"
    out = []

    def scalar_vec(g):
        A, c, x = rn(g, 5, 4), rn(g, 5), rn(g, 4)

        def y(v):
            return torch.tanh(A @ v)

        def z(u):
            return c @ u + u @ u
        J = torch.func.jacrev(y)(x)  # numerator: 5 x 4
        return J.T @ (c + 2 * y(x)), grad(lambda v: z(y(v)), x)
    out.append(Identity(
        "chain_scalar_vectors", G,
        "x -> y -> z (z scalar): dz/dx = (dy/dx)^T dz/dy   (dy/dx the m x n Jacobian; dz/dx, dz/dy gradients)",
        r"\frac{\partial z}{\partial x} = \Big(\frac{\partial y}{\partial x}\Big)^T \frac{\partial z}{\partial y}",
        "gradients denominator, Jacobian numerator (m x n)", "torch.func.grad of z(y(x)); Jacobian from jacrev",
        scalar_vec, "notes part 1 §4.4"))

    def multi(g):
        A1, A2, x = rn(g, 5, 4), rn(g, 3, 5), rn(g, 4)
        f1, f2, f3 = (lambda v: A1 @ v), torch.tanh, (lambda v: A2 @ v)  # noqa: E731
        y1 = f1(x)
        y2 = f2(y1)
        y3 = f3(y2)
        J1 = torch.func.jacrev(f1)(x)
        J2 = torch.func.jacrev(f2)(y1)
        J3 = torch.func.jacrev(f3)(y2)
        return (J3 @ J2 @ J1).T @ (2 * y3), grad(lambda v: (f3(f2(f1(v))) ** 2).sum(), x)
    out.append(Identity(
        "chain_many_vectors", G,
        "y1 -> y2 -> ... -> yn -> z: dz/dy1 = (dyn/dyn-1 ... dy2/dy1)^T dz/dyn",
        r"\frac{\partial z}{\partial y_1} = \Big(\frac{\partial y_n}{\partial y_{n-1}} \cdots \frac{\partial y_2}{\partial y_1}\Big)^T \frac{\partial z}{\partial y_n}",
        "gradients denominator, Jacobians numerator", "torch.func.grad of the composition", multi,
        "notes part 1 §4.4"))

    def vec_vec(g):
        A, B, x = rn(g, 5, 4), rn(g, 3, 5), rn(g, 4)

        def y(v):
            return torch.tanh(A @ v)

        def z(u):
            return torch.sin(B @ u)
        return torch.func.jacrev(z)(y(x)) @ torch.func.jacrev(y)(x), torch.func.jacrev(lambda v: z(y(v)))(x)
    out.append(Identity(
        "chain_vector_vector", G, "x -> y -> z (vectors): dz/dx = (dz/dy)(dy/dx)   (Jacobians, 3 x 5 times 5 x 4)",
        r"\frac{\partial z}{\partial x} = \frac{\partial z}{\partial y}\,\frac{\partial y}{\partial x}",
        NUMER, "torch.func.jacrev of the composition", vec_vec, "notes part 1 §6.2"))

    def axb(g):
        A, X, B = rn(g, 3, 4), rn(g, 4, 5), rn(g, 5, 2)

        def f(Y):
            return torch.sin(Y).sum() + (Y ** 2).sum()
        Y = A @ X @ B
        dfdY = torch.cos(Y) + 2 * Y
        return A.T @ dfdY @ B.T, grad(lambda Z: f(A @ Z @ B), X)
    out.append(Identity(
        "chain_AXB", G, "Y = AXB, f scalar: df/dX = A^T (df/dY) B^T",
        r"Y = AXB:\quad \frac{\partial f}{\partial X} = A^T \frac{\partial f}{\partial Y} B^T",
        DENOM, "torch.func.grad of f(AXB)", axb, "notes part 3 §5"))

    def scalar_scalar(g):
        A = rn(g, 3, 4)
        gA = (A * A).sum()
        return (1 / gA) * 2 * A, grad(lambda Z: torch.log((Z * Z).sum()), A)
    out.append(Identity(
        "chain_scalar_of_scalar", G, "f(g(A)) with f, g scalar: df/dA = (df/dg) dg/dA   (here f = log, g = tr(A^T A))",
        r"\frac{\partial f}{\partial A} = \frac{\partial f}{\partial g}\,\frac{\partial g}{\partial A}",
        DENOM, "torch.func.grad", scalar_scalar, "notes part 3 §5"))
    return out


def _layouts() -> list[Identity]:
    G = "layouts"
    out = []

    def ax_num(g):
        A, x = rn(g, 5, 3), rn(g, 3)
        return A, torch.func.jacrev(lambda v: A @ v)(x)
    out.append(Identity(
        "dAx_numerator", G, "d(Ax)/dx = A   (numerator layout: A is m x n, the Jacobian)",
        r"\frac{\partial (Ax)}{\partial x} = A \quad (m \times n)", NUMER, "torch.func.jacrev", ax_num,
        "notes part 1 §6.1 (numerator); notes part 4 writes A^T: see errata"))

    def ax_den(g):
        A, x = rn(g, 5, 3), rn(g, 3)
        return A.T, torch.func.jacrev(lambda v: A @ v)(x).T
    out.append(Identity(
        "dAx_denominator", G, "d(Ax)/dx = A^T   (denominator layout: the n x m gradient matrix)",
        r"\frac{\partial (Ax)}{\partial x} = A^T \quad (n \times m)",
        "denominator: gradient matrix n x m = (Jacobian)^T", "transpose of torch.func.jacrev", ax_den,
        "notes part 4 (right in this layout); notes part 2 §1.3"))

    def ax_j(g):
        A, x = rn(g, 5, 3), rn(g, 3)
        j = 1
        e = torch.zeros(3, dtype=F64)
        e[j] = 1.0
        return A[:, j], jvp(lambda v: A @ v, (x,), (e,))
    out.append(Identity(
        "dAx_dxj", G, "d(Ax)/dx_j = A[:, j]   (column j of A, an m-vector: a derivative by one scalar)",
        r"\frac{\partial (Ax)}{\partial x_j} = A_{:,j}", "vector by scalar: m x 1 (numerator)",
        "torch.func.jvp along e_j", ax_j, "notes part 1 §6.1 (the notes write A: see errata)"))

    def tanh_num(g):
        A, x = rn(g, 5, 3), rn(g, 3)
        return torch.diag(1 - torch.tanh(A @ x) ** 2) @ A, torch.func.jacrev(lambda v: torch.tanh(A @ v))(x)
    out.append(Identity(
        "jacobian_numerator", G, "d tanh(Ax)/dx = diag(1 - tanh^2(Ax)) A   (numerator: m x n Jacobian)",
        r"\frac{\partial \tanh(Ax)}{\partial x} = \operatorname{diag}\big(1 - \tanh^2(Ax)\big)\,A",
        NUMER, "torch.func.jacrev", tanh_num, "notes part 1 §6; notes part 2 §1.3"))

    def tanh_den(g):
        A, x = rn(g, 5, 3), rn(g, 3)
        return A.T @ torch.diag(1 - torch.tanh(A @ x) ** 2), \
            torch.func.jacrev(lambda v: torch.tanh(A @ v))(x).T
    out.append(Identity(
        "jacobian_denominator", G,
        "the same derivative in denominator layout: A^T diag(1 - tanh^2(Ax)), n x m = (numerator)^T",
        r"\Big(\frac{\partial \tanh(Ax)}{\partial x}\Big)_{\text{den}} = A^T \operatorname{diag}\big(1 - \tanh^2(Ax)\big) = J^T",
        "denominator: gradient matrix n x m", "transpose of torch.func.jacrev", tanh_den,
        "notes part 1 §6; notes part 2 §1.3"))

    def scal_mat_num(g):
        a, X, b = rn(g, 4), rn(g, 4, 3), rn(g, 3)
        return torch.outer(b, a), grad(lambda Z: a @ Z @ b, X).T
    out.append(Identity(
        "scalar_by_matrix_numerator", G,
        "d(a^T X b)/dX = b a^T in numerator layout (n x m), the transpose of the denominator a b^T",
        r"\Big(\frac{\partial\, a^T X b}{\partial X}\Big)_{\text{num}} = b\,a^T \quad (n \times m)",
        "numerator: n x m for X m x n", "transpose of torch.func.grad", scal_mat_num, "notes part 1 §2; notes part 2 §1.3"))

    def definition(g):
        X, dX, B = rn(g, 3, 4), rn(g, 3, 4), rn(g, 4, 2)

        def f(Z):
            return (torch.sin(Z) @ B).sum() + torch.trace(Z @ Z.T @ Z @ Z.T)
        G_ = grad(f, X)
        return torch.trace(G_.T @ dX), jvp(f, (X,), (dX,))
    out.append(Identity(
        "gradient_definition", G,
        "df = tr((df/dX)^T dX)   (what makes df/dX the gradient, shaped like X)",
        r"df = \operatorname{tr}\Big(\Big(\frac{\partial f}{\partial X}\Big)^T dX\Big)",
        DENOM, "torch.func.jvp (gradient from torch.func.grad)", definition,
        "notes part 1 §5.2; notes part 3 §2.2"))

    def definition_vec(g):
        A, x, dx = rn(g, 4, 4), rn(g, 4), rn(g, 4)

        def f(v):
            return torch.sin(A @ v).sum()
        return grad(f, x) @ dx, jvp(f, (x,), (dx,))
    out.append(Identity(
        "gradient_definition_vector", G,
        "df = (df/dx)^T dx   (df/dx a column, n x 1)",
        r"df = \Big(\frac{\partial f}{\partial x}\Big)^T dx",
        DENOM, "torch.func.jvp (gradient from torch.func.grad)", definition_vec,
        "notes part 1 §4.3 (notes part 3 §2.1 drops the transpose: see errata)"))
    return out


def _vec_kron() -> list[Identity]:
    G = "vec and Kronecker"
    out = []

    def add(key, text, latex, check, layout=NONE, reference="both sides evaluated",
            source="notes part 1 §7.3-7.4"):
        out.append(Identity(key, G, text, latex, layout, reference, check, source))

    def vec_axb(g):
        A, X, B = rn(g, 2, 3), rn(g, 3, 4), rn(g, 4, 5)
        return kron(B.T, A) @ vec(X), vec(A @ X @ B)
    add("vec_AXB", "vec(AXB) = (B^T kron A) vec(X)", r"\operatorname{vec}(AXB) = (B^T \otimes A)\operatorname{vec}(X)", vec_axb)

    def vec_outer(g):
        a, b = rn(g, 3), rn(g, 4)
        return kron(b, a), vec(torch.outer(a, b))
    add("vec_outer", "vec(a b^T) = b kron a", r"\operatorname{vec}(a b^T) = b \otimes a", vec_outer)

    def vec_had(g):
        A, X = rn(g, 3, 4), rn(g, 3, 4)
        return torch.diag(vec(A)) @ vec(X), vec(A * X)
    add("vec_hadamard", "vec(A o X) = diag(vec(A)) vec(X)",
        r"\operatorname{vec}(A \odot X) = \operatorname{diag}(\operatorname{vec} A)\operatorname{vec}(X)", vec_had)

    def kron_t(g):
        A, B = rn(g, 2, 3), rn(g, 4, 5)
        return kron(A.T, B.T), kron(A, B).T
    add("kron_transpose", "(A kron B)^T = A^T kron B^T", r"(A \otimes B)^T = A^T \otimes B^T", kron_t)

    def kron_mixed(g):
        A, B, C, D = rn(g, 2, 3), rn(g, 4, 2), rn(g, 3, 2), rn(g, 2, 5)
        return kron(A @ C, B @ D), kron(A, B) @ kron(C, D)
    add("kron_mixed_product", "(A kron B)(C kron D) = AC kron BD",
        r"(A \otimes B)(C \otimes D) = AC \otimes BD", kron_mixed)

    def comm(g):
        A = rn(g, 3, 4)
        return commutation(3, 4) @ vec(A), vec(A.T)
    add("commutation", "K_mn vec(A) = vec(A^T)   (A m x n; K_mn the mn x mn commutation matrix)",
        r"K_{mn} \operatorname{vec}(A) = \operatorname{vec}(A^T)", comm)

    def comm_inv(g):
        m, n = 3, 4
        return commutation(m, n) @ commutation(n, m), torch.eye(m * n, dtype=F64)
    add("commutation_inverse", "K_mn K_nm = I", r"K_{mn} K_{nm} = I", comm_inv)

    def comm_t(g):
        return commutation(3, 4).T, commutation(4, 3)
    add("commutation_transpose", "K_mn^T = K_nm", r"K_{mn}^T = K_{nm}", comm_t)

    def d_axb(g):
        A, X, B = rn(g, 2, 3), rn(g, 3, 4), rn(g, 4, 5)
        return kron(B, A.T), vec_jacobian(lambda Z: A @ Z @ B, X).T
    add("dAXB_dX", "F = AXB: dF/dX = B kron A^T   (denominator, mn x pq = 12 x 10; its transpose B^T kron A is the jacrev form)",
        r"\frac{\partial (AXB)}{\partial X} = B \otimes A^T \quad (mn \times pq)", d_axb, MATMAT,
        "transpose of torch.func.jacrev of vec(F) by vec(X)", "notes part 1 §7.1-7.3")

    def d_xt(g):
        X = rn(g, 3, 4)
        return commutation(4, 3), vec_jacobian(lambda Z: Z.T, X).T
    add("dXT_dX", "F = X^T: dF/dX = K_mn^T = K_nm   (denominator, mn x mn)",
        r"\frac{\partial X^T}{\partial X} = K_{mn}^T = K_{nm}", d_xt, MATMAT,
        "transpose of torch.func.jacrev of vec(F) by vec(X)", "notes part 1 §7.3")

    def d_inv(g):
        X = invertible(g, 3)
        Xi = torch.linalg.inv(X)
        return -kron(Xi, Xi.T), vec_jacobian(torch.linalg.inv, X).T
    add("dXinv_dX", "F = X^-1: dF/dX = -(X^-1 kron X^-T)   (vec(dF) = -(X^-T kron X^-1) vec(dX))",
        r"\frac{\partial X^{-1}}{\partial X} = -\,X^{-1} \otimes X^{-T}", d_inv, MATMAT,
        "transpose of torch.func.jacrev of vec(F) by vec(X)", "notes part 1 §7 with notes part 3 §3")

    def d_sigma(g):
        X = rn(g, 3, 4)
        return torch.diag(vec(dsigmoid(X))), vec_jacobian(torch.sigmoid, X).T
    add("dsigma_dX", "F = sigma(X) entrywise: dF/dX = diag(vec(sigma'(X)))   (mn x mn, diagonal)",
        r"\frac{\partial \sigma(X)}{\partial X} = \operatorname{diag}\big(\operatorname{vec}\sigma'(X)\big)",
        d_sigma, MATMAT, "transpose of torch.func.jacrev of vec(F) by vec(X)", "notes part 1 §7.3")

    def vec_dF(g):
        X, A, dX = rn(g, 3, 3), rn(g, 3, 3), rn(g, 3, 3)
        eye = torch.eye(3, dtype=F64)
        dFdX = (kron((A @ X).T, eye) + kron(eye, X @ A)).T  # denominator mn x pq
        return dFdX.T @ vec(dX), vec(jvp(lambda Z: Z @ A @ Z, (X,), (dX,)))
    add("vec_dF", "vec(dF) = (dF/dX)^T vec(dX);  F = XAX: dF/dX = ((AX)^T kron I + I kron XA)^T",
        r"\operatorname{vec}(dF) = \Big(\frac{\partial F}{\partial X}\Big)^T \operatorname{vec}(dX),\quad F = XAX",
        vec_dF, MATMAT, "torch.func.jvp", "notes part 1 §7.2")
    return out


CATALOG: list[Identity] = (_differential_rules() + _trace_tricks() + _worked_results()
                           + _chain_rules() + _layouts() + _vec_kron())
