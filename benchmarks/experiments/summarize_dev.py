"""Mean ± std per tag of the dev-split rows that pipe.py appends (one JSON object per line).

python benchmarks/experiments/summarize_dev.py benchmarks/experiments/results/dev_17.jsonl
"""

import json
import sys
from collections import defaultdict

import numpy as np

with open(sys.argv[1], encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
by_tag: dict[tuple[str, str], list[dict]] = defaultdict(list)
for r in rows:
    by_tag[(r.get("dataset", "rotten_tomatoes"), r["tag"])].append(r)


def cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


print("| dataset | tag | seeds | teacher | kept student | best student | each student | s |")
print("|---|---|---|---|---|---|---|---|")
for (dataset, tag), rs in by_tag.items():
    rs = sorted(rs, key=lambda r: r["seed"])
    teacher = [next(v for k, v in r["members"].items() if k.startswith("teacher (")) for r in rs]
    kept = [r["members"][r["kept"]] for r in rs]
    students = [
        {k: v for k, v in r["members"].items() if not k.startswith("teacher (")} for r in rs
    ]
    best = [max(s.values()) for s in students]
    names = sorted({k for s in students for k in s})
    each = "; ".join(f"{n} {cell([s[n] for s in students if n in s])}" for n in names)
    seeds = ",".join(str(r["seed"]) for r in rs)
    secs = "/".join(str(r["secs"]) for r in rs)
    print(
        f"| {dataset} | {tag} | {seeds} | {cell(teacher)} | {cell(kept)} | {cell(best)} "
        f"| {each} | {secs} |"
    )
