"""Mutants of the built-in derivations (derivations/*.py and *.hg), for tests/test_mutants.py.

A mutation site is
* in a function body of derivations/*.py: an arithmetic operator (``+ - * / **``, also
  augmented, ``+=``; each replaced by each of the other four; a unary minus removed) or a
  numeric constant (c replaced by c + 1);
* in a formula line of derivations/*.hg (``let v = ...``, ``l = ...``, ``= ...``, ``grad``,
  ``hess``, ``d2l``; the text before any ``#``): a ``+`` or ``-`` (swapped) or a digit of a
  number (d replaced by d + 1 mod 10; digits inside names such as ``l2`` or ``d2l`` are
  not numbers).

A .py mutant is *equivalent* when the arithmetic expression around the site (the largest
expression of + - * / ** and unary minus containing it, its other parts as symbols) is the
same function before and after the mutation, by sympy (``x * 1`` -> ``x / 1``,
``2 * 2`` -> ``2 + 2``): it computes the same values on every input, so no check can
catch it, and it is excluded.  The rule looks only at the site's expression, never at
whether a mutant was caught.
"""

from __future__ import annotations

import ast
import re
import types
from dataclasses import dataclass
from pathlib import Path

import sympy

DERIVATIONS = Path(__file__).resolve().parents[1] / "derivations"
_OP_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_ARITH = tuple(_OP_TEXT)


@dataclass(frozen=True)
class Mutant:
    file: str  # a file name in derivations/
    site: int  # the site's number in the file (enumeration order)
    alt: int  # which replacement
    line: int
    col: int
    what: str  # e.g. "'-' -> '+'", for a failure message

    def __str__(self):
        return f"derivations/{self.file}:{self.line}:{self.col} {self.what}"


# ------------------------------------------------------------------------- .py files

def _py_sites(tree: ast.Module) -> list[tuple[ast.AST, list]]:
    """(node, replacements) for every site, in a fixed order.  A replacement is an op class
    (BinOp, AugAssign), None (remove a unary minus) or a number (a constant)."""
    out = []
    for fn in tree.body:
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for stmt in fn.body:
            for node in ast.walk(stmt):
                if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, _ARITH):
                    out.append((node, [op for op in _ARITH if not isinstance(node.op, op)]))
                elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
                    out.append((node, [None]))
                elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
                    out.append((node, [node.value + 1]))
    return out


def _parents(tree) -> dict:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_arith(node) -> bool:
    return (isinstance(node, ast.BinOp) and isinstance(node.op, _ARITH)) or \
        (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)))


def _sym(node, table: dict):
    """The sympy form of an arithmetic expression; any other part is a symbol (the same
    symbol for the same source)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITH):
        a, b = _sym(node.left, table), _sym(node.right, table)
        return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                ast.Div: lambda: a / b, ast.Pow: lambda: a ** b}[type(node.op)]()
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_sym(node.operand, table)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _sym(node.operand, table)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return sympy.Rational(repr(node.value))
    key = ast.dump(node)
    if key not in table:
        table[key] = sympy.Symbol(f"s{len(table)}")
    return table[key]


def _mutate(node, alt):
    """Apply a replacement in place; returns an undo function."""
    if isinstance(node, (ast.BinOp, ast.AugAssign)):
        old = node.op
        node.op = alt()
        return lambda: setattr(node, "op", old)
    if isinstance(node, ast.Constant):
        old = node.value
        node.value = alt
        return lambda: setattr(node, "value", old)
    raise TypeError(node)


def _equivalent(tree, node, alt, parents) -> bool:
    """Same function of the expression's other parts before and after the mutation."""
    if isinstance(node, ast.AugAssign):
        root = ast.BinOp(left=node.target, op=node.op, right=node.value)
        before = _sym(root, table := {})
        root.op = alt()
        return sympy.simplify(before - _sym(root, table)) == 0
    root = node
    while _is_arith(parents.get(root)):
        root = parents[root]
    table: dict = {}
    before = _sym(root, table)
    if alt is None and isinstance(node, ast.UnaryOp):  # -x -> x
        after = _sym(_rebuild(root, node, node.operand), table)
    else:
        undo = _mutate(node, alt)
        after = _sym(root, table)
        undo()
    return sympy.simplify(before - after) == 0


def _rebuild(node, old, new):
    """A copy of the arithmetic expression node with its subtree old replaced by new."""
    if node is old:
        return new
    if isinstance(node, ast.BinOp):
        return ast.BinOp(left=_rebuild(node.left, old, new), op=node.op,
                         right=_rebuild(node.right, old, new))
    if isinstance(node, ast.UnaryOp):
        return ast.UnaryOp(op=node.op, operand=_rebuild(node.operand, old, new))
    return node


def py_mutants(file: str) -> tuple[list[Mutant], int]:
    """(the non-equivalent mutants of derivations/<file>, how many equivalent ones)."""
    tree = ast.parse((DERIVATIONS / file).read_text(encoding="utf-8"))
    parents = _parents(tree)
    out, equivalent = [], 0
    for i, (node, alts) in enumerate(_py_sites(tree)):
        for j, alt in enumerate(alts):
            if _equivalent(tree, node, alt, parents):
                equivalent += 1
                continue
            out.append(Mutant(file, i, j, node.lineno, node.col_offset + 1, _describe(node, alt)))
    return out, equivalent


def _describe(node, alt) -> str:
    if isinstance(node, ast.Constant):
        return f"{node.value!r} -> {alt!r}"
    if alt is None:
        return "unary '-' removed"
    aug = "=" if isinstance(node, ast.AugAssign) else ""
    return f"'{_OP_TEXT[type(node.op)]}{aug}' -> '{_OP_TEXT[alt]}{aug}'"


def load_py_mutant(m: Mutant) -> types.ModuleType:
    """The mutated module, under a name of its own, its __file__ the original's (so its
    notation files are found beside it)."""
    path = DERIVATIONS / m.file
    tree = ast.parse(path.read_text(encoding="utf-8"))
    node, alts = _py_sites(tree)[m.site]
    alt = alts[m.alt]
    if alt is None:
        parent = _parents(tree)[node]
        for field, value in ast.iter_fields(parent):
            if value is node:
                setattr(parent, field, node.operand)
            elif isinstance(value, list):
                value[:] = [node.operand if v is node else v for v in value]
    else:
        _mutate(node, alt)
    ast.fix_missing_locations(tree)
    name = f"handgrad.derivations._mutant_{path.stem}"
    mod = types.ModuleType(name)
    mod.__file__ = str(path)
    exec(compile(tree, str(path), "exec"), mod.__dict__)
    return mod


# ------------------------------------------------------------------------- .hg files

_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(\.\d+)?")
_DECL = re.compile(r"^\s*(let\s+\w+\s*:|wrt\b|#|$)")


def _hg_sites(text: str) -> list[tuple[int, int, str]]:
    """(line number, column, replacement) for every + / - and digit of a number in a
    formula line, left of any comment."""
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if _DECL.match(line):
            continue
        formula = line.split("#", 1)[0]
        for col, ch in enumerate(formula):
            if ch in "+-":
                out.append((n, col, "-" if ch == "+" else "+"))
        for num in _NUMBER.finditer(formula):
            for col in range(num.start(), num.end()):
                ch = formula[col]
                if ch.isdigit():
                    out.append((n, col, str((int(ch) + 1) % 10)))
    return out


def hg_mutants(file: str) -> list[Mutant]:
    text = (DERIVATIONS / file).read_text(encoding="utf-8")
    lines = text.splitlines()
    return [Mutant(file, i, 0, n, col + 1, f"{lines[n - 1][col]!r} -> {rep!r}")
            for i, (n, col, rep) in enumerate(_hg_sites(text))]


def hg_mutated_text(m: Mutant) -> str:
    text = (DERIVATIONS / m.file).read_text(encoding="utf-8")
    n, col, rep = _hg_sites(text)[m.site]
    lines = text.splitlines(keepends=True)
    line = lines[n - 1]
    lines[n - 1] = line[:col] + rep + line[col + 1:]
    return "".join(lines)


def all_mutants() -> tuple[list[Mutant], int]:
    """Every non-equivalent mutant of derivations/, and how many equivalent ones."""
    out, eq = [], 0
    for path in sorted(DERIVATIONS.glob("*.py")):
        if path.name == "__init__.py":
            continue
        ms, e = py_mutants(path.name)
        out += ms
        eq += e
    for path in sorted(DERIVATIONS.glob("*.hg")):
        out += hg_mutants(path.name)
    return out, eq


# ------------------------------------------------------------------------- verdicts

def model_of(file: str) -> str:
    """The registered model a derivation file belongs to (gaussian_cholesky.hg: gaussian)."""
    from handgrad import registry

    stem = Path(file).stem
    return max((n for n in registry.NAMES if stem == n or stem.startswith(n + "_")), key=len)


def _check_fails(entry, seeds) -> str | None:
    import torch

    from handgrad.verify import checker

    for seed in seeds:
        for label, P, D, hp in entry.model.check_problems(seed, torch.float64, "cpu"):
            rep = checker.check_problem(entry, label, P, D, hp, seed=seed, dtype=torch.float64)
            if not rep.ok:
                bad = next(c for c in rep.comparisons if not c.ok)
                return f"check: seed {seed} {label}, {bad.quantity} vs {bad.hand_vs}"
    return None


def _derive_fails(entry, module, files, seed: int = 0) -> str | None:
    import torch

    from handgrad.verify import in_notation

    problems = entry.model.check_problems(seed, torch.float64, "cpu")
    for one in entry.derivation.notation or ():
        if one.file not in files:
            continue
        try:
            rep = in_notation.derive(entry, one, module, problems, seed=seed)
        except Exception as err:  # the CLI stops with a message: a failed derive
            return f"derive {one.file}: {type(err).__name__}"
        if not rep["ok"]:
            return f"derive {one.file}: a line or its link fails"
    return None


def verdict(m: Mutant, tmp: Path) -> str | None:
    """How `check MODEL` or `derive MODEL` fails on the mutant (None: neither does).
    check runs seed 0 first, derive next (the notation files the mutant can change), then
    check's other default seeds."""
    import dataclasses
    import shutil

    from handgrad import registry
    from handgrad.contract import load_derivation

    entry = registry.get(model_of(m.file))
    base = entry.derivation.module
    if m.file.endswith(".hg"):
        for hg in DERIVATIONS.glob("*.hg"):
            shutil.copy(hg, tmp / hg.name)
        (tmp / m.file).write_text(hg_mutated_text(m), encoding="utf-8")
        mod = types.ModuleType(f"handgrad.derivations._mutant_{Path(base.__file__).stem}")
        mod.__file__ = str(tmp / Path(base.__file__).name)
        src = Path(base.__file__).read_text(encoding="utf-8")
        exec(compile(src, str(base.__file__), "exec"), mod.__dict__)
        files = {m.file}
    else:
        try:
            mod = load_py_mutant(m)
        except Exception as err:
            return f"load: {type(err).__name__}"
        files = {one.file for one in entry.derivation.notation or ()}
    try:
        spec = load_derivation(mod, entry.model)
    except Exception as err:
        return f"load: {type(err).__name__}"
    mutated = dataclasses.replace(entry, derivation=spec)
    if m.file.endswith(".hg"):
        return _derive_fails(mutated, mod, files)
    return (_check_fails(mutated, (0,)) or _derive_fails(mutated, mod, files)
            or _check_fails(mutated, (1, 2)))


def load_edited(file: str, old: str, new: str) -> types.ModuleType:
    """derivations/<file> with the text ``old`` (once in it) replaced by ``new``, loaded
    under a name of its own (a planted mistake, written as a person would make it)."""
    path = DERIVATIONS / file
    src = path.read_text(encoding="utf-8")
    assert src.count(old) == 1, f"{old!r} is not once in {file}"
    mod = types.ModuleType(f"handgrad.derivations._planted_{path.stem}")
    mod.__file__ = str(path)
    exec(compile(src.replace(old, new), str(path), "exec"), mod.__dict__)
    return mod
