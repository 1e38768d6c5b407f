"""The pieces a derivation module declares, as the contract (handgrad.contract) checks them.

* :class:`PerSamplePieces`: a loss sum_i l(z_i, y_i) through a linear predictor
  z = X w + b, given by its per-sample pieces (l_i, dl/dz_i, d^2 l/dz_i^2); the shared
  chain rule that turns them into the gradient, the Hessian and every chunked or
  distributed sum is handgrad.fitting.sums.LinearLoss, the class derivations use.
* :class:`InNotation`: where a built-in derivation written in the notation is, and how
  the model's point reads in it; handgrad.verify.in_notation checks it.

Declarations only: this module imports neither the sums nor the verifier, so the contract,
which names these pieces, does not either (derivations/ import those).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from dataclasses import dataclass


class PerSamplePieces(abc.ABC):
    """``per_sample(z, y, grad, hess, value) -> (l_i, dl/dz_i, d^2 l/dz_i^2)`` (None where
    not asked for) of a loss through z = X w + b on the weight vector ``weights`` (1-D) and
    the optional intercept ``intercept`` (0-d).  ``gradient`` and ``hessian`` are the chain
    rule's, implemented once by handgrad.fitting.sums.LinearLoss."""

    def __init__(self, per_sample: Callable, *, weights: str = "w", intercept: str = "b"):
        self.per_sample, self.weights, self.intercept = per_sample, weights, intercept

    @abc.abstractmethod
    def gradient(self, params, data, *, l2: float = 0.0, **_):
        """dl/dw = X^T e + l2 w, dl/db = 1^T e, e_i = dl/dz_i (denominator layout)."""

    @abc.abstractmethod
    def hessian(self, params, data, *, l2: float = 0.0, **_):
        """X_a^T diag(h) X_a + l2 I_w, h_i = d^2 l/dz_i^2, X_a = [X, 1] (with an intercept)."""


@dataclass(frozen=True)
class InNotation:
    """Where a built-in derivation's notation file is and how the model's point reads in it.

    ``file``: the .hg file name, beside the derivations module.  ``values(params, data,
    hp)``: the model's point as {notation name: tensor} (0-d, 1-D or 2-D; 1-D is a column).
    ``absent``: parameters a check problem may lack; ``values`` gives what the model holds
    them at (an intercept at 0, a mean at the sample mean).  ``when``: the model options
    the file is written for, as (name, value) pairs (the two-layer net's activation); a
    problem with other options is another file's."""

    file: str
    values: Callable
    absent: tuple[str, ...] = ()
    when: tuple[tuple[str, object], ...] = ()

    def skip_reason(self, d, P, hp) -> str | None:
        """Why the file does not apply at a problem (None: it does)."""
        lacking = [v for v in d.wrt if v not in P]
        if any(v not in self.absent for v in lacking) or any(k not in d.wrt for k in P):
            return "another parametrisation"
        other = [k for k, v in self.when if hp.get(k) != v]
        if other:
            return f"another {other[0]}"
        return None


def path_of(module, spec: InNotation) -> str:
    """The notation file's path: beside the derivation module."""
    return os.path.join(os.path.dirname(os.path.abspath(module.__file__)), spec.file)
