"""Newton owns its state and the sums only sum: no code outside handgrad/fitting/solvers.py
and handgrad/fitting/sums.py reads or writes the private state of their classes (names
starting with one underscore), and the mode switches the solver used to flip on the sums
are gone.  The layers point one way: fitting/ never imports present/, and the contract
imports neither the sums nor the notation link (derivations/ do).  Each rule is checked
on the source (ast), and each check catches a planted violation."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
OWNERS = ("handgrad/fitting/solvers.py", "handgrad/fitting/sums.py")
GONE = {"speculate", "speculate_hess", "sample_hess", "last_sampled", "last_result",
        "has_hessian_at", "hessian_sampled"}


def _private_names() -> set[str]:
    """The private attributes and methods of the classes in solvers.py and sums.py."""
    names = set()
    for rel in OWNERS:
        for cls in ast.walk(ast.parse((ROOT / rel).read_text())):
            if not isinstance(cls, ast.ClassDef):
                continue
            for node in ast.walk(cls):
                if isinstance(node, ast.FunctionDef):
                    name = node.name
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                        and node.value.id == "self":
                    name = node.attr
                else:
                    continue
                if name.startswith("_") and not name.startswith("__"):
                    names.add(name)
    return names


def violations(source: str, private: set[str]) -> list[str]:
    """Attribute uses of the owners' private names (not on ``self``) or of the gone switches."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        on_self = isinstance(node.value, ast.Name) and node.value.id == "self"
        if (node.attr in private and not on_self) or node.attr in GONE:
            out.append(f"line {node.lineno}: .{node.attr}")
    return out


def _sources():
    for folder in ("handgrad", "benchmarks", "tests", "models", "derivations"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in OWNERS and rel != "tests/test_solver_state.py":
                yield rel, path.read_text()


def test_no_code_outside_the_solver_and_the_sums_touches_their_private_state():
    private = _private_names()
    assert {"_stride", "_hessian_here", "_pass"} <= private  # the scan sees the classes
    bad = {rel: v for rel, src in _sources() if (v := violations(src, private))}
    assert not bad, bad
    for rel in OWNERS:  # the switches are gone from the owners too
        assert not [v for v in violations((ROOT / rel).read_text(), set()) if v], rel


@pytest.mark.parametrize("planted", [
    "obj.fast._stride = 3",  # writing the sums' private state
    "H = solver._hessian_here()",  # calling the solver's private step
    "obj.fast.sample_hess = True",  # a gone mode switch
    "obj.last_result = None",
])
def test_the_scan_catches_a_planted_violation(planted):
    assert violations(planted, _private_names())


def _imports(rel: str) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse((ROOT / rel).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
            mods.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    return mods


def test_fitting_never_imports_present():
    for path in sorted((ROOT / "handgrad/fitting").glob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        bad = [m for m in _imports(rel) if m.startswith("handgrad.present")]
        assert not bad, (rel, bad)


def test_the_contract_imports_neither_the_sums_nor_the_notation_link():
    bad = [m for m in _imports("handgrad/contract.py")
           if m.startswith(("handgrad.fitting", "handgrad.verify"))]
    assert not bad, bad
