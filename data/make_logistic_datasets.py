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

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_datasets import _num, _write  # the same CSV writer (run from data/ or its parent)


def _write_numbers(name: str, header: list[str], rows) -> None:
    _write(name, header, ([_num(v) for v in r] for r in rows))


def main() -> None:
    from sklearn.datasets import load_breast_cancer
    from statsmodels.datasets import anes96, longley

    bc = load_breast_cancer()
    names = [n.replace(" ", "_") for n in bc.feature_names]
    _write_numbers("breast_cancer.csv", names + ["malignant"],
           (list(x) + [1 - int(t)] for x, t in zip(bc.data, bc.target)))

    df = anes96.load_pandas().data
    cols = [c for c in df.columns if c != "vote"] + ["vote"]
    _write_numbers("anes96.csv", cols, df[cols].itertuples(index=False))

    lg = longley.load_pandas().data
    cols = [c for c in lg.columns if c != "TOTEMP"] + ["TOTEMP"]
    _write_numbers("longley.csv", cols, lg[cols].itertuples(index=False))


if __name__ == "__main__":
    main()
