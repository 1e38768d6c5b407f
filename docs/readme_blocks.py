"""Every command output shown in README.md, produced from a real run.

    python docs/readme_blocks.py            # rerun every `$ python cli.py ...` block, rewrite README.md
    python docs/readme_blocks.py --check    # exit 1 and show the first difference if any block drifted

A block is an indented line `    $ python cli.py ARGS  [# comment]` and the indented lines
after it (blank lines inside included) up to the next unindented line or the next `$` line;
a comment "(first N lines)" shows only those, then "...".  Run-to-run noise is
masked before comparing: wall times ("0.232 s", the seconds column of a comparison), numbers
at rounding level (below 1e-6 in e-notation, such as a finite-difference error, which moves with
the CPU's vector width and summation order from machine to machine) and the
path of a plot written during --check (a temporary file, so the committed docs/conv.png is
not rewritten by a test).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
PROMPT = "    $ "

_TIME = re.compile(r"\b\d+\.\d+ s\b")
_SECONDS_COL = re.compile(r"(\s)\d+\.\d{3}$")  # the last column of the --compare table
_ROUNDING = re.compile(r"\b\d(\.\d+)?e-(0[7-9]|[1-9]\d)\b")  # 2.1e-10, 5e-07: below 1e-6


def mask(text: str) -> str:
    lines = []
    for line in text.splitlines():
        line = _TIME.sub("#.### s", line)
        line = _ROUNDING.sub("<1e-6", line)
        if re.search(r"\b(yes|no|stalled)\s+\S+\s+\S+\s+\S+\s+\d+\.\d{3}$", line):
            line = _SECONDS_COL.sub(r"\1#.###", line)
        lines.append(line.rstrip())
    return "\n".join(lines)


def blocks(text: str) -> list[tuple[int, int, str]]:
    """(first line, end line (exclusive), command) of each output block."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        if lines[i].startswith(PROMPT + "python cli.py "):
            j = i + 1
            while j < len(lines) and (lines[j].startswith("    ") or lines[j] == "") \
                    and not lines[j].startswith(PROMPT):
                j += 1
            while j > i + 1 and lines[j - 1] == "":
                j -= 1
            out.append((i, j, lines[i][len(PROMPT):]))
            i = j
        else:
            i += 1
    return out


_FIRST = re.compile(r"#.*\(first (\d+) lines\)")


def run(command: str, plot_dir: str | None) -> str:
    """The command's stdout; a block whose comment says "(first N lines)" shows those and
    a last line "..."."""
    args = shlex.split(command.split("#")[0])[2:]  # drop "python cli.py"
    if plot_dir is not None:
        args = [os.path.join(plot_dir, os.path.basename(a)) if a.endswith(".png") else a
                for a in args]
    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True,
                       text=True, env=env, timeout=900)
    out = r.stdout.rstrip("\n")
    if plot_dir is not None:
        out = out.replace(plot_dir + os.sep, "docs/")
    first = _FIRST.search(command)
    if first and len(out.split("\n")) > int(first.group(1)):
        out = "\n".join(out.split("\n")[: int(first.group(1))] + ["..."])
    return out


def render(text: str, plot_dir: str | None = None) -> str:
    lines = text.split("\n")
    for start, end, command in reversed(blocks(text)):
        body = run(command, plot_dir)
        new = [lines[start]] + [("    " + ln).rstrip() for ln in body.split("\n")]
        lines[start:end] = new
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    if "--check" in argv:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = render(text, plot_dir=tmp)
        a, b = mask(text).split("\n"), mask(fresh).split("\n")
        if a == b:
            print(f"README.md: {len(blocks(text))} output blocks match a fresh run")
            return 0
        k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print(f"README.md line {k + 1} differs from a fresh run:\n  README: "
              f"{a[k] if k < len(a) else '(end)'}\n  fresh:  {b[k] if k < len(b) else '(end)'}\n"
              "rerun: python docs/readme_blocks.py")
        return 1
    fresh = render(text)
    with open(README, "w", encoding="utf-8") as fh:
        fh.write(fresh)
    print(f"README.md: {len(blocks(fresh))} output blocks rewritten from fresh runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
