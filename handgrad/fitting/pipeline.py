"""The one fit pipeline: every fit (in memory, in row chunks, streamed from a file, across
processes, with a float32 Hessian) runs through :func:`fit`, with one result and one summary.

    options -> data (in memory, or rows streamed from .npy/.npz) -> preparation and checks
    -> the solver on the model's checked derivatives (handgrad.fitting.solvers.Objective)
    -> statistics (one pass over the target) -> the summary -> one JSON-ready dict

Row chunks, processes and the float32 Hessian are options of the objective
(handgrad.fitting.sums): they change how the sums are formed, never which derivative is
summed.  The result's keys are the same on every path.
"""

from __future__ import annotations

import os
import resource
import time
import warnings
from dataclasses import replace

import torch

from handgrad import registry
from handgrad.contract import Role, Target
from handgrad.device import resolve_device, resolve_dtype, set_tf32
from handgrad.errors import HandgradWarning, UserError
from handgrad.fitting import distributed, inference, lstsq, solvers, source, sums, validate
from handgrad.fitting.data import Data, load, train_test_split
from handgrad.params import flatten, unflatten

SOLVER_OPTIONS = ("epochs", "batch_size", "lr", "momentum")  # the minibatch solvers' knobs
CHUNKED_SOLVERS = ("newton", "gd", "closed")


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (VmHWM: ru_maxrss survives execve, so a
    process started by one that had touched a large file would report the parent's peak)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _tolist(t: torch.Tensor):
    t = t.detach().cpu()
    return t.item() if t.dim() == 0 else t.tolist()


def get_data(entry, *, data_path=None, target=None, features=None, seed=0, n_samples=None,
             n_features=None, exclude=None, dropna=False, **synth):
    """User data (CSV / npz / npy) or the model's seeded synthetic set with its true answer."""
    if target is not None and not entry.model.target.needs_y:
        raise UserError(f"{entry.name} has no target: it models all the columns it is given; "
                        "drop --target (choose the columns with --features).")
    if data_path:
        data = load(data_path, target, features, needs_target=entry.model.target.needs_y,
                    exclude=exclude, dropna=dropna, kind=entry.model.target)
        truth = None
    else:
        kw = {k: v for k, v in (("n", n_samples), ("d", n_features)) if v is not None}
        data, truth = entry.model.synthetic(seed=seed, **kw, **synth)
    if entry.model.prepare is not None:
        data = entry.model.prepare(data)
    return data, truth


def _streamed(data_path, chunk_rows) -> bool:
    return bool(data_path and chunk_rows and
                os.path.splitext(data_path)[1].lower() in (".npy", ".npz"))


def fit(model, *, solver: str | None = None, autograd: bool = False, data_path=None,
        target=None, features=None, intercept: bool = True, l2: float = 0.0, device="auto",
        dtype="float64", seed: int = 0, n_samples=None, n_features=None, max_iter=None,
        tol=None, tf32: bool = False, progress=None, hyper: dict | None = None,
        callback=None, standardize: bool = False, test_fraction: float | None = None,
        chunk_rows: int | None = None, distributed_run: bool = False,
        hessian_dtype: str | None = None, solver_fn=None, data: Data | None = None,
        exclude: list[str] | None = None, dropna: bool = False, sandwich: bool = False) -> dict:
    """Fit a model (a registered name, or a registry Entry built elsewhere, such as one
    derived from an expression); returns the JSON-ready result (the CLI's ``--json``).

    ``data`` (a :class:`Data`, e.g. from validate.from_arrays) replaces ``data_path`` and
    the synthetic set.  ``chunk_rows`` sums over row chunks (a .npy/.npz file is then
    streamed from disk); ``distributed_run`` splits the rows across torchrun processes;
    ``hessian_dtype="float32"`` forms the Hessian blocks in float32.  ``progress`` (a factory
    ``progress(solver, tol) -> callback`` whose callback has a ``close()``, e.g.
    handgrad.present.term.fit_progress: a bar on stderr) and ``callback(k, entry)`` are
    called after each iteration; ``solver_fn`` runs instead of the named solver on the same
    objective (the comparison's L-BFGS).
    ``sandwich``: robust standard errors H^-1 (sum_i g_i g_i') H^-1 (statsmodels' HC0) for
    a model through a linear predictor, g_i row i's gradient (fit --loss without --nll)."""
    entry = model if isinstance(model, registry.Entry) else registry.get(model)
    solver = validate.fit_choice(entry, solver, l2)
    validate.check_tol(tol)
    scaled = bool(chunk_rows or distributed_run or hessian_dtype)
    if chunk_rows is not None and chunk_rows < 1:
        raise UserError(f"--chunk-rows must be >= 1; got {chunk_rows}.")
    if scaled:
        _check_scaled(entry, solver, autograd, standardize, chunk_rows, distributed_run,
                      hessian_dtype)
    dt = resolve_dtype(dtype)
    hdt = resolve_dtype(hessian_dtype) if hessian_dtype else None
    hp = {"l2": l2, **(hyper or {})}
    solver_kw = _solver_options(entry, solver, hp, seed)  # epochs, batch size, lr: popped from hp
    ctx = distributed.init(device) if distributed_run else None
    try:
        dev = ctx.device if ctx is not None else resolve_device(device)
        set_tf32(tf32)
        return _fit(entry, solver, ctx, dev, dt, hdt, hp, solver_kw, autograd=autograd,
                    data_path=data_path, target=target, features=features,
                    intercept=intercept, seed=seed, n_samples=n_samples,
                    n_features=n_features, max_iter=max_iter, tol=tol, progress=progress,
                    callback=callback, standardize=standardize, test_fraction=test_fraction,
                    chunk_rows=chunk_rows, solver_fn=solver_fn, data=data, dtype_name=dtype,
                    exclude=exclude, dropna=dropna, sandwich=sandwich)
    finally:
        distributed.shutdown(ctx)


def _check_scaled(entry, solver, autograd, standardize, chunk_rows, distributed_run,
                  hessian_dtype) -> None:
    """Options that row chunks, processes or a float32 Hessian cannot honour: one line each."""
    if solver not in CHUNKED_SOLVERS:
        raise UserError(f"--solver {solver} does not run in chunks or across processes; "
                        f"use one of: {', '.join(s for s in CHUNKED_SOLVERS if s in entry.solvers)}.")
    if solver in entry.model.closed_solvers and solver != "closed":
        raise UserError(f"--solver {solver} is an in-memory comparison; with row chunks or "
                        "processes use --solver closed.")
    if solver == "closed" and entry.model.closed_form is not None and \
            entry.derivation.linear is None and _moments_fn(entry) is None:
        raise UserError(f"{entry.name}: the closed form runs in memory only; with --chunk-rows "
                        "or --distributed use --solver gd.")
    if hessian_dtype and entry.derivation.linear is None:
        raise UserError(f"--hessian-dtype applies to models fitted through a linear predictor "
                        f"(their Hessian is one X^T diag(h) X product); {entry.name} is not one.")
    if autograd:
        raise UserError("--autograd runs in memory only (it is the reference, not a scaled path).")
    if standardize and (chunk_rows or distributed_run):
        raise UserError("--standardize needs the columns' statistics before the fit; with "
                        "--chunk-rows or --distributed standardize the file beforehand.")


def _fit(entry, solver, ctx, dev, dt, hdt, hp, solver_kw, *, autograd, data_path, target,
         features, intercept, seed, n_samples, n_features, max_iter, tol, progress, callback,
         standardize, test_fraction, chunk_rows, solver_fn, data, dtype_name, exclude=None,
         dropna=False, sandwich=False):
    t_load = time.perf_counter()
    test = truth = transform = None
    notes: list[str] = []
    early_warnings: list[str] = []
    scale = None  # an ill-scaled design, named before the fit (in memory)
    if _streamed(data_path, chunk_rows) and data is None:
        rows, names, tname = _file_rows(entry, data_path, target, features or exclude or dropna,
                                        chunk_rows, dev, dt, notes,
                                        by_moments=_by_moments(entry, solver))
        src = data_path
    else:
        if data is None:
            data, truth = get_data(entry, data_path=data_path, target=target, features=features,
                                   seed=seed, n_samples=n_samples, n_features=n_features,
                                   exclude=exclude, dropna=dropna)
        elif entry.model.prepare is not None:
            data = entry.model.prepare(data)
        data = data.to(dev, dt)
        data, test = _split(entry, data, test_fraction, seed)  # a seeded held-out set, or None
        if standardize:  # fit on standardized columns; the summary maps back
            data, transform = inference.standardize(data, intercept,
                                                    maps_back=inference.has_table(entry))
        validate.check_dtype_range(data, dt)
        # a closed form has no gradient tolerance to miss and reports its own conditioning
        scaled_check = solver not in entry.model.closed_solvers
        # the columns' min and max, one pass over X for both checks below
        lohi = validate.column_range(data) if data.n and data.d and (
            scaled_check or validate.screens_collinearity(entry, data, hp)) else None
        scale = validate.scale_problem(data, lohi) if scaled_check else None
        if scale:  # warned after the overflow check, which is an error of its own
            early_warnings.append(f"ill-scaled features: {scale}; {validate.rescale_remedy()}")
        collinear = validate.collinearity(entry, data, intercept, hp, lohi)  # before the fit
        if collinear:
            early_warnings.insert(0, collinear)
        rows = source.TensorRows(data.X, data.y, source=data.source)
        names, tname, src, notes = list(data.feature_names), data.target, data.source, \
            list(data.notes)
    if ctx is not None and ctx.world > 1:
        rows = rows.shard(ctx.rank, ctx.world)
    reduce = ctx.reduce if ctx is not None and ctx.world > 1 else None
    t0 = time.perf_counter()
    extra: dict = {}
    obj = None
    moments_for_rows = False
    if solver not in entry.model.closed_solvers:
        probe = data if data is not None else _probe(rows, dt, dev)
        params0 = entry.model.init_params(probe, intercept=intercept, seed=seed, **hp)
        if reduce is not None:  # a start read from each shard's first rows: their mean, so
            # that every process starts from (and so takes) the same iterates
            flat = flatten(params0)
            params0 = unflatten((reduce(flat.to(torch.float64)) / ctx.world).to(flat.dtype),
                                params0)
        if data is not None:
            validate.preflight(entry, data, params0, hp)  # overflow: a UserError, not a warning
    for msg in early_warnings:
        warnings.warn(msg, HandgradWarning, stacklevel=3)
    if solver not in entry.model.closed_solvers:
        obj = solvers.Objective(entry, data if data is not None and not (chunk_rows or reduce)
                                else rows, params0, hp, use_autograd=autograd,
                                chunk_rows=chunk_rows or None, hess_dtype=hdt, reduce=reduce,
                                penalty=ctx is None or ctx.rank == 0, make_data=_maker(data))
        bar = progress(solver, solvers.default_tol(dt) if tol is None else tol) \
            if progress else None
        kw = {"tol": tol, "callback": _both(bar, callback), **solver_kw}
        if max_iter is not None:
            kw["max_iter"] = max_iter
        if solver == "newton" and solver_fn is None and entry.model.covariance is None:
            kw.setdefault("final_hessian", True)  # the standard errors need it at the final point
        try:
            res = (solver_fn or solvers.SOLVERS[solver])(obj, flatten(params0), **kw)
        finally:
            if bar is not None:
                bar.close()
    elif _by_moments(entry, solver) and (data is None or chunk_rows or reduce is not None):
        params, extra, obj, moment_rows = _closed_by_moments(entry, rows, hp, intercept,
                                                             chunk_rows, reduce, names, dt)
        if data is None:  # streamed: the scores read the rows' mean and covariance alone
            data, moments_for_rows = moment_rows, True
        res = _closed_result(entry, solver, obj, params, extra, hp)
    else:
        params, extra, obj = _closed(entry, solver, data, rows, hp, intercept, chunk_rows, ctx,
                                     chunked=data is None or bool(chunk_rows) or reduce is not None)
        res = _closed_result(entry, solver, obj, params, extra, hp)
    seconds = time.perf_counter() - t0
    separated = validate.separation(entry, res.params, data, hp) if data is not None else None
    if separated:
        res.converged, res.message = False, separated
    elif not res.converged and scale:
        res.message += f" (ill-scaled features: {validate.rescale_remedy()})"
    elif data is not None and not res.interrupted and (
            not res.converged or "loss's resolution" in res.message):
        hint = scale_hint(data)
        if hint:
            res.message += f"; {hint}" if res.converged else f" ({hint})"
    out = {
        "model": entry.name, "solver": solver,
        "derivatives": "autograd" if autograd else entry.derivation.origin,
        "device": str(dev), "dtype": dtype_name, "converged": res.converged,
        "iterations": res.iterations, "loss": res.loss, "grad_norm": res.grad_norm,
        "seconds": seconds, "message": res.message, "history": res.history,
        "data": {"source": src, "n": rows.n if reduce is None else _global_n(rows, reduce),
                 "d": rows.d, "target": tname, "notes": notes},
        "hyper": hp,
        "params": {k: _tolist(v) for k, v in res.params.items()},
        "warnings": early_warnings + list(res.warnings),
        "scale": {"chunk_rows": chunk_rows,
                  "hessian_dtype": str(hdt or dt).replace("torch.", ""),
                  "passes": obj.passes if obj is not None else None,
                  "peak_rss_mb": peak_rss_mb(), "load_seconds": t0 - t_load,
                  **{k: extra[k] for k in ("method", "cond", "passes") if k in extra},
                  **({"method": extra["solver"]} if "solver" in extra else {})},
    }
    if res.interrupted:
        out["interrupted"] = True
    if separated:
        out["separation"] = True
    if ctx is not None:
        out["distributed"] = ctx.info()
    if entry.model.coefficient_vector:
        _coefficients(out, entry, res, obj, rows, data, extra, hp, names, intercept, transform,
                      separated, reduce, truth, sandwich)
    if truth is not None:
        out["true_params"] = {k: _tolist(v) for k, v in truth.items()}
    if data is not None:
        _evaluation(out, entry, res.params, data, test, truth, hp, transform)
        if moments_for_rows and "train" in out:
            out["train"]["n"] = out["data"]["n"]
    if "estimate" in out:
        out["estimate_labels"] = _estimate_labels(entry, out["estimate"], names, tname)
    out["conventions"] = conventions(entry, out, hp, intercept=intercept,
                                     standardize=transform is not None,
                                     default_split=test is not None and test_fraction is None)
    return out


SCALE_RATIO = 1e6  # columns whose scales differ by more: the likely cause of a failed fit


def scale_hint(data: Data) -> str | None:
    """When the columns' root-mean-square scales differ by more than SCALE_RATIO (the
    Hessian's condition number grows with the square of that ratio, and |grad| and its
    rounding with the largest column's units), the remedy in one phrase; else None."""
    if data.X.numel() == 0 or data.d < 2:
        return None
    rms = data.X.detach().to(torch.float64).pow(2).mean(0).sqrt().cpu()
    nz = (rms > 0).nonzero().flatten()
    if nz.numel() < 2:
        return None
    hi, lo = int(nz[rms[nz].argmax()]), int(nz[rms[nz].argmin()])
    ratio = (rms[hi] / rms[lo]).item()
    if ratio <= SCALE_RATIO:
        return None
    names = data.feature_names
    return (f"the columns' scales differ by a factor {ratio:.2g} ({names[hi]!r} vs "
            f"{names[lo]!r}): try --standardize, or --l2 > 0")


def _file_rows(entry, path, target, features, chunk_rows, dev, dt, notes, by_moments=False):
    """A .npy / .npz file read chunk by chunk (never whole): the rows, names, target name."""
    if features:
        raise UserError("--features, --exclude and --dropna apply to CSV files; select columns "
                        "before saving .npz.")
    rows = source.FileRows(path, dtype=dt, device=dev)
    t = entry.model.target
    if t is Target.BINARY:
        note = source.binary_target(rows, chunk_rows, target or "y")
        if note:
            notes.append(note)
    elif t.needs_y and not rows.has_y:
        raise UserError(f"{entry.name} needs a target: y.npy beside X.npy, or 'y' in the .npz.")
    elif t in (Target.LABELS, Target.COUNTS):
        raise UserError(f"{entry.name}: streaming a {t.value} target from .npy is not "
                        "supported; load the file in memory (no --chunk-rows) or use a CSV.")
    elif t is Target.NONE and not by_moments:
        if _moments_fn(entry) is not None:
            raise UserError(f"{entry.name}: its loss is not a sum over samples, so gradient "
                            "descent is not streamed in row chunks; its closed form (--solver "
                            "closed, the default) streams the mean and covariance.")
        raise UserError(f"{entry.name}: its loss is not a sum over samples, so it is not "
                        "streamed in row chunks; fit it in memory.")
    return rows, [f"x{j}" for j in range(rows.d)], target or "y"


def _probe(rows, dt, dev) -> Data:
    """A few rows for init_params (which needs d, dtype and device; zeros start)."""
    first = next(rows.chunks(min(rows.n, 64)), None) if rows.n else None
    if first is None:
        return Data(torch.zeros(1, rows.d, dtype=dt, device=dev))
    return Data(first[1], first[2])


def _maker(data):
    """Chunks of an in-memory data set keep its other fields (labels, names)."""
    if data is None:
        return None
    return lambda X, y: replace(data, X=X, y=y)


def _global_n(rows, reduce) -> int:
    return int(reduce(torch.tensor([float(rows.n)], dtype=torch.float64,
                                   device=getattr(rows, "device", "cpu")))[0].item())


def _moments_fn(entry):
    """A model whose closed form is a function of the rows' mean and covariance (the
    Gaussian MLE) provides ``closed_form_moments``; it then streams and all-reduces."""
    return entry.model.closed_form_moments


def _by_moments(entry, solver) -> bool:
    return solver == "closed" and _moments_fn(entry) is not None


def _closed_by_moments(entry, rows, hp, intercept, chunk_rows, reduce, names, dt):
    """The closed form from the mean and covariance summed over row chunks (and processes):
    one pass over the rows, then the model's closed form from those sums."""
    mean, S, n = lstsq.covariance(rows, chunk_rows=chunk_rows, reduce=reduce)
    params, moment_rows, extra = _moments_fn(entry)(mean.to(dt), S.to(dt), n, list(names),
                                                     intercept=intercept,
                                                     l2=hp.get("l2", 0.0))
    obj = solvers.Objective(entry, moment_rows, params, hp)
    return params, {**extra, "method": "mean and covariance summed over row chunks",
                    "passes": 1}, obj, moment_rows


def _closed(entry, solver, data, rows, hp, intercept, chunk_rows, ctx, *, chunked):
    """A closed-form fit: the model's own (in memory), or least squares over row chunks."""
    if not chunked:
        method = {} if solver == "closed" else {"method": solver}  # least squares: qr|normal|svd
        params, extra = entry.model.closed_form(data, intercept=intercept, **method, **hp)
        obj = solvers.Objective(entry, data, params, hp)
        return params, extra, obj
    if ctx is not None and ctx.world > 1:
        raise UserError("--distributed runs Newton or gradient descent; for least squares "
                        "pass --solver newton (one Newton step solves it).")
    theta, R, info = lstsq.least_squares(rows, intercept=intercept, l2=hp.get("l2", 0.0),
                                         chunk_rows=chunk_rows)
    like = {entry.model.named(Role.WEIGHTS): theta.new_zeros(rows.d)}
    if intercept:
        like[entry.model.named(Role.INTERCEPT)] = theta.new_zeros(())
    obj = solvers.Objective(entry, rows, like, hp, chunk_rows=chunk_rows)
    extra = {"method": info["method"], "cond": info["cond"], "passes": info["passes"], "R": R,
             "refinement_steps": info["passes"] - 1, **_conditioning(R)}
    return unflatten(theta, like), extra, obj


def _conditioning(R: torch.Tensor) -> dict:
    """The design's condition number from its triangular factor (R^T R = A^T A): with the
    columns scaled to unit norm, and as given; full rank (a Cholesky factor exists)."""
    R = R.detach().to(torch.float64).cpu()
    norms = R.norm(dim=0).clamp_min(torch.finfo(R.dtype).tiny)
    return {"condition": float(torch.linalg.cond(R / norms)),
            "condition_unscaled": float(torch.linalg.cond(R)), "rank": R.shape[1]}


def _closed_result(entry, solver, obj, params, extra, hp) -> solvers.FitResult:
    """A closed form solves the first-order condition in one step: iteration 0, with the
    loss and gradient norm there (a finite gradient is all 'converged' means here)."""
    x = flatten(params)
    f, g = obj.value(x), obj.grad(x)
    return solvers.FitResult(params, 0, bool(torch.isfinite(g).all()), solver=solver,
                             warnings=list(extra.get("warnings", [])),
                             history=[{"iteration": 0, "loss": float(f),
                                       "grad_norm": g.norm().item(), "step": 1.0}])


def _coefficients(out, entry, res, obj, rows, data, extra, hp, names, intercept, transform,
                  separated, reduce, truth, sandwich=False) -> None:
    """The coefficient table (same keys on every path), from the fit's own Hessian."""
    model = entry.model
    bname = model.named(Role.INTERCEPT)
    terms = list(names) + (["intercept"] if bname in res.params else [])
    theta = flatten(res.params)
    out["coefficients"] = dict(zip(terms, theta.detach().cpu().tolist()))
    if truth is not None:  # the generating coefficients, by the same term names
        out["true_coefficients"] = dict(zip(terms, flatten(
            {k: truth[k] for k in res.params if k in truth}).detach().cpu().tolist()))
    if separated or not inference.has_table(entry, sandwich) or not res.history:
        return
    x = theta
    H = None
    if model.covariance is None:  # likelihood models: the inverse of the fit's Hessian at
        # the final point: the one the solver's last pass formed over every row, unless it
        # was formed in float32 blocks (--hessian-dtype), else a new pass (float64)
        H = res.hessian if res.hessian is not None and not obj.lowered_hessian \
            else obj.hess(x, exact=True)
    elif "R_scaled" not in extra and "R" not in extra:  # least squares fitted iteratively
        if data is not None and reduce is None:
            _, ls_extra = model.closed_form(data, intercept=intercept, factor_only=True, **hp)  # R
            out["warnings"].extend(w for w in ls_extra.get("warnings", [])
                                   if w not in out["warnings"])
            extra = {k: v for k, v in ls_extra.items() if k != "refinement_steps"}
        else:  # R^T R = H / 2 = A^T A (+ l2/2 I), from the fit's own Hessian
            R = torch.linalg.cholesky(obj.hess(x).to(torch.float64) / 2, upper=True)
            extra = {"R": R, **_conditioning(R)}
    meat = obj.score_outer(x) if sandwich and H is not None else None
    stats = _stats(entry, obj, res, rows, x, res.params, hp, intercept, reduce)
    summ = inference.summary(entry, theta, terms, stats, hessian=H, extra=extra, hp=hp,
                             warns=out["warnings"], intercept=intercept, transform=transform,
                             iterations=res.iterations, meat=meat)
    if summ is None:
        return
    if not res.converged:
        _withhold_inference(summ, out["warnings"], res.message)
    out["summary"] = summ
    out["coefficients"] = {r["term"]: r["coef"] for r in summ["terms"]}
    if all(r["std_err"] is not None for r in summ["terms"]):
        out["std_errors"] = {r["term"]: r["std_err"] for r in summ["terms"]}


def _stats(entry, obj, res, rows, x, params, hp, intercept, reduce) -> inference.FitStats:
    """n, the loss without its L2 term, and the target's sums, in one pass over y."""
    if res.data_loss is not None:  # the solver's last pass was at x: its loss before L2
        loss0 = res.data_loss
    elif isinstance(obj.fast, sums.LinearSums):  # the fit's own pass, before its L2 term
        loss0 = float(obj.fast.data_value(x))
    else:  # --autograd: the fit read the model's loss (the reference), here without L2
        with torch.no_grad():
            loss0 = float(entry.loss(params, obj.data, **{**hp, "l2": 0.0}))
    lik = entry.model.likelihood
    dt = torch.float64
    dev = x.device
    acc = torch.zeros(4, dtype=dt, device=dev)  # n, sum y, sum (y - s)^2, offset; s: a shift
    shift = None
    for _, _X, y in rows.chunks(source.default_chunk_rows(rows.d)):
        y = y.to(dt)
        if shift is None:
            shift = 0.0 if reduce is not None else float(y[0])
        acc[0] += y.numel()
        acc[1] += y.sum()
        acc[2] += ((y - shift) ** 2).sum()
        if lik is not None and lik.offset is not None:
            acc[3] += lik.offset(y).sum()
    if reduce is not None:
        acc = reduce(acc)
        shift = 0.0
    n, sy, ss, off = (float(v) for v in acc.tolist())
    mean_dev = sy / n - (shift or 0.0)
    tss = ss - n * mean_dev ** 2 if intercept else ss + 2 * (shift or 0.0) * sy - n * (shift or 0.0) ** 2
    return inference.FitStats(n=int(n), loss0=loss0, sum_y=sy, tss=tss, offset=off)


def _withhold_inference(summ: dict, warns: list[str], why: str) -> None:
    """Standard errors, tests and intervals only mean something at the optimum."""
    for row in summ["terms"]:
        row.update(std_err=None, stat=None, p_value=None, ci_low=None, ci_high=None)
    msg = f"standard errors withheld: the fit did not reach the optimum ({why})"
    warns.append(msg)
    warnings.warn(msg, HandgradWarning, stacklevel=2)


def _both(*callbacks):
    cbs = [c for c in callbacks if c is not None]
    if len(cbs) <= 1:
        return cbs[0] if cbs else None

    def cb(k, entry):
        for c in cbs:
            c(k, entry)
    return cb


# ---- held-out evaluation and minibatch options (softmax, two_layer, gaussian) ---------


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
    known = set(entry.model.hyper) | {"l2"}
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
    stratified.  Default: 0.2 for classifiers with a held-out evaluation, else none."""
    can = entry.model.evaluate is not None
    labels = entry.model.target is Target.LABELS
    if test_fraction is None:
        test_fraction = 0.2 if can and labels else 0.0
    if not test_fraction:
        return data, None
    if not can:
        raise UserError(f"--test-fraction: {entry.name} has no held-out evaluation.")
    train, test = train_test_split(data, test_fraction, seed, stratify=labels)
    train.notes = list(data.notes) + [f"held out {test.n} of {data.n} rows for testing "
                                      f"(--test-fraction {test_fraction:g}, seed {seed})"]
    return train, test


def _evaluation(out: dict, entry, params, train: Data, test, truth, hp: dict,
                transform=None) -> None:
    """Scores on the training rows and held-out rows (accuracy / mean log-likelihood per
    sample), the true parameters' scores on the same held-out rows, and the estimate in
    the model's natural form (the Gaussian's Sigma when L was fitted).  With --standardize
    the held-out rows get the training rows' transform."""
    model = entry.model
    if test is not None and transform is not None:
        test = replace(test, X=(test.X - transform["mean"]) / transform["scale"])
    if model.estimate is not None:
        out["estimate"] = {k: _tolist(v) for k, v in model.estimate(params).items()}
    if model.evaluate is None:
        return
    with torch.no_grad():
        out["train"] = model.evaluate(params, train, **hp)
        if test is not None:
            out["held_out"] = model.evaluate(params, test, **hp)
            if truth is not None:
                ev = model.evaluate_truth or model.evaluate
                truth = {k: v.to(test.X.device, test.X.dtype) for k, v in truth.items()}
                out["held_out_true_params"] = ev(truth, test, **hp)


def _estimate_labels(entry, est: dict, names: list[str], target: str | None) -> dict:
    """Row and column labels of each estimate the summary prints: features by their column
    names, classes as ``target=k`` (k the class index after encoding, as data notes say)."""
    d, roles, target = len(names), entry.model.params, target or "y"
    labels: dict = {}
    for key, value in est.items():
        shape = list(torch.as_tensor(value).shape)
        role = roles.get(key)
        if role is Role.CLASS_WEIGHTS and len(shape) == 2 and shape[1] == d:
            labels[key] = {"rows": [f"{target}={c}" for c in range(shape[0])],
                           "columns": list(names)}
        elif role is Role.CLASS_BIAS and len(shape) == 1:
            labels[key] = {"columns": [f"{target}={c}" for c in range(shape[0])]}
        elif shape == [d]:
            labels[key] = {"columns": list(names)}
        elif shape == [d, d]:
            labels[key] = {"rows": list(names), "columns": list(names)}
    return labels


def conventions(entry, out: dict, hp: dict, *, intercept: bool, standardize: bool,
                default_split: bool) -> list[str]:
    """The choices behind this fit's numbers that differ from what statsmodels or
    scikit-learn would do by default, one sentence each (the summary's footer): where L2
    acts and on what scale, the null model of pseudo R^2 and the LR test without an
    intercept, R^2 without an intercept, a held-out share taken by default, the
    normalisation of a multi-class model's weights, the divisor of a fitted covariance."""
    model = entry.model
    roles = set(model.params.values())
    lines: list[str] = []
    l2 = hp.get("l2") or 0.0
    if l2 and any(r.penalised for r in roles):
        if not standardize:
            where = ("the weights in the columns' own units (rescaling a column changes "
                     "the fit; --standardize penalises standardized coefficients instead)")
        elif inference.has_table(entry):
            where = ("the standardized coefficients ('coef (std)'; the printed coefficients are "
                     "mapped back, so the penalty on each depends on its column's spread)")
        else:
            where = "the parameters of the standardized columns, as printed"
        pen = [k for k, r in model.params.items() if r.penalised]
        norm = (f"||{pen[0]}||^2" if len(pen) == 1 else
                "(" + " + ".join(f"||{k}||^2" for k in pen) + ")")
        unpen = [k for k, r in model.params.items() if k in out["params"] and r in (
            Role.INTERCEPT, Role.CLASS_BIAS, Role.LAYER_BIAS)]
        peer = ""
        if model.covariance is not None:
            peer = f"; scikit-learn's Ridge alpha = l2/2 = {l2 / 2:g}"
        elif model.target is Target.BINARY or Role.CLASS_WEIGHTS in roles:
            peer = f"; scikit-learn's LogisticRegression C = 1/l2 = {1 / l2:g}"
        elif model.target is Target.COUNTS and out["data"].get("n"):
            peer = f"; scikit-learn's PoissonRegressor alpha = l2/n = {l2 / out['data']['n']:.3g}"
        lines.append(f"L2: (l2/2){norm} with l2 = {l2:g} is added to the loss summed over "
                     f"rows and penalises {where}"
                     + (f"; {', '.join(unpen)} not penalised" if unpen else "") + peer)
    summ = out.get("summary") or {}
    if not intercept and "null_model" in summ:
        lines.append(f"null model of pseudo R^2 and the LR test: {summ['null_model']} for "
                     "every row (no intercept: all weights 0, nested in this model); "
                     "statsmodels' llnull fits an intercept-only model even without a constant")
    if not intercept and summ.get("kind") == "least_squares":
        lines.append("R^2 is uncentred without an intercept (1 - RSS / sum y^2), as in "
                     "statsmodels; scikit-learn's r2_score is always centred")
    if default_split and "held_out" in out:
        n_test, n_fit = out["held_out"]["n"], out["data"]["n"]
        lines.append(f"{n_test} of {n_test + n_fit} rows ({n_test / (n_test + n_fit):.0%}) held "
                     f"out by default for the held-out scores; the fit uses the other {n_fit} "
                     "(statsmodels and scikit-learn fit every row given; --test-fraction 0 "
                     "does too)")
    if Role.CLASS_WEIGHTS in roles and "estimate" in out:
        lines.append("weights and biases normalised to sum to zero over classes (each feature's "
                     "weights and the biases sum to 0; only differences between classes are "
                     "identified); statsmodels' MNLogit fixes the first class at 0 instead")
    if Role.COVARIANCE in roles and "Sigma" in (out.get("estimate") or {}):
        lines.append(f"Sigma is the maximum-likelihood estimate (divides by n = "
                     f"{out['data']['n']}); numpy.cov and pandas divide by n - 1")
    return lines


def echo_main(out: dict) -> bool:
    """Whether this process prints (rank 0, or not distributed)."""
    d = out.get("distributed")
    return d is None or d.get("rank", 0) == 0
