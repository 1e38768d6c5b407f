"""No size limit a user would hit (issue 22): long sums derive, deep nesting is one
actionable line (exit 2), emitted code renames Python keywords."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from handgrad.notation.ast import MAX_DEPTH, MAX_NESTING
from handgrad.notation.auto import derive, derive_expression, emit_torch
from handgrad.notation.parser import NotationError, parse


def _sum(n: int) -> tuple[str, str]:
    return " + ".join(f"a{i}'*x" for i in range(n)), "x: n; " + "; ".join(f"a{i}: n" for i in range(n))


def test_a_2000_term_sum_derives():
    expr, let = _sum(2000)
    _, out = derive(expr, let, "x")
    g = parse(out["gradient"]["x"])
    assert sorted(s.name for s in _syms(g)) == sorted(f"a{i}" for i in range(2000))


@pytest.mark.slow
def test_a_2000_term_sum_derives_and_every_line_is_verified():
    expr, let = _sum(2000)
    r = derive_expression(expr, let, "x")
    assert r["ok"] and r["verdict"] == "verified"


def test_a_300_term_sum_is_verified():
    expr, let = _sum(300)
    r = derive_expression(expr, let, "x")
    assert r["ok"] and r["verdict"] == "verified"


def test_past_the_stated_limits_one_line_says_which():
    with pytest.raises(NotationError, match=f"at most {MAX_DEPTH}"):
        parse(" + ".join(["x"] * (MAX_DEPTH + 2)))
    with pytest.raises(NotationError, match=f"more than {MAX_NESTING} levels"):
        parse("(" * 10_000 + "x" + ")" * 10_000)
    parse("(" * (MAX_NESTING - 1) + "x" + ")" * (MAX_NESTING - 1))  # within the limit


def test_a_file_nested_10000_deep_exits_2(tmp_path):
    p = tmp_path / "deep.hg"
    p.write_text("let x: n\nwrt x\nf = " + "(" * 10_000 + "x'*x" + ")" * 10_000 + "\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "cli.py", "derive", "--file", str(p)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "nested more than" in r.stderr and "internal error" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_emitted_code_renames_keywords_and_torch():
    r = derive_expression("lambda*x'*x + torch*sum(x)", "x: n; lambda: scalar; torch: scalar", "x")
    src = emit_torch(r)
    assert "def gradient(x, lambda_, torch_):" in src
    ns: dict = {}
    exec(compile(src, "<emitted>", "exec"), ns)  # a keyword as a name would be a SyntaxError here
    x = torch.randn(4, 1, dtype=torch.float64)
    got = ns["gradient"](x, 0.5, 2.0)
    assert torch.allclose(got, 2 * 0.5 * x + 2.0 * torch.ones_like(x))


def _syms(e):
    from handgrad.notation.ast import Sym, walk
    return [n for n in walk(e) if isinstance(n, Sym)]


def test_a_remembered_hash_does_not_travel_to_another_process():
    """Node hashes are remembered (long sums), but string hashes differ between processes:
    a pickled tree carries no hash, and one unpickled in a process with another hash seed
    is found in a dict built there."""
    import pickle
    e = parse("tr(X'*A*X) + logdet(X)")
    hash(e)
    blob = pickle.dumps(e)
    assert b"_hash" not in blob
    code = ("import pickle, sys; from handgrad.notation import parse; "
            "e = pickle.loads(sys.stdin.buffer.read()); "
            "print({parse(\"tr(X'*A*X) + logdet(X)\"): 1}.get(e))")
    r = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, timeout=120,
                       env={**__import__("os").environ, "PYTHONHASHSEED": "12345"})
    assert r.stdout.strip() == b"1", r.stderr
