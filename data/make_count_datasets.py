"""Export the real count data set used by the Poisson tests, once (maintainers).

    pip install statsmodels && python data/make_count_datasets.py

* ``randhie.csv``: the RAND Health Insurance Experiment extract statsmodels ships
  (``statsmodels.datasets.randhie``; Cameron and Trivedi, *Microeconometrics*, 2005),
  all 20,190 rows, columns unchanged; target ``mdvis`` = number of outpatient visits to
  an MD, moved to the last column.

Source and licence are in data/README.md.  Values are written with repr (exact float64
round trip); rerunning the script rewrites the same bytes.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_datasets import _num, _write  # the same CSV writer (run from data/ or its parent)


def main() -> None:
    from statsmodels.datasets import randhie

    df = randhie.load_pandas().data
    cols = [c for c in df.columns if c != "mdvis"] + ["mdvis"]
    _write("randhie.csv", cols, ([_num(v) for v in r] for r in df[cols].itertuples(index=False)))


if __name__ == "__main__":
    main()
