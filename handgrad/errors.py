"""Error types the command line maps to exit statuses (DESIGN.md), and the memory check
that turns a size too large to allocate into a message before anything is allocated."""

from __future__ import annotations

import os


class UserError(Exception):
    """Bad usage or bad input: the CLI prints the one-line message and exits 2."""


class HandgradWarning(RuntimeWarning):
    """Numerical trouble with a remedy (Newton fallbacks, withheld std errors, ...)."""


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes this process can still allocate: the system's MemAvailable (Linux), capped by
    a container's memory limit (cgroup v2 or v1) less what the container uses; else the
    free physical pages; None when the platform says nothing."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    for limit_path, used_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                   "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, used = _read_int(limit_path), _read_int(used_path)
        if limit is not None and used is not None and limit < 1 << 60:  # 'max': no limit
            left = max(limit - used, 0)
            avail = left if avail is None else min(avail, left)
            break
    return avail


def human_bytes(n: float) -> str:
    """1.5e10 -> '15 GB' (decimal units, as memory is sold)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "bytes" or n >= 10 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.3g} EB"  # pragma: no cover


def memory_problem(nbytes: float, what: str) -> str | None:
    """When ``nbytes`` (what ``what`` needs) exceeds the memory available now: the first half
    of a one-line message ("<what> needs about 80 GB of memory, more than the 12 GB
    available"); None when it fits or the platform cannot say."""
    avail = available_memory()
    if avail is None or nbytes <= avail:
        return None
    return (f"{what} needs about {human_bytes(nbytes)} of memory, more than the "
            f"{human_bytes(avail)} available")
