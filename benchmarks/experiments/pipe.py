"""Exploration on a dev split drawn from the *train* split (never the test set)."""

import json
import logging
import os
import sys
import time

from devsplit import dev_task, run_config

from nanonet.train.run import fit

# Phase marks with elapsed seconds go to stderr: where a run spends its time.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
logging.getLogger("transformers").setLevel(logging.ERROR)
tag, seed, threads, *ovr = sys.argv[1:]
seed = int(seed)
task = dev_task(seed, int(os.environ.get("NANONET_DEV_N", "1000")))
cfg = run_config(seed, int(threads), ovr)
t0 = time.time()
res = fit(cfg, task, progress=False)
row = {
    "tag": tag,
    "seed": seed,
    "ovr": ovr,
    "secs": round(time.time() - t0),
    "dataset": task.name,
    "pool": len(task.unlabelled_texts),
    "kept": res.kept,
    "members": {m["name"]: round(m["test"]["accuracy"], 4) for m in res.report["members"]},
    # The kept student's criterion, per student: to replay other selection rules offline.
    "selection": {
        m["name"]: {
            k: m[k]
            for k in ("selection_score", "selection_stderr_vs_best", "teacher_agreement", "kept")
        }
        for m in res.report["members"]
        if m["role"] == "student"
    },
    "self_training_check": res.report.get("self_training_check"),
}
print(json.dumps(row), flush=True)
with open(os.environ.get("NANONET_EXP_OUT", "/tmp/exp/pipe_results.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")
