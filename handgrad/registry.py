"""The one place that pairs each model (models/) with its derivation (derivations/).

Adding a model: one file in models/, one in derivations/, one entry below, tests, a config.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import derivations.gaussian
import derivations.least_squares
import derivations.logistic
import derivations.softmax
import derivations.two_layer
import models.gaussian
import models.least_squares
import models.logistic
import models.softmax
import models.two_layer
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
    "least_squares": Entry("least_squares", models.least_squares, derivations.least_squares),
    "logistic": Entry("logistic", models.logistic, derivations.logistic),
    "gaussian": Entry("gaussian", models.gaussian, derivations.gaussian),
    "softmax": Entry("softmax", models.softmax, derivations.softmax),
    "two_layer": Entry("two_layer", models.two_layer, derivations.two_layer),
}


def get(name: str) -> Entry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(
            f"Unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}."
        ) from None
