"""Convergence plots: loss - best loss and the gradient norm per iteration, log scales.

matplotlib is an optional extra (``pip install 'handgrad[plot]'``); it is imported only
here, only when a plot is asked for, with the non-interactive Agg backend.  Without it
the commands stop with one line (exit 2) before doing any work.

Why loss - best loss: near the optimum the loss itself is flat on any scale, while the
gap to the best loss seen falls like the error does, so Newton's quadratic convergence
(the number of correct digits doubling each step) shows as a curve bending down ever
more steeply, and gradient descent's linear rate as a straight line.
"""

from __future__ import annotations

import math
import os

from handgrad.errors import UserError
from handgrad.present.io import atomic_path

MISSING = ("plots need matplotlib, which is not installed: "
           "pip install 'handgrad[plot]' (or pip install matplotlib)")
FORMATS = ("png", "svg", "pdf")
CLOSED = ("closed", "qr", "normal", "svd")  # solvers without iterations to draw
EPS = {"float64": 2.220446049250313e-16, "float32": 1.1920928955078125e-07}

# one colour and marker per solver, the same in every figure
STYLE = {
    "newton": {"color": "#1f77b4", "marker": "o"},
    "gd": {"color": "#d62728", "marker": "s"},
    "lbfgs": {"color": "#7f7f7f", "marker": "^", "linestyle": "--"},
    "closed": {"color": "#2ca02c", "marker": "D"},
    "adam": {"color": "#9467bd", "marker": "v"},
    "sgd": {"color": "#ff7f0e", "marker": "x"},
}


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a UserError with the install line."""
    try:
        import matplotlib
    except ImportError:
        raise UserError(MISSING) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def check_folder(path: str, what: str = "output") -> str:
    """The folder that will hold ``path``: a UserError now, before any work, unless it
    exists and is writable (the write itself goes through handgrad.present.io.atomic_path)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"Cannot write {what} {path}: it is a folder.")
    if not os.path.isdir(folder):
        raise UserError(f"Cannot write {what} {path}: folder {folder} does not exist.")
    if not os.access(folder, os.W_OK):
        raise UserError(f"Cannot write {what} {path}: folder {folder} is not writable.")
    return folder


def check_output(path: str) -> str:
    """Validate a plot path before any work: known extension, writable folder, matplotlib."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise UserError(f"--plot {path}: the file name must end in "
                        f"{', '.join('.' + f for f in FORMATS)}.")
    check_folder(path, "plot")
    pyplot()
    return ext


def _series(history: list[dict], key: str, offset: float = 0.0):
    """(iterations, values - offset) keeping only positive finite values (log scale)."""
    xs, ys = [], []
    for h in history:
        v = h.get(key)
        if v is None:
            continue
        v = v - offset
        if math.isfinite(v) and v > 0:
            xs.append(h["iteration"])
            ys.append(v)
    return xs, ys


def best_loss(runs: list[dict]) -> float:
    losses = [h["loss"] for r in runs for h in r["history"] if math.isfinite(h["loss"])]
    return min(losses) if losses else float("nan")


def convergence(runs: list[dict], path: str, *, title: str = "", tol: float | None = None,
                dtype: str = "float64") -> str:
    """Draw one or more runs side by side and write ``path`` whole (temp file, os.replace).

    Each run is a dict with ``solver``, ``label`` and ``history`` (a list of dicts with
    iteration, loss, grad_norm), as ``fit --json`` and :mod:`handgrad.fitting.compare` give them.
    Left: loss - best loss (best over all runs); right: ||grad||; both log-scaled.
    """
    ext = check_output(path)
    plt = pyplot()
    best = best_loss(runs)
    eps = EPS.get(dtype, EPS["float64"])
    floor = eps * max(1.0, abs(best)) if math.isfinite(best) else None
    fig, (ax_l, ax_g) = plt.subplots(1, 2, figsize=(10, 4.6), dpi=100, layout="constrained")
    longest = max((len(r["history"]) for r in runs), default=0)
    hit_best = [(r.get("label") or r.get("solver", "?")).split(" (")[0] for r in runs
                if any(h["loss"] == best for h in r["history"])]
    for r in runs:
        if r.get("solver") in CLOSED:
            continue  # no iterations to draw; its loss still sets the best loss
        style = dict(STYLE.get(r.get("solver", ""), {}))
        if len(r["history"]) > 25:
            style.pop("marker", None)
        style.setdefault("linestyle", "-")
        name = r.get("label") or r.get("solver", "?")
        n = len(r["history"])
        label = f"{name}: {n - 1} iteration{'' if n == 2 else 's'}" if n else name
        for ax, key, offset in ((ax_l, "loss", best), (ax_g, "grad_norm", 0.0)):
            xs, ys = _series(r["history"], key, offset)
            ax.plot(xs, ys, label=label, markersize=4, linewidth=1.6, **style)
        zero = [h["iteration"] for h in r["history"] if h["loss"] == best]
        if zero:  # gap exactly 0: off the log scale, marked on the bottom edge instead
            ax_l.plot(zero, [0.0] * len(zero), transform=ax_l.get_xaxis_transform(),
                      linestyle="none", marker="v", markersize=7, clip_on=False,
                      color=style.get("color"), alpha=0.8)
    ax_l.set_title("loss - best loss", fontsize=11)
    ax_g.set_title("gradient norm ||g||", fontsize=11)
    # reference lines only where the curves come near them (within 3 decades); far below,
    # they would squash the curves into the top of the panel
    ref = {"color": "0.45", "linewidth": 0.9, "linestyle": ":"}
    low_l = min((y for r in runs for y in _series(r["history"], "loss", best)[1]), default=None)
    low_g = min((y for r in runs for y in _series(r["history"], "grad_norm")[1]), default=None)
    if floor is not None and low_l is not None and low_l <= 1e3 * floor:
        ax_l.axhline(floor, label=f"{dtype} resolution of the loss ({floor:.1g})", **ref)
    if tol is not None and tol > 0 and low_g is not None and low_g <= 1e3 * tol:
        ax_g.axhline(tol, label=f"tolerance ({tol:.0e})", **{**ref, "color": "0.2"})
    for ax in (ax_l, ax_g):
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.grid(True, which="major", color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
        if longest > 60:
            # Newton's handful of iterations beside gradient descent's hundreds: linear up
            # to 10, logarithmic beyond, so both are readable on one axis
            ax.set_xscale("symlog", linthresh=10, linscale=1.5)
            ax.set_xlim(0, 1.1 * (longest - 1))
            decades = [t for t in (100, 1000, 10000, 100000) if t <= longest - 1]
            extra = [20, 50] if len(decades) < 2 else []  # a short log region needs labels
            ticks = sorted(t for t in [0, 2, 4, 6, 8, 10] + extra + decades
                           if t <= longest - 1)
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.set_xlabel("iteration (linear to 10, log beyond)")
        elif longest > 1:
            ax.set_xlim(-0.03 * (longest - 1), 1.03 * (longest - 1))
            ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = ax_g.get_legend_handles_labels()
    h_l, l_l = ax_l.get_legend_handles_labels()
    for h, lab in zip(h_l, l_l):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    note = ""
    if math.isfinite(best):
        note = f"best loss {best:.15g}"
        if hit_best:
            note += (f", reached by {' and '.join(hit_best)} (a gap of exactly 0 is off the "
                     "log scale: marked by triangles on the bottom edge)")
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=9, frameon=False,
               title=note or None, title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext)
    finally:
        plt.close(fig)
    return path



def preflight(path: str, solver: str, compare: bool) -> None:
    """Before a fit: the plot can be written and there will be iterations to draw."""
    if solver in CLOSED and not compare:
        raise UserError(f"--plot draws iterations and the {solver} solver takes none; add "
                        "--compare (Newton, gradient descent and L-BFGS side by side) or "
                        "choose an iterative --solver.")
    check_output(path)


def fit_figure(out: dict, path: str, tol: float | None = None) -> str:
    """The plot for a `fit` result: its comparison runs if it has them, else its own run."""
    if out.get("compare"):
        runs, tol = out["compare"]["runs"], out["compare"]["tol"]
    else:
        runs = [{"solver": out["solver"], "history": out["history"],
                 "label": f"{out['solver']} ({out['derivatives']} derivatives)"}]
        if tol is None:
            from handgrad.device import resolve_dtype
            from handgrad.fitting.solvers import default_tol

            tol = default_tol(resolve_dtype(out["dtype"]))
    d = out["data"]
    title = f"{out['model']} on {d['source']}"
    return convergence(runs, path, title=title, tol=tol, dtype=out["dtype"])
