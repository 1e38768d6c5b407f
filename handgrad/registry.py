"""The one place that pairs each model (models/) with its derivation (derivations/).

Adding a model: one file in models/, one in derivations/, one entry below, tests, a config.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import handgrad.derivations.gaussian
import handgrad.derivations.least_squares
import handgrad.derivations.logistic
import handgrad.derivations.softmax
import handgrad.derivations.two_layer
import handgrad.models.gaussian
import handgrad.models.least_squares
import handgrad.models.logistic
import handgrad.models.softmax
import handgrad.models.two_layer
from handgrad.errors import UserError


@dataclass(frozen=True)
class Entry:
    name: str
    model: ModuleType
    derivation: ModuleType

    @property
    def title(self) -> str:
        return self.model.TITLE

    @property
    def has_hessian(self) -> bool:
        return hasattr(self.derivation, "hessian")

    @property
    def solvers(self) -> tuple[str, ...]:
        return self.model.SOLVERS

    def loss(self, params, data, **hp):
        return self.model.loss(params, data, **hp)

    def gradient(self, params, data, **hp):
        return self.derivation.gradient(params, data, **hp)

    def hessian(self, params, data, **hp):
        return self.derivation.hessian(params, data, **hp)

    def derivations(self):
        return self.derivation.derivations() if hasattr(self.derivation, "derivations") else []


REGISTRY: dict[str, Entry] = {
    "least_squares": Entry("least_squares", handgrad.models.least_squares, handgrad.derivations.least_squares),
    "logistic": Entry("logistic", handgrad.models.logistic, handgrad.derivations.logistic),
    "gaussian": Entry("gaussian", handgrad.models.gaussian, handgrad.derivations.gaussian),
    "softmax": Entry("softmax", handgrad.models.softmax, handgrad.derivations.softmax),
    "two_layer": Entry("two_layer", handgrad.models.two_layer, handgrad.derivations.two_layer),
}


def get(name: str) -> Entry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(
            f"Unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}."
        ) from None
