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


def describe() -> dict:
    """The registered models, JSON-ready (``list``)."""
    return {"models": [
        {"name": e.name, "title": e.title, "hessian": e.has_hessian, "solvers": list(e.solvers),
         "target": e.model.target.value, "summary": e.model.summary}
        for e in REGISTRY.values()]}
