"""One page per model: the derivation with each step's verdict, the three-way check, a fit
and its convergence plot, written as Markdown (LaTeX for GitHub-style renderers) and as a
self-contained HTML page that reads offline (plain-text formulas, LaTeX source beside
them, the plot embedded).

The page is assembled once as a list of blocks and rendered twice, so the Markdown and
the HTML say the same thing.  Every section is produced independently: a model whose
fit or plot fails still gets its derivation and check, with the failure stated.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
import textwrap

import torch

from handgrad import registry
from handgrad.errors import UserError
from handgrad.fitting import compare, pipeline
from handgrad.notation.render import latex_name
from handgrad.present.io import write_text
from handgrad.present.rules import rule_html, rule_markdown
from handgrad.verify import checker, derive

STEP_RTOL = derive.RTOL
COMPARE_MAX_ITER = 200  # keeps `report --all` to minutes: GD on the two-layer net is slow


# --------------------------------------------------------------------------- content


def step_verdicts(entry, *, seed: int = 0, rtol: float = STEP_RTOL) -> list[dict]:
    """Every derivation of ``entry`` as ``derive`` checks it (handgrad.verify.derive),
    flattened to the rows a page shows.  A notation derivation's rows are verified lines;
    a Python derivation's rows are evaluated, their text not checked."""
    rep = derive.derive_entry(entry, seed=seed, rtol=rtol)
    out = []
    for d in rep["derivations"]:
        if d.get("format") == "notation":
            out.append(_notation_rows(d, rep))
            continue
        rows = []
        for s in d["steps"]:
            fail = s["failures"][0] if s["failures"] else None
            rows.append({"index": s["line"], "text": s["text"], "latex": s["latex"],
                         "mathml": latex_mathml(s["latex"]),
                         "why": s["why"], "kind": s["kind"], "source": s["source"],
                         "ok": s["ok"], "residual": s["residual"], "text_checked": False,
                         "verdict": s.get("verdict", "verified" if s["ok"] else "failed"),
                         "reason": f"{fail['problem']}: {fail['reason']}" if fail else "",
                         "points": len(rep["problems"])})
        out.append({"title": d["title"], "target": d["target"], "layout": d["layout"],
                    "assumptions": d["assumptions"], "problems": rep["problems"],
                    "steps": rows, "ok": d["ok"], "reference": d.get("reference", ""),
                    "fitted": d.get("final_line_is_fitted"), "notes": rep["notes"]})
    return out


def latex_mathml(latex: str) -> str | None:
    """MathML for a Python step's hand-written LaTeX (latex2mathml), so the HTML page
    typesets it like a notation line; None where the converter refuses it (the page then
    shows the text with its LaTeX behind a disclosure).  The text is the step's printed
    text, not checked: its row still says "evaluated; text not checked"."""
    try:
        from latex2mathml.converter import convert
        return convert(latex)
    except Exception:  # noqa: BLE001 - any converter failure falls back to the plain text
        return None


def _notation_rows(d: dict, rep: dict) -> dict:
    rows = []
    fn = d["function"]
    for r in sorted(d["lines"] + d["readoff"], key=lambda r: r["index"]):
        lhs = fn["name"] if r["kind"] == "value" else r["lhs"]
        rows.append({"index": r["index"], "text": f"{lhs} = {r['text']}", "latex": r["latex"],
                     "mathml": r.get("mathml"), "lhs": lhs, "why": r["rule"] or "", "kind": r["kind"],
                     "source": r["source"], "ok": r["verdict"] == "verified", "verdict": r["verdict"],
                     "residual": r["residual"], "text_checked": True, "reason": r["reason"] or "",
                     "points": len(d["checked_at"]["points"])})
    link = d["link"]
    return {"title": d["title"] or f"{fn['name']} = {fn['text']}", "target": "notation",
            "layout": d["layout"], "assumptions": d["conventions"][1:], "problems": link["problems"],
            "steps": rows, "ok": d["ok"], "fitted": link["ok"], "notes": rep["notes"],
            "reference": d["checked_at"]["reference"], "path": d["path"],
            "function": {"text": f"{fn['name']} = {fn['text']}", "latex": fn["latex"],
                         "mathml": fn.get("mathml")},
            # the names the lines use (let C = X - one*mu'), each printed from its tree
            "definitions": [{k: x.get(k) for k in ("name", "text", "latex", "mathml")}
                            for x in d.get("definitions", [])],
            "link": link["rows"]}


def gather(model: str, *, seed: int = 0, device: str = "auto", out_dir: str = ".",
           plots: bool = True, status=None, compare_max_iter: int = COMPARE_MAX_ITER,
           fit_kw: dict | None = None, check_seeds=(0, 1, 2)) -> dict:
    """Everything a page shows, as plain data.  ``fit_kw`` goes to every fit
    (:func:`handgrad.fitting.pipeline.fit` options such as n_samples)."""
    fit_kw = dict(fit_kw or {})
    entry = registry.get(model)
    say = status or (lambda text: None)
    rec: dict = {"model": model, "title": entry.title, "seed": seed, "errors": {},
                 "compare_max_iter": compare_max_iter}
    say(f"{model}: derivation")
    rec["derivations"] = _guard(rec, "derivation", lambda: step_verdicts(entry, seed=seed))
    say(f"{model}: check")
    rec["check"] = _guard(rec, "check", lambda: checker.check_models([model], device=device,
                                                            seeds=tuple(check_seeds)))
    say(f"{model}: fit ({entry.model.default_solver})")
    rec["fit"] = _guard(rec, "fit", lambda: pipeline.fit(model, seed=seed, device=device, **fit_kw))
    rec["compare"] = None
    if compare.iterative_solvers(entry):
        def run_compare():
            return compare.run(model, seed=seed, device=device, done=rec["fit"],
                               **{**fit_kw, "max_iter": compare_max_iter},
                               status=lambda s: say(f"{model}: convergence ({s})"))
        rec["compare"] = _guard(rec, "convergence", run_compare)
    rec["plot"] = None
    if plots and rec["compare"]:
        from handgrad.present import plot

        path = os.path.join(out_dir, f"{model}_convergence.png")
        say(f"{model}: plot")
        if _guard(rec, "plot", lambda: plot.convergence(
                rec["compare"]["runs"], path, title=f"{entry.title}: convergence",
                tol=rec["compare"]["tol"], dtype=rec["compare"]["dtype"])):
            rec["plot"] = os.path.basename(path)
    steps_all = [s for d in rec["derivations"] or [] for s in d["steps"]]
    rec["summary"] = {
        "steps_verified": sum(s["ok"] and s["text_checked"] for s in steps_all),
        "steps_evaluated": sum(s["ok"] and not s["text_checked"] for s in steps_all),
        "steps_total": len(steps_all),
        "derivations_linked": all(d.get("fitted") is not False for d in rec["derivations"] or []),
        "checks_ok": bool(rec["check"] and rec["check"]["ok"]),
        "check_problems": len(_problems(rec)),
        "check_problems_ok": sum(p["ok"] for p in _problems(rec)),
        "fit_converged": bool(rec["fit"] and rec["fit"]["converged"]),
    }
    sm = rec["summary"]
    rec["ok"] = (not rec["errors"] and sm["checks_ok"] and sm["derivations_linked"]
                 and sm["steps_verified"] + sm["steps_evaluated"] == sm["steps_total"])
    return rec


def _guard(rec: dict, section: str, fn):
    """Run one section; a failure is recorded and shown on the page, not raised."""
    try:
        return fn()
    except UserError as exc:
        rec["errors"][section] = str(exc)
    except Exception as exc:  # one broken section must not sink the others
        rec["errors"][section] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def _problems(rec: dict) -> list[dict]:
    if not rec.get("check"):
        return []
    return [p for m in rec["check"]["models"].values() for p in m["problems"]]


# --------------------------------------------------------------------------- blocks


def _e(x: float | None, spec: str = ".1e") -> str:
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return "0" if x == 0 else format(x, spec)


def page(rec: dict) -> list[tuple]:
    """The page as blocks: (kind, ...) with kind in h, p, pre, table, steps, img."""
    entry = registry.get(rec["model"])
    b: list[tuple] = [("h", 1, f"{rec['title']} (`{rec['model']}`)")]
    s = rec["summary"]
    verdict = [f"derivation steps: **{steps_cell(s)}**",
               f"three-way check: **{s['check_problems_ok']}/{s['check_problems']}** problems pass"]
    fit = rec["fit"]
    if fit and fit["solver"] in ("closed", "qr", "normal", "svd"):
        verdict.append(f"fit: closed form ({fit['solver']}), gradient norm at the solution "
                       f"{_e(fit['grad_norm'], '.1e')}")
    elif fit:
        verdict.append(f"fit ({fit['solver']}): **{'converged' if fit['converged'] else 'NOT converged'}"
                       f"** in {fit['iterations']} iterations")
    b.append(("p", "; ".join(verdict) + "."))
    for section, msg in rec["errors"].items():
        b.append(("p", f"**{section} could not be produced:** {msg}"))
    # the model's module docstring (entry.model is the contract's Model record, whose own
    # docstring describes the record, not the model)
    doc = model_description(entry)
    if doc:
        b.append(("h", 2, "The model"))
        b.append(("pre", doc))

    b.append(("h", 2, "Derivation"))
    b.append(("p", "A derivation written in the notation (a `.hg` file) is parsed once: each line "
                   "shown is the expression that was evaluated. Every line is checked at points "
                   "handgrad draws from the declarations, along random directions, against "
                   "`torch.func` (jvp, grad, hessian of f); then, at the model's check problems "
                   f"(seed {rec['seed']}), f is compared with the model's loss and each read-off "
                   "with the gradient and Hessian that `fit` runs. A derivation written as Python "
                   "steps is judged by the same rule against `torch.func.jvp` (tolerance "
                   f"{STEP_RTOL:g} relative to the terms' size at the point), but its printed text "
                   "is free text: its lines are marked *evaluated; text not checked*."))
    ddoc = textwrap.dedent(entry.derivation.module.__doc__ or "").strip()
    if ddoc:
        b.append(("pre", ddoc))
    for d in rec["derivations"] or []:
        b.append(("h", 3, d["title"]))
        if d["target"] == "notation":
            b.append(("p", f"From `{d['path']}`; {d['layout']}."
                           + "".join(f" {c}." for c in d["assumptions"])))
            b.append(("p", f"`{d['function']['text']}`"))
            if d.get("definitions"):
                b.append(("lets", d["definitions"]))
            b.append(("steps", d["steps"]))
            b.append(("table", ["line", "is", "at problems", "largest difference", "verdict"],
                      [[f"`{r['line']}`", r["what"], str(len(r["problems"])), _e(r["residual"]),
                        "yes" if r["ok"] else "NO"] for r in d["link"]], "llrrl"))
            continue
        meta = [f"layout: {d['layout']}"]
        if d["assumptions"]:
            meta.append("assumptions: " + "; ".join(d["assumptions"]))
        meta.append(f"checked at: {', '.join(f'`{p}`' for p in d['problems']) or 'no problem'}")
        b.append(("p", ". ".join(m[0].upper() + m[1:] for m in meta) + "."))
        b.append(("steps", d["steps"]))
        if d.get("fitted") is not None:
            b.append(("p", "The last line is the gradient/Hessian that `fit` uses: "
                           + ("**yes**." if d["fitted"] else "**NO**.")))

    b.append(("h", 2, "Check: hand vs autograd vs finite differences"))
    b += _check_blocks(rec)
    b.append(("h", 2, "Fit"))
    b += _fit_blocks(rec)
    if rec["compare"]:
        b.append(("h", 2, "Convergence"))
        b.append(("p", "The same fit by each solver on the hand-derived derivatives and, for "
                       "reference, by `torch.optim.LBFGS` on autograd gradients, from the same "
                       "start. Loss is shown as loss - best loss (best over all runs), so "
                       "Newton's quadratic convergence shows as a curve bending ever more "
                       "steeply down; the dotted lines are the float resolution of the loss "
                       "and the gradient tolerance. Each run stops at "
                       f"{rec['compare_max_iter']} iterations (\"no (cap)\"); \"stalled\" "
                       "means the line search could no longer resolve a decrease of the loss."))
        if rec["plot"]:
            b.append(("img", rec["plot"], f"{rec['model']} convergence"))
        cmp = rec["compare"]
        rows = [[r["label"], str(r["iterations"]), compare.verdict(r), f"{r['loss']:.12g}",
                 _e(r["loss"] - cmp["best_loss"]), _e(r["grad_norm"], ".2e"),
                 f"{r['seconds']:.3f}"] for r in cmp["runs"]]
        b.append(("table", ["solver", "iterations", "converged", "loss", "loss - best",
                            "|grad|", "seconds"], rows, "lrlrrrr"))
    return b


def model_description(entry) -> str:
    """What the model's own module says about it (models/<name>.py's docstring)."""
    return textwrap.dedent(entry.model.module.__doc__ or "").strip()


def _check_blocks(rec: dict) -> list[tuple]:
    if not rec["check"]:
        return [("p", "No check results.")]
    tol = checker.TOLERANCES[torch.float64]
    out = [("p", "Largest absolute difference per problem (float64). Hand vs autograd passes "
                 f"within rtol {tol['autograd'][0]:g} / atol {tol['autograd'][1]:g}; anything "
                 f"vs central finite differences within rtol {tol['fd'][0]:g} / atol "
                 f"{tol['fd'][1]:g} (both scaled by max(1, max|reference|)).")]
    problems = _problems(rec)
    # every comparison check made, in its order (the loss a fit reads, flat directions too)
    cols = list(dict.fromkeys((c["quantity"], c["hand_vs"]) for p in problems
                              for c in p["comparisons"]))
    names = {"autograd": "hand vs autograd", "fd": "hand vs FD", "autograd_vs_fd": "autograd vs FD",
             "model": "hand vs the model's loss", "orthonormal": "orthonormal",
             "hessian": "H v = 0", "gradient": "g . v = 0", "count": "as many as H's zeros"}
    quantities = {"gradient": "gradient", "hessian": "Hessian", "loss": "loss value",
                  "flat": "flat directions"}
    headers = (["seed", "problem"]
               + [f"{quantities.get(q, q)}: {names.get(v, v)}" for q, v in cols]
               + ["verdict"])
    rows = []
    for p in problems:
        by = {(c["quantity"], c["hand_vs"]): c for c in p["comparisons"]}
        cells = []
        for key in cols:
            c = by.get(key)
            cells.append("" if c is None else _e(c["max_abs_err"]) + ("" if c["ok"] else " FAIL"))
        rows.append([str(p["seed"]), p["label"]] + cells + ["pass" if p["ok"] else "FAIL"])
    out.append(("table", headers, rows, "ll" + "r" * len(cols) + "l"))
    bad = [(p, c) for p in problems for c in p["comparisons"] if not c["ok"] and c.get("worst")]
    for p, c in bad[:5]:
        w = c["worst"]
        msg = w.get("message") or (f"parameter {w['parameter']} index {w['index']}: hand "
                                   f"{w['hand']:.10g}, reference {w['reference']:.10g}, abs err "
                                   f"{w['abs_err']:.3g}, tol {w['tol']:.3g}")
        out.append(("p", f"**Mismatch** (seed {p['seed']}, {p['label']}, {c['quantity']} vs "
                         f"{c['hand_vs']}): {msg}"))
    note = problems[0].get("note") if problems else ""
    if note:
        out.append(("p", f"Note: {note}"))
    return out


def _fit_blocks(rec: dict) -> list[tuple]:
    fit = rec["fit"]
    if not fit:
        return [("p", "No fit.")]
    d = fit["data"]
    rows = [["data", f"{d['source']} (n={d['n']}, d={d['d']})"],
            ["solver", f"{fit['solver']} with {fit['derivatives']} derivatives"],
            ["device, dtype", f"{fit['device']}, {fit['dtype']}"],
            ["converged", "yes" if fit["converged"] else f"no: {fit['message']}"],
            ["iterations", str(fit["iterations"])],
            ["final loss", f"{fit['loss']:.15g}"],
            ["final gradient norm", _e(fit["grad_norm"], ".3e")],
            ["seconds", f"{fit['seconds']:.3f}"]]
    out = [("table", ["", ""], rows, "ll")]
    for note in d.get("notes", []) + fit.get("warnings", []):
        out.append(("p", f"Note: {note}"))
    hist = fit["history"]
    if fit["solver"] != "closed" and hist:
        shown = hist if len(hist) <= 14 else hist[:7] + [None] + hist[-6:]
        rows = [["...", "", "", ""] if h is None else
                [str(h["iteration"]), f"{h['loss']:.15g}", _e(h["grad_norm"], ".3e"),
                 _e(h.get("step"), ".3g")] for h in shown]
        out.append(("table", ["iteration", "loss", "|grad|", "step"], rows, "rrrr"))
    if "summary" in fit:  # the statistics table `fit` prints (handgrad/fitting/inference.py)
        out += _summary_blocks(fit)
    elif "coefficients" in fit:
        se = fit.get("std_errors") or {}
        truth = fit.get("true_coefficients") or {}
        rows = []
        for name, v in fit["coefficients"].items():
            t = truth.get(name)
            rows.append([name, f"{v:.8g}", _e(se.get(name), ".4g"),
                         "" if not isinstance(t, (int, float)) else f"{t:.4g}"])
        out.append(("table", ["term", "estimate", "std err", "true (synthetic)"], rows, "lrrr"))
    else:
        rows = []
        for k, v in fit["params"].items():
            t = torch.as_tensor(v, dtype=torch.float64)
            if t.numel() == 1:
                val = f"{t.item():.6g}"
            elif t.numel() <= 25 and t.dim() <= 2:  # small: the values, rows split by ";"
                rows2 = t.reshape(1, -1) if t.dim() == 1 else t
                val = "[" + "; ".join(", ".join(f"{x:.4g}" for x in r.tolist())
                                      for r in rows2) + "]"
            else:
                val = f"shape {tuple(t.shape)}, norm {t.norm().item():.6g}"
            rows.append([k, val])
        out.append(("table", ["parameter", "estimate"], rows, "ll"))
    return out


def _summary_blocks(fit: dict) -> list[tuple]:
    """The coefficient table as `fit` prints it: estimate, standard error, z (or t), P and
    the interval, then the fit statistics lines (the same text as the terminal's)."""
    from handgrad.fitting import inference

    s = fit["summary"]
    stat = s["statistic"]
    pct = f"{s.get('level', inference.LEVEL):.0%}"
    truth = fit.get("true_coefficients") or {}
    std = s.get("standardized_coef")
    headers = (["term", "coef", "std err", stat, f"P>|{stat}|", f"[{pct}", "interval]"]
               + (["coef (std)"] if std else []) + (["true (synthetic)"] if truth else []))
    rows = []
    for t in s["terms"]:
        row = [t["term"], f"{t['coef']:.10g}", _g(t["std_err"], ".5g"), _g(t["stat"], ".3f"),
               _g(t["p_value"], ".3g"), _g(t["ci_low"], ".6g"), _g(t["ci_high"], ".6g")]
        if std:
            row.append(_g(std.get(t["term"]), ".6g"))
        if truth:
            row.append(_g(truth.get(t["term"]), ".4g"))
        rows.append(row)
    out = [("table", headers, rows, "l" + "r" * (len(headers) - 1))]
    lines = inference.format_summary(s)
    stats = lines[lines.index("") + 1:] if "" in lines else []
    if stats:
        out.append(("pre", "\n".join(stats)))
    return out


def _g(x, spec: str) -> str:
    """A table number; blank where there is none (NaN standard errors print as nan)."""
    if x is None:
        return ""
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


# --------------------------------------------------------------------------- Markdown


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _md_table(headers, rows, align) -> str:
    head = "| " + " | ".join(_md_cell(h) for h in headers) + " |"
    rule = "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"
    body = ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join([head, rule] + body)


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            out.append("#" * blk[1] + " " + blk[2])
        elif kind == "p":
            out.append(blk[1])
        elif kind == "pre":
            out.append("```text\n" + blk[1] + "\n```")
        elif kind == "table":
            out.append(_md_table(*blk[1:]))
        elif kind == "img":
            out.append(f"![{blk[2]}]({blk[1]})")
        elif kind == "lets":
            out.append("Let " + ", ".join(f"${latex_name(x['name'])} = {x['latex']}$"
                                          for x in blk[1]) + ".")
        elif kind == "steps":
            lines = []
            for r in blk[1]:
                lines.append(f"$$\n{r['latex']} \\tag{{{r['index']}}}\n$$")
            out.append("\n\n".join(lines))
            rows = [[str(r["index"]), f"`{r['text']}`", rule_markdown(r["why"]), _e(r["residual"]),
                     _step_verdict(r)] for r in blk[1]]
            out.append(_md_table(["#", "step (plain text)", "rule", "residual", "verdict"],
                                 rows, "rllrl"))
    return "\n\n".join(out) + "\n"


def steps_cell(s: dict) -> str:
    """'12/12 verified', or with Python steps '9/12 verified, 3 evaluated (text not checked)'."""
    out = f"{s['steps_verified']}/{s['steps_total']} verified"
    if s.get("steps_evaluated"):
        out += f", {s['steps_evaluated']} evaluated (text not checked)"
    return out


def _step_verdict(r: dict) -> str:
    if not r["points"]:
        return "not checked"
    if r.get("verdict") in ("inconclusive", "error"):
        return f"{r['verdict']} ({r['reason']})"
    if not r["ok"]:
        return f"WRONG ({r['reason']})"
    return "verified" if r["text_checked"] else "evaluated; text not checked"


# --------------------------------------------------------------------------- HTML

CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1f23;
       max-width: 1100px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.7em; border-bottom: 1px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
code, pre, .f { font-family: "SFMono-Regular", Consolas, "DejaVu Sans Mono", monospace; }
code { font-size: .88em; }
pre, .f { font-size: 13px; }
pre { background: #f6f8fa; padding: .8em 1em; overflow-x: auto; border-radius: 4px; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13.5px; }
th, td { border: 1px solid #d8dee4; padding: .3em .6em; vertical-align: top; }
th { background: #f6f8fa; text-align: left; }
td.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.f { white-space: pre-wrap; }
td.n { white-space: nowrap; }
.ok { color: #1a7f37; font-weight: 600; }
.bad { color: #cf222e; font-weight: 600; }
details summary { cursor: pointer; color: #57606a; font-size: 12px; }
details pre { margin: .3em 0 0; font-size: 12px; }
img { max-width: 100%; border: 1px solid #eee; }
"""

_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<b>\1</b>"),
    (re.compile(r"\[([^\]]+)\]\(([^)]+)\)"), r'<a href="\2">\1</a>'),
]


def _inline(text: str) -> str:
    s = html.escape(text, quote=False)
    for pat, rep in _INLINE:
        s = pat.sub(rep, s)
    return s


def _html_table(headers, rows, align) -> str:
    head = "".join(f"<th>{_inline(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for c, a in zip(r, align):
            cls = ' class="r"' if a == "r" else (' class="n"' if len(c) < 24 else "")
            text = _inline(c)
            if c in ("pass", "verified", "yes"):
                text = f'<span class="ok">{text}</span>'
            elif c.startswith(("FAIL", "WRONG", "NO")) or c.endswith(" FAIL"):
                text = f'<span class="bad">{text}</span>'
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def to_html(blocks: list[tuple], *, title: str, base_dir: str = ".") -> str:
    """A self-contained page: CSS inline, images embedded, no scripts, no network."""
    out = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            out.append(f"<h{blk[1]}>{_inline(blk[2])}</h{blk[1]}>")
        elif kind == "p":
            out.append(f"<p>{_inline(blk[1])}</p>")
        elif kind == "pre":
            out.append(f"<pre>{html.escape(blk[1])}</pre>")
        elif kind == "table":
            out.append(_html_table(*blk[1:]))
        elif kind == "img":
            path = os.path.join(base_dir, blk[1])
            try:
                with open(path, "rb") as fh:
                    src = "data:image/png;base64," + base64.b64encode(fh.read()).decode()
            except OSError:
                src = blk[1]
            out.append(f'<p><img src="{src}" alt="{html.escape(blk[2])}"></p>')
        elif kind == "lets":
            out.append("<p>Let " + ", ".join(
                f'{html.escape(x["name"])} = {x["mathml"]}' if x.get("mathml") else
                f'<code>{html.escape(x["name"] + " = " + x["text"])}</code>' for x in blk[1])
                + ".</p>")
        elif kind == "steps":
            rows = []
            for r in blk[1]:
                v = _step_verdict(r)
                cls = "ok" if v == "verified" else "bad"
                lhs = f'{html.escape(r["lhs"])} = ' if r.get("lhs") else ""  # notation rows
                math = (f'{lhs}{r["mathml"]}<details><summary>plain text</summary>'
                        f'<pre>{html.escape(r["text"])}</pre></details>' if r.get("mathml") else
                        f'{html.escape(r["text"])}<details><summary>LaTeX</summary>'
                        f'<pre>{html.escape(r["latex"])}</pre></details>')
                rows.append(
                    f'<tr><td class="r">{r["index"]}</td>'
                    f'<td class="f">{math}</td>'
                    f'<td class="rule">{rule_html(r["why"])}</td>'
                    f'<td class="r">{_e(r["residual"])}</td>'
                    f'<td><span class="{cls}">{html.escape(v)}</span></td></tr>')
            out.append("<table><thead><tr><th>#</th><th>step</th><th>rule</th>"
                       "<th>residual</th><th>verdict</th></tr></thead><tbody>"
                       + "".join(rows) + "</tbody></table>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(out) + "\n</body></html>\n")


# --------------------------------------------------------------------------- files


def write(model: str, out_dir: str, *, seed: int = 0, device: str = "auto", plots: bool = True,
          status=None, compare_max_iter: int = COMPARE_MAX_ITER,
          fit_kw: dict | None = None, check_seeds=(0, 1, 2)) -> dict:
    """Write <model>.md, <model>.html and <model>_convergence.png into ``out_dir``."""
    rec = gather(model, seed=seed, device=device, out_dir=out_dir, plots=plots, status=status,
                 compare_max_iter=compare_max_iter, fit_kw=fit_kw, check_seeds=check_seeds)
    blocks = page(rec)
    md = os.path.join(out_dir, f"{model}.md")
    page_html = os.path.join(out_dir, f"{model}.html")
    write_text(md, to_markdown(blocks))
    write_text(page_html, to_html(blocks, title=f"handgrad: {rec['title']}", base_dir=out_dir))
    files = [md, page_html] + ([os.path.join(out_dir, rec["plot"])] if rec["plot"] else [])
    return {"model": model, "ok": rec["ok"], "files": files, "summary": rec["summary"],
            "errors": rec["errors"]}


def write_index(results: list[dict], out_dir: str) -> list[str]:
    rows = []
    for r in results:
        s = r["summary"]
        entry = registry.get(r["model"])
        rows.append([f"[{entry.title}]({r['model']}.md)",
                     steps_cell(s),
                     f"{s['check_problems_ok']}/{s['check_problems']}",
                     "yes" if s["fit_converged"] else "NO",
                     "pass" if r["ok"] else "FAIL"])
    headers = ["model", "derivation steps", "check problems passed", "fit converged", "verdict"]
    blocks = [("h", 1, "handgrad reports"),
              ("p", "One page per model: the hand derivation with each step verified against "
                    "torch.func.jvp, the three-way check (hand vs autograd vs finite "
                    "differences), a fit and its convergence."),
              ("table", headers, rows, "lrrll")]
    md = os.path.join(out_dir, "index.md")
    write_text(md, to_markdown(blocks))
    hblocks = [blk if blk[0] != "table" else
               ("table", headers, [[c.replace(".md)", ".html)") for c in row] for row in rows],
                "lrrll") for blk in blocks]
    page_html = os.path.join(out_dir, "index.html")
    write_text(page_html, to_html(hblocks, title="handgrad reports", base_dir=out_dir))
    return [md, page_html]


def prepare_out_dir(out_dir: str) -> str:
    """Create ``out_dir`` (one level) if needed; a UserError if that is not possible."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--out {out_dir} exists and is not a folder.")
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise UserError(f"--out {out_dir}: folder {parent} does not exist.")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create --out {out_dir}: {exc.strerror or exc}.") from None
    if not os.access(out_dir, os.W_OK):
        raise UserError(f"--out {out_dir} is not writable.")
    return out_dir


def run(models: list[str], *, out_dir: str = "reports", all_models: bool = False, seed: int = 0,
        device: str = "auto", plots: bool = True, progress: bool = False,
        compare_max_iter: int = COMPARE_MAX_ITER, fit_kw: dict | None = None) -> dict:
    """The `report` command: pages for ``models`` (or every registered model) and, for more
    than one model, an index.  Everything a user can get wrong is checked before work."""
    names = list(registry.REGISTRY) if all_models else list(dict.fromkeys(models))
    if not names:
        raise UserError("Name one or more models, or pass --all; available: "
                        f"{', '.join(sorted(registry.REGISTRY))}.")
    for name in names:
        registry.get(name)
    if plots:
        from handgrad.present import plot

        plot.pyplot()  # a missing matplotlib is a one-line error now, not after the fits
    prepare_out_dir(out_dir)
    from handgrad.present import term

    bar = term.ProgressBar("report", active=progress)
    results = []
    try:
        for i, name in enumerate(names):
            def status(text, i=i):
                bar.update(i / len(names), text, force=True)
            results.append(write(name, out_dir, seed=seed, device=device, plots=plots,
                                 status=status, compare_max_iter=compare_max_iter,
                                 fit_kw=fit_kw))
        bar.update(1.0, "index", force=True)
        index = write_index(results, out_dir) if len(names) > 1 else []
    finally:
        bar.close()
    return {"out": out_dir, "models": {r["model"]: r for r in results}, "index": index,
            "files": [f for r in results for f in r["files"]] + index,
            "ok": all(r["ok"] for r in results)}


def summary_table(out: dict) -> str:
    """The `report` command's terminal summary."""
    from handgrad.present import term

    rows = []
    for name, r in out["models"].items():
        s = r["summary"]
        rows.append([name, steps_cell(s),
                     f"{s['check_problems_ok']}/{s['check_problems']}",
                     "yes" if s["fit_converged"] else "NO", "pass" if r["ok"] else "FAIL",
                     os.path.basename(r["files"][0]) if r["files"] else ""])
    return term.table(["model", "derivation steps", "checks passed", "fit converged", "verdict",
                       "page"], rows, align="lrrlll")
