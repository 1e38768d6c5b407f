"""Checks at the fit boundary that need the model, the dtype or the fitted parameters.

Data-file checks (NaN/inf naming row and column, shapes, empty data, CSV faults, labels)
live in handgrad/data.py; config checks in handgrad/config.py and cli.py.  What is here:

- ``from_arrays``: the Python-API door, the same validation as a loaded file.
- ``check_tol`` and ``check_dtype_range``: a tolerance that can be met; data that still
  fits after the cast to the requested dtype (1e39 is inf in float32).
- ``scale_problem`` and ``preflight``: features so large (or so far apart in scale) that the
  loss or gradient overflows, or the tolerance cannot be met -> a remedy (standardize).
- ``separation``: perfect separation in a classifier fitted without L2 -> the MLE does
  not exist; say so and suggest --l2.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from handgrad.contract import Role
from handgrad.errors import UserError
from handgrad.fitting.data import Data, validate_arrays

BIG = 1e10  # a column whose largest |value| exceeds this is reported as ill-scaled
SPREAD = 1e12  # ... as is a largest/smallest column-magnitude ratio above this
QUASI_TRIGGER = 15.0  # |logit| beyond which a fitted probability is within 3e-7 of 0 or 1
QUASI_MAX_CELLS = 5_000_000  # the exact (linear-programming) test runs up to n * p cells


def from_arrays(X, y=None, feature_names: list[str] | None = None, target: str = "y",
                source: str = "arrays") -> Data:
    """Build a :class:`Data` from numpy arrays / lists / tensors, validated like a file."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    Xa, ya = validate_arrays(X, y, feature_names, target)
    names = list(feature_names or [])
    if names and len(names) != Xa.shape[1]:
        raise UserError(f"{len(names)} feature names given for {Xa.shape[1]} columns of X.")
    return Data(torch.from_numpy(np.ascontiguousarray(Xa)),
                None if ya is None else torch.from_numpy(ya), names, target, source=source)


def check_tol(tol: float | None) -> None:
    if tol is not None and not (math.isfinite(tol) and tol > 0):
        raise UserError(f"--tol must be a finite number > 0; got {tol}.")


def check_dtype_range(data: Data, dtype: torch.dtype) -> None:
    """After the cast: a value beyond the dtype's range became inf; name it.  Loaders and
    from_arrays have already checked the values are finite in float64, so only a narrowing
    cast can make one infinite: for float64 there is nothing to scan again."""
    if dtype == torch.float64:
        return
    for name, t in (("X", data.X), (data.target or "y", data.y)):
        if t is None or not t.is_floating_point() or bool(torch.isfinite(t).all()):
            continue
        idx = torch.nonzero(~torch.isfinite(t))[0].tolist()
        # CSV rows are counted from 1 (as in the loader's messages), array rows from 0
        row = idx[0] + 1 if str(data.source).lower().endswith(".csv") else idx[0]
        where = f"row {row}" + (f", column {data.feature_names[idx[1]]!r}"
                                   if len(idx) > 1 and idx[1] < len(data.feature_names) else "")
        raise UserError(
            f"Input {name} has a value ({where}) beyond the range of {_dtype_name(dtype)} "
            f"(max {torch.finfo(dtype).max:.3g}); use --dtype float64 or rescale the column.")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def rescale_remedy() -> str:
    """The remedy for ill-scaled features (fit's --standardize, standardize=True in the API)."""
    return "standardize the columns (--standardize)"


def column_magnitudes(data: Data) -> torch.Tensor:
    """max_i |x_ij| per column, in row blocks of about 4 MB: |X| is never formed whole (an
    n x d temporary costs more in fresh pages than the pass itself)."""
    X = data.X.detach()
    step = max(1, (4 << 20) // max(1, X.shape[1] * X.element_size()))
    out = X.new_zeros(X.shape[1])  # |x| >= 0; a NaN still propagates through maximum
    for i in range(0, X.shape[0], step):
        torch.maximum(out, X[i:i + step].abs().amax(dim=0), out=out)
    return out.to(torch.float64).cpu()


def scale_problem(data: Data) -> str | None:
    """A one-line description of extreme or widely spread feature magnitudes, else None."""
    mags = column_magnitudes(data)
    if mags.numel() == 0:
        return None
    j = int(mags.argmax())
    hi = mags[j].item()
    nz = mags[mags > 0]
    lo_j = int(torch.nonzero(mags == nz.min())[0]) if nz.numel() else j
    lo = mags[lo_j].item()
    names = data.feature_names
    if hi > BIG:
        return (f"column {names[j]!r} reaches |x| = {hi:.3g}; at that scale the gradient "
                "tolerance cannot be met and the Hessian is ill-conditioned")
    if lo > 0 and hi / lo > SPREAD:
        return (f"column magnitudes range from {lo:.3g} ({names[lo_j]!r}) to {hi:.3g} "
                f"({names[j]!r}): the Hessian is ill-conditioned")
    return None


def preflight(entry, data: Data, like: dict, hp: dict) -> None:
    """Loss and gradient at the starting point must be finite; if they are not (finite
    data that overflows in the arithmetic), name the largest column and the remedy."""
    from handgrad.params import flatten

    with torch.no_grad():
        f = entry.loss(like, data, **hp)
        g = flatten(entry.gradient(like, data, **hp))
        # the norm overflows before its entries do (|g| = sqrt(sum g^2))
        ok = bool(torch.isfinite(f)) and bool(torch.isfinite(g).all()) and \
            math.isfinite(g.norm().item())
    if ok:
        return
    mags = column_magnitudes(data)
    j = int(mags.argmax())
    raise UserError(
        f"The loss or gradient overflows at the starting point (column "
        f"{data.feature_names[j]!r} reaches |x| = {mags[j].item():.3g}); "
        f"{rescale_remedy()}.")


def separation(entry, params: dict, data: Data, hp: dict) -> str | None:
    """Complete separation of a classifier fitted without L2, certified, else None.

    If the fitted logits put every sample strictly on its own class's side (margin > 0),
    scaling the weights by t > 1 lowers every sample's loss, so the loss -> 0 as t -> inf
    and the maximum-likelihood estimate does not exist (Albert & Anderson, 1984).
    """
    if hp.get("l2", 0.0) > 0 or data.y is None or entry.model.logits is None:
        return None
    if not entry.model.target.classes:
        return None
    with torch.no_grad():
        Z = entry.model.logits(params, data)
        if Z.dim() == 1:
            margin = (2 * data.y.to(Z.dtype) - 1) * Z
        else:
            y = data.y.argmax(dim=1) if data.y.dim() == 2 else data.y.long()
            zt = Z.gather(1, y.unsqueeze(1)).squeeze(1)
            others = Z.scatter(1, y.unsqueeze(1), -math.inf)
            margin = zt - others.amax(dim=1)
    if margin.numel() == 0 or not bool(torch.isfinite(margin).all()):
        return None
    noise = 64 * torch.finfo(Z.dtype).eps * (Z.abs().max().item() + 1.0)
    if margin.min().item() <= noise:
        if Z.dim() == 1 and Z.abs().max().item() > QUASI_TRIGGER:
            return _quasi_separation(entry, params, data)
        return None
    wnorm = math.sqrt(sum(float((v.detach() ** 2).sum()) for k, v in params.items()
                          if entry.model.role(k).penalised))
    return (f"perfect separation: the fitted weights classify all {data.n} samples correctly "
            f"(smallest margin {margin.min().item():.3g}), so the loss -> 0 as |w| -> inf and "
            f"the maximum-likelihood estimate does not exist (|w| = {wnorm:.4g} and growing); "
            "remedy: add an L2 penalty, e.g. --l2 1")


def _quasi_separation(entry, params: dict, data: Data) -> str | None:
    """Quasi-complete separation of a binary target, decided exactly by a linear program:
    is there a direction v = (w, b) with s_i a_i^T v >= 0 for every sample (s_i = +-1 the
    class, a_i = (x_i, 1)) and sum_i s_i a_i^T v = 1?  Then moving along v never raises a
    sample's loss and strictly lowers some, so the MLE does not exist (Albert & Anderson).
    Run only when the fit already shows fitted probabilities at 0 or 1."""
    from scipy.optimize import linprog

    A = data.X.detach().to(torch.float64).cpu().numpy()
    intercept = entry.model.named(Role.INTERCEPT) in params
    if intercept:
        A = np.hstack([A, np.ones((A.shape[0], 1))])
    if A.size > QUASI_MAX_CELLS:
        return None
    s = 2.0 * data.y.detach().to(torch.float64).cpu().numpy() - 1.0
    col = np.abs(A).max(axis=0)
    col[col == 0] = 1.0
    SA = s[:, None] * (A / col)  # column scaling leaves feasibility unchanged
    res = linprog(np.zeros(SA.shape[1]), A_ub=-SA, b_ub=np.zeros(len(s)),
                  A_eq=SA.sum(axis=0, keepdims=True), b_eq=[1.0],
                  bounds=[(None, None)] * SA.shape[1], method="highs")
    if res.status != 0:
        return None
    m = SA @ res.x
    top = np.abs(m).max()
    if top == 0 or m.min() < -1e-10 * top:  # not within rounding of a true separator
        return None
    tied = int((m <= 1e-10 * top).sum())
    names = list(data.feature_names) + (["intercept"] if intercept else [])
    v = res.x / col
    lead = names[int(np.argmax(np.abs(v) * col))]
    return (f"quasi-complete separation: along a direction of the weights (led by {lead!r}) "
            f"no sample is misclassified and {tied} of {data.n} stay on the boundary, so "
            "the loss keeps falling as |w| -> inf and the maximum-likelihood estimate does "
            "not exist (the fitted probabilities of the others are 0 or 1); remedy: add an "
            "L2 penalty, e.g. --l2 1, or drop the separating column")


def fit_choice(entry, solver: str | None, l2: float) -> str:
    """The solver a fit runs (the model's default when None), checked against the model,
    and the L2 penalty checked: one rule for in-memory and chunked/distributed fits."""
    solver = solver or entry.model.default_solver
    if solver not in entry.solvers:
        raise UserError(f"Solver {solver!r} is not available for {entry.name}; "
                        f"choose from: {', '.join(entry.solvers)}.")
    if solver == "newton" and not entry.has_hessian:
        raise UserError(f"{entry.name} has no hand-derived Hessian; use --solver gd.")
    if l2 < 0 or not math.isfinite(l2):
        raise UserError(f"--l2 must be a finite number >= 0; got {l2}.")
    return solver
