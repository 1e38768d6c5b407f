"""Two-layer net: hand backpropagation vs autograd for every activation, the notes'
mislabelled W1 gradient and other planted errors caught, ReLU checks away from the kink,
minibatch SGD-momentum / Adam on the hand gradient, digits >= 95% held out, the CLI."""

from __future__ import annotations

import os

import handgrad.derivations.two_layer as dt
import handgrad.models.two_layer as mt
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from handgrad import registry
from handgrad.contract import DerivationSpec
from handgrad.fitting import pipeline, solvers
from handgrad.fitting.data import Data
from handgrad.params import flatten
from handgrad.verify import checker
from tests.conftest import ROOT, derive_edited_notation, invoke

ENTRY = registry.get("two_layer")
DIGITS = os.path.join(ROOT, "data", "digits.csv")


pytestmark = pytest.mark.usefixtures("one_thread")


def _problems(seed):
    return mt.check_problems(seed, torch.float64, "cpu")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_way_check_passes(seed):
    acts = set()
    for label, p, data, hp in _problems(seed):
        rep = checker.check_problem(ENTRY, label, p, data, hp, seed=seed, dtype=torch.float64)
        assert rep.ok, (label, [c.worst for c in rep.comparisons if not c.ok])
        acts.add(hp["activation"])
    assert acts == {"sigmoid", "tanh", "relu"}


def test_relu_check_points_are_away_from_the_kink():
    for seed in range(5):
        for _, p, data, hp in _problems(seed):
            if hp["activation"] == "relu":
                A1, _, _ = mt.forward(p, data, "relu")
                assert A1.abs().min().item() >= mt.KINK_MARGIN
                assert (A1 > 0).any() and (A1 < 0).any()  # both sides of the kink exercised
    assert "kink" in mt.CHECK_NOTE


@pytest.mark.parametrize("seed", [0, 1])
def test_every_derivation_line_verified_and_linked(seed):
    """derivations/two_layer{,_tanh,_relu}.hg: every line verified, and each file's read-offs
    are the gradient fit uses at the problems with its activation (all problems covered)."""
    from handgrad.verify import in_notation
    spec = ENTRY.derivation
    linked = []
    for one in spec.notation:
        rep = in_notation.derive(ENTRY, one, spec.module, _problems(seed), seed=seed)
        assert rep["verdict"] == "verified" and rep["link"]["ok"], (one.file, rep["link"]["rows"])
        linked += rep["link"]["problems"]
    assert sorted(linked) == sorted(p[0] for p in _problems(seed))


@pytest.mark.parametrize("file,old,new,where", [
    # the notes' slip: the W1 result written under the label dl/dW2 (h x d, not W2's K x h)
    ("two_layer.hg", "grad W2 = G2*H1' + l2*W2", "grad W2 = G1*X' + l2*W1", "grad W2"),
    # sigma' dropped on the way back through the activation
    ("two_layer_tanh.hg", "let G1 = (W2'*G2) .* (matrix(1) - H1.^2)", "let G1 = (W2'*G2)", "dl"),
    # the regulariser's derivative without its 1/2 cancelled: 2 l2 W1
    ("two_layer_relu.hg", "grad W1 = G1*X' + l2*W1", "grad W1 = G1*X' + 2*l2*W1", "grad W1"),
])
def test_a_planted_mistake_in_the_notation_files_is_caught(tmp_path, file, old, new, where):
    rep = derive_edited_notation(ENTRY, tmp_path, file, old, new, _problems(0))
    assert not rep["ok"] and rep["verdict"] == "failed"
    assert rep["first_wrong"]["lhs"] == where, rep["first_wrong"]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 10), d=st.integers(1, 5), h=st.integers(1, 6), K=st.integers(2, 4),
       act=st.sampled_from(["sigmoid", "tanh"]), bias=st.booleans(),
       l2=st.sampled_from([0.0, 0.4]), seed=st.integers(0, 10_000))
def test_backprop_matches_autograd_any_shape(n, d, h, K, act, bias, l2, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    data = Data(X, torch.randint(0, K, (n,), generator=g))
    p = {"W1": torch.randn(h, d, generator=g, dtype=torch.float64)}
    if bias:
        p["b1"] = torch.randn(h, generator=g, dtype=torch.float64)
    p["W2"] = torch.randn(K, h, generator=g, dtype=torch.float64)
    if bias:
        p["b2"] = torch.randn(K, generator=g, dtype=torch.float64)
    hp = {"l2": l2, "activation": act}
    G = dt.gradient(p, data, **hp)
    auto = torch.func.grad(lambda P: mt.loss(P, data, **hp))(p)
    assert list(G) == list(p)
    for k in p:
        assert G[k].shape == p[k].shape and G[k].grad_fn is None
        torch.testing.assert_close(G[k], auto[k], rtol=1e-10, atol=1e-10)


def test_by_hand_one_sample_one_unit():
    """x = 2, W1 = 0.5, tanh, W2 = [[1], [-1]], y = 0, no biases: a1 = 1, h = tanh(1),
    a2 = (h, -h), p = softmax(a2); G2 = p - e0; dl/dW2 = G2 h; dl/dW1 = (W2^T G2) (1 - h^2) x."""
    X = torch.tensor([[2.0]], dtype=torch.float64)
    p = {"W1": torch.tensor([[0.5]], dtype=torch.float64),
         "W2": torch.tensor([[1.0], [-1.0]], dtype=torch.float64)}
    G = dt.gradient(p, Data(X, torch.tensor([0])), activation="tanh")
    h = torch.tanh(torch.tensor(1.0, dtype=torch.float64))
    p0 = 1 / (1 + torch.exp(-2 * h))  # softmax((h, -h))[0]
    g2 = torch.stack([p0 - 1, 1 - p0])
    torch.testing.assert_close(G["W2"], (g2 * h).reshape(2, 1))
    torch.testing.assert_close(G["W1"], ((g2[0] - g2[1]) * (1 - h * h) * 2).reshape(1, 1))


# ---- planted wrong derivatives ---------------------------------------------------------

_SIGMA_PRIME = {"sigmoid": lambda A: torch.sigmoid(A) * (1 - torch.sigmoid(A)),
                "tanh": lambda A: 1 - torch.tanh(A) ** 2, "relu": lambda A: (A > 0).to(A.dtype)}


def _parts(P, D, act):
    X, A1, H1, A2 = dt._forward(P, D, act)
    G2 = torch.softmax(A2, 0) - dt._Y(P, D)
    G1 = (P["W2"].T @ G2) * _SIGMA_PRIME[act](A1)
    return X, A1, H1, G2, G1


def _seed_mislabel(P, D, *, l2=0.0, activation="tanh", **_):
    """The seed: the W1 result (W2^T G2 o sigma') x^T filed under dl/dW2 (and, so that
    every key is present, dl/dW2's result under dl/dW1)."""
    g = dt.gradient(P, D, l2=l2, activation=activation)
    g["W1"], g["W2"] = g["W2"], g["W1"]
    return g


def _no_sigma_prime(P, D, *, l2=0.0, activation="tanh", **_):
    g = dt.gradient(P, D, l2=l2, activation=activation)
    X, _, _, G2, _ = _parts(P, D, activation)
    g["W1"] = (P["W2"].T @ G2) @ X.T + l2 * P["W1"]
    return g


def _w2_with_A1(P, D, *, l2=0.0, activation="tanh", **_):  # G2 A1^T: pre- not post-activation
    g = dt.gradient(P, D, l2=l2, activation=activation)
    _, A1, _, G2, _ = _parts(P, D, activation)
    g["W2"] = G2 @ A1.T + l2 * P["W2"]
    return g


def _b1_from_G2_path(P, D, *, l2=0.0, activation="tanh", **_):  # b1 gradient without sigma'
    g = dt.gradient(P, D, l2=l2, activation=activation)
    if "b1" in g:
        _, _, _, G2, _ = _parts(P, D, activation)
        g["b1"] = (P["W2"].T @ G2).sum(1)
    return g


def _relu_prime_wrong(P, D, *, l2=0.0, activation="tanh", **_):  # sigma' taken as sigma
    g = dt.gradient(P, D, l2=l2, activation=activation)
    X, A1, H1, G2, _ = _parts(P, D, activation)
    g["W1"] = ((P["W2"].T @ G2) * H1) @ X.T + l2 * P["W1"]
    return g


@pytest.mark.parametrize("fn", [_seed_mislabel, _no_sigma_prime, _w2_with_A1,
                                _b1_from_G2_path, _relu_prime_wrong],
                         ids=["seed-W1-as-W2", "no-sigma-prime", "W2-uses-A1", "b1-no-sigma-prime",
                              "sigma-for-sigma-prime"])
def test_planted_wrong_gradient_fails(fn):
    results = []
    for label, p, data, hp in _problems(0):
        rep = checker.check_problem(ENTRY, label, p, data, hp, seed=0, dtype=torch.float64,
                                    derivation=DerivationSpec(None, fn))
        results.append(rep.ok)
        if not rep.ok:  # the two references agree; the hand side is the odd one out
            assert all(c.ok for c in rep.comparisons if c.hand_vs == "autograd_vs_fd")
    assert not all(results)
    if fn in (_seed_mislabel, _no_sigma_prime, _w2_with_A1):
        assert not any(results)


def test_seed_mislabel_is_reported_as_a_shape_problem():
    """With h x d != K x h the notes' labelling cannot even have the right shape."""
    label, p, data, hp = _problems(0)[0]
    assert p["W1"].shape != p["W2"].shape
    g = dt.gradient(p, data, **hp)
    assert g["W1"].shape == p["W1"].shape and g["W2"].shape == p["W2"].shape
    swapped = _seed_mislabel(p, data, **hp)
    assert swapped["W2"].shape == p["W1"].shape != p["W2"].shape


# ---- fitting -----------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_minibatch_solvers_reduce_the_loss_and_are_deterministic(solver):
    data, _ = mt.synthetic(n=600, d=5, seed=2)
    data = mt.prepare(data)
    hp = {"l2": 0.0, "hidden": 8, "activation": "tanh"}
    p0 = mt.init_params(data, seed=1, **hp)
    runs = []
    for _ in range(2):
        obj = solvers.Objective(ENTRY, data, p0, hp)
        runs.append(solvers.SOLVERS[solver](obj, flatten(p0), epochs=8, batch_size=25,
                                            lr=0.01 if solver == "adam" else 0.05, seed=3))
    a, b = runs
    assert a.converged and a.iterations == 8 and len(a.history) == 9
    assert a.history[-1]["loss"] < 0.8 * a.history[0]["loss"]
    torch.testing.assert_close(flatten(a.params), flatten(b.params), rtol=0, atol=0)


def test_minibatch_gradient_uses_the_hand_derivation():
    """The minibatch step direction is the hand gradient on the batch: a planted-wrong
    derivation changes the trajectory (so the solver really calls it)."""
    data, _ = mt.synthetic(n=200, d=4, seed=0)
    data = mt.prepare(data)
    hp = {"l2": 0.0, "hidden": 6, "activation": "tanh"}
    p0 = mt.init_params(data, seed=0, **hp)
    ok = solvers.adam(solvers.Objective(ENTRY, data, p0, hp), flatten(p0), epochs=2)
    wrong_entry = registry.Entry("two_layer", ENTRY.model, DerivationSpec(None, _no_sigma_prime))
    bad = solvers.adam(solvers.Objective(wrong_entry, data, p0, hp), flatten(p0), epochs=2)
    assert (flatten(ok.params) - flatten(bad.params)).abs().max().item() > 1e-4


def test_l2_counted_once_per_epoch_in_minibatches():
    """With the data term removed (all-zero inputs: dl/dW1 = G1 X^T = 0), each minibatch
    step of plain SGD (momentum 0) is W1 <- W1 - lr (l2 |B|/n) W1 / |B|, so one epoch of
    n/|B| steps shrinks W1 by (1 - lr l2 / n)^(n/|B|): the penalty counted once per epoch,
    as in the full loss."""
    n, B, lr, l2 = 40, 10, 0.1, 2.0
    X = torch.zeros(n, 3, dtype=torch.float64)
    data = Data(X, torch.arange(n) % 2)
    p0 = {"W1": torch.ones(4, 3, dtype=torch.float64), "W2": torch.zeros(2, 4, dtype=torch.float64)}
    hp = {"l2": l2, "activation": "tanh"}
    res = solvers.sgd(solvers.Objective(ENTRY, data, p0, hp), flatten(p0), epochs=1, batch_size=B,
                      lr=lr, momentum=0.0)
    shrink = (1 - lr * l2 / n) ** (n // B)
    torch.testing.assert_close(res.params["W1"], shrink * p0["W1"])


def test_digits_reach_95_percent_held_out_from_the_shipped_config(runner):
    res, out = invoke(runner, "run", os.path.join(ROOT, "configs", "two_layer_digits.toml"),
                      "--device", "cpu", "--json")
    assert res.exit_code == 0, res.stderr
    assert out["held_out"]["n"] == 359 and out["train"]["n"] == 1438
    assert out["held_out"]["accuracy"] >= 0.95
    assert out["derivatives"] == "hand" and out["solver"] == "adam"


@pytest.mark.parametrize("activation,solver,lr", [("relu", "adam", None), ("sigmoid", "sgd", "0.01")])
def test_digits_other_activations_and_sgd(runner, activation, solver, lr):
    args = ["fit", "two_layer", "--data", DIGITS, "--target", "digit", "--activation", activation,
            "--solver", solver, "--epochs", "15", "--hidden", "48", "--device", "cpu", "--json"]
    if lr:
        args += ["--lr", lr]
    res, out = invoke(runner, *args)
    assert res.exit_code == 0, res.stderr
    assert out["hyper"]["activation"] == activation and out["hyper"]["hidden"] == 48
    assert len(out["params"]["W1"]) == 48
    assert out["held_out"]["accuracy"] >= 0.9


def test_cli_synthetic_compared_with_the_teacher(runner):
    res, out = invoke(runner, "fit", "two_layer", "--epochs", "20", "--lr", "0.003",
                      "--device", "cpu", "--json")
    assert res.exit_code == 0, res.stderr
    teacher = out["held_out_true_params"]["accuracy"]
    assert out["held_out"]["accuracy"] > teacher - 0.1
    assert out["held_out"]["accuracy"] > 0.5  # three classes: chance is about 1/3


def test_cli_rejects_bad_options(runner):
    res, out = invoke(runner, "fit", "two_layer", "--solver", "newton", "--json")
    assert res.exit_code == 2 and "not available for two_layer" in out["error"]
    res, out = invoke(runner, "fit", "two_layer", "--lr", "-1", "--epochs", "1", "--json")
    assert res.exit_code == 2 and "--lr" in out["error"]
    res = runner.invoke(__import__("cli").main, ["fit", "two_layer", "--activation", "gelu"])
    assert res.exit_code == 2


def test_onehot_labels_through_the_api():
    data, _ = mt.synthetic(n=50, d=3, seed=0)
    y = data.y.clone()
    data.y = F.one_hot(y, 3).to(torch.float64)
    data = mt.prepare(data)
    assert torch.equal(data.y, y)
    hp = {"activation": "sigmoid"}
    p = mt.init_params(data, hidden=4, seed=0, **hp)
    onehot = Data(data.X, F.one_hot(y, 3).to(torch.float64))
    assert mt.loss(p, data, **hp).item() == pytest.approx(mt.loss(p, onehot, **hp).item(), rel=1e-14)
    assert pipeline.registry.get("two_layer").model.module is mt


def test_divergent_learning_rate_is_reported_not_converged(runner):
    res, out = invoke(runner, "fit", "two_layer", "--solver", "sgd", "--lr", "1000", "--epochs",
                      "3", "--device", "cpu", "--json")
    assert res.exit_code == 1
    assert not out["converged"] and "lower --lr" in out["message"]
    assert out["history"][-1]["loss"] > out["history"][0]["loss"]
