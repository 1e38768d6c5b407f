"""Data: one container, loaders for CSV / .npz / .npy, and validation at the boundary.

Every model takes a :class:`Data`.  ``X`` is (n, d) with samples as rows (the notes'
two-layer net writes samples as columns; that model transposes internally).  ``y`` is
(n,) or None (the Gaussian MLE has no target).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from handgrad.errors import UserError
from handgrad.fitting import csvread


@dataclass
class Data:
    X: torch.Tensor
    y: torch.Tensor | None = None
    feature_names: list[str] = field(default_factory=list)
    target: str | None = None
    source: str = "synthetic"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.feature_names:
            self.feature_names = [f"x{j}" for j in range(self.X.shape[1])]

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    def to(self, device=None, dtype=None) -> Data:
        """Move to device; X (and a float y) to dtype.  Integer labels stay integer."""
        X = self.X.to(device=device, dtype=dtype)
        y = self.y
        if y is not None:
            y = y.to(device=device, dtype=dtype if y.is_floating_point() else None)
        return replace(self, X=X, y=y)

    def rows(self, idx) -> Data:
        return replace(self, X=self.X[idx], y=None if self.y is None else self.y[idx])


def _name(names, j):
    return names[j] if names and j < len(names) else str(j)


def check_finite(X: np.ndarray, name: str = "X", columns: list[str] | None = None) -> None:
    """Raise naming the first NaN / inf entry (row and column), as docs/RELIABILITY.md asks."""
    bad = ~np.isfinite(X)
    if bad.any():
        idx = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(X[tuple(idx)]) else "inf"
        if X.ndim == 1:
            raise UserError(f"Input {name} contains {kind} (row {idx[0]}).")
        raise UserError(
            f"Input {name} contains {kind} (row {idx[0]}, column {_name(columns, idx[1])!r})."
        )


def validate_arrays(
    X, y=None, feature_names: list[str] | None = None, target: str = "y"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Shapes, emptiness and finiteness, checked once; returns float arrays.

    y of shape (n, 1) is flattened; any other 2-D y is rejected.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise UserError(f"X must be 2-D (samples x features); got {X.ndim}-D shape {X.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise UserError(f"X is empty: shape {X.shape} (need at least one row and one column).")
    if not np.issubdtype(X.dtype, np.number) and X.dtype != bool:
        raise UserError(f"X must be numeric; got dtype {X.dtype}.")
    X = X.astype(np.float64, copy=False)
    check_finite(X, "X", feature_names)
    if y is None:
        return X, None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(f"y must be 1-D (or n x 1); got shape {y.shape}.")
    if len(y) != len(X):
        raise UserError(f"X has {len(X)} rows but y has {len(y)}; they must match.")
    if not np.issubdtype(y.dtype, np.number) and y.dtype != bool:
        raise UserError(f"Target {target!r} must be numeric; got dtype {y.dtype}.")
    y = y.astype(np.float64, copy=False)
    check_finite(y, target)
    return X, y


def read_csv(path: str, lines: list[int] | None = None) -> tuple[list[str], np.ndarray]:
    """Header row + numeric cells.  Every fault is a one-line UserError.

    ``lines``, if given, is filled with each data row's 1-based line in the file (blank
    lines are skipped, so row i is not always line i + 2).  A numeric file is parsed by
    compiled code; the exact per-cell pass runs only to name a fault (see csvread)."""
    csvread.check_path(path)
    return csvread.read(path, lines)


def select_columns(
    header: list[str], target: str | None, features: list[str] | None, path: str
) -> tuple[list[int], int | None]:
    if target is not None and target not in header:
        raise UserError(
            f"Target column {target!r} not in {os.path.basename(path)}; "
            f"columns are: {', '.join(header)}." + _headerless_hint(header)
        )
    if features:
        missing = [f for f in features if f not in header]
        if missing:
            raise UserError(
                f"Feature column(s) {', '.join(map(repr, missing))} not in "
                f"{os.path.basename(path)}; columns are: {', '.join(header)}."
            )
        if target in features:
            raise UserError(f"Column {target!r} is both the target and a feature.")
        cols = [header.index(f) for f in features]
    else:
        cols = [j for j, h in enumerate(header) if h != target]
    if not cols:
        raise UserError(f"{path}: no feature columns left besides the target {target!r}.")
    return cols, (header.index(target) if target is not None else None)


def _headerless_hint(header: list[str]) -> str:
    try:
        [float(h) for h in header]
    except ValueError:
        return ""
    return " (The first line looks like data: a header row naming the columns is required.)"


def _check_finite_csv(values: np.ndarray, cols: list[int], t: int | None, header: list[str],
                      lines: list[int], path: str, target: str | None) -> None:
    """NaN / inf in a used column of a CSV: name the row, the column and the file line."""
    used = cols + ([t] if t is not None else [])
    bad = ~np.isfinite(values[:, used])
    if not bad.any():
        return
    i, k = (int(v) for v in np.argwhere(bad)[0])
    j = used[k]
    kind = "NaN" if np.isnan(values[i, j]) else "inf"
    what = f"target {target!r}" if j == t else "X"
    raise UserError(f"Input {what} contains {kind} (row {i + 1}, column {header[j]!r}; "
                    f"line {lines[i]} of {os.path.basename(path)}).")


def load(
    path: str,
    target: str | None = None,
    features: list[str] | None = None,
    *,
    needs_target: bool = True,
) -> Data:
    """Load a CSV (header required), a .npz holding X and y, or X.npy (+ y.npy beside it)."""
    if needs_target and target is None and path.lower().endswith(".csv"):
        raise UserError(f"--target is required with --data {path} (name the column to predict).")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        lines: list[int] = []
        picked: list = []

        def select(header):  # columns not used are not converted (text there is fine)
            picked[:] = select_columns(header, target, features, path)
            return picked[0] + ([picked[1]] if picked[1] is not None else [])

        csvread.check_path(path)
        header, values = csvread.read(path, lines, select, target)
        cols, t = picked
        _check_finite_csv(values, cols, t, header, lines, path, target)
        names = [header[j] for j in cols]
        X, y = validate_arrays(values[:, cols], None if t is None else values[:, t], names, target)
        return Data(
            torch.from_numpy(X),
            None if y is None else torch.from_numpy(y),
            names,
            target,
            source=path,
        )
    if ext in (".npz", ".npy"):
        X, y, names = _load_numpy(path)
        if features:
            raise UserError("--features applies to CSV files; select columns before saving .npz.")
        if needs_target and y is None:
            raise UserError(f"{path} holds no target: save an array 'y' in the .npz, or put "
                            "y.npy (y_<name>.npy for X_<name>.npy) beside the .npy.")
        X, y = validate_arrays(X, y if needs_target else None, names)
        return Data(_from_numpy(np.ascontiguousarray(X)),
                    None if y is None else _from_numpy(y), names, target or "y", source=path)
    raise UserError(f"Unsupported data file {path!r}: use .csv, .npz (arrays X, y) or .npy.")


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    """Share memory with a (read-only, memory-mapped) array: no copy of a large .npy.
    handgrad never writes into data tensors, so torch's not-writable warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(a)


def _load_numpy(path: str):
    if not os.path.exists(path):
        raise UserError(f"Data file not found: {path}")
    try:
        if path.lower().endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                if "X" not in z.files:
                    raise UserError(f"{path} must hold an array named 'X' (found: {z.files}).")
                X = z["X"]
                y = z["y"] if "y" in z.files else None
                names = [str(s) for s in z["feature_names"]] if "feature_names" in z.files else []
            return X, y, names
        X = np.load(path, mmap_mode="r", allow_pickle=False)
        ypath = os.path.join(os.path.dirname(path), "y.npy")
        base = os.path.basename(path)
        if base.startswith("X") and os.path.exists(os.path.join(os.path.dirname(path), "y" + base[1:])):
            ypath = os.path.join(os.path.dirname(path), "y" + base[1:])
        y = np.load(ypath, mmap_mode="r", allow_pickle=False) if os.path.exists(ypath) else None
        return X, y, []
    except (ValueError, OSError) as exc:
        raise UserError(f"Cannot read {path}: {exc}") from None


def binary_labels(y: torch.Tensor, name: str = "y") -> tuple[torch.Tensor, str | None]:
    """Map a binary target to {0, 1}.  Returns (labels, note or None).

    {0,1} and booleans pass through; any other two distinct values are re-encoded
    (smaller -> 0) and said so; one class or more than two values is an error.
    """
    vals = torch.unique(y)
    if len(vals) == 1:
        raise UserError(
            f"Target {name!r} has only one class ({_fmt(vals[0])}); logistic regression needs two."
        )
    if len(vals) > 2:
        shown = ", ".join(_fmt(v) for v in vals[:6]) + (" ..." if len(vals) > 6 else "")
        raise UserError(
            f"Target {name!r} has {len(vals)} distinct values ({shown}); logistic regression "
            "needs two classes (use least_squares for a continuous target, softmax for several)."
        )
    lo, hi = float(vals[0]), float(vals[1])
    if lo == 0.0 and hi == 1.0:
        return y, None
    note = f"Target {name!r} re-encoded: {_fmt(lo)} -> 0, {_fmt(hi)} -> 1."
    return (y == vals[1]).to(y.dtype), note


def _fmt(v) -> str:
    v = float(v)
    return str(int(v)) if math.isfinite(v) and v == int(v) else repr(v)


def class_labels(y: torch.Tensor, name: str = "y") -> tuple[torch.Tensor, list[float], str | None]:
    """Class labels for the multi-class models: integers 0..K-1 (int64), the original class
    values, and a note when they were re-encoded.

    ``y`` is either 1-D integer-valued (any distinct values, mapped in sorted order) or 2-D
    one-hot (n, K) with exactly one 1 per row.  Continuous values, a row that is not
    one-hot, or a single class are errors naming the problem.
    """
    if y is None:
        raise UserError(f"Target {name!r} is missing: a classifier needs class labels.")
    if y.dim() == 2:
        if y.shape[1] < 2:
            raise UserError(f"One-hot target {name!r} has {y.shape[1]} column; need >= 2 classes.")
        ok = ((y == 0) | (y == 1)).all(dim=1) & (y.sum(dim=1) == 1)
        if not bool(ok.all()):
            i = int(torch.nonzero(~ok)[0])
            raise UserError(f"One-hot target {name!r}: row {i} is not one-hot "
                            f"({', '.join(_fmt(v) for v in y[i].tolist()[:8])}).")
        return y.argmax(dim=1), [float(k) for k in range(y.shape[1])], None
    if y.dim() != 1:
        raise UserError(f"Target {name!r} must be 1-D labels or 2-D one-hot; got shape "
                        f"{tuple(y.shape)}.")
    if y.is_floating_point():
        frac = y != torch.round(y)
        if bool(frac.any()):
            i = int(torch.nonzero(frac)[0])
            raise UserError(f"Target {name!r} must hold class labels (integers); row {i} is "
                            f"{_fmt(y[i])}. For a continuous target use least_squares.")
    vals, idx = torch.unique(y, return_inverse=True)
    if len(vals) < 2:
        raise UserError(f"Target {name!r} has only one class ({_fmt(vals[0])}); need two or more.")
    classes = [float(v) for v in vals]
    note = None
    if classes != [float(k) for k in range(len(classes))]:
        shown = ", ".join(f"{_fmt(v)} -> {k}" for k, v in enumerate(classes[:6]))
        note = (f"Target {name!r} re-encoded to 0..{len(classes) - 1}: {shown}"
                + (" ..." if len(classes) > 6 else "") + ".")
    return idx.to(torch.int64), classes, note


def train_test_split(data: Data, fraction: float, seed: int = 0,
                     stratify: bool = False) -> tuple[Data, Data]:
    """A deterministic (seeded) split: ``fraction`` of the rows held out for testing.

    With ``stratify`` (class labels), each class is split in the same proportion, with at
    least one row of every class on each side when the class has two or more rows.
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--test-fraction must be in (0, 1); got {fraction}.")
    g = torch.Generator().manual_seed(seed)
    n = data.n
    if stratify and data.y is not None:
        y = data.y.detach().cpu()
        test = []
        for c in torch.unique(y):
            rows = torch.nonzero(y == c).reshape(-1)
            rows = rows[torch.randperm(len(rows), generator=g)]
            k = int(round(fraction * len(rows)))
            if len(rows) >= 2:
                k = min(max(k, 1), len(rows) - 1)
            test.append(rows[:k])
        test_idx = torch.sort(torch.cat(test)).values
    else:
        k = int(round(fraction * n))
        test_idx = torch.sort(torch.randperm(n, generator=g)[:k]).values
    mask = torch.ones(n, dtype=torch.bool)
    mask[test_idx] = False
    train_idx = torch.nonzero(mask).reshape(-1)
    if len(test_idx) == 0 or len(train_idx) == 0:
        side = "test" if len(test_idx) == 0 else "training"
        raise UserError(f"--test-fraction {fraction} leaves an empty {side} set with {n} rows.")
    dev = data.X.device
    return data.rows(train_idx.to(dev)), data.rows(test_idx.to(dev))


def prepare_class_labels(data: Data) -> Data:
    """A multi-class model's ``prepare``: labels to int64 0..K-1 (re-encoding other values
    and one-hot rows, and saying so in data.notes)."""
    y, _, note = class_labels(data.y, data.target or "y")
    if note:
        data.notes.append(note)
    data.y = y
    return data
