"""Data in (issue 24): each test plants one of the inputs a new user tried and checks the
new behaviour against an independent reference (statsmodels on the re-encoded data, the
file's own lines counted here, numpy arrays built by hand)."""

from __future__ import annotations

import gzip
import json
import os
import warnings

import numpy as np
import pytest

import handgrad
from handgrad.errors import UserError
from tests.conftest import invoke


def voters(n=200, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = rng.random(n) < 1 / (1 + np.exp(-(0.8 * a - b + 0.2)))
    return a, b, y


def write_voters(path, n=200, blank_after=None):
    a, b, y = voters(n)
    lines = ["id,a,b,vote"] + [f"p{i},{float(a[i])!r},{float(b[i])!r},{'yes' if y[i] else 'no'}"
                               for i in range(n)]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def fit_json(runner, *args):
    r, out = invoke(runner, "fit", *args, "--json")
    return r, out


def one_line_error(runner, *args):
    r, _ = invoke(runner, "fit", *args)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    return lines[0]


# ---------------------------------------------------------------- text labels, --exclude


def test_yes_no_target_is_re_encoded_and_the_output_says_which_is_1(runner, tmp_path):
    sm = pytest.importorskip("statsmodels.api")
    path = write_voters(tmp_path / "v.csv")
    r, out = fit_json(runner, "logistic", "--data", path, "--target", "vote", "--exclude", "id")
    assert r.exit_code == 0, r.stderr
    assert "Target 'vote' re-encoded: 'no' -> 0, 'yes' -> 1" in " ".join(out["data"]["notes"])
    a, b, y = voters()
    ref = sm.Logit(y.astype(float), sm.add_constant(np.c_[a, b])).fit(disp=0, tol=1e-12)
    got = [out["coefficients"][k] for k in ("intercept", "a", "b")]
    np.testing.assert_allclose(got, ref.params, rtol=1e-8)


def test_exclude_leaves_an_id_column_out_and_without_it_the_error_suggests_it(runner, tmp_path):
    path = write_voters(tmp_path / "v.csv")
    msg = one_line_error(runner, "logistic", "--data", path, "--target", "vote")
    assert "Column 'id' holds text" in msg and "--exclude id" in msg
    r, out = fit_json(runner, "logistic", "--data", path, "--target", "vote", "--exclude", "id")
    assert r.exit_code == 0 and list(out["coefficients"]) == ["a", "b", "intercept"]
    msg = one_line_error(runner, "logistic", "--data", path, "--target", "vote",
                         "--exclude", "idd")
    assert "--exclude" in msg and "'idd'" in msg and "columns are: id, a, b, vote" in msg


def test_gzipped_csv_fits_like_the_plain_file(runner, tmp_path):
    path = write_voters(tmp_path / "v.csv")
    gz = tmp_path / "v.csv.gz"
    gz.write_bytes(gzip.compress(open(path, "rb").read()))
    args = ("--target", "vote", "--exclude", "id")
    _, plain = fit_json(runner, "logistic", "--data", path, *args)
    r, zipped = fit_json(runner, "logistic", "--data", str(gz), *args)
    assert r.exit_code == 0 and zipped["coefficients"] == plain["coefficients"]


# --------------------------------------------------------------------- missing values


def test_a_missing_value_is_named_by_row_column_and_line_and_suggests_dropna(runner, tmp_path):
    path = write_voters(tmp_path / "v.csv", blank_after=3)  # a blank line: row k is not line k+1
    lines = open(path).read().split("\n")
    # data row 6 (file line 8, after the header and the blank line): empty its 'b'
    cells = lines[7].split(",")
    cells[2] = "NA"
    lines[7] = ",".join(cells)
    open(path, "w").write("\n".join(lines))
    msg = one_line_error(runner, "logistic", "--data", path, "--target", "vote", "--exclude", "id")
    assert ("missing value 'NA' (NaN) in column 'b', row 6 (line 8 of v.csv)" in msg
            and "--dropna" in msg), msg
    r, out = fit_json(runner, "logistic", "--data", path, "--target", "vote", "--exclude", "id",
                      "--dropna")
    assert r.exit_code == 0 and out["data"]["n"] == 199
    assert any("dropped 1 of 200 rows with missing values" in n and "line 8" in n
               for n in out["data"]["notes"])
    a, b, y = voters()  # the same fit as statsmodels on the 199 other rows
    keep = np.arange(200) != 5
    sm = pytest.importorskip("statsmodels.api")
    ref = sm.Logit(y[keep].astype(float), sm.add_constant(np.c_[a, b][keep])).fit(disp=0, tol=1e-12)
    np.testing.assert_allclose([out["coefficients"][k] for k in ("intercept", "a", "b")],
                               ref.params, rtol=1e-8)


def test_text_class_labels_for_softmax_are_re_encoded_in_sorted_order(runner, tmp_path):
    rng = np.random.default_rng(2)
    kinds = ["virginica", "setosa", "versicolor"]
    X = rng.normal(size=(90, 2))
    k = np.arange(90) % 3
    X[:, 0] += 2 * k
    rows = ["s,p,species"] + [f"{a!r},{b!r},{kinds[c]}" for (a, b), c in zip(X.tolist(), k)]
    (tmp_path / "iris.csv").write_text("\n".join(rows) + "\n")
    r, out = fit_json(runner, "softmax", "--data", str(tmp_path / "iris.csv"), "--target",
                      "species", "--l2", "1")
    assert r.exit_code == 0, r.stderr
    assert ("Target 'species' re-encoded to 0..2: 'setosa' -> 0, 'versicolor' -> 1, "
            "'virginica' -> 2.") in out["data"]["notes"]


def test_class_label_errors_count_rows_from_1_with_the_file_line(runner, tmp_path):
    rows = ["a,y"] + [f"{i},{i % 3}" for i in range(30)]
    rows[4] = "3,2.5"  # data row 4, file line 5
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    msg = one_line_error(runner, "softmax", "--data", str(tmp_path / "c.csv"), "--target", "y")
    assert "row 4 (line 5) is 2.5" in msg, msg


def test_a_count_target_given_to_logistic_suggests_poisson(runner, tmp_path):
    rng = np.random.default_rng(1)
    rows = ["a,visits"] + [f"{v!r},{k}" for v, k in zip(rng.normal(size=50).tolist(),
                                                         rng.poisson(3, 50).tolist())]
    (tmp_path / "n.csv").write_text("\n".join(rows) + "\n")
    msg = one_line_error(runner, "logistic", "--data", str(tmp_path / "n.csv"), "--target", "visits")
    assert "use poisson" in msg and "counts" in msg, msg


# ---------------------------------------------------------------------- feature names


def test_duplicate_features_and_a_column_named_intercept_are_errors(runner, tmp_path):
    path = write_voters(tmp_path / "v.csv")
    msg = one_line_error(runner, "logistic", "--data", path, "--target", "vote", "--features", "a,a")
    assert "'a' twice" in msg
    text = open(path).read().replace("id,a,b,vote", "id,a,intercept,vote", 1)
    (tmp_path / "i.csv").write_text(text)
    msg = one_line_error(runner, "logistic", "--data", str(tmp_path / "i.csv"), "--target", "vote",
                         "--exclude", "id")
    assert "'intercept'" in msg and "rename" in msg


@pytest.mark.parametrize("names, needle", [(["a", "b"], "2 feature names given for 3 columns"),
                                           (["a", "b", "a"], "Duplicate feature names: 'a'"),
                                           (["a", "intercept", "c"], "'intercept'")])
def test_api_feature_names_are_checked_before_fitting(names, needle):
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = X @ [1.0, 2.0, 3.0]
    with pytest.raises(UserError, match=needle):
        handgrad.fit("least_squares", X, y, feature_names=names)


# ---------------------------------------------------------------------- the Python API


def test_dataframe_and_series_keep_their_names_and_no_warning_leaks():
    pd = pytest.importorskip("pandas")
    a, b, y = voters()
    df = pd.DataFrame({"u": a, "v": b})
    vote = pd.Series(np.where(y, "yes", "no"), name="vote")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "not writable" warning would raise here
        res = handgrad.fit("logistic", df, vote)
    assert list(res.coefficients) == ["u", "v", "intercept"]
    assert res.raw["data"]["target"] == "vote"
    assert any("'no' -> 0, 'yes' -> 1" in n for n in res.raw["data"]["notes"])
    df.loc[7, "v"] = np.nan
    with pytest.raises(UserError, match=r"NaN \(row 7, column 'v'\)"):
        handgrad.fit("logistic", df, vote)


def test_a_text_column_in_a_dataframe_is_named():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"u": [1.0, 2.0, 3.0, 4.0], "city": ["a", "b", "a", "c"]})
    with pytest.raises(UserError, match="Column 'city' of X holds text"):
        handgrad.fit("least_squares", df, [1.0, 2.0, 3.0, 5.0])


# ------------------------------------------------------------ files that are not what they say


def test_numpy_files_that_are_not_what_they_say_are_one_line_errors(runner, tmp_path):
    (tmp_path / "X.npy").write_bytes(b"")
    msg = one_line_error(runner, "logistic", "--data", str(tmp_path / "X.npy"))
    assert "X.npy is not a NumPy .npy array file: it is empty (0 bytes)" in msg
    (tmp_path / "d.npz").write_text("a,b,y\n1,2,1\n")
    for extra in ([], ["--chunk-rows", "16"]):
        msg = one_line_error(runner, "logistic", "--data", str(tmp_path / "d.npz"), *extra)
        assert "is not a NumPy .npz archive" in msg and "text (it starts 'a,b,y')" in msg, msg
        assert "pickle" not in msg and "BadZip" not in msg


def test_values_near_the_float_maximum_are_named_before_any_arithmetic(runner, tmp_path):
    rng = np.random.default_rng(0)
    rows = ["a,b,y"] + [f"{v * 1e307!r},{w!r},{w + v!r}" for v, w in
                        zip(rng.normal(size=30).tolist(), rng.normal(size=30).tolist())]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    msg = one_line_error(runner, "least_squares", "--data", str(tmp_path / "m.csv"), "--target", "y")
    assert "column 'a'" in msg and "overflows float64" in msg and "SVD" not in msg


def test_streamed_values_near_the_float_maximum_are_named_too(runner, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2))
    X[40, 1] = 1e300
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", (X[:, 0] > 0).astype(float))
    msg = one_line_error(runner, "logistic", "--data", str(tmp_path / "X.npy"), "--chunk-rows", "16")
    assert "column 1 reaches |x| = 1e+300" in msg and "overflows float64" in msg, msg


# --------------------------------------------------------------------------- configs


def test_a_config_reads_its_data_beside_itself_not_from_the_working_folder(runner, tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "work").mkdir()
    good = "a,y\n" + "\n".join(f"{i},{2 * i + 1}" for i in range(10)) + "\n"
    decoy = "a,y\n" + "\n".join(f"{i},{-3 * i}" for i in range(10)) + "\n"
    (tmp_path / "cfg" / "d.csv").write_text(good)
    (tmp_path / "work" / "d.csv").write_text(decoy)
    (tmp_path / "cfg" / "c.toml").write_text('model = "least_squares"\ndata = "d.csv"\n'
                                             'target = "y"\n')
    cwd = os.getcwd()
    os.chdir(tmp_path / "work")
    try:
        r, out = invoke(runner, "run", str(tmp_path / "cfg" / "c.toml"), "--json")
    finally:
        os.chdir(cwd)
    assert r.exit_code == 0, r.stderr
    assert out["coefficients"]["a"] == pytest.approx(2.0) and json.dumps(out)
