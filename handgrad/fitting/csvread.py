"""CSV reading through pyarrow's CSV reader, every fault a one-line message.

pyarrow (the Apache Arrow project's Python package) parses in compiled, multi-threaded
code, converts numbers with fast_float (correctly rounded: the same doubles as Python's
``float()``), reads gzip'd files (``.csv.gz``, or gzip bytes under any name), and knows
missing values (an empty cell, ``NA``, ``NaN``, ``null``, ... : pandas' list) and text
columns.  What is here:

1. The header is read and checked here (names stripped of blanks, none empty, none
   duplicated), so pyarrow converts only the columns a fit uses.
2. The used columns are read as float64.  If a cell is not a number, the file is read
   again with each column's type inferred: a column of ``true``/``false`` is 0/1, and a
   text column is returned as :class:`Text` (its distinct values, and its first cell that
   is not a number) for the loader to encode (a class label) or name (a typo, a category
   among the features).
3. A parse error (a row with too few or too many cells) is named by its file line: the
   file is scanned line by line only then.

Rows are numbered as the user sees them: data row k is the k-th non-empty line after the
header (1-based), and :class:`RowLines` gives its line in the file, computed only when a
message or a note needs it.
"""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass, field

import numpy as np

from handgrad.errors import UserError

# pandas' and pyarrow's default spellings of a missing value
NULLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
         "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
GZIP_MAGIC = b"\x1f\x8b"


def _pa():
    try:
        import pyarrow
        import pyarrow.csv
    except ImportError:  # pragma: no cover - a dependency
        raise UserError("Reading a CSV needs pyarrow: pip install pyarrow") from None
    return pyarrow, pyarrow.csv


def is_gzip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def _raw(path: str) -> bytes:
    """The file's bytes, decompressed if gzip'd."""
    if is_gzip(path):
        try:
            with gzip.open(path, "rb") as fh:
                return fh.read()
        except (OSError, EOFError) as exc:
            raise UserError(f"{path}: a damaged gzip file ({exc}).") from None
    with open(path, "rb") as fh:
        return fh.read()


# ------------------------------------------------------------------------- row -> line


def _blank_lines(u: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Which of the lines [starts, ends) hold only spaces and tabs."""
    white = (u == 32) | (u == 9)
    csum = np.r_[0, np.cumsum(white)]
    return (csum[ends] - csum[starts]) == (ends - starts)


class RowLines:
    """Data row k (0-based; blank lines skipped, as the reader skips them) -> its 1-based line
    in the file, and the line's text.  The file is scanned on first use only."""

    def __init__(self, path: str, d: int = 2):
        self.path, self.d = path, d
        self._starts: np.ndarray | None = None
        self._raw: bytes | None = None

    def _scan(self) -> None:
        raw = _raw(self.path)
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        u = np.frombuffer(raw, np.uint8)
        nl = np.flatnonzero(u == 10)
        cr = np.flatnonzero(u == 13)
        lone = cr[(cr + 1 >= len(u)) | (u[np.minimum(cr + 1, len(u) - 1)] != 10)]
        ends = np.sort(np.r_[nl, lone, len(u)])  # where each line's terminator sits
        starts = np.r_[0, ends[:-1] + 1]
        content_end = ends - ((ends > starts) & (u[np.maximum(ends - 1, 0)] == 13)
                              & (np.r_[u, 0][ends] == 10))
        nonempty = np.flatnonzero(content_end > starts)
        if self.d > 1:  # a line of blanks is skipped too (a 1-column file: a missing value)
            blank = _blank_lines(u, starts[nonempty], content_end[nonempty])
            nonempty = nonempty[~blank]
        # the first non-empty line is the header; data rows follow
        self._lines = nonempty[1:] + 1  # 1-based line numbers
        self._starts, self._ends = starts[nonempty[1:]], content_end[nonempty[1:]]
        self._raw = raw

    def line(self, k: int) -> int:
        if self._starts is None:
            self._scan()
        return int(self._lines[k]) if k < len(self._lines) else -1

    def text(self, k: int) -> str:
        if self._starts is None:
            self._scan()
        return self._raw[self._starts[k]:self._ends[k]].decode("utf-8", "replace")

    def cell(self, k: int, j: int) -> str | None:
        """The raw text of data row k's cell j (None if the row is shorter)."""
        cells = next(csv.reader([self.text(k)]), [])
        return cells[j] if j < len(cells) else None


# ---------------------------------------------------------------------------- the reader


@dataclass
class Text:
    """A used column that holds text: its distinct values (missing ones left out), a code
    per row (the index of the row's value in ``values``, NaN where missing), and the first
    row whose cell is not a number (with the cell), or None."""

    values: list[str]
    codes: np.ndarray
    first_bad: tuple[int, str] | None
    numeric_share: float  # share of the present cells that are numbers


@dataclass
class Table:
    path: str
    header: list[str]
    n: int
    numbers: dict[str, np.ndarray] = field(default_factory=dict)  # float64, NaN = missing
    text: dict[str, Text] = field(default_factory=dict)
    lines: RowLines | None = None


def check_path(path: str) -> None:
    if not os.path.exists(path):
        raise UserError(f"Data file not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"Data path is a directory, not a CSV file: {path}")


def check_header(path: str, header: list[str]) -> None:
    if any(h == "" for h in header):
        raise UserError(f"{path}: the header has an empty column name (column "
                        f"{header.index('') + 1}).")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise UserError(f"{path}: duplicate column name(s) in the header: {', '.join(dup)}.")


def read_header(path: str) -> list[str]:
    """The first non-empty line's cells, stripped; a one-line error for a non-text file."""
    try:
        opener = gzip.open if is_gzip(path) else open
        with opener(path, "rt", newline="", encoding="utf-8-sig") as fh:
            for row in csv.reader(fh):
                if row and any(c.strip() for c in row):
                    header = [h.strip() for h in row]
                    break
            else:
                raise UserError(f"{path} is empty: expected a header row and data rows.")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text CSV file.") from None
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: cannot read it as a CSV file ({exc}).") from None
    except csv.Error as exc:
        raise UserError(f"{path}: malformed CSV header ({exc}).") from None
    check_header(path, header)
    return header


def _source(path: str):
    pa, _ = _pa()
    if is_gzip(path):
        return pa.input_stream(path, compression="gzip")
    return path


def _skip_blank(row) -> str:
    """pyarrow's handler for a row with the wrong number of cells: a line of blanks is
    skipped (as the csv module skips it); any other is an error."""
    return "skip" if not (row.text or "").strip() else "error"


def _read(path: str, raw_names: list[str], types: bool):
    pa, pcsv = _pa()
    kind = pa.float64() if types else pa.string()
    conv = pcsv.ConvertOptions(
        include_columns=raw_names, null_values=NULLS, strings_can_be_null=True,
        column_types={c: kind for c in raw_names})
    parse = pcsv.ParseOptions(newlines_in_values=False, invalid_row_handler=_skip_blank)
    read = pcsv.ReadOptions(use_threads=True, block_size=8 << 20, encoding="utf8")
    return pcsv.read_csv(_source(path), read_options=read, parse_options=parse,
                         convert_options=conv)


def read(path: str, used: list[str] | None = None) -> Table:
    """The used columns of a CSV (all, by default): numbers as float64 (NaN where missing),
    text columns as :class:`Text`.  ``used`` names columns of :func:`read_header`."""
    pa, _ = _pa()
    check_path(path)
    header = read_header(path)
    used = list(header) if used is None else list(used)
    # pyarrow names columns as written (blanks kept): map the stripped names back
    raw_header = _raw_header(path)
    if len(raw_header) != len(header):
        raw_header = header
    raw = {h: r for h, r in zip(header, raw_header)}
    raw_names = [raw[c] for c in used]
    lines = RowLines(path, len(header))
    try:
        try:
            tab = _read(path, raw_names, types=True)
        except pa.ArrowInvalid as exc:
            if "conversion error" not in str(exc):
                raise
            tab = _read(path, raw_names, types=False)
    except pa.ArrowInvalid as exc:
        raise UserError(_parse_fault(path, header, lines, str(exc))) from None
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path}: cannot read it as a CSV file "
                        f"({str(exc).splitlines()[0]}).") from None
    if tab.num_rows == 0:
        raise UserError(f"{path} has a header but no data rows.")
    out = Table(path, header, tab.num_rows, lines=lines)
    for name, rawname in zip(used, raw_names):
        col = tab.column(rawname)
        if pa.types.is_floating(col.type):
            out.numbers[name] = _floats(col)
            continue
        # read as text (a cell was not a number): numbers, true/false, or text
        col = _trimmed(col)
        nums = _as_floats(pa, col)
        if nums is not None:
            out.numbers[name] = nums
        else:
            out.text[name] = _text(pa, col)
    return out


def _trimmed(col):
    """Cells without their surrounding blanks; a cell of blanks alone is missing, as an
    empty one is (the reader's null values match whole cells, so "  " reaches here)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = pc.utf8_trim_whitespace(col)
    return pc.if_else(pc.equal(t, ""), pa.scalar(None, pa.string()), t)


def _as_floats(pa, col) -> np.ndarray | None:
    """A text column's cells as float64 when all are numbers (the same parser as the
    reader's), or all are true/false (1/0); else None."""
    import pyarrow.compute as pc

    try:
        return _floats(pc.cast(col, pa.float64()))
    except pa.ArrowInvalid:
        pass
    low = pc.utf8_lower(col)
    is_true, is_false = pc.equal(low, "true"), pc.equal(low, "false")
    if pc.all(pc.or_kleene(is_true, is_false)).as_py() in (True, None):
        return _floats(pc.cast(is_true, pa.float64()))
    return None


def _raw_header(path: str) -> list[str]:
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as fh:
        for row in csv.reader(fh):
            if row and any(c.strip() for c in row):
                return row
    return []


def _floats(col) -> np.ndarray:
    """float64 values, NaN where null; read-only when pyarrow's buffer is shared (one
    chunk, no nulls): the loader copies what it keeps, so no copy here."""
    return col.to_numpy()


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _text(pa, col) -> Text:
    import pyarrow.compute as pc

    col = pc.cast(col, pa.string())
    enc = col.combine_chunks().dictionary_encode() if col.num_chunks else \
        pa.array([], pa.string()).dictionary_encode()
    values = enc.dictionary.to_pylist()
    order = sorted(range(len(values)), key=lambda i: values[i])
    rank = np.empty(len(values), np.float64)
    rank[order] = np.arange(len(values))
    idx = enc.indices.to_numpy(zero_copy_only=False)  # float with NaN where null
    codes = np.full(len(idx), np.nan)
    present = ~np.isnan(idx) if idx.dtype.kind == "f" else np.ones(len(idx), bool)
    codes[present] = rank[idx[present].astype(np.int64)]
    numeric = np.array([_is_number(v) for v in values], bool)
    counts = np.bincount(idx[present].astype(np.int64), minlength=len(values))
    share = float(counts[numeric].sum() / max(1, counts.sum()))
    first_bad = None
    bad_codes = np.flatnonzero(~numeric)
    if len(bad_codes):
        bad_rows = np.flatnonzero(present & np.isin(codes, rank[bad_codes]))
        if len(bad_rows):
            i = int(bad_rows[0])
            first_bad = (i, values[int(idx[i])])
    return Text([values[i] for i in order], codes, first_bad, share)


def _parse_fault(path: str, header: list[str], lines: RowLines, arrow_msg: str) -> str:
    """A ragged row (too few or too many cells): found and named by its line."""
    d = len(header)
    lines._scan()
    for k in range(len(lines._lines)):
        cells = next(csv.reader([lines.text(k)]), [])
        if len(cells) != d:
            return (f"{path}: ragged row at line {lines.line(k)} (row {k + 1}): {len(cells)} "
                    f"cells, header has {d}.")
    first = arrow_msg.splitlines()[0]
    return f"{path}: cannot read it as a CSV file ({first})."


def read_numbers(path: str) -> tuple[list[str], np.ndarray]:
    """Header and every column as float64 (n x d); a text column is an error."""
    tab = read(path)
    for name, t in tab.text.items():
        k, cell = t.first_bad if t.first_bad else (0, "")
        raise UserError(f"{path}: non-numeric value {cell!r} in column {name!r}, "
                        f"row {k + 1} (line {tab.lines.line(k)}).")
    values = np.empty((tab.n, len(tab.header)))
    for j, h in enumerate(tab.header):
        values[:, j] = tab.numbers[h]
    return tab.header, values


