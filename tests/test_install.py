"""A clean install: one import name in site-packages, and a user's own models.py or cli.py
in the working folder does not shadow handgrad's."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_one_import_name(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip(f"no wheel build here: {r.stderr.strip().splitlines()[-1:]}")
    (wheel,) = tmp_path.glob("handgrad-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"handgrad", wheel.name.split("-py")[0] + ".dist-info"}, tops
    for sub in ("models/logistic.py", "derivations/logistic.py", "bench/bench.py", "cli.py",
                "notation/__init__.py", "fitting/pipeline.py", "derivations/logistic.hg",
                "derivations/softmax.hg"):  # the built-in derivations derive reads
        assert f"handgrad/{sub}" in names, sub


def test_a_users_models_py_does_not_shadow_handgrad(tmp_path):
    (tmp_path / "models.py").write_text("raise SystemExit('the user models.py was imported')\n")
    (tmp_path / "derivations.py").write_text("raise SystemExit('the user derivations.py')\n")
    (tmp_path / "cli.py").write_text("raise SystemExit('the user cli.py was imported')\n")
    code = ("import handgrad, numpy as np; from handgrad import registry\n"
            "assert all(registry.get(n) for n in registry.NAMES)\n"
            "X = np.arange(12.).reshape(6, 2) ** 1.5\n"
            "print(handgrad.fit('least_squares', X, np.arange(6.)).converged)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr
    r = subprocess.run([sys.executable, "-m", "handgrad.cli", "list"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "logistic" in r.stdout, r.stderr
