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


def test_svd_says_when_it_truncates_and_the_default_solver_does_not_need_to():
    """--solver svd on a badly scaled design drops a singular value: it says so (rcond,
    the value dropped) instead of a silent wrong answer; the scaled QR keeps the column."""
    import warnings

    import numpy as np

    from handgrad.fitting import pipeline, validate

    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=200) * 1e9, rng.normal(size=200), rng.normal(size=200) * 1e-9]
    y = X @ [1e-9, 1.0, 1e9] + rng.normal(size=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        svd = pipeline.fit("least_squares", data=validate.from_arrays(X, y), solver="svd")
        qr = pipeline.fit("least_squares", data=validate.from_arrays(X, y))
    (msg,) = [w for w in svd["warnings"] if w.startswith("svd:")]
    assert "rcond" in msg and "truncated design" in msg
    assert not any(w.startswith("svd:") for w in qr["warnings"])
    assert abs(qr["coefficients"]["x2"] / 1e9 - 1) < 0.1  # the scaled QR recovers it
    assert abs(svd["coefficients"]["x2"]) < 1.0  # the truncated answer does not
