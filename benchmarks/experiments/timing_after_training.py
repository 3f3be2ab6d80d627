"""Does a process that has just trained a NanoNet cohort time inference more slowly?

    .venv/bin/python benchmarks/experiments/timing_after_training.py bbc_news

Times MiniLM-L3 and the teacher reference (the benchmark's own `docs_per_second` and
`teacher_docs_per_second`) fresh, after a short NanoNet run with the trainer alive, after
`del` + `gc`, and after `malloc_trim`. Uses test texts for timing only, never for scores.
"""

import ctypes
import dataclasses
import gc
import sys

from nanonet.bench.environment import pin_threads
from nanonet.bench.measure import teacher_docs_per_second, throughput_sample
from nanonet.models.assets import encoder_dir
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder
from nanonet.models.speed import docs_per_second
from nanonet.train.config import DataConfig, RunConfig
from nanonet.train.run import load_task
from nanonet.train.trainer import NanoNetTrainer


def main(dataset: str) -> None:
    pin_threads(2)
    full = load_task(DataConfig(dataset=dataset, labels_per_class=10), 0)
    sample = [full.test_texts[i] for i in throughput_sample(len(full.test_texts), 64)]
    task = dataclasses.replace(full, test_texts=[], test_labels=[])
    n = len(full.label_names)
    hf, tok = load_hf_encoder(encoder_dir("minilm-l3"))
    model = EncoderClassifier(Backbone(hf), n, dropout=0.0)
    student = NanoNetClassifier(model, tok, full.label_names, full.max_length)

    def timed(tag: str) -> None:
        s = docs_per_second(
            lambda x: student.predict_logits(x, 64).argmax(-1), sample, min_seconds=3.0
        )
        t = teacher_docs_per_second("all-mpnet-base-v2", n, full.max_length, sample[:32], 64)
        print(f"{tag}: L3 {s:.1f} docs/s, teacher {t:.2f}, ratio {s / t:.2f}", flush=True)

    timed("fresh")
    cfg = RunConfig()
    cfg.data.dataset = dataset
    cfg.train.threads = 2
    cfg.train.steps = 40
    cfg.train.teacher_contrastive_steps = 10
    cfg.train.teacher_warmup_steps = 10
    trainer = NanoNetTrainer(task, cfg, progress=False)
    result = trainer.train()
    timed("after training, trainer alive")
    del trainer, result
    gc.collect()
    timed("after del + gc")
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    timed("after malloc_trim")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bbc_news")
