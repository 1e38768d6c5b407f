"""`handgrad serve` in a real headless browser (Chromium): type an expression and submit the
form, see each line typeset (MathML laid out by the browser: exponents raised) with its
mark; paste a wrong derivation, see the first wrong line highlighted; load a shared URL.

The browser is driven by a harness page the test serves beside the app (same origin): it
holds the app in an iframe, fills its forms and submits them as a person would, measures
the laid-out result and writes what it found into its own DOM, which Chromium's --dump-dom
prints.  Skipped where no Chromium is installed (Debian: apt-get install chromium); the
page needs no network.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import urllib.parse

import pytest

from handgrad import serve
from handgrad.present import page

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome", "chrome")
                if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine")

TYPED = ("tr(A*X'*B*X*C)", "X: m x n; A: k x n; B: m x m; C: n x k", "X")
SHARED = ("x'*A*x", "x: n; A: n x n", "x", True)

HARNESS = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<iframe id="app" src="/" style="width:1150px;height:4000px"></iframe><pre id="probe"></pre>
<script>
const TYPED = %(typed)s, WRONG = %(wrong)s, SHARED = %(shared)s;
const app = document.getElementById('app');
const box = e => e.getBoundingClientRect();
let step = 0;
const found = {};
function measure(doc, sel) {
  const root = doc.querySelector(sel);
  const maths = [...root.querySelectorAll('math')];
  const sups = [...root.querySelectorAll('msup')];
  const first = [...root.querySelectorAll('tr.first-wrong')];
  return {math: maths.length,
          laid_out: maths.filter(m => box(m).width > 0 && box(m).height > 0).length,
          sups: sups.length,
          raised: sups.filter(s => s.children.length == 2 &&
                              box(s.children[1]).bottom < box(s.children[0]).bottom - 1).length,
          marks: [...root.querySelectorAll('tr[data-verdict]')].map(r => r.dataset.verdict),
          mark_text: [...root.querySelectorAll('td.mark')].map(td => td.innerText.trim()),
          first_wrong: first.map(r => r.id),
          first_wrong_background: first.map(r => getComputedStyle(r.cells[1]).backgroundColor),
          other_background: [...root.querySelectorAll('tr[data-verdict]:not(.first-wrong)')]
                              .map(r => getComputedStyle(r.cells[1]).backgroundColor),
          reasons: [...root.querySelectorAll('.reason')].map(e => e.innerText),
          torch: !!root.querySelector('#torch'),
          search: app.contentWindow.location.search};
}
app.onload = function () {
  const doc = app.contentDocument;
  try {
    if (step == 0) {  // type an expression, submit the form
      step = 1;
      doc.getElementById('expr').value = TYPED[0];
      doc.getElementById('let').value = TYPED[1];
      doc.getElementById('wrt').value = TYPED[2];
      doc.getElementById('derive-form').requestSubmit();
      found.working_shown = !doc.getElementById('working').hidden;
    } else if (step == 1) {
      found.typed = measure(doc, '#derive-result');
      step = 2;
      const copy = doc.getElementById('copy-torch');
      copy.click();  // the torch code's copy button answers
      setTimeout(function () {
        found.copy_button = copy.textContent;
        // paste a wrong derivation, submit it
        doc.getElementById('hg').value = WRONG;
        doc.getElementById('check-form').requestSubmit();
      }, 500);
    } else if (step == 2) {
      found.pasted = measure(doc, '#check-result');
      step = 3;  // a shared URL, loaded afresh
      app.src = SHARED;
    } else if (step == 3) {
      found.shared = measure(doc, '#derive-result');
      document.getElementById('probe').textContent = JSON.stringify(found);
    }
  } catch (e) {
    document.getElementById('probe').textContent = JSON.stringify({error: String(e), step: step});
  }
};
</script></body></html>
"""


class HarnessHandler(serve.Handler):
    """The app plus /harness (served without the app's Content-Security-Policy, which
    forbids frames)."""

    def do_GET(self):
        if self.path != "/harness":
            return super().do_GET()
        body = (HARNESS % {"typed": json.dumps(TYPED), "wrong": json.dumps(page.WRONG_EXAMPLE),
                           "shared": json.dumps(page.derive_url(*SHARED))}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    from tests.test_serve import running

    yield from running(workers=1, handler=HarnessHandler)


def dump(url: str) -> str:
    r = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--virtual-time-budget=60000", "--dump-dom", url],
                       capture_output=True, text=True, timeout=300)
    return r.stdout + "\n<!-- stderr -->\n" + r.stderr[-2000:]


def test_type_paste_and_share_in_a_browser(server):
    out = dump(server.url + "harness")
    m = re.search(r'<pre id="probe">(.+?)</pre>', out, re.S)
    assert m, f"the harness reported nothing: {out[-1500:]}"
    got = json.loads(html.unescape(m.group(1)))
    assert "error" not in got, got
    # typed: the form's GET is the shareable URL; every line typeset and laid out, verified
    assert got["working_shown"], "the page does not say it is working"
    t = got["typed"]
    q = urllib.parse.parse_qs(t["search"].lstrip("?"))
    assert (q["expr"], q["let"], q["wrt"]) == tuple([v] for v in TYPED), t["search"]
    assert t["marks"] and set(t["marks"]) == {"verified"}, t
    assert t["math"] >= len(t["marks"]) and t["laid_out"] == t["math"], t
    assert t["sups"] > 0 and t["raised"] == t["sups"], t  # X^T raised: typeset, not text
    assert all(x.startswith("\u2713") for x in t["mark_text"]) and t["torch"]
    assert got["copy_button"] in ("copied", "select the code and copy it"), got
    # pasted: the sign slip on line 1 is the one highlighted line, with the point and values
    p = got["pasted"]
    assert p["first_wrong"] == ["check-line-1"], p
    assert p["marks"][0] == "failed"
    assert p["first_wrong_background"][0] not in p["other_background"], p
    assert re.search(r"claim -?[\d.]+, autograd -?[\d.]+", p["reasons"][0]), p
    assert p["laid_out"] == p["math"] > 0
    # shared: derives on load, the Hessian too
    s = got["shared"]
    assert "hessian=1" in s["search"] and set(s["marks"]) == {"verified"}, s
    assert s["laid_out"] == s["math"] > 0 and s["raised"] == s["sups"] > 0, s

