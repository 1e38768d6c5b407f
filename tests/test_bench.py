"""The benchmark runs at tiny sizes and writes a valid markdown table and JSON, and times
each iterative peer at matched accuracy (the loosest tolerance whose coefficients equal
handgrad's to 1e-10) and at its defaults.

No timing is asserted: only that every section ran, every registered model got a
gradient row, the numbers compared agree (the benchmark checks results, not only speed),
and the tolerance the table reports is the one the matched-accuracy rule picks, checked by
fitting the peer again here, outside the benchmark's code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from handgrad.bench import bench

from handgrad import registry
from handgrad.params import flatten
from tests.conftest import invoke

TINY = {"logistic": [(2_000, 5)], "poisson": [(2_000, 5)], "job": (2_000, 5),
        "hessian": (1_000, 5), "gradients": (300, 4), "derived": (300, 4),
        "least_squares": (2_000, 5), "covariance": (2_000, 5), "mixed": (2_000, 5),
        "repeats": 1, "autograd_newton": True, "gflops_n": 300}


@pytest.mark.slow
def test_bench_runs_every_section_and_writes_markdown_and_json(tmp_path):
    res = bench.run(quick=True, sizes=TINY, log=lambda s: None)
    md, js = bench.write(res, str(tmp_path))
    data = json.loads(open(js).read())
    assert data["machine"]["best_gflops"] > 0 and data["machine"]["cores"] >= 1
    sections = {r["section"] for r in data["rows"]}
    assert {"logistic Newton |g|<1e-8", "poisson Newton |g|<1e-8", "whole job", "one Hessian",
            "gradient vs autograd", "least squares closed form", "covariance MLE", "mixed precision Newton",
            "derived gradient vs hand"} <= sections
    derived = next(r for r in data["rows"] if r["section"] == "derived gradient vs hand")
    assert derived["max_diff"] < 1e-12, derived  # the derived read-off is the hand gradient
    assert not [r for r in data["rows"] if r.get("error")], [r for r in data["rows"] if r.get("error")]
    grads = [r for r in data["rows"] if r["section"] == "gradient vs autograd"]
    assert sorted(r["case"].split()[0] for r in grads) == sorted(registry.REGISTRY)
    for r in grads:  # hand and autograd gradients agree (relative) wherever they were timed
        assert r["max_diff"] < 1e-10, r
    libs = ("scikit-learn", "statsmodels", "glum", "plain torch", "numpy", "normal equations")
    peers = [r for r in data["rows"] if (r["peer"] or "").startswith(libs)]
    for r in peers:  # every row timing a peer library says how the peer was run
        assert r.get("peer_setting"), r
    matched = [r for r in peers if r["peer_setting"].startswith("matched:")]
    assert {r["section"] for r in matched} >= {"logistic Newton |g|<1e-8", "poisson Newton |g|<1e-8",
                                               "whole job"}
    for r in matched:  # at matched accuracy the coefficients agree, at the tolerance shown
        assert r["coef_max_diff"] <= bench.MATCH, r
        if "peer_tol" in r:
            assert f"={r['peer_tol']:.0e}" in r["peer_setting"]
    for sec in ("logistic Newton |g|<1e-8", "poisson Newton |g|<1e-8"):  # and at its defaults
        assert any(r["section"] == sec and r["peer_setting"].startswith("defaults:")
                   and r["peer"].startswith("scikit-learn") for r in peers)
    assert not [r for r in peers if "tol=1e-12" in r["peer_setting"] and
                r["peer_setting"].startswith("defaults")]
    cov = next(r for r in data["rows"] if r["section"] == "covariance MLE")
    assert cov["rel_diff"] <= 1e-12
    text = open(md).read()
    assert text.count("\n| ") == len(data["rows"]) + 1  # header + one line per row
    assert "GFLOP/s" in text and "| comparison |" in text and "| peer setting |" in text
    assert "matched: tol=" in text and "| coef max diff |" in text


def _tiny_logistic():
    data = bench.logistic_data(2_000, 5, seed=3)
    ours = flatten(bench.hand_newton(data).params).numpy()
    return data.X.numpy(), data.y.numpy(), ours


def _sklearn(X, y, tol):
    """scikit-learn's newton-cholesky, unpenalized, written out here (not the benchmark's)."""
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(solver="newton-cholesky", C=np.inf, tol=tol).fit(X, y)
    return np.append(m.coef_.ravel(), m.intercept_)


def test_matched_tolerance_is_the_loosest_rung_within_1e10_of_handgrad():
    """On a tiny logistic problem: handgrad's coefficients are the MLE (statsmodels, solved
    tightly, agrees to 1e-10); scikit-learn at the chosen tolerance agrees with them to
    1e-10, at the next looser rung it does not; the timed rows report that tolerance."""
    pytest.importorskip("sklearn")
    sm = pytest.importorskip("statsmodels.api")
    X, y, ours = _tiny_logistic()
    mle = sm.Logit(y, np.c_[X, np.ones(len(X))]).fit(method="newton", tol=1e-14, disp=0).params
    assert np.abs(ours - mle).max() <= 1e-10
    peer = bench._sklearn_peer("logistic", X, y)
    m = bench.matched_tolerance(peer.run, ours)
    tol = m["tol"]
    assert tol is not None and tol in bench.LADDER and tol != bench.LADDER[0], m
    assert np.abs(_sklearn(X, y, tol) - ours).max() <= 1e-10
    looser = bench.LADDER[bench.LADDER.index(tol) - 1]
    assert np.abs(_sklearn(X, y, looser) - ours).max() > 1e-10
    assert [t for t, _ in m["tried"]] == list(bench.LADDER[: bench.LADDER.index(tol) + 1])
    rows, matched = bench.peer_rows("s", "c", "handgrad", 1.0, ours, peer, 1, 0)
    assert matched["tol"] == tol and rows[0]["peer_tol"] == tol
    assert rows[0]["peer_setting"] == f"matched: tol={tol:.0e}" and rows[0]["coef_max_diff"] <= 1e-10
    assert rows[1]["peer_setting"].startswith("defaults: tol=0.0001")  # scikit-learn's default
    assert rows[1]["coef_max_diff"] == pytest.approx(np.abs(_sklearn(X, y, 1e-4) - ours).max())


def test_matched_tolerance_scans_loose_to_tight_and_says_when_nothing_matches():
    ours = np.zeros(3)
    calls = []

    def fit(tol):  # a peer whose error is 30 tol: 1e-12 is the first rung within 1e-10
        calls.append(tol)
        return ours + 30 * tol, 7

    m = bench.matched_tolerance(fit, ours)
    assert m["tol"] == 1e-12 and m["iterations"] == 7 and calls == list(bench.LADDER)
    m = bench.matched_tolerance(lambda tol: (ours + 1e-3, 1), ours)
    assert m["tol"] is None and m["coef_max_diff"] == pytest.approx(1e-3)
    calls.clear()
    m = bench.matched_tolerance(fit, ours, match=3e-3)  # 30 * 1e-4 = 3e-3: stops there
    assert m["tol"] == 1e-4 and calls == [1e-2, 1e-3, 1e-4]
    rows, matched = bench.peer_rows("s", "c", "h", 1.0, ours,
                                    bench.Peer("never", lambda tol: (ours + 1.0, 1)), 1, 0,
                                    "target", 2.0)
    assert matched is None and len(rows) == 1  # no defaults row for a peer without defaults
    assert rows[0]["peer_setting"].startswith("unmatched") and rows[0]["met"] is False
    assert rows[0]["peer_s"] is None


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


def test_a_failing_peer_loses_only_its_own_rows(monkeypatch):
    """A peer whose fit raises (say another version's arguments) leaves an error row and
    the other peers' rows; glum, absent here, leaves none."""
    pytest.importorskip("sklearn")

    def broken(model, X, y):
        def run(tol):
            raise TypeError("unexpected keyword argument 'tol'")
        return bench.Peer("statsmodels Logit newton", run, defaults="-")

    monkeypatch.setattr(bench, "_statsmodels_peer", broken)
    rows = bench.bench_glm("logistic", [(500, 3)], 1, False)
    bad = [r for r in rows if r.get("error")]
    assert [r["peer"] for r in bad] == ["statsmodels Logit newton"] and "tol" in bad[0]["error"]
    assert any(r["peer"] == "scikit-learn newton-cholesky" and r["coef_max_diff"] <= bench.MATCH
               for r in rows)
    assert not any("glum" in (r["peer"] or "") for r in rows)
