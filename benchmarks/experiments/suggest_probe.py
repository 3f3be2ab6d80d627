"""Which cold-start rule picks the better labels? A cheap proxy on the dev split.

For each label draw (seed), every rule picks as many texts as the protocol's random draw
(10 per class) from the same candidates (the draw plus the pool); a logistic-regression probe
on frozen MPNet sentence vectors (unit length) learns from the picks' true labels and is
scored on the dev split. The protocol's random draw is stratified by the true labels, which
no cold start can be. Embeddings are cached under /tmp/exp.

    PYTHONPATH=src:benchmarks/experiments [CW=balanced] NANONET_DEV_DATASET=D \
        python benchmarks/experiments/suggest_probe.py THREADS SEEDS RULES
"""

import os
import sys

import numpy as np
import torch
from devsplit import DATASET, dev_task
from sklearn.linear_model import LogisticRegression

from nanonet.label.suggest import _model, cover, embed, spherical_kmeans

torch.set_num_threads(int(sys.argv[1]))
seeds = [int(s) for s in sys.argv[2].split(",")]
rules = sys.argv[3].split(",")

tasks = {s: dev_task(s, 1000, 5000) for s in seeds}
texts = sorted(
    {t for task in tasks.values() for t in [*task.labelled_texts, *task.unlabelled_texts]}
    | set(tasks[seeds[0]].test_texts)
)
cache = f"/tmp/exp/suggest_emb_{DATASET}.npz"
stored = dict(np.load(cache, allow_pickle=True)) if os.path.exists(cache) else {}
known = dict(zip(stored.get("texts", []), stored.get("vectors", []), strict=True))
missing = [t for t in texts if t not in known]
if missing:
    model, tok, length = _model(None, "all-mpnet-base-v2", 128)
    vecs, _ = embed(model, tok, missing, length, progress=True)
    known.update(zip(missing, vecs, strict=True))
    np.savez(cache, texts=np.array(list(known)), vectors=np.stack(list(known.values())))


def vec(ts: list[str]) -> np.ndarray:
    return np.stack([known[t] for t in ts])


def typical(x: np.ndarray, n: int, seed: int, k: int = 20) -> list[int]:
    """TypiClust: n clusters, each gives its most typical member (densest neighbourhood)."""
    assign, _ = spherical_kmeans(x, n, seed)
    picks = []
    for c in range(n):
        members = np.flatnonzero(assign == c)
        if len(members) == 0:
            continue
        sims = x[members] @ x[members].T
        kk = min(k, len(members) - 1)
        if kk < 1:
            picks.append(int(members[0]))
            continue
        dens = np.sort(sims, 1)[:, -kk - 1 : -1].mean(1)
        picks.append(int(members[int(dens.argmax())]))
    return picks


def by_names(x: np.ndarray, names: list[str], n: int, seed: int) -> list[int]:
    """Zero-shot split by the class names, then a cover inside each predicted class."""
    model, tok, length = _model(None, "all-mpnet-base-v2", 128)
    nv, _ = embed(model, tok, names, length, progress=False)
    guess = (x @ nv.T).argmax(1)
    picks: list[int] = []
    per = [n // len(names) + (1 if c < n % len(names) else 0) for c in range(len(names))]
    for c, m in enumerate(per):
        members = np.flatnonzero(guess == c)
        if len(members) < m:
            continue
        picks += [int(members[i]) for i, _ in cover(x[members], m, seed)]
    rest = [i for i, _ in cover(x, n, seed + 1) if i not in set(picks)]
    return picks + rest[: n - len(picks)]


def pick(rule: str, task, seed: int) -> tuple[list[str], list[int]]:
    cand = [*task.labelled_texts, *task.unlabelled_texts]
    n = len(task.labelled_texts)
    x = vec(cand)
    if rule == "random":
        return task.labelled_texts, task.labelled_labels
    rng = np.random.default_rng(1000 + seed)
    if rule == "cover":
        idx = [i for i, _ in cover(x, n, seed)]
    elif rule == "uniform":  # a user's own random draw: not stratified
        idx = list(rng.choice(len(cand), n, replace=False))
    elif rule == "half":
        first = list(rng.choice(len(cand), n // 2, replace=False))
        idx = first + [i for i, _ in cover(x, n, seed) if i not in set(first)][: n - n // 2]
    elif rule == "typical":
        idx = typical(x, n, seed)
    elif rule == "names":
        idx = by_names(x, task.label_names, n, seed)
    else:
        raise SystemExit(f"unknown rule {rule}")
    truth = dict(zip(task.labelled_texts, task.labelled_labels, strict=True))
    truth.update(SPLIT_TRUTH)
    return [cand[i] for i in idx], [truth[cand[i]] for i in idx]


from devsplit import splits  # noqa: E402

sp = splits()
SPLIT_TRUTH = dict(zip(sp.train_texts, sp.train_labels, strict=True))

results: dict[str, list[float]] = {r: [] for r in rules}
for s in seeds:
    task = tasks[s]
    xd, yd = vec(task.test_texts), np.array(task.test_labels)
    line = [f"seed {s}"]
    for r in rules:
        ts, ys = pick(r, task, s)
        counts = np.bincount(ys, minlength=len(task.label_names))
        if len(set(ys)) < 2:
            acc = float(np.mean(yd == ys[0]))
        else:
            weight = os.environ.get("CW") or None  # CW=balanced: class-weighted
            clf = LogisticRegression(C=1.0, max_iter=2000, class_weight=weight).fit(vec(ts), ys)
            acc = float((clf.predict(xd) == yd).mean())
        results[r].append(acc)
        line.append(f"{r} {acc:.4f} (classes seen {int((counts > 0).sum())}, max {counts.max()})")
    print(" | ".join(line), flush=True)
for r, a in results.items():
    print(f"{DATASET} {r}: {np.mean(a):.4f} ± {np.std(a):.4f}", flush=True)
