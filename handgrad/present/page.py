"""The page `handgrad serve` shows: an expression to derive, a derivation to check, and
each result as the derive command's JSON object laid out (typeset lines, rules, marks).

Everything is rendered here, on the server, from the same object ``derive --json`` prints:
the page works without JavaScript (its forms are plain GET/POST forms, so a derivation's
URL is shareable), needs no network (MathML is native to browsers; CSS and the few lines of
script are inline), and its only scripts show "working..." while a form is submitted and
copy the torch code.
"""

from __future__ import annotations

import html
import urllib.parse

from handgrad.present.rules import rule_html

# (title, expression, declarations, variables, Hessian): each derives with every line
# verified (tests/test_serve.py derives them all)
EXAMPLES = [
    ("The notes' example 1: a'Xb", "a'*X*b", "a: m; X: m x n; b: n", "X", False),
    ("The notes' example 2: a' exp(Xb)", "a'*exp(X*b)", "a: m; X: m x n; b: n", "X", False),
    ("The notes' example 3: least squares", "norm2(X*w - y)^2", "X: m x n; w: n; y: m", "w",
     True),
    ("The notes' log|X|", "logdet(X)", "X: n x n invertible", "X", False),
    ("The notes' example 5: the Gaussian's covariance",
     "logdet(Sigma) + tr(inv(Sigma)*S)", "Sigma: d x d spd; S: d x d spd", "Sigma", False),
    ("The notes' example 6: softmax cross-entropy", "sum(logsumexp(Z')) - tr(Y'*Z)",
     "X: n x d; Y: n x K onehot; W: K x d; Z = X*W'", "W", False),
    ("The notes' example 8: logistic regression", "sum(softplus(X*w)) - y'*X*w",
     "X: m x n; y: m; w: n", "w", True),
    ("Model loss: least squares with an L2 penalty", "(X*w - y)'*(X*w - y) + l2/2*w'*w",
     "X: m x n; y: m; w: n; l2: scalar positive", "w", True),
    ("Model loss: Poisson regression", "sum(exp(X*w)) - y'*X*w", "X: m x n; y: m; w: n", "w",
     True),
    ("matrixcalculus.org: tr(A X' B X C)", "tr(A*X'*B*X*C)",
     "X: m x n; A: k x n; B: m x m; C: n x k", "X", False),
    ("matrixcalculus.org: x'Ax", "x'*A*x", "x: n; A: n x n", "x", True),
    ("tr(X'AX) + log|X|", "tr(X'*A*X) + logdet(X)", "X: n x n invertible; A: n x n", "X",
     False),
    ("A residual's squared norm", "norm2(b - A*x)^2", "A: m x n; b: m; x: n", "x", True),
]

# a derivation with a slip, to try the second panel (examples/wrong_sign_inverse.hg)
WRONG_EXAMPLE = """\
# WRONG: a sign slip in d(X^-1), inside f = tr(A X^-1)
let X: n x n invertible
let A: n x n
wrt X
f = tr(A*inv(X))
df = tr(A*inv(X)*dX*inv(X))        # wrong sign: d(X^-1) = -X^-1 dX X^-1
   = tr((inv(X)'*A'*inv(X)')'*dX)
grad X = inv(X)'*A'*inv(X)'
"""

def _model_derivations() -> dict[str, str]:
    """{name: path} of the models' own derivations in the notation (derivations/*.hg, as
    the registry lists them)."""
    from handgrad import registry
    from handgrad.verify.in_notation import path_of

    out = {}
    for entry in registry.REGISTRY.values():
        for spec in entry.derivation.notation or ():
            path = path_of(entry.derivation.module, spec)
            out[spec.file[:-3] if spec.file.endswith(".hg") else spec.file] = path
    return dict(sorted(out.items()))


def derivation_names() -> list[str]:
    """The derivations the check panel offers: "wrong" (WRONG_EXAMPLE) and the models'."""
    return ["wrong"] + list(_model_derivations())


def derivation_text(name: str) -> str | None:
    """The text of one of derivation_names(), or None."""
    if name == "wrong":
        return WRONG_EXAMPLE
    path = _model_derivations().get(name)
    if path is None:
        return None
    with open(path, encoding="utf-8") as fh:
        return fh.read()


CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1f23;
       max-width: 1150px; margin: 1.5em auto; padding: 0 1.5em; }
h1 { font-size: 1.6em; margin-bottom: .1em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #eee; }
label { display: block; margin: .35em 0; }
label span.k { display: inline-block; min-width: 9em; color: #57606a; }
input[type=text], textarea { font: 14px "DejaVu Sans Mono", Consolas, monospace; width: 70%;
       padding: .25em .4em; }
textarea { width: 100%; }
button { font-size: 14px; padding: .25em .9em; cursor: pointer; }
code, pre { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 13px; }
pre { background: #f6f8fa; padding: .7em 1em; overflow-x: auto; border-radius: 4px; }
table { border-collapse: collapse; margin: .6em 0; font-size: 14px; }
th, td { border: 1px solid #d8dee4; padding: .3em .6em; vertical-align: top; }
th { background: #f6f8fa; text-align: left; }
td.n { text-align: right; color: #57606a; }
td.src { color: #57606a; font-size: 12px; white-space: nowrap; }
math { font-size: 1.1em; }
.mark { white-space: nowrap; font-weight: 600; }
tr.verified .mark { color: #1a7f37; }
tr.inconclusive .mark { color: #9a6700; }
tr.failed .mark, tr.error .mark { color: #cf222e; }
tr.first-wrong td { background: #ffebe9; }
tr.first-wrong td:first-child { border-left: 4px solid #cf222e; }
.why { font-size: 13px; color: #57606a; }
.verdict { font-weight: 600; }
.verdict.verified { color: #1a7f37; } .verdict.failed, .verdict.error { color: #cf222e; }
.verdict.inconclusive { color: #9a6700; }
.error-box { background: #ffebe9; border: 1px solid #cf222e; padding: .5em .8em; }
#working, #check-working { color: #9a6700; font-weight: 600; }
.examples li { margin: .15em 0; }
.note { color: #57606a; font-size: 13px; }
"""

SCRIPT = """
function working(id) { var w = document.getElementById(id); if (w) { w.hidden = false; } }
function copyText(id, button) {
  var text = document.getElementById(id).textContent;
  function done() { button.textContent = 'copied'; }
  function fallback() {
    var t = document.createElement('textarea'); t.value = text; document.body.appendChild(t);
    t.select(); var ok = document.execCommand('copy'); document.body.removeChild(t);
    if (ok) { done(); } else { button.textContent = 'select the code and copy it'; }
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, fallback);
  } else { fallback(); }
}
"""

MARK = {"verified": "\u2713 verified", "inconclusive": "? inconclusive", "failed": "\u2717 failed",
        "error": "! error"}


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def derive_url(expr: str, let: str, wrt: str, hessian: bool = False) -> str:
    """The shareable address of a derivation: /?expr=..&let=..&wrt=..[&hessian=1]."""
    q = {"expr": expr, "let": let, "wrt": wrt}
    if hessian:
        q["hessian"] = "1"
    return "/?" + urllib.parse.urlencode(q)


def _form(values: dict) -> str:
    checked = " checked" if values.get("hessian") else ""
    field = ('<label><span class="k">{label}</span><input type="text" id="{name}" '
             'name="{name}" value="{value}" placeholder="{ph}" spellcheck="false"></label>')
    fields = "".join(field.format(label=label, name=name, value=_e(values.get(name, "")), ph=_e(ph))
                     for label, name, ph in (
                         ("f =", "expr", "tr(X'*A*X) + logdet(X)"),
                         ("let", "let", "X: n x n invertible; A: n x n"),
                         ("with respect to", "wrt", "X")))
    examples = "".join(
        f'<li><a href="{_e(derive_url(e, d, w, h))}">{_e(title)}</a>: <code>{_e(e)}</code></li>'
        for title, e, d, w, h in EXAMPLES)
    return (
        '<form id="derive-form" method="get" action="/" onsubmit="working(\'working\')">'
        + fields
        + f'<label><input type="checkbox" id="hessian" name="hessian" value="1"{checked}> '
          "also the Hessian (one vector variable)</label>"
          '<button type="submit">Derive</button> <span id="working" hidden>working...</span>'
          "</form>"
          '<p class="note">Sizes are numbers or letters (<code>n x n</code>); properties after '
          "(<code>invertible</code>, <code>sym</code>, <code>spd</code>, <code>positive</code>); "
          "a name defined by a formula: <code>p = sigma(X*w)</code>. Every line handgrad writes "
          "is checked at drawn points against torch.func (jvp, grad, hessian of f).</p>"
          f'<details class="examples"><summary>Examples</summary><ul>{examples}</ul></details>')


def _check_form(text: str) -> str:
    tries = ", ".join(
        f'<a href="/?check={_e(urllib.parse.quote(n))}#check-result">'
        + ("a derivation with a slip" if n == "wrong" else f"{_e(n)}.hg") + "</a>"
        for n in derivation_names())
    return ('<form id="check-form" method="post" action="/#check-result" '
            "onsubmit=\"working('check-working')\">"
            f'<textarea id="hg" name="hg" rows="12" spellcheck="false">{_e(text)}</textarea>'
            '<button type="submit">Check every line</button> '
            '<span id="check-working" hidden>working...</span></form>'
            f'<p class="note">Try: {tries} (the models\' derivations, as derive reads them).</p>'
            '<p class="note">The .hg format: <code>let</code> declarations, <code>wrt</code>, '
            "<code>f = ...</code>, then <code>df = ...</code> lines (a line starting with "
            "<code>=</code> continues the one above), <code>grad X = ...</code>, "
            "<code># a comment or the rule</code>. A Python derivation file is not run here.</p>")


def _reason(r: dict, report: dict) -> str:
    """The reason a line is not verified, and the drawn point it names (its sizes)."""
    reason = r.get("reason") or ""
    points = report.get("checked_at", {}).get("points", [])
    import re

    m = re.search(r"at point (\d+)", reason)
    if m and int(m.group(1)) < len(points):
        sizes = points[int(m.group(1))].get("sizes") or {}
        if sizes:
            reason += " (point " + m.group(1) + " drawn with " + ", ".join(f"{k} = {v}" for k, v in
                                                                sizes.items()) + ")"
    return reason


def _where(r: dict) -> str:
    """'line 6' of a pasted derivation; nothing for handgrad's own lines."""
    src = r.get("source") or ""
    if src.startswith("<derived>"):
        return ""
    return "line " + src.rsplit(":", 1)[1] if ":" in src else src


def result_html(report: dict, *, panel: str) -> str:
    """One derivation's verdicts as HTML: f, each line typeset with its rule and mark (the
    first wrong line highlighted), the summary, and for a derived expression the torch
    code and the .hg text."""
    fn = report["function"]
    rows = sorted(report["lines"] + report["readoff"], key=lambda r: r["index"])
    first = report.get("first_wrong") or report.get("first_error")
    first_index = first["index"] if first else None
    out = []
    title = report.get("title")
    if title:
        out.append(f"<h3>{_e(title)}</h3>")
    verdict = report["verdict"]
    pts = report.get("checked_at", {}).get("points", [])
    sizes = "; ".join(", ".join(f"{k} = {v}" for k, v in p.get("sizes", {}).items())
                      or "fixed sizes" for p in pts)
    summary = (f'<p><span class="verdict {_e(verdict)}" id="{panel}-verdict">{_e(verdict)}'
               f"</span>: every line checked at {len(pts)} drawn points ({_e(sizes)}), "
               f"{report['checked_at'].get('directions_per_point', '?')} directions each, "
               f"against {_e(report['checked_at'].get('reference', 'torch.func'))}.")
    if first:
        kind = "wrong" if report.get("first_wrong") else "in error"
        summary += (f' First line {kind}: <a href="#{panel}-line-{first_index}">#'
                    f"{first_index}</a> ({_e(_where(first) or first.get('lhs', ''))}).")
    out.append(summary + "</p>")
    for c in report.get("conventions", []):
        out.append(f'<p class="note">{_e(c)}</p>')
    out.append('<table class="lines"><thead><tr><th>#</th><th>line</th><th>rule</th>'
               "<th>verdict</th><th>where</th></tr></thead><tbody>")
    # the names the lines use, typeset like the lines (their text a disclosure away)
    defs = "".join(f'<div class="def">let {_e(d["name"])} = ' + (
        f'{d["mathml"]}<details><summary class="why">text</summary><code>{_e(d["text"])}</code>'
        "</details></div>" if d.get("mathml") else f'<code>{_e(d["text"])}</code></div>')
                   for d in report.get("definitions", []))
    fmath = (f"{_e(fn['name'])} = {fn['mathml']}" if fn.get("mathml")
             else _e(f"{fn['name']} = {fn['text']}"))
    ferr = "".join(f'<div class="why">{_e(x)}</div>' for x in fn.get("errors", [])[:1])
    out.append(f'<tr class="function"><td class="n"></td><td>{defs}{fmath}{ferr}</td>'
               f'<td></td><td></td><td class="src">{_e(_where(fn))}</td></tr>')
    for r in rows:
        v = r["verdict"]
        cls = v + (" first-wrong" if r["index"] == first_index else "")
        lhs = fn["name"] if r["kind"] == "value" else r["lhs"]
        math = r.get("mathml")
        # a line's MathML holds its right-hand side; the left is its name (df, grad X)
        line = f"{_e(lhs)} = {math}" if math else _e(f"{lhs} = {r['text']}")
        why = ""
        if v != "verified" and r.get("reason"):
            why = f'<div class="why reason">{_e(_reason(r, report))}</div>'
        out.append(
            f'<tr class="{cls}" id="{panel}-line-{r["index"]}" data-verdict="{_e(v)}">'
            f'<td class="n">{r["index"]}</td>'
            f'<td>{line}<details><summary class="why">text</summary><code>{_e(lhs)} = '
            f'{_e(r["text"])}</code></details>{why}</td>'
            f'<td class="rule">{rule_html(r.get("rule"))}</td>'
            f'<td class="mark">{_e(MARK.get(v, v))}</td>'
            f'<td class="src">{_e(_where(r))}</td></tr>')
    out.append("</tbody></table>")
    grads = report.get("gradient") or {}
    if grads:
        items = "".join(f"<li>grad {_e(k)} = <code>{_e(v)}</code></li>" for k, v in grads.items())
        hess = report.get("hessian") or {}
        items += "".join(f"<li>hess {_e(k)} = <code>{_e(v)}</code></li>" for k, v in hess.items())
        out.append(f"<ul>{items}</ul>")
    if report.get("torch"):
        out.append('<h3>torch code</h3><p><button type="button" id="copy-torch" '
                   "onclick=\"copyText('torch', this)\">copy</button> a standalone function for "
                   "the gradient (and Hessian) derived above.</p>"
                   f'<pre id="torch">{_e(report["torch"])}</pre>')
    if report.get("hg"):
        href = "data:text/plain;charset=utf-8," + urllib.parse.quote(report["hg"])
        out.append('<h3>The derivation as a .hg file</h3>'
                   f'<p><a id="save-hg" download="derivation.hg" href="{_e(href)}">save '
                   "derivation.hg</a> (check it again with <code>handgrad derive --file "
                   "derivation.hg</code>, or in the panel below).</p>"
                   '<form method="post" action="/#check-result">'
                   f'<input type="hidden" name="hg" value="{_e(report["hg"])}">'
                   '<button type="submit" id="check-derived">check it in the panel below'
                   "</button></form>"
                   f'<pre id="hg-text">{_e(report["hg"])}</pre>')
    return "\n".join(out)


def error_html(message: str, panel: str) -> str:
    return f'<p class="error-box" id="{panel}-error">error: {_e(message)}</p>'


def page(*, values: dict | None = None, derived: str = "", hg: str = WRONG_EXAMPLE,
         checked: str = "") -> str:
    """The whole page; ``derived`` / ``checked``: result or error HTML for each panel."""
    values = values or {}
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>handgrad: derive and verify</title><style>{CSS}</style>"
        f"<script>{SCRIPT}</script></head><body>\n"
        "<h1>handgrad</h1><p>Matrix calculus the way the notes write it: handgrad derives a "
        "gradient step by step and checks every line against torch.autograd; or paste your "
        "own derivation and see which line is wrong.</p>\n"
        '<section id="derive"><h2>Derive an expression</h2>'
        + _form(values)
        + f'<div id="derive-result">{derived}</div></section>\n'
        '<section id="check"><h2>Check your own derivation</h2>'
        + _check_form(hg)
        + f'<div id="check-result">{checked}</div></section>\n'
        '<p class="note">JSON: <code>GET /api/derive?expr=..&amp;let=..&amp;wrt=..'
        "[&amp;hessian=1][&amp;emit=torch]</code> (as <code>derive --expr ... --json</code>), "
        "<code>POST /api/check</code> with a .hg text body (as <code>derive --file F.hg "
        "--json</code>).</p>\n</body></html>\n")


__all__ = ["EXAMPLES", "WRONG_EXAMPLE", "derive_url", "error_html", "page", "result_html"]
