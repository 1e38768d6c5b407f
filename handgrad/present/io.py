"""Output files written whole or not at all: a temporary file in the same folder, then
``os.replace`` (atomic on POSIX and Windows when both paths are on one file system).

Every file the CLI writes (JSON, plots, reports) goes through here, so an interrupted or
failing run never leaves a half-written file, and an existing file is only replaced by a
complete new one.  Input files are never opened for writing anywhere in handgrad.

    from handgrad.present.io import atomic_path, write_json, write_text
    write_json("out/fit.json", result)
    with atomic_path("plot.png") as tmp:      # for writers that want a file name
        fig.savefig(tmp, format="png")
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator

from handgrad.errors import UserError


def _target_dir(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"Output path is a directory: {path}")
    if not os.path.isdir(folder):
        raise UserError(f"Output folder does not exist: {folder} (create it first).")
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on a clean exit it replaces ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is left exactly as it was.  The temporary name keeps ``path``'s extension,
    so writers that infer the format from it (matplotlib's savefig) still work.
    """
    path = os.fspath(path)
    folder = _target_dir(path)
    base = os.path.basename(path)
    suffix = os.path.splitext(base)[1]
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=folder)
    except OSError as exc:
        raise UserError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    os.close(fd)
    try:
        yield tmp
        _fsync(tmp)
        mode = _mode_for(path)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync(path: str) -> None:
    with contextlib.suppress(OSError), open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _mode_for(path: str) -> int:
    """Keep an existing file's permissions; new files get the usual 0o666 & ~umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding, newline="") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, obj, *, indent: int = 2) -> None:
    """Serialise first (so an unserialisable object never touches the disk), then write.

    Non-finite floats are written as the strings "nan", "inf", "-inf" (strict JSON)."""
    write_text(path, dumps(obj, indent=indent) + "\n")


def dumps(obj, *, indent: int = 2) -> str:
    """Strict JSON text: non-finite floats become the strings "nan", "inf", "-inf"."""
    return json.dumps(_jsonable(obj), indent=indent, allow_nan=False)


def _jsonable(obj):
    if isinstance(obj, float) and obj != obj:
        return "nan"
    if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
