"""Least-squares designs whose exact answer is certified, for the accuracy tests.

Two families, both polynomial regression y = c_1 x + ... + c_k x^k + c_0 on a narrow x
range (the design's columns are x, x^2, ..., x^k and the intercept):

* ``exact_polynomial``: integer x and small integer c_j chosen so that every power
  x^j and every y_i is an integer that float64 represents exactly.  The
  system is consistent, so the exact least-squares answer IS the polynomial's
  coefficients.  ``certify_exact`` re-checks this in integer arithmetic.
* ``rounded_polynomial``: real x on a narrower range (condition up to ~1e15); the
  columns and y are rounded to float64 and y gets a small perturbation, so the answer
  is the exact least-squares solution of the data as stored, computed here in rational
  arithmetic (``exact_solution``), never by the code under test.

Run ``python -m tests.ls_designs`` for the table of digits per solver and condition.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

from handgrad.fitting.data import Data


def _columns(x: np.ndarray, degree: int) -> np.ndarray:
    return np.stack([x ** k for k in range(1, degree + 1)], axis=1)


def exact_polynomial(degree: int, lo: int, hi: int, seed: int, repeat: int = 1):
    """Integer x in [lo, hi] (each `repeat` times); returns (X, y, coefficients c_1..c_k, c_0)."""
    rng = np.random.default_rng(seed)
    xs = np.repeat(np.arange(lo, hi + 1), repeat)
    for _ in range(1000):
        c = [int(v) for v in rng.choice([-3, -2, -1, 1, 2, 3], size=degree + 1)]
        ys = [sum(c[k - 1] * int(x) ** k for k in range(1, degree + 1)) + c[degree] for x in xs]
        if all(int(float(v)) == v for v in ys):  # every y_i representable in float64
            break
    else:  # pragma: no cover - the search space is large
        raise RuntimeError("no representable polynomial found")
    X = _columns(xs.astype(np.float64), degree)
    y = np.array(ys, dtype=np.float64)
    return X, y, np.array(c, dtype=np.float64)


def certify_exact(X: np.ndarray, y: np.ndarray, coef: np.ndarray) -> bool:
    """Integer arithmetic: the stored floats equal the exact powers and y = A c exactly."""
    xs = [int(v) for v in X[:, 0]]
    c = [int(v) for v in coef]
    for i, x in enumerate(xs):
        if any(int(X[i, k - 1]) != x ** k or float(x ** k) != X[i, k - 1]
               for k in range(1, X.shape[1] + 1)):
            return False
        exact = sum(c[k - 1] * x ** k for k in range(1, X.shape[1] + 1)) + c[-1]
        if float(exact) != y[i] or int(y[i]) != exact:
            return False
    return True


def rounded_polynomial(degree: int, a: float, h: float, n: int, seed: int, noise: float = 1e-6):
    """x uniform on [a, a + h]; y = p(x) (1 + noise * N(0, 1)) rounded to float64."""
    rng = np.random.default_rng(seed)
    x = np.sort(a + h * rng.random(n))
    c = rng.choice([-1.0, 1.0], size=degree + 1) * rng.uniform(0.5, 2.0, size=degree + 1)
    X = _columns(x, degree)
    y = X @ c[:-1] + c[-1]
    y = y * (1 + noise * rng.standard_normal(n))
    return X, y


def exact_solution(X: np.ndarray, y: np.ndarray, intercept: bool = True) -> np.ndarray:
    """The exact least-squares solution of the stored floats (rational Gaussian elimination
    on the normal equations, exact because nothing is rounded), rounded to float64."""
    rows = [[Fraction(float(v)) for v in r] + ([Fraction(1)] if intercept else []) for r in X]
    ys = [Fraction(float(v)) for v in y]
    p = len(rows[0])
    G = [[sum(r[i] * r[j] for r in rows) for j in range(p)] for i in range(p)]
    b = [sum(r[i] * t for r, t in zip(rows, ys)) for i in range(p)]
    for k in range(p):  # G is symmetric positive definite: no pivoting needed in exact arithmetic
        for i in range(k + 1, p):
            f = G[i][k] / G[k][k]
            for j in range(k, p):
                G[i][j] -= f * G[k][j]
            b[i] -= f * b[k]
    sol = [Fraction(0)] * p
    for k in reversed(range(p)):
        sol[k] = (b[k] - sum(G[k][j] * sol[j] for j in range(k + 1, p))) / G[k][k]
    return np.array([float(v) for v in sol])


def digits(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Correct significant digits of the worst coefficient: -log10 max_j |e_j - t_j| / |t_j|."""
    est = np.asarray(estimate, dtype=np.float64)
    rel = np.abs(est - truth) / np.abs(truth)
    worst = float(np.max(rel)) if np.all(np.isfinite(rel)) else math.inf
    return 16.0 if worst == 0 else max(0.0, -math.log10(worst))


def as_data(X: np.ndarray, y: np.ndarray) -> Data:
    names = [f"x{k}" for k in range(1, X.shape[1] + 1)]
    return Data(torch.from_numpy(X.copy()), torch.from_numpy(y.copy()), names, "y")


# The designs of the accuracy tests: (label, degree, range, seed).
EXACT = [("deg6 x=64..128", 6, 64, 128, 0), ("deg8 x=32..64", 8, 32, 64, 1),
         ("deg9 x=16..32", 9, 16, 32, 2), ("deg10 x=16..32", 10, 16, 32, 3),
         ("deg10 x=20..36", 10, 20, 36, 4), ("deg10 x=24..40", 10, 24, 40, 5)]
ROUNDED = [("deg5 x~U[10,11]", 5, 10.0, 1.0, 6), ("deg7 x~U[2,3]", 7, 2.0, 1.0, 7),
           ("deg10 x~U[1,2]", 10, 1.0, 1.0, 8), ("deg10 x~U[2,3]", 10, 2.0, 1.0, 9),
           ("deg8 x~U[5,6]", 8, 5.0, 1.0, 10), ("deg10 x~U[3,4]", 10, 3.0, 1.0, 11)]


def table() -> None:  # pragma: no cover - a report, not a test
    import warnings

    from handgrad.models.least_squares import closed_form
    warnings.simplefilter("ignore")
    methods = ("closed", "qr", "svd", "normal")
    print(f"{'design':<18} {'cond(scaled)':>12} {'cond(raw)':>10} "
          + " ".join(f"{m:>7}" for m in methods) + "  refine")
    cases = []
    for label, deg, lo, hi, seed in EXACT:
        X, y, c = exact_polynomial(deg, lo, hi, seed)
        assert certify_exact(X, y, c)
        cases.append((label + " (exact)", X, y, c))
    for label, deg, a, h, seed in ROUNDED:
        X, y = rounded_polynomial(deg, a, h, 60, seed)
        cases.append((label, X, y, exact_solution(X, y)))
    for label, X, y, truth in cases:
        data = as_data(X, y)
        got, info = {}, {}
        for m in methods:
            p, extra = closed_form(data, intercept=True, method=m)
            got[m] = digits(np.append(p["w"].numpy(), p["b"].item()), truth)
            if m == "closed":
                info = extra
        print(f"{label:<26} {info['condition']:>10.2e} {info['condition_unscaled']:>10.2e} "
              + " ".join(f"{got[m]:>7.1f}" for m in methods) + f"  {info['refinement_steps']}")


if __name__ == "__main__":
    table()
