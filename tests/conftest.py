"""Shared fixtures: the registry's model names, a CliRunner, and one seeded data helper."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from handgrad.registry import REGISTRY  # noqa: E402

MODEL_NAMES = sorted(REGISTRY)


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


def invoke(runner, *args):
    """Run cli.py with args; returns (result, parsed JSON or None).  stderr kept apart."""
    import handgrad.cli as cli

    result = runner.invoke(cli.main, [str(a) for a in args], catch_exceptions=False)
    parsed = None
    if "--json" in args:
        parsed = json.loads(result.stdout)
    return result, parsed


def make_rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def no_matplotlib(monkeypatch):
    """`import matplotlib` fails, as on an install without the optional [plot] extra."""
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


@pytest.fixture
def one_thread():
    """Small tensors: torch's thread pool only adds overhead (and noise on a loaded box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def derive_edited_notation(entry, tmp_path, file: str, old: str, new: str, problems) -> dict:
    """The notation report (lines and link) of a copy of derivations/<file> with ``old``
    replaced by ``new``, linked to ``entry`` at ``problems``: a planted mistake."""
    import types

    from handgrad.verify import in_notation

    spec = entry.derivation
    one = next(x for x in spec.notation if x.file == file)
    text = open(in_notation.path_of(spec.module, one), encoding="utf-8").read()
    assert old in text, old
    (tmp_path / file).write_text(text.replace(old, new), encoding="utf-8")
    mod = types.SimpleNamespace(__file__=str(tmp_path / f"{entry.name}.py"), __name__=f"edited.{entry.name}")
    return in_notation.derive(entry, one, mod, problems)
