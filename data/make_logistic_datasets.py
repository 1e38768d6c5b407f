"""Export the real data sets used for inference tests, once (maintainers).

    /tmp/venv/bin/pip install scikit-learn statsmodels && python data/make_logistic_datasets.py

* ``breast_cancer.csv``: the Wisconsin Diagnostic Breast Cancer data as scikit-learn ships
  it (``sklearn.datasets.load_breast_cancer``); column names have spaces replaced by
  underscores; target ``malignant`` = 1 for malignant, 0 for benign (scikit-learn's own
  ``target`` is the reverse: 0 malignant, 1 benign).
* ``anes96.csv``: the 1996 American National Election Studies extract statsmodels ships
  (``statsmodels.datasets.anes96``), all columns unchanged; target ``vote`` = 1 for Dole,
  0 for Clinton.
* ``longley.csv``: Longley's (1967) macroeconomic data as statsmodels ships it
  (``statsmodels.datasets.longley``), columns unchanged; target ``TOTEMP``.  NIST's
  Statistical Reference Datasets certify its least-squares solution to 15 digits
  (tests/test_accuracy.py checks against those values).

Sources and licences are in data/README.md.  Values are written with repr (exact float64
round trip); rerunning the script rewrites the same bytes.
"""

from __future__ import annotations

import csv
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def _num(v) -> str:
    v = float(v)
    return str(int(v)) if v == int(v) else repr(v)


def _write(name: str, header: list[str], rows) -> None:
    path = os.path.join(HERE, name)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([_num(v) for v in r])
    print(f"wrote {path}")


def main() -> None:
    from sklearn.datasets import load_breast_cancer
    from statsmodels.datasets import anes96, longley

    bc = load_breast_cancer()
    names = [n.replace(" ", "_") for n in bc.feature_names]
    _write("breast_cancer.csv", names + ["malignant"],
           (list(x) + [1 - int(t)] for x, t in zip(bc.data, bc.target)))

    df = anes96.load_pandas().data
    cols = [c for c in df.columns if c != "vote"] + ["vote"]
    _write("anes96.csv", cols, df[cols].itertuples(index=False))

    lg = longley.load_pandas().data
    cols = [c for c in lg.columns if c != "TOTEMP"] + ["TOTEMP"]
    _write("longley.csv", cols, lg[cols].itertuples(index=False))


if __name__ == "__main__":
    main()
