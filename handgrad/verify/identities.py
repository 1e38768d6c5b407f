"""The matrix-calculus catalog the notes teach, each entry checked numerically.

Every entry is written in the notation (:func:`written`): one-line claims
(handgrad.notation.claims) whose text and LaTeX are printed from the parsed trees that are
evaluated, at points and sizes handgrad draws, against torch.func (jvp for differentials,
grad for scalar-by-matrix results, jacrev for Jacobians and matrix-by-matrix derivatives,
grad and hessian at a claimed minimiser) or the other side of an equality.  A rule about
an abstract f or chain (the chain rules, the gradient's definition) is checked on an
instance: its intermediate results named subexpressions, the note says which.  Inputs are
random, non-symmetric and (where it matters) non-square: a symmetric or square test matrix
hides a missing transpose.

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

from dataclasses import dataclass

from handgrad.notation.claims import Claim

DENOM = "denominator: the gradient has the shape of the variable"
NUMER = "numerator: Jacobian dy/dx is m x n (rows follow y), as torch.func.jacrev"
MATMAT = "denominator, via vec: dF/dX is mn x pq (X m x n, F p x q), vec(dF) = (dF/dX)^T vec(dX)"
NONE = "none: an equality of matrices (no derivative is laid out)"
ARGMIN = "none: a minimiser, shaped like its variable (no derivative is laid out)"
DIFF = "none: an equality of differentials (same shape as the function's value)"

GROUPS = ("differential rules", "trace tricks", "worked results", "chain rules", "layouts",
          "vec and Kronecker")


@dataclass(frozen=True)
class Identity:
    """One entry, written in the notation (``claims``): its text and LaTeX are printed from
    the parsed claims and checked by handgrad.notation.claims."""

    key: str
    group: str
    text: str
    latex: str
    layout: str
    reference: str  # what the claim is checked against
    source: str = ""  # where the notes state it
    claims: tuple = ()  # handgrad.notation.claims.Claim, one or more
    note: str = ""  # a remark printed beside the formula (free text, like a .hg comment)


_REFERENCE = {"equal": "both sides evaluated", "d": "torch.func.jvp", "grad": "torch.func.grad",
              "gradT": "transpose of torch.func.grad", "hess": "torch.func.hessian",
              "jac": "torch.func.jacrev", "jacT": "transpose of torch.func.jacrev",
              "vecjac": "transpose of torch.func.jacrev of vec(F) by vec(X)",
              "argmin": "torch.func.grad (0 there) and torch.func.hessian (positive curvature) at the minimiser"}


def written(key: str, group: str, layout: str, claims, source: str, note: str = "") -> Identity:
    """An entry written in the notation: text and LaTeX from the parsed claims."""
    from handgrad.notation.claims import Parsed

    claims = tuple(claims)
    parsed = [Parsed(c) for c in claims]
    ref = ", ".join(dict.fromkeys(_REFERENCE[c.kind] for c in claims))
    return Identity(key, group, ";  ".join(p.text() for p in parsed),
                    ",\\quad ".join(p.latex() for p in parsed), layout, ref, source,
                    claims, note)


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

    ls = "X: 7 x d; y: 7; w: d"
    out.append(written(
        "least_squares_solution", G, ARGMIN,
        [Claim(ls, "argmin", "norm2(X*w - y)^2", "inv(X'*X)*X'*y", "w")],
        "notes part 1 §5.6 ex. 3 (notes part 3 writes (X X^T)^-1: see errata)",
        "the normal equations: the gradient 2 X'(X w - y) vanishes at w* and the curvature 2 X'X is "
        "positive (X 7 x d, d < 7: full column rank)"))
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

    out.append(written(
        "gaussian_mle", G, ARGMIN,
        [Claim("X: 9 x d; Sigma: d x d spd; one = vector(1); N = one'*one; C = X - one*one'*X/N", "argmin",
               "logdet(Sigma) + tr(inv(Sigma)*C'*C)/N", "C'*C/N", "Sigma")],
        "notes part 3 §6 ex. 5 (the notes drop the sum: see errata)",
        "the rows of X are the samples x_i', C = X - 1 xbar' their centred rows, so "
        "C'C/N = (1/N) sum_i (x_i - xbar)(x_i - xbar)'; Sigma ranges over symmetric positive definite "
        "matrices"))
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
    """The chain rules for an abstract f or chain, each checked on an instance: the
    intermediate results are named subexpressions, the claimed derivative is the rule's
    product of their derivatives, written out."""
    G = "chain rules"
    return [
        written("chain_scalar_vectors", G, "gradients denominator, Jacobian numerator (m x n)",
                [Claim("A: m x n; c: m; x: n; y = tanh(A*x)", "grad", "c'*y + y'*y",
                       "(diag(vector(1) - y.^2)*A)'*(c + 2*y)", "x")],
                "notes part 1 §4.4",
                "x -> y -> z (z scalar): dz/dx = (dy/dx)' dz/dy, here dy/dx = diag(1 - y.^2) A (m x n), "
                "dz/dy = c + 2 y"),
        written("chain_many_vectors", G, "gradients denominator, Jacobians numerator",
                [Claim("A1: m x n; A2: p x m; x: n; y1 = A1*x; y2 = tanh(y1); y3 = A2*y2", "grad", "y3'*y3",
                       "(A2*diag(vector(1) - y2.^2)*A1)'*(2*y3)", "x")],
                "notes part 1 §4.4",
                "x -> y1 -> y2 -> y3 -> z: dz/dx = (dy3/dy2 dy2/dy1 dy1/dx)' dz/dy3, the Jacobians "
                "A2, diag(1 - y2.^2), A1"),
        written("chain_vector_vector", G, NUMER,
                [Claim("A: m x n; B: p x m; x: n; y = tanh(A*x)", "jac", "sin(B*y)",
                       "diag(cos(B*y))*B*diag(vector(1) - y.^2)*A", "x")],
                "notes part 1 §6.2",
                "x -> y -> z (vectors): dz/dx = (dz/dy)(dy/dx), p x m times m x n"),
        written("chain_AXB", G, DENOM,
                [Claim("A: p x m; X: m x n; B: n x q; Y = A*X*B", "grad", "sum(sin(Y)) + sum(Y.^2)",
                       "A'*(cos(Y) + 2*Y)*B'", "X")],
                "notes part 3 §5", "Y = AXB, f scalar: df/dX = A' (df/dY) B', here df/dY = cos(Y) + 2 Y"),
        written("chain_scalar_of_scalar", G, DENOM,
                [Claim("A: m x n; g = tr(A'*A)", "grad", "log(g)", "(1/g)*(2*A)", "A")],
                "notes part 3 §5", "f(g(A)) with f, g scalar: df/dA = (df/dg) dg/dA, here f = log, "
                "dg/dA = 2 A"),
    ]


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

    out.append(written(
        "dAx_dxj", G, "vector by scalar: m x 1 (numerator)",
        [Claim("A: m x n; x: n; e: 1 x n onehot; t: scalar", "d", "A*(x + t*e')", "A*e'*dt", "t")],
        "notes part 1 §6.1 (the notes write A: see errata)",
        "a derivative by one scalar: x_j moved by t (e = e_j', one-hot), so d(Ax)/dx_j = A e_j = "
        "A[:, j], column j of A, an m-vector"))
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

    out += [
        written("gradient_definition", G, DENOM,
                [Claim("X: m x n", "d", "tr(X'*X*X'*X)", "tr((4*X*X'*X)'*dX)", "X")],
                "notes part 1 §5.2; notes part 3 §2.2",
                "df = tr((df/dX)' dX) is what makes df/dX the gradient, shaped like X; here "
                "f = tr(X'X X'X), df/dX = 4 X X'X"),
        written("gradient_definition_vector", G, DENOM,
                [Claim("A: m x n; x: n", "d", "sum(sin(A*x))", "(A'*cos(A*x))'*dx", "x")],
                "notes part 1 §4.3 (notes part 3 §2.1 drops the transpose: see errata)",
                "df = (df/dx)' dx, df/dx a column (n x 1); here df/dx = A' cos(A x)"),
    ]
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

    xax = "X: n x n; A: n x n"
    dF = "kron(A*X, eye(n)) + kron(eye(n), (X*A)')"
    out.append(written(
        "vec_dF", G, MATMAT,
        [Claim(xax, "d", "vec(X*A*X)", f"({dF})'*vec(dX)", "X"), Claim(xax, "vecjac", "X*A*X", dF, "X")],
        "notes part 1 §7.2",
        "vec(dF) = (dF/dX)' vec(dX); F = XAX: dF = dX A X + X A dX, so vec(dF) = ((AX)' kron I + "
        "I kron XA) vec(dX)"))
    return out


CATALOG: list[Identity] = (_differential_rules() + _trace_tricks() + _worked_results()
                           + _chain_rules() + _layouts() + _vec_kron())
