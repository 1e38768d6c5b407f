"""Aligned tables and the stderr progress bar (handgrad/term.py)."""

from __future__ import annotations

import io
import math

import pytest

from handgrad.present import term
from tests.conftest import invoke


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_table_aligns_numbers_right_and_text_left():
    text = term.table(["name", "value"], [["a", "1.5"], ["longer name", "-12.25e3"]], indent=0)
    lines = text.splitlines()
    assert lines[0] == "name            value"
    assert lines[1] == "-----------  --------"
    assert lines[2] == "a                 1.5"
    assert lines[3] == "longer name  -12.25e3"
    # every line has the same width up to the last column, none ends in a space
    assert all(not ln.endswith(" ") for ln in lines)


def test_table_explicit_alignment_indent_and_no_rule():
    text = term.table(["x", "y"], [["1", "b"], ["22", "cc"]], align="lr", indent=3, rule=False)
    assert text.splitlines() == ["   x    y", "   1    b", "   22  cc"]


def test_table_mixed_column_is_left_aligned_and_none_is_blank():
    text = term.table(["k", "v"], [["a", "1"], ["b", "n/a"], ["c", None]], indent=0, rule=False)
    assert text.splitlines() == ["k  v", "a  1", "b  n/a", "c"]


def test_table_rejects_ragged_rows_and_bad_align():
    with pytest.raises(ValueError, match="2 cells"):
        term.table(["a"], [["1", "2"]])
    with pytest.raises(ValueError, match="align"):
        term.table(["a", "b"], [["1", "2"]], align="lx")


def test_fmt():
    assert term.fmt(None) == ""
    assert term.fmt(float("nan")) == "nan"
    assert term.fmt(float("-inf")) == "-inf"
    assert term.fmt(0.000123456, ".2e") == "1.23e-04"


def test_progress_enabled_only_on_a_terminal_and_not_under_json():
    assert term.enabled(False, FakeTTY()) is True
    assert term.enabled(True, FakeTTY()) is False
    assert term.enabled(False, io.StringIO()) is False


def test_progress_bar_draws_in_place_and_erases():
    s = FakeTTY()
    bar = term.ProgressBar("fit", stream=s, width=10, min_interval=0.0)
    bar.update(0.5, "iteration 3")
    assert s.getvalue() == "\rfit  [#####.....]  50%  iteration 3"
    bar.update(1.0, "x", force=True)
    assert "[##########] 100%" in s.getvalue()
    bar.close()
    assert s.getvalue().endswith("\r")
    last = s.getvalue().rsplit("\r", 2)[-2]
    assert last.strip() == ""  # the erase line is blanks only


def test_progress_bar_inactive_writes_nothing():
    s = io.StringIO()  # not a terminal
    bar = term.ProgressBar("fit", stream=s, min_interval=0.0)
    bar.update(0.3, "x")
    bar.close()
    assert s.getvalue() == ""


def test_convergence_fraction_by_hand():
    # |g| from 1e2 down to 1e-3 with tol 1e-8: 5 of 10 decades
    assert term.convergence_fraction(1e2, 1e-3, 1e-8) == pytest.approx(0.5)
    assert term.convergence_fraction(1e2, 1e2, 1e-8) == 0.0
    assert term.convergence_fraction(1e-9, 1e-9, 1e-8) == 1.0
    assert term.convergence_fraction(1.0, math.nan, 1e-8) is None


def test_fit_progress_callback_draws_with_solver_name():
    s = FakeTTY()
    cb = term.fit_progress("newton", 1e-8, stream=s)
    cb.bar.min_interval = 0.0
    cb(0, {"loss": 10.0, "grad_norm": 1e2})
    cb(1, {"loss": 5.0, "grad_norm": 1e-3})
    assert "newton" in s.getvalue() and "iteration 2" in s.getvalue() and "50%" in s.getvalue()
    cb.close()


def test_cli_check_prints_an_aligned_table(runner):
    result, _ = invoke(runner, "check", "logistic", "--seed", "0")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.strip().startswith("seed"))
    header, rule, rows = lines[head], lines[head + 1], lines[head + 2: head + 5]
    assert set(rule.strip()) <= {"-", " "}
    # the verdict column starts at the same place in the header and every row
    col = header.index("verdict")
    assert all(r[col:].startswith("pass") for r in rows)
    assert "\r" not in result.stderr  # no progress bar when stderr is not a terminal


def test_cli_fit_json_has_no_progress_output(runner):
    result, out = invoke(runner, "fit", "logistic", "--newton", "--n-samples", "200", "--json")
    assert result.exit_code == 0
    assert out["converged"] and "\r" not in result.stderr
