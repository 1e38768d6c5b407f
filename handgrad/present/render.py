"""One renderer for the commands' text output (cli.py prints it; the Python API and the
report reuse it): the check tables and the fit summary."""

from __future__ import annotations

from handgrad.fitting import inference
from handgrad.present import term


def check_text(out: dict) -> str:
    """The `check` command's tables, as text."""
    lines: list[str] = []
    say = lines.append
    say(f"device {out['device']}, dtype {out['dtype']}, seeds {out['seeds']}; "
               "every piece a fit reads vs the model's loss: hand vs autograd vs "
               "central finite differences (float64 references)")
    for name, m in out["models"].items():
        say(f"\n{name}: {'PASS' if m['ok'] else 'FAIL'}")
        tags = {"autograd": "hand~auto", "fd": "hand~fd", "autograd_vs_fd": "auto~fd",
                "model": "hand~model", "orthonormal": "orthonormal", "hessian": "H v=0",
                "gradient": "g.v=0", "count": "count"}
        cols = list(dict.fromkeys((c["quantity"], c["hand_vs"])
                                  for p in m["problems"] for c in p["comparisons"]))
        rows = []
        for p in m["problems"]:
            by = {(c["quantity"], c["hand_vs"]): c for c in p["comparisons"]}
            rows.append([p["seed"], p["label"]]
                        + ["" if k not in by else f"{by[k]['max_abs_err']:.1e}"
                           + ("" if by[k]["ok"] else " FAIL") for k in cols]
                        + ["pass" if p["ok"] else "FAIL"])
        say(term.table(["seed", "problem"] + [f"{q[:4]} {tags.get(v, v)}" for q, v in cols]
                              + ["verdict"], rows, align="ll" + "r" * len(cols) + "l"))
        for p in m["problems"]:
            for c in p["comparisons"]:
                if not c["ok"] and c["worst"]:
                    w = c["worst"]
                    if w.get("message"):
                        say(f"  MISMATCH seed {p['seed']} {p['label']}, {c['quantity']} "
                                   f"vs {c['hand_vs']}: {w['message']}")
                        continue
                    say(
                        f"  MISMATCH seed {p['seed']} {p['label']}, {c['quantity']} vs "
                        f"{c['hand_vs']}: parameter {w['parameter']} "
                        f"index {w['index']}: hand {w['hand']:.10g}, reference {w['reference']:.10g}, "
                        f"abs err {w['abs_err']:.3g}, rel err {w['rel_err']:.3g}, tol {w['tol']:.3g}")
        note = m["problems"][0].get("note") if m["problems"] else ""
        if note:
            say(f"  note: {note}")
    say(f"\n{'all checks passed' if out['ok'] else 'CHECK FAILED'}")
    return "\n".join(lines)


CLOSED = ("closed", "qr", "normal", "svd")  # solvers that solve, not iterate
ITERATION_CAP = 25  # more iteration lines than this are thinned (fit --all-iterations: all)


def shown_iterations(history: list[dict], cap: int = ITERATION_CAP) -> list[dict]:
    """The first and last five iterations and every k-th between, so a long run prints
    about ``cap`` lines (the iteration numbers show the thinning); all when at most ``cap``."""
    if len(history) <= cap:
        return list(history)
    k = max(1, (len(history) - 10) // (cap - 10))
    keep = sorted(set(range(5)) | set(range(5, len(history) - 5, k))
                  | set(range(len(history) - 5, len(history))))
    return [history[j] for j in keep]


def _ranges(ks: list[int]) -> str:
    """[3, 4, 5, 8] -> '3-5, 8'."""
    out, start = [], None
    for i, k in enumerate(ks):
        if start is None:
            start = k
        if i + 1 == len(ks) or ks[i + 1] != k + 1:
            out.append(f"{start}" if start == k else f"{start}-{k}")
            start = None
    return ", ".join(out)


def fit_text(out: dict, iterations: str = "capped") -> str:
    """A fit's header, iterations, verdict, coefficient table and scores, as text (the
    `fit` command prints it; handgrad.fit(...).summary() returns it).  ``iterations``:
    "capped" (see shown_iterations), "all", or "none" (fit --quiet)."""
    lines: list[str] = []
    say = lines.append
    d = out["data"]
    say(f"{out['model']} on {d['source']} (n={d['n']}, d={d['d']}), solver {out['solver']} "
               f"with {out['derivatives']} derivatives, {out['device']} {out['dtype']}")
    for note in d["notes"]:
        say(f"note: {note}")
    if out["solver"] not in CLOSED and iterations != "none":
        hist = out["history"] if iterations == "all" else shown_iterations(out["history"])
        say(term.table(["iter", "loss", "|grad|", "step"],
                       [[h["iteration"], f"{h['loss']:.15g}", f"{h['grad_norm']:.3e}",
                         f"{h['step']:.3g}"] for h in hist], indent=0))
        if len(hist) < len(out["history"]):
            say(f"({len(out['history'])} iterations; {len(hist)} shown: "
                "--all-iterations prints every one, --json has the full history)")
        sampled = [h for h in out["history"] if "hessian_chunk_stride" in h]
        if sampled:
            k = sampled[0]["hessian_chunk_stride"]
            say(f"sampled Hessians at iterations {_ranges([h['iteration'] for h in sampled])}: "
                f"summed over one row chunk in {k} and scaled to every row (while Newton is still "
                "far from the optimum; the loss, gradient and stopping tests use every row)")
        chord = [h for h in out["history"] if "hessian_from" in h]
        if chord:
            froms = sorted({h["hessian_from"] for h in chord})
            say(f"chord steps at iterations {_ranges([h['iteration'] for h in chord])}: the Hessian of "
                f"iteration {', '.join(map(str, froms))} reused instead of a new one (near the optimum, "
                "while each step still cuts |grad| fourfold; those passes form f and g only)")
    if out["solver"] in ("sgd", "adam") and out["converged"]:
        # stochastic: no gradient-norm test at the default tolerance; say what happened
        say(f"finished {out['iterations']} epochs ({out['message']}), "
                   f"{out['seconds']:.3f} s: loss {out['loss']:.12g}, |grad| {out['grad_norm']:.3e}")
    elif out["solver"] in CLOSED:
        # a closed form is solved, not iterated: say what it is and where it landed
        how = out.get("scale", {}).get("method") or out["solver"]
        say(f"closed form ({how}), {out['seconds']:.3f} s: loss {out['loss']:.12g}, "
            f"|grad| {out['grad_norm']:.3e} at the solution"
            + ("" if out["converged"] else " (not finite: the solve failed)"))
    else:
        status = "converged" if out["converged"] else "NOT converged"
        say(f"{status} in {out['iterations']} iterations, {out['seconds']:.3f} s: "
                   f"loss {out['loss']:.12g}, |grad| {out['grad_norm']:.3e}")
        if out["converged"] and out.get("message"):  # how it converged, when it is news
            say(f"  ({out['message']})")
    if "summary" in out:  # the statistics-package table (handgrad/fitting/inference.py)
        say("")
        for line in inference.format_summary(out["summary"], out.get("true_coefficients")):
            say(line)
    elif "coefficients" in out:
        se = out.get("std_errors") or {}
        truth = out.get("true_coefficients")
        rows = []
        for name, v in out["coefficients"].items():
            t = truth.get(name) if truth else None
            rows.append([name, f"{v:.8g}", term.fmt(se.get(name), ".4g")]
                        + ([term.fmt(t, ".4g")] if truth else []))
        say("")
        say(term.table(["term", "coef", "std err"] + (["true"] if truth else []), rows,
                              align="lrr" + ("r" if truth else ""), indent=0))
    lines.extend(evaluation_lines(out))
    lines.extend(convention_lines(out))
    return "\n".join(lines)


def convention_lines(out: dict) -> list[str]:
    """The footer: each choice behind the numbers above that differs from statsmodels' or
    scikit-learn's default (handgrad.fitting.pipeline.conventions)."""
    conv = out.get("conventions") or []
    if not conv:
        return []
    return ["", "conventions (where this differs from statsmodels / scikit-learn defaults):"] \
        + [f"  - {c}" for c in conv]


def labelled(value, labels: dict | None) -> list[str]:
    """A vector or matrix as aligned lines: its column labels as a header and, for a
    matrix, its row labels first; without labels, bracketed rows."""
    rows = value if isinstance(value, list) and value and isinstance(value[0], list) else [value]
    rows = [r if isinstance(r, list) else [r] for r in rows]
    cols = (labels or {}).get("columns")
    if not cols or len(cols) != len(rows[0]):
        return ["  [" + ", ".join(f"{x:>12.6g}" for x in r) + "]" for r in rows]
    names = (labels or {}).get("rows")
    cells = [[f"{x:.6g}" for x in r] for r in rows]
    if names and len(names) == len(rows):
        return term.table([""] + list(cols), [[nm] + c for nm, c in zip(names, cells)],
                          align="l" + "r" * len(cols), rule=False).splitlines()
    return term.table(list(cols), cells, align="r" * len(cols), rule=False).splitlines()


def evaluation_lines(out: dict) -> list[str]:
    """Training / held-out scores (softmax, two_layer, gaussian) and the estimate in the
    model's own form (gaussian mu, Sigma; softmax W, b), beside the truth on synthetic data."""
    lines: list[str] = []
    say = lines.append
    est = out.get("estimate") or {}
    truth = out.get("true_params") or {}
    labels = out.get("estimate_labels") or {}
    for name, value in est.items():
        for label, v in ((name, value), (f"true {name}", truth.get(name))):
            if v is None:
                continue
            say(f"\n{label} =" if label == name else f"{label} =")
            lines.extend(labelled(v, labels.get(name)))
    rows = [(name, out[key]) for name, key in (("training rows", "train"),
                                               ("held-out rows", "held_out"),
                                               ("true params, held-out", "held_out_true_params"))
            if key in out]
    if rows:
        say("")
    for name, ev in rows:
        acc = f"accuracy {100 * ev['accuracy']:.2f}%, " if "accuracy" in ev else ""
        say(f"{name:<22} (n={ev['n']}): {acc}mean log-likelihood {ev['log_likelihood']:.6g}")
    return lines


def compare_table(cmp: dict) -> str:
    """A comparison (handgrad.fitting.compare.run) as an aligned terminal table."""
    from handgrad.fitting import compare

    rows = [[r["label"], str(r["iterations"]), compare.verdict(r),
             f"{r['loss']:.12g}", term.fmt(r["loss"] - cmp["best_loss"], ".1e"),
             f"{r['grad_norm']:.2e}", f"{r['seconds']:.3f}"] for r in cmp["runs"]]
    return term.table(["solver", "iterations", "converged", "loss", "loss - best", "|grad|",
                       "seconds"], rows, align="lrlrrrr")
