"""Two CPU processes (gloo on 127.0.0.1): all-reduced sums give the one-process fit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from handgrad import registry
from handgrad.fitting import distributed, lstsq, solvers, source
from handgrad.params import flatten
from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _problem():
    entry = registry.get("logistic")
    data, _ = entry.model.synthetic(n=3001, d=6, seed=7)
    return entry, data


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    ctx = distributed.init_tcp(rank, world, port)
    try:
        entry, data = _problem()
        like = entry.model.init_params(data)
        rows = source.TensorRows(data.X, data.y).shard(rank, world)
        obj = solvers.Objective(entry, rows, like, {"l2": 0.3}, reduce=ctx.reduce)
        res = solvers.newton(obj, flatten(like))
        msgs, nums = ctx.messages, ctx.numbers
        m, S, n = lstsq.covariance(source.TensorRows(data.X).shard(rank, world), chunk_rows=100,
                                    reduce=ctx.reduce)
        torch.save({"x": flatten(res.params), "converged": res.converged, "iters": res.iterations,
                    "rows": rows.n, "messages": msgs, "numbers": nums, "S": S, "m": m, "n": n},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        distributed.shutdown(ctx)


def test_two_processes_match_the_one_process_fit(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    entry, data = _problem()
    like = entry.model.init_params(data)
    ref = solvers.newton(solvers.Objective(entry, data, like, {"l2": 0.3}), flatten(like))
    assert r0["converged"] and ref.converged
    assert r0["rows"] + r1["rows"] == data.n and min(r0["rows"], r1["rows"]) > 0
    assert torch.equal(r0["x"], r1["x"])  # every rank took the same steps
    assert (r0["x"] - flatten(ref.params)).abs().max() <= 1e-10
    # one all-reduce per pass, each 1 + p + p^2 numbers (p = d + 1 = 7): loss, gradient, Hessian
    p = data.d + 1
    assert r0["numbers"] == r0["messages"] * (1 + p + p * p)
    C = np.cov(data.X.numpy(), rowvar=False, bias=True)
    assert r0["n"] == data.n
    assert np.abs(r0["S"].numpy() - C).max() <= 1e-12 * np.abs(C).max()
    assert torch.equal(r0["S"], r1["S"])


@pytest.mark.slow
def _torchrun(*args: str) -> dict:
    """`torchrun --nproc-per-node 2 cli.py ARGS --distributed` (gloo, one thread each):
    rank 0's --json output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "cli.py", *args,
         "--distributed"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert two.returncode == 0, two.stderr[-2000:]
    return json.loads(two.stdout)  # rank 0 alone printed


def test_torchrun_cli_fit_matches_one_process(tmp_path):
    """`torchrun --nproc-per-node 2 cli.py fit logistic --newton --distributed` == one process."""
    args = ["fit", "logistic", "--newton", "--n-samples", "4000", "--n-features", "5",
            "--l2", "0.5", "--device", "cpu", "--json"]
    from handgrad.fitting import pipeline

    a = pipeline.fit("logistic", solver="newton", n_samples=4000, n_features=5, l2=0.5, device="cpu")
    b = _torchrun(*args, "--chunk-rows", "700")
    assert b["distributed"]["world_size"] == 2 and b["converged"]
    x_a = np.array(a["params"]["w"] + [a["params"]["b"]])
    x_b = np.array(b["params"]["w"] + [b["params"]["b"]])
    assert np.abs(x_a - x_b).max() <= 1e-10


def _same_result(a: dict, b: dict, tol: float = 1e-10) -> None:
    """Same keys, same coefficients, standard errors and fit statistics."""
    skip = {"scale", "distributed", "seconds", "history", "warnings", "message", "iterations"}
    assert set(a) - {"distributed"} == set(b) - {"distributed"}, set(a) ^ set(b)
    assert set(a["summary"]) == set(b["summary"])
    for key in ("coefficients", "std_errors"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert abs(a[key][k] - b[key][k]) <= tol * max(1.0, abs(a[key][k])), (key, k)
    for k, v in a["summary"].items():
        if isinstance(v, float):
            assert abs(v - b["summary"][k]) <= tol * max(1.0, abs(v)), k
    assert {k for k in a if k not in skip} <= set(b)


@pytest.mark.slow
def test_every_fit_path_gives_the_same_keys_and_numbers(tmp_path):
    """In memory, --chunk-rows (in memory and streamed from .npz), --hessian-dtype float32 and
    two gloo processes: one pipeline, one summary (coefficients, std errors, LL, AIC, ...)."""
    from handgrad.models import logistic

    from handgrad.fitting import pipeline

    data, _ = logistic.synthetic(n=3000, d=4, seed=3)
    path = tmp_path / "lg.npz"
    np.savez(path, X=data.X.numpy(), y=data.y.numpy())
    base = pipeline.fit("logistic", solver="newton", data_path=str(path), device="cpu")
    assert base["converged"] and "summary" in base and "std_errors" in base
    for kw in ({"chunk_rows": 500}, {"hessian_dtype": "float32"},
               {"chunk_rows": 700, "hessian_dtype": "float32"}):
        _same_result(base, pipeline.fit("logistic", solver="newton", data_path=str(path),
                                        device="cpu", **kw))
    b = _torchrun("fit", "logistic", "--newton", "--data", str(path), "--device", "cpu", "--json",
                  "--chunk-rows", "400")
    assert b["distributed"]["world_size"] == 2
    _same_result(base, b)


@pytest.mark.slow
def test_fit_loss_expression_under_two_processes_matches_the_built_in_model(tmp_path):
    """fit --loss (issue: derived derivatives) is a sum over rows: under torchrun each
    process takes its rows and the derived gradient and Hessian are all-reduced."""
    from handgrad.models import logistic

    from handgrad.fitting import pipeline

    data, _ = logistic.synthetic(n=3000, d=4, seed=5)
    path = tmp_path / "lg.npz"
    np.savez(path, X=data.X.numpy(), y=data.y.numpy())
    base = pipeline.fit("logistic", solver="newton", data_path=str(path), device="cpu")
    b = _torchrun("fit", "--loss", "sum(log(vector(1) + exp(X*w))) - y'*X*w", "--wrt", "w", "--newton",
                  "--data", str(path), "--device", "cpu", "--json", "--chunk-rows", "400")
    assert b["distributed"]["world_size"] == 2 and b["converged"]
    assert b["derivatives"] != "hand"
    names = list(base["coefficients"])
    assert names == list(b["coefficients"])
    assert max(abs(base["coefficients"][k] - b["coefficients"][k]) for k in names) <= 1e-10


@pytest.mark.slow
def test_chord_steps_stay_in_step_across_processes():
    """40 features: Newton takes chord steps (a Hessian reused, passes of f and g only);
    every process decides alike from the all-reduced |g|, so the all-reduces match."""
    args = ["fit", "logistic", "--newton", "--n-samples", "6000", "--n-features", "40",
            "--device", "cpu", "--json"]
    from handgrad.fitting import pipeline

    a = pipeline.fit("logistic", solver="newton", n_samples=6000, n_features=40, device="cpu")
    assert any("hessian_from" in h for h in a["history"])
    b = _torchrun(*args, "--chunk-rows", "1000")
    assert b["distributed"]["world_size"] == 2 and b["converged"]
    assert [("hessian_from" in h) for h in a["history"]] == [("hessian_from" in h) for h in b["history"]]
    x_a = np.array(a["params"]["w"] + [a["params"]["b"]])
    x_b = np.array(b["params"]["w"] + [b["params"]["b"]])
    assert np.abs(x_a - x_b).max() <= 1e-10


def _sampling_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    from handgrad.fitting import sums

    torch.set_num_threads(1)
    # 4001 rows in chunks of 100: the two shards hold 21 and 20 chunks, so a stride from
    # each shard's own count (21 // 7 = 3, 20 // 7 = 2) would differ; the shared one is 2
    sums.SAMPLE_ROWS_PER_PARAM = 17  # 17 * 41 rows = 7 chunks to sample
    ctx = distributed.init_tcp(rank, world, port)
    try:
        entry = registry.get("logistic")
        data, _ = entry.model.synthetic(n=4001, d=40, seed=7)
        like = entry.model.init_params(data)
        rows = source.TensorRows(data.X, data.y).shard(rank, world)
        obj = solvers.Objective(entry, rows, like, {"l2": 0.0}, chunk_rows=100, reduce=ctx.reduce)
        res = solvers.newton(obj, flatten(like))
        torch.save({"x": flatten(res.params), "converged": res.converged, "stride": obj.fast.sample_stride(),
                    "sampled": [h.get("hessian_chunk_stride") for h in res.history]},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        distributed.shutdown(ctx)


def test_sampled_hessians_use_one_stride_on_every_process(tmp_path):
    """Shards whose own chunk counts would give different sampling strides: every rank uses
    the shared one, takes the same passes (the all-reduces match: no hang), the same steps,
    and ends at the one-process optimum."""
    mp.spawn(_sampling_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["stride"] == r1["stride"] == 2
    assert r0["sampled"] == r1["sampled"] and r0["sampled"][0] == 2
    assert torch.equal(r0["x"], r1["x"]) and r0["converged"]
    entry = registry.get("logistic")
    data, _ = entry.model.synthetic(n=4001, d=40, seed=7)
    like = entry.model.init_params(data)
    ref = solvers.newton(solvers.Objective(entry, data, like, {"l2": 0.0}), flatten(like), sample=False)
    assert (r0["x"] - flatten(ref.params)).abs().max() <= 1e-10
