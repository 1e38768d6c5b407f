"""Convergence plots (fit --plot, --compare), the optional matplotlib, atomic writes."""

from __future__ import annotations

import os

import pytest
import torch

from handgrad import registry
from handgrad.errors import UserError
from handgrad.fitting import compare, pipeline, solvers
from handgrad.params import flatten
from handgrad.present import plot
from tests.conftest import invoke

PNG = b"\x89PNG\r\n\x1a\n"
matplotlib = pytest.importorskip("matplotlib")


def _is_png(path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head == PNG and os.path.getsize(path) > 5000


def _runs():
    hist = [{"iteration": k, "loss": 10.0 + 2.0 ** -(2 ** k), "grad_norm": 10.0 ** -k}
            for k in range(6)]
    flat = [{"iteration": k, "loss": 10.0 + 0.5 ** k, "grad_norm": 0.5 ** k} for k in range(80)]
    return [{"solver": "newton", "label": "Newton", "history": hist},
            {"solver": "gd", "label": "GD", "history": flat}]


def test_convergence_writes_a_png(tmp_path):
    path = tmp_path / "c.png"
    assert plot.convergence(_runs(), str(path), title="t", tol=1e-8) == str(path)
    assert _is_png(path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temporary left behind


def test_best_loss_and_series_drop_nonpositive_gaps():
    runs = _runs()
    best = plot.best_loss(runs)
    assert best == min(h["loss"] for r in runs for h in r["history"])
    xs, ys = plot._series(runs[0]["history"], "loss", best)
    assert all(y > 0 for y in ys) and len(xs) == len(ys)


def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.png"
    path.write_bytes(b"old picture")
    from matplotlib.figure import Figure

    def broken(self, fname, **kw):
        with open(fname, "wb") as fh:
            fh.write(b"half a pict")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plot.convergence(_runs(), str(path))
    assert path.read_bytes() == b"old picture"
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]


def test_check_output_rejects_bad_names(tmp_path):
    with pytest.raises(UserError, match=r"\.png"):
        plot.check_output(str(tmp_path / "c.txt"))
    with pytest.raises(UserError, match="does not exist"):
        plot.check_output(str(tmp_path / "missing" / "c.png"))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        plot.check_output(str(tmp_path / "d.png"))


def test_cli_fit_newton_plot(runner, tmp_path):
    path = tmp_path / "conv.png"
    result, _ = invoke(runner, "fit", "logistic", "--newton", "--n-samples", "300",
                       "--plot", path)
    assert result.exit_code == 0, result.stderr
    assert f"plot: {path}" in result.stdout
    assert _is_png(path)


def test_cli_compare_json_runs_share_data_and_start(runner, tmp_path):
    path = tmp_path / "cmp.png"
    result, out = invoke(runner, "fit", "logistic", "--newton", "--n-samples", "300",
                         "--compare", "--plot", path, "--json")
    assert result.exit_code == 0, result.stderr
    runs = out["compare"]["runs"]
    assert [r["solver"] for r in runs] == ["newton", "gd", "lbfgs"]
    assert [r["derivatives"] for r in runs] == ["hand", "hand", "autograd"]
    # same data and the same starting point: identical loss at iteration 0
    start = {r["history"][0]["loss"] for r in runs}
    assert len(start) == 1
    # every run ends at the same optimum (a convex problem)
    for r in runs:
        assert r["loss"] == pytest.approx(out["loss"], rel=1e-9)
    assert out["plot"] == str(path) and _is_png(path)


def test_lbfgs_reference_matches_the_closed_form():
    entry = registry.get("least_squares")
    data, _ = entry.model.synthetic(n=200, d=4, seed=3)
    p0 = entry.model.init_params(data)
    obj = solvers.Objective(entry, data, p0, {"l2": 0.0}, use_autograd=True)
    res = compare.lbfgs(obj, flatten(p0), tol=1e-8)
    closed, _ = entry.model.closed_form(data)
    # torch's strong-Wolfe search judges steps by loss values, so it may stop once the
    # remaining decrease is below the float resolution of the loss (|g| ~ 1e-7 here)
    assert res.converged or "precision limit" in res.message, res.message
    assert res.grad_norm < 1e-5
    assert torch.allclose(flatten(res.params), flatten(closed), rtol=1e-7, atol=1e-8)
    assert res.history[0]["iteration"] == 0 and res.iterations == len(res.history) - 1


def test_cli_plot_with_closed_form_is_a_usage_error(runner, tmp_path):
    path = tmp_path / "c.png"
    result, _ = invoke(runner, "fit", "least_squares", "--plot", path)
    assert result.exit_code == 2
    assert "--compare" in result.stderr and not path.exists()


def test_compare_refuses_chunked_fits():
    with pytest.raises(UserError, match="chunk-rows"):
        compare.run("logistic", chunk_rows=10)


def test_missing_matplotlib_is_one_clean_line(runner, tmp_path, monkeypatch,
                                               no_matplotlib):
    path = tmp_path / "c.png"
    calls = []
    monkeypatch.setattr(pipeline, "fit", lambda *a, **k: calls.append(1))
    result, _ = invoke(runner, "fit", "logistic", "--newton", "--plot", path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "matplotlib" in lines[0] and "pip install" in lines[0]
    assert "Traceback" not in result.stderr
    assert not calls and not path.exists()  # stopped before any fitting


def test_compare_with_a_closed_form_keeps_it_as_the_reference(runner):
    result, out = invoke(runner, "fit", "least_squares", "--n-samples", "200", "--compare",
                         "--json")
    assert result.exit_code == 0, result.stderr
    runs = out["compare"]["runs"]
    assert [r["solver"] for r in runs] == ["closed", "newton", "gd", "lbfgs"]
    # the closed form is the exact optimum: no iterative run gets meaningfully below it
    closed = runs[0]["loss"]
    assert out["compare"]["best_loss"] >= closed * (1 - 1e-12)
    for r in runs[1:]:
        assert r["loss"] == pytest.approx(closed, rel=1e-10)
