"""Sums over samples in row chunks: loss, gradient, Hessian, covariance, least squares.

Every loss in handgrad is a sum over samples, so each quantity a solver needs is a sum
of per-chunk pieces.  This module computes those sums over row chunks of the rows from
handgrad.fitting.source (tensors in memory or .npy/.npz files).  They only sum:
which pass to take and what to keep from it is the solver's (handgrad.fitting.solvers).

For models whose loss depends on (w, b) only through the linear predictor
z = X w + b (logistic regression, least squares), the derivation module offers
``per_sample(z, y) -> (l_i, dl/dz_i, d^2 l/dz_i^2)``; the chain rule then gives

    dl/dw = X^T e,  dl/db = 1^T e,  H = X_a^T diag(h) X_a      (e = dl/dz, h = d^2l/dz^2)

which :class:`LinearSums` evaluates in ONE pass per chunk: z_c = X_c w + b is computed
once, the gradient is X_c^T e_c, and the Hessian block is A^T A with
A = [X_c * sqrt(h_c), sqrt(h_c)] (h >= 0; the second column only with an intercept, giving
X^T h and 1^T h in the same product), accumulated chunk by chunk while A is in cache.
These are the same sums ``gradient()`` / ``hessian()`` compute in one piece; only the
order of the additions differs.  Newton's damped phase may ask for a sampled Hessian: the
same sum over every k-th chunk, scaled to all rows (SAMPLE_ROWS_PER_PARAM below).

A ``reduce`` callable (see handgrad/distributed.py) turns the local sums of one
process into the sums over every process: a Newton iteration then sends 1 + p + p^2
numbers (loss, gradient, Hessian; p = d + 1 with an intercept) whatever n is.
"""

from __future__ import annotations

import torch

from handgrad.errors import UserError
from handgrad.fitting.source import Reduce, Rows, TensorRows, default_chunk_rows
from handgrad.params import Params, flatten, unflatten
from handgrad.pieces import PerSamplePieces

# ----------------------------------------------------------------- linear-predictor sums


class LinearLoss(PerSamplePieces):
    """A loss sum_i l(z_i, y_i) + (l2/2)||w||^2 through z = X w + b, given by its per-sample
    pieces ``per_sample(z, y, grad, hess, value) -> (l_i, dl/dz_i, d^2 l/dz_i^2)``.

    The per-sample pieces are the one source of every derivative of such a model:
    :meth:`gradient` and :meth:`hessian` (what ``check`` and ``derive`` verify) are the
    same chain-rule pass (:class:`LinearSums`) that every fit path runs, in memory, over
    row chunks of a file, or reduced across processes.  Parameters: the weight vector
    ``weights`` (1-D) and the optional intercept ``intercept`` (0-d), in that order (the
    contract checks these are the model's WEIGHTS and INTERCEPT).
    """

    def sums(self, rows: Rows, like: Params, **kw) -> LinearSums:
        return LinearSums(self.per_sample, rows, like, **kw)

    def _one_pass(self, params: Params, data, l2: float, *, f: bool = False, g: bool = False,
                  H: bool = False, chunk_rows: int | None = None):
        like = {self.weights: params[self.weights]}
        if self.intercept in params:
            like[self.intercept] = params[self.intercept]
        s = self.sums(TensorRows(data.X, data.y), like, l2=l2, chunk_rows=chunk_rows)
        return s.sums(flatten(like), need_g=g, need_H=H, need_f=f)

    def value(self, params: Params, data, *, l2: float = 0.0, **_) -> torch.Tensor:
        """sum_i l_i + (l2/2)||w||^2: the loss every fit of the model reads (Newton's line
        search, the printed loss, the log-likelihood), from the same pass (float64)."""
        return self._one_pass(params, data, l2, f=True)[0]

    loss = value  # a derived loss (fit --loss) is its per-sample losses summed, the same pass

    def gradient(self, params: Params, data, *, l2: float = 0.0, **_) -> Params:
        """dl/dw = X^T e + l2 w, dl/db = 1^T e, e_i = dl/dz_i (denominator layout)."""
        g = self._one_pass(params, data, l2, g=True)[1]
        return unflatten(g, {k: params[k] for k in (self.weights, self.intercept) if k in params})

    def hessian(self, params: Params, data, *, l2: float = 0.0, **_) -> torch.Tensor:
        """X_a^T diag(h) X_a + l2 I_w, h_i = d^2 l/dz_i^2, X_a = [X, 1] (with an intercept)."""
        return self._one_pass(params, data, l2, g=True, H=True)[2]

    def chunked(self, params: Params, data, *, l2: float = 0.0, chunk_rows: int,
                **_) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, flat gradient, Hessian) summed over row chunks of ``chunk_rows`` rows: the
        pass a streamed, chunked or distributed fit runs (``check`` compares it too)."""
        return self._one_pass(params, data, l2, f=True, g=True, H=True, chunk_rows=chunk_rows)


class LinearSums:
    """Loss, gradient and Hessian of sum_i l(z_i, y_i) + (l2/2)||w||^2, z = Xw + b, in chunks.

    Parameters are the flattened (w[, b]).  The sums only sum: :meth:`sums` is one pass
    over the rows forming what it is asked for (f, g, the Hessian over every row or over
    every k-th chunk); which pass to take, and what to keep from it, is the solver's
    business (handgrad.fitting.solvers.NewtonSolver).  ``hess_dtype=torch.float32`` forms
    the Hessian blocks in float32 (accumulated in float64; ``exact=True`` overrides it),
    keeping the loss, gradient and solution in float64: Newton with an inexact Hessian
    still converges to the float64 optimum, at a linear rate of about cond(H) * 1e-7 per
    step.  ``passes`` counts the passes over the rows.
    """

    def __init__(self, per_sample, rows: Rows, like: Params, *, l2: float = 0.0,
                 chunk_rows: int | None = None, hess_dtype: torch.dtype | None = None,
                 reduce: Reduce | None = None):
        self.per_sample, self.rows, self.like = per_sample, rows, like
        self.l2 = float(l2)
        self.intercept = len(like) == 2  # (w, b): LinearLoss's contract
        self.d = rows.d
        self.p = self.d + int(self.intercept)
        self.chunk_rows = int(chunk_rows or default_chunk_rows(self.d))
        self.hess_dtype = hess_dtype
        self.reduce = reduce
        self.passes = 0
        self._stride: int | None = None  # sample_stride(), computed once

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.sums(x, need_g=False, need_H=False)[0]

    def data_value(self, x: torch.Tensor) -> torch.Tensor:
        """The loss at x without its L2 term, sum_i l_i (the negative log-likelihood, the
        residual sum of squares): the pass value() reads, before the penalty is added."""
        return self._pass(x, need_g=False, need_H=False, need_f=True)[0]

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.sums(x, need_H=False, need_f=False)[1]

    def hess(self, x: torch.Tensor, *, exact: bool = False) -> torch.Tensor:
        """The full Hessian at x (``exact``: in x's dtype even with a float32 hess_dtype)."""
        return self.sums(x, need_g=False, need_f=False, exact=exact)[2]

    # the pass ---------------------------------------------------------------------------
    def sample_stride(self) -> int:
        """The chunk stride of a sampled Hessian: every k-th chunk, at least SAMPLE_ROWS_PER_PARAM
        rows per parameter (1: too few rows to sample, every chunk).  Across processes it is
        one number for all of them (from the mean chunk count, one 2-number all-reduce the
        first time), so every rank takes the same passes and its all-reduces match."""
        if self._stride is None:
            n_chunks = -(-self.rows.n // self.chunk_rows)
            if self.reduce is not None:
                dev = next(iter(self.like.values())).device
                tot = self.reduce(torch.tensor([float(n_chunks), 1.0], dtype=torch.float64, device=dev))
                n_chunks = int(tot[0].item() // tot[1].item())
            want = -(-SAMPLE_ROWS_PER_PARAM * self.p // self.chunk_rows)  # chunks to sample
            self._stride = max(1, n_chunks // max(1, want))
        return self._stride

    def sums(self, x: torch.Tensor, *, need_g: bool = True, need_H: bool = True,
             need_f: bool = True, stride: int = 1, exact: bool = False,
             with_data: bool = False):
        """One pass over the rows: (loss or None, flat gradient or None, Hessian or None).

        ``with_data``: first, the loss before its L2 term too (None where f was not asked):
        a solver's pass whose point ends the fit then also gives the summary's
        log-likelihood (the sums keep nothing; the caller holds what it returns).
        See :meth:`_pass`."""
        out = self._pass(x, need_g=need_g, need_H=need_H, need_f=need_f, stride=stride,
                         exact=exact)
        return out if with_data else out[1:]

    def _pass(self, x: torch.Tensor, *, need_g: bool, need_H: bool, need_f: bool,
              stride: int = 1, exact: bool = False):
        """(sum_i l_i, the loss with its L2 term, flat gradient, Hessian), None where not asked.

        ``need_f=False`` (gradient alone) skips the per-sample losses: a hand gradient
        needs no forward value, where reverse-mode autograd must compute it first.  With
        ``stride`` k > 1 (Newton's early steps, k = :meth:`sample_stride`), the Hessian is
        the same sum over every k-th chunk times rows / sampled rows; the loss and the
        gradient are over every row.  ``exact``: the Hessian in x's dtype."""
        self.passes += 1
        d, p = self.d, self.p
        w = x[:d]
        b = x[d] if self.intercept else None
        dev, dt = x.device, x.dtype
        stride = stride if need_H else 1
        # the loss is accumulated in float64 even for float32 parameters: Newton's line
        # search compares losses whose difference is far below float32 resolution
        f = torch.zeros((), dtype=torch.float64, device=dev)
        g = torch.zeros(p, dtype=dt, device=dev) if need_g else None
        hdt = dt if exact else (self.hess_dtype or dt)
        H = torch.zeros(p, p, dtype=dt, device=dev) if need_H else None
        A = None  # per chunk [X_c * sqrt(h_c), sqrt(h_c)] in the Hessian's dtype: H += A^T A
        rows = rows_H = 0
        for c, (_, X, y) in enumerate(self.rows.chunks(self.chunk_rows)):
            if X.dtype != dt:
                X = X.to(dt)
            m = X.shape[0]
            rows += m
            form_H = need_H and c % stride == 0
            z = torch.addmv(b, X, w) if b is not None else X @ w
            lz, e, h = self.per_sample(z, y, need_g, form_H, need_f)
            if need_f:
                f += lz.sum(dtype=torch.float64)
            if need_g:
                g[:d].addmv_(X.T, e)
                if self.intercept:
                    g[d] += e.sum()
            if not form_H:
                continue
            rows_H += m
            if bool((h >= 0).all()):
                # one product per chunk, its operand formed once and used while in cache:
                # A^T A holds X^T diag(h) X, the intercept column X^T h and 1^T h
                if A is None or A.shape[0] < m:
                    A = torch.empty(m, p, dtype=hdt, device=dev)
                a = A[:m]
                s = h.sqrt()
                torch.mul(X, s.unsqueeze(1), out=a[:, :d])
                if self.intercept:
                    a[:, d] = s
                if hdt == dt:
                    H.addmm_(a.T, a)
                else:  # float32 blocks, each added to the float64 sum
                    H += (a.T @ a).to(dt)
            else:  # a per-sample curvature below zero: no square root, the general product
                Xa = torch.cat([X, X.new_ones(m, 1)], 1) if self.intercept else X
                H += (Xa.T.to(hdt) @ (Xa * h.unsqueeze(1)).to(hdt)).to(dt)
        if need_H and rows_H < rows:
            H *= rows / rows_H  # a sampled Hessian, scaled to every row (before the reduction)
        if self.reduce is not None:
            # one message of 1 + p + p^2 numbers (float64, so the loss keeps its digits)
            parts = [f.reshape(1)] + ([g] if need_g else []) + ([H.reshape(-1)] if need_H else [])
            buf = self.reduce(torch.cat([t.to(torch.float64) for t in parts]))
            f = buf[0]
            if need_g:
                g = buf[1:1 + p].to(dt)
            if need_H:
                H = buf[1 + (p if need_g else 0):].reshape(p, p).to(dt)
        f_data = f
        if self.l2:  # the L2 term of every linear-predictor fit, added here and nowhere else
            f = f + 0.5 * self.l2 * (w @ w)
            if need_g:
                g[:d] += self.l2 * w
            if need_H:
                idx = torch.arange(d, device=dev)
                H[idx, idx] += self.l2
        return (f_data if need_f else None), (f if need_f else None), g, H


    def score_outer(self, x: torch.Tensor) -> torch.Tensor:
        """sum_i g_i g_i^T over the rows, g_i = e_i x_a,i the gradient of row i's loss
        (e_i = dl/dz_i, x_a,i = [x_i; 1] with an intercept; the L2 term is not a row's):
        the middle of the sandwich covariance H^-1 (sum_i g_i g_i^T) H^-1.  One pass,
        float64, reduced across processes."""
        d, p = self.d, self.p
        w = x[:d]
        b = x[d] if self.intercept else None
        M = torch.zeros(p, p, dtype=torch.float64, device=x.device)
        for _, X, y in self.rows.chunks(self.chunk_rows):
            X = X.to(x.dtype)
            z = torch.addmv(b, X, w) if b is not None else X @ w
            _, e, _ = self.per_sample(z, y, True, False, False)
            a = X * e.unsqueeze(1)
            if self.intercept:
                a = torch.cat([a, e.unsqueeze(1)], 1)
            a = a.to(torch.float64)
            M.addmm_(a.T, a)
        return self.reduce(M.reshape(-1)).reshape(p, p) if self.reduce is not None else M


# Newton's early (damped) steps need a direction, not an exact Hessian: a Hessian summed
# over every k-th chunk with this many rows per parameter or more (a relative error of
# about 1 / sqrt(SAMPLE_ROWS_PER_PARAM), 5%) moves them as far as the full one at a
# fraction of its product; the quadratic phase, the chord steps and every Hessian handed
# out (standard errors, check, derive) are full sums.
SAMPLE_ROWS_PER_PARAM = 400


# ------------------------------------------------------------------ any model, in chunks


class ChunkedSums:
    """value / grad / hess of any registered model as sums of its own functions over chunks.

    Exact because every loss is a sum over samples; the L2 term is added once (first
    chunk of the process with ``penalty=True``).
    """

    def __init__(self, entry, rows: Rows, like: Params, hp: dict, *, chunk_rows: int,
                 reduce: Reduce | None = None, penalty: bool = True, make_data=None):
        from handgrad.fitting.data import Data

        self.entry, self.rows, self.like, self.hp = entry, rows, like, dict(hp)
        self.chunk_rows, self.reduce, self.penalty = int(chunk_rows), reduce, penalty
        self.make_data = make_data or (lambda X, y: Data(X, y))
        self.passes = 0
        self._check_additive()

    def _check_additive(self) -> None:
        """Refuse a loss that is not a sum over samples (a mean form cannot be split)."""
        first = next(self.rows.chunks(16), None)
        if first is None or first[1].shape[0] < 2:
            return
        _, X, y = first
        k = X.shape[0] // 2
        hp = {**self.hp, "l2": 0.0}
        with torch.no_grad():
            part = [self.entry.loss(self.like, self.make_data(X[a:b], None if y is None else y[a:b]),
                                    **hp) for a, b in ((0, k), (k, X.shape[0]))]
            whole = self.entry.loss(self.like, self.make_data(X, y), **hp)
        tot = part[0] + part[1]
        if not bool(torch.isclose(tot, whole, rtol=1e-8, atol=1e-10)):
            raise UserError(f"{self.entry.name}: the loss is not a sum over samples, so it "
                            "cannot be split into row chunks or across processes.")

    def _sum(self, fn):
        self.passes += 1
        total = None
        for k, (_, X, y) in enumerate(self.rows.chunks(self.chunk_rows)):
            hp = self.hp if (k == 0 and self.penalty) else {**self.hp, "l2": 0.0}
            part = fn(self.make_data(X, y), hp)
            total = part if total is None else total + part
        if total is None:  # a process with no rows still takes part in the reduction
            total = fn(None, self.hp)
        return self.reduce(total) if self.reduce is not None else total

    def value(self, x):
        p = unflatten(x, self.like)
        return self._sum(lambda D, hp: self.entry.loss(p, D, **hp) if D is not None
                         else x.new_zeros(()))

    def grad(self, x):
        p = unflatten(x, self.like)
        return self._sum(lambda D, hp: flatten({k: v for k, v in (
            self.entry.gradient(p, D, **hp).items())}) if D is not None else torch.zeros_like(x))

    def hess(self, x):
        p = unflatten(x, self.like)
        return self._sum(lambda D, hp: self.entry.hessian(p, D, **hp) if D is not None
                         else x.new_zeros(x.numel(), x.numel()))


# --------------------------------------------------------------------- choosing a path


def fast_sums(entry, data, like: Params, hp: dict, *, chunk_rows: int | None = None,
              hess_dtype: torch.dtype | None = None, reduce: Reduce | None = None,
              penalty: bool = True, make_data=None):
    """The chunked evaluator for a model and data set, or None for the plain path.

    ``data`` is a :class:`handgrad.fitting.data.Data` (in memory) or a :class:`Rows` (a
    file, or this process's rows).  Models whose derivation is a :class:`LinearLoss` get
    :class:`LinearSums` (fused, one pass per Newton step: the same pass their checked
    gradient() and hessian() run); any other model gets :class:`ChunkedSums` (sums of its
    checked gradient() and hessian() over chunks) when chunking or a reduction is asked for.
    """
    rows = data if isinstance(data, Rows) else TensorRows(data.X, data.y)
    linear = entry.derivation.linear
    if linear is not None:
        # the L2 term is added after the reduction, once, identically on every process
        return linear.sums(rows, like, l2=hp.get("l2", 0.0), chunk_rows=chunk_rows,
                           hess_dtype=hess_dtype, reduce=reduce)
    if chunk_rows is None and reduce is None:
        return None
    if make_data is None and not isinstance(data, Rows):
        make_data = _data_like(data)
    return ChunkedSums(entry, rows, like, hp, chunk_rows=chunk_rows or rows.n, reduce=reduce,
                       penalty=penalty, make_data=make_data)


def _data_like(data):
    from dataclasses import replace

    return lambda X, y: replace(data, X=X, y=y)
