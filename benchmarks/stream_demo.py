"""Logistic Newton on a .npy larger than you would like to hold in memory, streamed.

    python -m benchmarks.stream_demo --rows 2000000 --cols 100 [--compare] [--keep]

Writes X.npy / y.npy (float64) in 100k-row blocks into a temporary folder (or --dir),
times one plain read of the file (the floor a streamed fit is measured against), runs
`cli.py fit logistic --newton --data X.npy --chunk-rows N --json` in a fresh process and
reports its time, passes over the file and peak resident memory (ru_maxrss).  With
--compare it also fits the file loaded in memory and prints the largest coefficient
difference.  The files are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def write_data(folder: str, n: int, d: int, seed: int = 0, block: int = 100_000) -> None:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d) / np.sqrt(d)
    X = np.lib.format.open_memmap(os.path.join(folder, "X.npy"), mode="w+", dtype=np.float64,
                                  shape=(n, d))
    y = np.lib.format.open_memmap(os.path.join(folder, "y.npy"), mode="w+", dtype=np.float64,
                                  shape=(n,))
    for i in range(0, n, block):
        m = min(block, n - i)
        Xi = rng.standard_normal((m, d))
        X[i:i + m] = Xi
        y[i:i + m] = rng.random(m) < 1.0 / (1.0 + np.exp(-(Xi @ w - 0.5)))
        X.flush()
    del X, y


def read_once(path: str, chunk_bytes: int = 64 << 20) -> float:
    """Seconds to read the whole file once (page cache permitting: say which)."""
    t = time.perf_counter()
    buf = bytearray(chunk_bytes)
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(buf):
            pass
    return time.perf_counter() - t


def fit(path: str, chunk_rows: int | None, threads: int | None) -> dict:
    cmd = [sys.executable, "-m", "handgrad.cli", "fit", "logistic", "--newton",
           "--data", path, "--device", "cpu", "--json"]
    if chunk_rows:
        cmd += ["--chunk-rows", str(chunk_rows)]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    out = json.loads(res.stdout)
    out["wall_seconds"] = wall
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--chunk-rows", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args(argv)
    folder = a.dir or tempfile.mkdtemp(prefix="handgrad_stream_")
    os.makedirs(folder, exist_ok=True)
    try:
        t = time.perf_counter()
        write_data(folder, a.rows, a.cols)
        path = os.path.join(folder, "X.npy")
        size_gb = os.path.getsize(path) / 1e9
        report = {"rows": a.rows, "cols": a.cols, "file_gb": size_gb,
                  "write_seconds": time.perf_counter() - t, "read_once_seconds": read_once(path)}
        st = fit(path, a.chunk_rows, a.threads)
        report.update({"stream_fit_seconds": st["seconds"], "stream_wall_seconds": st["wall_seconds"],
                       "iterations": st["iterations"], "passes": st["scale"]["passes"],
                       "peak_rss_mb": st["scale"]["peak_rss_mb"], "converged": st["converged"],
                       "grad_norm": st["grad_norm"], "chunk_rows": a.chunk_rows})
        report["seconds_per_pass"] = st["seconds"] / max(1, st["scale"]["passes"])
        report["pass_over_read"] = report["seconds_per_pass"] / report["read_once_seconds"]
        if a.compare:
            mem = fit(path, None, a.threads)
            xa = np.array(st["params"]["w"] + [st["params"]["b"]])
            xb = np.array(mem["params"]["w"] + [mem["params"]["b"]])
            report.update({"memory_fit_seconds": mem["seconds"],
                           "coef_max_diff_vs_memory": float(np.abs(xa - xb).max())})
        print(json.dumps(report, indent=2))
    finally:
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
