"""The CSV reader (pyarrow's) against an independent reference (csv module + float()).

Values must be bit-identical to float()'s (the sign of zero included), data rows must map
to the file lines the csv module sees, and every fault must be one line naming the row,
the column, the value and the file line."""

import csv
import random

import numpy as np
import pytest

from handgrad.errors import UserError
from handgrad.fitting import data


def reference(path):
    """Header, values and file lines as Python's csv module and float() see them (a
    missing value, empty or NA, is NaN)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        rows = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
    header = [h.strip() for h in rows[0][1]]

    def num(c):
        c = c.strip()
        if c.lower() in ("true", "false"):
            return float(c.lower() == "true")
        return float("nan") if c in ("", "NA", "nan", "NaN") else float(c)
    return header, np.array([[num(c) for c in r] for _, r in rows[1:]]), [ln for ln, _ in rows[1:]]


def same(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        with open(path, "w", newline="") as fh:
            fh.write(text)
    return str(path)


def table(rng, n, d, fmt):
    X = rng.normal(size=(n, d)) * 10.0 ** rng.integers(-6, 6, size=(n, d))
    X[rng.random((n, d)) < 0.05] = 0.0
    X[rng.random((n, d)) < 0.02] = -0.0
    return [[fmt(v) for v in row] for row in X.tolist()]


FORMATS = {
    "repr": repr,
    "sci": lambda v: f"{v:.6e}",
    "SCI": lambda v: f"{v:.3E}",
    "short": lambda v: f"{v:.3f}",
    "int": lambda v: str(int(v)),
    "g": lambda v: f"{v:g}",
    "bare-dot": lambda v: (f"{v:.2f}".rstrip("0") if abs(v) > 1 else f"{v:.4f}".lstrip("0")
                           if v >= 0 else "-" + f"{-v:.4f}".lstrip("0")),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_numeric_files_are_bit_identical_to_float(tmp_path, fmt):
    rng = np.random.default_rng(len(fmt))
    rows = table(rng, 300, 5, FORMATS[fmt])
    path = write(tmp_path, "p.csv", "a,b,c,d,y\n" + "".join(",".join(r) + "\n" for r in rows))
    header, values = data.read_csv(path)
    h, ref, _ = reference(path)
    assert header == h and same(values, ref)


def lines_of(path, n):
    from handgrad.fitting import csvread

    rl = csvread.RowLines(path)
    return [rl.line(k) for k in range(n)]


@pytest.mark.parametrize("variant", ["crlf", "bom", "trailing-blank", "no-final-newline",
                                     "interior-blank", "interior-empty", "quoted-header", "spaces", "nan-inf",
                                     "booleans", "plus-sign", "one-column", "blank-first",
                                     "gzip"])
def test_file_variants_match_the_reference(tmp_path, variant):
    rng = np.random.default_rng(7)
    rows = table(rng, 50, 3, repr)
    head, sep, end = "a,b,y", ",", "\n"
    if variant == "quoted-header":
        head = '"a","b, the second",y'
    if variant == "spaces":
        sep = ", "
    if variant == "nan-inf":
        rows[3][1], rows[9][0], rows[20][2] = "nan", "-inf", "Infinity"
    if variant == "booleans":  # a column of true/false reads as 1/0
        for r in rows:
            r[2] = random.Random(len(r[0])).choice(["true", "False", "TRUE"])
    if variant == "plus-sign":
        rows[5][0] = "+1.5"
    if variant == "one-column":
        head, rows = "y", [[r[0]] for r in rows]
    body = [sep.join(r) for r in rows]
    if variant == "interior-blank":
        body[10:10] = ["", "", "   "]
        body[30:30] = [""]
    if variant == "interior-empty":  # a plain file with empty lines: the plain parser, retried
        body[10:10] = ["", ""]
        body[30:30] = [""]
    text = head + end + end.join(body) + end
    if variant == "crlf":
        text = text.replace("\n", "\r\n")
    if variant == "trailing-blank":
        text += "\n\n  \n"
    if variant == "no-final-newline":
        text = text.rstrip("\n")
    if variant == "blank-first":
        text = "\n\n" + text
    raw = text.encode()
    if variant == "bom":
        raw = b"\xef\xbb\xbf" + raw
    path = write(tmp_path, "v.csv", raw, "wb")
    ref_path = path
    if variant == "gzip":
        import gzip

        path = write(tmp_path, "v.csv.gz", gzip.compress(raw), "wb")
    header, values = data.read_csv(path)
    h, ref, ref_lines = reference(ref_path)
    if variant == "quoted-header":
        assert h == ["a", "b, the second", "y"]
    assert header == h and lines_of(path, len(values)) == ref_lines
    assert same(values, ref) or (np.isnan(ref).any() and np.array_equal(values, ref,
                                                                         equal_nan=True))


def message(path, target=None):
    try:
        data.read_csv(path) if target is None else data.load(path, target)
    except UserError as e:
        return str(e)
    return None


FAULTS = {  # file text -> what the one-line message must name
    "junk": ("a,b,y\n1,2,1\n3,abc,0\n5,6,1\n", "non-numeric value 'abc' in column 'b', row 2 (line 3)."),
    "junk-plain-chars": ("a,b,y\n1,2,1\n3,1.2.3,0\n5,6,1\n", "'1.2.3' in column 'b', row 2 (line 3)."),
    "double-exp": ("a,b,y\n1,2,1\n3,1e5e3,0\n5,6,1\n", "'1e5e3' in column 'b', row 2 (line 3)."),
    "minus-inside": ("a,b,y\n1,2,1\n3,1-2,0\n5,6,1\n", "'1-2' in column 'b', row 2 (line 3)."),
    "hex": ("a,b,y\n1,0x10,1\n5,6,1\n4,4,0\n", "'0x10' in column 'b', row 1 (line 2)."),
    "after-blank": ("a,b,y\n1,2,1\n\n\n3,zz,0\n5,6,1\n", "'zz' in column 'b', row 2 (line 5)."),
    "ragged-short": ("a,b,y\n1,2,1\n3,4\n", "ragged row at line 3 (row 2): 2 cells, header has 3."),
    "ragged-long": ("a,b,y\n1,2,1\n3,4,5,6\n", "ragged row at line 3 (row 2): 4 cells, header has 3."),
    "header-only": ("a,b,y\n", "has a header but no data rows."),
    "empty-file": ("", "is empty: expected a header row and data rows."),
    "dup": ("a,a,y\n1,2,1\n", "duplicate column name(s) in the header: a."),
    "blank-name": ("a,,y\n1,2,1\n", "the header has an empty column name (column 2)."),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_faults_are_one_line_naming_row_column_and_line(tmp_path, name):
    text, want = FAULTS[name]
    path = write(tmp_path, "f.csv", text)
    msg = message(path)
    assert msg is not None and "\n" not in msg and msg.endswith(want), msg


def test_missing_values_are_named_with_their_text_and_the_remedy(tmp_path):
    for cell, shown in (("", "an empty cell"), ("NA", "missing value 'NA'"),
                        ("nan", "missing value 'nan'")):
        path = write(tmp_path, "m.csv", f"a,b,y\n1,2,1\n\n3,{cell},0\n5,6,1\n")
        msg = message(path, "y")
        assert msg == (f"Input X has {shown} (NaN) in column 'b', row 2 (line 4 of m.csv); fill "
                       "it, or drop rows with missing values with --dropna."), msg


def test_random_tokens_agree_with_float(tmp_path):
    """Short strings over a float's alphabet: each is either float() exactly or a message
    naming the cell, never a silently different number."""
    rnd = random.Random(0)
    alphabet = "0123456789.eE+-"
    tokens = {"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 6))) for _ in range(300)}
    tokens |= {"1.5", "-.5", "5.", "5.e3", "-5.e-3", "1E+05", "007", "-0", "-0.0", "0e0",
               "1e400", "-1e-400", "4.9e-324", "1.7976931348623157e308", "9" * 30, ".5e1"}
    for tok in sorted(tokens):
        path = write(tmp_path, "t.csv", f"a,b\n1,{tok}\n2,3\n4,5\n")
        try:
            want = float(tok)
        except ValueError:
            want = None
        if want is None:
            msg = message(path)
            assert msg is not None and f"{tok!r} in column 'b', row 1 (line 2)" in msg, (tok, msg)
        else:
            _, values = data.read_csv(path)
            assert same(values[0, 1], want), (tok, values[0, 1], want)


def test_large_random_file_matches_the_doubles_written(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20000, 8))
    path = tmp_path / "big.csv"
    with open(path, "w") as fh:
        fh.write(",".join(f"c{j}" for j in range(8)) + "\n")
        fh.writelines(",".join(map(repr, r)) + "\n" for r in X.tolist())
    _, values = data.read_csv(str(path))
    assert same(values, X)


# ------------------------------------------------------------------ text (categorical)


def iris_like(tmp_path, target_text=False):
    rows = ["sepal,petal,species,y"]
    kinds = ["setosa", "versicolor", "virginica"]
    for i in range(30):
        k = kinds[i % 3]
        rows.append(f"{i * 0.1:.1f},{i * 0.2:.1f},{k},{k if target_text else i % 2}")
    return write(tmp_path, "iris.csv", "\n".join(rows) + "\n")


def test_text_column_is_named_with_how_to_encode_it(tmp_path):
    path = iris_like(tmp_path)
    with pytest.raises(UserError) as e:
        data.load(path, "y")
    msg = str(e.value)
    assert "\n" not in msg
    assert "non-numeric value 'setosa' in column 'species', row 1 (line 2)." in msg
    assert "Column 'species' holds text ('setosa', 'versicolor', 'virginica')" in msg
    assert "one 0/1 column per category" in msg and "--exclude species" in msg


def test_text_column_left_out_with_features_loads(tmp_path):
    path = iris_like(tmp_path)
    d = data.load(path, "y", ["sepal", "petal"])
    assert d.feature_names == ["sepal", "petal"] and d.n == 30
    assert d.X[3].tolist() == [0.3, 0.6]


def test_text_target_is_refused_for_a_model_that_needs_numbers(tmp_path):
    path = iris_like(tmp_path, target_text=True)
    with pytest.raises(UserError) as e:
        data.load(path, "species", ["sepal", "petal"])
    msg = str(e.value)
    assert "Column 'species' (the target) holds text ('setosa', 'versicolor', 'virginica')" in msg
    assert "softmax" in msg


def test_a_single_typo_gets_no_categorical_hint(tmp_path):
    rows = ["a,b,y"] + [f"{i},{i * 2},{i % 2}" for i in range(40)]
    rows[17] = "16,oops,0"
    path = write(tmp_path, "typo.csv", "\n".join(rows) + "\n")
    with pytest.raises(UserError) as e:
        data.load(path, "y")
    assert str(e.value).endswith("non-numeric value 'oops' in column 'b', row 17 (line 18).")


def test_load_selects_columns_and_unused_columns_may_hold_anything(tmp_path):
    rows = ["a,b,y,junk"] + [f"{i},{i * 0.5},{i % 2},1" for i in range(20)]
    rows[5] = "4,2.0,0,nan"
    path = write(tmp_path, "s.csv", "\n".join(rows) + "\n")
    d = data.load(path, "y", ["a", "b"])
    assert d.X.shape == (20, 2) and d.y.tolist() == [i % 2 for i in range(20)]
    with pytest.raises(UserError, match=r"Input X has missing value 'nan' \(NaN\) in column 'junk', "
                       r"row 5 \(line 6"):
        data.load(path, "y")
