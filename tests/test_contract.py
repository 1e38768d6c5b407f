"""The model contract (handgrad/contract.py): what the registry checks, and that the
derivative every fit path sums is the one `check` verifies."""

from __future__ import annotations

import ast
import pathlib
import types

import pytest
import torch

from handgrad import contract, registry
from handgrad.contract import Likelihood, Role, Target
from handgrad.errors import UserError
from handgrad.fitting import solvers, sums
from handgrad.params import flatten
from handgrad.verify import checker
from tests.conftest import invoke

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINEAR = [n for n in registry.NAMES if registry.get(n).derivation.linear is not None]


def test_the_linear_models_are_found_from_the_contract():
    assert {"least_squares", "logistic", "poisson"} <= set(LINEAR)


def _wrong_first_derivative(per_sample):
    def planted(z, y, grad=True, hess=True, value=True):
        lz, e, h = per_sample(z, y, grad, hess, value)
        return lz, (None if e is None else 1.1 * e + 0.05), h
    return planted


def _wrong_second_derivative(per_sample):
    def planted(z, y, grad=True, hess=True, value=True):
        lz, e, h = per_sample(z, y, grad, hess, value)
        return lz, e, (None if h is None else 0.5 * h)
    return planted


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("plant, quantity", [(_wrong_first_derivative, "gradient"),
                                             (_wrong_second_derivative, "hessian")])
def test_a_wrong_per_sample_derivative_fails_check(name, plant, quantity, monkeypatch):
    """The per-sample pieces are the single source: planting a mistake in them (as the fit
    would use it) makes `check` fail on exactly that quantity, against autograd."""
    linear = registry.get(name).derivation.linear
    monkeypatch.setattr(linear, "per_sample", plant(linear.per_sample))
    entry = registry.get(name)
    reps = checker.check_entry(entry, seeds=(0,))
    failed = {c.quantity for r in reps for c in r.comparisons if not c.ok}
    assert failed == {quantity}, failed


@pytest.mark.parametrize("name", LINEAR)
def test_the_fit_sums_the_same_per_sample_pieces_check_verifies(name, monkeypatch):
    """What fits is what was checked: the solvers' fused pass and gradient() agree, and a
    planted per-sample mistake changes both (there is no second copy)."""
    entry = registry.get(name)
    label, P, D, hp = entry.model.check_problems(0)[0]
    obj = solvers.Objective(entry, D, P, hp)
    assert isinstance(obj.fast, sums.LinearSums)
    x = flatten(P)
    assert torch.allclose(obj.grad(x), flatten(entry.gradient(P, D, **hp)), rtol=1e-13, atol=1e-13)
    linear = entry.derivation.linear
    monkeypatch.setattr(linear, "per_sample", _wrong_first_derivative(linear.per_sample))
    moved = solvers.Objective(entry, D, P, hp)
    assert not torch.allclose(moved.grad(x), obj.grad(x))
    assert torch.allclose(moved.grad(x), flatten(entry.gradient(P, D, **hp)), rtol=1e-13, atol=1e-13)


def test_check_command_fails_on_a_planted_per_sample_mistake(runner, monkeypatch):
    linear = registry.get("logistic").derivation.linear
    monkeypatch.setattr(linear, "per_sample", _wrong_first_derivative(linear.per_sample))
    r, out = invoke(runner, "check", "--all", "--json")
    assert r.exit_code == 1 and not out["ok"] and not out["models"]["logistic"]["ok"]
    assert all(v["ok"] for k, v in out["models"].items() if k != "logistic")


# --- what the registry refuses ---------------------------------------------------------

def _module(name="toy", **attrs):
    mod = types.ModuleType(f"handgrad.models.{name}")
    base = dict(NAME=name, TITLE="Toy", TARGET=Target.CONTINUOUS,
                PARAMS={"w": Role.WEIGHTS, "b": Role.INTERCEPT}, SOLVERS=("newton",),
                DEFAULT_SOLVER="newton", init_params=lambda *a, **k: {}, loss=lambda *a, **k: 0,
                synthetic=lambda **k: None, check_problems=lambda *a, **k: [])
    base.update(attrs)
    for k, v in base.items():
        if v is not None:
            setattr(mod, k, v)
    return mod


@pytest.mark.parametrize("change, message", [
    ({"loss": None}, "does not define loss"),
    ({"TARGET": "binary"}, "TARGET must be a handgrad.contract.Target"),
    ({"PARAMS": {"w": "weights"}}, "PARAMS must map each parameter name to a handgrad.contract.Role"),
    ({"DEFAULT_SOLVER": "lbfgs"}, "DEFAULT_SOLVER 'lbfgs' is not in SOLVERS"),
    ({"SOLVERS": ("closed",), "DEFAULT_SOLVER": "closed"}, "need a closed_form function"),
    ({"LIKELIHOOD": True}, "LIKELIHOOD must be a handgrad.contract.Likelihood"),
])
def test_a_model_missing_a_piece_is_one_line_naming_it(change, message):
    with pytest.raises(UserError, match=message) as exc:
        contract.load_model(_module(**change))
    assert "\n" not in str(exc.value)


def test_a_linear_derivation_may_not_carry_its_own_gradient():
    """Two copies of one derivative are refused: the fit would sum one, check the other."""
    model = contract.load_model(_module())
    d = types.ModuleType("handgrad.derivations.toy")
    d.LINEAR = sums.LinearLoss(lambda z, y, *a: (z, z, z))
    d.gradient = lambda P, D, **hp: {"w": P["w"]}
    with pytest.raises(UserError, match="must not define its own gradient"):
        contract.load_derivation(d, model)
    d.gradient = d.LINEAR.gradient  # the same object, for its steps: allowed
    spec = contract.load_derivation(d, model)
    assert spec.gradient == d.LINEAR.gradient and spec.linear is d.LINEAR
    bad = contract.load_model(_module(PARAMS={"mu": Role.LOCATION}))
    with pytest.raises(UserError, match="LINEAR acts on weights"):
        contract.load_derivation(d, bad)


def test_every_registered_model_declares_its_roles_and_likelihood():
    for name in registry.NAMES:
        m = registry.get(name).model
        assert isinstance(m.target, Target) and all(isinstance(r, Role) for r in m.params.values())
        assert m.likelihood is None or isinstance(m.likelihood, Likelihood)


# --- layout: no import cycles, the shared code reaches models only through the registry ---

def _module_names() -> set[str]:
    out = set()
    for p in (ROOT / "handgrad").rglob("*.py"):
        rel = p.relative_to(ROOT).with_suffix("")
        out.add(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    return out


def _imports(path: pathlib.Path, modules: frozenset = frozenset()) -> set[str]:
    """Modules a file imports, at the top or inside functions (``from pkg import mod`` is an
    edge to pkg.mod, ``from pkg import name`` to pkg)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _module_graph() -> dict[str, set[str]]:
    names = frozenset(_module_names())
    mods = {}
    for p in (ROOT / "handgrad").rglob("*.py"):
        rel = p.relative_to(ROOT).with_suffix("")
        mods[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    return {m: {i for i in _imports(p, names) if i in mods and i != m} for m, p in mods.items()}


def test_no_import_cycle_in_handgrad():
    graph = _module_graph()
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [m, n]))
            if n not in state:
                visit(n, stack + [m])
        state[m] = 2
    for m in graph:
        if m not in state:
            visit(m, [])


def test_shared_code_reaches_models_only_through_the_registry():
    for p in (ROOT / "handgrad").rglob("*.py"):
        if p.name == "registry.py":
            continue
        bad = {i for i in _imports(p) if i.startswith(("handgrad.models", "handgrad.derivations",
                                                        "models", "derivations"))}
        assert not bad, f"{p.relative_to(ROOT)} imports {bad}"
