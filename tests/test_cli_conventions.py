"""The command line's conventions (click's own facilities): --version, --debug before or
after the command, one rule for naming models, MODEL with did-you-mean, usage errors as one
line, config keys with did-you-mean, and `run` taking every `fit` flag (flags given win)."""

from __future__ import annotations

import json
import os
import sys

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import handgrad.cli as cli
from handgrad.errors import UserError
from handgrad.registry import REGISTRY
from tests.conftest import ROOT


def invoke(runner, *args):
    r = runner.invoke(cli.main, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"exception escaped: {r.exception!r}\n{r.stderr}")
    return r


def one_line_error(runner, *args, contains=()) -> str:
    """Exit 2, one 'error: ...' line, nothing on stdout; --json: one {"error", "status": 2}."""
    r = invoke(runner, *args)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    for s in contains:
        assert s in lines[0], (s, lines[0])
    j = invoke(runner, *args, "--json")
    assert j.exit_code == 2 and json.loads(j.stdout) == {"error": lines[0][7:], "status": 2}
    return lines[0]


def test_version_is_the_package_version(runner):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        want = tomllib.load(fh)["project"]["version"]
    for flag in ("--version", "-V"):
        r = invoke(runner, flag)
        assert r.exit_code == 0 and r.stdout.strip() == f"handgrad {want}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_traceback(runner, tmp_path, where):
    args = ["fit", "logistic", "--data", str(tmp_path / "none.csv"), "--target", "y"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    r = runner.invoke(cli.main, args)
    assert isinstance(r.exception, UserError)  # propagated: a traceback is printed
    # without it: the one-line message
    one_line_error(runner, *[a for a in args if a != "--debug"])


def test_every_command_takes_debug(runner):
    for name, cmd in cli.main.commands.items():
        assert any(p.name == "debug" for p in cmd.params), name
        assert "--debug" in invoke(runner, name, "--help").stdout, name


@pytest.mark.parametrize("command", ["check", "derive", "report"])
def test_one_rule_for_no_model_named(runner, command, tmp_path):
    msg = one_line_error(runner, command, contains=("--all", f"{command} needs a MODEL"))
    assert all(name in msg for name in REGISTRY)
    helptext = invoke(runner, command, "--help").stdout
    assert "[MODEL]" in helptext and "--all" in helptext


def test_misspelled_model_gets_the_nearest_name(runner):
    msg = one_line_error(runner, "fit", "logisitc", contains=("did you mean 'logistic'?",))
    assert "--help" in msg
    one_line_error(runner, "check", "least_square", contains=("did you mean 'least_squares'?",))
    msg = one_line_error(runner, "derive", "zzzz", contains=("unknown model 'zzzz'",))
    assert all(name in msg for name in REGISTRY)  # nothing near: the list


def test_usage_line_shows_MODEL_whole(runner):
    for command in ("fit", "check", "derive", "report"):
        usage = invoke(runner, command, "--help").stdout.splitlines()[0]
        assert usage.startswith("Usage: ") and usage.rstrip().endswith(("[MODEL]", "[MODEL]...")), usage
        assert "least_squares|" not in usage


def test_click_usage_errors_are_one_line(runner):
    one_line_error(runner, "fit", "logistic", "--bogus", contains=("--bogus",))
    one_line_error(runner, "nosuch", contains=("nosuch",))
    one_line_error(runner, "fit", "logistic", "--max-iter", "-1", contains=("--max-iter",))


def test_config_key_did_you_mean(runner, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "logistic"\nmax_iters = 3\n')
    msg = one_line_error(runner, "run", cfg, contains=("unknown key 'max_iters'",
                                                      "did you mean 'max_iter'?", "valid keys:"))
    assert "solver" in msg
    cfg.write_text('model = "logistc"\n')
    one_line_error(runner, "run", cfg, contains=("did you mean 'logistic'?",))


def test_run_takes_fit_flags_and_they_win(runner, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "logistic"\nn_samples = 300\nmax_iter = 50\nsolver = "gd"\n')
    base = invoke(runner, "run", cfg, "--json")
    assert base.exit_code in (0, 1)
    b = json.loads(base.stdout)
    assert b["solver"] == "gd" and b["data"]["n"] == 300 and b["iterations"] > 3
    r = invoke(runner, "run", cfg, "--max-iter", "3", "--json")
    out = json.loads(r.stdout)
    assert out["iterations"] == 3 and out["data"]["n"] == 300 and out["solver"] == "gd"
    assert r.exit_code == 1  # three gradient steps do not converge: said, exit 1
    r = invoke(runner, "run", cfg, "--newton", "--n-samples", "200", "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0 and out["solver"] == "newton" and out["data"]["n"] == 200
    helptext = invoke(runner, "run", "--help").stdout
    for flag in ("--max-iter", "--newton", "--data", "--l2", "--loss", "--chunk-rows"):
        assert flag in helptext, flag


def test_run_has_every_flag_fit_has():
    fit = {p.name for p in cli.fit_cmd.params if p.name != "model"}
    run = {p.name for p in cli.run_cmd.params}
    assert fit <= run, fit - run
