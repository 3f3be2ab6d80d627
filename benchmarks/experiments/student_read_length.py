"""Should the kept student read only as many tokens as it was trained on?

    .venv/bin/python benchmarks/experiments/student_read_length.py bbc_news 0 out.json
        [section.key=value ...]

Training reads the first `train.max_train_length` (128) tokens of a text; before
`train.student_max_length` existed, the saved student read the dataset's `max_length` (256 on
bbc_news and 20newsgroups) at prediction. This trains one default NanoNet run (with test texts
removed from the task), then scores every cohort member on the whole test split at several read
lengths and times each on the benchmark's throughput sample against the teacher reference read
at the dataset's length: the accuracy/throughput trade of reading less. One seed only: it says
whether a change is worth a full benchmark run, not what the change does across label draws.
"""

import dataclasses
import json
import sys
import time

from nanonet.bench.config import load_bench_config
from nanonet.bench.environment import pin_threads, provenance
from nanonet.bench.measure import (
    docs_per_second,
    score,
    teacher_docs_per_second,
    throughput_sample,
)
from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.config import DataConfig, RunConfig
from nanonet.train.run import load_task
from nanonet.train.trainer import NanoNetTrainer

LENGTHS = (256, 192, 128, 96)


def main(dataset: str, seed: int, out: str, overrides: list[str]) -> None:
    pin_threads(2)
    bench = load_bench_config("benchmarks/configs/protocol.yaml")
    full = load_task(DataConfig(dataset=dataset, labels_per_class=10), seed)
    sample_ids = throughput_sample(len(full.test_texts), bench.dataset(dataset).throughput_texts)
    sample = [full.test_texts[i] for i in sample_ids]
    task = dataclasses.replace(full, test_texts=[], test_labels=[])
    n = len(full.label_names)
    cfg = RunConfig()
    cfg.data.dataset = dataset
    cfg.train.seed = seed
    cfg.train.threads = 2
    cfg.train.eval_batch_size = bench.throughput_batch
    for override in overrides:  # section.key=value, as on the command line; for smoke runs
        cfg.override(override)
    trainer = NanoNetTrainer(task, cfg, progress=False)
    t0 = time.perf_counter()
    result = trainer.train()
    rows: list[dict] = []
    record = {
        **provenance(threads=2),
        "dataset": dataset,
        "seed": seed,
        "kept": result.kept,
        "rows": rows,
    }
    record["train_seconds"] = round(time.perf_counter() - t0, 1)
    for m in trainer.students:
        for length in LENGTHS:
            if length > full.max_length:
                continue
            clf = NanoNetClassifier(m.model, m.tokenizer, full.label_names, length)

            def predict(texts: list[str], clf: NanoNetClassifier = clf) -> object:
                return clf.predict_logits(texts, bench.throughput_batch).argmax(-1)

            metrics = score(predict, full.test_texts, full.test_labels, n)
            docs = docs_per_second(predict, sample, min_seconds=3.0)
            rows.append(
                {
                    "student": m.name,
                    "kept": m.name == result.kept,
                    "read_length": length,
                    "accuracy": metrics["accuracy"],
                    "macro_f1": metrics["macro_f1"],
                    "docs_per_s": docs,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    del trainer, result
    teacher = teacher_docs_per_second(
        bench.teacher, n, full.max_length, sample, bench.throughput_batch
    )
    record["teacher_docs_per_s"] = teacher
    for r in rows:
        r["x_teacher"] = r["docs_per_s"] / teacher
    print(f"teacher {teacher:.2f} docs/s", flush=True)
    with open(out, "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:])
