"""Fits at scale: row chunks (--chunk-rows), several processes (--distributed), and a
float32 Hessian (--hessian-dtype float32).  ``app.fit`` hands over to :func:`fit` when
any of these is asked for; the output has the same core keys as ``app.fit``'s.
"""

from __future__ import annotations

import os
import resource
import time

import torch

from handgrad import registry
from handgrad.device import resolve_device, resolve_dtype, set_tf32
from handgrad.errors import UserError
from handgrad.fitting import distributed, inference, solvers, stream, validate
from handgrad.fitting.data import Data
from handgrad.params import flatten, unflatten


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB.

    /proc/self/status VmHWM where it exists: ru_maxrss survives execve, so a process
    started by one that had touched a large file would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _tolist(t):
    t = t.detach().cpu()
    return t.item() if t.dim() == 0 else t.tolist()


def load_rows(entry, *, data_path, target, features, seed, n_samples, n_features, chunk_rows,
              device, dtype) -> tuple[stream.Rows, dict]:
    """The rows to fit and a description (source, n, d, names, notes).

    .npy / .npz with --chunk-rows are streamed from the file; anything else is loaded
    as ``app.fit`` loads it (CSV, or the model's seeded synthetic set) and chunked in memory.
    """
    from handgrad.fitting import app

    ext = os.path.splitext(data_path or "")[1].lower()
    if data_path and chunk_rows and ext in (".npy", ".npz"):
        if features:
            raise UserError("--features applies to CSV files; select columns before saving .npz.")
        rows = stream.FileRows(data_path, dtype=dtype, device=device)
        notes = []
        if entry.model.TARGET == "binary":
            note = stream.binary_target(rows, chunk_rows, target or "y")
            if note:
                notes.append(note)
        elif entry.model.TARGET is not None and not rows.has_y:
            raise UserError(f"{entry.name} needs a target: y.npy beside X.npy, or 'y' in the .npz.")
        desc = {"source": data_path, "n": rows.n, "d": rows.d, "target": target or "y",
                "notes": notes, "names": [f"x{j}" for j in range(rows.d)], "truth": None}
        return rows, desc
    data, truth = app.get_data(entry, data_path=data_path, target=target, features=features,
                               seed=seed, n_samples=n_samples, n_features=n_features)
    data = data.to(device, dtype)
    desc = {"source": data.source, "n": data.n, "d": data.d, "target": data.target,
            "notes": list(data.notes), "names": list(data.feature_names), "truth": truth}
    return stream.TensorRows(data.X, data.y, source=data.source), desc


def fit(model: str, *, solver: str | None = None, data_path=None, target=None, features=None,
        intercept: bool = True, l2: float = 0.0, device="auto", dtype="float64", seed: int = 0,
        n_samples=None, n_features=None, max_iter=None, tol=None, tf32: bool = False,
        chunk_rows: int | None = None, distributed_run: bool = False,
        hessian_dtype: str | None = None, callback=None, **_ignored) -> dict:
    entry = registry.get(model)
    solver = validate.fit_choice(entry, solver, l2)
    if solver not in ("newton", "gd", "closed"):
        raise UserError(f"--solver {solver} does not run in chunks; use newton, gd or closed.")
    if chunk_rows is not None and chunk_rows < 1:
        raise UserError(f"--chunk-rows must be >= 1; got {chunk_rows}.")
    hdt = resolve_dtype(hessian_dtype) if hessian_dtype else None
    dt = resolve_dtype(dtype)
    ctx = distributed.init(device) if distributed_run else None
    dev = ctx.device if ctx is not None else resolve_device(device)
    set_tf32(tf32)
    try:
        return _fit(entry, model, solver, ctx, dev, dt, hdt, data_path=data_path, target=target,
                    features=features, intercept=intercept, l2=l2, seed=seed,
                    n_samples=n_samples, n_features=n_features, max_iter=max_iter, tol=tol,
                    chunk_rows=chunk_rows, callback=callback, dtype_name=dtype)
    finally:
        distributed.shutdown(ctx)


def _fit(entry, model, solver, ctx, dev, dt, hdt, *, data_path, target, features, intercept,
         l2, seed, n_samples, n_features, max_iter, tol, chunk_rows, callback, dtype_name):
    t_load = time.perf_counter()
    rows, desc = load_rows(entry, data_path=data_path, target=target, features=features,
                           seed=seed, n_samples=n_samples, n_features=n_features,
                           chunk_rows=chunk_rows, device=dev, dtype=dt)
    if ctx is not None and ctx.world > 1:
        rows = rows.shard(ctx.rank, ctx.world)
    hp = {"l2": l2}
    t0 = time.perf_counter()
    extra = {}
    if solver == "closed":
        if ctx is not None and ctx.world > 1:
            raise UserError("--distributed runs Newton or gradient descent; for least squares "
                            "pass --solver newton (one Newton step solves it).")
        theta, R, info = stream.least_squares(rows, intercept=intercept, l2=l2,
                                              chunk_rows=chunk_rows)
        like = {"w": theta.new_zeros(rows.d)} | ({"b": theta.new_zeros(())} if intercept else {})
        params = unflatten(theta, like)
        obj = solvers.Objective(entry, rows, like, hp, chunk_rows=chunk_rows)
        f, g = obj.value(theta), obj.grad(theta)
        res = solvers.FitResult(params, 0, bool(torch.isfinite(g).all()), solver="closed",
                                history=[{"iteration": 0, "loss": f.item(),
                                          "grad_norm": g.norm().item(), "step": 1.0}])
        extra = {"method": info["method"], "cond": info["cond"], "passes": info["passes"]}
        x = theta
    else:
        first = next(rows.chunks(min(rows.n, 64)), None) if rows.n else None
        probe = Data(first[1], first[2]) if first is not None else Data(
            torch.zeros(1, desc["d"], dtype=dt, device=dev))
        params0 = entry.model.init_params(probe, intercept=intercept, seed=seed, **hp)
        reduce = ctx.reduce if ctx is not None and ctx.world > 1 else None
        obj = solvers.Objective(entry, rows, params0, hp, chunk_rows=chunk_rows or None,
                                hess_dtype=hdt, reduce=reduce,
                                penalty=ctx is None or ctx.rank == 0)
        if obj.fast is None:  # plain in-memory model with a float32 Hessian asked for
            obj.fast = stream.ChunkedSums(entry, rows, params0, hp, chunk_rows=rows.n)
        kw = {"tol": tol, "callback": callback}
        if max_iter is not None:
            kw["max_iter"] = max_iter
        res = solvers.SOLVERS[solver](obj, flatten(params0), **kw)
        x = flatten(res.params)
    seconds = time.perf_counter() - t0
    out = {
        "model": model, "solver": solver, "derivatives": "hand", "device": str(dev),
        "dtype": dtype_name, "converged": res.converged, "iterations": res.iterations,
        "loss": res.loss, "grad_norm": res.grad_norm, "seconds": seconds,
        "message": res.message, "history": res.history,
        "data": {k: desc[k] for k in ("source", "n", "d", "target", "notes")},
        "hyper": hp, "params": {k: _tolist(v) for k, v in res.params.items()},
        "warnings": list(res.warnings),
        "scale": {"chunk_rows": chunk_rows, "hessian_dtype": str(hdt or dt).replace("torch.", ""),
                  "passes": getattr(obj.fast, "passes", None), "peak_rss_mb": peak_rss_mb(),
                  "load_seconds": t0 - t_load, **extra},
    }
    if ctx is not None:
        out["distributed"] = ctx.info()
    if "w" in res.params and res.params["w"].dim() == 1:
        names = desc["names"]
        out["coefficients"] = {nm: float(v) for nm, v in zip(names, res.params["w"].tolist())}
        if "b" in res.params:
            out["coefficients"]["intercept"] = float(res.params["b"])
        se = _std_errors(entry, obj, x, res.params, out["warnings"])
        if se is not None:
            out["std_errors"] = dict(zip(out["coefficients"], se.tolist()))
    if desc["truth"] is not None:
        out["true_params"] = {k: _tolist(v) for k, v in desc["truth"].items()}
    return out


def _std_errors(entry, obj, x, params, warns):
    """sqrt(diag(H^-1)) from the (chunked, reduced) hand Hessian, for likelihood models."""
    if not getattr(entry.model, "LIKELIHOOD", False) or not entry.has_hessian:
        return None
    if getattr(obj.fast, "hess_dtype", None) is not None:
        obj.fast.hess_dtype = None  # standard errors from the float64 Hessian
        obj.fast._H = None
    cov = inference.covariance_from_hessian(obj.hess(x), warns)
    return None if cov is None else cov.diagonal().sqrt().cpu()


def echo_main(ctx_out: dict) -> bool:
    """Whether this process prints (rank 0, or not distributed)."""
    d = ctx_out.get("distributed")
    return d is None or d.get("rank", 0) == 0


