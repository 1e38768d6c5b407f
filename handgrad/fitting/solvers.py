"""Solvers shared by every model, driven by the hand-derived derivatives.

All solvers work on the flattened parameter vector through an :class:`Objective`, take
the same arguments, accept a per-iteration callback and return a :class:`FitResult`.
Autograd is used only when the objective is built with ``use_autograd=True`` (the
``--autograd`` comparison runs).

Newton is :class:`NewtonSolver` (``newton`` runs it): it owns its state, and its
strategies (sampled Hessians in the damped phase, chord steps in the quadratic phase) are
its own steps.  The objective and the sums under it only evaluate what they are asked
for (:meth:`Objective.evaluate`); nothing outside this module reads or sets a solver's
state, and the solver sets none on the objective (tests/test_solver_state.py).
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass, field

import torch

from handgrad.errors import HandgradWarning
from handgrad.params import Params, flatten, unflatten


class Objective:
    """l, grad l and the Hessian on the flattened parameters of one model and data set."""

    def __init__(self, entry, data, like: Params, hp: dict | None = None, use_autograd=False,
                 *, chunk_rows: int | None = None, hess_dtype: torch.dtype | None = None,
                 reduce=None, penalty: bool = True, make_data=None):
        self.entry, self.data, self.like, self.hp = entry, data, like, dict(hp or {})
        self.use_autograd = use_autograd
        self.reduce = reduce
        self.hess_dtype = hess_dtype
        self.n_evals = {"loss": 0, "grad": 0, "hess": 0}
        self._scales: torch.Tensor | None | bool = False  # not computed yet
        # sums over row chunks (fused loss + gradient + Hessian for linear-predictor models,
        # streamed files, sums reduced across processes): handgrad/fitting/sums.py
        self.fast = None
        if not use_autograd:
            from handgrad.fitting import sums

            self.fast = sums.fast_sums(entry, data, like, self.hp, chunk_rows=chunk_rows,
                                       hess_dtype=hess_dtype, reduce=reduce, penalty=penalty,
                                       make_data=make_data)

    @property
    def fused(self) -> bool:
        """Whether one pass over the rows forms f, g and the Hessian together (a model
        through a linear predictor, handgrad.fitting.sums.LinearSums): then a solver may
        ask for the gradient and the Hessian at a trial point in the pass that evaluates f
        there, and for a Hessian summed over a sample of the rows."""
        return self.fast is not None and self.entry.derivation.linear is not None

    @property
    def lowered_hessian(self) -> bool:
        """Whether the fit's Hessians are formed in a lower precision (float32 blocks)."""
        return self.fused and self.hess_dtype is not None

    @property
    def passes(self) -> int | None:
        """Passes over the rows so far (row-chunked sums), else None."""
        return self.fast.passes if self.fast is not None else None

    def sample_stride(self) -> int:
        """The chunk stride of a sampled Hessian (every k-th row chunk, scaled to every
        row; see handgrad.fitting.sums.SAMPLE_ROWS_PER_PARAM); 1: none is offered."""
        return self.fast.sample_stride() if self.fused else 1

    def evaluate(self, x: torch.Tensor, *, grad: bool = False, hess: bool = False,
                 stride: int = 1) -> Pass:
        """f at x and, as asked, the gradient and the Hessian there: one pass over the rows
        where the objective is fused, else one call each.  ``stride`` k > 1 (fused only):
        the Hessian summed over every k-th row chunk, scaled to every row."""
        if not self.fused:
            return Pass(x, self.value(x), self.grad(x) if grad else None,
                        self.hess(x) if hess else None, 1)
        for key, on in (("loss", True), ("grad", grad), ("hess", hess)):
            self.n_evals[key] += int(on)
        f_data, f, g, H = self.fast.sums(x, need_g=grad, need_H=hess,
                                         stride=stride if hess else 1, with_data=True)
        return Pass(x, f, g, H, stride if hess else 1, f_data)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        self.n_evals["loss"] += 1
        if self.fast is not None:
            return self.fast.value(x)
        with torch.no_grad():
            return self.entry.loss(unflatten(x, self.like), self.data, **self.hp)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        self.n_evals["grad"] += 1
        if self.fast is not None:
            return self.fast.grad(x)
        if self.use_autograd:
            xr = x.detach().clone().requires_grad_(True)
            f = self.entry.loss(unflatten(xr, self.like), self.data, **self.hp)
            return torch.autograd.grad(f, xr)[0]
        g = self.entry.gradient(unflatten(x, self.like), self.data, **self.hp)
        return flatten({k: g[k] for k in self.like})

    def scales(self) -> torch.Tensor | None:
        """Per entry of the flat parameters, the scale of the feature column it multiplies:
        s_j = sqrt(mean_i x_ij^2) for a weight on column j (every class's weight on it, for
        a multi-class model), 1 for intercepts; None when no parameter sits on a column
        (or every s_j is 1).  g / s is the gradient with respect to the coefficients of
        the columns scaled to s_j = 1, so |g / s| does not change when a column is
        rescaled or the columns are reordered (gradient descent's stopping test)."""
        if self._scales is False:
            self._scales = _column_scales(self)
        return self._scales

    def score_outer(self, x: torch.Tensor) -> torch.Tensor | None:
        """sum_i g_i g_i^T of the rows' gradients (the sandwich's middle), for models through
        a linear predictor (:meth:`handgrad.fitting.sums.LinearSums.score_outer`); else None."""
        if self.fast is None or self.entry.derivation.linear is None:
            return None
        return self.fast.score_outer(x)

    def hess(self, x: torch.Tensor, *, exact: bool = False) -> torch.Tensor:
        """The Hessian at x, summed over every row (``exact``: formed in x's dtype even
        where the fit forms it in float32 blocks: the standard errors' Hessian)."""
        self.n_evals["hess"] += 1
        if self.fused:
            return self.fast.hess(x, exact=exact)
        if self.fast is not None:
            return self.fast.hess(x)
        if self.use_autograd:
            return torch.func.hessian(
                lambda v: self.entry.loss(unflatten(v, self.like), self.data, **self.hp))(x)
        return self.entry.hessian(unflatten(x, self.like), self.data, **self.hp)


@dataclass
class Pass:
    """What one evaluation at a point formed: the loss there and, where asked, the
    gradient and the Hessian (``stride`` 1: summed over every row; k > 1: over every k-th
    row chunk, scaled to every row: a sampled Hessian)."""

    x: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor | None = None
    H: torch.Tensor | None = None
    stride: int = 1
    f_data: torch.Tensor | None = None  # f before its L2 term (fused passes only)


@dataclass
class FitResult:
    params: Params
    iterations: int
    converged: bool
    history: list[dict] = field(default_factory=list)  # loss, grad_norm, step[, decrement]
    message: str = ""
    solver: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: params/history are what was reached
    x_reached: torch.Tensor | None = field(default=None, repr=False)  # iterate of history[-1]
    # the Hessian at the final point, summed over every row, where the solver's last pass
    # formed one (Newton); None otherwise.  Never a sampled or reused one.
    hessian: torch.Tensor | None = field(default=None, repr=False)
    # the loss at the final point without its L2 term (the negative log-likelihood), where
    # the solver's last pass evaluated it there over every row (Newton on fused sums); None
    # otherwise.  The summary's log-likelihood then needs no pass of its own.
    data_loss: float | None = None

    @property
    def loss(self) -> float:
        return self.history[-1]["loss"] if self.history else float("nan")

    @property
    def grad_norm(self) -> float:
        return self.history[-1]["grad_norm"] if self.history else float("nan")


def default_tol(dtype: torch.dtype) -> float:
    return 1e-8 if dtype == torch.float64 else 1e-3


def loss_resolution(f: torch.Tensor | float, dtype: torch.dtype | None = None) -> float:
    """The smallest change of the loss f that its float arithmetic resolves:
    64 eps max(1, |f|) (a sum over samples carries the rounding of many terms).  A
    predicted decrease below it cannot be seen, and so cannot be asked for."""
    dtype = f.dtype if dtype is None else dtype
    v = f.item() if torch.is_tensor(f) else float(f)
    return 64 * torch.finfo(dtype).eps * max(1.0, abs(v))


def _column_scales(obj: Objective) -> torch.Tensor | None:
    from handgrad.contract import Role

    roles = obj.entry.model.params
    on_columns = [k for k in obj.like if roles.get(k) in (Role.WEIGHTS, Role.CLASS_WEIGHTS)]
    if not on_columns:
        return None
    data = obj.data
    X = getattr(data, "X", None)
    if X is not None:  # in memory: row blocks, so that no float64 copy of X is made
        blocks = ((i, X[i:i + 65536], None) for i in range(0, X.shape[0], 65536))
    else:  # rows in chunks (streamed or a shard): one pass
        from handgrad.fitting import source

        blocks = data.chunks(source.default_chunk_rows(data.d))
    ss = n = None
    for _, Xc, _y in blocks:
        sq = Xc.double().pow(2).sum(0)
        ss = sq if ss is None else ss + sq
        n = (torch.tensor([float(Xc.shape[0])], dtype=torch.float64, device=Xc.device)
             if n is None else n + Xc.shape[0])
    if ss is None:  # no rows here (an empty shard still joins the sum)
        if obj.reduce is None:
            return None
        ref = next(iter(obj.like.values()))
        ss = torch.zeros(data.d, dtype=torch.float64, device=ref.device)
        n = torch.zeros(1, dtype=torch.float64, device=ref.device)
    if obj.reduce is not None:  # every process gets the same scales
        both = obj.reduce(torch.cat([ss, n]))
        ss, n = both[:-1], both[-1:]
    s = (ss / n).sqrt()
    s = torch.where(s > 0, s, torch.ones_like(s))
    d = s.numel()
    parts = []
    for k, v in obj.like.items():
        if k in on_columns and v.shape and v.shape[-1] == d:
            parts.append(s.expand(v.shape).reshape(-1))
        else:
            parts.append(torch.ones(v.numel(), dtype=torch.float64, device=s.device))
    out = torch.cat(parts)
    if bool((out == 1).all()):
        return None
    ref = next(iter(obj.like.values()))
    return out.to(dtype=ref.dtype, device=ref.device)


def _warn(result: FitResult, msg: str) -> None:
    result.warnings.append(msg)
    warnings.warn(msg, HandgradWarning, stacklevel=3)


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _interruptible(name: str):
    """Ctrl-C (KeyboardInterrupt) inside a solver returns the FitResult reached so far,
    marked ``interrupted``, instead of unwinding: the caller reports iteration, loss, |g|.
    The result is built here and handed to the solver (``res=``), which fills it in as it
    goes, with ``res.x_reached`` the iterate of its last history entry."""
    def wrap(solver):
        @functools.wraps(solver)
        def run(obj, x0, **kw):
            res = FitResult({}, 0, False, solver=name)
            t0 = time.perf_counter()
            try:
                return solver(obj, x0, res=res, **kw)
            except KeyboardInterrupt:
                x = res.x_reached if res.x_reached is not None else x0
                res.interrupted, res.converged, res.hessian = True, False, None
                if res.history:
                    res.iterations = res.history[-1]["iteration"]
                res.message = f"interrupted at iteration {res.iterations}"
                return _finish(res, obj, x, t0, 0)
        return run
    return wrap


class NewtonSolver:
    """Damped Newton: Cholesky solve, Armijo backtracking, stop on |g| and the decrement.

    In the shape of scikit-learn's NewtonSolver (sklearn/linear_model/_glm/_newton_solver.py):
    :meth:`solve` runs :meth:`setup`, then per iteration :meth:`update_gradient_hessian`,
    :meth:`inner_solve`, :meth:`check_convergence` and :meth:`line_search`, then
    :meth:`finalize`.  The solver owns its state (each step's docstring says what it
    sets); the objective only evaluates (:meth:`Objective.evaluate`: one pass forming f
    and, as asked, g and the Hessian, over every row or, for a sampled Hessian, every
    k-th row chunk).

    lambda^2 = g^T H^-1 g is the Newton decrement; lambda^2 / 2 is the decrease the
    quadratic model predicts for the full step.  Converged when either

    * ||g|| <= tol and lambda^2 / 2 <= tol (the gradient test with the decrement), or
    * a stall at the loss's resolution: lambda^2 / 2 <= min(tol, 64 eps max(1, |loss|))
      at this iteration and the one before (:func:`loss_resolution`): the decrease left is
      below what the loss resolves and a Newton step has already been taken from there,
      so ||g|| is rounding (a column in huge units makes it large).  Only where the
      decrement can be trusted: H undamped and cond(D H D) eps <= 1e-3, D = diag(H)^-1/2
      (an inaccurate Newton direction under-predicts the decrease: float32, wine data).

    The decrement, the loss, cond(D H D) and so the second test do not change when a
    column is rescaled or the columns are reordered (Newton's iterates are affine
    invariant); the first keeps the iterations of well-scaled fits.  If the Cholesky
    factorisation fails, a ridge mu I is added (mu growing tenfold) and a warning names the
    iteration; if the step does not descend, a warning is given and the gradient direction
    is used.

    Two strategies, both steps of this solver, on a fused objective only:

    * ``chord`` (default: CHORD_MIN_PARAMS parameters or more): chord steps in the
      quadratic phase, see CHORD_ENTER below.  ``final_hessian``: the caller needs the
      Hessian at the final point (standard errors), so the chord step expected to end the
      fit forms it in its own pass.
    * ``sample`` (with chord steps, on enough rows): the damped steps before the quadratic
      phase solve with a Hessian summed over a sample of the rows, scaled to all of them
      (the loss, gradient and every stopping test are full; the first step that may end
      the fit, or whose Hessian needs damping, re-forms it in full).

    The rule: every Hessian handed out (``FitResult.hessian``) and every Hessian a stopping
    decision reads is the full sum of the verified formula at that point.
    """

    def __init__(self, *, tol: float | None = None, max_iter: int = 50, callback=None,
                 max_halvings: int = 40, chord: bool | None = None, final_hessian: bool = False,
                 sample: bool = True):
        self.tol, self.max_iter, self.callback = tol, max_iter, callback
        self.max_halvings, self.chord, self.final_hessian = max_halvings, chord, final_hessian
        self.sample = sample

    # -- the steps -----------------------------------------------------------------------
    def setup(self, obj: Objective, x0: torch.Tensor, res: FitResult) -> None:
        """Sets: obj, res, tol, x (a copy of x0), the strategies (``chord``; ``stride``, the
        sampled Hessian's chunk stride, 1 once sampling is off), ``here`` (the pass at x:
        f and, on a fused objective, g and a Hessian), ``reused`` (None: no chord Hessian
        yet), and the previous iteration's decrement, |g| and whether its step was full."""
        self.obj, self.res = obj, res
        self.tol = default_tol(x0.dtype) if self.tol is None else self.tol
        self.x = x0.clone()
        # a fused objective forms f, g and H in one pass; any other (also a duck-typed one
        # with value, grad and hess) is asked for each
        self.fused = fused = isinstance(obj, Objective) and obj.fused
        self.chord = fused and (x0.numel() >= CHORD_MIN_PARAMS if self.chord is None
                                else bool(self.chord))
        # the damped phase's Hessians summed over a sample of the rows (see
        # SAMPLE_ROWS_PER_PARAM in handgrad/fitting/sums.py); full ones from the quadratic phase on
        self.stride = obj.sample_stride() if self.chord and self.sample else 1
        self.reused = None  # (H, its Cholesky factor, its iteration) while chord steps reuse it
        self.prev_dec = math.inf  # lambda^2 / 2 at the previous iterate
        self.prev_gnorm, self.prev_full = math.inf, False
        self.here = self._pass(self.x, hess=True)

    def update_gradient_hessian(self, k: int) -> bool:
        """Sets: g and gnorm at x (from the pass at x where it formed them), ``entry`` (this
        iteration's history line, appended), ``level`` (the loss's resolution test), and H:
        the reused chord Hessian (``hessian_from``) while chord steps pay, else the Hessian
        at x (sampled in the damped phase: ``hessian_chunk_stride``).  False: stop (a
        non-finite value, or the last iteration with nothing left to decide)."""
        res, x = self.res, self.x
        if self.here.g is None:
            self.here.g = self.obj.grad(x)
        self.g = g = self.here.g
        self.gnorm = gnorm = g.norm().item()
        f = self.here.f
        if not (_finite(f) and math.isfinite(gnorm)):
            res.message = (f"non-finite loss or gradient at iteration {k}; the data may have "
                           "extreme magnitudes (try --standardize) or the model may diverge")
            return False
        self.entry = {"iteration": k, "loss": f.item(), "grad_norm": gnorm, "step": 0.0}
        res.history.append(self.entry)
        res.x_reached = x
        self.level = min(self.tol, loss_resolution(f))
        if k == self.max_iter and gnorm > self.tol and self.prev_dec > self.level:
            return False
        if self.reused is not None and (gnorm > CHORD_RATE * self.prev_gnorm or
                                        self._usable(self.here)):
            self.reused = None  # the reused Hessian no longer pays, or this pass formed one
        if self.reused is not None:
            self.H = self.reused[0]
            self.entry["hessian_from"] = self.reused[2]  # a chord step: that iteration's Hessian
            return True
        if self.stride > 1 and self.prev_full and gnorm <= CHORD_ENTER * self.prev_gnorm:
            self.stride = 1  # the quadratic phase: full Hessians
        self.H = self._hessian_here()
        return True

    def inner_solve(self, k: int) -> None:
        """Sets: d (the Newton direction, H d = -g, by Cholesky; damped if H is not positive
        definite, ``how`` saying so, or -g if d does not descend), slope = g.d, and, on the
        quadratic phase's first full Hessian, ``reused`` (H and its factor, for chord
        steps).  A sampled Hessian that needs damping, or whose step may end the fit (the
        stopping tests read the decrement), is replaced by the full one first."""
        g = self.g
        if self.reused is not None:
            self.d, self.how = -torch.cholesky_solve(g.unsqueeze(1), self.reused[1]).squeeze(1), ""
        else:
            self.d, self.how = _newton_direction(self.H, g)
            if self.stride > 1 and (self.how or self.gnorm <= self.tol or
                                    -(g @ self.d).item() / 2 <= self.tol):
                self.stride = 1  # the full Hessian decides
                self.H = self._hessian_here()
                self.d, self.how = _newton_direction(self.H, g)
            if self.here.H is not None and self.here.stride > 1 and self.stride > 1:
                self.entry["hessian_chunk_stride"] = self.here.stride  # every k-th row chunk
            if self.chord and not self.how and self.stride == 1 and self.prev_full and \
                    self.gnorm <= CHORD_ENTER * self.prev_gnorm:
                L, info = torch.linalg.cholesky_ex(self.H)  # quadratic phase: reuse H
                if int(info) == 0:
                    self.reused = (self.H, L, k)
        if self.how:
            _warn(self.res, f"Newton iteration {k}: {self.how}")
        self.slope = (g @ self.d).item()
        if not self.slope < 0:
            _warn(self.res, f"Newton iteration {k}: step does not descend (g.d = "
                            f"{self.slope:.3g}); taking a gradient step instead")
            self.d, self.slope = -g, -(g @ g).item()

    def check_convergence(self, k: int) -> bool:
        """Sets: ``dec`` (lambda^2 / 2, also in the history line) and, when the fit ends
        here, res.converged and res.message.  True: stop (converged, or the last iteration)."""
        res, f = self.res, self.here.f
        dec = self.dec = self.entry["decrement"] = -self.slope / 2
        if self.gnorm <= self.tol and dec <= self.tol:
            res.converged = True
            return True
        if dec <= self.level and self.prev_dec <= self.level and not self.how and \
                self.reused is None and trusted(self.H):
            # (not on a chord step: its |g| still falls, linearly, so |g| is not rounding)
            res.converged = True
            res.message = at_resolution(dec, f, self.gnorm, self.tol)
            return True
        return k == self.max_iter

    def line_search(self, k: int) -> bool:
        """Armijo backtracking from t = 1 along d.  Sets: x, ``here`` (the accepted trial's
        pass: f and, fused, g and a Hessian unless a chord step's pass needs none), the
        step t in the history line, prev_dec / prev_gnorm / prev_full, res.iterations.
        False: stop (no step found; res.message says why, res.converged at the precision
        limit)."""
        res, f, d, slope = self.res, self.here.f, self.d, self.slope
        rate = (self.gnorm / self.prev_gnorm
                if self.reused is not None and "hessian_from" in self.entry else None)
        self.prev_dec, self.prev_gnorm = self.dec, self.gnorm
        # a chord step's trial pass forms f and g alone, unless this step is expected to end
        # the fit (|g| times the last chord rate <= tol): then the Hessian there too, which
        # the standard errors need
        ends = self.final_hessian and rate is not None and self.gnorm * rate <= self.tol
        hess = not self.chord or self.reused is None or ends
        t = 1.0
        trial = self._pass(self.x + d, hess=hess)
        # a predicted decrease below what f can resolve: Armijo cannot judge the step (it
        # would halve on rounding noise); the decrement is tiny, so the full step is taken
        noise = loss_resolution(f)
        for _ in range(self.max_halvings):
            if _finite(trial.f) and (trial.f.item() <= f.item() + 1e-4 * t * slope
                                     or (-slope <= noise and trial.f.item() <= f.item() + noise)):
                break
            t *= 0.5
            trial = self._pass(self.x + t * d, hess=hess)
        else:
            if self.gnorm <= 10 * self.tol or _stalled(f, slope):
                res.message = "line search made no progress: at the precision limit"
                res.converged = self.gnorm <= self.tol
                if not res.converged and self.dec <= min(self.tol, _STALL * loss_resolution(f)) \
                        and not self.how and trusted(self.H):
                    res.converged = True  # the decrement, not |g|, says where we are
                    res.message = "line search made no progress: " + at_resolution(
                        self.dec, f, self.gnorm, self.tol)
                return False
            _warn(res, f"Newton iteration {k}: line search exhausted after "
                       f"{self.max_halvings} halvings")
            res.message = "line search exhausted"
            return False
        self.x, self.here = trial.x, trial
        self.entry["step"] = t
        self.prev_full = t == 1.0
        if t < 1.0:
            self.reused = None  # a damped step: out of the quadratic phase
        res.iterations = k + 1
        if self.callback is not None:
            self.callback(k, self.entry)
        return True

    def finalize(self, t0: float) -> FitResult:
        """Sets: res.params, res.seconds, res.message (if none yet), res.hessian: the
        Hessian at the final point where the last pass formed it over every row, and
        res.data_loss: the loss there without its L2 term, where the last pass was there."""
        here = self.here
        if here.H is not None and here.stride == 1 and here.x is self.x:
            self.res.hessian = here.H
        if here.f_data is not None and here.x is self.x:
            self.res.data_loss = float(here.f_data)
        return _finish(self.res, self.obj, self.x, t0, self.max_iter)

    def solve(self, obj: Objective, x0: torch.Tensor, res: FitResult | None = None) -> FitResult:
        res = FitResult({}, 0, False, solver="newton") if res is None else res
        t0 = time.perf_counter()
        self.setup(obj, x0, res)
        for k in range(self.max_iter + 1):
            if not self.update_gradient_hessian(k):
                break
            self.inner_solve(k)
            if self.check_convergence(k) or not self.line_search(k):
                break
        return self.finalize(t0)

    # -- helpers -------------------------------------------------------------------------
    def _pass(self, x: torch.Tensor, *, hess: bool) -> Pass:
        """The evaluation at x: on a fused objective f, g and (``hess``) a Hessian, sampled
        while the stride is above 1, in one pass; otherwise f alone."""
        if not self.fused:
            return Pass(x, self.obj.value(x))
        return self.obj.evaluate(x, grad=True, hess=hess, stride=self.stride)

    def _usable(self, p: Pass) -> bool:
        """Whether a pass's Hessian may be used now: formed, and full unless sampling is on."""
        return p.H is not None and (p.stride == 1 or self.stride > 1)

    def _hessian_here(self) -> torch.Tensor:
        """The Hessian at x (from the pass at x where usable, else a new pass, which then is
        the pass at x), lifted along exactly flat directions."""
        if not self._usable(self.here):
            if self.fused:
                self.here = self.obj.evaluate(self.x, grad=True, hess=True, stride=self.stride)
            else:
                self.here.H = self.obj.hess(self.x)
        return lift_flat_directions(self.obj, self.x, self.here.H)


@_interruptible("newton")
def newton(obj: Objective, x0: torch.Tensor, *, res: FitResult | None = None, **kw) -> FitResult:
    """Newton's method (:class:`NewtonSolver`, whose docstring has the options)."""
    return NewtonSolver(**kw).solve(obj, x0, res)


# Chord steps (Newton's quadratic phase): once a full Newton step has cut |g| by
# CHORD_ENTER or more, the Hessian just formed is kept and the next steps solve with it,
# each trial pass forming f and g only (at 200k x 100 an f, g pass takes 18 ms, one with
# the Hessian 115 ms); while each such step cuts |g| by CHORD_RATE or more.  The chord
# iteration converges at the rate of H's relative change (small there), to the same
# optimum and the same stopping tests.  Only where a Hessian costs much more than a
# gradient (CHORD_MIN_PARAMS parameters or more, fused sums); the standard errors are
# from a Hessian formed at the final point.
CHORD_ENTER = 0.1
CHORD_RATE = 0.25
CHORD_MIN_PARAMS = 32


_STALL = 16  # _stalled's 1e3 eps |f|, in units of loss_resolution's 64 eps |f|


def trusted(H: torch.Tensor) -> bool:
    """Whether a Newton direction from H has digits to spare: cond(D H D) eps <= 1e-3 with
    D = diag(H)^-1/2, the condition number the solve's rounding sees (column units and
    order do not count)."""
    dg = H.diagonal()
    if not bool((dg > 0).all()):
        return False
    dinv = dg.rsqrt()
    ev = torch.linalg.eigvalsh(H * dinv.unsqueeze(0) * dinv.unsqueeze(1))
    lo, hi = ev[0].item(), ev[-1].item()
    return lo > 0 and hi / lo * torch.finfo(H.dtype).eps <= 1e-3


def at_resolution(dec: float, f: torch.Tensor, gnorm: float, tol: float) -> str:
    """The verdict of a Newton fit that stopped at the loss's resolution."""
    return (f"converged at the loss's resolution: Newton decrement lambda^2/2 = {dec:.2g} "
            f"<= {loss_resolution(f):.2g} = 64 eps |loss|, a decrease the loss cannot resolve"
            + (f"; |grad| {gnorm:.3g} > tol {tol:g} is rounding in the columns' units"
               if gnorm > tol else ""))


def _stalled(f, slope) -> bool:
    # the predicted decrease is below what float arithmetic on f can resolve
    return abs(slope) <= 1e3 * torch.finfo(f.dtype).eps * max(1.0, abs(f.item()))


def _newton_direction(H: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Solve H d = -g by Cholesky; on failure add mu I, mu = 1e-8 * scale, growing tenfold."""
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) == 0 and _finite(L):
        return -torch.cholesky_solve(g.unsqueeze(1), L).squeeze(1), ""
    scale = max(H.diagonal().abs().max().item(), 1e-300)
    mu = 1e-8 * scale
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    while mu < 1e8 * scale:
        L, info = torch.linalg.cholesky_ex(H + mu * eye)
        if int(info) == 0 and _finite(L):
            d = -torch.cholesky_solve(g.unsqueeze(1), L).squeeze(1)
            return d, (f"Hessian not positive definite (Cholesky failed); added damping "
                       f"{mu:.2g} I. Collinear or constant columns? Remedy: pass --l2 > 0")
        mu *= 10
    return -g, "Hessian could not be factorised even with damping; took a gradient step"


@_interruptible("gd")
def gradient_descent(obj: Objective, x0: torch.Tensor, *, tol: float | None = None,
                     max_iter: int = 5000, callback=None, max_halvings: int = 60,
                     res: FitResult | None = None) -> FitResult:
    """Gradient descent with Armijo backtracking; the step doubles after each success.

    Converged when ||g / s|| <= tol, s the columns' scales (:meth:`Objective.scales`): the
    gradient with respect to the coefficients of unit-scale columns, which does not change
    when a column is rescaled or the columns are reordered (|g| itself grows with a
    column's units, and its rounding with it).  Without columns (s = 1) it is ||g||."""
    tol = default_tol(x0.dtype) if tol is None else tol
    res = FitResult({}, 0, False, solver="gd") if res is None else res
    scales = obj.scales() if isinstance(obj, Objective) else None
    t0 = time.perf_counter()
    x = x0.clone()
    f = obj.value(x)
    g = obj.grad(x)
    t = 1.0 / max(g.norm().item(), 1.0)
    for k in range(max_iter + 1):
        gnorm = g.norm().item()
        if not (_finite(f) and math.isfinite(gnorm)):
            res.message = f"non-finite loss or gradient at iteration {k}"
            break
        entry = {"iteration": k, "loss": f.item(), "grad_norm": gnorm, "step": 0.0}
        gtest = gnorm
        if scales is not None:  # |g| in the metric of the columns' scales
            gtest = entry["scaled_grad_norm"] = (g / scales).norm().item()
        res.history.append(entry)
        res.x_reached = x
        if gtest <= tol:
            res.converged = True
            if gnorm > tol:
                res.message = (f"converged: |grad / column scale| {gtest:.3g} <= tol {tol:g} "
                               f"(|grad| {gnorm:.3g} is in the columns' units)")
            break
        if k == max_iter:
            break
        gg = gnorm * gnorm
        noise = loss_resolution(f)
        g_new = None
        for _ in range(max_halvings):
            f_new = obj.value(x - t * g)
            change = f_new.item() - f.item() if _finite(f_new) else math.inf
            if change < -noise and change <= -1e-4 * t * gg:
                break  # Armijo, with a decrease f can resolve
            if abs(change) <= noise:
                # the change is below what f can resolve (an Armijo "success" here may be
                # rounding): judge the step by the gradient norm instead, which for
                # t < 2/L contracts along -g
                g_new = obj.grad(x - t * g)
                if g_new.norm().item() < gnorm:
                    break
                g_new = None
            t *= 0.5
        else:
            res.message = "line search exhausted: at the precision limit"
            break
        x = x - t * g
        f = f_new
        g = obj.grad(x) if g_new is None else g_new
        entry["step"] = t
        res.iterations = k + 1
        if callback is not None:
            callback(k, entry)
        if g_new is None:  # grow the step only after an Armijo-certified success
            t *= 2.0
    return _finish(res, obj, x, t0, max_iter)


def _finish(res: FitResult, obj: Objective, x, t0, max_iter) -> FitResult:
    res.params = unflatten(x, obj.like)
    res.seconds = time.perf_counter() - t0
    if not res.converged and not res.message:
        res.message = f"did not converge after {max_iter} iterations"
    return res


SOLVERS = {"newton": newton, "gd": gradient_descent}


# ---- exact invariances, for Newton (softmax's shift invariance) ----------------------

def lift_flat_directions(obj: Objective, x: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """H + s N^T N, where the rows of N (orthonormal) span directions along which the loss
    is exactly constant, as the derivation module declares in ``flat_directions`` (softmax:
    adding a constant to every class's logit).  There H v = 0 and g.v = 0, so the Newton
    system is solved on the orthogonal complement: the step is the minimum-norm Newton
    step, not a damped one.  s is the largest |diagonal| of H (at least 1)."""
    flat = obj.entry.derivation.flat_directions
    if flat is None:
        return H
    N = flat(unflatten(x, obj.like), obj.data, **obj.hp)
    if N.numel() == 0:
        return H
    s = max(H.diagonal().abs().max().item(), 1.0)
    return H + s * (N.T @ N)


# ---- minibatch optimisers (SGD with momentum, Adam) driven by the hand gradient -------

def _minibatch(obj: Objective, x0: torch.Tensor, **kw) -> FitResult:
    """Run :func:`_minibatch_loop` single-threaded on CPU: a minibatch step is a handful of
    small matrix products, for which torch's intra-op thread pool costs far more than it
    saves (on a loaded 2-core machine, milliseconds per call).  Restored afterwards."""
    threads = torch.get_num_threads()
    if obj.data.X.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _minibatch_loop(obj, x0, **kw)
    finally:
        torch.set_num_threads(threads)


def _minibatch_loop(obj: Objective, x0: torch.Tensor, *, method: str, tol: float | None = None,
               max_iter: int | None = None, callback=None, epochs: int = 30,
               batch_size: int = 32, lr: float | None = None, momentum: float = 0.9,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               seed: int = 0, res: FitResult | None = None) -> FitResult:
    """Epochs over a seeded shuffle of the rows, one step per minibatch B.

    The step direction is the per-sample mean gradient estimate
        g_B = (1/|B|) [ sum_{i in B} grad l_i + (|B|/n) grad penalty ],
    i.e. the model's hand-derived gradient on the rows of B with l2 scaled by |B|/n, divided
    by |B| (over an epoch the penalty is counted once, as in the full loss).  Momentum:
    v <- momentum v + g_B, x <- x - lr v.  Adam: the usual bias-corrected moments.
    History has one entry per epoch with the full-data loss and |grad| (a sum over samples,
    as for the other solvers).  A stochastic method has no gradient-norm stopping test at
    the default tolerance: ``converged`` means every epoch ran, the loss stayed finite and
    ended below where it started (it stops early only if |grad| <= tol).  ``max_iter`` caps
    the number of epochs.
    """
    from handgrad.errors import UserError

    tol = default_tol(x0.dtype) if tol is None else tol
    lr = (1e-3 if method == "adam" else 0.01) if lr is None else lr
    if not (math.isfinite(lr) and lr > 0):
        raise UserError(f"--lr must be a finite number > 0; got {lr}.")
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1; got {batch_size}.")
    epochs = epochs if max_iter is None else min(epochs, max_iter)
    res = FitResult({}, 0, False, solver=method) if res is None else res
    t0 = time.perf_counter()
    data, n = obj.data, obj.data.n
    B = min(batch_size, n)
    g_gen = torch.Generator().manual_seed(seed)
    x = x0.clone()
    v = torch.zeros_like(x)
    m = torch.zeros_like(x)
    b1, b2 = betas
    step = 0
    for k in range(epochs + 1):
        f, g = obj.value(x), obj.grad(x)
        gnorm = g.norm().item()
        if not (_finite(f) and math.isfinite(gnorm)):
            res.message = (f"non-finite loss or gradient after epoch {k}: the learning rate "
                           f"{lr:g} is too large for this problem; lower --lr")
            break
        entry = {"iteration": k, "epoch": k, "loss": f.item(), "grad_norm": gnorm,
                 "step": lr if k else 0.0, "seconds": time.perf_counter() - t0}
        res.history.append(entry)
        res.x_reached = x
        if k and callback is not None:
            callback(k - 1, entry)
        if gnorm <= tol:
            res.converged = True
            res.message = f"|grad| <= {tol:g} after {k} epochs"
            break
        if k == epochs:
            f0 = res.history[0]["loss"]
            res.converged = f.item() < f0
            res.message = (f"ran {epochs} epochs of {method} (minibatch {B}, lr {lr:g}); "
                           "stochastic: no gradient-norm test" if res.converged else
                           f"the loss rose from {f0:.6g} to {f.item():.6g} over {epochs} "
                           f"epochs: lr {lr:g} is too large; lower --lr")
            break
        perm = torch.randperm(n, generator=g_gen).to(data.X.device)
        for start in range(0, n, B):
            idx = perm[start:start + B]
            nb = len(idx)
            hp = dict(obj.hp)
            if hp.get("l2"):
                hp["l2"] = hp["l2"] * nb / n
            if obj.use_autograd:
                gb = Objective(obj.entry, data.rows(idx), obj.like, hp, True).grad(x) / nb
            else:
                gd = obj.entry.gradient(unflatten(x, obj.like), data.rows(idx), **hp)
                gb = flatten({k: gd[k] for k in obj.like}) / nb
            step += 1
            if method == "adam":
                m = b1 * m + (1 - b1) * gb
                v = b2 * v + (1 - b2) * gb * gb
                mh = m / (1 - b1 ** step)
                vh = v / (1 - b2 ** step)
                x = x - lr * mh / (vh.sqrt() + eps)
            else:
                v = momentum * v + gb
                x = x - lr * v
        res.iterations = k + 1
    return _finish(res, obj, x, t0, epochs)


@_interruptible("sgd")
def sgd(obj: Objective, x0: torch.Tensor, *, tol: float | None = None, max_iter: int | None = None,
        callback=None, epochs: int = 30, batch_size: int = 32, lr: float | None = None,
        momentum: float = 0.9, seed: int = 0, res: FitResult | None = None) -> FitResult:
    """Minibatch gradient descent with (heavy-ball) momentum; lr defaults to 0.01."""
    return _minibatch(obj, x0, method="sgd", tol=tol, max_iter=max_iter, callback=callback,
                      epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, seed=seed,
                      res=res)


@_interruptible("adam")
def adam(obj: Objective, x0: torch.Tensor, *, tol: float | None = None, max_iter: int | None = None,
         callback=None, epochs: int = 30, batch_size: int = 32, lr: float | None = None,
         seed: int = 0, res: FitResult | None = None, **_) -> FitResult:
    """Minibatch Adam (Kingma & Ba, 2015) on the hand gradient; lr defaults to 1e-3."""
    return _minibatch(obj, x0, method="adam", tol=tol, max_iter=max_iter, callback=callback,
                      epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, res=res)


SOLVERS["sgd"] = sgd
SOLVERS["adam"] = adam
