"""CSV loading speed: handgrad's loader against numpy.loadtxt and pandas (C engine).

Standalone: writes a 200k x 20 CSV of float64 reprs (about 80 MB) to a temporary folder
and prints MB/s (1 MB = 1e6 bytes) for each reader, best of ``--repeat`` runs, all in one
run so the machine's load is shared alike.  ``python benchmarks/csv_speed.py``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def write_csv(path: str, n: int, d: int, seed: int = 0) -> None:
    X = np.random.default_rng(seed).normal(size=(n, d))
    with open(path, "w") as fh:
        fh.write(",".join(f"x{j}" for j in range(d - 1)) + ",y\n")
        fh.writelines(",".join(map(repr, row)) + "\n" for row in X.tolist())


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cols", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    from handgrad.fitting import data

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.csv")
        write_csv(path, args.rows, args.cols)
        mb = os.path.getsize(path) / 1e6
        readers = {
            "handgrad read_csv": lambda: data.read_csv(path),
            "handgrad load (+ validation)": lambda: data.load(path, "y"),
            "numpy.loadtxt": lambda: np.loadtxt(path, delimiter=",", skiprows=1),
        }
        try:
            import pandas as pd
        except ImportError:
            pd = None
        if pd is not None:
            readers["pandas.read_csv (C engine)"] = lambda: pd.read_csv(path, engine="c")
        print(f"{args.rows} x {args.cols} CSV, {mb:.1f} MB; best of {args.repeat}; "
              f"pandas {pd.__version__ if pd is not None else 'not installed'}")
        ref = np.loadtxt(path, delimiter=",", skiprows=1)
        assert np.array_equal(data.read_csv(path)[1], ref), "handgrad's values differ"
        for name, fn in readers.items():
            s = best(fn, args.repeat)
            print(f"  {name:30s} {s:7.3f} s  {mb / s:7.0f} MB/s")


if __name__ == "__main__":
    main()
