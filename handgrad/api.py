"""The Python API: the same fits and checks as the command line, on arrays or pandas.

    import handgrad
    res = handgrad.fit("logistic", df[["age", "income"]], df["bought"])  # names kept
    res.coefficients, res.std_errors     # dicts by term name
    res.pvalues, res.conf_int(0.05)      # two-sided p-values; 95% intervals
    res.predict(new_df)                  # mean response: here P(bought = 1)
    print(res.summary())                 # the table `cli.py fit` prints
    res.to_dict()                        # equal to `cli.py fit ... --json`

    ok = handgrad.check_gradient(f, grad, X, A)   # your own function: hand vs autograd vs FD
    print(ok.report); bool(ok)

Inputs are validated as a data file is (NaN/inf named by row and column, shapes, labels,
feature names), with the same one-line messages (handgrad.errors.UserError).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from handgrad.errors import UserError


@dataclass
class FitResult:
    """A fit's result: the CLI's --json object, with accessors (statsmodels' names:
    params, std_errors, pvalues, conf_int, predict, summary)."""

    raw: dict = field(repr=False)
    classes: list | None = field(default=None, repr=False)  # labels as given, by class index

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
        """Standard errors by term (None when withheld: see ``raw['warnings']``)."""
        return self.raw.get("std_errors")

    def _terms(self) -> list[dict]:
        s = self.raw.get("summary")
        if not s:
            raise UserError(f"{self.raw['model']} has no coefficient table (no standard errors, "
                            "p-values or intervals); see params.")
        return s["terms"]

    @property
    def pvalues(self) -> dict:
        """Two-sided p-values by term (t on the residual degrees of freedom for least
        squares, z for likelihood models); None where withheld."""
        return {r["term"]: r["p_value"] for r in self._terms()}

    def conf_int(self, alpha: float = 0.05) -> dict:
        """(low, high) intervals at level 1 - alpha by term, from the same distribution as
        the p-values; (None, None) where the standard error is withheld."""
        from scipy import stats

        if not 0 < alpha < 1:
            raise UserError(f"alpha must be in (0, 1); got {alpha}.")
        terms = self._terms()
        s = self.raw["summary"]
        df = s.get("df_resid")
        dist = stats.t(df) if s["statistic"] == "t" and df and df > 0 else stats.norm()
        q = float(dist.ppf(1 - alpha / 2))
        out = {}
        for r in terms:
            se = r["std_err"]
            ok = se is not None and r["stat"] is not None and math.isfinite(se)
            out[r["term"]] = (r["coef"] - q * se, r["coef"] + q * se) if ok else (None, None)
        return out

    def predict(self, X, *, labels: bool = False):
        """The mean response at new rows X (n x d, the features in the fitted order; a
        DataFrame is matched by column name): least squares X w + b, logistic P(y = 1),
        Poisson exp(X w + b), softmax the class probabilities (n x K); other models say
        that they have no predict yet.  ``labels=True`` (classifiers): the most probable class, in the labels
        the target was given in."""
        import torch

        from handgrad import registry
        from handgrad.fitting import validate

        entry = registry.get(self.raw["model"])
        model = entry.model
        names = list(self.raw.get("coefficients") or {})
        names = [n for n in names if n != "intercept"] or None
        if validate._is_frame(X) and names and all(n in map(str, X.columns) for n in names):
            X = X[[c for n in names for c in X.columns if str(c) == n]]
        data = validate.from_arrays(X, None, None)
        d = self.raw["data"]["d"]
        if data.d != d:
            raise UserError(f"X has {data.d} columns; the model was fitted on {d}"
                            + (f" ({', '.join(names)})." if names else "."))
        Xt = data.X
        with torch.no_grad():
            if model.coefficient_vector and self.raw.get("coefficients") is not None:
                c = self.raw["coefficients"]
                w = torch.tensor([c[n] for n in names or []], dtype=torch.float64)
                z = Xt @ w + c.get("intercept", 0.0)
                kind = model.target.value
                mean = {"continuous": z, "binary": torch.sigmoid(z),
                        "counts": torch.exp(z)}.get(kind)
                if mean is None:
                    raise UserError(f"predict is not available for {entry.name}.")
            elif model.logits is not None:
                if any("standardized" in n for n in self.raw["data"].get("notes", [])):
                    raise UserError("predict: this model was fitted on standardized columns and "
                                    "its parameters stay on that scale; fit without "
                                    "standardize=True to predict from raw columns.")
                params = {k: torch.as_tensor(v, dtype=torch.float64)
                          for k, v in self.raw["params"].items()}
                Z = model.logits(params, data)
                mean = torch.sigmoid(Z) if Z.dim() == 1 else torch.softmax(Z, dim=1)
            elif not model.target.needs_y:
                raise UserError(f"predict is not available for {entry.name} (it models the "
                                "features themselves; see params and estimate).")
            else:
                raise UserError(f"predict is not available for {entry.name} yet (its model "
                                "declares no logits or coefficient vector to predict from).")
        mean = mean.numpy()
        if not labels:
            return mean
        if not model.target.classes:
            raise UserError(f"predict(labels=True) is for classifiers; {entry.name} predicts a "
                            "mean response.")
        idx = (mean > 0.5).astype(np.int64) if mean.ndim == 1 else mean.argmax(axis=1)
        if self.classes is not None:
            return np.asarray(self.classes, dtype=object)[idx]
        return idx

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


def _classes(y, kind) -> list | None:
    """The class labels as given (sorted, as the fit encodes them), for predict(labels=True)."""
    if y is None or kind is None or not kind.classes:
        return None
    from handgrad.fitting import validate

    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    a = y.to_numpy() if validate._is_series(y) else np.asarray(y)
    if a.ndim != 1:
        return None
    if a.dtype.kind in "biuf":
        return [v.item() if hasattr(v, "item") else v for v in np.unique(a)]
    return sorted({str(v) for v in a.tolist()})


def fit(model: str, X=None, y=None, *, feature_names: list[str] | None = None,
        target: str | None = None, source: str = "arrays", **options) -> FitResult:
    """Fit a registered model (``handgrad.models()`` lists them) to X (n x d) and y.

    X and y may be numpy arrays, lists, torch tensors, or a pandas DataFrame and Series
    (their column names and name are kept; text labels in y are re-encoded for a
    classifier, and the result's notes say which is which); without X the model's seeded
    synthetic data is used (``n_samples``, ``n_features``, ``seed``).  ``options`` are the
    `fit` command's: solver ("newton", "gd", "closed", ...), l2, intercept, standardize,
    device, dtype, max_iter, tol, chunk_rows, hessian_dtype, test_fraction, hyper={...}.
    """
    from handgrad import registry
    from handgrad.fitting import pipeline, validate

    if "data_path" in options or "data" in options:
        raise UserError("handgrad.fit takes arrays X, y; for a file use the command line "
                        "(handgrad fit MODEL --data FILE).")
    data = classes = None
    if X is not None:
        kind = registry.get(model).model.target if isinstance(model, str) else None
        data = validate.from_arrays(X, y, feature_names, target, source=source, kind=kind)
        classes = _classes(y, kind)
    elif y is not None:
        raise UserError("y given without X.")
    return FitResult(pipeline.fit(model, data=data, **options), classes)


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
