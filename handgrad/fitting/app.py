"""What the commands do, as plain functions returning JSON-ready dicts (cli.py prints them)."""

from __future__ import annotations

import time
import warnings

import torch

from handgrad import registry
from handgrad.device import resolve_device, resolve_dtype, set_tf32
from handgrad.errors import HandgradWarning, UserError
from handgrad.fitting import inference, solvers, validate
from handgrad.fitting.data import Data, load
from handgrad.params import flatten
from handgrad.present import term
from handgrad.verify import checker


def _tolist(t: torch.Tensor):
    t = t.detach().cpu()
    return t.item() if t.dim() == 0 else t.tolist()


def get_data(entry, *, data_path=None, target=None, features=None, seed=0, n_samples=None,
             n_features=None, **synth):
    """User data (CSV / npz / npy) or the model's seeded synthetic set with its true answer."""
    if data_path:
        data = load(data_path, target, features, needs_target=entry.model.TARGET is not None)
        truth = None
    else:
        kw = {k: v for k, v in (("n", n_samples), ("d", n_features)) if v is not None}
        data, truth = entry.model.synthetic(seed=seed, **kw, **synth)
    if hasattr(entry.model, "prepare"):
        data = entry.model.prepare(data)
    return data, truth


def fit(model: str, *, solver: str | None = None, autograd: bool = False, data_path=None,
        target=None, features=None, intercept: bool = True, l2: float = 0.0, device="auto",
        dtype="float64", seed: int = 0, n_samples=None, n_features=None, max_iter=None,
        tol=None, tf32: bool = False, progress: bool = False, hyper: dict | None = None,
        callback=None, standardize: bool = False, test_fraction: float | None = None,
        chunk_rows: int | None = None, distributed_run: bool = False,
        hessian_dtype: str | None = None, solver_fn=None) -> dict:
    """``progress`` draws a bar on stderr (handgrad.present.term); ``callback(k, entry)``, if
    given, is also called after each iteration with that iteration's history entry.
    ``solver_fn``, if given, runs instead of the named solver on the same objective (the
    comparison's autograd L-BFGS reference, handgrad.fitting.compare)."""
    if chunk_rows or distributed_run or hessian_dtype:  # row chunks, processes, fp32 Hessian
        from handgrad.fitting import scale

        return scale.fit(model, solver=solver, data_path=data_path, target=target,
                         features=features, intercept=intercept, l2=l2, device=device,
                         dtype=dtype, seed=seed, n_samples=n_samples, n_features=n_features,
                         max_iter=max_iter, tol=tol, tf32=tf32, chunk_rows=chunk_rows,
                         distributed_run=distributed_run, hessian_dtype=hessian_dtype,
                         callback=callback)
    entry = registry.get(model)
    solver = validate.fit_choice(entry, solver, l2)
    validate.check_tol(tol)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    set_tf32(tf32)
    hp = {"l2": l2, **(hyper or {})}
    solver_kw = _solver_options(entry, solver, hp, seed)  # epochs, batch size, lr: popped from hp
    data, truth = get_data(entry, data_path=data_path, target=target, features=features,
                           seed=seed, n_samples=n_samples, n_features=n_features)
    data = data.to(dev, dt)
    data, test = _split(entry, data, test_fraction, seed)  # a seeded held-out set, or None
    transform = None
    if standardize:  # fit on standardized columns; inference maps back to the original scale
        data, transform = inference.standardize(data, intercept, maps_back=inference.has_table(entry))
    validate.check_dtype_range(data, dt)
    scale = validate.scale_problem(data)
    params0 = entry.model.init_params(data, intercept=intercept, seed=seed, **hp)
    validate.preflight(entry, data, params0, hp)  # overflow: a UserError, not a warning
    early_warnings = []
    if scale:
        early_warnings.append(f"ill-scaled features: {scale}; {validate.rescale_remedy()}")
        warnings.warn(early_warnings[-1], HandgradWarning, stacklevel=2)
    extra: dict = {}
    t0 = time.perf_counter()
    if solver in getattr(entry.model, "CLOSED_SOLVERS", ("closed",)):
        method = {} if solver == "closed" else {"method": solver}  # least squares: qr|normal|svd
        params, extra = entry.model.closed_form(data, intercept=intercept, **method, **hp)
        g = flatten(entry.gradient(params, data, **hp))
        f = entry.loss(params, data, **hp)
        res = solvers.FitResult(params, 0, bool(torch.isfinite(g).all()), solver=solver,
                                warnings=list(extra.get("warnings", [])),
                                history=[{"iteration": 0, "loss": f.item(),
                                          "grad_norm": g.norm().item(), "step": 1.0}])
    else:
        obj = solvers.Objective(entry, data, params0, hp, use_autograd=autograd)
        bar = _progress(solver, solvers.default_tol(dt) if tol is None else tol) \
            if progress else None
        kw = {"tol": tol, "callback": _both(bar, callback), **solver_kw}
        if max_iter is not None:
            kw["max_iter"] = max_iter
        try:
            res = (solver_fn or solvers.SOLVERS[solver])(obj, flatten(params0), **kw)
        finally:
            if bar is not None:
                bar.close()
    seconds = time.perf_counter() - t0
    separated = validate.separation(entry, res.params, data, hp)
    if separated:
        res.converged, res.message = False, separated
    elif not res.converged and scale:
        res.message += f" (ill-scaled features: {validate.rescale_remedy()})"
    out = {
        "model": model, "solver": solver, "derivatives": "autograd" if autograd else "hand",
        "device": str(dev), "dtype": dtype, "converged": res.converged,
        "iterations": res.iterations, "loss": res.loss, "grad_norm": res.grad_norm,
        "seconds": seconds, "message": res.message, "history": res.history,
        "data": {"source": data.source, "n": data.n, "d": data.d, "target": data.target,
                 "notes": data.notes},
        "hyper": hp,
        "params": {k: _tolist(v) for k, v in res.params.items()},
        "warnings": early_warnings + list(res.warnings),
    }
    if getattr(res, "interrupted", False):
        out["interrupted"] = True
    if separated:
        out["separation"] = True
    if "w" in res.params and res.params["w"].dim() == 1:
        out["coefficients"] = _named(res.params, data.feature_names)
        summ = None if separated else inference.summary(
            entry, res.params, data, hp, extra, out["warnings"], transform=transform,
            iterations=res.iterations)
        if summ is not None and not res.converged:
            _withhold_inference(summ, out["warnings"], res.message)
        if summ is not None:  # the statistics-package table (handgrad/inference.py)
            out["summary"] = summ
            out["coefficients"] = {r["term"]: r["coef"] for r in summ["terms"]}
            if all(r["std_err"] is not None for r in summ["terms"]):
                out["std_errors"] = {r["term"]: r["std_err"] for r in summ["terms"]}
    if truth is not None:
        out["true_params"] = {k: _tolist(v) for k, v in truth.items()}
    _evaluation(out, entry, res.params, data, test, truth, hp, transform)
    return out


def _withhold_inference(summ: dict, warns: list[str], why: str) -> None:
    """Standard errors, tests and intervals only mean something at the optimum."""
    for row in summ["terms"]:
        row.update(std_err=None, stat=None, p_value=None, ci_low=None, ci_high=None)
    msg = f"standard errors withheld: the fit did not reach the optimum ({why})"
    warns.append(msg)
    warnings.warn(msg, HandgradWarning, stacklevel=2)


def _named(params, names) -> dict:
    out = {name: float(v) for name, v in zip(names, params["w"].detach().cpu().tolist())}
    if "b" in params:
        out["intercept"] = float(params["b"])
    return out


def _progress(solver, tol):
    return term.fit_progress(solver, tol, active=True)


def _both(*callbacks):
    cbs = [c for c in callbacks if c is not None]
    if len(cbs) <= 1:
        return cbs[0] if cbs else None

    def cb(k, entry):
        for c in cbs:
            c(k, entry)
    return cb


def check(models: list[str], *, device="auto", dtype="float64", seeds=(0, 1, 2)) -> dict:
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    set_tf32(False)
    out = {"device": str(dev), "dtype": dtype, "seeds": list(seeds), "models": {}, "ok": True}
    for name in models:
        entry = registry.get(name)
        reps = checker.check_entry(entry, seeds=seeds, dtype=dt, device=dev)
        ok = all(r.ok for r in reps)
        out["models"][name] = {"ok": ok, "hessian": entry.has_hessian,
                               "problems": [checker.report_dict(r) for r in reps]}
        out["ok"] = out["ok"] and ok
    return out


def list_models() -> dict:
    return {"models": [
        {"name": e.name, "title": e.title, "hessian": e.has_hessian, "solvers": list(e.solvers),
         "target": e.model.TARGET, "summary": (e.model.__doc__ or "").strip().splitlines()[0]}
        for e in registry.REGISTRY.values()]}


# ---- held-out evaluation and minibatch options (softmax, two_layer, gaussian) ---------

SOLVER_OPTIONS = ("epochs", "batch_size", "lr", "momentum")  # the minibatch solvers' knobs


def _solver_options(entry, solver: str, hp: dict, seed: int) -> dict:
    """Pop the minibatch solvers' options out of ``hp`` (the rest goes to the model), and
    reject options the model or solver does not take."""
    kw = {k: hp.pop(k) for k in SOLVER_OPTIONS if k in hp and hp[k] is not None}
    for k in [k for k in SOLVER_OPTIONS if k in hp]:
        hp.pop(k)
    if kw and solver not in ("sgd", "adam"):
        flags = ", ".join("--" + k.replace("_", "-") for k in kw)
        raise UserError(f"{flags} apply to the minibatch solvers (sgd, adam), not {solver}.")
    if solver in ("sgd", "adam"):
        kw["seed"] = seed
    known = set(getattr(entry.model, "HYPER", ())) | {"l2"}
    extra = sorted(k for k, v in hp.items() if k not in known and v is not None)
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise UserError(f"{flags} do(es) not apply to {entry.name}"
                        + (f" (its options: {', '.join(sorted(known))})." if known else "."))
    for k in [k for k, v in hp.items() if v is None]:
        hp.pop(k)
    return kw


def _split(entry, data: Data, test_fraction, seed: int):
    """(train, test): ``test_fraction`` of the rows held out, seeded and, for class labels,
    stratified.  Default: 0.2 for classifiers (models with an ``evaluate``), else none."""
    from handgrad.fitting.data import train_test_split

    can = hasattr(entry.model, "evaluate")
    if test_fraction is None:
        test_fraction = 0.2 if can and entry.model.TARGET == "labels" else 0.0
    if not test_fraction:
        return data, None
    if not can:
        raise UserError(f"--test-fraction: {entry.name} has no held-out evaluation.")
    train, test = train_test_split(data, test_fraction, seed,
                                   stratify=entry.model.TARGET == "labels")
    train.notes = list(data.notes) + [f"held out {test.n} of {data.n} rows for testing "
                                      f"(--test-fraction {test_fraction:g}, seed {seed})"]
    return train, test


def _evaluation(out: dict, entry, params, train: Data, test, truth, hp: dict,
                transform=None) -> None:
    """Scores on the training rows and held-out rows (accuracy / mean log-likelihood per
    sample), the true parameters' scores on the same held-out rows, and the estimate in
    the model's natural form (the Gaussian's Sigma when L was fitted).  With --standardize
    the held-out rows get the training rows' transform."""
    from dataclasses import replace

    model = entry.model
    if test is not None and transform is not None:
        test = replace(test, X=(test.X - transform["mean"]) / transform["scale"])
    if hasattr(model, "estimate"):
        out["estimate"] = {k: _tolist(v) for k, v in model.estimate(params).items()}
    if not hasattr(model, "evaluate"):
        return
    with torch.no_grad():
        out["train"] = model.evaluate(params, train, **hp)
        if test is not None:
            out["held_out"] = model.evaluate(params, test, **hp)
            if truth is not None:
                ev = getattr(model, "evaluate_truth", model.evaluate)
                truth = {k: v.to(test.X.device, test.X.dtype) for k, v in truth.items()}
                out["held_out_true_params"] = ev(truth, test, **hp)
