"""The prepared GPU run: every CUDA path once, with what it measured written to a file.

    python -m handgrad.bench.gpu_check                    # on a CUDA machine (under 5 minutes)
    python -m handgrad.bench.gpu_check --device cpu --quick --out DIR   # the CPU dry run

Runs, on the device: `check --all`, `derive --all`, every configs/*_gpu.toml, a fit of
each model, a streamed fit from a .npy file to the device, and logistic Newton on data
held in device memory (n x d float64) timed per pass against one read of X (the memory
floor: n*d*8 bytes at the card's bandwidth).  Writes gpu_<card>.json (and prints it) in
--out; each step records its exit status, seconds and the last lines it printed, so a
failure on the GPU is a row to fix, not a lost run.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(args: list[str], timeout: int) -> dict:
    t = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "handgrad.cli", *args], capture_output=True,
                           text=True, timeout=timeout)
        code, tail = r.returncode, (r.stdout + r.stderr).strip().splitlines()[-4:]
    except subprocess.TimeoutExpired:
        code, tail = 124, [f"timed out after {timeout} s"]
    return {"command": "handgrad " + " ".join(args), "exit": code,
            "seconds": round(time.perf_counter() - t, 3), "tail": tail}


def _in_memory_newton(device: str, n: int, d: int) -> dict:
    """Logistic Newton on X already on the device: seconds per pass vs one read of X."""
    import torch

    from handgrad import registry
    from handgrad.fitting import solvers
    from handgrad.fitting.data import Data
    from handgrad.params import flatten

    g = torch.Generator(device=device).manual_seed(0)
    X = torch.randn(n, d, generator=g, dtype=torch.float64, device=device)
    w = 0.1 * torch.randn(d, generator=g, dtype=torch.float64, device=device)
    y = (torch.rand(n, generator=g, dtype=torch.float64, device=device)
         < torch.sigmoid(X @ w)).to(torch.float64)
    entry = registry.get("logistic")
    data = Data(X, y)
    like = entry.model.init_params(data)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    v = torch.ones(d, dtype=torch.float64, device=device)
    sync()
    t = time.perf_counter()
    for _ in range(3):
        X @ v
    sync()
    read = (time.perf_counter() - t) / 3
    obj = solvers.Objective(entry, data, like, {"l2": 0.0})
    sync()
    t = time.perf_counter()
    res = solvers.newton(obj, flatten(like))
    sync()
    total = time.perf_counter() - t
    passes = obj.fast.passes
    return {"n": n, "d": d, "converged": res.converged, "iterations": res.iterations,
            "grad_norm": res.grad_norm, "seconds": round(total, 4), "passes": passes,
            "seconds_per_pass": round(total / max(1, passes), 5),
            "one_read_of_X_seconds": round(read, 5),
            "pass_over_read": round(total / max(1, passes) / read, 2) if read > 0 else None}


def run(device: str, quick: bool) -> dict:
    import torch

    card = torch.cuda.get_device_name(0) if device.startswith("cuda") and \
        torch.cuda.is_available() else "cpu"
    out: dict = {"device": device, "card": card, "torch": torch.__version__,
                 "quick": quick, "steps": []}
    steps = out["steps"]
    seeds = ["--seed", "0"] if quick else []
    steps.append(_cli(["check", "--all", "--device", device, *seeds], 600))
    steps.append(_cli(["derive", "--all"], 600))
    for cfg in sorted(glob.glob(os.path.join(ROOT, "configs", "*_gpu.toml"))):
        steps.append(_cli(["run", cfg, "--device", device, "--json"], 600))
    small = ["--n-samples", "500"] if quick else []
    for name in ("least_squares", "logistic", "poisson", "gaussian", "softmax", "two_layer"):
        extra = ["--epochs", "2"] if name == "two_layer" and quick else []
        steps.append(_cli(["fit", name, "--device", device, "--json", *small, *extra], 600))
    with tempfile.TemporaryDirectory() as tmp:
        n = 20_000 if quick else 2_000_000
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, 50))
        y = (rng.random(n) < 1 / (1 + np.exp(-X[:, 0]))).astype(float)
        np.save(os.path.join(tmp, "X.npy"), X)
        np.save(os.path.join(tmp, "y.npy"), y)
        steps.append(_cli(["fit", "logistic", "--newton", "--data", os.path.join(tmp, "X.npy"),
                           "--chunk-rows", "4096" if quick else "262144", "--device", device,
                           "--json"], 600))
    n, d = (20_000, 50) if quick else (20_000_000, 100)
    try:
        out["in_memory_newton"] = _in_memory_newton(device, n, d)
    except Exception as exc:  # noqa: BLE001 - recorded, so one failure does not lose the run
        out["in_memory_newton"] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    out["ok"] = all(s["exit"] == 0 for s in steps) and "error" not in out["in_memory_newton"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes (the CPU dry run)")
    ap.add_argument("--out", default="bench-results")
    a = ap.parse_args(argv)
    res = run(a.device, a.quick)
    os.makedirs(a.out, exist_ok=True)
    card = res["card"].replace(" ", "_").replace("/", "_")
    path = os.path.join(a.out, f"gpu_{card}.json")
    from handgrad.present import io

    io.write_text(path, io.dumps(res) + "\n")
    print(json.dumps(res, indent=1))
    print(f"written: {path}", file=sys.stderr)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
