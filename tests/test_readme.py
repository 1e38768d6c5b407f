"""The README and the documentation cannot drift: every command output block in README.md
and docs/*.md equals a fresh run (timings masked), as docs/readme_blocks.py --check compares
them; the README stays a five-minute read; the documentation site builds."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.slow
def test_output_blocks_match_a_fresh_run():
    r = subprocess.run([sys.executable, "docs/readme_blocks.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_cite_only_files_that_exist(page):
    text = page.read_text()
    for path in set(re.findall(r"`((?:handgrad|models|derivations|examples|configs|docs|data|"
                               r"benchmarks|tests)/[\w./-]+\.\w+)`", text)):
        assert (ROOT / path).exists(), f"{page.name}: {path}"
    base = page.parent
    for link in re.findall(r"\]\(([\w./-]+\.(?:md|png))\)", text):
        assert (base / link).exists(), f"{page.name}: link {link}"


def test_the_readme_is_a_five_minute_read():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_every_docs_page_is_in_the_site_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f": {page.name}" in nav, page.name


def test_a_hidden_command_block_is_checked_like_a_shown_one():
    """A table quoted without its command line (behind an HTML comment) is a block too: a
    planted wrong digit in it is found."""
    sys.path.insert(0, str(ROOT / "docs"))
    import readme_blocks

    text = "x\n<!-- $ python cli.py list (lines 2-2) -->\n\n    logistic  planted\n\ny\n"
    (start, end, command, shown), = readme_blocks.blocks(text)
    assert (start, end, shown) == (3, 4, False) and command.startswith("python cli.py list")
    fresh = readme_blocks.render(text)
    assert "logistic        Logistic regression" in fresh
    assert readme_blocks.check("t.md", text, fresh) is not None
    assert readme_blocks.check("t.md", fresh, readme_blocks.render(fresh)) is None


@pytest.mark.skipif(shutil.which("mkdocs") is None and
                    not (pathlib.Path(sys.executable).parent / "mkdocs").exists(),
                    reason="mkdocs not installed (pip install -e '.[docs]')")
def test_the_documentation_site_builds(tmp_path):
    mkdocs = shutil.which("mkdocs") or str(pathlib.Path(sys.executable).parent / "mkdocs")
    r = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "notation" / "index.html").exists()


def test_a_block_can_show_what_a_command_writes_to_stderr():
    """The error messages quoted in docs/errors.md are real runs' stderr, checked the same way."""
    sys.path.insert(0, str(ROOT / "docs"))
    import readme_blocks

    text = "<!-- $ python cli.py fit nosuchmodel (stderr) -->\n\n    planted\n"
    fresh = readme_blocks.render(text)
    assert "error:" in fresh and "nosuchmodel" in fresh and "planted" not in fresh


def test_the_benchmark_table_in_the_docs_is_the_committed_one():
    """docs/performance.md quotes benchmarks/results/bench.md as the benchmark wrote it: no
    number in the table is typed by hand."""
    page = (ROOT / "docs" / "performance.md").read_text()
    quoted = page.split("<!-- benchmarks/results/bench.md -->\n", 1)[1]
    quoted = quoted.split("<!-- end of benchmarks/results/bench.md -->", 1)[0]
    committed = (ROOT / "benchmarks" / "results" / "bench.md").read_text()
    assert quoted.strip() == committed.strip()
