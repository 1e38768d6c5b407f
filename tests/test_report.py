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
