"""The fast CSV reader against an independent reference (csv module + float()).

Every file is read three ways: handgrad's loader (fast paths), the exact per-cell pass,
and a reference written here.  Values must be bit-identical (the sign of zero included)
and every fault must give the exact pass's one-line message."""

import csv
import random

import numpy as np
import pytest

from handgrad.errors import UserError
from handgrad.fitting import csvread, data


def reference(path):
    """Header, values and file lines as Python's csv module and float() see them."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        rows = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
    header = [h.strip() for h in rows[0][1]]

    def num(c):
        c = c.strip()
        return {"true": 1.0, "false": 0.0}.get(c.lower()) if c.lower() in ("true", "false") \
            else float(c)
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


@pytest.fixture
def no_exact(monkeypatch):
    """Fail if the per-cell pass runs: the file must take a compiled path."""
    def boom(*a, **k):
        raise AssertionError("the exact per-cell pass ran")
    monkeypatch.setattr(csvread, "read_exact", boom)


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
def test_plain_numeric_files_are_exact_and_never_use_the_per_cell_pass(tmp_path, fmt, no_exact):
    rng = np.random.default_rng(len(fmt))
    rows = table(rng, 300, 5, FORMATS[fmt])
    path = write(tmp_path, "p.csv", "a,b,c,d,y\n" + "".join(",".join(r) + "\n" for r in rows))
    lines = []
    header, values = data.read_csv(path, lines)
    h, ref, ref_lines = reference(path)
    assert header == h and same(values, ref) and lines == ref_lines


@pytest.mark.parametrize("variant", ["crlf", "bom", "trailing-blank", "no-final-newline",
                                     "interior-blank", "interior-empty", "quoted-header", "spaces", "nan-inf",
                                     "booleans", "plus-sign", "one-column", "blank-first"])
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
    if variant == "booleans":
        for r in rows[::3]:
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
    lines = []
    header, values = data.read_csv(path, lines)
    h, ref, ref_lines = reference(path)
    if variant == "quoted-header":
        assert h == ["a", "b, the second", "y"]
    assert header == h and lines == ref_lines
    assert same(values, ref) or (np.isnan(ref).any() and np.array_equal(values, ref,
                                                                         equal_nan=True))


def exact_message(path):
    try:
        csvread.read_exact(path)
    except UserError as e:
        return str(e)
    return None


def fast_message(path):
    try:
        data.read_csv(path)
    except UserError as e:
        return str(e)
    return None


FAULTS = {
    "junk": "a,b,y\n1,2,1\n3,abc,0\n",
    "junk-plain-chars": "a,b,y\n1,2,1\n3,1.2.3,0\n",
    "double-exp": "a,b,y\n1,2,1\n3,1e5e3,0\n",
    "dot-after-exp": "a,b,y\n1,2,1\n3,1e5.3,0\n",
    "minus-inside": "a,b,y\n1,2,1\n3,1-2,0\n",
    "lone-dot": "a,b,y\n1,2,1\n3,.,0\n",
    "lone-minus": "a,b,y\n1,2,1\n-,2,0\n",
    "no-exp-digits": "a,b,y\n1,2,1\n3,4e,0\n",
    "no-exp-digits-sign": "a,b,y\n1,2,1\n3,4e-,0\n",
    "exp-only": "a,b,y\n1,2,1\n3,e5,0\n",
    "dot-exp": "a,b,y\n1,2,1\n3,.e5,0\n",
    "double-sign": "a,b,y\n1,2,1\n3,--4,0\n",
    "empty": "a,b,y\n1,2,1\n\n\n3,,0\n",
    "empty-first": "a,b,y\n,2,1\n",
    "empty-last": "a,b,y\n1,2,\n",
    "space-cell": "a,b,y\n1,2,1\n3, ,0\n",
    "ragged-short": "a,b,y\n1,2,1\n3,4\n",
    "ragged-long": "a,b,y\n1,2,1\n3,4,5,6\n",
    "ragged-pair": "a,b,y\n1,2\n3,4,5,6\n7,8,9\n",
    "header-only": "a,b,y\n",
    "header-only-blank": "a,b,y\n\n  \n",
    "empty-file": "",
    "dup": "a,a,y\n1,2,1\n",
    "blank-name": "a,,y\n1,2,1\n",
    "lone-cr": "a,b,y\r1,2,1\n3,4,0\n",
    "quoted-number": 'a,b,y\n1,"2",1\n',
    "nan-word": "a,b,y\n1,nan,1\n3,NaN(1),0\n",
    "hex": "a,b,y\n1,0x10,1\n",
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_faults_give_the_exact_pass_message(tmp_path, name):
    path = write(tmp_path, "f.csv", FAULTS[name])
    assert fast_message(path) == exact_message(path)


def test_known_messages_unchanged(tmp_path):
    cases = [("a,b,y\n1,2,1\n3,abc,0\n", "non-numeric value 'abc' in column 'b', row 2 (line 3)."),
             ("a,b,y\n1,2,1\n3,1.2.3,0\n", "non-numeric value '1.2.3' in column 'b', row 2 (line 3)."),
             ("a,b,y\n1,2,1\n\n\n3,,0\n",
              "empty cell (missing value) in column 'b', row 2 (line 5); fill or drop that row."),
             ("a,b,y\n1,2,1\n3,4\n", "ragged row at line 3: 2 cells, header has 3.")]
    for text, msg in cases:
        path = write(tmp_path, "k.csv", text)
        with pytest.raises(UserError) as e:
            data.read_csv(path)
        assert str(e.value) == f"{path}: {msg}"


def test_random_tokens_agree_with_float(tmp_path):
    """Short strings over the fast path's alphabet: each is either float() exactly or the
    exact pass's message, never a silently different number."""
    rnd = random.Random(0)
    alphabet = "0123456789.eE+-"
    tokens = {"".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 6))) for _ in range(600)}
    tokens |= {"1.5", "-.5", "5.", "5.e3", "-5.e-3", "1E+05", "007", "-0", "-0.0", "0e0",
               "1e400", "-1e-400", "4.9e-324", "1.7976931348623157e308", "9" * 30, ".5e1"}
    for tok in sorted(tokens):
        path = write(tmp_path, "t.csv", f"a,b\n1,{tok}\n2,3\n")
        try:
            want = float(tok)
        except ValueError:
            want = None
        if want is None:
            assert fast_message(path) == exact_message(path) is not None, tok
        else:
            _, values = data.read_csv(path)
            assert same(values[0, 1], want), (tok, values[0, 1], want)


def test_large_random_file_matches_loadtxt_and_reference(tmp_path, no_exact):
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
    assert "one 0/1 column per category" in msg and "--features" in msg


def test_text_column_left_out_with_features_loads(tmp_path):
    path = iris_like(tmp_path)
    d = data.load(path, "y", ["sepal", "petal"])
    assert d.feature_names == ["sepal", "petal"] and d.n == 30
    assert d.X[3].tolist() == [0.3, 0.6]


def test_text_target_is_refused_with_a_hint(tmp_path):
    path = iris_like(tmp_path, target_text=True)
    with pytest.raises(UserError) as e:
        data.load(path, "species", ["sepal", "petal"])
    msg = str(e.value)
    assert "non-numeric value 'setosa' in column 'species'" in msg
    assert "(the target) holds text" in msg and "numeric class labels" in msg


def test_a_single_typo_gets_no_categorical_hint(tmp_path):
    rows = ["a,b,y"] + [f"{i},{i * 2},{i % 2}" for i in range(40)]
    rows[17] = "16,oops,0"
    path = write(tmp_path, "typo.csv", "\n".join(rows) + "\n")
    with pytest.raises(UserError) as e:
        data.load(path, "y")
    assert str(e.value).endswith("non-numeric value 'oops' in column 'b', row 17 (line 18).")


def test_load_selects_columns_and_checks_finite_as_before(tmp_path, no_exact):
    rows = ["a,b,y,junk"] + [f"{i},{i * 0.5},{i % 2},1" for i in range(20)]
    rows[5] = "4,2.0,0,nan"
    path = write(tmp_path, "s.csv", "\n".join(rows) + "\n")
    d = data.load(path, "y", ["a", "b"])
    assert d.X.shape == (20, 2) and d.y.tolist() == [i % 2 for i in range(20)]
    with pytest.raises(UserError, match=r"Input X contains NaN \(row 5, column 'junk'; line 6"):
        data.load(path, "y")
