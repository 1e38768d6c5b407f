"""The matrix-calculus catalog the notes teach, each entry checked numerically.

Every entry states a formula (plain text and LaTeX), the layout it is written in, and how
it is checked.  Most are written in the notation (:func:`written`): one-line claims
(handgrad.notation.claims) whose text and LaTeX are printed from the parsed trees that
are evaluated, at points and sizes handgrad draws, against torch.func (jvp for
differentials, grad for scalar-by-matrix results, jacrev for Jacobians and
matrix-by-matrix derivatives) or the other side of an equality: verified.  The rest (an
abstract function or chain, a least-squares solver as the reference, a derivative by one
entry) keep a Python check, a function of a seeded torch.Generator returning (claimed,
truth): evaluated, their text not checked.  Inputs are random, non-symmetric and (where
it matters) non-square: a symmetric or square test matrix hides a missing transpose.

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

from handgrad.notation.claims import Claim

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
    """One entry.  Written in the notation (``claims``): its text and LaTeX are printed from
    the parsed claims and checked by handgrad.notation.claims (verified).  Otherwise a
    Python ``check`` returning (claimed, truth): evaluated, its text not checked."""

    key: str
    group: str
    text: str
    latex: str
    layout: str
    reference: str  # what the claim is checked against
    check: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]] | None  # -> (claimed, truth)
    source: str = ""  # where the notes state it
    claims: tuple = ()  # handgrad.notation.claims.Claim, one or more
    note: str = ""  # a remark printed beside the formula (free text, like a .hg comment)

    @property
    def in_notation(self) -> bool:
        return bool(self.claims)


_REFERENCE = {"equal": "both sides evaluated", "d": "torch.func.jvp", "grad": "torch.func.grad",
              "gradT": "transpose of torch.func.grad", "hess": "torch.func.hessian",
              "jac": "torch.func.jacrev", "jacT": "transpose of torch.func.jacrev",
              "vecjac": "transpose of torch.func.jacrev of vec(F) by vec(X)"}


def written(key: str, group: str, layout: str, claims, source: str, note: str = "") -> Identity:
    """An entry written in the notation: text and LaTeX from the parsed claims."""
    from handgrad.notation.claims import Parsed

    claims = tuple(claims)
    parsed = [Parsed(c) for c in claims]
    ref = ", ".join(dict.fromkeys(_REFERENCE[c.kind] for c in claims))
    return Identity(key, group, ";  ".join(p.text() for p in parsed),
                    ",\\quad ".join(p.latex() for p in parsed), layout, ref, None, source,
                    claims, note)


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
    src = "notes part 1 §5.3; notes part 3 §3"
    out = [
        written("d_sum", G, DIFF, [Claim("X: m x n; Y: m x n", "d", "X + Y", "dX + dY"),
                                   Claim("X: m x n; Y: m x n", "d", "X - Y", "dX - dY")], src),
        written("d_product", G, DIFF, [Claim("X: m x n; Y: n x p", "d", "X*Y", "dX*Y + X*dY")], src),
        written("d_transpose", G, DIFF, [Claim("X: m x n", "d", "X'", "dX'")], src),
        written("d_trace", G, DIFF, [Claim("X: n x n", "d", "tr(X)", "tr(dX)")], src),
        written("d_inverse", G, DIFF, [Claim("X: n x n invertible", "d", "inv(X)", "-inv(X)*dX*inv(X)")],
                src),
    ]

    out += [
        written("d_det_adjugate", G, DIFF,
                [Claim("X: n x n invertible", "d", "det(X)", "tr(adj(X)*dX)")], src,
                "adj(X) = X^#, the adjugate, evaluated from cofactors (never from X^-1)"),
        written("d_det_inverse", G, DIFF,
                [Claim("X: n x n invertible", "d", "det(X)", "det(X)*tr(inv(X)*dX)")], src),
        written("d_hadamard", G, DIFF,
                [Claim("X: m x n; Y: m x n", "d", "X .* Y", "dX .* Y + X .* dY")], src,
                ".* is the elementwise (Hadamard) product, the notes' o"),
        written("d_elementwise", G, DIFF,
                [Claim("X: m x n", "d", "sigma(X)", "sigma(X) .* (matrix(1) - sigma(X)) .* dX")], src,
                "sigma the logistic sigmoid, entrywise: sigma' = sigma (1 - sigma)"),
        written("d_sin", G, DIFF, [Claim("X: m x n", "d", "sin(X)", "cos(X) .* dX")],
                "notes part 1 §5.3 (example of the elementwise rule)"),
    ]
    return out


def _trace_tricks() -> list[Identity]:
    G = "trace tricks"
    src = "notes part 1 §5.4; notes part 3 §4.1"
    return [
        written("tr_scalar", G, NONE, [Claim("a: scalar", "equal", "a", "tr(a)")], src,
                "a scalar is its own trace (a 1 x 1 matrix)"),
        written("tr_transpose", G, NONE, [Claim("A: n x n", "equal", "tr(A')", "tr(A)")], src),
        written("tr_linear", G, NONE, [Claim("A: n x n; B: n x n", "equal", "tr(A + B)", "tr(A) + tr(B)"),
                                       Claim("A: n x n; B: n x n", "equal", "tr(A - B)", "tr(A) - tr(B)")],
                src),
        written("tr_cyclic", G, NONE, [Claim("A: m x n; B: n x m", "equal", "tr(A*B)", "tr(B*A)")], src,
                "A and B' the same size, m != n: AB is m x m, BA is n x n"),
        written("tr_hadamard", G, NONE,
                [Claim("A: m x n; B: m x n; C: m x n", "equal", "tr(A'*(B .* C))", "tr((A .* B)'*C)")], src,
                "both are sum_ij A_ij B_ij C_ij"),
        written("tr_inner", G, NONE, [Claim("A: m x n; B: m x n", "equal", "tr(A'*B)", "sum(A .* B)")],
                "notes part 3 §2.2", "the matrix inner product"),
    ]


def _worked_results() -> list[Identity]:
    G = "worked results"
    out = [
        written("aXb", G, DENOM, [Claim("a: m; X: m x n; b: n", "grad", "a'*X*b", "a*b'", "X")],
                "notes part 1 §5.1, §5.6 ex. 1; notes part 3 §6 ex. 1"),
        written("a_exp_Xb", G, DENOM,
                [Claim("a: m; X: m x n; b: n", "grad", "a'*exp(X*b)", "(a .* exp(X*b))*b'", "X")],
                "notes part 1 §5.6 ex. 2; notes part 3 §6 ex. 2"),
        written("tr_YMY", G, DENOM,
                [Claim("W: p x m; X: m x n; M: p x p sym", "grad", "tr(sigma(W*X)'*M*sigma(W*X))",
                       "W'*((2*M*sigma(W*X)) .* sigma(W*X) .* (matrix(1) - sigma(W*X)))", "X")],
                "notes part 3 §6 ex. 3 (corrected: no transpose on the bracket)",
                "Y = sigma(W X), M symmetric: W' ((2 M Y) .* sigma'(W X))"),
        written("xAx", G, DENOM, [Claim("x: n; A: n x n", "grad", "x'*A*x", "(A + A')*x", "x")],
                "notes part 4", "2 A x only when A is symmetric"),
        written("xx", G, DENOM, [Claim("x: n", "grad", "x'*x", "2*x", "x")],
                "notes part 1 §4.3; notes part 4"),
        written("ax", G, DENOM, [Claim("a: n; x: n", "grad", "a'*x", "a", "x")],
                "notes part 1 §4.1; notes part 4"),
        written("b_minus_Ax", G, DENOM,
                [Claim("A: m x n; b: m; x: n", "grad", "norm2(b - A*x)^2", "-2*A'*(b - A*x)", "x")],
                "notes part 4", "A m x n, the gradient n x 1"),
        written("least_squares_gradient", G, DENOM,
                [Claim("X: n x d; y: n; w: d", "grad", "norm2(X*w - y)^2", "2*X'*(X*w - y)", "w")],
                "notes part 1 §5.6 ex. 3; notes part 3 §6 ex. 4"),
    ]

    def ls_solution(g):
        X, y = rn(g, 7, 3), rn(g, 7)
        return torch.linalg.solve(X.T @ X, X.T @ y), \
            torch.linalg.lstsq(X, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    out.append(Identity(
        "least_squares_solution", G, "w = (X^T X)^-1 X^T y minimises ||Xw - y||^2   (X n x d, full column rank)",
        r"w^\star = (X^T X)^{-1} X^T y", NONE, "torch.linalg.lstsq (SVD-based least squares)", ls_solution,
        "notes part 1 §5.6 ex. 3 (notes part 3 writes (X X^T)^-1: see errata)"))

    def normal_eq(g):
        X, y = rn(g, 7, 3), rn(g, 7)
        w = torch.linalg.lstsq(X, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
        return torch.zeros(3, dtype=F64), grad(lambda v: (X @ v - y) @ (X @ v - y), w)
    out.append(Identity(
        "normal_equations", G, "at the least-squares solution the gradient vanishes: 2 X^T (Xw - y) = 0",
        r"\frac{\partial l}{\partial w}\Big|_{w^\star} = 2X^T(Xw^\star - y) = 0", DENOM,
        "torch.func.grad at the lstsq solution", normal_eq, "notes part 1 §5.6 ex. 3"))
    out += [
        written("logdet", G, DENOM, [Claim("X: n x n invertible", "grad", "logdet(X)", "inv(X)'", "X")],
                "notes part 3 §3 (determinant rule), §6 ex. 5", "inv(X) when X is symmetric"),
        written("gaussian_gradient", G, DENOM,
                [Claim("Sigma: n x n spd; S: n x n spd", "grad", "logdet(Sigma) + tr(inv(Sigma)*S)",
                       "inv(Sigma) - inv(Sigma)*S*inv(Sigma)", "Sigma")],
                "notes part 3 §6 ex. 5",
                "the notes' log|Sigma| + (1/N) sum_i (x_i - xbar)' Sigma^-1 (x_i - xbar), with "
                "S = (1/N) sum_i (x_i - xbar)(x_i - xbar)' (a' B a = tr(B a a')); entries of Sigma "
                "perturbed independently"),
    ]

    def gauss_mle(g):
        Xs = rn(g, 9, 3) @ rn(g, 3, 3)
        return sample_cov(Xs), torch.cov(Xs.T, correction=0)
    out.append(Identity(
        "gaussian_mle", G, "Sigma_MLE = (1/N) sum_i (x_i - xbar)(x_i - xbar)^T",
        r"\hat\Sigma = \frac{1}{N}\sum_{i=1}^N (x_i - \bar x)(x_i - \bar x)^T", NONE,
        "torch.cov(X^T, correction=0)", gauss_mle, "notes part 3 §6 ex. 5 (the notes drop the sum: see errata)"))
    onehot = "Y = y' is one-hot (a 1 x K row: 1' y = 1)"
    out += [
        written("softmax_ce", G, DENOM,
                [Claim("W: K x d; x: d; Y: 1 x K onehot", "grad", "-Y*log(softmax(W*x))",
                       "(softmax(W*x) - Y')*x'", "W")], "notes part 3 §6 ex. 6", onehot),
        written("two_layer", G, DENOM,
                [Claim("W1: h x d; W2: K x h; x: d; Y: 1 x K onehot", "grad",
                       "-Y*log(softmax(W2*sigma(W1*x)))", "(softmax(W2*sigma(W1*x)) - Y')*sigma(W1*x)'", "W2"),
                 Claim("W1: h x d; W2: K x h; x: d; Y: 1 x K onehot", "grad",
                       "-Y*log(softmax(W2*sigma(W1*x)))",
                       "((W2'*(softmax(W2*sigma(W1*x)) - Y')) .* sigma(W1*x) .* (vector(1) - sigma(W1*x)))*x'",
                       "W1")],
                "notes part 3 §6 ex. 7 (the notes label the W1 result dl/dW2: see errata)", onehot),
        written("logistic_gradient", G, DENOM,
                [Claim("X: n x d; y: n; A: d", "grad", "-y'*X*A + sum(log(vector(1) + exp(X*A)))",
                       "-X'*(y - sigma(X*A))", "A")],
                "notes part 3 §6 ex. 8",
                "the notes' sum_i [-y_i A' x_i + log(1 + e^(A' x_i))] with the x_i' as the rows of X; "
                "dl/dA = -sum_i x_i (y_i - p_i), p = sigma(X A)"),
        written("logistic_hessian", G, "Hessian d x d (symmetric: layouts agree)",
                [Claim("X: n x d; y: n; A: d", "hess", "-y'*X*A + sum(log(vector(1) + exp(X*A)))",
                       "X'*diag(sigma(X*A) .* (vector(1) - sigma(X*A)))*X", "A")],
                "notes part 3 §6 ex. 8", "= sum_i x_i x_i' p_i (1 - p_i)"),
    ]
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
    out = [
        written("dAx_numerator", G, NUMER, [Claim("A: m x n; x: n", "jac", "A*x", "A", "x")],
                "notes part 1 §6.1 (numerator); notes part 4 writes A^T: see errata",
                "numerator layout: A is m x n, the Jacobian"),
        written("dAx_denominator", G, "denominator: gradient matrix n x m = (Jacobian)^T",
                [Claim("A: m x n; x: n", "jacT", "A*x", "A'", "x")],
                "notes part 4 (right in this layout); notes part 2 §1.3", "the n x m gradient matrix"),
    ]

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
    out += [
        written("jacobian_numerator", G, NUMER,
                [Claim("A: m x n; x: n", "jac", "tanh(A*x)", "diag(vector(1) - tanh(A*x).^2)*A", "x")],
                "notes part 1 §6; notes part 2 §1.3", "the m x n Jacobian"),
        written("jacobian_denominator", G, "denominator: gradient matrix n x m",
                [Claim("A: m x n; x: n", "jacT", "tanh(A*x)", "A'*diag(vector(1) - tanh(A*x).^2)", "x")],
                "notes part 1 §6; notes part 2 §1.3", "n x m, the numerator form transposed"),
        written("scalar_by_matrix_numerator", G, "numerator: n x m for X m x n",
                [Claim("a: m; X: m x n; b: n", "gradT", "a'*X*b", "b*a'", "X")],
                "notes part 1 §2; notes part 2 §1.3", "the transpose of the denominator a b'"),
    ]

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
    src = "notes part 1 §7.3-7.4"
    out = [
        written("vec_AXB", G, NONE,
                [Claim("A: p x m; X: m x n; B: n x q", "equal", "vec(A*X*B)", "kron(B', A)*vec(X)")], src),
        written("vec_outer", G, NONE, [Claim("a: m; b: n", "equal", "vec(a*b')", "kron(b, a)")], src),
        written("vec_hadamard", G, NONE,
                [Claim("A: m x n; X: m x n", "equal", "vec(A .* X)", "diag(vec(A))*vec(X)")], src),
        written("kron_transpose", G, NONE, [Claim("A: m x n; B: p x q", "equal", "kron(A, B)'", "kron(A', B')")],
                src),
        written("kron_mixed_product", G, NONE,
                [Claim("A: m x n; B: p x q; C: n x r; D: q x s", "equal", "kron(A, B)*kron(C, D)",
                       "kron(A*C, B*D)")], src),
    ]

    def add(key, text, latex, check, layout=NONE, reference="both sides evaluated", source=src):
        out.append(Identity(key, G, text, latex, layout, reference, check, source))

    note = "comm(A) is K_mn, the mn x mn commutation matrix of A's shape (m x n)"
    out += [
        written("commutation", G, NONE, [Claim("A: m x n", "equal", "comm(A)*vec(A)", "vec(A')")], src, note),
        written("commutation_inverse", G, NONE, [Claim("A: m x n", "equal", "comm(A)*comm(A')", "eye")], src,
                "K_mn K_nm = I"),
        written("commutation_transpose", G, NONE, [Claim("A: m x n", "equal", "comm(A)'", "comm(A')")], src,
                "K_mn' = K_nm"),
    ]
    out.append(written("dAXB_dX", G, MATMAT,
                       [Claim("A: p x m; X: m x n; B: n x q", "vecjac", "A*X*B", "kron(B, A')", "X")],
                       "notes part 1 §7.1-7.3", "mn x pq; its transpose kron(B', A) is the jacrev form"))

    out.append(written("dXT_dX", G, MATMAT, [Claim("X: m x n", "vecjac", "X'", "comm(X')", "X")],
                       "notes part 1 §7.3", "dF/dX = K_mn' = K_nm (mn x mn)"))
    out += [
        written("dXinv_dX", G, MATMAT,
                [Claim("X: n x n invertible", "vecjac", "inv(X)", "-kron(inv(X), inv(X)')", "X")],
                "notes part 1 §7 with notes part 3 §3", "vec(dF) = -(X^-T kron X^-1) vec(dX)"),
        written("dsigma_dX", G, MATMAT,
                [Claim("X: m x n", "vecjac", "sigma(X)", "diag(vec(sigma(X) .* (matrix(1) - sigma(X))))", "X")],
                "notes part 1 §7.3", "mn x mn, diagonal"),
    ]

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
