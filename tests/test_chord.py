"""Chord steps in Newton's quadratic phase: the Hessian of one iteration reused for the
next steps (their passes form f and g only), to the same optimum, the same stopping test,
and standard errors from a Hessian formed at the final point."""

from __future__ import annotations

import pytest
import torch

from handgrad import registry
from handgrad.fitting import solvers, sums
from handgrad.fitting.data import Data
from handgrad.params import flatten


def _data(n=20_000, d=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64) / d ** 0.5
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(X @ w - 0.3)).to(torch.float64)
    return Data(X, y)


def _fit(data, chord, monkeypatch=None):
    entry = registry.get("logistic")
    like = entry.model.init_params(data)
    obj = solvers.Objective(entry, data, like, {"l2": 0.0})
    hess_passes = []
    real = obj.fast.sums

    def counting(x, *, need_H=True, **kw):
        hess_passes.append(need_H)
        return real(x, need_H=need_H, **kw)
    obj.fast.sums = counting
    res = solvers.newton(obj, flatten(like), tol=1e-8, chord=chord)
    return res, sum(hess_passes), len(hess_passes)


def test_chord_steps_reach_the_same_optimum_with_fewer_hessians():
    data = _data()
    full, h_full, _ = _fit(data, chord=False)
    chord, h_chord, passes = _fit(data, chord=True)
    assert full.converged and chord.converged
    assert chord.grad_norm <= 1e-8 and "resolution" not in chord.message  # the |g| test itself
    reused = [h for h in chord.history if "hessian_from" in h]
    assert reused and all(h["hessian_from"] < h["iteration"] for h in reused)
    assert h_chord < h_full, (h_chord, h_full)
    diff = (flatten(chord.params) - flatten(full.params)).abs().max().item()
    assert diff <= 1e-11, diff


def test_a_chord_that_stops_paying_is_refreshed(monkeypatch):
    """Planted: chord steps entered at once and held to a 100x cut of |g| per step: the
    first one that falls short is followed by a fresh Hessian, and the fit still ends at
    the optimum."""
    data = _data(seed=2)
    full, _, _ = _fit(data, chord=False)
    monkeypatch.setattr(solvers, "CHORD_ENTER", 1.0)
    monkeypatch.setattr(solvers, "CHORD_RATE", 0.01)
    early, _, _ = _fit(data, chord=True)
    assert early.converged and early.grad_norm <= 1e-8
    kinds = ["chord" if "hessian_from" in h else "full" for h in early.history]
    first_chord = kinds.index("chord")
    assert "full" in kinds[first_chord:], kinds  # a refresh after a chord step
    assert (flatten(early.params) - flatten(full.params)).abs().max().item() <= 1e-11


def test_small_problems_and_other_objectives_take_full_newton_steps():
    data = _data(n=2000, d=5)
    res, h, passes = _fit(data, chord=None)  # the default: p = 6 < CHORD_MIN_PARAMS
    assert not any("hessian_from" in h_ for h_ in res.history) and h == passes


@pytest.mark.parametrize("marker, module, knob, n", [
    ("hessian_from", solvers, "CHORD_MIN_PARAMS", 5000),  # chord steps
    ("hessian_chunk_stride", sums, "SAMPLE_ROWS_PER_PARAM", 70_000),  # sampled Hessians
])
def test_standard_errors_come_from_the_hessian_at_the_final_point(monkeypatch, tmp_path, marker,
                                                                   module, knob, n):
    """Chord steps and sampled Hessians change the iterations, not the standard errors: the
    same as a fit with that feature switched off (its knob set out of reach)."""
    import numpy as np

    from handgrad.fitting import pipeline
    data = _data(n=n, d=40, seed=3)
    path = tmp_path / "d.npz"
    np.savez(path, X=data.X.numpy(), y=data.y.numpy())
    on = pipeline.fit("logistic", solver="newton", data_path=str(path), device="cpu")
    assert any(marker in h for h in on["history"])
    monkeypatch.setattr(module, knob, 10 ** 9)
    off = pipeline.fit("logistic", solver="newton", data_path=str(path), device="cpu")
    assert not any(marker in h for h in off["history"])
    for k, v in off["std_errors"].items():
        assert on["std_errors"][k] == pytest.approx(v, rel=1e-9), k


@pytest.mark.parametrize("n, start, words", [
    (20_000, "chord steps at iterations", ("reused", "f and g only")),
    (80_000, "sampled Hessians at iterations", ("one row chunk in", "stopping tests use every row")),
])
def test_the_fit_text_says_which_iterations_reused_or_sampled_a_hessian(runner, n, start, words):
    from tests.conftest import invoke
    r, _ = invoke(runner, "fit", "logistic", "--newton", "--n-samples", n, "--n-features", "40")
    assert r.exit_code == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(start))
    assert all(w in line for w in words), line


def test_the_sums_hold_no_solver_state():
    """The sums only sum: a Newton fit with chord steps leaves them as it found them (their
    pass count aside), and a later pass forms what it is asked for, nothing else."""
    data = _data(n=3000, d=40)
    entry = registry.get("logistic")
    like = entry.model.init_params(data)
    obj = solvers.Objective(entry, data, like, {"l2": 0.0})
    assert isinstance(obj.fast, sums.LinearSums)
    obj.sample_stride()  # a constant of the rows, computed once
    before = {k: v for k, v in vars(obj.fast).items() if k != "passes"}
    res = solvers.newton(obj, flatten(like), tol=1e-8)
    assert any("hessian_from" in h for h in res.history)
    after = {k: v for k, v in vars(obj.fast).items() if k != "passes"}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    f, g, H = obj.fast.sums(flatten(res.params), need_g=False, need_H=False)
    assert g is None and H is None and f is not None


def test_the_last_chord_pass_forms_the_hessian_the_standard_errors_need():
    """A chord step expected to end the fit (|g| times the last chord rate <= tol) forms
    the Hessian in its pass and hands it out (FitResult.hessian): the summary's Hessian at
    the final point is no extra pass, and it is the full sum there (torch.func.hessian of
    the loss written out, an independent reference)."""
    data = _data()
    entry = registry.get("logistic")
    like = entry.model.init_params(data)
    obj = solvers.Objective(entry, data, like, {"l2": 0.0})
    res = solvers.newton(obj, flatten(like), tol=1e-8, final_hessian=True)
    assert "hessian_from" in res.history[-2] and res.converged
    x = flatten(res.params)

    def loss(t):
        z = data.X @ t[:-1] + t[-1]
        return (torch.nn.functional.softplus(z) - data.y * z).sum()
    assert res.hessian is not None
    assert torch.allclose(res.hessian, torch.func.hessian(loss)(x), rtol=1e-10, atol=1e-8)
    # without final_hessian the chord step's pass forms f and g only: nothing to hand out
    obj = solvers.Objective(entry, data, like, {"l2": 0.0})
    assert solvers.newton(obj, flatten(like), tol=1e-8).hessian is None
