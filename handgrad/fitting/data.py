"""Data: one container, loaders for CSV / .npz / .npy, and validation at the boundary.

Every model takes a :class:`Data`.  ``X`` is (n, d) with samples as rows (the notes'
two-layer net writes samples as columns; that model transposes internally).  ``y`` is
(n,) or None (the Gaussian MLE has no target).
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from handgrad.contract import Target
from handgrad.errors import UserError
from handgrad.fitting import csvread

RESERVED = ("intercept",)  # a term name the coefficient table gives the fitted intercept


@dataclass
class Data:
    X: torch.Tensor
    y: torch.Tensor | None = None
    feature_names: list[str] = field(default_factory=list)
    target: str | None = None
    source: str = "synthetic"
    notes: list[str] = field(default_factory=list)
    # a CSV's rows: each row's 0-based data row in the file (None: 0..n-1), and the map
    # from a data row to its file line (None for arrays, whose rows are numpy indices)
    file_rows: np.ndarray | None = None
    lines: csvread.RowLines | None = None

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
        fr = self.file_rows
        if self.lines is not None:
            base = np.arange(self.n) if fr is None else fr
            fr = base[torch.as_tensor(idx).detach().cpu().numpy()]
        return replace(self, X=self.X[idx], y=None if self.y is None else self.y[idx],
                       file_rows=fr)

    def where(self, i: int) -> str:
        """Row i as the user finds it: a CSV's 1-based data row and its file line, an
        array's (0-based) index."""
        return row_name(i, self.file_rows, self.lines)


def row_name(i: int, file_rows=None, lines=None) -> str:
    if lines is None:
        return f"row {i}"
    k = int(file_rows[i]) if file_rows is not None else int(i)
    return f"row {k + 1} (line {lines.line(k)})"


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


def _check_finite_and_magnitude(X: np.ndarray, columns: list[str] | None) -> None:
    """check_finite and check_magnitude of a float64 X in one pass without temporaries:
    each column's min and max (a NaN or inf shows in them; max |x| = max(|min|, |max|)),
    the first bad entry then found by check_finite.  (|X| and isfinite(X) were n x d
    temporaries, and two passes.)"""
    if X.size == 0 or any(st < 0 for st in X.strides):  # torch takes no negative strides
        check_finite(X, "X", columns)
        check_magnitude(X, columns)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        lo, hi = torch.aminmax(torch.from_numpy(X), dim=0)
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        check_finite(X, "X", columns)  # raises, naming the first NaN or inf
    check_magnitude(X, columns, top=torch.maximum(lo.abs(), hi.abs()).numpy())


def check_names(names: list[str], d: int, what: str = "feature names") -> None:
    """Feature names label the coefficient table and the JSON keys: one per column, no two
    alike, none equal to a term the table adds itself (``intercept``)."""
    names = [str(v) for v in names]
    if len(names) != d:
        raise UserError(f"{len(names)} {what} given for {d} columns of X; give one per column.")
    dup = sorted({v for v in names if names.count(v) > 1})
    if dup:
        raise UserError(f"Duplicate {what}: {', '.join(map(repr, dup))}; each column needs its "
                        "own name (the table and the JSON are keyed by name).")
    clash = [v for v in names if v in RESERVED]
    if clash:
        raise UserError(f"A column is named {clash[0]!r}, the name of the fitted intercept's "
                        "row; rename that column or leave it out.")


def check_magnitude(X: np.ndarray, columns: list[str] | None = None,
                    top: np.ndarray | None = None) -> None:
    """Values so large that a sum of squares over the rows overflows float64 cannot be
    fitted (every solver forms such sums): name the column before any arithmetic does.
    ``top``: max_i |x_ij| per column, if already known."""
    if X.size == 0:
        return
    if top is None:
        top = np.abs(X).max(axis=0)
    limit = math.sqrt(np.finfo(np.float64).max / max(1, X.shape[0])) / 4
    j = int(np.argmax(top))
    if top[j] > limit:
        raise UserError(f"Input X: column {_name(columns, j)!r} reaches |x| = {top[j]:.3g}, so a sum "
                        f"of squares over its {X.shape[0]} rows overflows float64 (|x| above "
                        f"{limit:.2g}); rescale the column (divide it by a power of ten) before "
                        "fitting; --standardize cannot, its variance overflows too.")


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
    if feature_names:
        check_names(list(feature_names), X.shape[1])
    X = X.astype(np.float64, copy=False)
    _check_finite_and_magnitude(X, feature_names)
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


def read_csv(path: str) -> tuple[list[str], np.ndarray]:
    """Header row + numeric cells of every column.  Every fault is a one-line UserError."""
    csvread.check_path(path)
    return csvread.read_numbers(path)


def select_columns(
    header: list[str], target: str | None, features: list[str] | None, path: str,
    exclude: list[str] | None = None,
) -> tuple[list[int], int | None]:
    if target is not None and target not in header:
        raise UserError(
            f"Target column {target!r} not in {os.path.basename(path)}; "
            f"columns are: {', '.join(header)}." + _headerless_hint(header)
        )
    for flag, given in (("--features", features), ("--exclude", exclude)):
        missing = [f for f in given or [] if f not in header]
        if missing:
            raise UserError(
                f"{flag}: column(s) {', '.join(map(repr, missing))} not in "
                f"{os.path.basename(path)}; columns are: {', '.join(header)}."
            )
    if features and exclude:
        raise UserError("Give --features (the columns to use) or --exclude (the columns to "
                        "leave out), not both.")
    if features:
        if target in features:
            raise UserError(f"Column {target!r} is both the target and a feature.")
        dup = sorted({f for f in features if features.count(f) > 1})
        if dup:
            raise UserError(f"--features names {', '.join(map(repr, dup))} twice; each column "
                            "once.")
        cols = [header.index(f) for f in features]
    else:
        cols = [j for j, h in enumerate(header) if h != target and h not in (exclude or [])]
    if not cols:
        raise UserError(f"{path}: no feature columns left besides the target {target!r}.")
    return cols, (header.index(target) if target is not None else None)


def _headerless_hint(header: list[str]) -> str:
    try:
        [float(h) for h in header]
    except ValueError:
        return ""
    return " (The first line looks like data: a header row naming the columns is required.)"


def _shown(values: list, k: int = 3) -> str:
    return ", ".join(repr(v) for v in values[:k]) + (", ..." if len(values) > k else "")


def _text_columns(tab, names: list[str], target: str | None) -> None:
    """Text among the features: a typo is named by its row and line; a category column is
    named with how to encode it or leave it out."""
    typos = [(t.first_bad, h) for h, t in tab.text.items()
             if h in names and t.first_bad and t.numeric_share >= 0.5]
    if typos:
        (k, cell), h = min(typos)
        raise UserError(f"{tab.path}: non-numeric value {cell!r} in column {h!r}, row {k + 1} "
                        f"(line {tab.lines.line(k)}).")
    cats = [h for h in names if h in tab.text]
    if not cats:
        return
    k, cell = tab.text[cats[0]].first_bad or (0, "")
    where = (f"{tab.path}: non-numeric value {cell!r} in column {cats[0]!r}, row {k + 1} "
             f"(line {tab.lines.line(k)}).")
    if len(cats) == 1:
        raise UserError(f"{where} Column {cats[0]!r} holds text ({_shown(tab.text[cats[0]].values)}), "
                        "not numbers: encode it as numbers (e.g. one 0/1 column per category) or "
                        f"leave it out with --exclude {cats[0]}.")
    raise UserError(f"{where} Columns " + ", ".join(f"{h!r} ({_shown(tab.text[h].values)})"
                                                    for h in cats)
                    + " hold text, not numbers: encode them as numbers (e.g. one 0/1 column per "
                    f"category) or leave them out with --exclude {','.join(cats)}.")


def _text_target(tab, target: str, kind) -> tuple[np.ndarray, str]:
    """A text target (yes/no, species names): class labels in sorted order, and the note
    saying which value is which; an error for a model that needs numbers."""
    t = tab.text[target]
    if t.first_bad and t.numeric_share >= 0.5:
        k, cell = t.first_bad
        raise UserError(f"{tab.path}: non-numeric value {cell!r} in column {target!r}, "
                        f"row {k + 1} (line {tab.lines.line(k)}).")
    vals = t.values
    if kind is None or not kind.classes:
        what = "a continuous target" if kind is None else f"a {kind.value} target"
        raise UserError(f"Column {target!r} (the target) holds text ({_shown(vals)}), not "
                        f"numbers; this model needs {what}. For class labels use logistic "
                        "(two classes) or softmax (several).")
    if len(vals) < 2:
        raise UserError(f"Target {target!r} has only one class ({vals[0]!r}); need two or more.")
    if kind is Target.BINARY:
        if len(vals) > 2:
            raise UserError(f"Target {target!r} has {len(vals)} distinct values ({_shown(vals, 6)}); "
                            "logistic regression needs two classes (use softmax for several).")
        return t.codes, (f"Target {target!r} re-encoded: {vals[0]!r} -> 0, {vals[1]!r} -> 1 "
                         f"(the fit models P({target} = {vals[1]!r})).")
    shown = ", ".join(f"{v!r} -> {k}" for k, v in enumerate(vals[:6]))
    return t.codes, (f"Target {target!r} re-encoded to 0..{len(vals) - 1}: {shown}"
                     + (" ..." if len(vals) > 6 else "") + ".")


def load(
    path: str,
    target: str | None = None,
    features: list[str] | None = None,
    *,
    needs_target: bool = True,
    exclude: list[str] | None = None,
    dropna: bool = False,
    kind: Target | None = None,
) -> Data:
    """Load a CSV (header required; gzip'd too), a .npz holding X and y, or X.npy (+ y.npy).

    CSV: ``exclude`` leaves columns out; ``dropna`` drops rows with a missing value in a
    used column (and says how many); ``kind`` (the model's target kind) lets a text target
    be class labels."""
    low = path.lower()
    is_csv = low.endswith((".csv", ".csv.gz"))
    if needs_target and target is None and is_csv:
        raise UserError(f"--target is required with --data {path} (name the column to predict).")
    if is_csv:
        return _load_csv(path, target, features, exclude, dropna, kind)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".npz", ".npy"):
        X, y, names = _load_numpy(path)
        if features or exclude:
            raise UserError("--features and --exclude apply to CSV files; select columns before "
                            "saving .npz.")
        if needs_target and y is None:
            raise UserError(f"{path} holds no target: save an array 'y' in the .npz, or put "
                            "y.npy (y_<name>.npy for X_<name>.npy) beside the .npy.")
        X, y = validate_arrays(X, y if needs_target else None, names)
        return Data(_from_numpy(np.ascontiguousarray(X)),
                    None if y is None else _from_numpy(y), names, target or "y", source=path)
    raise UserError(f"Unsupported data file {path!r}: use .csv (or .csv.gz), .npz (arrays X, y) "
                    "or .npy.")


def _load_csv(path, target, features, exclude, dropna, kind) -> Data:
    csvread.check_path(path)
    header = csvread.read_header(path)
    cols, t = select_columns(header, target, features, path, exclude)
    names = [header[j] for j in cols]
    check_names(names, len(names), "feature columns")
    used = names + ([target] if t is not None else [])
    tab = csvread.read(path, used)
    _text_columns(tab, names, target)
    notes: list[str] = []
    yv = None
    if t is not None:
        if target in tab.text:
            yv, note = _text_target(tab, target, kind)
            notes.append(note)
        else:
            yv = tab.numbers[target]
    # missing values (empty cells, NA, NaN, ...): drop the rows (--dropna) or name the first
    miss = np.zeros(tab.n, bool)
    first = None
    for h in used:
        col = yv if h == target else tab.numbers[h]
        m = np.isnan(col)
        if m.any():
            i = int(np.argmax(m))
            if first is None or i < first[0]:
                first = (i, h)
            miss |= m
    keep = None
    if first is not None:
        if not dropna:
            i, h = first
            cell = tab.lines.cell(i, header.index(h))
            what = f"target {target!r}" if h == target else "X"
            shown = "an empty cell" if not (cell or "").strip() else f"missing value {cell.strip()!r}"
            raise UserError(f"Input {what} has {shown} (NaN) in column {h!r}, row {i + 1} (line "
                            f"{tab.lines.line(i)} of {os.path.basename(path)}); fill it, or drop "
                            "rows with missing values with --dropna.")
        keep = np.flatnonzero(~miss)
        dropped = np.flatnonzero(miss)
        if len(keep) == 0:
            raise UserError(f"{path}: every row has a missing value in a used column; --dropna "
                            "leaves no rows.")
        shown = ", ".join(str(tab.lines.line(int(k))) for k in dropped[:5])
        notes.append(f"dropped {len(dropped)} of {tab.n} rows with missing values (--dropna; "
                     f"line{'s' if len(dropped) > 1 else ''} {shown}"
                     + (", ..." if len(dropped) > 5 else "") + ")")
    # dtype known for every column before the n x d array is allocated; column-major, as
    # the columns arrive (and as the loader has always handed X to the fit: the Newton
    # path on ill-conditioned data such as Longley rounds differently in row-major order)
    n = tab.n if keep is None else len(keep)
    X = np.empty((n, len(names)), order="F")
    for j, h in enumerate(names):
        X[:, j] = tab.numbers[h] if keep is None else tab.numbers[h][keep]
    y = None if yv is None else (yv if keep is None else yv[keep])
    _check_finite_csv(X, y, names, target, keep, tab.lines, path)
    check_magnitude(X, names)
    if y is not None and not y.flags.writeable:
        y = y.copy()  # torch warns on a read-only array; y is one column
    return Data(torch.from_numpy(X), None if y is None else torch.from_numpy(np.ascontiguousarray(y)),
                names, target, source=path, notes=notes, file_rows=keep, lines=tab.lines)


def _check_finite_csv(X, y, names, target, keep, lines, path) -> None:
    """inf in a used column of a CSV (missing values are handled before): name the row,
    the column and the file line."""
    for what, a, cols in (("X", X, names), (f"target {target!r}", y, [target])):
        if a is None:
            continue
        bad = ~np.isfinite(a)
        if not bad.any():
            continue
        idx = np.argwhere(bad)[0]
        i = int(idx[0])
        col = cols[int(idx[1])] if a.ndim == 2 else target
        k = int(keep[i]) if keep is not None else i
        raise UserError(f"Input {what} contains inf (row {k + 1}, column {col!r}; line "
                        f"{lines.line(k)} of {os.path.basename(path)}).")


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    """Share memory with a (read-only, memory-mapped) array: no copy of a large .npy.
    handgrad never writes into data tensors, so torch's not-writable warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(a)


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def what_file(path: str) -> str:
    """What a file is, from its first bytes, in a few words (for 'not a .npz file')."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "empty (0 bytes)"
    if head.startswith(NPY_MAGIC):
        return "a NumPy .npy array file"
    if head.startswith(ZIP_MAGIC):
        return "a zip archive"
    if head.startswith(csvread.GZIP_MAGIC):
        return "a gzip file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    first = text.splitlines()[0][:30] if text.strip() else ""
    return f"text (it starts {first!r})" if first else "blank text"


def check_numpy_file(path: str) -> None:
    """A .npy must start with NumPy's magic bytes, a .npz must be a zip archive: otherwise
    one line saying what the file is (never an offer to unpickle it)."""
    if not os.path.exists(path):
        raise UserError(f"Data file not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"Data path is a directory, not a file: {path}")
    with open(path, "rb") as fh:
        head = fh.read(6)
    ext = os.path.splitext(path)[1].lower()
    ok = head.startswith(NPY_MAGIC) if ext == ".npy" else head.startswith(ZIP_MAGIC)
    if not ok:
        kind = "NumPy .npy array file" if ext == ".npy" else "NumPy .npz archive (a zip file)"
        raise UserError(f"{path} is not a {kind}: it is {what_file(path)}.")


def _load_numpy(path: str):
    check_numpy_file(path)
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
        y = None
        if os.path.exists(ypath):
            check_numpy_file(ypath)
            y = np.load(ypath, mmap_mode="r", allow_pickle=False)
        return X, y, []
    except UserError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "pickle" in msg:  # an object array: never suggest loading it with pickles allowed
            msg = "it holds Python objects (an object array), not numbers"
        raise UserError(f"Cannot read {path}: {msg}.") from None


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
            f"needs two classes ({_suggest(vals)})."
        )
    lo, hi = float(vals[0]), float(vals[1])
    if lo == 0.0 and hi == 1.0:
        return y, None
    note = f"Target {name!r} re-encoded: {_fmt(lo)} -> 0, {_fmt(hi)} -> 1."
    return (y == vals[1]).to(y.dtype), note


def _suggest(vals: torch.Tensor) -> str:
    """Which model a target with many values suggests: counts -> poisson, other integers
    -> softmax, anything else -> least_squares."""
    whole = bool((vals == torch.round(vals)).all())
    if whole and bool((vals >= 0).all()):
        return ("non-negative integers look like counts: use poisson; if they are class "
                "labels, softmax")
    if whole:
        return "for several classes use softmax"
    return "for a continuous target use least_squares"


def _fmt(v) -> str:
    v = float(v)
    return str(int(v)) if math.isfinite(v) and v == int(v) else repr(v)


def class_labels(y: torch.Tensor, name: str = "y", where=None
                 ) -> tuple[torch.Tensor, list[float], str | None]:
    """Class labels for the multi-class models: integers 0..K-1 (int64), the original class
    values, and a note when they were re-encoded.

    ``y`` is either 1-D integer-valued (any distinct values, mapped in sorted order) or 2-D
    one-hot (n, K) with exactly one 1 per row.  Continuous values, a row that is not
    one-hot, or a single class are errors naming the problem; ``where(i)`` names row i
    (a CSV's data row and line; by default the array index).
    """
    where = where or (lambda i: f"row {i}")
    if y is None:
        raise UserError(f"Target {name!r} is missing: a classifier needs class labels.")
    if y.dim() == 2:
        if y.shape[1] < 2:
            raise UserError(f"One-hot target {name!r} has {y.shape[1]} column; need >= 2 classes.")
        ok = ((y == 0) | (y == 1)).all(dim=1) & (y.sum(dim=1) == 1)
        if not bool(ok.all()):
            i = int(torch.nonzero(~ok)[0])
            raise UserError(f"One-hot target {name!r}: {where(i)} is not one-hot "
                            f"({', '.join(_fmt(v) for v in y[i].tolist()[:8])}).")
        return y.argmax(dim=1), [float(k) for k in range(y.shape[1])], None
    if y.dim() != 1:
        raise UserError(f"Target {name!r} must be 1-D labels or 2-D one-hot; got shape "
                        f"{tuple(y.shape)}.")
    if y.is_floating_point():
        frac = y != torch.round(y)
        if bool(frac.any()):
            i = int(torch.nonzero(frac)[0])
            raise UserError(f"Target {name!r} must hold class labels (integers); {where(i)} is "
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
    y, _, note = class_labels(data.y, data.target or "y", data.where)
    if note:
        data.notes.append(note)
    data.y = y
    return data
