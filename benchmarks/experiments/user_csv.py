"""A new user's files for issue 23's bar 5: 20newsgroups posts (e-mail-length texts) written as
CSV, 10 labelled per class, 5,000 unlabelled, 2,000 test, then trained as a user would:

    python benchmarks/experiments/user_csv.py OUT_DIR
    cd OUT_DIR && /usr/bin/time -v nanonet train --train labels.csv --unlabeled pool.csv \
        --test test.csv --out model

The draw is seeded and independent of the protocol's, so these files are not its task.
"""

import csv
import sys
from pathlib import Path

import numpy as np

from nanonet.data.builtin import load_builtin_splits

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
sp = load_builtin_splits("20newsgroups")
rng = np.random.default_rng(2026)
y = np.array(sp.train_labels)
labelled = np.concatenate(
    [rng.choice(np.flatnonzero(y == c), 10, replace=False) for c in np.unique(y)]
)
pool = rng.choice(np.setdiff1d(np.arange(len(y)), labelled), 5000, replace=False)
test = rng.choice(len(sp.test_texts), 2000, replace=False)


def write(name: str, header: list[str], rows: list[tuple[str, ...]]) -> None:
    with open(out / name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


names = sp.label_names
write("labels.csv", ["text", "label"], [(sp.train_texts[i], names[y[i]]) for i in labelled])
write("pool.csv", ["text"], [(sp.train_texts[i],) for i in pool])
write("test.csv", ["text", "label"], [(sp.test_texts[i], names[sp.test_labels[i]]) for i in test])
