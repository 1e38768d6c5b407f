"""Chunked sums over rows (handgrad/fitting/sums.py): same numbers as the one-piece derivations,
from memory or streamed from .npy/.npz files, and fits that match the in-memory fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from handgrad import registry
from handgrad.errors import UserError
from handgrad.fitting import lstsq, solvers, source, sums
from handgrad.fitting.data import Data
from handgrad.params import flatten
from tests.conftest import ROOT, invoke


def _point(like, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in like.items()}


@pytest.mark.parametrize("name", ["logistic", "least_squares"])
@pytest.mark.parametrize("intercept,l2", [(True, 0.0), (False, 0.0), (True, 0.8)])
@pytest.mark.parametrize("chunk", [1, 37, 10_000])
def test_linear_sums_equal_autograd_and_the_derivation(name, intercept, l2, chunk):
    entry = registry.get(name)
    data, _ = entry.model.synthetic(n=121, d=6, seed=4)
    P = _point(entry.model.init_params(data, intercept=intercept), 1)
    x = flatten(P)
    L = sums.LinearSums(entry.derivation.linear.per_sample, source.TensorRows(data.X, data.y), P,
                          l2=l2, chunk_rows=chunk)
    f, g, H = L.sums(x)
    # independent references: the plain torch loss and autograd
    ref_f = entry.loss(P, data, l2=l2)
    def loss(v):
        return entry.loss({"w": v[:6], **({"b": v[6]} if intercept else {})}, data, l2=l2)

    ref_g = torch.func.grad(loss)(x)
    ref_H = torch.func.hessian(loss)(x)
    torch.testing.assert_close(f, ref_f, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(g, ref_g, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(H, ref_H, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(H, entry.hessian(P, data, l2=l2), rtol=1e-12, atol=1e-10)
    assert L.passes == 1  # loss, gradient and Hessian came from one pass


def test_chunked_sums_equal_one_piece_for_every_registered_model():
    for name, entry in registry.REGISTRY.items():
        for label, P, data, hp in entry.model.check_problems(0):
            x = flatten(P)
            rows = source.TensorRows(data.X, data.y)
            halves = [entry.loss(P, data.rows(slice(a, b)), **{**hp, "l2": 0.0})
                      for a, b in ((0, 4), (4, data.n))]
            if not torch.isclose(halves[0] + halves[1], entry.loss(P, data, **{**hp, "l2": 0.0})):
                with pytest.raises(UserError, match="not a sum over samples"):
                    sums.ChunkedSums(entry, rows, P, hp, chunk_rows=2,
                                       make_data=sums._data_like(data))
                continue
            C = sums.ChunkedSums(entry, rows, P, hp, chunk_rows=2,
                                   make_data=sums._data_like(data))
            torch.testing.assert_close(C.value(x), entry.loss(P, data, **hp),
                                       rtol=1e-11, atol=1e-11, msg=f"{name} {label}")
            ref_g = flatten({k: entry.gradient(P, data, **hp)[k] for k in P})
            torch.testing.assert_close(C.grad(x), ref_g, rtol=1e-10, atol=1e-10,
                                       msg=f"{name} {label}")
            if entry.has_hessian:
                torch.testing.assert_close(C.hess(x), entry.hessian(P, data, **hp),
                                           rtol=1e-10, atol=1e-10, msg=f"{name} {label}")


def _save(tmp_path, n=3001, d=7, seed=0, labels=(0.0, 1.0)):
    entry = registry.get("logistic")
    data, _ = entry.model.synthetic(n=n, d=d, seed=seed)
    y = np.where(data.y.numpy() > 0, labels[1], labels[0])
    np.save(tmp_path / "X.npy", data.X.numpy())
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "d.npz", X=data.X.numpy(), y=y)
    return data


def test_file_rows_read_exactly_the_saved_rows_and_shard(tmp_path):
    data = _save(tmp_path)
    for path in ("X.npy", "d.npz"):
        rows = source.open_rows(str(tmp_path / path))
        assert (rows.n, rows.d) == (3001, 7)
        got = torch.cat([X for _, X, _ in rows.chunks(500)])
        assert torch.equal(got, data.X)
        parts = [rows.shard(r, 3) for r in range(3)]
        assert sum(p.n for p in parts) == 3001
        assert torch.equal(torch.cat([torch.cat([X for _, X, _ in p.chunks(64)]) for p in parts]),
                           data.X)


def test_file_rows_errors_are_one_line_user_errors(tmp_path):
    X = np.random.default_rng(0).standard_normal((50, 3))
    np.save(tmp_path / "F.npy", np.asfortranarray(X))
    with pytest.raises(UserError, match="Fortran"):
        source.open_rows(str(tmp_path / "F.npy"))
    np.savez_compressed(tmp_path / "c.npz", X=X, y=np.zeros(50))
    with pytest.raises(UserError, match="compressed"):
        source.open_rows(str(tmp_path / "c.npz"))
    X[17, 2] = np.nan
    np.save(tmp_path / "X.npy", X)
    with pytest.raises(UserError, match=r"NaN \(row 17, column 2\)"):
        list(source.open_rows(str(tmp_path / "X.npy")).chunks(8))


@pytest.mark.parametrize("path", ["X.npy", "d.npz"])
def test_streamed_fit_matches_in_memory_fit(runner, tmp_path, path):
    _save(tmp_path, labels=(3.0, 5.0))  # two values, re-encoded to {0, 1}
    p = str(tmp_path / path)
    _, mem = invoke(runner, "fit", "logistic", "--newton", "--data", p, "--json")
    r, st = invoke(runner, "fit", "logistic", "--newton", "--data", p, "--chunk-rows", "113",
                   "--json")
    assert r.exit_code == 0 and st["converged"] and mem["converged"]
    assert any("re-encoded" in n for n in st["data"]["notes"])
    a, b = flatten_params(mem), flatten_params(st)
    assert np.abs(a - b).max() <= 1e-10
    se_a, se_b = np.array(list(mem["std_errors"].values())), np.array(list(st["std_errors"].values()))
    assert np.abs(se_a - se_b).max() <= 1e-8 * np.abs(se_a).max()
    assert st["scale"]["passes"] <= st["iterations"] + 3  # one pass per Newton step


def flatten_params(out):
    return np.array(out["params"]["w"] + [out["params"]["b"]])


def test_float32_hessian_newton_reaches_the_float64_optimum():
    entry = registry.get("logistic")
    data, _ = entry.model.synthetic(n=4000, d=12, seed=2)
    like = entry.model.init_params(data)
    res = {}
    for hdt in (None, torch.float32):
        obj = solvers.Objective(entry, data, like, {"l2": 0.1}, hess_dtype=hdt)
        res[hdt] = solvers.newton(obj, flatten(like), tol=1e-9)
        assert res[hdt].converged and res[hdt].grad_norm < 1e-9
    diff = (flatten(res[None].params) - flatten(res[torch.float32].params)).abs().max()
    assert diff < 1e-10


def test_covariance_matches_numpy_cov_with_a_large_mean(tmp_path):
    rng = np.random.default_rng(3)
    X = 1e6 + rng.standard_normal((5003, 6)) @ rng.standard_normal((6, 6))
    C = np.cov(X, rowvar=False, bias=True)
    m, S, n = lstsq.covariance(source.TensorRows(torch.from_numpy(X)), chunk_rows=256)
    assert n == 5003
    assert np.abs(S.numpy() - C).max() <= 1e-12 * np.abs(C).max() * 1e3  # cond of the data
    np.testing.assert_allclose(m.numpy(), X.mean(0), rtol=1e-14)
    np.save(tmp_path / "X.npy", X)
    _, S2, _ = lstsq.covariance(source.open_rows(str(tmp_path / "X.npy")), chunk_rows=1000)
    assert np.abs(S2.numpy() - C).max() <= 1e-9 * np.abs(C).max()


def test_covariance_well_scaled_to_1e_12():
    X = np.random.default_rng(1).standard_normal((20000, 9)) * 2 + 3
    C = np.cov(X, rowvar=False, bias=True)
    _, S, _ = lstsq.covariance(source.TensorRows(torch.from_numpy(X)))
    assert np.abs(S.numpy() - C).max() <= 1e-12 * np.abs(C).max()


def _qr_solve(A, y):
    Q, R = np.linalg.qr(A)
    return np.linalg.solve(R, Q.T @ y)


def test_least_squares_fast_path_matches_householder_qr():
    rng = np.random.default_rng(5)
    n, d = 20000, 8
    X = rng.standard_normal((n, d)) * np.logspace(0, 3, d) + 50.0  # scaled, offset columns
    y = X @ rng.standard_normal(d) + 2.0 + rng.standard_normal(n)
    theta, R, info = lstsq.least_squares(source.TensorRows(torch.from_numpy(X), torch.from_numpy(y)))
    assert info["method"].startswith("cholesky-qr")
    ref = _qr_solve(np.column_stack([X, np.ones(n)]), y)
    assert np.abs(theta.numpy() - ref).max() <= 1e-10 * np.abs(ref).max()
    # R^T R is the Gram matrix (standard errors come from R)
    A = np.column_stack([X, np.ones(n)])
    np.testing.assert_allclose((R.T @ R).numpy(), A.T @ A, rtol=1e-10, atol=1e-6)


def test_least_squares_falls_back_to_householder_on_ill_conditioned_designs(tmp_path):
    # degree-9 polynomial on a narrow range: condition ~1e12; y an exact polynomial
    x = np.linspace(1.0, 1.5, 4000)
    X = np.column_stack([x ** k for k in range(1, 10)])
    coef = np.arange(1, 10, dtype=float) / 10
    y = X @ coef + 0.25
    rows = source.TensorRows(torch.from_numpy(X), torch.from_numpy(y))
    theta, _, info = lstsq.least_squares(rows)
    assert info["method"] == "householder" and info["cond"] > 1e5
    pred = X @ theta[:-1].numpy() + float(theta[-1])
    assert np.abs(pred - y).max() <= 1e-8 * np.abs(y).max()
    # the same from a file, chunked (TSQR)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    t2, _, info2 = lstsq.least_squares(source.open_rows(str(tmp_path / "X.npy")), chunk_rows=500)
    assert info2["method"] == "householder"
    pred2 = X @ t2[:-1].numpy() + float(t2[-1])
    assert np.abs(pred2 - y).max() <= 1e-8 * np.abs(y).max()


def test_closed_form_cli_with_chunks_matches_qr(runner, tmp_path):
    rng = np.random.default_rng(9)
    X = rng.standard_normal((3000, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 1.0 + 0.1 * rng.standard_normal(3000)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    r, out = invoke(runner, "fit", "least_squares", "--data", str(tmp_path / "X.npy"),
                    "--chunk-rows", "700", "--json")
    assert r.exit_code == 0 and out["converged"]
    ref = _qr_solve(np.column_stack([X, np.ones(3000)]), y)
    got = np.array(out["params"]["w"] + [out["params"]["b"]])
    assert np.abs(got - ref).max() <= 1e-10


def _write_logistic_npy(folder, n, d, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    X = np.lib.format.open_memmap(os.path.join(folder, "X.npy"), mode="w+", dtype=np.float64,
                                  shape=(n, d))
    y = np.empty(n)
    w = rng.standard_normal(d) / np.sqrt(d)
    for i in range(0, n, 50_000):
        Xi = rng.standard_normal((min(50_000, n - i), d))
        X[i:i + len(Xi)] = Xi
        y[i:i + len(Xi)] = rng.random(len(Xi)) < 1 / (1 + np.exp(-(Xi @ w)))
    X.flush()
    del X
    np.save(os.path.join(folder, "y.npy"), y)


@pytest.mark.slow
def test_streaming_resident_memory_does_not_grow_with_the_file(tmp_path):
    """Fit a 13 MB then a 64 MB X.npy in 2048-row chunks in one fresh process: the
    second fit raises the peak resident memory by far less than the 51 MB between them."""
    d = 40
    _write_logistic_npy(str(tmp_path / "small"), 40_000, d)
    _write_logistic_npy(str(tmp_path / "big"), 200_000, d)
    code = (
        f"import json, sys; sys.path.insert(0, {ROOT!r})\n"
        "import torch; torch.set_num_threads(1); from handgrad.fitting import pipeline\n"
        "peaks, ok = [], []\n"
        "for name in ('small', 'big'):\n"
        f"    out = pipeline.fit('logistic', solver='newton', data_path={str(tmp_path)!r} + '/' + name"
        " + '/X.npy', chunk_rows=2048, device='cpu')\n"
        "    peaks.append(pipeline.peak_rss_mb()); ok.append(out['converged'])\n"
        "print(json.dumps({'peaks': peaks, 'ok': ok}))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert all(out["ok"])
    extra_mb = (200_000 - 40_000) * d * 8 / 2 ** 20
    assert out["peaks"][1] - out["peaks"][0] < extra_mb / 4, (out, extra_mb)


def test_fast_sums_is_none_for_autograd_and_plain_models():
    entry = registry.get("logistic")
    data = Data(torch.randn(20, 3, dtype=torch.float64), torch.ones(20, dtype=torch.float64))
    like = entry.model.init_params(data)
    assert isinstance(solvers.Objective(entry, data, like, {"l2": 0.0}).fast, sums.LinearSums)
    assert solvers.Objective(entry, data, like, {"l2": 0.0}, use_autograd=True).fast is None
