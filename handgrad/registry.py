"""The one place that pairs each model (models/) with its derivation (derivations/).

Adding a model: one file in models/, one in derivations/, one line in ``NAMES``, tests, a
config.  Each pair is loaded and checked against the contract (handgrad/contract.py) on
first use; a missing piece is a one-line error naming it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from handgrad.contract import DerivationSpec, Model, load_derivation, load_model
from handgrad.errors import UserError

NAMES = ("least_squares", "logistic", "gaussian", "softmax", "two_layer", "poisson")


@dataclass(frozen=True)
class Entry:
    name: str
    model: Model
    derivation: DerivationSpec

    @property
    def title(self) -> str:
        return self.model.title

    @property
    def has_hessian(self) -> bool:
        return self.derivation.hessian is not None

    @property
    def solvers(self) -> tuple[str, ...]:
        return self.model.solvers

    def loss(self, params, data, **hp):
        return self.model.loss(params, data, **hp)

    def gradient(self, params, data, **hp):
        return self.derivation.gradient(params, data, **hp)

    def hessian(self, params, data, **hp):
        return self.derivation.hessian(params, data, **hp)

    def derivations(self):
        return self.derivation.derivations() if self.derivation.derivations else []


def load(name: str, model_module: str | None = None, derivation_module: str | None = None) -> Entry:
    """Import and check one model/derivation pair (by default handgrad.models.<name> and
    handgrad.derivations.<name>)."""
    mm = importlib.import_module(model_module or f"handgrad.models.{name}")
    dm = importlib.import_module(derivation_module or f"handgrad.derivations.{name}")
    model = load_model(mm)
    if model.name != name:
        raise UserError(f"{mm.__name__}: NAME is {model.name!r}, registered as {name!r}")
    return Entry(name, model, load_derivation(dm, model))


@cache
def _entry(name: str) -> Entry:
    return load(name)


class _Registry(dict):
    """name -> Entry, loaded on first use (so `handgrad list --help` imports no model)."""

    def __missing__(self, name):
        if name not in NAMES:
            raise KeyError(name)
        self[name] = _entry(name)
        return self[name]

    def __iter__(self):
        return iter(NAMES)

    def __len__(self):
        return len(NAMES)

    def __contains__(self, name):
        return name in NAMES

    def keys(self):
        return list(NAMES)

    def values(self):
        return [self[n] for n in NAMES]

    def items(self):
        return [(n, self[n]) for n in NAMES]


REGISTRY: dict[str, Entry] = _Registry()


def get(name: str) -> Entry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"Unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}."
                        ) from None


def describe(*, load_models: bool = False) -> dict:
    """The registered models, JSON-ready (``list``).

    Read from the model and derivation modules' source (their literal NAME, TITLE, SOLVERS,
    TARGET and docstring; a ``hessian`` function or LINEAR, whose per-sample pieces give
    one) without importing them, so ``list`` imports no torch; a module whose constants
    are not literals is loaded instead.  ``load_models=True`` loads every pair through the
    contract (tests check that both give the same)."""
    out = []
    for name in NAMES:
        row = None if load_models else _read_source(name)
        if row is None:
            e = REGISTRY[name]
            row = {"name": e.name, "title": e.title, "hessian": e.has_hessian, "solvers": list(e.solvers),
                   "target": e.model.target.value, "summary": e.model.summary}
        out.append(row)
    return {"models": out}


def _module_ast(modname: str):
    import ast
    import importlib.util

    spec = importlib.util.find_spec(modname)
    if spec is None or not (spec.origin or "").endswith(".py"):
        return None
    with open(spec.origin, encoding="utf-8") as fh:
        return ast.parse(fh.read())


def _read_source(name: str) -> dict | None:
    """describe()'s row for one model from its modules' source, or None if it cannot be
    read that way (then the modules are loaded)."""
    import ast

    from handgrad.contract import Target

    model, deriv = _module_ast(f"handgrad.models.{name}"), _module_ast(f"handgrad.derivations.{name}")
    if model is None or deriv is None:
        return None
    consts = {}
    for node in model.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            key, value = node.targets[0].id, node.value
            if key == "TARGET" and isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name) \
                    and value.value.id == "Target" and value.attr in Target.__members__:
                consts[key] = Target[value.attr].value
            elif key in ("NAME", "TITLE", "SOLVERS"):
                try:
                    consts[key] = ast.literal_eval(value)
                except ValueError:
                    return None
    if set(consts) != {"NAME", "TITLE", "SOLVERS", "TARGET"} or consts["NAME"] != name:
        return None
    defined = {n.name for n in deriv.body if isinstance(n, ast.FunctionDef)}
    defined |= {t.id for n in deriv.body if isinstance(n, ast.Assign)
                for t in n.targets if isinstance(t, ast.Name)}
    doc = (ast.get_docstring(model, clean=False) or consts["TITLE"]).strip().splitlines()[0]
    return {"name": name, "title": consts["TITLE"], "hessian": bool({"hessian", "LINEAR"} & defined),
            "solvers": list(consts["SOLVERS"]), "target": consts["TARGET"], "summary": doc}
