"""Malformed CSV files and TOML configs fed to the CLI (click's CliRunner), generated with
hypothesis: every one must exit with status 2 and one 'error: ...' line on stderr, never a
traceback, and under --json print exactly one {"error", "status": 2} object on stdout."""

from __future__ import annotations

import json
import os
import string
import sys
import tempfile

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import handgrad.cli as cli

FUZZ = settings(max_examples=int(os.environ.get("HANDGRAD_FUZZ_EXAMPLES", "30")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def assert_user_error(args: list[str]) -> str:
    runner = CliRunner()
    r = runner.invoke(cli.main, args)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"exception escaped: {r.exception!r}")
    assert r.exit_code == 2, (args, r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > 10, r.stderr
    j = runner.invoke(cli.main, args + ["--json"])
    assert j.exit_code == 2
    obj = json.loads(j.stdout)
    assert obj["status"] == 2 and isinstance(obj["error"], str) and "\n" not in obj["error"]
    return lines[0]


# ------------------------------------------------------------------------------ CSV files

NUM = st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: repr(round(v, 6)))
JUNK = st.text(alphabet=string.ascii_letters + "$#@!?;:'", min_size=1, max_size=8).filter(
    lambda s: s.strip().lower() not in {"true", "false", "nan", "inf", "infinity", "e"}
    and not _is_float(s))


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


@st.composite
def valid_table(draw):
    n = draw(st.integers(3, 12))
    d = draw(st.integers(1, 4))
    header = [f"x{j}" for j in range(d)] + ["y"]
    rows = [[draw(NUM) for _ in range(d)] + [str(i % 2)] for i in range(n)]
    return header, rows


def render(header, rows) -> str:
    return "\n".join(",".join(r) for r in [header] + rows) + "\n"


@st.composite
def corrupt_csv(draw):
    """A valid logistic table with exactly one fault planted; returns (text, fault)."""
    header, rows = draw(valid_table())
    fault = draw(st.sampled_from(["junk", "nan", "inf", "empty", "ragged_short", "ragged_long",
                                  "no_target", "dup_header", "header_only", "empty_file",
                                  "one_class", "many_classes", "blank_header"]))
    i = draw(st.integers(0, len(rows) - 1))
    j = draw(st.integers(0, len(header) - 1))
    if fault == "junk":
        rows[i][j] = draw(JUNK)
    elif fault in ("nan", "inf"):
        rows[i][j] = draw(st.sampled_from(["nan", "NaN"] if fault == "nan"
                                          else ["inf", "-inf", "Infinity"]))
    elif fault == "empty":
        rows[i][j] = draw(st.sampled_from(["", "  "]))
    elif fault == "ragged_short":
        rows[i] = rows[i][:-1]
    elif fault == "ragged_long":
        rows[i] = rows[i] + [draw(NUM)]
    elif fault == "no_target":
        header[-1] = "label"
    elif fault == "dup_header" and len(header) > 2:
        header[1] = header[0]
    elif fault == "dup_header":
        header[0] = "y"
    elif fault == "header_only":
        rows = []
    elif fault == "empty_file":
        return "", fault
    elif fault == "one_class":
        for r in rows:
            r[-1] = "1"
    elif fault == "many_classes":
        for k, r in enumerate(rows):
            r[-1] = str(k % 3 + 0.5 * (k % 2))
    elif fault == "blank_header":
        header[j if j < len(header) - 1 else 0] = ""
    return render(header, rows), fault


@FUZZ
@given(corrupt_csv())
def test_malformed_csv_is_a_one_line_error(case):
    text, fault = case
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.csv")
        with open(path, "w") as fh:
            fh.write(text)
        msg = assert_user_error(["fit", "logistic", "--data", path, "--target", "y"])
        with open(path) as fh:
            assert fh.read() == text  # the input is never modified
    key = {"junk": "non-numeric", "nan": "NaN", "inf": "inf", "empty": "empty cell",
           "ragged_short": "ragged", "ragged_long": "ragged", "no_target": "columns are",
           "dup_header": "duplicate", "header_only": "no data rows", "empty_file": "empty",
           "one_class": "one class", "many_classes": "distinct values",
           "blank_header": "empty column name"}[fault]
    assert key in msg, (fault, msg)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_csv(blob):
    # the target name cannot occur in random bytes, so no run can legitimately succeed
    assume(b"target_col" not in blob)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "blob.csv")
        with open(path, "wb") as fh:
            fh.write(blob)
        assert_user_error(["fit", "least_squares", "--data", path, "--target", "target_col"])


@FUZZ
@given(st.lists(st.lists(st.text(alphabet=string.printable, max_size=6), min_size=1,
                         max_size=4), min_size=0, max_size=6))
def test_arbitrary_text_tables(cells):
    text = "\n".join(",".join(c.replace("\n", " ") for c in row) for row in cells)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.csv")
        with open(path, "w") as fh:
            fh.write(text)
        assert_user_error(["fit", "logistic", "--data", path, "--target", "target_col"])


# ------------------------------------------------------------------------------ configs

VALID = set(cli._fit_key_types())
KEY = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12)
SCALAR = st.one_of(st.integers(-5, 5), st.floats(-3, 3, allow_nan=False), st.booleans(),
                   st.text(alphabet=string.ascii_letters, max_size=6))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):  # a TOML basic string: JSON escapes, plus DEL, which TOML forbids
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def write_config(tmp: str, items: dict) -> str:
    path = os.path.join(tmp, "c.toml")
    with open(path, "w", encoding="utf-8") as fh:
        for k, v in items.items():
            fh.write(f"{k} = {toml_value(v)}\n")
    return path


@FUZZ
@given(KEY.filter(lambda k: k.replace("-", "_") not in VALID), SCALAR)
def test_unknown_config_key_lists_the_valid_ones(key, value):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(tmp, {"model": "logistic", key: value})
        msg = assert_user_error(["run", path])
    assert "unknown key" in msg and "valid keys:" in msg and "solver" in msg


WRONG_TYPES = {
    "l2": st.one_of(st.text(max_size=4), st.booleans(), st.lists(st.integers(), max_size=2)),
    "max_iter": st.one_of(st.floats(0.5, 9.5).filter(lambda v: v != int(v)), st.text(max_size=4),
                          st.booleans()),
    "seed": st.one_of(st.text(max_size=4), st.floats(0.1, 0.9)),
    "solver": st.one_of(st.integers(), st.booleans(), st.lists(st.text(max_size=3), max_size=2)),
    "newton": st.one_of(st.integers(), st.text(max_size=4)),
    "n_samples": st.one_of(st.text(max_size=3), st.floats(1.5, 9.5)),
}


@FUZZ
@given(st.sampled_from(sorted(WRONG_TYPES)).flatmap(
    lambda k: st.tuples(st.just(k), WRONG_TYPES[k])))
def test_wrong_config_types(kv):
    key, value = kv
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(tmp, {"model": "logistic", key: value})
        msg = assert_user_error(["run", path])
    assert repr(key) in msg


BAD_VALUES = st.one_of(
    st.tuples(st.just("max_iter"), st.integers(-1000, -1)),
    st.tuples(st.just("n_samples"), st.integers(-1000, 0)),
    st.tuples(st.just("n_features"), st.integers(-1000, 0)),
    st.tuples(st.just("l2"), st.floats(-1e6, -1e-9)),
    st.tuples(st.just("tol"), st.floats(-1e3, 0.0)),
    st.tuples(st.just("solver"), st.text(alphabet=string.ascii_lowercase, min_size=1,
                                         max_size=8).filter(lambda s: s not in
                                                            {"closed", "newton", "gd"})),
    st.tuples(st.just("dtype"), st.text(alphabet=string.ascii_lowercase + "0123456789",
                                        min_size=1, max_size=8).filter(
        lambda s: s not in {"float64", "float32"})),
    st.tuples(st.just("device"), st.text(alphabet=string.ascii_lowercase, min_size=1,
                                         max_size=8).filter(
        lambda s: s not in {"auto", "cpu", "cuda"})),
    st.tuples(st.just("model"), st.text(alphabet=string.ascii_lowercase, min_size=1,
                                        max_size=10).filter(lambda s: s not in cli.registry.REGISTRY)),
)


@FUZZ
@given(BAD_VALUES)
def test_out_of_range_config_values(kv):
    key, value = kv
    items = {"model": "logistic", "n_samples": 50, key: value}
    with tempfile.TemporaryDirectory() as tmp:
        assert_user_error(["run", write_config(tmp, items)])


@FUZZ
@given(st.text(max_size=80))
def test_arbitrary_text_as_config(text):
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        parsed = None
    # text that happens to be a valid, complete config cannot be asked to fail
    assume(parsed is None or "model" not in parsed)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "c.toml")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as fh:
            fh.write(text)
        assert_user_error(["run", path])


# ------------------------------------- names, sizes and files the command line reads (issue 24)


@FUZZ
@given(st.sampled_from(sorted(VALID - {"model"})).filter(lambda k: len(k) >= 4),
       st.data())
def test_near_miss_config_key_gets_a_suggestion(key, data):
    """A valid key with one letter dropped or doubled: the message names a valid key nearby."""
    i = data.draw(st.integers(0, len(key) - 1))
    typo = key[:i] + key[i + 1:] if data.draw(st.booleans()) else key[:i] + key[i] + key[i:]
    assume(typo not in VALID)
    with tempfile.TemporaryDirectory() as tmp:
        msg = assert_user_error(["run", write_config(tmp, {"model": "logistic", typo: 1})])
    assert "did you mean '" in msg and "valid keys:" in msg
    suggested = msg.split("did you mean '")[1].split("'")[0]
    assert suggested in VALID


@FUZZ
@given(st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=14).filter(
    lambda s: s not in cli.registry.REGISTRY), st.sampled_from(["fit", "check", "derive"]))
def test_any_unknown_model_is_one_line(name, command):
    msg = assert_user_error([command, name])
    assert f"unknown model {name!r}" in msg and "--help" in msg


@FUZZ
@given(st.one_of(st.integers(2**32, 2**80), st.integers(-2**80, -1)))
def test_seed_out_of_range_is_one_line(seed):
    assert "--seed" in assert_user_error(["fit", "logistic", "--seed", str(seed)])


@FUZZ
@given(st.integers(10**6, 10**9), st.integers(10**6, 10**9))
def test_declared_sizes_beyond_memory_are_one_line(r, c):
    msg = assert_user_error(["derive", "--expr", "tr(A'*A)", "--let", f"A: {r} x {c}",
                             "--wrt", "A"])
    assert f"{r} x {c}" in msg and "memory" in msg


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_a_notation_file(blob):
    """No bytes make a derivation that verifies (it needs let, wrt and f = ...): every file
    is one error line, a binary one named as not text."""
    assume(b"wrt" not in blob)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "d.hg")
        with open(path, "wb") as fh:
            fh.write(blob)
        msg = assert_user_error(["derive", "--file", path])
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        assert "not a text file" in msg, msg
