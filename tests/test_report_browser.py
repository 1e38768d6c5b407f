"""Each model's HTML report, opened in a real headless browser (Chromium): the page renders,
every formula is typeset MathML (fractions stacked, exponents raised: laid out by the
browser's MathML engine, not shown as text), and no raw LaTeX is visible.

The probe is a script appended to a copy of the page (the page itself has no scripts); it
measures the laid-out boxes and writes what it found into the DOM, which Chromium's
--dump-dom prints.  Skipped where no Chromium is installed (Debian: apt-get install
chromium); the page is self-contained, so the browser needs no network.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from handgrad import registry
from handgrad.present import report

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome", "chrome")
                if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine")

PROBE = r"""
<script>
(function () {
  const box = e => e.getBoundingClientRect();
  const maths = [...document.querySelectorAll('math')];
  const fracs = [...document.querySelectorAll('mfrac')];
  const sups = [...document.querySelectorAll('msup')];
  const stacked = fracs.filter(f => f.children.length == 2 &&
                               box(f.children[0]).bottom <= box(f.children[1]).top + 1);
  const raised = sups.filter(s => s.children.length == 2 &&
                             box(s.children[1]).bottom < box(s.children[0]).bottom - 1);
  const visible = document.body.innerText;
  const out = {math: maths.length,
               laid_out: maths.filter(m => box(m).width > 0 && box(m).height > 0).length,
               fracs: fracs.length, stacked: stacked.length,
               sups: sups.length, raised: raised.length,
               raw_latex: (visible.match(/\\(frac|operatorname|left|right|mathrm|sum|top)\b/g) || []),
               h1: (document.querySelector('h1') || {}).textContent || ''};
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def render(page: str, tmp_path) -> dict:
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    r = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"the browser printed no probe (exit {r.returncode}): {r.stderr[-500:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(registry.REGISTRY), ids=sorted(registry.REGISTRY))
def test_every_report_renders_typeset_math_in_a_browser(name, tmp_path):
    res = report.write(name, str(tmp_path), plots=False, compare_max_iter=5,
                       fit_kw={"n_samples": 200, "max_iter": 50}, check_seeds=(0,))
    assert not res["errors"], res["errors"]
    page = (tmp_path / f"{name}.html").read_text(encoding="utf-8")
    got = render(page, tmp_path)
    assert got["h1"], "the page did not render"
    # every derivation line is one <math> element, and the browser laid each one out
    n_lines = page.count('<td class="f">')
    assert n_lines > 0 and got["math"] >= n_lines, got
    assert got["laid_out"] == got["math"], got
    # typeset, not text: the MathML engine stacks fractions and raises exponents
    assert got["fracs"] + got["sups"] > 0, got
    assert got["stacked"] == got["fracs"] and got["raised"] == got["sups"], got
    assert got["raw_latex"] == [], f"raw LaTeX visible on the page: {got['raw_latex'][:5]}"


def test_the_probe_sees_untypeset_latex(tmp_path):
    """The check can fail: LaTeX shown as text is caught, and so is a fraction the browser
    did not lay out as MathML."""
    page = ("<!DOCTYPE html><html><body><h1>t</h1><p>\\frac{a}{b}</p>"
            "<math><mfrac><mi>a</mi><mi>b</mi></mfrac></math></body></html>")
    got = render(page, tmp_path)
    assert got["raw_latex"] == ["\\frac"] and got["stacked"] == got["fracs"] == 1
    # the same markup outside <math> is what a browser without MathML shows: a and b side
    # by side as text, the fraction not stacked
    flat = page.replace("<math>", "<span>").replace("</math>", "</span>")
    got = render(flat, tmp_path)
    assert got["fracs"] == 1 and got["stacked"] == 0


def test_a_python_step_is_typeset_too_and_marked_not_checked(tmp_path):
    """A Python-format step (a model added with derivations() instead of a .hg file) has
    hand-written LaTeX: the page typesets it through latex2mathml, and the row still says
    its text was not checked."""
    latex = r"df = \operatorname{tr}\big(((A + A^T) X + X^{-T})^T dX\big) + \frac{1}{2} x^T x"
    row = {"index": 1, "text": "df = tr(((A + A^T) X + X^-T)^T dX) + x^T x / 2", "latex": latex,
           "mathml": report.latex_mathml(latex), "why": "collect", "kind": "differential",
           "source": "my.py:3", "ok": True, "residual": 1e-16, "text_checked": False,
           "reason": "", "points": 3}
    assert row["mathml"].startswith("<math")
    page = report.to_html([("h", 1, "t"), ("steps", [row])], title="t")
    assert "evaluated; text not checked" in page and '<td class="f"><math' in page
    got = render(page, tmp_path)
    assert got["math"] == got["laid_out"] == 1 and got["fracs"] == got["stacked"] == 1, got
    assert got["sups"] >= 2 and got["raised"] == got["sups"], got
    assert got["raw_latex"] == [], got
