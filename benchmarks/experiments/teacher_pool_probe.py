"""Can the teacher's head use the pool? A cheap proxy on the dev split (frozen MPNet).

For each label draw, a logistic-regression head on the frozen teacher's unit sentence vectors
(class-balanced, as the run weights its losses) learns from the labels alone, or from the labels
plus pool texts it labels itself: the k most confident per class (`balanced_pseudo_labels`, the
run's `train.teacher_pseudo_per_class`), for one or several rounds. Scored on the dev split.
Vectors are cached under /tmp/exp.

With NANONET_PROBE_RULE=1 it also prints what a run could decide self-training on without the
dev split, from its labels and pool alone: `cv` is the accuracy on the held-out labels of a
leave-one-per-class-out cross-validation, without and with the first k (`cv_gain` the
difference, in labels), `conf` the mean probability of the k per class it would choose, and
`centroid` how often a nearest-class-centroid rule on the labels agrees with those choices.

    PYTHONPATH=src:benchmarks/experiments NANONET_DEV_DATASET=D NANONET_DEV_N=500 \
        python benchmarks/experiments/teacher_pool_probe.py THREADS SEEDS K[,K...] [ROUNDS]
"""

import os
import sys

import numpy as np
import torch
from devsplit import DATASET, dev_task
from sklearn.linear_model import LogisticRegression

from nanonet.label.suggest import _model, embed
from nanonet.train.pseudo_labels import balanced_pseudo_labels, self_training_check

torch.set_num_threads(int(sys.argv[1]))
seeds = [int(s) for s in sys.argv[2].split(",")]
ks = [int(k) for k in sys.argv[3].split(",")]
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
n_dev = int(os.environ.get("NANONET_DEV_N", "1000"))
length = int(os.environ.get("NANONET_PROBE_LEN", "128"))

tasks = {s: dev_task(s, n_dev, int(os.environ.get("NANONET_PROBE_POOL", "5000"))) for s in seeds}
texts = sorted(
    {t for task in tasks.values() for t in [*task.labelled_texts, *task.unlabelled_texts]}
    | set(tasks[seeds[0]].test_texts)
)
os.makedirs("/tmp/exp", exist_ok=True)
cache = f"/tmp/exp/teacher_emb_{DATASET}_{length}.npz"
stored = dict(np.load(cache, allow_pickle=True)) if os.path.exists(cache) else {}
known = dict(zip(stored.get("texts", []), stored.get("vectors", []), strict=True))
missing = [t for t in texts if t not in known]
if missing:
    model, tok, _ = _model(None, "all-mpnet-base-v2", length)
    vecs, _ = embed(model, tok, missing, length, progress=True)
    known.update(zip(missing, vecs, strict=True))
    np.savez(cache, texts=np.array(list(known)), vectors=np.stack(list(known.values())))


def vec(ts: list[str]) -> np.ndarray:
    return np.stack([known[t] for t in ts])


def fit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(x, y)


def rule(xl: np.ndarray, yl: np.ndarray, xu: np.ndarray, k: int) -> dict[str, float]:
    """Self-training's worth, judged from the labels and the pool alone."""
    base = fit(xl, yl)
    chosen, plab = balanced_pseudo_labels(base.predict_log_proba(xu), k)
    conf = np.exp(base.predict_log_proba(xu[chosen]).max(-1)).mean()
    centroids = np.stack([xl[yl == c].mean(0) for c in range(yl.max() + 1)])
    centroid = ((xu[chosen] @ centroids.T).argmax(-1) == np.array(plab)).mean()
    check = self_training_check(xl, yl, xu, k)
    return {
        "cv": check["without"] / check["labels"],
        f"cv_k{k}": check["with"] / check["labels"],
        "cv_gain": check["with"] - check["without"],
        "conf": conf,
        "centroid": centroid,
    }


for s in seeds:
    task = tasks[s]
    xl, yl = vec(task.labelled_texts), np.array(task.labelled_labels)
    xu, xd, yd = vec(task.unlabelled_texts), vec(task.test_texts), np.array(task.test_labels)
    base = fit(xl, yl)
    row = {"labels": (base.predict(xd) == yd).mean()}
    for k in ks:
        clf = base
        for r in range(rounds):
            chosen, plab = balanced_pseudo_labels(clf.predict_log_proba(xu), k)
            clf = fit(np.concatenate([xl, xu[chosen]]), np.concatenate([yl, plab]))
            if r == 0:
                row[f"k{k}r1"] = (clf.predict(xd) == yd).mean()
        row[f"k{k}r{rounds}"] = (clf.predict(xd) == yd).mean()
        if os.environ.get("NANONET_PROBE_RULE") == "1":
            row.update(rule(xl, yl, xu, k))
    print(
        DATASET,
        "seed",
        s,
        "pool",
        len(xu),
        " ".join(f"{k}={v:.3f}" for k, v in row.items()),
        flush=True,
    )
