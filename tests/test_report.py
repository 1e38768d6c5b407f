"""`report`: one page per model (Markdown + self-contained HTML + plot), and an index."""

from __future__ import annotations

import dataclasses
import json
import re
import types

import pytest

from handgrad import registry
from handgrad.present import report
from tests.conftest import invoke

PNG = b"\x89PNG\r\n\x1a\n"
SMALL = {"n_samples": 300}


@pytest.fixture(scope="module")
def logistic_pages(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("rep")
    res = report.write("logistic", str(out), compare_max_iter=30, fit_kw=SMALL)
    return out, res


def test_page_has_derivation_verdicts_check_table_fit_and_plot(logistic_pages):
    out, res = logistic_pages
    assert res["ok"], res["errors"]
    md = (out / "logistic.md").read_text()
    entry = registry.get("logistic")
    # the derivation: every line of derivations/logistic.hg typeset, numbered, with a verdict
    from handgrad.notation import derive_text_file
    hg = derive_text_file("derivations/logistic.hg")
    assert f"### {hg['title']}" in md
    rows = sorted(hg["lines"] + hg["readoff"], key=lambda r: r["index"])
    for r in rows:
        assert f"{r['latex']} \\tag{{{r['index']}}}" in md
    n_steps = len(rows)
    assert md.count("| verified |") == n_steps
    assert md.count("| yes |") >= 3  # f, grad w, grad b linked to the model's loss and gradient
    # the three-way check table: hand vs autograd vs finite differences, one row per problem
    assert "## Check: hand vs autograd vs finite differences" in md
    assert "gradient: hand vs autograd" in md and "Hessian: hand vs FD" in md
    problems = sum(len(entry.model.check_problems(s)) for s in (0, 1, 2))
    assert len(re.findall(r"^\| [012] \| .* \| pass \|$", md, flags=re.M)) == problems
    # the fit and its plot
    assert "## Fit" in md and "| converged | yes |" in md
    assert "![logistic convergence](logistic_convergence.png)" in md
    png = (out / "logistic_convergence.png").read_bytes()
    assert png[:8] == PNG and len(png) > 5000
    assert res["summary"]["steps_verified"] == res["summary"]["steps_total"] == n_steps


def test_html_is_self_contained(logistic_pages):
    out, _ = logistic_pages
    page = (out / "logistic.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "data:image/png;base64," in page  # the plot travels inside the page
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # nothing fetched
    assert "<script" not in page
    assert "verified" in page and "hand vs autograd" in page
    assert page.count("<math") >= n_formulas_in("derivations/logistic.hg")  # typeset, not LaTeX source


def n_formulas_in(path):
    from handgrad.notation import derive_text_file
    r = derive_text_file(path)
    return len(r["lines"]) + len(r["readoff"])


def test_a_wrong_step_is_shown_as_wrong(tmp_path):
    """A line of derivations/logistic.hg with the intercept term dropped: the page shows
    that line WRONG and the others verified."""
    entry = registry.get("logistic")
    text = open("derivations/logistic.hg", encoding="utf-8").read()
    good = "   = (p - y)'*(X*dw + vector(1)*db) + l2*w'*dw"
    assert good in text
    (tmp_path / "logistic.hg").write_text(text.replace(good, "   = (p - y)'*X*dw + l2*w'*dw"))
    fake = types.SimpleNamespace(__file__=str(tmp_path / "logistic.py"), __name__="fake", __doc__="")
    planted = dataclasses.replace(entry, derivation=dataclasses.replace(entry.derivation, module=fake))
    verdicts = report.step_verdicts(planted)
    flags = [s["ok"] for s in verdicts[0]["steps"]]
    assert flags == [True, True, True, False, True, True, True, True, True]
    assert verdicts[0]["ok"] is False
    md = report.to_markdown([("steps", verdicts[0]["steps"])])
    assert md.count("| verified |") == 8 and "| WRONG (" in md


def test_report_all_writes_pages_and_index(runner, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    two = {k: registry.REGISTRY[k] for k in ("least_squares", "logistic")}
    monkeypatch.setattr(registry, "REGISTRY", two)
    out = tmp_path / "reports"
    res = report.run([], out_dir=str(out), all_models=True, compare_max_iter=20, fit_kw=SMALL)
    assert res["ok"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["index.md", "index.html"] + [
        f"{m}{ext}" for m in two for ext in (".md", ".html", "_convergence.png")])
    index = (out / "index.md").read_text()
    for m in two:
        assert f"]({m}.md)" in index
    assert "least_squares.html" in (out / "index.html").read_text()


def test_cli_report_json_and_table(runner, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    real = report.write
    monkeypatch.setattr(report, "write", lambda *a, **k: real(*a, **{**k, "fit_kw": SMALL,
                                                                   "compare_max_iter": 20}))
    out = tmp_path / "r"
    result, parsed = invoke(runner, "report", "least_squares", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert parsed["ok"] and parsed["models"]["least_squares"]["ok"]
    assert json.loads(result.stdout) == parsed
    for f in parsed["files"]:
        assert (out / f.split("/")[-1]).stat().st_size > 0
    result, _ = invoke(runner, "report", "least_squares", "--out", out)
    assert result.exit_code == 0
    assert "least_squares" in result.stdout and "wrote 3 files" in result.stdout


def test_cli_report_without_models_is_a_usage_error(runner, tmp_path):
    result, _ = invoke(runner, "report", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--all" in result.stderr


def test_cli_report_missing_matplotlib(runner, tmp_path, no_matplotlib):
    out = tmp_path / "r"
    result, _ = invoke(runner, "report", "logistic", "--out", out)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "matplotlib" in lines[0]
    assert not out.exists()  # stopped before writing anything


def test_no_plots_needs_no_matplotlib(tmp_path, no_matplotlib):
    res = report.run(["least_squares"], out_dir=str(tmp_path), plots=False,
                     compare_max_iter=10, fit_kw=SMALL)
    assert res["ok"] and len(res["files"]) == 2
    md = (tmp_path / "least_squares.md").read_text()
    assert "## Convergence" in md and "![" not in md


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(registry.REGISTRY), ids=sorted(registry.REGISTRY))
def test_every_registered_model_gets_a_page(name, tmp_path):
    """Models without a Hessian or with other solver sets (closed form, Adam) still get a
    page: no Hessian columns where none is derived, the model's own default solver."""
    entry = registry.get(name)
    res = report.write(name, str(tmp_path), plots=False, compare_max_iter=5,
                       fit_kw={"n_samples": 200, "max_iter": 50}, check_seeds=(0,))
    assert not res["errors"], res["errors"]
    md = (tmp_path / f"{name}.md").read_text()
    assert "## Derivation" in md and "## Check" in md and "## Fit" in md
    assert ("Hessian: hand vs autograd" in md) == entry.has_hessian
    assert f"| solver | {entry.model.default_solver} with hand derivatives |" in md


# ----------------------------------------------------------------- the page worth reading


def _module_docstring(name: str) -> str:
    """models/<name>.py's docstring, read from the file (not through the registry)."""
    import ast

    from tests.conftest import ROOT

    with open(f"{ROOT}/models/{name}.py", encoding="utf-8") as fh:
        return ast.get_docstring(ast.parse(fh.read()))


@pytest.mark.parametrize("name", sorted(registry.REGISTRY))
def test_the_model_section_is_the_models_own_description(name):
    """Every page once showed the contract record's docstring ("A model as the shared code
    sees it"): the section is the model module's own docstring."""
    entry = registry.get(name)
    rec = {"model": name, "title": entry.title, "seed": 0, "errors": {}, "derivations": [],
           "check": None, "fit": None, "compare": None, "plot": None,
           "summary": {"steps_verified": 0, "steps_evaluated": 0, "steps_total": 0,
                       "check_problems_ok": 0, "check_problems": 0}}
    md = report.to_markdown(report.page(rec))
    own = _module_docstring(name)
    assert own.splitlines()[0] in md
    assert "as the shared code sees it" not in md
    section = md.split("## The model\n\n```text\n", 1)[1].split("\n```", 1)[0]
    assert section == own.strip()


def test_logistic_page_shows_its_description(logistic_pages):
    out, _ = logistic_pages
    md = (out / "logistic.md").read_text()
    assert "Logistic regression, the notes' worked example 8" in md
    assert "as the shared code sees it" not in md


def _md_table_after(md: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    lines = md.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    head = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i])[1:-1]]
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return head, rows


def test_fit_table_has_z_p_and_intervals_equal_to_statsmodels(tmp_path):
    """The page's coefficient table on real data (breast_cancer.csv) against statsmodels'
    Logit, at the digits the page prints: estimate, std err, z, P>|z|, the 95% interval."""
    sm = pytest.importorskip("statsmodels.api")
    import numpy as np

    from tests.test_statsmodels import BREAST_FEATURES, _read

    fit_kw = {"data_path": "data/breast_cancer.csv", "target": "malignant",
              "features": BREAST_FEATURES}
    res = report.write("logistic", str(tmp_path), plots=False, compare_max_iter=3,
                       fit_kw=fit_kw, check_seeds=(0,))
    assert not res["errors"], res["errors"]
    md = (tmp_path / "logistic.md").read_text()
    head, rows = _md_table_after(md, "| term | coef | std err | z |")
    assert head[:7] == ["term", "coef", "std err", "z", "P>\\|z\\|", "[95%", "interval]"]
    X, y, feats = _read("breast_cancer.csv", "malignant", BREAST_FEATURES)
    ref = sm.Logit(y, sm.add_constant(X, prepend=False)).fit(method="newton", tol=1e-10,
                                                             maxiter=100, disp=0)
    assert [r[0] for r in rows] == feats + ["intercept"]
    got = np.array([[float(c) for c in r[1:7]] for r in rows])
    ci = ref.conf_int()
    want = np.column_stack([ref.params, ref.bse, ref.tvalues, ref.pvalues, ci[:, 0], ci[:, 1]])
    # printed digits: coef 10, std err 5, z 3 decimals, P 3, interval 6 significant
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=1e-8)
    np.testing.assert_allclose(got[:, 1], want[:, 1], rtol=1e-4)
    np.testing.assert_allclose(got[:, 2], want[:, 2], atol=6e-4)
    np.testing.assert_allclose(got[:, 3], want[:, 3], rtol=6e-3, atol=6e-4)
    np.testing.assert_allclose(got[:, 4:], want[:, 4:], rtol=1e-5)
    # the statistics lines under the table, as `fit` prints them
    ll = re.search(r"^log-likelihood (\S+)   AIC (\S+)", md, flags=re.M)
    assert ll and float(ll.group(1)) == pytest.approx(ref.llf, rel=1e-8)
    assert float(ll.group(2)) == pytest.approx(ref.aic, rel=1e-5)


def test_least_squares_table_says_t(tmp_path):
    res = report.write("least_squares", str(tmp_path), plots=False, compare_max_iter=3,
                       fit_kw=SMALL, check_seeds=(0,))
    assert not res["errors"], res["errors"]
    md = (tmp_path / "least_squares.md").read_text()
    head, rows = _md_table_after(md, "| term | coef | std err |")
    assert head[3:5] == ["t", "P>\\|t\\|"] and len(rows) >= 2
    assert "R^2 " in md


def test_rule_texts_are_typeset_on_the_html_page(logistic_pages):
    out, _ = logistic_pages
    page = (out / "logistic.html").read_text()
    cells = re.findall(r'<td class="rule">(.*?)</td>', page)
    assert cells, "no rule column"
    typeset = [c for c in cells if "<math" in c]
    assert len(typeset) >= len([c for c in cells if "=" in re.sub(r"<[^>]+>", "", c)])
    # "tr(AB) = tr(BA)" is MathML: tr applied to a product, not the letters as text
    assert any("<mi>tr</mi><mo>\u2061</mo>" in c for c in typeset)
