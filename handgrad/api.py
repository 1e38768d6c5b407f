"""The Python API: the same fits and checks as the command line, on arrays.

    import handgrad
    res = handgrad.fit("logistic", X, y, solver="newton", feature_names=["age", "income"])
    res.coefficients, res.std_errors     # dicts by term name
    print(res.summary())                 # the table `cli.py fit` prints
    res.to_dict()                        # equal to `cli.py fit ... --json`

    ok = handgrad.check_gradient(f, grad, X, A)   # your own function: hand vs autograd vs FD
    print(ok.report); bool(ok)

Inputs are validated as a data file is (NaN/inf named by row and column, shapes, labels),
with the same one-line messages (handgrad.errors.UserError).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from handgrad.errors import UserError


@dataclass
class FitResult:
    """A fit's result: the CLI's --json object, with accessors."""

    raw: dict = field(repr=False)

    @property
    def converged(self) -> bool:
        return self.raw["converged"]

    @property
    def params(self) -> dict:
        return self.raw["params"]

    @property
    def coefficients(self) -> dict | None:
        return self.raw.get("coefficients")

    @property
    def std_errors(self) -> dict | None:
        return self.raw.get("std_errors")

    def summary(self) -> str:
        from handgrad.present import render

        return render.fit_text(self.raw)

    def to_dict(self) -> dict:
        """Exactly what `cli.py fit ... --json` prints, as a dict (strict JSON values)."""
        from handgrad.present import io

        return json.loads(io.dumps(self.raw))

    def __repr__(self) -> str:
        r = self.raw
        return (f"FitResult({r['model']}, solver={r['solver']}, converged={r['converged']}, "
                f"iterations={r['iterations']}, loss={r['loss']:.10g})")


def fit(model: str, X=None, y=None, *, feature_names: list[str] | None = None,
        target: str = "y", source: str = "arrays", **options) -> FitResult:
    """Fit a registered model (``handgrad.models()`` lists them) to arrays X (n x d) and y.

    X and y may be numpy arrays, lists or torch tensors; without X the model's seeded
    synthetic data is used (``n_samples``, ``n_features``, ``seed``).  ``options`` are the
    `fit` command's: solver ("newton", "gd", "closed", ...), l2, intercept, standardize,
    device, dtype, max_iter, tol, chunk_rows, hessian_dtype, test_fraction, hyper={...}.
    """
    from handgrad.fitting import pipeline, validate

    if "data_path" in options or "data" in options:
        raise UserError("handgrad.fit takes arrays X, y; for a file use the command line "
                        "(handgrad fit MODEL --data FILE).")
    data = None
    if X is not None:
        data = validate.from_arrays(X, y, feature_names, target, source=source)
    elif y is not None:
        raise UserError("y given without X.")
    return FitResult(pipeline.fit(model, data=data, **options))


@dataclass
class GradientCheck:
    """``check_gradient``'s verdict: ``ok`` (also the truth value), the report text, and the
    worst entry of the first failing comparison (None when all pass)."""

    ok: bool
    report: str
    worst: dict | None
    comparisons: list = field(repr=False, default_factory=list)

    def __bool__(self) -> bool:
        return self.ok


def check_gradient(f, grad, *inputs, names: list[str] | None = None) -> GradientCheck:
    """gradcheck for a hand-derived gradient: ``f(*inputs)`` a scalar, ``grad(*inputs)`` one
    tensor per input (a tuple when there are several), each of its input's shape
    (denominator layout).  Compared in float64 with torch.autograd and with central finite
    differences; the worst entry is named (input, index, both values)."""
    import torch

    from handgrad.verify import checker

    if not inputs:
        raise UserError("check_gradient(f, grad, *inputs) needs at least one input.")
    names = list(names or [f"input{i}" if len(inputs) > 1 else "x" for i in range(len(inputs))])
    if len(names) != len(inputs):
        raise UserError(f"{len(names)} names for {len(inputs)} inputs.")
    tensors = {}
    for nm, v in zip(names, inputs):
        t = torch.as_tensor(v, dtype=torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise UserError(f"check_gradient: input {nm!r} contains NaN or inf.")
        tensors[nm] = t
    rep = checker.check_function(f, grad, tensors)
    out = {"device": "cpu", "dtype": "float64", "seeds": [0], "ok": rep.ok,
           "models": {"your function": {"ok": rep.ok, "problems": [checker.report_dict(rep)]}}}
    from handgrad.present import render

    worst = next((c.worst for c in rep.comparisons if not c.ok), None)
    return GradientCheck(rep.ok, render.check_text(out), worst, rep.comparisons)


def models() -> list[str]:
    from handgrad import registry

    return list(registry.NAMES)
