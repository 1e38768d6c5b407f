"""What fits is what was checked, by mutation: a mistake anywhere in a built-in derivation
makes `check MODEL` or `derive MODEL` fail.

The mutants (tests/mutation.py) are every arithmetic operator (+ - * / **, augmented too)
and numeric constant in a function body of derivations/*.py, and every + / - and digit of
a number in a formula line of derivations/*.hg; those the equivalence rule there proves
compute the same values are excluded.  A seeded sample of them runs here (all of them with
HANDGRAD_MUTANTS=all), each loaded under a module name of its own and checked in process.
Then the mistakes that started this: Poisson's loss value with the sign of y z flipped,
least squares' r * r, and wrong flat directions for softmax, each caught by `check`.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import random
from collections.abc import Callable
from dataclasses import field

import pytest
import torch

from handgrad import registry
from handgrad.contract import FIT, PIECE, DerivationSpec
from handgrad.verify import checker
from tests import mutation
from tests.conftest import invoke

SAMPLE = 36  # mutants per run: about 30 s on a quiet 2-core machine
SEED = int(os.environ.get("HANDGRAD_MUTANT_SEED", "0"))
ALL, EQUIVALENT = mutation.all_mutants()
CHOSEN = (ALL if os.environ.get("HANDGRAD_MUTANTS") == "all"
          else random.Random(SEED).sample(ALL, min(SAMPLE, len(ALL))))


def test_every_derivation_file_has_mutation_sites():
    """Sites in every derivation file, and how many the equivalence rule excludes."""
    files = {m.file for m in ALL}
    on_disk = {p.name for p in mutation.DERIVATIONS.iterdir()
               if p.suffix in (".py", ".hg") and p.name != "__init__.py"}
    assert files == on_disk
    py = sum(m.file.endswith(".py") for m in ALL)
    print(f"\n{len(ALL)} mutants ({py} in .py, {len(ALL) - py} in .hg), {EQUIVALENT} "
          f"equivalent excluded; {len(CHOSEN)} run (seed {SEED})")
    assert py > 300 and len(ALL) - py > 300


@pytest.mark.parametrize("source, mutated, equivalent", [
    ("y = x * 1", ("Mult", "Div"), True), ("y = 2 * 2", ("Mult", "Add"), True),
    ("y = x ** 1", ("Pow", "Mult"), True), ("y = x - 0", ("Sub", "Add"), True),
    ("y = x * 2", ("Mult", "Add"), False), ("y = x ** 2", ("Pow", "Mult"), False),
    ("y = a + b", ("Add", "Sub"), False),
])
def test_the_equivalence_rule(source, mutated, equivalent):
    """Same function of the other parts before and after: x*1 -> x/1 is, x*2 -> x+2 is not."""
    tree = ast.parse(f"def f(x, a, b):\n    {source}\n")
    node = next(n for n, _ in mutation._py_sites(tree) if isinstance(n, ast.BinOp))
    assert type(node.op).__name__ == mutated[0]
    alt = getattr(ast, mutated[1])
    assert mutation._equivalent(tree, node, alt, mutation._parents(tree)) is equivalent


@pytest.mark.parametrize("mutant", CHOSEN, ids=str)
def test_a_mutant_fails_check_or_derive(mutant, tmp_path):
    assert mutation.verdict(mutant, tmp_path) is not None, \
        f"{mutant}: `check` and `derive` both pass"


# ---- the mistakes that started this, planted as a person would write them --------------

@pytest.mark.parametrize("name, file, old, new", [
    ("poisson", "poisson.py", "lz = mu - y * z", "lz = mu + y * z"),
    ("least_squares", "least_squares.py", "lz = r * r", "lz = r + r"),
])
def test_a_wrong_loss_value_fails_check(name, file, old, new, runner, monkeypatch):
    """The loss value a fit reads (Newton's line search, the printed loss, the
    log-likelihood) is compared with the model's loss: a wrong one fails `check`, on the
    loss alone (the derivatives are right)."""
    planted = mutation.load_edited(file, old, new)
    linear = registry.get(name).derivation.linear
    monkeypatch.setattr(linear, "per_sample", planted.per_sample)
    r, out = invoke(runner, "check", name, "--seed", "0", "--json")
    assert r.exit_code == 1 and out["ok"] is False
    failed = {(c["quantity"], c["hand_vs"]) for p in out["models"][name]["problems"]
              for c in p["comparisons"] if not c["ok"]}
    assert failed == {("loss", "model")}
    r, _ = invoke(runner, "check", name, "--seed", "0")
    assert r.exit_code == 1 and "MISMATCH" in r.output and "loss vs model" in r.output


def _softmax_with(old, new):
    entry = registry.get("softmax")
    mod = mutation.load_edited("softmax.py", old, new)
    return entry, dataclasses.replace(entry.derivation, flat_directions=mod.flat_directions)


@pytest.mark.parametrize("old, new, fails", [
    # the W shift along the wrong entries: j * K + k for k * d + j
    ("v[torch.arange(K, device=W.device) * d + j] = s",
     "v[torch.arange(K, device=W.device) + j * K] = s", {"hessian", "gradient", "orthonormal"}),
    # 1/K for 1/sqrt(K): the right directions, not orthonormal
    ("s = 1.0 / math.sqrt(K)", "s = 1.0 / K", {"orthonormal"}),
    # the bias direction left out: the Hessian has a zero eigenvalue more than declared
    ('    if "b" in params:\n        v = W.new_zeros(P)', '    if False:\n        v = W.new_zeros(P)',
     {"count"}),
])
def test_a_wrong_flat_direction_fails_check(old, new, fails):
    """Newton lifts the flat directions: check compares them with the autograd Hessian and
    gradient of the model's loss (H v = 0, g . v = 0), orthonormality, and their number with
    the Hessian's zero eigenvalues."""
    entry, planted = _softmax_with(old, new)
    reps = checker.check_entry(entry, seeds=(0,), derivation=planted)
    failed = {(c.quantity, c.hand_vs) for r in reps for c in r.comparisons if not c.ok}
    assert failed and {q for q, _ in failed} == {"flat"}
    assert {v for _, v in failed} <= fails and failed


# ---- the contract: every piece a fit reads is checked ------------------------------------

def test_every_fit_piece_of_the_contract_has_a_comparison():
    pieces = [f.name for f in dataclasses.fields(DerivationSpec) if f.metadata[PIECE] == FIT]
    assert set(pieces) == set(checker.PIECE_CHECKS)


def test_a_fit_piece_check_has_no_comparison_for_fails_check():
    """A piece added to the contract for fits to read, with no comparison in check: check
    fails, naming it (it is never silently passed over)."""
    @dataclasses.dataclass(frozen=True)
    class WithStep(DerivationSpec):
        step: Callable | None = field(default=None, metadata={PIECE: FIT})

    entry = registry.get("logistic")
    spec = WithStep(**{f.name: getattr(entry.derivation, f.name)
                       for f in dataclasses.fields(DerivationSpec)}, step=lambda *a, **k: 1.0)
    label, P, D, hp = entry.model.check_problems(0)[0]
    rep = checker.check_problem(entry, label, P, D, hp, seed=0, dtype=torch.float64,
                                derivation=spec)
    bad = [c for c in rep.comparisons if not c.ok]
    assert not rep.ok and [(c.quantity, c.hand_vs) for c in bad] == [("step", "unchecked")]
    assert "'step'" in bad[0].worst["message"]


def test_a_field_that_does_not_say_what_it_is_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Undeclared(DerivationSpec):
        extra: object = None

    entry = registry.get("logistic")
    spec = Undeclared(**{f.name: getattr(entry.derivation, f.name)
                         for f in dataclasses.fields(DerivationSpec)})
    with pytest.raises(TypeError, match="extra"):
        spec.pieces(FIT)


def test_an_exception_in_a_piece_is_a_failure_naming_it():
    entry = registry.get("softmax")

    def broken(params, data, **hp):
        raise RuntimeError("shape mismatch in the hand Hessian")
    spec = dataclasses.replace(entry.derivation, hessian=broken)
    label, P, D, hp = entry.model.check_problems(0)[0]
    rep = checker.check_problem(entry, label, P, D, hp, seed=0, dtype=torch.float64,
                                derivation=spec)
    bad = [c for c in rep.comparisons if not c.ok]
    assert [(c.quantity, c.hand_vs) for c in bad] == [("hessian", "error")]
    assert "hessian raised RuntimeError" in bad[0].worst["message"]


# ---- L2 in one place ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["least_squares", "logistic", "poisson"])
def test_the_fit_reads_its_loss_with_and_without_l2_from_one_pass(name):
    """The sums add the L2 term once; the loss without it (the log-likelihood, the residual
    sum of squares) is the same pass before the term, equal to the model's loss at l2 = 0."""
    from handgrad.fitting import solvers
    from handgrad.params import flatten

    entry = registry.get(name)
    label, P, D, hp = entry.model.check_problems(0)[2]
    assert hp["l2"] > 0
    obj = solvers.Objective(entry, D, P, hp)
    x = flatten(P)
    torch.testing.assert_close(obj.value(x), entry.loss(P, D, **hp), rtol=1e-13, atol=0)
    torch.testing.assert_close(obj.fast.data_value(x), entry.loss(P, D, **{**hp, "l2": 0.0}),
                               rtol=1e-13, atol=0)
