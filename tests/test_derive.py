"""`derive`: every line of every registered derivation verified; wrong lines caught and named."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import textwrap
import types

import pytest
import torch

from handgrad import registry
from handgrad.contract import DerivationSpec
from handgrad.params import flatten
from handgrad.verify import derive, steps
from tests.conftest import MODEL_NAMES, invoke

# a .hg file (every built-in model); Python steps are a user's format (examples/*.py)
WITH_NOTATION = [n for n in MODEL_NAMES if registry.get(n).derivation.notation is not None]
EXAMPLE = "examples/my_derivation.py"
WRONG_EXAMPLE = "examples/wrong_derivation.py"


@pytest.fixture(scope="module")
def all_report():
    return derive.derive_models(MODEL_NAMES)


# --- every registered model -------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
def test_derive_json_every_line_verified(runner, name):
    r, out = invoke(runner, "derive", name, "--json")
    assert r.exit_code == 0, r.stderr
    assert out["ok"] and out["model"] == name
    if not out["has_derivation"]:
        pytest.skip(f"{name} has no derivations()")
    assert out["derivations"], "no derivation reported"
    for d in out["derivations"]:
        assert d["layout"], "every printed derivative states its layout"
        # every line parsed, verified, and linked to the model: no Python steps
        assert d["format"] == "notation", d.get("title")
        files = [f"derivations/{one.file}" for one in registry.get(name).derivation.notation]
        assert d["path"] in files and d["verdict"] == "verified"
        assert all(x["verdict"] == "verified" for x in d["lines"] + d["readoff"])
        rows = {x["line"].split(" = ")[0] for x in d["link"]["rows"]}
        assert {"l"} | {f"grad {v}" for v in d["wrt"]} <= rows, rows
        assert d["link"]["ok"] and all(x["problems"] for x in d["link"]["rows"])


def test_the_derivations_of_all_six_models_are_written_in_the_notation():
    assert set(MODEL_NAMES) == set(WITH_NOTATION)
    for name in WITH_NOTATION:
        spec = registry.get(name).derivation
        assert spec.derivations is None and registry.get(name).derivations() == [], \
            "one source: gradient and Hessian are derived in the .hg files, no Python steps beside them"
    # the models with a Hessian derive it too: a d2l line linked to dP' H dP
    rep = derive.derive_models(MODEL_NAMES)
    for name in MODEL_NAMES:
        if registry.get(name).has_hessian:
            rows = [r["line"].split(" = ")[0] for d in rep["models"][name]["derivations"]
                    for r in d["link"]["rows"]]
            assert "d2l" in rows, (name, rows)
    # one file per parametrisation (the Gaussian) or activation (the two-layer net): every
    # check problem is linked by exactly one of them
    for name in ("gaussian", "two_layer"):
        rep = derive.derive_entry(registry.get(name))
        linked = [p for d in rep["derivations"] if d["format"] == "notation"
                  for p in d["link"]["problems"]]
        assert sorted(linked) == sorted(rep["problems"]), name


def _wrong_fitted(entry):
    """The entry with a wrong derivative where fit takes it: a per-sample dl/dz off by 10%
    (LINEAR models), or gradient and Hessian scaled by 1.1."""
    spec = entry.derivation
    if spec.linear is not None:
        from handgrad.fitting.sums import LinearLoss
        ps = spec.linear.per_sample

        def wrong(z, y, grad=True, hess=True, value=True):
            lz, e, h = ps(z, y, grad=grad, hess=hess, value=value)
            return lz, (1.1 * e if e is not None else None), h
        lin = LinearLoss(wrong, weights=spec.linear.weights, intercept=spec.linear.intercept)
        spec = dataclasses.replace(spec, gradient=lin.gradient, hessian=lin.hessian, linear=lin)
    else:
        g = spec.gradient
        spec = dataclasses.replace(spec, gradient=lambda P, D, **hp: {k: 1.1 * v
                                                                      for k, v in g(P, D, **hp).items()})
    return dataclasses.replace(entry, derivation=spec)


@pytest.mark.parametrize("name", WITH_NOTATION)
def test_a_wrong_fitted_gradient_fails_the_link_not_the_derivation(name):
    """What fits is what was checked: the .hg lines stay true, but the read-offs no longer
    equal the gradient fit runs, and derive fails naming them."""
    entry = _wrong_fitted(registry.get(name))
    rep = derive.derive_entry(entry)
    d = rep["derivations"][0]
    assert not rep["ok"] and d["verdict"] == "verified" and not d["link"]["ok"]
    bad = {x["line"].split(" = ")[0] for x in d["link"]["rows"] if not x["ok"]}
    assert {f"grad {v}" for v in d["wrt"]} <= bad, bad
    assert "NO" in derive.format_text(rep) and "DERIVATION CHECK FAILED" in derive.format_text(rep)


def test_the_python_last_line_is_the_fitted_gradient(tmp_path):
    """Printed = fitted for Python steps (examples/my_derivation.py): the last line
    evaluates the file's own gradient(), so doubling that breaks the last line only (and
    the gradient check); a model's last line is compared with the gradient it fits."""
    ud = derive.load_user_file(EXAMPLE)
    problems = derive._user_problems(ud)
    fitted = types.SimpleNamespace(gradient=lambda P, D, **hp: ud.gradient(P, D), has_hessian=False)
    doubled = types.SimpleNamespace(has_hessian=False, gradient=lambda P, D, **hp: {
        k: 2 * v for k, v in ud.gradient(P, D).items()})
    assert derive._final_is_fitted(fitted, ud.derivation, problems[0], 0) is True
    assert derive._final_is_fitted(doubled, ud.derivation, problems[0], 0) is False
    text = open(EXAMPLE, encoding="utf-8").read()
    old = 'return {"X": (A + A.T) @ X + torch.linalg.inv(X).T}'
    assert text.count(old) == 1
    path = _write(tmp_path, text.replace(old, 'return {"X": 2 * ((A + A.T) @ X + torch.linalg.inv(X).T)}'))
    rep = derive.derive_file(path)
    d = rep["derivations"][0]
    assert d["failed_lines"] == [len(ud.derivation.steps)] and not rep["gradient_check"]["ok"]


def _with_hg(monkeypatch, tmp_path, name, old, new):
    """The registry's `name` reading a copy of derivations/<name>.hg with `old` replaced."""
    import types as _t

    from handgrad.verify.in_notation import path_of
    entry = registry.get(name)
    spec = entry.derivation.notation[0]
    text = open(path_of(entry.derivation.module, spec), encoding="utf-8").read()
    assert old in text, old
    (tmp_path / spec.file).write_text(text.replace(old, new), encoding="utf-8")
    mod = _t.SimpleNamespace(__file__=str(tmp_path / f"{name}.py"), __name__=f"edited.{name}")
    edited = dataclasses.replace(entry, derivation=dataclasses.replace(entry.derivation, module=mod))
    monkeypatch.setitem(registry.REGISTRY, name, edited)
    return edited


def test_editing_a_built_in_line_makes_derive_fail_at_that_line(runner, monkeypatch, tmp_path):
    """Printed = verified: a built-in line's text is its formula; drop a factor 2 from it
    and `derive least_squares` fails there, the lines above keep their marks."""
    _with_hg(monkeypatch, tmp_path, "least_squares", "   = 2*r'*(X*dw + vector(1)*db)",
             "   = r'*(X*dw + vector(1)*db)")
    r, out = invoke(runner, "derive", "least_squares", "--json")
    assert r.exit_code == 1 and not out["ok"]
    d = out["derivations"][0]
    assert d["first_wrong"]["text"].startswith("r'*(X*dw") and d["first_wrong"]["source"].endswith(".hg:12")
    assert [x["verdict"] for x in d["lines"][:2]] == ["verified", "verified"]
    r, _ = invoke(runner, "derive", "least_squares")
    assert "\u2717    = r'*(X*dw" in r.stdout and "DERIVATION CHECK FAILED" in r.stdout


def test_logistic_hessian_wrong_weight_is_caught(monkeypatch, tmp_path):
    """p (1 + p) for p (1 - p) in Newton's Hessian: the hess line fails, entry by entry,
    and so does its link to the Hessian fit uses."""
    entry = _with_hg(monkeypatch, tmp_path, "logistic", "hess w = X'*diag(p .* (vector(1) - p))*X",
                     "hess w = X'*diag(p .* (vector(1) + p))*X")
    d = derive.derive_entry(entry)["derivations"][0]
    hess = [x for x in d["readoff"] if x["kind"] == "hess"][0]
    assert hess["verdict"] == "failed" and not d["ok"]
    assert [x["ok"] for x in d["link"]["rows"] if x["line"].startswith("hess w")] == [False]


def test_a_read_off_of_the_wrong_shape_is_a_failed_line(monkeypatch, tmp_path):
    entry = _with_hg(monkeypatch, tmp_path, "softmax", "grad W = (P - Y)'*X + l2*W",
                     "grad W = X'*(P - Y) + l2*W'")
    d = derive.derive_entry(entry)["derivations"][0]
    g = [x for x in d["readoff"] if x["lhs"] == "grad W"][0]
    assert g["verdict"] == "failed" and not d["ok"]


def test_derive_all_and_a_model_without_derivations(runner, monkeypatch):
    """--all walks the registry; an entry without derivations() is reported, not crashed on."""
    bare = types.ModuleType("derivations.bare")
    bare.gradient = registry.get("least_squares").derivation.gradient
    small = {"least_squares": registry.get("least_squares"),
             "bare": registry.Entry("bare", registry.get("least_squares").model,
                                    DerivationSpec(bare, bare.gradient))}
    monkeypatch.setattr(registry, "REGISTRY", small)
    r, out = invoke(runner, "derive", "--all", "--json")
    assert r.exit_code == 0, r.stderr
    assert set(out["models"]) == {"least_squares", "bare"} and out["ok"]
    rep = out["models"]["bare"]
    assert rep["has_derivation"] is False and rep["derivations"] == [] and rep["ok"]
    assert "no step-by-step derivation" in rep["notes"][0]
    text = derive.format_text(out)
    assert "bare: " in text and "no step-by-step derivation" in text


# --- planted wrong lines ----------------------------------------------------------------

def _plant(d: steps.Derivation, line: int, fn) -> steps.Derivation:
    new = list(d.steps)
    new[line - 1] = dataclasses.replace(new[line - 1], fn=fn)
    return dataclasses.replace(d, steps=new)


@pytest.mark.parametrize("line", [1, 2, 3, 4, 5])
def test_planted_wrong_line_is_named_in_python_steps(line):
    """A line of examples/my_derivation.py off by a factor 1.001 fails, is named by its
    number and its file:line, and only it fails."""
    ud = derive.load_user_file(EXAMPLE)
    d = ud.derivation
    problems = derive._user_problems(ud)
    orig = d.steps[line - 1].fn
    bad = _plant(d, line, lambda P, D, dP, hp, f=orig: 1.001 * f(P, D, dP, hp))
    rep = derive.run_derivation(bad, problems, lambda P, D, **_: ud.loss(P, D))
    assert rep["failed_lines"] == [line], rep["failed_lines"]
    assert rep["first_failed_line"] == line and not rep["ok"]
    s = rep["steps"][line - 1]
    assert s["failures"] and s["failures"][0]["reason"]
    assert rep["first_failed_source"] == d.steps[line - 1].source
    assert re.search(r"examples/my_derivation\.py:\d+$", rep["first_failed_source"])


def test_python_steps_are_marked_evaluated_text_not_checked():
    """A Python step's text is free text: never the verified mark, always the ~ and a note
    (examples/my_derivation.py; no built-in derivation is in Python steps)."""
    rep = derive.derive_file(EXAMPLE)
    del rep["gradient_check"]  # a check of gradient(), a function, not of printed text
    assert rep["ok"] and [d["format"] for d in rep["derivations"]] == ["python"]
    text = derive.format_text(rep)
    assert "\u2713" not in text and derive.EVALUATED_NOTE in text
    assert re.search(r"^\s+1 ~\s+\d\.\de[+-]\d\d  f = tr\(X\^T A X\) \+ log\|X\|$", text, re.M)
    assert text.endswith("all lines evaluated and agree; their text is not checked (Python steps)")
    md, tex = derive.format_markdown(rep), derive.format_latex(rep)
    assert "\u2713" not in md and "~ evaluated, text not checked" in md
    assert "checkmark" not in tex and "evaluated, text not checked" in tex


def test_transposed_factor_in_user_derivation_is_caught():
    ud = derive.load_user_file(EXAMPLE)
    d = ud.derivation
    assert "A^T" in d.steps[2].text

    def transposed(P, D, dP, hp):  # tr(X^T A dX) written where tr(X^T A^T dX) belongs
        X, A, dX = P["X"], D["A"], dP["X"]
        return (torch.trace(X.T @ A @ dX) + torch.trace(X.T @ A @ dX)
                + torch.trace(torch.linalg.solve(X, dX)))
    problems = derive._user_problems(ud)
    rep = derive.run_derivation(_plant(d, 3, transposed), problems, lambda P, D, **_: ud.loss(P, D))
    assert rep["failed_lines"] == [3]


def test_shape_error_in_a_line_is_an_evaluation_error_not_a_crash_nor_a_wrong_line():
    ud = derive.load_user_file(EXAMPLE)
    bad = _plant(ud.derivation, 4, lambda P, D, dP, hp: (D["A"] @ P["X"][:2]).sum())  # (n x n)(2 x n)
    rep = derive.run_derivation(bad, derive._user_problems(ud), lambda P, D, **_: ud.loss(P, D))
    assert rep["failed_lines"] == [] and rep["error_lines"] == [4] and not rep["ok"]
    assert rep["steps"][3]["verdict"] == "error" and "RuntimeError" in rep["steps"][3]["reason"]


def test_a_line_of_the_wrong_size_that_runs_is_a_wrong_line():
    ud = derive.load_user_file(EXAMPLE)
    bad = _plant(ud.derivation, 4, lambda P, D, dP, hp: (D["A"] @ P["X"]).sum(0))  # n values, not 1
    rep = derive.run_derivation(bad, derive._user_problems(ud), lambda P, D, **_: ud.loss(P, D))
    assert rep["failed_lines"] == [4] and "the reference is scalar" in rep["steps"][3]["reason"]


# --- user files ---------------------------------------------------------------------------

def test_user_example_verifies(runner):
    r, out = invoke(runner, "derive", "--file", EXAMPLE, "--json")
    assert r.exit_code == 0, r.stderr
    assert out["ok"] and out["gradient_check"]["ok"]
    assert len(out["derivations"][0]["steps"]) == 5
    assert all(s["ok"] for s in out["derivations"][0]["steps"])
    assert out["problems"] == ["seed 0", "seed 1", "seed 2"]


def test_user_wrong_example_names_line_4(runner):
    r, out = invoke(runner, "derive", "--file", WRONG_EXAMPLE, "--json")
    assert r.exit_code == 1
    d = out["derivations"][0]
    assert d["first_failed_line"] == 4 and d["failed_lines"] == [4, 5]
    assert d["first_failed_source"].startswith("examples/wrong_derivation.py:")
    assert out["gradient_check"]["failures"][0]["reason"].startswith("worst entry X[")
    r2, _ = invoke(runner, "derive", "--file", WRONG_EXAMPLE)
    assert r2.exit_code == 1
    assert "\u2717" in r2.stdout or "FAIL" in r2.stdout
    assert "the first wrong line is 4 (examples/wrong_derivation.py:" in r2.stdout


GOOD = """
import torch
def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    x, a = torch.randn(2, 3, generator=g, dtype=torch.float64)
    return {"x": x}, {"a": a}
def loss(P, D):
    return D["a"] @ P["x"]
STEPS = [("df = a^T dx", "df = a^T dx", lambda P, D, dP: D["a"] @ dP["x"], "linear")]
"""


def _write(tmp_path, body, name="d.py"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


def test_tuple_steps_and_three_argument_functions_work(runner, tmp_path):
    r, out = invoke(runner, "derive", "--file", _write(tmp_path, GOOD), "--json")
    assert r.exit_code == 0, r.stderr
    steps_line = textwrap.dedent(GOOD).splitlines().index(next(
        ln for ln in textwrap.dedent(GOOD).splitlines() if ln.startswith("STEPS"))) + 1
    assert out["ok"] and out["derivations"][0]["steps"][0]["source"].endswith(f".py:{steps_line}")


@pytest.mark.parametrize("body, expect", [
    ("def f(:\n    pass\n", r"line 1: syntax error"),
    ("import torch\nx = 1 / 0\n", r"line 2: ZeroDivisionError while loading"),
    ("import not_a_module_anywhere\n", r"line 1: ModuleNotFoundError while loading"),
    ("def loss(P, D):\n    return 0\n", r"missing inputs, STEPS"),
    (GOOD.replace('STEPS = [', 'STEPS = []  # ['), r"STEPS must be a non-empty list"),
    (GOOD.replace('STEPS = [(', 'STEPS = [42, ('), r"STEPS\[0\] should be Step"),
    (GOOD.replace("lambda P, D, dP:", "lambda P, D:"), r"STEPS\[0\]: fn takes 2 arguments"),
    (GOOD.replace('return D["a"] @ P["x"]', 'return D["a"] * P["x"]'),
     r"loss\(P, D\) must return a scalar tensor, got shape \(3,\)"),
    (GOOD.replace("g = torch", "raise ValueError('no data')\n    g = torch"),
     r"inputs\(0\) raised ValueError, line 4: no data"),
    (GOOD.replace('return {"x"', 'return 5  # {"x"'), r"inputs\(0\) must return a pair"),
    (GOOD + "\nTARGET = 'hessian'\n", r"TARGET must be 'loss' or 'gradient'"),
    (GOOD + "\nSYMMETRIC = ['x']\n", r"SYMMETRIC names 'x', but inputs\(0\) gives no symmetric"),
    (GOOD.replace("def loss(P, D):", "loss = 3\ndef _loss(P, D):"), r"loss must be a function"),
])
def test_bad_user_file_is_a_one_line_error(runner, tmp_path, body, expect):
    path = _write(tmp_path, body)
    r, _ = invoke(runner, "derive", "--file", path)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), r.stderr
    assert re.search(expect, lines[0]), lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_loss_without_forward_mode_is_a_one_line_error(runner, tmp_path):
    body = GOOD.replace('return D["a"] @ P["x"]',
                        'return torch.cdist(P["x"].reshape(3, 1), D["a"].reshape(3, 1)).sum()')
    path = _write(tmp_path, body)
    r, _ = invoke(runner, "derive", "--file", path)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert re.search(r"torch.func.jvp cannot differentiate loss\(P, D\), line 8: "
                     r"NotImplementedError", r.stderr)


def test_missing_or_wrong_kind_of_file(runner, tmp_path):
    for path, expect in [(str(tmp_path / "nope.py"), "no such file"),
                         (str(tmp_path), "is a directory"),
                         (_write(tmp_path, "x", "steps.txt"), "steps.txt:1")]:  # read as notation
        r, _ = invoke(runner, "derive", "--file", path)
        assert r.exit_code == 2 and expect in r.stderr, r.stderr
    r, out = invoke(runner, "derive", "--file", str(tmp_path / "nope.py"), "--json")
    assert r.exit_code == 2 and out["status"] == 2 and "no such file" in out["error"]


@pytest.mark.parametrize("args", [[], ["least_squares", "--all"], ["logistic", "--file", EXAMPLE]])
def test_derive_usage_errors(runner, args):
    r, _ = invoke(runner, "derive", *args)
    assert r.exit_code == 2 and "MODEL" in r.stderr and "--all" in r.stderr
    assert "--file FILE or --expr EXPR" in r.stderr


def test_unknown_model_is_a_usage_error(runner):
    r, _ = invoke(runner, "derive", "no_such_model")
    assert r.exit_code == 2


# --- formats ------------------------------------------------------------------------------

def test_text_has_mark_residual_and_layout_for_every_line(runner):
    r, _ = invoke(runner, "derive", "--file", EXAMPLE)
    assert r.exit_code == 0
    d = derive.load_user_file(EXAMPLE).derivation
    assert f"layout: {d.layout}" in r.stdout
    for i, s in enumerate(d.steps, start=1):
        line = next(ln for ln in r.stdout.splitlines() if ln.endswith(s.text))
        assert re.match(rf"\s+{i} ~\s+\d\.\de[+-]\d\d  ", line), line
    for name, files, linked in [("logistic", ["logistic.hg"], "at 3 check problems"),
                                ("gaussian", ["gaussian.hg", "gaussian_cholesky.hg"], "at 2 check problems")]:
        r, _ = invoke(runner, "derive", name)
        assert r.exit_code == 0
        hg = "\n".join(open(f"derivations/{f}", encoding="utf-8").read() for f in files)
        n_formulas = sum(1 for ln in hg.splitlines() if re.match(r"\s*(=|dl|d2l|grad|hess)\b", ln))
        assert r.stdout.count("\u2713 ") >= n_formulas and "\u2717" not in r.stdout, name
        assert f"{derive.EVALUATED} evaluated" not in r.stdout and r.stdout.endswith("all lines verified\n")
        assert "layout" in r.stdout and f"linked to the model {linked}" in r.stdout
    assert derive.format_text({"models": {}, "ok": True}, ascii_only=True).endswith("all lines verified")


def _tex_problems(tex: str) -> list[str]:
    """Structural checks a LaTeX engine would also fail on."""
    problems = []
    body = re.sub(r"\\[{}$%&#_]", "", tex)  # escaped specials are text
    depth = 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            problems.append("unbalanced }")
            break
    if depth > 0:
        problems.append("unbalanced {")
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+\*?)\}", body):
        if kind == "begin":
            stack.append(env)
        elif not stack or stack.pop() != env:
            problems.append(f"\\end{{{env}}} without matching \\begin")
    if stack:
        problems.append(f"unclosed environments {stack}")
    if len(re.findall(r"\\left\b", body)) != len(re.findall(r"\\right\b", body)):
        problems.append("\\left/\\right mismatch")
    if body.count(r"\[") != body.count(r"\]"):
        problems.append("\\[ \\] mismatch")
    for n, line in enumerate(body.splitlines(), 1):
        if line.count("$") % 2:
            problems.append(f"odd number of $ on line {n}")
    if any(ord(c) > 127 for c in tex):
        problems.append("non-ASCII character")
    return problems


@pytest.mark.parametrize("source", ["all", "wrong-file"])
def test_latex_output_is_well_formed(runner, tmp_path, source, all_report):
    if source == "all":  # the built-in models (notation) and a Python-steps file
        both = {"models": {**all_report["models"], "user": derive.derive_file(EXAMPLE)}, "ok": True}
        tex = derive.format_latex(both)
        n_hg = sum(d["format"] == "notation" for r in all_report["models"].values() for d in r["derivations"])
        assert tex.count(r"\begin{align*}") == n_hg > 0
    else:
        r, _ = invoke(runner, "derive", "--file", WRONG_EXAMPLE, "--format", "latex")
        assert r.exit_code == 1
        tex = r.stdout
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    assert _tex_problems(tex) == []
    n_lines = tex.count(r"\item ")
    assert n_lines == tex.count(r"\[ ") > 0
    if source == "wrong-file":
        assert r"\textbf{FAILED}" in tex and "first wrong line is 4" in tex
    assert_compiles(tex, tmp_path)


def assert_compiles(tex: str, tmp_path) -> None:
    """Where pdflatex is installed, the document compiles (the checks above stand in where not)."""
    if shutil.which("pdflatex"):
        (tmp_path / "d.tex").write_text(tex)
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "d.tex"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout[-3000:]


def test_latex_checker_catches_broken_documents():
    good = derive.format_latex(derive.derive_file(EXAMPLE))
    assert _tex_problems(good) == []
    assert _tex_problems(good.replace(r"\end{enumerate}", "", 1))
    assert _tex_problems(good.replace(r"\frac{\partial f}", r"\frac{\partial f", 1))
    assert _tex_problems(good + "$x")


def test_markdown_output_is_well_formed(runner, all_report):
    r, _ = invoke(runner, "derive", "least_squares", "--format", "markdown")
    assert r.exit_code == 0 and r.stdout.startswith("## least\\_squares: ")
    assert derive.format_markdown(all_report).rstrip().endswith("**All lines verified.**")
    # the built-in models (notation) and a Python-steps file (examples/my_derivation.py)
    user = derive.derive_file(EXAMPLE)
    md = derive.format_markdown({"models": {**all_report["models"], "user": user}, "ok": True})
    python = derive.load_user_file(EXAMPLE).derivation
    n_steps = len(python.steps)
    n_hg = sum(len(d["lines"]) + len(d["readoff"]) + 1 for r in all_report["models"].values()
               for d in r["derivations"] if d["format"] == "notation")  # + 1: the function
    assert md.count("\n   $$") == n_steps and md.count("$$") == 2 * (n_steps + n_hg)
    assert md.count("~ evaluated, text not checked residual `") == n_steps
    for line in md.splitlines():
        assert line.count("`") % 2 == 0, line
        if "$$" in line:
            assert line.strip().startswith("$$") and line.strip().endswith("$$")
            inner = line.strip()[2:-2]
            assert _tex_problems(inner) == [], inner
    for name in MODEL_NAMES:
        assert f"## {name}: " in md.replace("\\_", "_")
    assert f"## {derive._md(derive._header(user))}" in md
    assert f"*Layout:* {derive._md(python.layout)}." in md
    assert md.rstrip().endswith("not checked.**"), md[-200:]


def test_json_is_one_object(runner):
    r, out = invoke(runner, "derive", "least_squares", "--json")
    assert json.loads(r.stdout) == out and r.stdout.strip().startswith("{")


# --- the verifier's API stays compatible ---------------------------------------------------

def test_steps_api_and_directions_independent_of_the_users_stream():
    """A Step remembers where it was written; the references are torch.func's; directions
    come from handgrad's own stream, not from manual_seed(k) that inputs(k) draws from."""
    ud = derive.load_user_file(EXAMPLE)
    label, P, D, hp = derive._user_problems(ud)[0]

    def loss(p):
        return ud.loss(p, D)
    s = steps.Step("a", "a", lambda P, D, dP, hp: 0.0)
    assert s.source.startswith("tests/test_derive.py:") and s.kind == "differential"
    v, dl, dg = steps.references(loss, P, steps.random_direction(P, 0))
    assert dg.shape == flatten(P).shape
    user = torch.randn(P["X"].shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert not torch.allclose(steps.random_direction(P, 0)["X"], user)


def test_problems_a_derivation_does_not_apply_to_are_skipped_not_failed():
    """A problem where every line raises KeyError (another parametrisation) is skipped; if
    no problem applies at all, the lines are failures, not silently verified."""
    ud = derive.load_user_file(EXAMPLE)
    d = ud.derivation
    problems = derive._user_problems(ud)
    label, P, D, hp = problems[0]
    other = ("other parametrisation", {"v": P["X"].clone()}, D, hp)

    def loss(p, data, **h):
        return ud.loss(p, data) if "v" not in p else (p["v"] ** 2).sum()
    rep = derive.run_derivation(d, [other] + problems, loss)
    assert rep["ok"] and rep["skipped_problems"] == ["other parametrisation"]
    assert rep["problems"] == [p[0] for p in problems]
    broken = dataclasses.replace(d, steps=[dataclasses.replace(s, fn=lambda P, D, dP, hp: P["nope"])
                                           for s in d.steps])
    rep = derive.run_derivation(broken, problems, loss)
    assert not rep["ok"] and rep["skipped_problems"] == [] and rep["first_error_line"] == 1
    assert rep["failed_lines"] == [] and "KeyError" in rep["steps"][0]["failures"][0]["reason"]
