"""What fit prints: capped iteration lines, --quiet, no silent target, clean paths."""

from __future__ import annotations

from handgrad.present import render
from tests.conftest import invoke


def test_long_runs_print_a_capped_iteration_table_and_say_so(runner):
    r, _ = invoke(runner, "run", "configs/gaussian_iris_gd.toml")
    assert r.exit_code == 0, r.stderr
    rows = [ln for ln in r.stdout.splitlines() if ln[:5].strip().isdigit()]
    assert 20 <= len(rows) <= render.ITERATION_CAP + 2
    assert "--all-iterations prints every one" in r.stdout
    assert "data/iris.csv" in r.stdout and "/../" not in r.stdout
    hist = [{"iteration": i} for i in range(1000)]
    shown = render.shown_iterations(hist)
    its = [h["iteration"] for h in shown]
    assert its[:5] == [0, 1, 2, 3, 4] and its[-5:] == [995, 996, 997, 998, 999]
    assert render.shown_iterations(hist[:25]) == hist[:25]


def test_quiet_prints_only_the_result(runner):
    r, _ = invoke(runner, "fit", "logistic", "--newton", "--quiet")
    assert r.exit_code == 0
    assert not any(ln.startswith("iter ") for ln in r.stdout.splitlines())
    assert "converged in" in r.stdout
    assert "log-likelihood" in r.stdout


def test_a_target_for_a_model_without_one_is_an_error(runner):
    r, _ = invoke(runner, "fit", "gaussian", "--data", "data/iris.csv", "--target", "species")
    assert r.exit_code == 2 and "has no target" in r.stderr
