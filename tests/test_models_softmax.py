"""Softmax regression: hand gradient and Hessian vs autograd, planted errors caught, Newton
on the shift-invariant quotient, labels, real data, the CLI."""

from __future__ import annotations

import handgrad.derivations.softmax as dsm
import handgrad.models.softmax as msm
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from handgrad import registry
from handgrad.contract import DerivationSpec
from handgrad.errors import UserError
from handgrad.fitting import solvers
from handgrad.fitting.data import Data
from handgrad.params import flatten
from handgrad.verify import checker
from tests.conftest import invoke

ENTRY = registry.get("softmax")


pytestmark = pytest.mark.usefixtures("one_thread")


def _problems(seed):
    return msm.check_problems(seed, torch.float64, "cpu")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_way_check_passes(seed):
    for label, p, data, hp in _problems(seed):
        rep = checker.check_problem(ENTRY, label, p, data, hp, seed=seed, dtype=torch.float64)
        assert rep.ok, (label, [c for c in rep.comparisons if not c.ok])
        assert {c.quantity for c in rep.comparisons} == {"gradient", "hessian", "flat"}


@pytest.mark.parametrize("seed", [0, 1])
def test_every_derivation_line_verified_and_linked(seed):
    """derivations/softmax.hg: every line verified, and its read-offs are, at these
    problems, the gradient and Hessian fit uses."""
    from handgrad.verify import in_notation
    spec = ENTRY.derivation
    rep = in_notation.derive(ENTRY, spec.notation[0], spec.module, _problems(seed), seed=seed)
    assert rep["verdict"] == "verified" and rep["link"]["ok"], rep["link"]["rows"]
    assert len(rep["link"]["problems"]) == len(_problems(seed))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), d=st.integers(1, 5), K=st.integers(2, 5), bias=st.booleans(),
       l2=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 10_000))
def test_gradient_and_hessian_match_autograd_any_shape(n, d, K, bias, l2, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (n,), generator=g)
    data = Data(X, y)
    p = {"W": torch.randn(K, d, generator=g, dtype=torch.float64)}
    if bias:
        p["b"] = torch.randn(K, generator=g, dtype=torch.float64)
    hp = {"l2": l2}
    G = dsm.gradient(p, data, **hp)
    assert all(G[k].shape == p[k].shape and G[k].grad_fn is None for k in p)
    auto = torch.func.grad(lambda P: msm.loss(P, data, **hp))(p)
    for k in p:
        torch.testing.assert_close(G[k], auto[k], rtol=1e-10, atol=1e-10)
    H = dsm.hessian(p, data, **hp)
    Ha = torch.func.hessian(lambda x: msm.loss(_unflat(x, p), data, **hp))(flatten(p))
    torch.testing.assert_close(H, Ha, rtol=1e-10, atol=1e-10)


def _unflat(x, like):
    from handgrad.params import unflatten
    return unflatten(x, like)


def test_by_hand_two_samples():
    """A value computed by hand: W = 0, b = 0, K = 2 -> p = (1/2, 1/2) for every sample."""
    X = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    p = {"W": torch.zeros(2, 2, dtype=torch.float64), "b": torch.zeros(2, dtype=torch.float64)}
    G = dsm.gradient(p, Data(X, y))
    # P - Y = [[-1/2, 1/2], [1/2, -1/2]];  (P - Y)^T X = [[1, -1.5], [-1, 1.5]]
    torch.testing.assert_close(G["W"], torch.tensor([[1.0, -1.5], [-1.0, 1.5]], dtype=torch.float64))
    torch.testing.assert_close(G["b"], torch.zeros(2, dtype=torch.float64))
    assert msm.loss(p, Data(X, y)).item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())


# ---- planted wrong derivatives must fail the check ------------------------------------

def _E(P, D):
    return torch.softmax(dsm._Z(P, D), 1) - dsm._Y(P, D)


def _planted(grad_fn=None, hess_fn=None):
    return DerivationSpec(None, grad_fn or dsm.gradient, hess_fn or dsm.hessian)


def _g_transposed(P, D, *, l2=0.0, **_):  # X^T (P - Y): (d, K), the notes' per-sample x (p-y)^T
    g = dsm.gradient(P, D, l2=l2)
    g["W"] = (D.X.T @ _E(P, D)) + l2 * P["W"].T
    return g


def _g_sign(P, D, *, l2=0.0, **_):  # (Y - P)^T X
    g = dsm.gradient(P, D, l2=l2)
    g["W"] = -(_E(P, D).T @ D.X) + l2 * P["W"]
    return g


def _g_no_l2(P, D, *, l2=0.0, **_):  # forgot the penalty's gradient
    return dsm.gradient(P, D, l2=0.0)


def _g_bias_mean(P, D, *, l2=0.0, **_):  # mean instead of sum for the bias
    g = dsm.gradient(P, D, l2=l2)
    if "b" in g:
        g["b"] = _E(P, D).mean(0)
    return g


def _h_diag_only(P, D, *, l2=0.0, **_):  # dropped the - p p^T term
    K, d = P["W"].shape
    Pr = torch.softmax(dsm._Z(P, D), 1)
    Xa = torch.cat([D.X, D.X.new_ones(D.n, 1)], 1) if "b" in P else D.X
    m = Xa.shape[1]
    H = torch.zeros(K * m, K * m, dtype=D.X.dtype)
    for k in range(K):
        H[k * m:(k + 1) * m, k * m:(k + 1) * m] = Xa.T @ (Xa * Pr[:, k:k + 1])
    if "b" in P:
        idx = torch.arange(K * m).reshape(K, m)
        order = torch.cat([idx[:, :d].reshape(-1), idx[:, d]])
        H = H[order][:, order]
    i = torch.arange(K * d)
    H[i, i] += l2
    return H


@pytest.mark.parametrize("planted,quantity", [
    (_planted(_g_transposed), "gradient"), (_planted(_g_sign), "gradient"),
    (_planted(_g_no_l2), "gradient"), (_planted(_g_bias_mean), "gradient"),
    (_planted(hess_fn=_h_diag_only), "hessian"),
], ids=["transposed", "sign", "no-l2", "bias-mean", "hessian-no-ppT"])
def test_planted_wrong_derivative_fails(planted, quantity):
    failed = []
    for label, p, data, hp in _problems(0):
        rep = checker.check_problem(ENTRY, label, p, data, hp, seed=0, dtype=torch.float64,
                                    derivation=planted)
        bad = [c for c in rep.comparisons if not c.ok]
        assert all(c.quantity == quantity for c in bad), label
        failed.append(bool(bad))
    assert any(failed)
    if planted.gradient in (_g_transposed, _g_sign):
        assert all(failed)  # wrong at every problem, not just some


# ---- Newton, the singular Hessian, and agreement with autograd gradient descent -------

def test_hessian_is_singular_along_the_shift_and_newton_lifts_it():
    data, _ = msm.synthetic(n=60, d=3, k=4, seed=3)
    data = msm.prepare(data)
    g = torch.Generator().manual_seed(0)
    p = {"W": torch.randn(4, 3, generator=g, dtype=torch.float64),
         "b": torch.randn(4, generator=g, dtype=torch.float64)}
    for l2, n_flat in [(0.0, 3 + 1), (0.7, 1)]:
        H = dsm.hessian(p, data, l2=l2)
        N = dsm.flat_directions(p, data, l2=l2)
        assert N.shape == (n_flat, 16)
        torch.testing.assert_close(N @ N.T, torch.eye(n_flat, dtype=torch.float64))
        assert (H @ N.T).abs().max().item() < 1e-10  # zero curvature along the shift
        gvec = flatten(dsm.gradient(p, data, l2=l2))
        assert (N @ gvec).abs().max().item() < 1e-10  # the gradient never points along it
        evals = torch.linalg.eigvalsh(H)
        assert (evals < 1e-9).sum().item() == n_flat
        obj = solvers.Objective(ENTRY, data, p, {"l2": l2})
        lifted = solvers.lift_flat_directions(obj, flatten(p), H)
        assert torch.linalg.eigvalsh(lifted).min().item() > 1e-6


@pytest.mark.parametrize("n,d,k,l2", [(150, 3, 3, 1.0), (200, 2, 4, 0.3)])
def test_newton_with_hand_hessian_matches_autograd_gd_optimum(n, d, k, l2):
    """Softmax with L2: the hand-derived Newton optimum equals the optimum that plain
    gradient descent finds with the *autograd* gradient, to 1e-6."""
    data, _ = msm.synthetic(n=n, d=d, k=k, seed=7)
    data = msm.prepare(data)
    p0 = msm.init_params(data)
    hp = {"l2": l2}
    rn = solvers.newton(solvers.Objective(ENTRY, data, p0, hp), flatten(p0), tol=1e-10)
    rg = solvers.gradient_descent(solvers.Objective(ENTRY, data, p0, hp, use_autograd=True),
                                  flatten(p0), tol=1e-9, max_iter=20000)
    assert rn.converged and rg.converged
    assert rn.iterations <= 12  # quadratic convergence, not damped crawling
    assert not rn.warnings  # no Cholesky failure / damping fallback was needed
    diff = (flatten(rn.params) - flatten(rg.params)).abs().max().item()
    assert diff < 1e-6
    # both sit in the same gauge: the shift-invariant direction sum_k b_k stays at 0
    assert abs(rn.params["b"].sum().item()) < 1e-10


def test_newton_without_l2_converges_on_overlapping_classes():
    data, truth = msm.synthetic(n=3000, d=3, k=3, seed=0)
    data = msm.prepare(data)
    p0 = msm.init_params(data)
    res = solvers.newton(solvers.Objective(ENTRY, data, p0, {}), flatten(p0))
    assert res.converged and not res.warnings
    # the MLE is near the truth (same gauge: rows of W and b summing to zero)
    assert abs(res.params["W"].sum(0)).max().item() < 1e-10
    assert (res.params["W"] - truth["W"]).abs().max().item() < 0.25


# ---- labels and numerics ---------------------------------------------------------------

def test_integer_and_onehot_labels_give_the_same_loss_and_gradient():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(10, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (10,), generator=g)
    p = {"W": torch.randn(4, 3, generator=g, dtype=torch.float64),
         "b": torch.randn(4, generator=g, dtype=torch.float64)}
    a, b = Data(X, y), Data(X, F.one_hot(y, 4).to(torch.float64))
    assert msm.loss(p, a).item() == pytest.approx(msm.loss(p, b).item(), rel=1e-14)
    for k in p:
        torch.testing.assert_close(dsm.gradient(p, a)[k], dsm.gradient(p, b)[k])


def test_prepare_reencodes_labels_and_rejects_bad_ones():
    X = torch.randn(6, 2, dtype=torch.float64)
    d = msm.prepare(Data(X, torch.tensor([1.0, 5.0, 2.0, 5.0, 1.0, 2.0]), target="grade"))
    assert d.y.tolist() == [0, 2, 1, 2, 0, 1] and d.y.dtype == torch.int64
    assert "re-encoded" in d.notes[0] and "5 -> 2" in d.notes[0]
    onehot = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1]] * 2, dtype=torch.float64)
    assert msm.prepare(Data(X, onehot)).y.tolist() == [1, 0, 2, 1, 0, 2]
    with pytest.raises(UserError, match="class labels"):
        msm.prepare(Data(X, torch.tensor([0.5, 1, 2, 0, 1, 2], dtype=torch.float64)))
    with pytest.raises(UserError, match="only one class"):
        msm.prepare(Data(X, torch.ones(6, dtype=torch.float64)))
    with pytest.raises(UserError, match="not one-hot"):
        msm.prepare(Data(X, onehot * 2))


def test_huge_logits_stay_finite():
    X = torch.tensor([[1000.0], [-1000.0]], dtype=torch.float64)
    data = Data(X, torch.tensor([0, 1]))
    p = {"W": torch.tensor([[1.0], [-1.0]], dtype=torch.float64)}
    assert torch.isfinite(msm.loss(p, data))
    assert all(torch.isfinite(v).all() for v in dsm.gradient(p, data).values())
    assert torch.isfinite(dsm.hessian(p, data)).all()


# ---- the command line and the shipped data ---------------------------------------------

def test_cli_fit_synthetic_recovers_truth(runner):
    res, out = invoke(runner, "fit", "softmax", "--l2", "0.01", "--n-samples", "4000",
                      "--device", "cpu", "--json")
    assert res.exit_code == 0, res.stderr
    assert out["converged"] and out["solver"] == "newton"
    W, Wt = torch.tensor(out["params"]["W"]), torch.tensor(out["true_params"]["W"])
    assert (W - Wt).abs().max().item() < 0.3
    assert out["held_out"]["n"] == 800
    assert abs(out["held_out"]["accuracy"] - out["held_out_true_params"]["accuracy"]) < 0.03


@pytest.mark.parametrize("config,min_acc", [("configs/softmax_iris.toml", 0.9),
                                            ("configs/softmax_wine.toml", 0.9)])
def test_shipped_configs_fit_real_data(runner, config, min_acc):
    res, out = invoke(runner, "run", config, "--device", "cpu", "--json")
    assert res.exit_code == 0, res.stderr
    assert out["converged"]
    assert out["held_out"]["accuracy"] >= min_acc
    assert out["train"]["n"] + out["held_out"]["n"] in (150, 178)


def test_cli_solver_options_are_checked(runner):
    res, out = invoke(runner, "fit", "softmax", "--epochs", "3", "--json")
    assert res.exit_code == 2 and "minibatch" in out["error"]
    res, out = invoke(runner, "fit", "softmax", "--hidden", "8", "--json")
    assert res.exit_code == 2 and "--hidden" in out["error"]
    res, out = invoke(runner, "fit", "softmax", "--test-fraction", "1.5", "--json")
    assert res.exit_code == 2 and "test-fraction" in out["error"]


def test_cli_minibatch_adam_on_softmax(runner):
    res, out = invoke(runner, "fit", "softmax", "--solver", "adam", "--epochs", "5", "--lr",
                      "0.05", "--device", "cpu", "--json")
    assert res.exit_code == 0, res.stderr
    assert len(out["history"]) == 6 and out["history"][-1]["loss"] < out["history"][0]["loss"]
    assert out["held_out"]["accuracy"] > 0.8


def test_cli_float32_fit_scores_the_true_params_too(runner):
    res, out = invoke(runner, "fit", "softmax", "--dtype", "float32", "--l2", "0.1",
                      "--device", "cpu", "--json")
    assert res.exit_code == 0, res.stderr
    assert out["dtype"] == "float32" and out["converged"]
    assert out["held_out"]["accuracy"] == pytest.approx(out["held_out_true_params"]["accuracy"],
                                                        abs=0.05)


def test_hessian_keeps_tiny_curvature_at_saturated_logits():
    """Logits (40, 0), x = 1: H_WW = p0 p1 [[1, -1], [-1, 1]], p0 p1 = e^-40 / (1 + e^-40)^2
    by hand.  p0 - p0^2 rounds to 0 in float64 here; 1 - p0 summed from p1 does not."""
    data = Data(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([0]))
    H = dsm.hessian({"W": torch.tensor([[40.0], [0.0]], dtype=torch.float64)}, data)
    e = torch.exp(torch.tensor(-40.0, dtype=torch.float64))
    w = e / (1 + e) ** 2
    torch.testing.assert_close(H, w * torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64),
                               rtol=1e-12, atol=0)
