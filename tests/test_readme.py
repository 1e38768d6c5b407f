"""The README cannot drift: every `$ python cli.py ...` block in it equals a fresh run
(timings masked), as docs/readme_blocks.py --check compares them."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_readme_output_blocks_match_a_fresh_run():
    r = subprocess.run([sys.executable, "docs/readme_blocks.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_readme_cites_only_files_that_exist():
    import re

    text = (ROOT / "README.md").read_text()
    for path in set(re.findall(r"`((?:handgrad|models|derivations|examples|configs|docs|data|"
                               r"benchmarks|tests)/[\w./-]+\.\w+)`", text)):
        assert (ROOT / path).exists(), path
