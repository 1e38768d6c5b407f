"""The benchmark runs at tiny sizes and writes a valid markdown table and JSON.

No timing is asserted: only that every section ran, every registered model got a
gradient row, and the numbers compared agree (the benchmark checks results, not only speed).
"""

from __future__ import annotations

import json

import pytest
from handgrad.bench import bench

from handgrad import registry
from tests.conftest import invoke

TINY = {"logistic": [(2_000, 5)], "hessian": (1_000, 5), "gradients": (300, 4), "derived": (300, 4),
        "least_squares": (2_000, 5), "covariance": (2_000, 5), "mixed": (2_000, 5),
        "repeats": 1, "autograd_newton": True, "gflops_n": 300}


@pytest.mark.slow
def test_bench_runs_every_section_and_writes_markdown_and_json(tmp_path):
    res = bench.run(quick=True, sizes=TINY, log=lambda s: None)
    md, js = bench.write(res, str(tmp_path))
    data = json.loads(open(js).read())
    assert data["machine"]["best_gflops"] > 0 and data["machine"]["cores"] >= 1
    sections = {r["section"] for r in data["rows"]}
    assert {"logistic Newton |g|<1e-8", "one Hessian", "gradient vs autograd",
            "least squares closed form", "covariance MLE", "mixed precision Newton",
            "derived gradient vs hand"} <= sections
    derived = next(r for r in data["rows"] if r["section"] == "derived gradient vs hand")
    assert derived["max_diff"] < 1e-12, derived  # the derived read-off is the hand gradient
    assert not [r for r in data["rows"] if r.get("error")], [r for r in data["rows"] if r.get("error")]
    grads = [r for r in data["rows"] if r["section"] == "gradient vs autograd"]
    assert sorted(r["case"].split()[0] for r in grads) == sorted(registry.REGISTRY)
    for r in grads:  # hand and autograd gradients agree (relative) wherever they were timed
        assert r["max_diff"] < 1e-10, r
    for r in data["rows"]:
        if r.get("coef_max_diff") is not None and "handgrad" in r["ours"] and r["peer"] and \
                "scikit-learn" in r["peer"]:
            assert r["coef_max_diff"] < 1e-8, r
    cov = next(r for r in data["rows"] if r["section"] == "covariance MLE")
    assert cov["rel_diff"] <= 1e-12
    text = open(md).read()
    assert text.count("\n| ") == len(data["rows"]) + 1  # header + one line per row
    assert "GFLOP/s" in text and "| comparison |" in text


def test_cli_bench_quick_json(runner, tmp_path):
    r, out = invoke(runner, "bench", "--quick", "--only", "covariance", "--only", "least_squares",
                    "--out", tmp_path, "--json")
    assert r.exit_code == 0, r.stderr
    assert {row["section"] for row in out["rows"]} == {"covariance MLE", "least squares closed form"}
    assert (tmp_path / "bench.md").exists() and json.loads((tmp_path / "bench.json").read_text())
    r, _ = invoke(runner, "bench", "--only", "nonsense", "--out", tmp_path)
    assert r.exit_code == 2


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The prepared GPU script runs every step on the CPU (small sizes) and records each."""
    from handgrad.bench import gpu_check

    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu_cpu.json").read_text())
    commands = " | ".join(s["command"] for s in res["steps"])
    for part in ("check --all", "derive --all", "_gpu.toml", "fit two_layer", "--chunk-rows"):
        assert part in commands, part
    assert all(s["exit"] == 0 for s in res["steps"]), [s for s in res["steps"] if s["exit"]]
    assert res["in_memory_newton"]["converged"]
