"""CSV reading: a C parser for the common case, the exact per-cell pass to name a fault.

A numeric CSV is parsed by compiled code and every fault is still the one-line message of
the per-cell pass (row, column and value named), because on any doubt the per-cell pass
runs and raises it.  In order:

1. *Plain numeric files* (only digits, ``.``, ``e``/``E``, ``+``/``-``, commas and line
   ends after the header): the row structure (``d - 1`` commas a row, no empty cell) and
   every cell's grammar (a Python float literal) are checked vectorised over the bytes,
   then scipy's fast_matrix_market reader (C++, fast_float: correctly rounded, the same
   doubles as ``float()``) converts the cells.  scipy is a dependency already.
2. *Other text* (spaces, ``nan``/``inf``, a text column that is not used, non-ASCII
   names): ``numpy.loadtxt``'s C parser on the used columns, after the same row check.
3. *Anything either refuses* (a non-numeric cell, an empty cell, a ragged row, quotes,
   ``true``/``false``, blank-only rows, a stray carriage return): the exact per-cell pass,
   which also is the reference the tests compare the fast paths with.

A text column in most rows (not one typo) gets a message naming it and how to encode it.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Callable

import numpy as np

from handgrad.errors import UserError

_BOOL = {"true", "false"}


# ------------------------------------------------------------------------ the exact pass


def _is_number(c: str) -> bool:
    try:
        float(c)
    except ValueError:
        return c.lower() in _BOOL
    return True


def _text_columns(rows: list[list[str]], header: list[str], cols: list[int]) -> list[int]:
    """Used columns whose cells are text (not numbers) in most of the first 1000 rows."""
    sample = [r for r in rows[1:1001] if len(r) == len(header)]
    out = []
    for j in cols:
        cells = [r[j].strip() for r in sample if r[j].strip()]
        if cells and sum(not _is_number(c) for c in cells) * 2 > len(cells):
            out.append(j)
    return out


def _categorical_hint(rows, header, cols, j, target) -> str:
    """An extra sentence when column ``j`` holds text in most rows (a category, not a typo)."""
    text = _text_columns(rows, header, cols)
    if j not in text:
        return ""

    def shown(k):
        seen: list[str] = []
        for r in rows[1:1001]:
            c = r[k].strip() if len(r) == len(header) else ""
            if c and not _is_number(c) and c not in seen:
                seen.append(c)
        return ", ".join(repr(v) for v in seen[:3]) + (", ..." if len(seen) > 3 else "")

    out = ""
    if target is not None and header.index(target) in text:
        out += (f" Column {target!r} (the target) holds text ({shown(header.index(target))}),"
                " not numbers: a classifier needs numeric class labels (e.g. 0, 1, 2; any"
                " integers are re-encoded to 0..K-1).")
    feats = [k for k in text if header[k] != target]
    if len(feats) == 1:
        out += (f" Column {header[feats[0]]!r} holds text ({shown(feats[0])}), not numbers:"
                " encode it as numbers (e.g. one 0/1 column per category) or leave it out"
                " with --features.")
    elif feats:
        out += (" Columns " + ", ".join(f"{header[k]!r} ({shown(k)})" for k in feats)
                + " hold text, not numbers: encode them as numbers (e.g. one 0/1 column per"
                " category) or leave them out with --features.")
    return out


def check_header(path: str, header: list[str]) -> None:
    if any(h == "" for h in header):
        raise UserError(f"{path}: the header has an empty column name (column {header.index('')}).")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise UserError(f"{path}: duplicate column name(s) in the header: {', '.join(dup)}.")


def read_exact(path: str, lines: list[int] | None = None,
               select: Callable[[list[str]], list[int] | None] | None = None,
               target: str | None = None) -> tuple[list[str], np.ndarray]:
    """The per-cell pass (Python's csv module and ``float()``): every fault is a one-line
    UserError naming the row, the column, the value and the file line.  Columns that
    ``select`` leaves out are not converted (they stay NaN)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            numbered = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
        rows = [r for _, r in numbered]
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text CSV file.") from None
    except csv.Error as exc:
        raise UserError(f"{path}: malformed CSV ({exc}).") from None
    if not rows:
        raise UserError(f"{path} is empty: expected a header row and data rows.")
    header = [h.strip() for h in rows[0]]
    if len(rows) == 1:
        raise UserError(f"{path} has a header but no data rows.")
    check_header(path, header)
    cols = select(header) if select is not None else None
    used = list(range(len(header))) if cols is None else sorted(set(cols))
    values = np.full((len(rows) - 1, len(header)), np.nan)
    if lines is not None:
        lines[:] = [ln for ln, _ in numbered[1:]]
    for i, row in enumerate(rows[1:]):
        line = numbered[i + 1][0]  # 1-based file line of this row
        if len(row) != len(header):
            raise UserError(
                f"{path}: ragged row at line {line}: {len(row)} cells, header has {len(header)}."
            )
        for j in used:
            cell = row[j]
            c = cell.strip()
            try:
                values[i, j] = float(c)
            except ValueError:
                if c.lower() in _BOOL:
                    values[i, j] = 1.0 if c.lower() == "true" else 0.0
                    continue
                if c == "":
                    raise UserError(
                        f"{path}: empty cell (missing value) in column {header[j]!r}, "
                        f"row {i + 1} (line {line}); fill or drop that row."
                    ) from None
                raise UserError(
                    f"{path}: non-numeric value {cell!r} in column {header[j]!r}, "
                    f"row {i + 1} (line {line})." + _categorical_hint(rows, header, used, j, target)
                ) from None
    return header, values


# ------------------------------------------------------------------------- the fast path


class _Doubt(Exception):
    """The fast path cannot vouch for this file: run the exact pass."""


class _NotPlain(Exception):
    """A body with bytes the plain parser does not read (spaces, nan, text): loadtxt's turn."""


class _BlankLines(Exception):
    """Blank lines between data rows: drop them (and remember the file lines) and retry."""


def _split_header(raw: bytes):
    """(header cells, body start, body end) for a file whose first line is a plain header.

    Raises _Doubt (the exact pass decides) for blank first lines, quotes or no data."""
    start = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    end = raw.find(b"\n", start)
    if end < 0:
        raise _Doubt
    first = raw[start:end]
    if not first.strip() or b'"' in first:
        raise _Doubt
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        raise _Doubt from None
    stop = len(raw)
    while stop > end and raw[stop - 1] in b" \t\n":  # trailing blank lines
        stop -= 1
    if stop == end:
        raise _Doubt  # header only: the exact pass words it
    return [h.strip() for h in text.split(",")], end + 1, stop


# event classes for the grammar check: separator, sign, dot, exponent mark
_SEP, _SIGN, _DOT, _EXP = 0, 1, 2, 3
_CLASS = np.full(256, 255, np.uint8)
_CLASS[[ord(","), 10]] = _SEP
_CLASS[[ord("+"), ord("-")]] = _SIGN
_CLASS[ord(".")] = _DOT
_CLASS[[ord("e"), ord("E")]] = _EXP
_ONE_A_LINE = bytes.maketrans(b",", b"\n")


def _events(u: np.ndarray):
    """Positions (after a -1, and a virtual final newline) and bytes of all non-digits."""
    ev = np.flatnonzero((u - np.uint8(48)) > 9)
    pos = np.empty(len(ev) + 2, np.int64)
    pos[0], pos[1:-1], pos[-1] = -1, ev, len(u)
    byte = np.empty(len(ev) + 1, np.uint8)
    byte[:-1], byte[-1] = u[ev], 10
    return pos, byte


def _rows(seps: np.ndarray, sb: np.ndarray, d: int) -> int:
    """Row structure from the separators' positions and bytes (a final newline included):
    d cells a row and no empty cell.  Returns n; _BlankLines or _Doubt otherwise."""
    empty = np.diff(seps) == 1
    if (empty & (sb[1:] == 10) & (sb[:-1] == 10)).any():
        raise _BlankLines
    n = int(np.count_nonzero(sb == 10))
    if len(seps) != n * d or not (sb[d - 1::d] == 10).all():
        raise _Doubt  # ragged (or a comma inside quotes): the exact pass names the row
    if seps[0] == 0 or empty.any():
        raise _Doubt  # an empty cell
    return n


def _grammar_rules(c, pc, ppc, nc, g, gn):
    """True where an event (a non-digit byte) fits the float grammar, given its class
    ``c``, the classes before (``pc``, ``ppc``) and after (``nc``) it, and whether digits
    lie between it and the previous (``g``) and next (``gn``) event."""
    after_sep = pc == _SEP
    after_msign = (pc == _SIGN) & (ppc == _SEP)
    return (
        # a sign opens the cell or follows the exponent mark, right after it, and digits
        # follow (or, opening the cell, a dot does)
        (c == _SIGN) & ((after_sep | (pc == _EXP)) & ~g & (gn | (after_sep & (nc == _DOT))))
        # a dot opens the mantissa (after the cell start or its sign), a digit beside it
        | (c == _DOT) & ((after_sep | after_msign) & (g | gn))
        # the exponent mark follows the mantissa (digits, or a dot that has them)
        | (c == _EXP) & ((pc == _DOT) | ((after_sep | after_msign) & g))
        # a separator ends a cell that ends in a digit or in the mantissa's dot
        | (c == _SEP) & (g | (pc == _DOT))
    )


# the rules tabulated over every (c, pc, ppc, nc, g, gn): one lookup per event
_k = np.arange(1024)
_GOOD = _grammar_rules(_k & 3, (_k >> 2) & 3, (_k >> 4) & 3, (_k >> 6) & 3,
                       ((_k >> 8) & 1).astype(bool), ((_k >> 9) & 1).astype(bool))
del _k


def _float_grammar(c: np.ndarray, pos: np.ndarray) -> None:
    """Every cell is ``[sign] (digits [. [digits]] | . digits) [e [sign] digits]``.

    ``c`` is the class (0..3) of each non-digit byte, separators and the final newline
    included; ``pos`` their positions after a -1.  A cell is valid iff each of its events
    fits :func:`_grammar_rules`."""
    code = c.astype(np.uint16)
    code[1:] |= c[:-1].astype(np.uint16) << 2  # (pc, ppc of the first events: _SEP = 0)
    code[2:] |= c[:-2].astype(np.uint16) << 4
    code[:-1] |= c[1:].astype(np.uint16) << 6
    g = (np.diff(pos) > 1).view(np.uint8)
    code |= g.astype(np.uint16) << 8
    code[:-1] |= g[1:].astype(np.uint16) << 9
    code[-1] |= 1 << 9  # nothing follows the final newline
    if not _GOOD[code].all():
        raise _Doubt


def _fmm():
    try:
        from scipy.io import (
            _fast_matrix_market,  # noqa: F401  (scipy >= 1.12)
            mmread,
        )
    except ImportError:
        return None
    return mmread


class _Cells(io.RawIOBase):
    """A Matrix Market header, then the body with its commas read as newlines, as one
    stream: the body is translated once and never copied (a 78 MB join took 35 ms)."""

    def __init__(self, head: bytes, cells: memoryview):
        self.parts, self.at = [memoryview(head), cells], 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while self.parts and self.at >= len(self.parts[0]):
            self.parts.pop(0)
            self.at = 0
        if not self.parts:
            return 0
        part = self.parts[0]
        k = min(len(buf), len(part) - self.at)
        buf[:k] = part[self.at:self.at + k]
        self.at += k
        return k


def _parse_plain(source: bytes, start: int, stop: int, d: int):
    """(values, n) for the body source[start:stop]; _NotPlain unless it holds only digits,
    dots, e/E, signs, commas and newlines."""
    mmread = _fmm()
    if mmread is None:
        raise _Doubt
    body = memoryview(source)[start:stop]
    u = np.frombuffer(body, np.uint8)
    pos, byte = _events(u)
    c = _CLASS[byte]
    if (c > _EXP).any():
        raise _NotPlain
    is_sep = c == _SEP
    seps = pos[1:][is_sep]
    n = _rows(seps, byte[is_sep], d)
    _float_grammar(c, pos)
    head = f"%%MatrixMarket matrix array real general\n{d} {n}\n".encode()
    cells = memoryview(source.translate(_ONE_A_LINE))[start:stop]
    try:  # one cell a line; row-major order is column-major order of the transpose
        A = mmread(io.BufferedReader(_Cells(head, cells), 1 << 20))
    except (ValueError, OSError):
        raise _Doubt from None  # e.g. a leading '+', which fast_float refuses
    values = np.ascontiguousarray(np.asarray(A, dtype=np.float64).T)
    if values.shape != (n, d):
        raise _Doubt
    flat = values.reshape(-1)
    zero = np.flatnonzero(flat == 0)  # fast_float drops the sign of -0
    if len(zero):
        starts = np.where(zero == 0, 0, seps[np.maximum(zero - 1, 0)] + 1)
        flat[zero[u[starts] == ord("-")]] = -0.0
    return values, n


def _parse_loadtxt(body, d: int, used: list[int]):
    """(values, n) via numpy.loadtxt's C parser on the used columns (the others NaN)."""
    if b'"' in body:
        raise _Doubt  # quoted cells: the csv module's rules
    u = np.frombuffer(body, np.uint8)
    seps = np.flatnonzero((u == 44) | (u == 10))
    seps = np.r_[seps, len(u)]
    sb = np.r_[u[seps[:-1]], 10]
    empty = np.diff(seps) == 1
    if (empty & (sb[1:] == 10) & (sb[:-1] == 10)).any():
        raise _BlankLines
    n = int(np.count_nonzero(sb == 10))
    if len(seps) != n * d or not (sb[d - 1::d] == 10).all():
        raise _Doubt
    values = np.full((n, d), np.nan)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = np.loadtxt(io.BytesIO(body), delimiter=",", comments=None, usecols=used,
                             ndmin=2, encoding="utf-8", dtype=np.float64, quotechar=None)
    except (ValueError, UnicodeDecodeError):
        raise _Doubt from None
    if got.shape != (n, len(used)):
        raise _Doubt  # whitespace-only rows that loadtxt skipped
    values[:, used] = got
    return values, n


def _drop_blank_lines(body, first_line: int):
    """The body without its blank lines, and each remaining line's 1-based file line."""
    u = np.frombuffer(body, np.uint8)
    nl = np.flatnonzero(u == 10)
    starts = np.r_[0, nl[:-1] + 1]
    blank = nl == starts
    keep = np.ones(len(u), bool)
    keep[nl[blank]] = False
    rowlines = (first_line + np.flatnonzero(np.r_[~blank, True])).tolist()
    return u[keep].tobytes(), rowlines


def read(path: str, lines: list[int] | None = None,
         select: Callable[[list[str]], list[int] | None] | None = None,
         target: str | None = None) -> tuple[list[str], np.ndarray]:
    """Header + float cells (n x d; columns that ``select`` leaves out may be NaN).

    The same results and the same messages as :func:`read_exact`, fast for numeric files."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if b"\r" in raw:
            if raw.count(b"\r") != raw.count(b"\r\n"):
                raise _Doubt  # a lone CR is a line break to the csv module
            raw = raw.replace(b"\r\n", b"\n")
        header, start, stop = _split_header(raw)
        check_header(path, header)
        cols = select(header) if select is not None else None
        d = len(header)
        used = list(range(d)) if cols is None else sorted(set(cols))
        source, rowlines, plain = raw, None, True
        while True:
            body = memoryview(source)[start:stop]
            try:
                values, n = _parse_plain(source, start, stop, d) if plain else _parse_loadtxt(body, d, used)
                break
            except _NotPlain:
                plain = False
            except _BlankLines:
                if rowlines is not None:
                    raise _Doubt from None
                source, rowlines = _drop_blank_lines(body, 2)
                start, stop = 0, len(source)
    except _Doubt:
        return read_exact(path, lines, select, target)
    if lines is not None:
        lines[:] = rowlines if rowlines is not None else range(2, 2 + n)
    return header, values


def check_path(path: str) -> None:
    if not os.path.exists(path):
        raise UserError(f"Data file not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"Data path is a directory, not a CSV file: {path}")
