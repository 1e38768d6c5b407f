"""The same fit three ways, for `fit --compare` and the reports.

Newton (where the model has a hand-derived Hessian) and gradient descent run on the
hand-derived derivatives through :func:`handgrad.fitting.pipeline.fit`; for reference,
``torch.optim.LBFGS`` with a strong-Wolfe line search runs on autograd gradients of
the model's loss, from the same start on the same data.  Every run reports its history
in the solvers' form (iteration, loss, grad_norm, step), so the curves are comparable.
"""

from __future__ import annotations

import math
import time
import warnings

import torch

from handgrad import registry
from handgrad.device import resolve_dtype
from handgrad.errors import HandgradWarning, UserError
from handgrad.fitting import pipeline, solvers
from handgrad.fitting.solvers import FitResult, Objective, default_tol
from handgrad.params import unflatten

LABELS = {
    "newton": "Newton (hand gradient + Hessian)",
    "gd": "gradient descent (hand gradient)",
    "adam": "Adam (hand gradient)",
    "sgd": "SGD (hand gradient)",
    "lbfgs": "L-BFGS (torch.optim, autograd)",
}


def lbfgs(obj: Objective, x0: torch.Tensor, *, tol: float | None = None, max_iter: int = 500,
          callback=None, history_size: int = 10) -> FitResult:
    """torch.optim.LBFGS, one iteration per step() so each iterate is recorded.

    Same signature and result as the solvers in handgrad.fitting.solvers; converged when
    ||g|| <= tol.  Gradients come from autograd (``obj.grad`` with use_autograd)."""
    tol = default_tol(x0.dtype) if tol is None else tol
    res = FitResult({}, 0, False, solver="lbfgs")
    x = x0.detach().clone().requires_grad_(True)
    # built before the clock starts: the first optimizer built in a process pays a
    # one-off import cost (about a second) that says nothing about L-BFGS
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, max_eval=25, tolerance_grad=0.0,
                            tolerance_change=0.0, history_size=history_size,
                            line_search_fn="strong_wolfe")
    t0 = time.perf_counter()

    def closure():
        opt.zero_grad()
        f = obj.entry.loss(unflatten(x, obj.like), obj.data, **obj.hp)
        f.backward()
        return f

    for k in range(max_iter + 1):
        xd = x.detach()
        f, g = obj.value(xd), obj.grad(xd)
        gnorm = g.norm().item()
        if not (math.isfinite(f.item()) and math.isfinite(gnorm)):
            res.message = f"non-finite loss or gradient at iteration {k}"
            break
        entry = {"iteration": k, "loss": f.item(), "grad_norm": gnorm, "step": 0.0}
        res.history.append(entry)
        if gnorm <= tol:
            res.converged = True
            break
        if k == max_iter:
            break
        before = xd.clone()
        opt.step(closure)
        if torch.equal(x.detach(), before):
            res.message = "L-BFGS made no progress: at the precision limit"
            break
        entry["step"] = float(opt.state[x].get("t", 1.0))
        res.iterations = k + 1
        if callback is not None:
            callback(k, entry)
    res.params = unflatten(x.detach(), obj.like)
    res.seconds = time.perf_counter() - t0
    if not res.converged and not res.message:
        res.message = f"did not converge after {max_iter} iterations"
    return res


CLOSED = ("closed", "qr", "normal", "svd")


def iterative_solvers(entry) -> list[str]:
    """The hand-derivative solvers a comparison runs for this model: Newton (where a
    Hessian is derived), the model's default solver if it iterates, gradient descent."""
    out = []
    if "newton" in entry.solvers and entry.has_hessian:
        out.append("newton")
    default = entry.model.default_solver
    if default not in out and default in solvers.SOLVERS and default in entry.solvers:
        out.append(default)
    if "gd" in entry.solvers and "gd" not in out:
        out.append("gd")
    return out


def _quiet_fit(model, **kw) -> dict:
    """A comparison run: its warnings stay in its own result (the table shows its outcome)
    instead of reaching the terminal as if they were about the user's fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HandgradWarning)
        return pipeline.fit(model, **kw)


def _summary(solver: str, derivatives: str, res: dict) -> dict:
    return {"solver": solver, "label": LABELS.get(solver, solver), "derivatives": derivatives,
            "converged": res["converged"], "iterations": res["iterations"],
            "loss": res["loss"], "grad_norm": res["grad_norm"], "seconds": res["seconds"],
            "message": res["message"], "history": res["history"]}


def run(model: str, *, done: dict | None = None, progress=None, status=None,
        **fit_kw) -> dict:
    """Fit ``model`` with each iterative solver and the autograd L-BFGS reference.

    ``fit_kw`` are :func:`handgrad.fitting.pipeline.fit`'s data and stopping options (seed, data_path,
    l2, device, dtype, max_iter, tol, ...), the same for every run, so every run sees the
    same data, split and start.  ``done`` is an ``pipeline.fit`` result already at hand (its
    solver is not rerun); ``status(name)`` is told which run is starting; ``progress`` is
    :func:`handgrad.fitting.pipeline.fit`'s progress factory, used for every run."""
    entry = registry.get(model)
    fit_kw = {k: v for k, v in fit_kw.items() if k not in ("solver", "autograd", "solver_fn")}
    for key, flag in (("chunk_rows", "--chunk-rows"), ("distributed_run", "--distributed"),
                      ("hessian_dtype", "--hessian-dtype")):
        if fit_kw.get(key):
            raise UserError(f"--compare runs every solver in memory; drop {flag}.")
    if not iterative_solvers(entry):
        raise UserError(f"--compare needs an iterative solver; {model} has only "
                        f"{', '.join(entry.solvers)}.")
    runs = []
    if done is not None and done.get("solver") in CLOSED:  # the exact answer, as a reference
        runs.append({**_summary(done["solver"], done["derivatives"], done),
                     "label": f"closed form ({done['solver']})"})
    for s in iterative_solvers(entry):
        if status:
            status(s)
        reuse = done is not None and done.get("solver") == s and done.get("derivatives") == "hand"
        res = done if reuse else _quiet_fit(model, solver=s, progress=progress, **fit_kw)
        runs.append(_summary(s, "hand", res))
    if status:
        status("lbfgs")
    # the reference runs through pipeline.fit too (same data, split, scaling and start), with
    # autograd derivatives and L-BFGS in place of the named solver
    host = "gd" if "gd" in entry.solvers else (iterative_solvers(entry) or [None])[0]
    if host is not None:
        ref = _quiet_fit(model, solver=host, autograd=True, progress=None, solver_fn=_lbfgs_fn(
            progress, fit_kw.get("tol")), **fit_kw)
        runs.append(_summary("lbfgs", "autograd", ref))
    best = min((r["loss"] for r in runs if math.isfinite(r["loss"])), default=float("nan"))
    dtype = fit_kw.get("dtype", "float64")
    tol = fit_kw.get("tol")
    tol_used = tol if tol is not None else default_tol(resolve_dtype(dtype))
    return {"model": model, "runs": runs, "best_loss": best, "tol": tol_used, "dtype": dtype}


def _lbfgs_fn(progress, tol):
    """L-BFGS with the host solver's call signature (its extra options are ignored)."""
    def fn(obj, x0, *, tol=tol, max_iter=None, callback=None, **_):
        kw = {"tol": tol}
        if max_iter is not None:
            kw["max_iter"] = max_iter
        bar = progress("lbfgs", default_tol(x0.dtype) if tol is None else tol) \
            if progress else None
        cbs = [c for c in (bar, callback) if c is not None]

        def cb(k, entry):
            for c in cbs:
                c(k, entry)
        try:
            return lbfgs(obj, x0, callback=cb if cbs else None, **kw)
        finally:
            if bar is not None:
                bar.close()
    return fn


def verdict(run: dict) -> str:
    """A run's outcome in a word: yes, stalled (at the loss's float resolution), no (cap), NO."""
    if run["converged"]:
        return "yes"
    if "precision limit" in run["message"]:
        return "stalled"  # at the float resolution of the loss: no further progress possible
    if run["message"].startswith("did not converge after"):
        return "no (cap)"
    return "NO"
