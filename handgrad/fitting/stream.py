"""Sums over samples in row chunks: loss, gradient, Hessian, covariance, least squares.

Every loss in handgrad is a sum over samples, so each quantity a solver needs is a sum
of per-chunk pieces.  This module computes those sums over row chunks of

* tensors already in memory (:class:`TensorRows`, chunks are views: no copy), or
* ``.npy`` / ``.npz`` files (:class:`FileRows`), read chunk by chunk with positioned
  reads, so resident memory stays O(chunk * d + d^2) whatever
  the file's size (a memory map would count every page it touched as resident).

For models whose loss depends on (w, b) only through the linear predictor
z = X w + b (logistic regression, least squares), the derivation module offers
``per_sample(z, y) -> (l_i, dl/dz_i, d^2 l/dz_i^2)``; the chain rule then gives

    dl/dw = X^T e,  dl/db = 1^T e,  H = X_a^T diag(h) X_a      (e = dl/dz, h = d^2l/dz^2)

which :class:`LinearSums` evaluates in ONE pass per chunk: z_c = X_c w + b is computed
once, X_c^T [e, h] is one matrix product, and the Hessian block is Xs^T Xs with
Xs = X_c * sqrt(h) (h >= 0), accumulated chunk by chunk (a symmetric rank-k update
whose operands stay in cache).  These are the same sums ``gradient()`` / ``hessian()``
compute in one piece; only the order of the additions differs.

A ``reduce`` callable (see handgrad/distributed.py) turns the local sums of one
process into the sums over every process: a Newton iteration then sends 1 + p + p^2
numbers (loss, gradient, Hessian; p = d + 1 with an intercept) whatever n is.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable, Iterator

import numpy as np
import torch

from handgrad.errors import UserError
from handgrad.params import Params, flatten, unflatten

Reduce = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_CHUNK_BYTES = 4 << 20  # in-memory chunks of about 4 MB stay in the L2/L3 cache


def default_chunk_rows(d: int, itemsize: int = 8) -> int:
    return max(256, DEFAULT_CHUNK_BYTES // max(1, d * itemsize))


# ----------------------------------------------------------------------------- sources


class Rows:
    """n rows of (X, y) readable in chunks.  ``lo:hi`` selects this process's rows."""

    n: int
    d: int
    has_y: bool
    source: str = ""

    def chunks(self, size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
        """Yield (first row index, X chunk, y chunk or None) for the selected rows."""
        raise NotImplementedError

    def shard(self, rank: int, world: int) -> Rows:
        """The contiguous block of rows that process ``rank`` of ``world`` reads."""
        raise NotImplementedError


def _block(n: int, rank: int, world: int) -> tuple[int, int]:
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} out of range for world size {world}")
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class TensorRows(Rows):
    """Rows of tensors already in memory; chunks are views."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor | None = None, lo: int = 0,
                 hi: int | None = None, source: str = "memory"):
        self.X, self.y = X, y
        self.lo, self.hi = lo, X.shape[0] if hi is None else hi
        self.n, self.d, self.has_y, self.source = self.hi - self.lo, X.shape[1], y is not None, source

    @property
    def dtype(self) -> torch.dtype:
        return self.X.dtype

    @property
    def device(self) -> torch.device:
        return self.X.device

    def chunks(self, size):
        for i in range(self.lo, self.hi, size):
            j = min(i + size, self.hi)
            yield i, self.X[i:j], None if self.y is None else self.y[i:j]

    def shard(self, rank, world):
        lo, hi = _block(self.n, rank, world)
        return TensorRows(self.X, self.y, self.lo + lo, self.lo + hi, self.source)


class _Array:
    """One 2-D or 1-D array inside a .npy file or an uncompressed .npz member."""

    def __init__(self, path: str, offset: int, shape: tuple, dtype: np.dtype, fortran: bool):
        self.path, self.offset, self.shape, self.dtype = path, offset, shape, dtype
        if fortran and len(shape) == 2 and shape[1] > 1:
            raise UserError(f"{path}: X is stored in Fortran (column) order; streaming reads "
                            "rows: save it with np.save(path, np.ascontiguousarray(X)).")
        if dtype.hasobject or not (np.issubdtype(dtype, np.number) or dtype.kind == "b"):
            raise UserError(f"{path}: array of dtype {dtype} is not numeric.")
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def read(self, fh, lo: int, hi: int, buf: np.ndarray | None) -> np.ndarray:
        count = (hi - lo) * self.row_bytes
        if buf is None or buf.nbytes < count:
            buf = np.empty(count, dtype=np.uint8)
        view = memoryview(buf)[:count]
        got = os.preadv(fh.fileno(), [view], self.offset + lo * self.row_bytes)
        if got != count:
            raise UserError(f"{self.path}: file is truncated (wanted {count} bytes at row {lo}).")
        return buf


def _npy_header(fh, path: str) -> tuple[int, tuple, np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except ValueError as exc:
        raise UserError(f"Cannot read {path}: {exc}") from None
    return fh.tell(), shape, dtype, fortran


def _open_npy(path: str) -> _Array:
    with open(path, "rb") as fh:
        off, shape, dtype, fortran = _npy_header(fh, path)
    return _Array(path, off, shape, dtype, fortran)


def _open_npz_member(path: str, name: str) -> _Array | None:
    with zipfile.ZipFile(path) as zf:
        if name + ".npy" not in zf.namelist():
            return None
        info = zf.getinfo(name + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise UserError(f"{path} is compressed (np.savez_compressed); streaming needs "
                            "direct reads: save it with np.savez, or as X.npy and y.npy.")
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        off, shape, dtype, fortran = _npy_header(fh, path)
    return _Array(path, off, shape, dtype, fortran)


class FileRows(Rows):
    """Rows of a .npy (with y.npy / y<suffix>.npy beside it) or an uncompressed .npz.

    Each chunk is read with one positioned read into its own buffer and converted to
    float64 (or ``dtype``).  The first pass checks every value is finite and names the
    first bad row and column; ``y_map`` re-encodes a two-valued target.
    """

    def __init__(self, path: str, *, lo: int = 0, hi: int | None = None,
                 dtype: torch.dtype = torch.float64, device="cpu", _arrays=None):
        if not os.path.exists(path):
            raise UserError(f"Data file not found: {path}")
        self.path, self.source = path, path
        self.dtype, self.device = dtype, torch.device(device)
        if _arrays is None:
            _arrays = self._open(path)
        self._X, self._y = _arrays
        if len(self._X.shape) != 2:
            raise UserError(f"X must be 2-D (samples x features); got shape {self._X.shape}.")
        N = self._X.shape[0]
        if self._y is not None and self._y.shape[0] != N:
            raise UserError(f"X has {N} rows but y has {self._y.shape[0]}; they must match.")
        if self._y is not None and len(self._y.shape) == 2 and self._y.shape[1] != 1:
            raise UserError(f"y must be 1-D (or n x 1); got shape {self._y.shape}.")
        self.lo, self.hi = lo, N if hi is None else hi
        self.n, self.d, self.has_y = self.hi - self.lo, self._X.shape[1], self._y is not None
        if self.n <= 0 or self.d == 0:
            raise UserError(f"X is empty: shape {self._X.shape}.")
        self.y_map: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.checked = False

    @staticmethod
    def _open(path: str):
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npz":
            X = _open_npz_member(path, "X")
            if X is None:
                raise UserError(f"{path} must hold an array named 'X'.")
            return X, _open_npz_member(path, "y")
        if ext == ".npy":
            X = _open_npy(path)
            folder, base = os.path.split(path)
            ypath = os.path.join(folder, "y.npy")
            if base.startswith("X") and os.path.exists(os.path.join(folder, "y" + base[1:])):
                ypath = os.path.join(folder, "y" + base[1:])
            return X, (_open_npy(ypath) if os.path.exists(ypath) else None)
        raise UserError(f"Streaming (--chunk-rows) reads .npy or .npz files; got {path!r}.")

    def shard(self, rank, world):
        lo, hi = _block(self.n, rank, world)
        out = FileRows(self.path, lo=self.lo + lo, hi=self.lo + hi, dtype=self.dtype,
                       device=self.device, _arrays=(self._X, self._y))
        out.y_map = self.y_map
        return out

    def chunks(self, size):
        # a fresh buffer per chunk: the tensors handed out share it (no copy), so reusing one
        # buffer would overwrite a chunk a caller still holds; freed buffers are recycled
        with open(self._X.path, "rb") as fx, open(self._y.path if self._y else os.devnull,
                                                  "rb") as fy:
            for i in range(self.lo, self.hi, size):
                j = min(i + size, self.hi)
                bx = self._X.read(fx, i, j, None)
                Xn = np.frombuffer(bx, dtype=self._X.dtype, count=(j - i) * self.d)
                X = torch.from_numpy(Xn.reshape(j - i, self.d)).to(self.device, self.dtype)
                y = None
                if self._y is not None:
                    by = self._y.read(fy, i, j, None)
                    yn = np.frombuffer(by, dtype=self._y.dtype, count=j - i)
                    y = torch.from_numpy(yn).to(self.device, self.dtype)
                    if self.y_map is not None:
                        y = self.y_map(y)
                if not self.checked:
                    _check_chunk(X, y, i, self.path)
                yield i, X, y
        self.checked = True


def _check_chunk(X: torch.Tensor, y: torch.Tensor | None, first: int, path: str) -> None:
    if not bool(torch.isfinite(X).all()):
        r, c = (~torch.isfinite(X)).nonzero()[0].tolist()
        kind = "NaN" if math.isnan(float(X[r, c])) else "inf"
        raise UserError(f"{path}: X contains {kind} (row {first + r}, column {c}).")
    if y is not None and not bool(torch.isfinite(y).all()):
        r = int((~torch.isfinite(y)).nonzero()[0])
        raise UserError(f"{path}: y contains a non-finite value (row {first + r}).")


def open_rows(path: str, *, dtype: torch.dtype = torch.float64, device="cpu") -> FileRows:
    return FileRows(path, dtype=dtype, device=device)


def binary_target(rows: Rows, chunk_rows: int, name: str = "y") -> str | None:
    """Check a streamed target has two classes; re-encode to {0, 1} (smaller -> 0).

    Returns the note to show the user, or None.  Reads only y.
    """
    from handgrad.fitting.data import binary_labels

    if not rows.has_y:
        raise UserError("logistic regression needs a target: y.npy beside X.npy, or 'y' in the .npz.")
    seen: set[float] = set()
    if isinstance(rows, FileRows):
        with open(rows._y.path, "rb") as fy:
            buf = None
            for i in range(rows.lo, rows.hi, chunk_rows * 8):
                j = min(i + chunk_rows * 8, rows.hi)
                buf = rows._y.read(fy, i, j, buf)
                yn = np.frombuffer(buf, dtype=rows._y.dtype, count=j - i)
                seen.update(np.unique(yn).tolist())
                if len(seen) > 2:
                    break
    else:
        seen.update(torch.unique(rows.y[rows.lo:rows.hi]).tolist())
    vals = torch.tensor(sorted(seen)[:7], dtype=torch.float64)
    _, note = binary_labels(vals, name)
    if note and isinstance(rows, FileRows):
        hi = float(vals[1])
        rows.y_map = lambda y: (y == hi).to(y.dtype)
    return note


# ----------------------------------------------------------------- linear-predictor sums


class LinearSums:
    """Loss, gradient and Hessian of sum_i l(z_i, y_i) + (l2/2)||w||^2, z = Xw + b, in chunks.

    Parameters are the flattened (w[, b]).  Results are cached for the last point; with
    ``speculate`` on (Newton turns it on by asking for a Hessian), evaluating the loss at
    a trial point also forms the gradient and Hessian there in the same pass, so an
    accepted Newton step costs one pass over the rows.  ``hess_dtype=torch.float32``
    forms the Hessian block in float32 (accumulated in float64), keeping the loss,
    gradient and solution in float64: Newton with an inexact Hessian still converges to
    the float64 optimum, at a linear rate of about cond(H) * 1e-7 per step.
    """

    def __init__(self, per_sample, rows: Rows, like: Params, *, l2: float = 0.0,
                 chunk_rows: int | None = None, hess_dtype: torch.dtype | None = None,
                 reduce: Reduce | None = None):
        self.per_sample, self.rows, self.like = per_sample, rows, like
        self.l2 = float(l2)
        self.intercept = "b" in like
        self.d = rows.d
        self.p = self.d + int(self.intercept)
        self.chunk_rows = int(chunk_rows or default_chunk_rows(self.d))
        self.hess_dtype = hess_dtype
        self.reduce = reduce
        self.speculate = False
        self.passes = 0
        self._x: torch.Tensor | None = None
        self._f = self._g = self._H = None

    # cache ----------------------------------------------------------------------------
    def _hit(self, x: torch.Tensor, need_g: bool, need_H: bool) -> bool:
        if self._x is None or self._x.shape != x.shape or not torch.equal(self._x, x):
            return False
        return (not need_g or self._g is not None) and (not need_H or self._H is not None)

    def _eval(self, x: torch.Tensor, need_g: bool, need_H: bool) -> None:
        if not self._hit(x, need_g, need_H):
            f, g, H = self.sums(x, need_g=need_g, need_H=need_H)
            self._x, self._f, self._g, self._H = x.detach().clone(), f, g, H

    def value(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.speculate
        self._eval(x, spec, spec)
        return self._f

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        self._eval(x, True, False)
        return self._g

    def hess(self, x: torch.Tensor) -> torch.Tensor:
        self.speculate = True
        self._eval(x, True, True)
        return self._H

    # the pass ---------------------------------------------------------------------------
    def sums(self, x: torch.Tensor, *, need_g: bool = True, need_H: bool = True,
             need_f: bool = True):
        """One pass over the rows: (loss or None, flat gradient or None, Hessian or None).

        ``need_f=False`` (gradient alone) skips the per-sample losses: a hand gradient
        needs no forward value, where reverse-mode autograd must compute it first."""
        self.passes += 1
        d, p = self.d, self.p
        w = x[:d]
        b = x[d] if self.intercept else None
        dev, dt = x.device, x.dtype
        # the loss is accumulated in float64 even for float32 parameters: Newton's line
        # search compares losses whose difference is far below float32 resolution
        f = torch.zeros((), dtype=torch.float64, device=dev)
        g = torch.zeros(p, dtype=dt, device=dev) if need_g else None
        Hww = torch.zeros(d, d, dtype=dt, device=dev) if need_H else None
        Hwb = torch.zeros(d, dtype=dt, device=dev) if need_H else None
        Hbb = torch.zeros((), dtype=dt, device=dev)
        hdt = self.hess_dtype or dt
        for _, X, y in self.rows.chunks(self.chunk_rows):
            if X.dtype != dt:
                X = X.to(dt)
            z = torch.addmv(b, X, w) if b is not None else X @ w
            lz, e, h = self.per_sample(z, y, need_g, need_H, need_f)
            if need_f:
                f += lz.sum(dtype=torch.float64)
            if need_H and self.intercept:
                # X^T [e, h] in one product: the gradient and the Hessian's intercept column
                eh = X.T @ torch.stack([e, h], 1)
                g[:d] += eh[:, 0]
                Hwb += eh[:, 1]
                g[d] += e.sum()
                Hbb += h.sum()
            elif need_g:
                g[:d] += X.T @ e
                if self.intercept:
                    g[d] += e.sum()
            if need_H:
                if bool((h >= 0).all()):
                    Xs = X * h.sqrt().unsqueeze(1)
                    if hdt == dt:
                        Hww.addmm_(Xs.T, Xs)
                    else:
                        Xs = Xs.to(hdt)
                        Hww += (Xs.T @ Xs).to(dt)
                else:
                    Hww += (X.T.to(hdt) @ (X * h.unsqueeze(1)).to(hdt)).to(dt)
        H = None
        if need_H:
            H = torch.empty(p, p, dtype=dt, device=dev)
            H[:d, :d] = Hww
            if self.intercept:
                H[:d, d] = Hwb
                H[d, :d] = Hwb
                H[d, d] = Hbb
        if self.reduce is not None:
            # one message of 1 + p + p^2 numbers (float64, so the loss keeps its digits)
            parts = [f.reshape(1)] + ([g] if need_g else []) + ([H.reshape(-1)] if need_H else [])
            buf = self.reduce(torch.cat([t.to(torch.float64) for t in parts]))
            f = buf[0]
            if need_g:
                g = buf[1:1 + p].to(dt)
            if need_H:
                H = buf[1 + (p if need_g else 0):].reshape(p, p).to(dt)
        if self.l2:
            f = f + 0.5 * self.l2 * (w @ w)
            if need_g:
                g[:d] += self.l2 * w
            if need_H:
                idx = torch.arange(d, device=dev)
                H[idx, idx] += self.l2
        return (f if need_f else None), g, H


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


# --------------------------------------------------------------------------- covariance


def covariance(rows: Rows, *, chunk_rows: int | None = None, reduce: Reduce | None = None,
               dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and MLE covariance S = (1/n) sum_i (x_i - m)(x_i - m)^T over row chunks.

    One pass, about a shift s (the first chunk's mean):  S = (1/n) sum (x - s)(x - s)^T
    - (m - s)(m - s)^T.  With s within a standard error of m, the correction is tiny
    and nothing cancels (unlike sum x x^T / n - m m^T).  Across processes the shift is
    agreed first (rank 0's first chunk, via ``reduce`` of a one-hot-weighted sum), so
    the reduced sums are about the same point.  Returns (mean, S, n).
    """
    chunk_rows = int(chunk_rows or default_chunk_rows(rows.d))
    d = rows.d
    shift = None
    if reduce is not None:
        first = next(rows.chunks(chunk_rows), None)
        local = torch.zeros(d + 1, dtype=dtype)
        if first is not None and first[0] == 0:  # the process holding global row 0
            local[:d] = first[1].to(dtype).mean(0).cpu()
            local[d] = 1.0
        agreed = reduce(local.to(_device_of(rows)))
        shift = (agreed[:d] / agreed[d]).to(dtype)
    s1 = S = None
    n = 0
    for _, X, _ in rows.chunks(chunk_rows):
        X = X.to(dtype)
        if shift is None:
            shift = X.mean(0)
        if S is None:
            S = torch.zeros(d, d, dtype=dtype, device=X.device)
            s1 = torch.zeros(d, dtype=dtype, device=X.device)
        Xc = X - shift
        S.addmm_(Xc.T, Xc)
        s1 += Xc.sum(0)
        n += X.shape[0]
    if reduce is not None:
        dev = _device_of(rows)
        if S is None:
            S, s1 = torch.zeros(d, d, dtype=dtype, device=dev), torch.zeros(d, dtype=dtype, device=dev)
        buf = reduce(torch.cat([S.reshape(-1), s1, torch.tensor([float(n)], dtype=dtype, device=dev)]))
        S, s1, n = buf[: d * d].reshape(d, d), buf[d * d: d * d + d], int(round(float(buf[-1])))
    if not n:
        raise UserError("covariance of zero rows")
    delta = s1 / n
    S = S / n - torch.outer(delta, delta)
    S = 0.5 * (S + S.T)
    return shift + delta, S, n


def _device_of(rows: Rows) -> torch.device:
    return getattr(rows, "device", torch.device("cpu"))


# ------------------------------------------------------------------------ least squares


def least_squares(rows: Rows, *, intercept: bool = True, l2: float = 0.0,
                  chunk_rows: int | None = None, max_cond: float = 1e5, refine: int = 3,
                  fallback: str = "qr") -> tuple[torch.Tensor, torch.Tensor, dict]:
    """min ||X w + b - y||^2 + (l2/2)||w||^2, fast where that keeps the digits.

    Pass 1 forms the Gram matrix G = A^T A (A = [X, 1]) and A^T y chunk by chunk.  With
    D = diag(G)^(-1/2) (column scaling), D G D = R_s^T R_s by Cholesky; kappa = cond(R_s)
    equals the condition number of the column-scaled design.  If kappa <= max_cond the
    solution is taken from the corrected semi-normal equations: theta = R^-1 R^-T A^T y,
    then up to ``refine`` correction passes theta += R^-1 R^-T A^T (y - A theta), which
    give Householder-QR accuracy (about kappa * eps) while kappa^2 * eps is small
    (Bjorck, Numerical Methods for Least Squares Problems, sec. 2.5.4).  Otherwise (or
    if Cholesky fails) it falls back to Householder QR: in one piece for tensors in
    memory, chunked (TSQR: QR of [R; next chunk]) for files; with fallback="none" it
    returns (None, None, info) instead, for callers with their own accurate solver.

    Returns (theta, R with R^T R = A^T A (+ ridge), info dict: method, cond, passes).
    """
    chunk_rows = int(chunk_rows or default_chunk_rows(rows.d))
    d = rows.d
    p = d + int(intercept)
    dt = torch.float64
    dev = _device_of(rows)
    G = torch.zeros(p, p, dtype=dt, device=dev)
    Aty = torch.zeros(p, dtype=dt, device=dev)
    for _, X, y in rows.chunks(chunk_rows):
        X, y = X.to(dt), y.to(dt)
        G[:d, :d].addmm_(X.T, X)
        if intercept:
            xy = X.T @ torch.stack([torch.ones_like(y), y], 1)
            G[:d, d] += xy[:, 0]
            G[d, d] += X.shape[0]
            Aty[:d] += xy[:, 1]
            Aty[d] += y.sum()
        else:
            Aty += X.T @ y
    if intercept:
        G[d, :d] = G[:d, d]
    if l2:
        idx = torch.arange(d, device=dev)
        G[idx, idx] += l2 / 2
    scale = G.diagonal().clamp_min(torch.finfo(dt).tiny).rsqrt()
    Gs = G * scale.unsqueeze(0) * scale.unsqueeze(1)
    Rs, info = torch.linalg.cholesky_ex(Gs, upper=True)
    kappa = math.inf
    if int(info) == 0 and bool(torch.isfinite(Rs).all()):
        kappa = float(torch.linalg.cond(Rs))
    if kappa > max_cond:
        if fallback == "none":  # the caller has its own accurate solver for this case
            return None, None, {"method": None, "cond": kappa, "passes": 1}
        theta, R = _householder(rows, intercept, l2, chunk_rows)
        return theta, R, {"method": "householder", "cond": kappa, "passes": 2}
    R = Rs / scale.unsqueeze(0)  # R^T R = G

    def solve(rhs):
        u = torch.linalg.solve_triangular(R.T, rhs.unsqueeze(1), upper=False)
        return torch.linalg.solve_triangular(R, u, upper=True).squeeze(1)

    theta = solve(Aty)
    passes = 1
    for _ in range(refine):
        r = _normal_residual(rows, theta, intercept, l2, chunk_rows)
        passes += 1
        delta = solve(r)
        theta = theta + delta
        if float(delta.norm()) <= 1e-14 * float(theta.norm()):
            break
    return theta, R, {"method": "cholesky-qr (corrected semi-normal equations)",
                      "cond": kappa, "passes": passes}


def _normal_residual(rows, theta, intercept, l2, chunk_rows):
    """A^T (y - A theta) - (l2/2) w: the gradient of the loss, over -2, in one pass."""
    d = rows.d
    w = theta[:d]
    out = torch.zeros_like(theta)
    for _, X, y in rows.chunks(chunk_rows):
        X, y = X.to(theta.dtype), y.to(theta.dtype)
        r = y - X @ w
        if intercept:
            r = r - theta[d]
            out[d] += r.sum()
        out[:d] += X.T @ r
    if l2:
        out[:d] -= (l2 / 2) * w
    return out


def _householder(rows, intercept, l2, chunk_rows):
    """Householder QR of [A, y] (tensors: one piece; files: chunk by chunk, TSQR)."""
    d = rows.d
    p = d + int(intercept)
    dt = torch.float64
    dev = _device_of(rows)
    Rall = torch.zeros(0, p + 1, dtype=dt, device=dev)
    if l2:
        ridge = torch.zeros(d, p + 1, dtype=dt, device=dev)
        ridge[:, :d] = math.sqrt(l2 / 2) * torch.eye(d, dtype=dt, device=dev)
        Rall = ridge
    size = rows.n if isinstance(rows, TensorRows) else max(chunk_rows, 4 * p)
    for _, X, y in rows.chunks(size):
        cols = [X.to(dt)] + ([torch.ones(X.shape[0], 1, dtype=dt, device=dev)] if intercept
                             else []) + [y.to(dt).unsqueeze(1)]
        Rall = torch.linalg.qr(torch.cat([Rall, torch.cat(cols, 1)]), mode="r")[1]
    R = Rall[:p, :p]
    qty = Rall[:p, p]
    theta = torch.linalg.solve_triangular(R, qty.unsqueeze(1), upper=True).squeeze(1)
    return theta, R


# --------------------------------------------------------------------- choosing a path


def fast_sums(entry, data, like: Params, hp: dict, *, chunk_rows: int | None = None,
              hess_dtype: torch.dtype | None = None, reduce: Reduce | None = None,
              penalty: bool = True):
    """The chunked evaluator for a model and data set, or None for the plain path.

    ``data`` is a :class:`handgrad.fitting.data.Data` (in memory) or a :class:`Rows` (a file, or
    this process's rows).  Linear-predictor models whose derivation offers
    ``per_sample`` get :class:`LinearSums` (fused, one pass per Newton step); any other
    model gets :class:`ChunkedSums` when chunking or a reduction is asked for.
    """
    rows = data if isinstance(data, Rows) else TensorRows(data.X, data.y)
    per_sample = getattr(entry.derivation, "per_sample", None)
    linear = (per_sample is not None and set(like) <= {"w", "b"} and "w" in like
              and like["w"].dim() == 1 and set(hp) <= {"l2"})
    if linear:
        # the L2 term is added after the reduction, once, identically on every process
        return LinearSums(per_sample, rows, like, l2=hp.get("l2", 0.0), chunk_rows=chunk_rows,
                          hess_dtype=hess_dtype, reduce=reduce)
    if chunk_rows is None and reduce is None:
        return None
    make = None
    if not isinstance(data, Rows):
        make = _data_like(data)
    return ChunkedSums(entry, rows, like, hp, chunk_rows=chunk_rows or rows.n, reduce=reduce,
                       penalty=penalty, make_data=make)


def _data_like(data):
    from dataclasses import replace

    return lambda X, y: replace(data, X=X, y=y)
