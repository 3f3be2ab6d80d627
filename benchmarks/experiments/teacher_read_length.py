"""Should the adapted teacher be scored at the length it was trained on?

Training reads the first `train.max_train_length` (128) tokens of every text, the teacher's
too, and its pool targets and the selection's reference are computed at that length; only the
report's teacher score reads the dataset's `max_length` (256 on bbc_news and 20newsgroups), a
window the teacher's head never saw. This trains one default run on the dev split (texts of the
training split, never the test split) and scores the teacher and every student at 128 and at
the dataset's length.

    PYTHONPATH=src:benchmarks/experiments NANONET_DEV_DATASET=bbc_news \\
        python benchmarks/experiments/teacher_read_length.py SEEDS [section.key=value ...]
"""

import logging
import sys

import numpy as np
import torch
from devsplit import DATASET, dev_task, run_config

from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.trainer import NanoNetTrainer

seeds = [int(s) for s in sys.argv[1].split(",")]
overrides = sys.argv[2:]
torch.set_num_threads(2)
# The trainer's phase marks say where the run's time went.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
for seed in seeds:
    task = dev_task(seed, 1000, 5000)
    trainer = NanoNetTrainer(task, run_config(seed, 2, overrides), progress=False)
    result = trainer.train()
    y = np.array(task.test_labels)
    line = [f"{DATASET} seed {seed} (kept {result.kept})"]
    for m in [trainer.teacher, *trainer.students]:
        for length in sorted({trainer.train_length, task.max_length}):
            clf = NanoNetClassifier(m.model, m.tokenizer, task.label_names, length)
            pred = clf.predict_logits(task.test_texts, 64).argmax(-1)
            line.append(f"{m.name} @{length} {float((pred == y).mean()):.4f}")
    print(" | ".join(line), flush=True)
