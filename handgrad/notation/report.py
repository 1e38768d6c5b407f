"""A verifier report (the dict ``verify`` returns) as terminal text.

    >>> print(format_text(derive_text_file("examples/logdet.hg")))  # doctest: +SKIP
    f = log|X|   (examples/logdet.hg)
      f = log(det(X))
        ✓ = logdet(X)
        ✓ df = tr(inv(X)*dX)            d|X| = |X| tr(X^-1 dX)
        ✓ grad X = inv(X)'
      verified: ...

Marks: ✓ verified, ? inconclusive, ✗ failed, ! error; a line that is not verified
gets its reason underneath.  Every formula shown is printed from the tree that was
evaluated.
"""

from __future__ import annotations

from handgrad.notation.render import latex_name
from handgrad.present.rules import rule_latex, rule_markdown, tex_text

MARKS = {"verified": "✓", "inconclusive": "?", "failed": "✗", "error": "!"}


def format_text(report: dict) -> str:
    fn = report["function"]
    head = report["title"] or f"{fn['name']} = {fn['text']}"
    out = [f"{head}   ({report['path']})"]
    for d in report["definitions"]:
        out.append(f"  let {d['name']} = {d['text']}")
    out.append(f"  {fn['name']} = {fn['text']}")
    for err in fn["errors"][:1]:
        out.append(f"    ! {err}")
    rows = sorted(report["lines"] + report["readoff"], key=lambda r: r["index"])
    prev, lhs_width = "value", len(fn["name"])
    texts = []
    for r in rows:
        cont = r["kind"] == prev and r["kind"] in ("value", "df", "d2f", "vecdf")
        prev = r["kind"]
        if not cont:
            lhs_width = len(r["lhs"])
        lhs = " " * lhs_width if cont else r["lhs"]
        texts.append((r, f"{MARKS[r['verdict']]} {lhs} = {r['text']}"))
    width = max((len(t) for _, t in texts), default=0)
    for r, t in texts:
        out.append("    " + (f"{t:<{width}}   {r['rule']}" if r["rule"] else t))
        if r["verdict"] != "verified" and r["reason"]:
            out.append(f"        {r['reason']}")
    pts = report["checked_at"]["points"]
    sizes = "; ".join(", ".join(f"{k} = {v}" for k, v in p["sizes"].items()) or "fixed sizes" for p in pts)
    out.append(f"  {report['verdict']}: {len(pts)} points ({sizes}), "
               f"{report['checked_at']['directions_per_point']} directions each, against "
               f"{report['checked_at']['reference']}")
    for r in report["checked_at"].get("redrawn") or []:
        out.append(f"  replaced: {r}")
    if report["first_wrong"]:
        fw = report["first_wrong"]
        out.append(f"  first wrong line: {fw['source']}: {fw['lhs']} = {fw['text']}")
    for c in report["conventions"]:
        out.append(f"  note: {c}")
    return "\n".join(out)


def _rows(report: dict) -> list[dict]:
    return sorted(report["lines"] + report["readoff"], key=lambda r: r["index"])


_MD = {"verified": "✓ verified", "inconclusive": "? inconclusive", "failed": "✗ failed",
       "error": "! error"}


def _def_latex(d: dict) -> tuple[str, str]:
    """A let line's two sides in LaTeX: its name as the lines write names, its formula as
    printed from the tree that was verified."""
    return latex_name(d["name"]), d["latex"]


def format_markdown(report: dict) -> str:
    """Markdown: each line as display math ($$...$$, from the same tree) with its verdict,
    the names the lines use (let z = ...) before them, and each rule text typeset (its
    formulas as $...$)."""
    fn = report["function"]
    out = [f"### {report['title'] or fn['name'] + ' = ' + fn['text']}", ""]
    if report["definitions"]:  # the names the lines use, as the text format's let lines
        out += ["Let " + ", ".join(f"${n} = {t}$" for n, t in map(_def_latex, report["definitions"]))
                + ".", ""]
    out += [f"$${fn['latex']}$$", ""]
    for r in _rows(report):
        rule = f" — {rule_markdown(r['rule'])}" if r["rule"] else ""
        reason = f" ({r['reason']})" if r["verdict"] != "verified" and r["reason"] else ""
        out += [f"$${r['latex']}$$", "",
                f"{_MD[r['verdict']]}{reason}{rule}", ""]
    for r in report["checked_at"].get("redrawn") or []:
        out += ["Replaced: " + r.replace("*", "\\*").replace("_", "\\_") + ".", ""]
    out.append(f"**{report['verdict']}**; " + " ".join(report["conventions"]))
    return "\n".join(out) + "\n"


def format_latex(report: dict) -> str:
    """A standalone LaTeX document: the derivation as an align* with a verdict per line."""
    return ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n"
            + latex_section(report) + "\\end{document}\n")


def latex_section(report: dict) -> str:
    """The derivation as a LaTeX section (an align* with a verdict per line, the let lines
    first and each line's rule text typeset between it and the line before)."""
    fn = report["function"]
    esc = tex_text  # text for LaTeX: every special escaped (the title's 1/2*x^2 too), ASCII only

    def aligned(tex: str) -> str:  # "lhs = rhs" -> "lhs &= rhs" (the tree prints both sides)
        return tex.replace(" = ", " &= ", 1)
    # the names the lines use (let z = A*x), as the text format prints them, first
    lines = [f"\\text{{let }} {name} &= {tex}" for name, tex in map(_def_latex, report["definitions"])]
    lines.append(aligned(fn["latex"]))
    for r in _rows(report):
        # the rule between the line it leaves and the line it gives, typeset
        rule = f"\\intertext{{\\small by {rule_latex(r['rule'])}}}\n" if r["rule"] else ""
        lines.append(f"{rule}{aligned(r['latex'])} && \\text{{{esc(r['verdict'])}}}")
    body = " \\\\\n".join(lines)
    return (f"\\section*{{{esc(report['title'] or fn['text'])}}}\n"
            f"\\begin{{align*}}\n{body}\n\\end{{align*}}\n"
            f"Verdict: {esc(report['verdict'])}.\n")
