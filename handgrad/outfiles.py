"""Output files written whole or not at all: a temporary file beside the target, then
os.replace (atomic on POSIX and Windows within one folder)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from handgrad.errors import UserError


def check_dir(path: str, what: str = "output") -> str:
    """The folder that will hold ``path``; a UserError unless it exists and is writable."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"Cannot write {what} {path}: folder {folder} does not exist.")
    if not os.access(folder, os.W_OK):
        raise UserError(f"Cannot write {what} {path}: folder {folder} is not writable.")
    if os.path.isdir(path):
        raise UserError(f"Cannot write {what} {path}: it is a folder.")
    return folder


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was."""
    folder = check_dir(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str, text: str) -> str:
    with replacing(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    return path


def write_bytes(path: str, data: bytes) -> str:
    with replacing(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return path
