"""handgrad's speed benchmark: hand derivatives vs autograd vs the libraries people use.

    handgrad bench [--quick] [--json] [--out DIR] [--only SECTION ...]   (python cli.py bench in a checkout)

Every comparison runs in one process, one after another, with a warm-up call and the
median of a few repeats, so the ratios in one table were measured under the same
conditions (other load on the machine skews absolute times, less so ratios).  Peers
(scikit-learn, statsmodels, glum) are timed when installed and skipped otherwise.
Writes bench.md (a markdown table) and bench.json to --out.

Iterative peers are timed at matched accuracy (``matched_tolerance``: the loosest
tolerance on 1e-2, 1e-3, ..., 1e-12 whose coefficients equal handgrad's to 1e-10) and
again at their defaults; the "peer setting" and "coef max diff" columns say which
tolerance each row used and how far its coefficients are from handgrad's.  Direct peers
(least squares, covariance) have no tolerance: "direct".

Sizes are configurable: --quick uses small problems (seconds in all); the default sizes
are (200k x 100 and 1M x 50 logistic and Poisson, 1M x 100 least
squares/covariance).
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from handgrad import registry
from handgrad.fitting import lstsq, solvers, source, sums
from handgrad.fitting.data import Data
from handgrad.params import flatten, unflatten
from handgrad.present import io

SECTIONS = ("machine", "startup", "logistic", "poisson", "job", "hessian", "gradients", "derived",
            "least_squares", "covariance", "mixed")

FULL = {"logistic": [(200_000, 100), (1_000_000, 50)], "poisson": [(200_000, 100), (1_000_000, 50)],
        "job": (200_000, 100), "hessian": (200_000, 100),
        "gradients": (200_000, 50), "derived": (200_000, 100), "least_squares": (1_000_000, 100),
        "covariance": (1_000_000, 100), "mixed": (200_000, 100), "repeats": 3,
        "autograd_newton": False, "gflops_n": 1500}
QUICK = {"logistic": [(20_000, 20)], "poisson": [(20_000, 20)], "job": (20_000, 20),
         "hessian": (20_000, 20), "gradients": (5_000, 10), "derived": (5_000, 10),
         "least_squares": (20_000, 10), "covariance": (20_000, 10), "mixed": (20_000, 20),
         "repeats": 3, "autograd_newton": True, "gflops_n": 1000}


def timeit(fn: Callable, repeats: int = 3, warmup: int = 1) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after ``warmup`` calls; returns (seconds, last result)."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _row(section, case, ours, ours_s, peer=None, peer_s=None, target=None, met=None, **extra):
    r = {"section": section, "case": case, "ours": ours, "ours_s": ours_s, "peer": peer,
         "peer_s": peer_s, "ratio": (peer_s / ours_s) if (peer_s and ours_s) else None,
         "target": target, "met": met}
    r.update(extra)
    return r


# ------------------------------------------------------------------------------ machine


def matmul_gflops(n: int = 1500, repeats: int = 5) -> dict:
    """float64 matrix-multiply rate of this machine, torch and numpy (2 n^3 flops each)."""
    a = torch.randn(n, n, dtype=torch.float64)
    t_torch, _ = timeit(lambda: a @ a, repeats)
    an = a.numpy()
    t_np, _ = timeit(lambda: an @ an, repeats)
    flops = 2.0 * n ** 3
    return {"torch_gflops": flops / t_torch / 1e9, "numpy_gflops": flops / t_np / 1e9,
            "best_gflops": flops / min(t_torch, t_np) / 1e9}


def machine_info() -> dict:
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": _cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "load_average_start": os.getloadavg()[0],
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
                             if k in os.environ}}
    for name in ("sklearn", "statsmodels", "glum"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # absent peer
            info[name] = None
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ------------------------------------------------------------------------------ logistic


def logistic_data(n: int, d: int, seed: int = 0) -> Data:
    """X standard normal, w* ~ N(0, 1/d) (so z has unit scale: no separation), b* = -0.5."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64) / math.sqrt(d)
    p = torch.sigmoid(X @ w - 0.5)
    y = (torch.rand(n, generator=g, dtype=torch.float64) < p).to(torch.float64)
    return Data(X, y)


def poisson_data(n: int, d: int, seed: int = 0) -> Data:
    """X standard normal, w* ~ N(0, 0.25/d) (z has standard deviation 0.5), b* = 0.5,
    y ~ Poisson(exp(X w* + b*)): counts around 1.6, none huge."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = 0.5 * torch.randn(d, generator=g, dtype=torch.float64) / math.sqrt(d)
    y = torch.poisson(torch.exp(X @ w + 0.5), generator=g)
    return Data(X, y)


def hand_newton(data: Data, tol: float = 1e-8, hess_dtype=None, sample: bool = True,
                model: str = "logistic"):
    entry = registry.get(model)
    like = entry.model.init_params(data)
    obj = solvers.Objective(entry, data, like, {"l2": 0.0}, hess_dtype=hess_dtype)
    res = solvers.newton(obj, flatten(like), tol=tol, sample=sample)
    return res


def plain_torch_newton(X: torch.Tensor, y: torch.Tensor, tol: float = 1e-8, max_iter: int = 50):
    """The loop people write: H = X_a^T (X_a * p(1-p)), full steps (reference peer)."""
    Xa = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1)
    th = torch.zeros(Xa.shape[1], dtype=X.dtype)
    for k in range(max_iter):
        z = Xa @ th
        p = torch.sigmoid(z)
        g = Xa.T @ (p - y)
        if float(g.norm()) < tol:
            return th, k
        H = Xa.T @ (Xa * (p * (1 - p)).unsqueeze(1))
        th = th - torch.linalg.solve(H, g)
    return th, max_iter


def autograd_newton(data: Data, tol: float = 1e-8):
    entry = registry.get("logistic")
    like = entry.model.init_params(data)
    obj = solvers.Objective(entry, data, like, {"l2": 0.0}, use_autograd=True)
    return solvers.newton(obj, flatten(like), tol=tol)


# ------------------------------------------------------------------- matched accuracy
#
# A peer's speed depends on how tightly it is asked to solve.  Each iterative peer is
# timed at MATCHED ACCURACY: the loosest tolerance on LADDER (scanned loose to tight) at
# which its coefficients equal handgrad's to MATCH (max absolute difference); and once
# more at its own defaults.  The table gives the tolerance used and the difference.

LADDER = tuple(10.0 ** -k for k in range(2, 13))  # 1e-2, 1e-3, ..., 1e-12
MATCH = 1e-10


class Peer:
    """An iterative peer: ``run(tol)`` fits and returns (coefficients in handgrad's order
    [w, b], iterations or None); ``run(None)`` fits at the peer's defaults (``defaults``
    says which; None: the peer has none, e.g. a hand-written loop)."""

    def __init__(self, name: str, run: Callable, knob: str = "tol", defaults: str | None = None):
        self.name, self.run, self.knob, self.defaults = name, run, knob, defaults


def matched_tolerance(fit: Callable, ours, ladder=LADDER, match: float = MATCH) -> dict:
    """The loosest tolerance on ``ladder`` (scanned in the order given, loose to tight) at
    which ``fit(tol)`` returns coefficients within ``match`` of ``ours`` (max absolute
    difference).  Returns {"tol", "coef_max_diff", "iterations", "tried": [[tol, diff],
    ...]}; "tol" is None when no rung matches ("coef_max_diff" is then the last rung's)."""
    ours = np.asarray(ours, dtype=np.float64)
    tried, diff, it = [], math.inf, None
    for tol in ladder:
        coef, it = fit(tol)
        diff = float(np.abs(np.asarray(coef, dtype=np.float64) - ours).max())
        tried.append([tol, diff])
        if diff <= match:
            return {"tol": tol, "coef_max_diff": diff, "iterations": it, "tried": tried}
    return {"tol": None, "coef_max_diff": diff, "iterations": it, "tried": tried}


def peer_rows(section: str, case: str, ours: str, t_ours: float, ours_coef, peer: Peer,
              reps: int, warm: int, target: str | None = None,
              goal: float | None = None) -> tuple[list[dict], dict | None]:
    """The peer at matched accuracy (timed at the tolerance matched_tolerance found) and at
    its defaults.  ``goal``: the speed ratio the target asks for (met only when matched).
    Returns (rows, the matched run: {"seconds", "coef", "tol", "iterations"} or None)."""
    ours_coef = np.asarray(ours_coef, dtype=np.float64)
    rows, matched = [], None
    m = matched_tolerance(peer.run, ours_coef)
    if m["tol"] is not None:
        t, (coef, it) = timeit(lambda: peer.run(m["tol"]), reps, warm)
        diff = float(np.abs(np.asarray(coef) - ours_coef).max())  # the timed run's own
        matched = {"seconds": t, "coef": np.asarray(coef), "tol": m["tol"], "iterations": it}
        rows.append(_row(section, case, ours, t_ours, peer.name, t, target,
                         None if goal is None else bool(t / t_ours >= goal and diff <= MATCH),
                         peer_setting=f"matched: {peer.knob}={m['tol']:.0e}",
                         peer_tol=m["tol"], coef_max_diff=diff, peer_iterations=it,
                         ladder=m["tried"]))
    else:
        rows.append(_row(section, case, ours, t_ours, peer.name, None, target,
                         None if goal is None else False,
                         peer_setting=f"unmatched: no {peer.knob} down to "
                                      f"{LADDER[-1]:.0e} reached {MATCH:.0e}",
                         coef_max_diff=m["coef_max_diff"], ladder=m["tried"]))
    if peer.defaults is not None:
        t, (coef, it) = timeit(lambda: peer.run(None), reps, warm)
        rows.append(_row(section, case, ours, t_ours, peer.name, t,
                         peer_setting=f"defaults: {peer.defaults}",
                         coef_max_diff=float(np.abs(np.asarray(coef) - ours_coef).max()),
                         peer_iterations=it))
    return rows, matched


# -------------------------------------------------------------------- logistic, Poisson


def bench_glm(model: str, sizes, repeats: int, with_autograd: bool) -> list[dict]:
    """handgrad's Newton (|g| < 1e-8) on logistic or Poisson regression against each peer
    at matched accuracy and at its defaults."""
    section = f"{model} Newton |g|<1e-8"
    make = logistic_data if model == "logistic" else poisson_data
    rows = []
    for n, d in sizes:
        data = make(n, d)
        case = f"{n // 1000}k x {d}" if n < 1_000_000 else f"{n / 1e6:g}M x {d}"
        big = n * d >= 5e6
        reps, warm = (1, 0) if big else (repeats, 1)  # big: one timed run (warm-up done small)
        t_h, res = timeit(lambda data=data: hand_newton(data, model=model), reps, warm)
        ours = flatten(res.params).numpy()
        ours_label = "handgrad newton (hand H)"
        rows.append(_row(section, case, ours_label, t_h, iterations=res.iterations,
                         grad_norm=res.grad_norm))
        Xn, yn = data.X.numpy(), data.y.numpy()
        for peer in glm_peers(model, Xn, yn, data):
            sk = peer.name.startswith("scikit-learn")
            try:
                got, matched = peer_rows(section, case, ours_label, t_h, ours, peer, reps, warm,
                                         ">= 2x faster at matched accuracy" if sk else None,
                                         2.0 if sk else None)
            except Exception as exc:  # one peer failing (another version's API) loses only its rows
                rows.append(_row(section, case, ours_label, t_h, peer.name, None,
                                 error=f"{type(exc).__name__}: {exc}"))
                continue
            rows.extend(got)
            if sk and matched and model == "logistic":  # handgrad's variants, same peer run
                for label, kw in (("handgrad newton, every Hessian full", {"sample": False}),
                                  ("handgrad newton, float32 H", {"hess_dtype": torch.float32})):
                    t_v, r_v = timeit(lambda data=data, kw=kw: hand_newton(data, **kw), reps, warm)
                    rows.append(_row(section, case, label, t_v, peer.name, matched["seconds"],
                                     peer_setting=f"matched: {peer.knob}={matched['tol']:.0e}",
                                     coef_max_diff=float(np.abs(
                                         matched["coef"] - flatten(r_v.params).numpy()).max()),
                                     iterations=r_v.iterations,
                                     peer_iterations=matched["iterations"]))
        if with_autograd and model == "logistic":  # the same solver and stopping rule
            t_a, ra = timeit(lambda data=data: autograd_newton(data), 1)
            rows.append(_row(section, case, ours_label, t_h, "Newton with torch.func.hessian",
                             t_a, peer_setting="same solver and stopping rule",
                             coef_max_diff=float(np.abs(flatten(ra.params).numpy() - ours).max())))
    return rows


def glm_peers(model: str, X: np.ndarray, y: np.ndarray, data: Data) -> list[Peer]:
    """The peers installed here, for logistic or Poisson regression (unpenalized)."""
    out = []
    for make in (_sklearn_peer, _statsmodels_peer, _glum_peer):
        try:
            peer = make(model, X, y)
        except ImportError:  # absent peer: no row
            continue
        if peer is not None:
            out.append(peer)
    if model == "logistic":
        def plain(tol):
            th, it = plain_torch_newton(data.X, data.y, tol=tol)
            return th.numpy(), it
        out.append(Peer("plain torch loop X^T(X*w)", plain, knob="|g|<"))
    return out


def _quiet(fn):
    import warnings

    def run(*a, **k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*a, **k)
    return run


def _sklearn_peer(model, X, y) -> Peer:
    """newton-cholesky, unpenalized (C=inf / alpha=0); defaults: its tol and max_iter."""
    from sklearn.linear_model import LogisticRegression, PoissonRegressor

    @_quiet
    def run(tol):
        kw = {} if tol is None else {"tol": tol}
        if model == "logistic":
            m = LogisticRegression(solver="newton-cholesky", C=np.inf, **kw)
        else:
            m = PoissonRegressor(solver="newton-cholesky", alpha=0.0, **kw)
        m.fit(X, y)
        return np.append(np.ravel(m.coef_), m.intercept_), int(np.max(m.n_iter_))

    est = LogisticRegression() if model == "logistic" else PoissonRegressor()
    p = est.get_params()
    return Peer("scikit-learn newton-cholesky", run,
                defaults=f"tol={p['tol']:g}, max_iter={p['max_iter']}")


def _statsmodels_peer(model, X, y) -> Peer:
    """Logit by Newton, Poisson GLM by IRLS (statsmodels' own default for GLM)."""
    import statsmodels.api as sm

    Xa = np.column_stack([X, np.ones(len(X))])

    @_quiet
    def run(tol):
        kw = {} if tol is None else {"tol": tol, "maxiter": 100}
        if model == "logistic":
            r = sm.Logit(y, Xa).fit(method="newton", disp=0, **kw)
            return np.asarray(r.params), r.mle_retvals.get("iterations")
        r = sm.GLM(y, Xa, family=sm.families.Poisson()).fit(**kw)
        return np.asarray(r.params), r.fit_history.get("iteration")

    if model == "logistic":
        return Peer("statsmodels Logit newton", run, defaults="tol=1e-08, maxiter=35")
    return Peer("statsmodels GLM Poisson irls", run, defaults="tol=1e-08, maxiter=100")


def _glum_peer(model, X, y) -> Peer | None:
    """glum's IRLS (when installed), unpenalized; the knob is gradient_tol."""
    from glum import GeneralizedLinearRegressor

    family = "binomial" if model == "logistic" else "poisson"

    @_quiet
    def run(tol):
        kw = {} if tol is None else {"gradient_tol": tol, "max_iter": 100}
        m = GeneralizedLinearRegressor(family=family, alpha=0, **kw)
        m.fit(X, y)
        return np.append(np.ravel(m.coef_), m.intercept_), getattr(m, "n_iter_", None)

    return Peer("glum irls", run, knob="gradient_tol", defaults="glum's gradient_tol and max_iter")


# ------------------------------------------------------------------------------- hessian


def bench_hessian(n: int, d: int, repeats: int, gflops: float, slow_autograd: bool) -> list[dict]:
    entry = registry.get("logistic")
    data = logistic_data(n, d)
    P = {"w": torch.full((d,), 0.01, dtype=torch.float64), "b": torch.tensor(0.1, dtype=torch.float64)}
    x = flatten(P)
    case = f"{n // 1000}k x {d}"
    t_hand, H = timeit(lambda: entry.hessian(P, data), repeats)
    L = sums.LinearSums(entry.derivation.linear.per_sample, source.TensorRows(data.X, data.y), P)
    t_fused, (_, _, H2) = timeit(lambda: L.sums(x), repeats)
    floor = n * d * d / (gflops * 1e9)
    f = lambda v: entry.loss(unflatten(v, P), data)  # noqa: E731
    rows = [
        _row("one Hessian", case, "hand hessian() (sandwich)", t_hand, "flop floor n*d^2", floor,
             "within 2x of floor", bool(t_hand <= 2 * floor), floor_ratio=t_hand / floor),
        _row("one Hessian", case, "hand fused pass (loss+grad+H)", t_fused, "flop floor n*d^2",
             floor, "within 2x of floor", bool(t_fused <= 2 * floor), floor_ratio=t_fused / floor,
             max_diff_vs_hessian=float((H2 - H).abs().max())),
    ]
    best = min(t_hand, t_fused)
    # context for the floor: one bare X^T X product, what torch's BLAS does on this shape
    t_gemm, _ = timeit(lambda: data.X.T @ data.X, repeats)
    rows.append(_row("one Hessian", case, "hand (best of the two)", best,
                     "bare X^T X (one torch GEMM, no weights)", t_gemm,
                     gemm_floor_ratio=t_gemm / floor))
    t_jj, Hj = timeit(lambda: torch.func.jacrev(torch.func.jacrev(f))(x), 1,
                      warmup=0 if n * d > 1e6 else 1)
    rows.append(_row("one Hessian", case, "hand (best of the two)", best, "jacrev(jacrev)", t_jj,
                     ">= 10x faster", bool(t_jj / best >= 10),
                     max_diff=float((Hj - H).abs().max())))
    if slow_autograd:
        t_fh, Hf = timeit(lambda: torch.func.hessian(f)(x), 1, warmup=0 if n * d > 1e6 else 1)
        rows.append(_row("one Hessian", case, "hand (best of the two)", best, "torch.func.hessian",
                         t_fh, ">= 100x faster", bool(t_fh / best >= 100),
                         max_diff=float((Hf - H).abs().max())))
    return rows


# ----------------------------------------------------------------------------- gradients


def model_problem(entry, n: int, d: int, seed: int = 0):
    """The model's own synthetic data at (n, d) and a point to differentiate at."""
    data, truth = entry.model.synthetic(n=n, d=d, seed=seed)
    if entry.model.prepare is not None:
        data = entry.model.prepare(data)
    like = entry.model.init_params(data, intercept=True, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    params = {k: v + 0.1 * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in like.items()}
    return data, params


def bench_gradients(n: int, d: int, repeats: int) -> list[dict]:
    rows = []
    for name, entry in sorted(registry.REGISTRY.items()):
        try:
            data, params = model_problem(entry, n, d)
        except Exception as exc:  # a model whose synthetic() takes other sizes
            rows.append(_row("gradient vs autograd", name, "hand", None, "autograd", None,
                             error=f"{type(exc).__name__}: {exc}"))
            continue
        hp = {"l2": 0.0}
        like = params
        x = flatten(params)
        hand = lambda entry=entry, data=data: entry.gradient(params, data, **hp)  # noqa: E731
        how = "hand gradient()"
        fast = sums.fast_sums(entry, data, like, hp)
        fused = None
        if isinstance(fast, sums.LinearSums):  # the solvers' path: chunked, no loss values
            fused = lambda fast=fast, x=x: fast.sums(x, need_H=False, need_f=False)[1]  # noqa: E731

        def auto(entry=entry, data=data):
            ps = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
            f = entry.loss(ps, data, **hp)
            return torch.autograd.grad(f, list(ps.values()))

        # interleaved so drifting load hits both alike; the least-disturbed (minimum) time
        th, ta, tf = [], [], []
        hand(), auto()
        for _ in range(max(3, repeats) * 2 + 1):
            t = time.perf_counter()
            gh = hand()
            th.append(time.perf_counter() - t)
            t = time.perf_counter()
            ga = auto()
            ta.append(time.perf_counter() - t)
            if fused is not None:
                t = time.perf_counter()
                fused()
                tf.append(time.perf_counter() - t)
        gh = flatten({k: gh[k] for k in params})
        ga = torch.cat([v.reshape(-1) for v in ga])
        scale = float(ga.abs().max()) or 1.0
        t_h, t_a = min(th), min(ta)
        extra = {}
        if tf:  # linear models: the solvers' chunked pass is the hand gradient they run
            extra = {"gradient_fn_over_autograd": t_h / t_a}
            t_h, how = min(tf), "hand, fused chunked pass (solvers' path)"
        rows.append(_row("gradient vs autograd", f"{name} {data.n}x{data.d}", how, t_h,
                         "torch.autograd", t_a, "hand/autograd <= 1.0",
                         bool(t_h <= t_a), hand_over_autograd=t_h / t_a,
                         max_diff=float((gh - ga).abs().max()) / scale, **extra))
    return rows


# ------------------------------------------------------------------ derived from an expression

LOGISTIC_EXPR = "sum(log(vector(1) + exp(X*w))) - y'*X*w"


def bench_derived(n: int, d: int, repeats: int) -> list[dict]:
    """The gradient handgrad derives from the logistic loss written as an expression (what
    `fit --loss` runs: the verified read-off, compiled by handgrad.notation.auto_plan)
    against derivations/logistic.py's hand gradient, interleaved, least-disturbed times."""
    from handgrad.fitting import expression

    data = logistic_data(n, d)
    loss = expression.ExpressionLoss.derive(LOGISTIC_EXPR, "w", data=data, intercept=False)
    derived_entry = expression.entry(loss)
    hand_entry = registry.get("logistic")
    g = torch.Generator().manual_seed(3)
    runs = max(3, repeats) * 2 + 1
    # a new point each call: the compiled plan reuses its values at the point it saw last
    points = [{"w": 0.1 * torch.randn(d, generator=g, dtype=torch.float64)} for _ in range(runs + 1)]

    def derived(p):
        return derived_entry.derivation.gradient(p, data)["w"]

    def hand(p):
        return hand_entry.gradient(p, data)["w"]
    gd, gh = derived(points[-1]), hand(points[-1])
    td, th = [], []
    for p in points[:runs]:
        t = time.perf_counter()
        derived(p)
        td.append(time.perf_counter() - t)
        t = time.perf_counter()
        hand(p)
        th.append(time.perf_counter() - t)
    t_d, t_h = min(td), min(th)
    scale = float(gh.abs().max()) or 1.0
    return [_row("derived gradient vs hand", f"logistic {n}x{d}", f"derived from {LOGISTIC_EXPR}",
                 t_d, "derivations/logistic.py gradient()", t_h, "derived/hand <= 1.5",
                 bool(t_d <= 1.5 * t_h), derived_over_hand=t_d / t_h,
                 max_diff=float((gd - gh).abs().max()) / scale)]


# -------------------------------------------------------------------------- least squares


def bench_least_squares(n: int, d: int, repeats: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = X @ w + 1.5 + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    case = f"{n / 1e6:g}M x {d}" if n >= 1e6 else f"{n // 1000}k x {d}"
    reps = 1 if n * d >= 5e7 else repeats
    rows_src = source.TensorRows(X, y)
    lstsq.least_squares(source.TensorRows(X[:2000], y[:2000]), intercept=True)  # warm-up
    t_o, (theta, _, info) = timeit(lambda: lstsq.least_squares(rows_src, intercept=True), reps)

    def normal_eq():
        G = X.T @ X
        return torch.cholesky_solve((X.T @ y).unsqueeze(1), torch.linalg.cholesky(G)).squeeze(1)

    t_ne, _ = timeit(normal_eq, reps)
    ours = f"handgrad {info['method']}"
    rows = [_row("least squares closed form", case, ours, t_o,
                 "normal equations (X^T X, Cholesky)", t_ne, "within 2x of normal equations",
                 bool(t_o <= 2 * t_ne), peer_setting="direct", cond=info["cond"],
                 passes=info["passes"])]
    Xn, yn = X.numpy(), y.numpy()
    theta = theta.numpy()
    try:
        from sklearn.linear_model import LinearRegression
    except ImportError:
        pass
    else:
        t_sk, m = timeit(lambda: LinearRegression().fit(Xn, yn), reps)
        diff = float(np.abs(np.append(m.coef_, m.intercept_) - theta).max())
        rows.append(_row("least squares closed form", case, ours, t_o,
                         "scikit-learn LinearRegression", t_sk, ">= 4x faster",
                         bool(t_sk / t_o >= 4), peer_setting="direct (defaults)",
                         coef_max_diff=diff))
    try:
        import statsmodels.api as sm
    except ImportError:
        return rows
    Xa = np.column_stack([Xn, np.ones(len(Xn))])
    t_sm, r = timeit(lambda: sm.OLS(yn, Xa).fit(), reps)
    rows.append(_row("least squares closed form", case, ours, t_o, "statsmodels OLS (pinv)", t_sm,
                     peer_setting="direct (defaults)",
                     coef_max_diff=float(np.abs(np.asarray(r.params) - theta).max())))
    return rows


# ----------------------------------------------------------------------------- covariance


def bench_covariance(n: int, d: int, repeats: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * 2.0 + 3.0
    case = f"{n / 1e6:g}M x {d}" if n >= 1e6 else f"{n // 1000}k x {d}"
    reps = 1 if n * d >= 5e7 else repeats
    src = source.TensorRows(X)
    t_o, (m, S, _) = timeit(lambda: lstsq.covariance(src), reps)
    Xn = X.numpy()
    t_np, C = timeit(lambda: np.cov(Xn, rowvar=False, bias=True), reps)
    rel = float(np.abs(S.numpy() - C).max() / np.abs(C).max())
    return [_row("covariance MLE", case, "handgrad chunked, shifted one pass", t_o,
                 "numpy.cov(bias=True)", t_np, ">= 1.5x faster, same to 1e-12",
                 bool(t_np / t_o >= 1.5 and rel <= 1e-12), peer_setting="direct", rel_diff=rel)]


# -------------------------------------------------------------------------------- start-up


def bench_startup(repeats: int) -> list[dict]:
    """Wall time of `handgrad --help` and `handgrad list` in a fresh interpreter, beside
    `python -c "import torch"` (what every command cost while the CLI imported torch)."""
    import subprocess
    import sys

    def wall(args):
        def once():
            subprocess.run([sys.executable, *args], check=True, capture_output=True, timeout=120)
        return timeit(once, repeats)[0]
    torch_s = wall(["-c", "import torch"])
    rows = []
    for args in (["--help"], ["list"]):
        t = wall(["-m", "handgrad.cli", *args])
        rows.append(_row("CLI start-up", "fresh interpreter", f"handgrad {' '.join(args)}", t,
                         "python -c 'import torch'", torch_s, "under 1 s", bool(t < 1.0)))
    return rows


# ------------------------------------------------------------------------------ whole job


def bench_job(n: int, d: int, repeats: int) -> list[dict]:
    """The whole in-process job, pipeline.fit of a .npz (load, validation, fit, summary with
    standard errors), against the fit inside it (its ``seconds``: start point, preflight,
    Newton with the final Hessian the standard errors use), medians over the same runs."""
    import tempfile

    from handgrad.fitting import pipeline
    data = logistic_data(n, d)
    case = f"{n // 1000}k x {d}"
    t_bare, _ = timeit(lambda: hand_newton(data), repeats)
    walls, fits = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.npz")
        np.savez(path, X=data.X.numpy(), y=data.y.numpy())
        for k in range(repeats + 1):  # the first is a warm-up
            t = time.perf_counter()
            out = pipeline.fit("logistic", solver="newton", data_path=path, device="cpu")
            if k:
                walls.append(time.perf_counter() - t)
                fits.append(out["seconds"])
    t_j, t_f = statistics.median(walls), statistics.median(fits)
    ratio = t_j / t_f
    rows = [_row("whole job", case, "pipeline.fit of a .npz (load, validate, fit, summary)", t_j,
                 "its fit (start point, preflight, Newton with the final Hessian)", t_f,
                 "job/fit <= 1.5", bool(ratio <= 1.5), job_over_fit=round(ratio, 3),
                 bare_solver_s=round(t_bare, 4), iterations=out["iterations"])]
    # handgrad.fit of arrays (every row: no held-out split) against scikit-learn's fit()
    import handgrad

    Xn, yn = data.X.numpy(), data.y.numpy()
    t_api, r = timeit(lambda: handgrad.fit("logistic", Xn, yn, solver="newton",
                                           test_fraction=0.0), repeats)
    try:
        peer = _sklearn_peer("logistic", Xn, yn)
    except ImportError:
        return rows
    got, _ = peer_rows("whole job", case, "handgrad.fit(X, y): validate, fit, summary", t_api,
                       list(r.coefficients.values()), peer, repeats, 1,
                       ">= 1.5x faster at matched accuracy", 1.5)
    return rows + got


# -------------------------------------------------------------------------- mixed precision


def bench_mixed(n: int, d: int, repeats: int) -> list[dict]:
    data = logistic_data(n, d, seed=1)
    case = f"{n // 1000}k x {d}"
    reps, warm = (1, 0) if n * d >= 5e6 else (repeats, 1)
    t64, r64 = timeit(lambda: hand_newton(data), reps, warm)
    t32, r32 = timeit(lambda: hand_newton(data, hess_dtype=torch.float32), reps, warm)
    diff = float((flatten(r32.params) - flatten(r64.params)).abs().max())
    return [_row("mixed precision Newton", case, "Hessian float32, grad/solution float64", t32,
                 "all float64", t64, "same optimum (|g|<1e-8)", bool(r32.converged and diff < 1e-10),
                 iterations=r32.iterations, peer_iterations=r64.iterations, grad_norm=r32.grad_norm,
                 coef_max_diff=diff)]


# ------------------------------------------------------------------------------- driver


def set_threads(n: int | None) -> None:
    """Use n threads in torch and in numpy/scipy's BLAS (threadpoolctl, when installed).

    On a loaded machine, 1 thread per library is the fair setting: a 2-thread OpenMP pool
    whose second thread is descheduled stalls every parallel region.
    """
    if not n:
        return
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass


def run(quick: bool = False, only: tuple[str, ...] = (), sizes: dict | None = None,
        log=print, threads: int | None = None) -> dict:
    cfg = dict(QUICK if quick else FULL)
    cfg.update(sizes or {})
    want = set(only or SECTIONS)
    set_threads(threads)
    torch.manual_seed(0)
    out = {"machine": machine_info(), "quick": quick, "config": cfg, "rows": []}
    t0 = time.perf_counter()
    rate = matmul_gflops(cfg.get("gflops_n", 1500))
    out["machine"].update(rate)
    log(f"matmul float64: torch {rate['torch_gflops']:.1f} GFLOP/s, numpy "
        f"{rate['numpy_gflops']:.1f} GFLOP/s")
    jobs = [
        ("startup", lambda: bench_startup(cfg["repeats"])),
        ("logistic", lambda: bench_glm("logistic", cfg["logistic"], cfg["repeats"],
                                       cfg["autograd_newton"])),
        ("poisson", lambda: bench_glm("poisson", cfg["poisson"], cfg["repeats"], False)),
        ("job", lambda: bench_job(*cfg["job"], cfg["repeats"])),
        ("hessian", lambda: bench_hessian(*cfg["hessian"], cfg["repeats"], rate["best_gflops"],
                                          True)),
        ("gradients", lambda: bench_gradients(*cfg["gradients"], cfg["repeats"])),
        ("derived", lambda: bench_derived(*cfg["derived"], cfg["repeats"])),
        ("least_squares", lambda: bench_least_squares(*cfg["least_squares"], cfg["repeats"])),
        ("covariance", lambda: bench_covariance(*cfg["covariance"], cfg["repeats"])),
        ("mixed", lambda: bench_mixed(*cfg["mixed"], cfg["repeats"])),
    ]
    for name, job in jobs:
        if name not in want:
            continue
        t = time.perf_counter()
        try:
            rows = job()
        except Exception as exc:  # one section failing must not lose the others
            rows = [_row(name, "-", "-", None, error=f"{type(exc).__name__}: {exc}")]
        out["rows"].extend(rows)
        log(f"{name}: {time.perf_counter() - t:.1f} s")
    out["machine"]["load_average_end"] = os.getloadavg()[0]
    out["seconds"] = time.perf_counter() - t0
    return out


def _fmt_s(v) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with "
        f"{m['torch_threads']} threads, float64 matmul {m['best_gflops']:.0f} GFLOP/s "
        f"(torch {m['torch_gflops']:.0f}, numpy {m['numpy_gflops']:.0f}); "
        f"{m['date']}; load average {m['load_average_start']:.1f} at start, "
        f"{m.get('load_average_end', float('nan')):.1f} at end"
        + (f"; GPU {m['cuda']}" if m.get("cuda") else "; no GPU") + ".",
        "Peers: " + ", ".join(f"{k} {m[k] or 'absent'}" for k in ("sklearn", "statsmodels", "glum"))
        + ("." if not result["quick"] else "; quick sizes."),
        "",
        "| comparison | case | handgrad | time | peer | peer setting | peer time | peer / handgrad "
        "| coef max diff | target | met | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        notes = []
        for k in ("iterations", "peer_iterations", "max_diff", "rel_diff",
                  "floor_ratio", "hand_over_autograd", "gradient_fn_over_autograd",
                  "derived_over_hand", "gemm_floor_ratio", "cond", "job_over_fit", "bare_solver_s",
                  "error"):
            if r.get(k) is not None:
                v = r[k]
                notes.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else "-"
        met = "-" if r.get("met") is None else ("yes" if r["met"] else "**no**")
        diff = r.get("coef_max_diff")
        lines.append(f"| {r['section']} | {r['case']} | {r['ours']} | {_fmt_s(r['ours_s'])} | "
                     f"{r['peer'] or '-'} | {r.get('peer_setting') or '-'} | "
                     f"{_fmt_s(r['peer_s'])} | {ratio} | "
                     f"{'-' if diff is None else f'{diff:.2g}'} | "
                     f"{r.get('target') or '-'} | {met} | {'; '.join(notes)} |")
    return "\n".join(lines) + "\n"


def write(result: dict, out_dir: str) -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    md, js = os.path.join(out_dir, "bench.md"), os.path.join(out_dir, "bench.json")
    io.write_text(md, markdown(result))  # whole or not at all (temporary file + rename)
    io.write_json(js, result)
    return md, js
