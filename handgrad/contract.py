"""The contract between a model (models/<name>.py), its derivation (derivations/<name>.py)
and the shared code: what each must provide, checked once when the registry loads them.

Shared code asks a :class:`Model` or :class:`DerivationSpec` built here; it never probes a
module's attributes or treats parameter names as type tags.

A model module provides (required unless marked optional):

=================  ==========================================================================
``NAME``, ``TITLE``  registry name and title (str)
``TARGET``          a :class:`Target`: what the data's target column is
``PARAMS``          ``{name: Role}`` in the order of the parameter dict (a :class:`Role` each)
``SOLVERS``         tuple of solver names; ``DEFAULT_SOLVER`` one of them
``CLOSED_SOLVERS``  optional: the solvers in ``SOLVERS`` that ``closed_form`` runs
``HYPER``           optional: model options besides ``l2`` (e.g. ``("hidden", "activation")``)
``LIKELIHOOD``      optional :class:`Likelihood`: how the log-likelihood relates to the loss
``CHECK_NOTE``      optional: a sentence ``check`` prints under the model's table
``init_params(data, *, intercept, **hp) -> dict[str, Tensor]``
``loss(params, data, *, l2=0.0, **hp) -> Tensor``  (0-d; a sum over samples; the autograd
                    reference)
``synthetic(*, n, d, seed, **kw) -> (Data, true params)``
``check_problems(seed, dtype, device) -> [(label, params, data, hp), ...]`` (hp with "l2")
optional            ``prepare(data) -> Data`` (re-encode the target), ``closed_form(data, *,
                    intercept, l2, [method]) -> (params, extra)``, ``covariance(params, data,
                    extra)`` and ``residual(params, data)`` (least-squares inference),
                    ``logits(params, data)`` (separation check), ``evaluate(params, data,
                    **hp) -> dict`` and ``evaluate_truth`` (held-out scores), ``estimate(params)
                    -> dict`` (the estimate in its natural form)
=================  ==========================================================================

A derivation module provides ``gradient(params, data, *, l2, **hp) -> dict`` (same keys and
shapes as the parameters; denominator layout) and optionally ``hessian(params, data, *, l2,
**hp) -> Tensor`` (over the parameters flattened in dict order, each row-major),
``derivations() -> [Derivation]`` and ``flat_directions(params, data, *, l2, **hp) ->
Tensor`` (orthonormal rows spanning the directions along which the loss is exactly
constant, all of them; (0, P) when there are none).  For a loss that is a sum over
samples through z = X w + b, it instead provides ``LINEAR = LinearLoss(per_sample)``
(handgrad.fitting.sums) and no gradient or Hessian of its own (``gradient =
LINEAR.gradient`` is allowed, for its steps): the loss value, gradient and Hessian are
built from the per-sample pieces (l_i, dl/dz_i, d2l/dz_i2) by the one shared chain rule,
which is also what every fit path sums, and the L2 term is added there, once.

Every piece a fit reads is a field of :class:`DerivationSpec` marked FIT, and ``check``
compares each one present with the model's loss (the independent reference) at every
check problem; ``check`` fails on a FIT piece it has no comparison for.

A derivation module may also provide ``NOTATION = InNotation("<model>.hg", values)``
(handgrad.verify.in_notation): the derivation written in the notation, in a file beside
it.  ``derive`` verifies every line of that file and links its read-offs to the module's
gradient and Hessian (what ``fit`` runs); its variables must be the model's PARAMS.  A
model with two parametrisations gives a tuple, one file each (the Gaussian: Sigma and L).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import ModuleType

from handgrad.errors import UserError


class Target(enum.Enum):
    """What a model's target column holds."""

    NONE = "none"  # no target (the Gaussian MLE models the features themselves)
    CONTINUOUS = "continuous"
    BINARY = "binary"  # two classes, re-encoded to {0, 1}
    LABELS = "labels"  # K classes, integers or one-hot
    COUNTS = "counts"  # non-negative integers

    @property
    def needs_y(self) -> bool:
        return self is not Target.NONE

    @property
    def classes(self) -> bool:
        return self in (Target.BINARY, Target.LABELS)


class Role(enum.Enum):
    """What a parameter is, for the shared code (tables, L2, standardizing, separation)."""

    WEIGHTS = "weights"  # coefficients on the features: L2 acts here; one table row each
    INTERCEPT = "intercept"  # not penalised; the "intercept" row
    LOCATION = "location"  # a mean (the Gaussian's mu); not penalised
    COVARIANCE = "covariance"  # a covariance or its Cholesky factor
    LAYER = "layer"  # a network's weights (penalised)
    LAYER_BIAS = "layer bias"  # a network's biases (not penalised)
    CLASS_WEIGHTS = "class weights"  # K x d weights of a multi-class model (penalised)
    CLASS_BIAS = "class bias"

    @property
    def penalised(self) -> bool:
        return self in (Role.WEIGHTS, Role.LAYER, Role.CLASS_WEIGHTS)


@dataclass(frozen=True)
class Likelihood:
    """log L(theta; data) = -loss(theta; data, l2 = 0) + sum_i offset(y_i).

    So the loss is the negative log-likelihood up to a constant: its Hessian at the optimum
    is the observed information and the covariance of the estimate is H^-1.
    ``offset(y) -> Tensor`` gives, per sample, the part of log L that does not depend on
    theta (Poisson: -log y_i!), summed over row chunks; ``null(sum_y, n, intercept) ->
    (log L - sum_i offset(y_i), name)`` is the log-likelihood of the model without features
    (the shared code adds sum_i offset(y_i) to it, as to the fitted model) (for pseudo R^2
    and the LR test), or None.  Both see only the target, so they run on streamed rows."""

    offset: Callable | None = None
    null: Callable | None = None


_REQUIRED_MODEL = ("init_params", "loss", "synthetic", "check_problems")
_OPTIONAL_MODEL = ("prepare", "closed_form", "closed_form_moments", "covariance", "residual",
                   "logits", "evaluate", "evaluate_truth", "estimate")


@dataclass(frozen=True)
class Model:
    """A model as the shared code sees it (built from its module by :func:`load_model`)."""

    name: str
    title: str
    summary: str
    target: Target
    params: Mapping[str, Role]
    solvers: tuple[str, ...]
    default_solver: str
    closed_solvers: tuple[str, ...]
    hyper: tuple[str, ...]
    likelihood: Likelihood | None
    check_note: str
    module: ModuleType = field(repr=False)
    init_params: Callable = field(repr=False, default=None)
    loss: Callable = field(repr=False, default=None)
    synthetic: Callable = field(repr=False, default=None)
    check_problems: Callable = field(repr=False, default=None)
    prepare: Callable | None = field(repr=False, default=None)
    closed_form: Callable | None = field(repr=False, default=None)
    # a closed form that reads the rows only through their mean and covariance (the
    # Gaussian MLE): it streams over row chunks and processes
    closed_form_moments: Callable | None = field(repr=False, default=None)
    covariance: Callable | None = field(repr=False, default=None)
    residual: Callable | None = field(repr=False, default=None)
    logits: Callable | None = field(repr=False, default=None)
    evaluate: Callable | None = field(repr=False, default=None)
    evaluate_truth: Callable | None = field(repr=False, default=None)
    estimate: Callable | None = field(repr=False, default=None)

    def role(self, name: str) -> Role:
        return self.params[name]

    def named(self, role: Role) -> str | None:
        """The parameter with this role (the first), or None."""
        return next((k for k, r in self.params.items() if r is role), None)

    @property
    def coefficient_vector(self) -> bool:
        """Whether the parameters are one weight vector on the features plus an optional
        intercept: then the fit has a coefficient table, one row per feature."""
        return set(self.params.values()) <= {Role.WEIGHTS, Role.INTERCEPT} and \
            self.named(Role.WEIGHTS) is not None


# What each field of a DerivationSpec is, in its metadata under PIECE:
#   FIT     a piece a fit reads (its loss value, gradient, Hessian, flat directions, row-chunk
#           sums): `check` compares every one present with the model's loss at every check
#           problem (handgrad/verify/checker.py, PIECE_CHECKS); a FIT piece check has no
#           comparison for fails the check, naming it;
#   DERIVE  the derivation's text: `derive` verifies it line by line and links it to the
#           FIT pieces;
#   None    bookkeeping, never evaluated (the module, who wrote it).
# A field without this metadata is refused when this module is imported, so a piece cannot
# be added here, and read by a fit, without being declared and so checked.
PIECE = "piece"
FIT, DERIVE = "fit", "derive"


@dataclass(frozen=True)
class DerivationSpec:
    """A derivation as the shared code sees it (built by :func:`load_derivation`)."""

    module: ModuleType = field(repr=False, metadata={PIECE: None})
    gradient: Callable = field(repr=False, metadata={PIECE: FIT})
    hessian: Callable | None = field(repr=False, default=None, metadata={PIECE: FIT})
    derivations: Callable | None = field(repr=False, default=None, metadata={PIECE: DERIVE})
    # orthonormal rows spanning the directions along which the loss is exactly constant
    # (Newton lifts them: handgrad/fitting/solvers.py)
    flat_directions: Callable | None = field(repr=False, default=None, metadata={PIECE: FIT})
    # LinearLoss, or None: the row-chunk sums (loss, gradient, Hessian) every fit of a
    # linear-predictor model runs, in memory, streamed or across processes
    linear: object | None = field(repr=False, default=None, metadata={PIECE: FIT})
    notation: tuple | None = field(repr=False, default=None,  # InNotation files, or None
                                   metadata={PIECE: DERIVE})
    # who wrote the derivatives fit runs: "hand" (derivations/) or "handgrad-derived" (the
    # deriver, verified: fit --loss); said on fit's first line and in --json "derivatives"
    origin: str = field(default="hand", metadata={PIECE: None})
    # the loss value a fit reads when it is not the model's own loss (the reference): for
    # LINEAR, the summed per-sample values plus the L2 term (Newton's line search, the
    # printed loss, the log-likelihood); None where fits read the model's loss itself
    value: Callable | None = field(repr=False, default=None, metadata={PIECE: FIT})

    def pieces(self, kind: str) -> dict[str, object]:
        """The pieces of this kind (FIT or DERIVE) the derivation provides, by field name,
        in field order."""
        _every_field_declared(type(self))
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.metadata[PIECE] == kind and getattr(self, f.name) is not None}


def _every_field_declared(cls) -> None:
    bad = [f.name for f in fields(cls) if PIECE not in f.metadata]
    if bad:
        raise TypeError(f"{cls.__name__}.{bad[0]} does not say whether it is a piece a fit "
                        "reads (metadata PIECE: FIT, DERIVE or None)")


_every_field_declared(DerivationSpec)


def _where(mod: ModuleType) -> str:
    path = getattr(mod, "__file__", None) or mod.__name__
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def _fail(mod: ModuleType, msg: str) -> UserError:
    return UserError(f"{_where(mod)}: {msg} (see handgrad/contract.py)")


def load_model(mod: ModuleType) -> Model:
    ns = vars(mod)
    for key in ("NAME", "TITLE", "TARGET", "PARAMS", "SOLVERS", "DEFAULT_SOLVER", *_REQUIRED_MODEL):
        if key not in ns:
            raise _fail(mod, f"the model does not define {key}")
    for key in _REQUIRED_MODEL + tuple(k for k in _OPTIONAL_MODEL if k in ns):
        if not callable(ns[key]):
            raise _fail(mod, f"{key} must be a function")
    if not isinstance(ns["TARGET"], Target):
        raise _fail(mod, f"TARGET must be a handgrad.contract.Target, not {ns['TARGET']!r}")
    params = ns["PARAMS"]
    if not params or not all(isinstance(r, Role) for r in params.values()):
        raise _fail(mod, "PARAMS must map each parameter name to a handgrad.contract.Role")
    solvers = tuple(ns["SOLVERS"])
    if ns["DEFAULT_SOLVER"] not in solvers:
        raise _fail(mod, f"DEFAULT_SOLVER {ns['DEFAULT_SOLVER']!r} is not in SOLVERS {solvers}")
    closed = tuple(ns.get("CLOSED_SOLVERS", ("closed",) if "closed" in solvers else ()))
    if closed and "closed_form" not in ns:
        raise _fail(mod, f"solvers {closed} need a closed_form function")
    lik = ns.get("LIKELIHOOD")
    if lik is not None and not isinstance(lik, Likelihood):
        raise _fail(mod, "LIKELIHOOD must be a handgrad.contract.Likelihood")
    doc = (mod.__doc__ or ns["TITLE"]).strip().splitlines()[0]
    return Model(name=ns["NAME"], title=ns["TITLE"], summary=doc, target=ns["TARGET"],
                 params=dict(params), solvers=solvers, default_solver=ns["DEFAULT_SOLVER"],
                 closed_solvers=closed, hyper=tuple(ns.get("HYPER", ())), likelihood=lik,
                 check_note=ns.get("CHECK_NOTE", ""), module=mod,
                 **{k: ns.get(k) for k in _REQUIRED_MODEL + _OPTIONAL_MODEL})


# a parameter a problem may lack and the model still reads: an intercept or a bias at 0, a
# mean at xbar
_HELD_WHEN_ABSENT = (Role.INTERCEPT, Role.CLASS_BIAS, Role.LAYER_BIAS, Role.LOCATION)


def load_derivation(mod: ModuleType, model: Model) -> DerivationSpec:
    import dataclasses

    spec = _load_derivation(mod, model)
    notation = vars(mod).get("NOTATION")
    if notation is None:
        return spec
    from handgrad.pieces import InNotation, path_of

    files = notation if isinstance(notation, tuple) else (notation,)
    for one in files:
        if not isinstance(one, InNotation):
            raise _fail(mod, "NOTATION must be a handgrad.verify.in_notation.InNotation "
                        "(or a tuple of them)")
        if not os.path.isfile(path_of(mod, one)):
            raise _fail(mod, f"NOTATION names {one.file}, which is not beside the module")
        extra = [v for v in one.absent if model.params.get(v) not in _HELD_WHEN_ABSENT]
        if extra:
            raise _fail(mod, f"NOTATION lets {extra[0]!r} be absent from a problem, which is only "
                        "right for an intercept, a bias or a mean (the model holds those at 0 "
                        "or the sample mean)")
    notation = files
    return dataclasses.replace(spec, notation=notation)


def _load_derivation(mod: ModuleType, model: Model) -> DerivationSpec:
    ns = vars(mod)
    linear = ns.get("LINEAR")
    if linear is not None:
        from handgrad.pieces import PerSamplePieces as LinearLoss

        if not isinstance(linear, LinearLoss):
            raise _fail(mod, "LINEAR must be a handgrad.fitting.sums.LinearLoss")
        if ns.get("gradient", linear.gradient) != linear.gradient or \
                ns.get("hessian", linear.hessian) != linear.hessian:
            raise _fail(mod, "a derivation with LINEAR (per-sample pieces) must not define its "
                        "own gradient or hessian: both are built from the per-sample pieces, "
                        "so the derivative that fits is the one that is checked")
        if not model.coefficient_vector or linear.weights != model.named(Role.WEIGHTS) or \
                linear.intercept not in (model.named(Role.INTERCEPT), None):
            raise _fail(mod, f"LINEAR acts on weights {linear.weights!r} and intercept "
                        f"{linear.intercept!r}; the model's PARAMS must be those, with the "
                        "roles WEIGHTS and INTERCEPT")
        return DerivationSpec(mod, linear.gradient, linear.hessian, ns.get("derivations"),
                              None, linear, value=linear.value)
    if "gradient" not in ns or not callable(ns["gradient"]):
        raise _fail(mod, "the derivation defines neither gradient() nor LINEAR")
    for key in ("hessian", "derivations", "flat_directions"):
        if key in ns and not callable(ns[key]):
            raise _fail(mod, f"{key} must be a function")
    return DerivationSpec(mod, ns["gradient"], ns.get("hessian"), ns.get("derivations"),
                          ns.get("flat_directions"), None)
