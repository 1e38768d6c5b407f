"""Terminal output: aligned tables and a progress bar on stderr.

Tables take cells already formatted as strings (the caller knows the precision each
number deserves) and line them up; numeric-looking columns are right-aligned, text
left-aligned.  The progress bar draws on stderr only when it is a terminal and the
command is not printing --json, so pipes, logs and JSON consumers never see it.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Sequence
from typing import TextIO

_NUMBER = re.compile(r"^[-+]?(\d[\d,]*\.?\d*|\.\d+)([eE][-+]?\d+)?%?$|^[-+]?(inf|nan)$")


def _is_numeric(cell: str) -> bool:
    return bool(_NUMBER.match(cell.strip()))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, align: str | None = None,
          indent: int = 2, gap: int = 2, rule: bool = True) -> str:
    """Rows of cells as an aligned block of text (no trailing spaces, no final newline).

    ``align`` is one letter per column, "l" or "r"; by default a column is right-aligned
    when every non-empty cell in it looks like a number.  ``rule`` draws a line of dashes
    under the header.  Cells that are not strings are passed through ``str``.
    """
    ncol = len(headers)
    cells = [[("" if c is None else str(c)) for c in r] for r in rows]
    for r in cells:
        if len(r) != ncol:
            raise ValueError(f"table row has {len(r)} cells, header has {ncol}: {r}")
    if align is None:
        align = "".join(
            "r" if any(r[j] for r in cells) and all(_is_numeric(r[j]) for r in cells if r[j])
            else "l" for j in range(ncol))
    if len(align) != ncol or set(align) - {"l", "r"}:
        raise ValueError(f"align must be {ncol} letters from 'l'/'r'; got {align!r}")
    widths = [max([len(headers[j])] + [len(r[j]) for r in cells]) for j in range(ncol)]

    def line(values):
        parts = [v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, align)]
        return (" " * indent + (" " * gap).join(parts)).rstrip()

    out = [line(list(headers))]
    if rule:
        out.append(" " * indent + (" " * gap).join("-" * w for w in widths))
    out += [line(r) for r in cells]
    return "\n".join(out)


def fmt(x: float | None, spec: str = ".3g") -> str:
    """A number for a table cell: '' for None, 'nan'/'inf' spelled plainly."""
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, spec)


def enabled(as_json: bool = False, stream: TextIO | None = None) -> bool:
    """Progress output is wanted: not under --json, and the stream is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return not as_json and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class ProgressBar:
    """A one-line bar redrawn in place on stderr: ``label [#####.....]  42%  text``.

    ``update(fraction, text)`` takes the fraction done in [0, 1] (or None when unknown,
    which draws no bar, only the text).  Redraws are throttled; ``close()`` erases the
    line so that the normal output that follows starts clean.  When ``active`` is false
    every method does nothing.
    """

    def __init__(self, label: str = "", *, active: bool | None = None,
                 stream: TextIO | None = None, width: int = 24, min_interval: float = 0.05):
        self.stream = sys.stderr if stream is None else stream
        self.active = enabled(stream=self.stream) if active is None else active
        self.label, self.width, self.min_interval = label, width, min_interval
        self._last = -math.inf
        self._drawn = 0

    def update(self, fraction: float | None, text: str = "", *, force: bool = False) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        parts = [self.label] if self.label else []
        if fraction is not None and math.isfinite(fraction):
            f = min(max(fraction, 0.0), 1.0)
            n = int(round(f * self.width))
            parts.append(f"[{'#' * n}{'.' * (self.width - n)}] {100 * f:3.0f}%")
        if text:
            parts.append(text)
        line = "  ".join(parts)
        pad = max(self._drawn - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._drawn = len(line)

    def close(self) -> None:
        if self.active and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def convergence_fraction(g0: float, g: float, tol: float) -> float | None:
    """How far |g| has come from g0 down to tol, on a log scale (what a fit's bar shows).

    Gradient norms fall geometrically (or faster), so log(g0/g) / log(g0/tol) moves
    steadily where the iteration count against max_iter would sit near zero."""
    if not (g0 > 0 and g > 0 and tol > 0) or not all(map(math.isfinite, (g0, g, tol))):
        return None
    if g0 <= tol:
        return 1.0
    return max(0.0, math.log(g0 / g) / math.log(g0 / tol))


def fit_progress(solver: str, tol: float, *, active: bool | None = None,
                 stream: TextIO | None = None):
    """A solver callback ``cb(k, entry)`` drawing a bar; call ``cb.close()`` when done."""
    bar = ProgressBar(solver, active=active, stream=stream)
    state: dict = {}

    def cb(k: int, entry: dict) -> None:
        g = entry["grad_norm"]
        state.setdefault("g0", g)
        bar.update(convergence_fraction(state["g0"], g, tol),
                   f"iteration {k + 1}  loss {entry['loss']:.10g}  |g| {g:.3e}")

    cb.close = bar.close  # type: ignore[attr-defined]
    cb.bar = bar  # type: ignore[attr-defined]
    return cb
