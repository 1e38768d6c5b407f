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


def _is_frame(X) -> bool:
    return hasattr(X, "columns") and hasattr(X, "dtypes") and hasattr(X, "to_numpy")


def _is_series(y) -> bool:
    return hasattr(y, "dtype") and hasattr(y, "name") and hasattr(y, "to_numpy") \
        and not hasattr(y, "columns")


def _numeric_dtype(dt) -> bool:
    try:
        return np.issubdtype(np.dtype(dt), np.number) or np.dtype(dt) == bool
    except TypeError:  # pandas extension dtypes (Int64, boolean, string, category)
        return getattr(dt, "kind", "O") in "biuf"


def _frame_to_numpy(X) -> tuple[np.ndarray, list[str]]:
    """A pandas DataFrame's values (float64, NaN where missing) and its column names; a
    text column is named with the remedy."""
    names = [str(c) for c in X.columns]
    text = [n for n, dt in zip(names, X.dtypes) if not _numeric_dtype(dt)]
    if text:
        col = X[X.columns[names.index(text[0])]]
        shown = ", ".join(repr(str(v)) for v in list(col.dropna().unique())[:3])
        raise UserError(f"Column {text[0]!r} of X holds text ({shown}), not numbers: encode it "
                        "(e.g. pandas.get_dummies) or leave it out.")
    return X.to_numpy(dtype=np.float64, na_value=np.nan), names


def _labels(y, target: str, kind) -> tuple[np.ndarray, list | None, str | None]:
    """y as numbers; text labels (a Series or array of strings) become class codes in
    sorted order for a classifier, with the note saying which is which."""
    if _is_series(y) and _numeric_dtype(y.dtype):
        return y.to_numpy(dtype=np.float64, na_value=np.nan), None, None
    a = y.to_numpy() if _is_series(y) else np.asarray(y)
    if a.dtype.kind in "biuf":
        return a, None, None
    missing = [i for i, v in enumerate(a.tolist()) if v is None or (isinstance(v, float) and v != v)]
    if missing:
        raise UserError(f"Target {target!r} has a missing value (row {missing[0]}).")
    vals = sorted({str(v) for v in a.tolist()})
    if kind is None or not kind.classes:
        shown = ", ".join(repr(v) for v in vals[:3])
        raise UserError(f"Target {target!r} holds text ({shown}), not numbers; this model needs "
                        "a numeric target (for class labels use logistic or softmax).")
    if len(vals) < 2:
        raise UserError(f"Target {target!r} has only one class ({vals[0]!r}); need two or more.")
    if kind.value == "binary" and len(vals) > 2:
        raise UserError(f"Target {target!r} has {len(vals)} distinct values "
                        f"({', '.join(map(repr, vals[:6]))}); logistic regression needs two "
                        "classes (use softmax for several).")
    codes = np.searchsorted(np.array(vals, dtype=object), np.array([str(v) for v in a.tolist()],
                                                                   dtype=object)).astype(np.float64)
    shown = ", ".join(f"{v!r} -> {k}" for k, v in enumerate(vals[:6]))
    return codes, vals, f"Target {target!r} re-encoded: {shown}" + (" ..." if len(vals) > 6 else "") + "."


def from_arrays(X, y=None, feature_names: list[str] | None = None, target: str | None = None,
                source: str = "arrays", kind=None) -> Data:
    """Build a :class:`Data` from numpy arrays / lists / tensors / a pandas DataFrame and
    Series, validated like a file.  A DataFrame's column names and a Series' name are kept
    (unless ``feature_names`` / ``target`` are given); text labels in y are re-encoded for
    a classifier (``kind``: the model's Target) and said so in the notes."""
    from handgrad.fitting.data import _from_numpy, check_names

    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if _is_frame(X):
        X, frame_names = _frame_to_numpy(X)
        if feature_names is None:
            feature_names = frame_names
    if target is None:
        target = str(y.name) if _is_series(y) and y.name is not None else "y"
    if feature_names is not None:
        feature_names = [str(v) for v in feature_names]
        d = np.shape(X)[1] if np.ndim(X) == 2 else None
        if d is not None:
            check_names(feature_names, d)
    notes: list[str] = []
    if y is not None:
        y, _, note = _labels(y, target, kind)
        if note:
            notes.append(note)
    Xa, ya = validate_arrays(X, y, feature_names, target)
    return Data(_from_numpy(np.ascontiguousarray(Xa)), None if ya is None else _from_numpy(ya),
                list(feature_names or []), target, source=source, notes=notes)


SCREEN_ROWS = 4096  # rows of the collinearity screen; all rows only to confirm a finding
COLLINEAR = 1e-11  # smallest / largest singular value of the column-scaled design


def dependent_columns(Vt: np.ndarray, rank: int) -> list[int]:
    """The columns a rank-deficient design's null space involves (the right singular
    vectors past ``rank``, of the column-scaled design): those, and only those, are in a
    linear relation; the others are innocent."""
    null = np.asarray(Vt)[rank:]
    weight = np.sqrt((null ** 2).sum(axis=0))
    return [int(j) for j in np.flatnonzero(weight > 1e-6)]


def _null_space(A: np.ndarray):
    """(numerical rank, right singular vectors, column norms) of the column-scaled A.  A = QR
    first, then the SVD of the small R (R = U S V' gives A = (QU) S V': the same S and V),
    about half the time of A's own SVD at 4096 x 100."""
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    B = A / norms
    if B.shape[0] > B.shape[1]:
        B = np.linalg.qr(B, mode="r")
    _, s, Vt = np.linalg.svd(B, full_matrices=False)
    rank = int((s > s[0] * COLLINEAR).sum()) if s[0] > 0 else 0
    return rank, Vt, norms


def collinearity(entry, data: Data, intercept: bool, hp: dict,
                 lohi: tuple[torch.Tensor, torch.Tensor] | None = None) -> str | None:
    """Before a fit without L2: constant columns (beside the intercept; all-zero ones
    without it) and exact linear relations among the columns, named by their own names,
    else None.

    The relation is screened on at most SCREEN_ROWS rows spread over the data: a relation
    that holds on all rows holds on any of them, so a full-rank screen clears the design;
    a relation the screen finds is confirmed on all rows before it is reported.
    ``lohi``: the columns' (min, max) from :func:`column_range`, if already formed."""
    if not screens_collinearity(entry, data, hp):
        return None
    X = data.X.detach()
    names = list(data.feature_names) + (["intercept"] if intercept else [])
    lo, hi = lohi if lohi is not None else column_range(data)
    flat = [j for j in range(data.d) if hi[j] == lo[j] and (intercept or hi[j] == 0)]
    if flat:
        many = len(flat) > 1
        shown = ", ".join(f"{names[j]!r} (= {hi[j].item():.6g})" for j in flat)
        return (f"column{'s' if many else ''} {shown} {'are' if many else 'is'} "
                f"{'constant' if intercept else '0'} in every row: "
                + ("beside the intercept " if intercept else "")
                + f"{'their coefficients are' if many else 'its coefficient is'} not "
                f"identified; leave {'them' if many else 'it'} out (--exclude "
                f"{','.join(names[j] for j in flat)})"
                + (", fit without an intercept," if intercept and not many else "")
                + " or pass --l2 > 0")

    def design(rows):
        A = rows.to(torch.float64).cpu().numpy()
        return np.hstack([A, np.ones((A.shape[0], 1))]) if intercept else A

    step = max(1, data.n // SCREEN_ROWS)
    A = design(X[::step])
    if A.shape[0] < A.shape[1]:
        return None  # fewer rows than columns: the fit's own diagnostics speak
    rank, Vt, norms = _null_space(A)
    if rank == A.shape[1]:
        return None
    if step > 1:
        A = design(X)
        rank, Vt, norms = _null_space(A)
        if rank == A.shape[1]:
            return None
    cols = dependent_columns(Vt, rank)
    if len(cols) < 2:
        return None
    relation = ""
    if A.shape[1] - rank == 1:  # one relation: write the last column through the others
        v = Vt[-1] / norms
        k = cols[-1]
        terms = [f"{-v[j] / v[k]:.6g} * {names[j]}" for j in cols[:-1]]
        relation = f" ({names[k]} = {' + '.join(terms)} in every row)".replace("+ -", "- ")
    drop = names[cols[-1]] if names[cols[-1]] != "intercept" else names[cols[-2]]
    return (f"columns {', '.join(repr(names[j]) for j in cols)} are collinear{relation}: their "
            "coefficients are not identified (the fit returns one of many solutions); leave "
            f"one out (e.g. --exclude {drop}) or pass --l2 > 0")


def screens_collinearity(entry, data: Data, hp: dict) -> bool:
    """Whether :func:`collinearity` looks at the columns (no L2, a coefficient vector)."""
    return not hp.get("l2") and bool(entry.model.coefficient_vector) and data.d > 0


def column_range(data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    """(min_i x_ij, max_i x_ij) per column, on the CPU in X's dtype: one pass over X,
    shared by the collinearity screen and the scale check."""
    lo, hi = torch.aminmax(data.X.detach(), dim=0)
    return lo.cpu(), hi.cpu()


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
        # CSV rows are counted from 1 with their file line (as in the loader's messages),
        # array rows from 0
        row, _, line = data.where(idx[0]).partition(" (")
        where = row + (f", column {data.feature_names[idx[1]]!r}"
                       if len(idx) > 1 and idx[1] < len(data.feature_names) else "")
        where += f"; {line.rstrip(')')}" if line else ""
        raise UserError(
            f"Input {name} has a value ({where}) beyond the range of {_dtype_name(dtype)} "
            f"(max {torch.finfo(dtype).max:.3g}); use --dtype float64 or rescale the column.")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def rescale_remedy() -> str:
    """The remedy for ill-scaled features (fit's --standardize, standardize=True in the API)."""
    return "standardize the columns (--standardize)"


def column_magnitudes(data: Data, lohi: tuple[torch.Tensor, torch.Tensor] | None = None
                      ) -> torch.Tensor:
    """max_i |x_ij| per column, in row blocks of about 4 MB: |X| is never formed whole (an
    n x d temporary costs more in fresh pages than the pass itself).  With ``lohi`` (the
    columns' min and max, :func:`column_range`) no pass: max(|min|, |max|), the same number."""
    if lohi is not None:
        lo, hi = lohi
        return torch.maximum(lo.abs(), hi.abs()).to(torch.float64)
    X = data.X.detach()
    step = max(1, (4 << 20) // max(1, X.shape[1] * X.element_size()))
    out = X.new_zeros(X.shape[1])  # |x| >= 0; a NaN still propagates through maximum
    for i in range(0, X.shape[0], step):
        torch.maximum(out, X[i:i + step].abs().amax(dim=0), out=out)
    return out.to(torch.float64).cpu()


def scale_problem(data: Data, lohi: tuple[torch.Tensor, torch.Tensor] | None = None
                  ) -> str | None:
    """A one-line description of extreme or widely spread feature magnitudes, else None
    (``lohi``: the columns' min and max, if already formed)."""
    mags = column_magnitudes(data, lohi)
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
