"""Which cold-start rule picks the better labels? A cheap proxy on the dev split.

For each label draw (seed), every rule picks as many texts as the protocol's random draw
(10 per class) from the same candidates (the draw plus the pool); a logistic-regression probe
on frozen MPNet sentence vectors (unit length) learns from the picks' true labels and is
scored on the dev split. The protocol's random draw is stratified by the true labels, which
no cold start can be. Embeddings are cached under /tmp/exp.

Rules: random (the protocol's draw), uniform (a user's unstratified draw), cover (`suggest`'s
cold start), cover2 (the n largest of 2n clusters), half, typical (TypiClust), names (zero-shot
by class names), and two-round rules in which the first picks are labelled and a class-balanced
probe on them guides the rest: roundR{even,doubt,cand} (R rounds, the first a cover; even: a
cover inside each predicted class, more picks where fewer labels; doubt: least sure; cand:
over-generated cluster centres kept in size order while the counts stay even), seqF (one cover
of F*n clusters, half of it at once, the rest evened by the probe) and hyb (seq1, deficits
filled by a cover inside the predicted class).

    PYTHONPATH=src:benchmarks/experiments [CW=balanced] NANONET_DEV_DATASET=D \
        python benchmarks/experiments/suggest_probe.py THREADS SEEDS RULES
"""

import os
import sys

import numpy as np
import torch
from devsplit import DATASET, dev_task
from sklearn.linear_model import LogisticRegression

from nanonet.label.suggest import _model, cover, embed, least_sure, spherical_kmeans

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


def second_round(
    x: np.ndarray, first: list[int], ys: list[int], n: int, how: str, seed: int, k: int
) -> list[int]:
    """Round 2 after the first picks are labelled: a balanced probe on them guides the rest."""
    rest = np.setdiff1d(np.arange(len(x)), first)
    m = n - len(first)
    if len(set(ys)) < 2:
        return first + [int(rest[i]) for i, _ in cover(x[rest], m, seed + 7)]
    clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(x[first], ys)
    if how == "doubt":
        logits = clf.decision_function(x[rest])
        if logits.ndim == 1:
            logits = np.stack([-logits / 2, logits / 2], 1)
        return first + [int(rest[i]) for i, _ in least_sure(x[rest], logits, m, seed)]
    guess = clf.predict(x[rest])
    counts = np.bincount(ys, minlength=k)
    want = np.zeros(k, dtype=int)
    for _ in range(m):  # give each next label to the class with the fewest so far
        c = int(np.argmin(counts + want))
        want[c] += 1
    out = list(first)
    if how == "cand":  # over-generate cluster centres, keep them in size order while counts even
        cands = [int(rest[i]) for i, _ in cover(x[rest], min(3 * m, len(rest)), seed)]
        cg = clf.predict(x[cands])
        for i, c in zip(cands, cg, strict=True):
            if want[c] > 0:
                out.append(i)
                want[c] -= 1
        extra = [i for i in cands if i not in out]
        return out + extra[: n - len(out)]
    for c in range(k):
        members = rest[guess == c]
        if want[c] and len(members) >= want[c]:
            out += [int(members[i]) for i, _ in cover(x[members], int(want[c]), seed + c)]
    extra = [int(rest[i]) for i, _ in cover(x[rest], m, seed + 99) if int(rest[i]) not in out]
    return out + extra[: n - len(out)]


def evened_cover(
    x: np.ndarray, cands: list[int], label, n: int, k: int, seed: int, fill: bool
) -> list[int]:
    """seqF / hyb: the first n/2 of `cands` (cluster centres, largest first) are labelled at
    once; a class-balanced probe on them keeps the rest in order while the class counts stay
    even; with `fill`, a class still short gets a cover inside its guessed members."""
    idx = cands[: n // 2]
    ys0 = [label(i) for i in idx]
    rest = cands[n // 2 :]
    if len(set(ys0)) < 2:
        return (idx + rest)[:n]
    clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(x[idx], ys0)
    counts = np.bincount(ys0, minlength=k)
    want = np.zeros(k, dtype=int)
    for _ in range(n - len(idx)):
        want[int(np.argmin(counts + want))] += 1
    for i, c in zip(rest, clf.predict(x[rest]), strict=True):
        if want[c] > 0:
            idx.append(i)
            want[c] -= 1
    if fill:
        guess = clf.predict(x)
        for c in range(k):
            if want[c] > 0:
                members = np.setdiff1d(np.flatnonzero(guess == c), idx)
                if len(members) >= want[c]:
                    idx += [int(members[j]) for j, _ in cover(x[members], int(want[c]), seed + c)]
    return idx + [i for i in rest if i not in idx][: n - len(idx)]


def pick(rule: str, task, seed: int) -> tuple[list[str], list[int]]:
    cand = [*task.labelled_texts, *task.unlabelled_texts]
    n = len(task.labelled_texts)
    x = vec(cand)
    if rule == "random":
        return task.labelled_texts, task.labelled_labels
    rng = np.random.default_rng(1000 + seed)
    if rule == "cover":
        idx = [i for i, _ in cover(x, n, seed)]
    elif rule == "cover2":  # the n largest of 2n clusters
        idx = [i for i, _ in cover(x, 2 * n, seed)][:n]
    elif rule == "uniform":  # a user's own random draw: not stratified
        idx = list(rng.choice(len(cand), n, replace=False))
    elif rule == "half":
        first = list(rng.choice(len(cand), n // 2, replace=False))
        idx = first + [i for i, _ in cover(x, n, seed) if i not in set(first)][: n - n // 2]
    elif rule == "typical":
        idx = typical(x, n, seed)
    elif rule == "names":
        idx = by_names(x, task.label_names, n, seed)
    elif rule.startswith(("seq", "hyb")):
        truth0 = dict(zip(task.labelled_texts, task.labelled_labels, strict=True)) | SPLIT_TRUTH
        f = int(rule[3]) if rule.startswith("seq") else 1
        cands = [i for i, _ in cover(x, f * n, seed)]
        idx = evened_cover(
            x, cands, lambda i: truth0[cand[i]], n, len(task.label_names), seed, rule == "hyb"
        )
    elif rule.startswith("round"):  # roundRdoubt / roundReven: R rounds, the first a cover
        truth0 = dict(zip(task.labelled_texts, task.labelled_labels, strict=True)) | SPLIT_TRUTH
        rounds, how = int(rule[5]), rule[6:]
        idx = [i for i, _ in cover(x, n // rounds, seed)]
        for r in range(2, rounds + 1):
            upto = n * r // rounds
            idx = second_round(
                x, idx, [truth0[cand[i]] for i in idx], upto, how, seed + r, len(task.label_names)
            )
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
