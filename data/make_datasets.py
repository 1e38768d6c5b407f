"""Export the bundled public datasets to CSV once (run by a maintainer, not by users).

    /tmp/venv/bin/pip install scikit-learn && python data/make_datasets.py

scikit-learn ships copies of these UCI data sets inside its wheel; this script writes
them out as plain CSV so that handgrad never needs scikit-learn.  Sources and licences
are listed in data/README.md.  The output is deterministic: rerunning it rewrites the
same bytes.
"""

from __future__ import annotations

import csv
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def _write(name: str, header: list[str], rows) -> None:
    path = os.path.join(HERE, name)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(r)
    print(f"wrote {path}")


def _num(v) -> str:
    v = float(v)
    return str(int(v)) if v == int(v) else repr(v)


def main() -> None:
    from sklearn.datasets import load_digits, load_iris, load_wine

    iris = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    _write("iris.csv", names + ["species"],
           ([_num(v) for v in x] + [int(t)] for x, t in zip(iris.data, iris.target)))

    wine = load_wine()
    _write("wine.csv", list(wine.feature_names) + ["cultivar"],
           ([_num(v) for v in x] + [int(t)] for x, t in zip(wine.data, wine.target)))

    digits = load_digits()
    pix = [f"p{r}{c}" for r in range(8) for c in range(8)]
    _write("digits.csv", pix + ["digit"],
           ([_num(v) for v in x] + [int(t)] for x, t in zip(digits.data, digits.target)))


if __name__ == "__main__":
    main()
