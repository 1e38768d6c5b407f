"""Rows of (X, y) readable in chunks: tensors in memory (:class:`TensorRows`, chunks are
views) or
``.npy`` / ``.npz`` files (:class:`FileRows`), read chunk by chunk with positioned reads, so
resident memory stays O(chunk * d + d^2) whatever the file's size (a memory map would count
every page it touched as resident).
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable, Iterator

import numpy as np
import torch

from handgrad.errors import UserError

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
    except (ValueError, EOFError) as exc:
        raise UserError(f"Cannot read {path}: {str(exc) or 'the file ends early'}") from None
    return fh.tell(), shape, dtype, fortran


def _open_npy(path: str) -> _Array:
    from handgrad.fitting.data import check_numpy_file

    check_numpy_file(path)
    with open(path, "rb") as fh:
        off, shape, dtype, fortran = _npy_header(fh, path)
    return _Array(path, off, shape, dtype, fortran)


def _open_npz_member(path: str, name: str) -> _Array | None:
    from handgrad.fitting.data import check_numpy_file

    check_numpy_file(path)  # a zip archive, or one line saying what the file is
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise UserError(f"{path} is not a readable NumPy .npz archive ({exc}).") from None
    with zf:
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
                    _check_chunk(X, y, i, self.path, self.n)
                yield i, X, y
        self.checked = True


def _check_chunk(X: torch.Tensor, y: torch.Tensor | None, first: int, path: str,
                 n: int = 1) -> None:
    if not bool(torch.isfinite(X).all()):
        r, c = (~torch.isfinite(X)).nonzero()[0].tolist()
        kind = "NaN" if math.isnan(float(X[r, c])) else "inf"
        raise UserError(f"{path}: X contains {kind} (row {first + r}, column {c}).")
    # as the in-memory loader: a sum of squares over the n rows must not overflow
    limit = math.sqrt(torch.finfo(torch.float64).max / max(1, n)) / 4
    top = X.abs().amax(dim=0) if X.numel() else X.new_zeros(0)
    if top.numel() and float(top.max()) > limit:
        c = int(top.argmax())
        raise UserError(f"{path}: column {c} reaches |x| = {float(top[c]):.3g}, so a sum of "
                        f"squares over its {n} rows overflows float64 (|x| above {limit:.2g}); "
                        "rescale the column (divide it by a power of ten) before fitting.")
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


