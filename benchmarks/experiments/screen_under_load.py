"""Does the cohort's speed screen read the same ratios on a busy machine as on a quiet one?

    .venv/bin/python benchmarks/experiments/screen_under_load.py rotten_tomatoes 5 out.jsonl

Builds the teacher and the default students as a run does and times them on 64 texts of the
training split (what the screen reads), repeatedly, in up to four ways (argument 5, separated by
";"): "one after another" (`best_docs_per_second` for each model in turn: the screen before the
thirty-fourth sitting), "in turn" (`best_docs_per_second_in_turn`: the models take turns within
each round; the screen now), "in turn, CPU time" (the same, timed by the process's CPU time)
and "in turn, one thread". Run it once with the machine quiet and once beside other work; each
line of the output is one repetition's ratios and the CPU share the process got (`CpuShare`).
"""

import json
import sys
import time

import torch

from nanonet.bench.environment import pin_threads
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.speed import (
    CpuShare,
    best_docs_per_second,
    best_docs_per_second_in_turn,
    class_ids,
    untrained_classifier,
)
from nanonet.models.students import parse_student_spec
from nanonet.train.cohort import build_teacher, student_encoder
from nanonet.train.config import DataConfig, ModelConfig
from nanonet.train.run import load_task

METHODS = sys.argv[5].split(";") if len(sys.argv) > 5 else ["one after another", "in turn"]


def main(dataset: str, repeats: int, out: str, tag: str) -> None:
    pin_threads(2)
    task = load_task(DataConfig(dataset=dataset, labels_per_class=10), 0)
    sample = task.unlabelled_texts[:64]
    mc = ModelConfig()
    n = len(task.label_names)
    model, hf, tok, _ = build_teacher(mc, n)
    teacher = class_ids(NanoNetClassifier(model, tok, task.label_names, task.max_length), 64)
    students = {}
    for spec in mc.students:
        s_hf, s_tok = student_encoder(parse_student_spec(spec), hf, tok)
        students[spec] = class_ids(untrained_classifier(s_hf, s_tok, n, task.max_length), 64)
    models = [teacher, *students.values()]
    with torch.no_grad(), open(out, "a") as f:
        for r in range(repeats):
            for method in METHODS:
                start, load = time.perf_counter(), CpuShare(torch.get_num_threads())
                if method == "in turn":
                    speeds = best_docs_per_second_in_turn(models, sample)
                elif method == "in turn, one thread":
                    torch.set_num_threads(1)
                    speeds = best_docs_per_second_in_turn(models, sample)
                    torch.set_num_threads(2)
                elif method == "in turn, CPU time":
                    speeds = best_docs_per_second_in_turn(models, sample, clock=time.process_time)
                else:
                    speeds = [best_docs_per_second(p, sample) for p in models]
                ratios = [round(x / speeds[0], 2) for x in speeds[1:]]
                row = {
                    "tag": tag,
                    "dataset": dataset,
                    "repeat": r,
                    "method": method,
                    "seconds": round(time.perf_counter() - start, 1),
                    "cpu_share": round(load.share(), 2),
                    "teacher_docs_per_s": round(speeds[0], 2),
                    **dict(zip(students, ratios, strict=True)),
                }
                print(json.dumps(row), flush=True)
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")
