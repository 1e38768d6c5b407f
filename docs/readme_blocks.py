"""Every command output shown in README.md and docs/*.md, produced from a real run.

    python docs/readme_blocks.py            # rerun every output block, rewrite the files
    python docs/readme_blocks.py --check    # exit 1 and show the first difference if any block drifted

A block is an indented line `    $ python cli.py ARGS  [# comment]` and the indented lines
after it (blank lines inside included) up to the next unindented line or the next `$` line;
a comment "(first N lines)" shows only those, then "...", and "(lines A-B)" shows lines A to
B (1-based) of the output alone, and "(stderr)" shows what the command writes to stderr
(its error and warning lines) instead of stdout.  Output shown without its command line (a table quoted in
prose) is a block too: an HTML comment `<!-- $ python cli.py ARGS (lines A-B) -->` on its own
line, then the indented block right after it (one blank line between them allowed); the
comment is invisible on a rendered page.  Such a comment may also run a module of the
repository, `<!-- $ python -m tests.ls_designs -->`.  Run-to-run noise is masked before comparing: wall
times ("0.232 s", the seconds column of a comparison), numbers at rounding level (below 1e-6
in e-notation, such as a finite-difference error, which moves with the CPU's vector width and
summation order from machine to machine) and the path of a plot written during --check (a
temporary file, so the committed docs/conv.png is not rewritten by a test).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "    $ "
HIDDEN = re.compile(r"^<!-- \$ (python (?:cli\.py|-m [\w.]+) .*?) -->\s*$")

_TIME = re.compile(r"\b\d+\.\d+ s\b")
_SECONDS_COL = re.compile(r"(\s)\d+\.\d{3}$")  # the last column of the --compare table
_ROUNDING = re.compile(r"\b\d(\.\d+)?e-(0[7-9]|[1-9]\d)\b")  # 2.1e-10, 5e-07: below 1e-6


def files() -> list[str]:
    """README.md and every Markdown page of the documentation (docs/), relative to ROOT."""
    docs = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                                                             recursive=True))
    return ["README.md", *docs]


def mask(text: str) -> str:
    lines = []
    for line in text.splitlines():
        line = _TIME.sub("#.### s", line)
        line = _ROUNDING.sub("<1e-6", line)
        if re.search(r"\b(yes|no|stalled)\s+\S+\s+\S+\s+\S+\s+\d+\.\d{3}$", line):
            line = _SECONDS_COL.sub(r"\1#.###", line)
        lines.append(line.rstrip())
    return "\n".join(lines)


def _block_end(lines: list[str], j: int) -> int:
    while j < len(lines) and (lines[j].startswith("    ") or lines[j] == "") \
            and not lines[j].startswith(PROMPT):
        j += 1
    return j


def blocks(text: str) -> list[tuple[int, int, str, bool]]:
    """(first line of the output, end line (exclusive), command, whether the command line
    is shown) of each output block."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        hidden = HIDDEN.match(lines[i])
        if lines[i].startswith(PROMPT + "python cli.py "):
            start, command = i + 1, lines[i][len(PROMPT):]
        elif hidden:
            start, command = i + 1, hidden.group(1)
            if start < len(lines) and lines[start] == "":
                start += 1
        else:
            i += 1
            continue
        j = _block_end(lines, start)
        while j > start and lines[j - 1] == "":
            j -= 1
        out.append((start, j, command, not hidden))
        i = max(j, i + 1)
    return out


_FIRST = re.compile(r"\(first (\d+) lines\)")
_LINES = re.compile(r"\(lines (\d+)-(\d+)\)")
_STDERR = re.compile(r"\(stderr\)")


def run(command: str, plot_dir: str | None) -> str:
    """The command's stdout; "(first N lines)" keeps those and a last line "...",
    "(lines A-B)" keeps lines A to B."""
    selector = command.split("#", 1)[1] if "#" in command else command
    words = shlex.split(_STDERR.sub("", _LINES.sub("", command.split("#")[0])))
    prefix, args = (words[1:3], words[3:]) if words[1] == "-m" else (["cli.py"], words[2:])
    if plot_dir is not None:
        args = [os.path.join(plot_dir, os.path.basename(a)) if a.endswith(".png") else a
                for a in args]
    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run([sys.executable, *prefix, *args], cwd=ROOT, capture_output=True,
                       text=True, env=env, timeout=900)
    out = (r.stderr if "(stderr)" in selector else r.stdout).rstrip("\n")
    if plot_dir is not None:
        out = out.replace(plot_dir + os.sep, "docs/")
    lines = out.split("\n")
    first, some = _FIRST.search(selector), _LINES.search(command)
    if some:
        out = "\n".join(lines[int(some.group(1)) - 1: int(some.group(2))])
    elif first and len(lines) > int(first.group(1)):
        out = "\n".join(lines[: int(first.group(1))] + ["..."])
    return out


def render(text: str, plot_dir: str | None = None) -> str:
    lines = text.split("\n")
    for start, end, command, _shown in reversed(blocks(text)):
        body = run(command, plot_dir)
        lines[start:end] = [("    " + ln).rstrip() for ln in body.split("\n")]
    return "\n".join(lines)


def check(name: str, text: str, fresh: str) -> str | None:
    """None when every block of the file equals the fresh run (masked), else a message."""
    a, b = mask(text).split("\n"), mask(fresh).split("\n")
    if a == b:
        return None
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return (f"{name} line {k + 1} differs from a fresh run:\n  {name}: "
            f"{a[k] if k < len(a) else '(end)'}\n  fresh:  {b[k] if k < len(b) else '(end)'}\n"
            "rerun: python docs/readme_blocks.py")


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("--")] or files()
    status = 0
    for name in names:
        path = os.path.join(ROOT, name)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        n = len(blocks(text))
        if "--check" in argv:
            with tempfile.TemporaryDirectory() as tmp:
                problem = check(name, text, render(text, plot_dir=tmp))
            if problem:
                print(problem)
                status = 1
            else:
                print(f"{name}: {n} output blocks match a fresh run")
            continue
        fresh = render(text)
        if fresh != text:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(fresh)
        print(f"{name}: {n} output blocks rewritten from fresh runs")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
