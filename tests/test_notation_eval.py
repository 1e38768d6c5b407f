"""Dimension analysis before any number, and torch evaluation against hand-written torch."""

import pytest
import torch

from handgrad.notation import NotationError, ShapeChecker, Size, evaluate, parse, show
from handgrad.notation.shapes import size


def shape_of(text, **decl):
    env = {k: (size(v[0]), size(v[1])) for k, v in decl.items()}
    checker = ShapeChecker(env)
    e = parse(text, set(env))
    checker.infer(e)
    return show(checker.shape(e))


def shape_error(text, **decl):
    with pytest.raises(NotationError) as info:
        shape_of(text, **decl)
    return info.value.message


def test_non_conforming_product_names_the_subexpression():
    assert shape_error("tr(X' * y)", X=(7, 3), y=(3, 1)) == "X' * y: (3 x 7) * (3 x 1) do not conform"
    msg = shape_error("a'*X*(A + B)", a=("m", 1), X=("m", "n"), A=("n", "n"), B=("m", "m"))
    assert msg == "A + B: (n x n) + (m x m) do not conform"


@pytest.mark.parametrize("text, decl, want", [
    ("X'*y", dict(X=("n", "d"), y=("n", 1)), "(d x 1)"),
    ("a'*X*b", dict(a=("m", 1), X=("m", "n"), b=("n", 1)), "(1 x 1)"),
    ("x'*vector(1)", dict(x=("n", 1)), "(1 x 1)"),
    ("eye*X", dict(X=("n", "m")), "(n x m)"),
    ("kron(A, B)", dict(A=("m", "n"), B=(2, "k")), "(2*m x k*n)"),
    ("vec(X)", dict(X=("m", "n")), "(m*n x 1)"),
    ("diag(x)", dict(x=("n", 1)), "(n x n)"),
    ("diag(X)", dict(X=("n", "n")), "(n x 1)"),
    ("2*X + 1", dict(X=("n", "m")), "(n x m)"),
    ("a*X", dict(a=(1, 1), X=("n", "m")), "(n x m)"),
    ("X^-1*y", dict(X=("n", "n"), y=("n", 1)), "(n x 1)"),
    ("(x'*x)^0.5", dict(x=("n", 1)), "(1 x 1)"),
])
def test_shapes(text, decl, want):
    assert shape_of(text, **decl) == want


@pytest.mark.parametrize("text, decl, message", [
    ("tr(X)", dict(X=("m", "n")), "tr(X): X is (m x n), not square"),
    ("inv(X)", dict(X=(3, 5)), "inv(X): X is (3 x 5), not square"),
    ("X^2", dict(X=("m", "n")), "X^2: a matrix power: X is (m x n), not square"),
    ("X^0.5", dict(X=("n", "n")), "a matrix power needs an integer exponent"),
    ("X / Y", dict(X=("n", "n"), Y=("n", "n")), "/ divides by a scalar only"),
    ("a + X", dict(a=(1, 1), X=("n", "n")), "write a*vector(1) (or matrix(1)) to broadcast"),
    ("x .* y", dict(x=("n", 1), y=("m", 1)), "x .* y: (n x 1) .* (m x 1) do not conform"),
    ("vector(x)", dict(x=("n", 1)), "the fill value x is (n x 1), not a scalar"),
])
def test_shape_errors(text, decl, message):
    assert message in shape_error(text, **decl)


def test_sizes_show():
    assert str(Size(1, ("m", "n"))) == "m*n" and str(Size(3)) == "3" and str(Size(2, ("n",))) == "2*n"


G = torch.Generator().manual_seed(7)


def rnd(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float64)


X, A, B, S = rnd(4, 4), rnd(4, 4), rnd(3, 2), rnd(4, 4)
x, y, w, M = rnd(4, 1), rnd(4, 1), rnd(2, 1), rnd(4, 2)
S = S @ S.T + torch.eye(4, dtype=torch.float64)
V = dict(X=X, A=A, B=B, S=S, x=x, y=y, w=w, M=M, c=torch.tensor(0.7, dtype=torch.float64))


@pytest.mark.parametrize("text, reference", [
    ("tr(X'*A*X) + logdet(S)", lambda: torch.trace(X.T @ A @ X) + torch.logdet(S)),
    ("log(|S|)", lambda: torch.log(torch.det(S))),
    ("logdet(X)", lambda: torch.log(torch.abs(torch.det(X)))),
    ("inv(S)*A", lambda: torch.inverse(S) @ A),
    ("A*S^-1", lambda: A @ torch.inverse(S)),
    ("X^3", lambda: X @ X @ X),
    ("X.^2 ./ (1 + A.^2)", lambda: X ** 2 / (1 + A ** 2)),
    ("a_exp := x'*exp(M*w)", None),
    ("x'*exp(M*w)", lambda: x.T @ torch.exp(M @ w)),
    ("norm2(M*w - x)^2", lambda: ((M @ w - x) ** 2).sum()),
    ("norm1(x)", lambda: x.abs().sum()),
    ("sum(softplus(M*w)) - x'*M*w", lambda: torch.log1p(torch.exp(M @ w)).sum() - x.T @ M @ w),
    ("sigma(x) .* (1 - sigma(x))", lambda: torch.sigmoid(x) * (1 - torch.sigmoid(x))),
    ("diag(x)", lambda: torch.diag(x[:, 0])),
    ("diag(X)", lambda: torch.diagonal(X).reshape(-1, 1)),
    ("kron(B', M)", lambda: torch.kron(B.T.contiguous(), M)),
    ("vec(M)", lambda: M.T.reshape(-1, 1)),
    ("kron(B, A)*vec(M) - vec(A*M*B')", lambda: torch.zeros(12, 1, dtype=torch.float64)),  # vec(AXB)
    ("c*X + x'*y*matrix(1)", lambda: 0.7 * X + (x.T @ y)),
    ("eye*x + vector(2)", lambda: x + 2),
    ("x'*y/c", lambda: x.T @ y / 0.7),
    ("tanh(x) + sin(x) - cos(x) + abs(x) .* sign(x) + relu(x) + sqrt(exp(x))",
     lambda: torch.tanh(x) + torch.sin(x) - torch.cos(x) + x.abs() * torch.sign(x) + torch.relu(x)
     + torch.exp(x).sqrt()),
])
def test_evaluation_matches_hand_written_torch(text, reference):
    if reference is None:
        with pytest.raises(NotationError):
            parse(text)
        return
    got = evaluate(text, V)
    want = torch.as_tensor(reference(), dtype=torch.float64)
    assert got.dtype == torch.float64 and got.dim() == 2
    torch.testing.assert_close(got, want.reshape(got.shape), rtol=1e-12, atol=1e-12)


def test_differentials_and_inputs_in_any_rank():
    dX = rnd(4, 4)
    got = evaluate("tr(dX'*A*X + X'*A*dX) + tr(dA)", {"X": X, "A": A}, {"X": dX})  # dA = 0: a constant
    torch.testing.assert_close(got[0, 0], torch.trace(dX.T @ A @ X + X.T @ A @ dX))
    v = torch.arange(3.0)
    assert evaluate("v'*v", {"v": v}).shape == (1, 1)          # 1-D input is a column
    assert evaluate("s*v", {"s": torch.tensor(2.0), "v": v})[2, 0] == 4.0  # 0-d is a scalar


def test_magnitude_counts_cancelling_terms():
    from handgrad.notation import Evaluator
    e = parse("1e6*x'*y - 1e6*x'*y + x'*y", {"x", "y"})
    checker = ShapeChecker({"x": (size(4), size(1)), "y": (size(4), size(1))})
    checker.infer(e)
    ev = Evaluator(checker, {"x": x, "y": y})
    assert float(ev.magnitude(e)) >= 2e6 * float(x.abs().T @ y.abs())


def test_tangent_magnitude_is_never_negative_under_a_minus():
    """The scale of a derivative's terms: |dx| for -x'*x's terms, not -|dx| (a negative scale
    made the tolerance negative, so a correct read-off of a loss written -sum(...) failed)."""
    from handgrad.notation import Evaluator
    e = parse("-(x'*y) - x'*x", {"x", "y"})
    checker = ShapeChecker({"x": (size(4), size(1)), "y": (size(4), size(1))})
    checker.infer(e)
    dx = torch.randn(4, 1, dtype=torch.float64)
    ev = Evaluator(checker, {"x": x, "y": y}, {"x": dx})
    tm = float(ev.tangent_magnitude(e))
    want = float(dx.abs().T @ y.abs()) + 2 * float(dx.abs().T @ x.abs())  # |dx'y| + |dx'x| + |x'dx|
    assert tm == pytest.approx(want)


def test_logsumexp_and_softmax_work_column_by_column_like_scipy():
    """The notes' softmax regression applies softmax to each column z; scipy is the reference."""
    import numpy as np
    from scipy.special import logsumexp, softmax

    from handgrad.notation import parse_text, verify

    assert shape_of("logsumexp(Z)", Z=("K", "n")) == "(1 x n)"
    assert shape_of("softmax(Z)", Z=("K", "n")) == "(K x n)"
    Z = np.random.default_rng(0).normal(size=(4, 6)) * 30  # large logits: the max is subtracted
    rep = verify(parse_text("let Z: 4 x 6\nwrt Z\nf = sum(logsumexp(Z))\ngrad Z = softmax(Z)\n"),
                 inputs=[{"Z": torch.tensor(Z)}])  # the given point and 2 perturbations of it
    assert rep["ok"], rep["readoff"]
    from handgrad.notation.evaluate import Evaluator
    from handgrad.notation.shapes import ShapeChecker
    env = {"Z": (size(4), size(6))}
    checker = ShapeChecker(env)
    for text, ref in (("logsumexp(Z)", logsumexp(Z, axis=0)[None, :]), ("softmax(Z)", softmax(Z, axis=0))):
        e = parse(text, set(env))
        checker.infer(e)
        got = Evaluator(checker, {"Z": torch.tensor(Z)}).value(e).numpy()
        assert np.allclose(got, ref, rtol=1e-13, atol=0)
    # row-wise softmax: the layout slip the notes warn about
    wrong = verify(parse_text("let Z: 4 x 6\nwrt Z\nf = sum(logsumexp(Z))\ngrad Z = softmax(Z')'\n"))
    assert not wrong["ok"] and wrong["readoff"][0]["verdict"] == "failed"
