"""Sampled Hessians in Newton's damped phase: before the quadratic phase, the Newton
direction is solved with the Hessian summed over every k-th row chunk, scaled to all rows.
The loss, the gradient and every stopping test stay full sums, the quadratic phase and
every Hessian handed out (standard errors, check) are full, and the fit ends at the same
optimum as with full Hessians throughout."""

from __future__ import annotations

import pytest
import torch

from handgrad import registry
from handgrad.fitting import solvers, sums
from handgrad.fitting.data import Data
from handgrad.fitting.source import TensorRows
from handgrad.params import flatten


def _data(n=80_000, d=40, seed=0, scale=2.0):
    # coefficients of size ~scale: several damped steps before the quadratic phase
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = scale * torch.randn(d, generator=g, dtype=torch.float64) / d ** 0.5
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(X @ w - 0.3)).to(torch.float64)
    return Data(X, y)


def _objective(data, l2=0.0):
    entry = registry.get("logistic")
    like = entry.model.init_params(data)
    return solvers.Objective(entry, data, like, {"l2": l2}), like


def _counted(obj):
    kinds = []
    real = obj.fast.sums

    def counting(x, *, need_H=True, stride=1, **kw):
        kinds.append("g" if not need_H else ("sampled" if stride > 1 else "full"))
        return real(x, need_H=need_H, stride=stride, **kw)
    obj.fast.sums = counting
    return kinds


def _loss(theta, X, y, l2):
    """An independent reference: the logistic loss written out, for torch.func.hessian."""
    z = X @ theta[:-1] + theta[-1]
    return (torch.nn.functional.softplus(z) - y * z).sum() + 0.5 * l2 * theta[:-1] @ theta[:-1]


def test_a_sampled_hessian_is_the_hessian_of_its_chunks_scaled_to_every_row():
    data = _data(n=70_000)
    like = {"w": torch.zeros(40, dtype=torch.float64), "b": torch.zeros((), dtype=torch.float64)}
    S = sums.LinearSums(registry.get("logistic").derivation.linear.per_sample,
                        TensorRows(data.X, data.y), like, l2=0.3)
    k = S.sample_stride()
    assert k > 1, k
    theta = 0.1 * torch.randn(41, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f, g, H = S.sums(theta, stride=k)
    c = S.chunk_rows
    rows = torch.cat([torch.arange(i, min(i + c, 70_000)) for i in range(0, 70_000, c * k)])
    Xs, ys = data.X[rows], data.y[rows]
    ref = torch.func.hessian(lambda t: _loss(t, Xs, ys, 0.0))(theta) * (70_000 / len(rows))
    ref[range(40), range(40)] += 0.3  # the penalty is not a sum over rows: added once, unscaled
    assert torch.allclose(H, ref, rtol=1e-10, atol=1e-8), (H - ref).abs().max()
    # the loss and the gradient of the same pass are over every row
    full = torch.func.grad(lambda t: _loss(t, data.X, data.y, 0.3))(theta)
    assert torch.allclose(g, full, rtol=1e-10, atol=1e-8)
    assert f.item() == pytest.approx(_loss(theta, data.X, data.y, 0.3).item(), rel=1e-12)


def test_newton_with_sampled_early_hessians_reaches_the_same_optimum():
    data = _data()
    runs = {}
    for sample in (False, True):
        obj, like = _objective(data)
        kinds = _counted(obj)
        res = solvers.newton(obj, flatten(like), tol=1e-8, sample=sample)
        runs[sample] = res, kinds
    (full, kinds_full), (smp, kinds_smp) = runs[False], runs[True]
    assert full.converged and smp.converged
    assert smp.grad_norm <= 1e-8 and "resolution" not in smp.message  # the |g| test itself
    marked = [h["iteration"] for h in smp.history if "hessian_chunk_stride" in h]
    assert marked and marked == list(range(len(marked)))  # a prefix: the damped phase
    assert "hessian_chunk_stride" not in smp.history[-1]
    assert "sampled" in kinds_smp and kinds_smp.count("full") < kinds_full.count("full")
    diff = (flatten(smp.params) - flatten(full.params)).abs().max().item()
    assert diff <= 1e-11, diff


def test_the_step_that_ends_the_fit_is_judged_by_a_full_hessian(monkeypatch):
    """Planted: the quadratic phase is never detected (CHORD_ENTER = 0), so only the
    end-of-fit rule can switch sampling off: the fit still converges by the |g| and
    decrement test, and the iteration that ended it solved with a full Hessian."""
    monkeypatch.setattr(solvers, "CHORD_ENTER", 0.0)
    data = _data(seed=1)
    obj, like = _objective(data)
    kinds = _counted(obj)
    res = solvers.newton(obj, flatten(like), tol=1e-8)
    assert res.converged and res.grad_norm <= 1e-8
    assert "hessian_chunk_stride" in res.history[0]
    assert "hessian_chunk_stride" not in res.history[-1] and kinds[-1] == "full"


def test_a_sampled_hessian_is_never_handed_out():
    """After a fit, the Hessian handed out (FitResult.hessian) and hess(x) are the full sum
    (checked against torch.func.hessian over every row); and where the pass at x holds a
    sampled Hessian once sampling is off, the solver forms the full one and hands out none
    it did not form in full."""
    data = _data(n=70_000, seed=2)
    obj, like = _objective(data)
    res = solvers.newton(obj, flatten(like), tol=1e-8, final_hessian=True)
    assert any("hessian_chunk_stride" in h for h in res.history)
    x = flatten(res.params)
    ref = torch.func.hessian(lambda t: _loss(t, data.X, data.y, 0.0))(x)
    assert torch.allclose(obj.hess(x), ref, rtol=1e-10, atol=1e-8)
    if res.hessian is not None:
        assert torch.allclose(res.hessian, ref, rtol=1e-10, atol=1e-8)
    # planted: the solver's pass at a new point holds a sampled Hessian, then sampling ends
    y = x + 0.01
    solver = solvers.NewtonSolver(tol=1e-8)
    solver.setup(obj, y, solvers.FitResult({}, 0, False))
    assert solver.stride > 1 and solver.here.stride == solver.stride  # sampled at y
    sampled = solver.here.H
    solver.stride = 1  # the quadratic phase
    assert solver.update_gradient_hessian(0)
    H = solver.H  # the Hessian the step solves with
    ref_y = torch.func.hessian(lambda t: _loss(t, data.X, data.y, 0.0))(y)
    assert not torch.allclose(sampled, ref_y, rtol=1e-3, atol=0)
    assert torch.allclose(H, ref_y, rtol=1e-10, atol=1e-8)
    # a final pass whose Hessian is sampled is never handed out
    solver.here = solvers.Pass(solver.x, solver.here.f, solver.here.g, sampled, stride=2)
    assert solver.finalize(0.0).hessian is None


# the standard errors and the fit text: tests/test_chord.py (parametrized over both)
