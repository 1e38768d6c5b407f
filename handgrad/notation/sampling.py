"""Inputs and directions the verifier draws from the declarations.

Two private torch.Generator streams, seeded with fixed constants that no user code uses
(a user's ``inputs(seed)`` draws from ``manual_seed(k)`` for small k): one for sizes and
points, one for directions, so a direction is never a function of the point.

Points are generic: non-symmetric unless declared, well-conditioned and away from
measure-zero sets (no orthogonal, symmetric or zero values by accident):

    (none)       randn                        invertible   randn/sqrt(n) + 2 I (*)
    sym          (B + B^T)/2                  spd          B B^T / n + I
    orthogonal   Q of a QR, signs fixed       diagonal     diag(randn)  (invertible: |d| >= 0.5)
    positive     exp(randn) entrywise         sym + invertible: (B + B^T)/(2 sqrt(n)) + 2 I (*)
    onehot       a one in a random column of each row (labels), zeros elsewhere;
                 a column vector: a one in a random row (one label)
    lower        tril(randn, -1)/sqrt(n) + diag(d), |d| >= 0.5 (positive: d = exp(randn))

(*) at every other point one row (symmetric: one eigenvalue) is negated, so det < 0 is
drawn as often as det > 0.  A draw where f is not defined is replaced by the verifier
(handgrad.notation.verify), which says so.

Directions stay in the set a variable lives in: lower triangular for lower, symmetric for
sym/spd, diagonal for diagonal, X K with K skew for orthogonal, randn otherwise.
"""

from __future__ import annotations

import torch

from handgrad.notation.evaluate import DTYPE
from handgrad.notation.textfile import Decl

INPUT_SEED = 0x68616E64      # "hand": points and sizes
DIRECTION_SEED = 0x67726164  # "grad": directions
PERTURB_SEED = 0x6E6F7465    # "note": perturbations of given points


def draw_sizes(letters: list[str], gen: torch.Generator, low: int = 2, high: int = 6) -> dict[str, int]:
    """Distinct sizes for distinct letters (so a product that needs n = m never conforms)."""
    pool = list(range(low, max(high, low + len(letters) - 1) + 1))
    order = torch.randperm(len(pool), generator=gen).tolist()
    return {k: pool[i] for k, i in zip(letters, order)}


def _randn(shape, gen):
    return torch.randn(*shape, generator=gen, dtype=DTYPE)


def _negate_one(x: torch.Tensor, gen: torch.Generator, sym: bool = False) -> torch.Tensor:
    """x with the sign of its determinant flipped, as generic as x: one row negated (a
    symmetric x: one eigenvalue negated, so it stays symmetric)."""
    n = x.shape[0]
    i = int(torch.randint(0, n, (1,), generator=gen))
    if sym:
        lam, v = torch.linalg.eigh(x)
        lam = lam.clone()
        lam[i] = -lam[i]
        return (v * lam) @ v.mT
    s = torch.ones(n, 1, dtype=x.dtype)
    s[i] = -1
    return s * x


def draw_value(decl: Decl, sizes: dict[str, int], gen: torch.Generator,
               negative_det: bool | None = None) -> torch.Tensor:
    """A generic value for the declaration.  ``negative_det``: for an invertible (not
    definite, not triangular) square matrix, whether its determinant is negative; None
    draws the sign.  The verifier alternates it from point to point, so both signs are
    always drawn: |det X| written for det X, or log(det(X)) for logdet(X), is caught."""
    r, c = (d.value(sizes) for d in decl.shape)
    p = decl.props
    x = _draw(decl, r, c, p, gen)
    flip = ("invertible" in p and not p & {"spd", "positive", "diagonal", "lower", "orthogonal"}
            and r == c)
    if flip:
        neg = bool(torch.randint(0, 2, (1,), generator=gen)) if negative_det is None else negative_det
        if neg:
            x = _negate_one(x, gen, sym="sym" in p)
    return x


def _draw(decl: Decl, r: int, c: int, p, gen: torch.Generator) -> torch.Tensor:
    if "onehot" in p:
        if c == 1 and r > 1:  # a one-hot column vector (one label): a one in a random row
            return torch.nn.functional.one_hot(torch.randint(0, r, (1,), generator=gen), r).to(DTYPE).mT
        cls = torch.randint(0, c, (r,), generator=gen)
        return torch.nn.functional.one_hot(cls, c).to(DTYPE)
    if "spd" in p:
        b = _randn((r, r), gen)
        return b @ b.mT / r + torch.eye(r, dtype=DTYPE)
    if "orthogonal" in p:
        q, rr = torch.linalg.qr(_randn((r, r), gen))
        return q * torch.sign(torch.diagonal(rr)).reshape(1, -1)
    if "lower" in p:
        m = torch.tril(_randn((r, r), gen), -1) / r ** 0.5
        d = _randn((r,), gen)
        d = d.exp() if "positive" in p else torch.sign(d) * (0.5 + d.abs())
        return m + torch.diag(d)
    if "diagonal" in p:
        d = _randn((r,), gen)
        if "positive" in p:
            d = d.exp()
        elif "invertible" in p:
            d = torch.sign(d) * (0.5 + d.abs())
        return torch.diag(d)
    if "sym" in p:
        b = _randn((r, r), gen)
        s = (b + b.mT) / 2
        if "positive" in p:
            return s.exp()
        if "invertible" in p:
            return s / r ** 0.5 + 2 * torch.eye(r, dtype=DTYPE)
        return s
    if "positive" in p:
        return _randn((r, c), gen).exp()
    if "invertible" in p:
        return _randn((r, r), gen) / r ** 0.5 + 2 * torch.eye(r, dtype=DTYPE)
    return _randn((r, c), gen)


def draw_direction(decl: Decl, value: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    r, c = value.shape
    b = _randn((r, c), gen)
    p = decl.props
    if "lower" in p:
        return torch.tril(b)
    if "diagonal" in p:
        return torch.diag(torch.diagonal(b))
    if "sym" in p or "spd" in p:
        return (b + b.mT) / 2
    if "orthogonal" in p:
        return value @ ((b - b.mT) / 2)
    return b


def perturb(decl: Decl, value: torch.Tensor, gen: torch.Generator, shrink: float = 1.0) -> torch.Tensor:
    """A random generic point near a given one, still satisfying the declared properties
    (``shrink`` < 1: closer, when a farther move left the domain of f)."""
    r, c = value.shape
    s = 0.3 * shrink * max(value.pow(2).mean().sqrt().item(), 0.3)
    b = _randn((r, c), gen)
    p = decl.props
    if "spd" in p:
        return value + s * b @ b.mT / r
    if "orthogonal" in p:
        q, rr = torch.linalg.qr(value + s * b)
        return q * torch.sign(torch.diagonal(rr)).reshape(1, -1)
    if "positive" in p:
        return (value * (0.3 * shrink * b).exp() if "sym" not in p
                else value * (0.15 * shrink * (b + b.mT)).exp())
    if "diagonal" in p:
        return value + s * torch.diag(torch.diagonal(b))
    if "sym" in p:
        return value + s * (b + b.mT) / 2
    return value + s * b
