"""Does the cohort keep learning past the default 200 steps, and how much of stage 4 does it
need? Dev-split accuracy of the teacher and of every student along one run (set
NANONET_DEV_DATASET for another dataset, NANONET_DEV_POOL for another pool cap than 5,000,
NANONET_DEV_N for another dev size than 500).

    NANONET_DEV_DATASET=20newsgroups python steps_curve.py TAG SEED THREADS [overrides...]

Prints one line per checkpoint: tag, seed, where, member, dev accuracy. In stage 3 a checkpoint
falls every quarter of the steps (NANONET_CURVE_STAGE3=0: none); in stage 4 at its start and
each time the students have read another 120,000 tokens of the pool (counted with the teacher's
tokenizer at the training read length, as `train.distill_max_tokens` counts them). A point
inside stage 4 is scored before the learning rate has decayed, so it understates a run that
stops there. The test split is never read.
"""

import os
import sys

from devsplit import dev_task, run_config

from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.metrics import evaluate
from nanonet.train.trainer import NanoNetTrainer

tag, seed, threads, *ovr = sys.argv[1:]
seed = int(seed)
n_dev = int(os.environ.get("NANONET_DEV_N", "500"))
task = dev_task(seed, n_dev, pool_cap=int(os.environ.get("NANONET_DEV_POOL", "5000")))
cfg = run_config(seed, int(threads), ovr)
every = max(1, cfg.train.steps // 4)
stage3 = os.environ.get("NANONET_CURVE_STAGE3", "1") != "0"
TOKEN_MARK = 120_000


class Curve(NanoNetTrainer):
    tokens = 0
    next_mark = 0

    def _score(self, where, members):
        for m in members:
            m.model.eval()
            clf = NanoNetClassifier(m.model, m.tokenizer, task.label_names, self.train_length)
            acc = evaluate(clf, task.test_texts, task.test_labels, 64)["accuracy"]
            print(tag, seed, where, m.name, round(acc, 4), flush=True)
            m.model.train()
        self.teacher.model.eval()  # the teacher runs in eval mode throughout (cached bottom)

    def _init_heads(self):
        super()._init_heads()
        if stage3:
            self._score("after contrastive stage", [self.teacher])

    def nanonet_step(self, step, lab, unl):
        if stage3 and step > 0 and step % every == 0:
            self._score(
                f"step {step}",
                [self.teacher, *self.students] if step % (2 * every) == 0 else self.students,
            )
        return super().nanonet_step(step, lab, unl)

    def distill_step(self, lab, unl):
        if self.tokens >= self.next_mark:
            self._score(f"stage 4 after {self.tokens} tokens", self.students)
            self.next_mark += TOKEN_MARK
        ids = self.teacher.ids["unlabelled"]
        self.tokens += sum(min(len(ids[i]), self.train_length) for i in unl)
        return super().distill_step(lab, unl)


curve = Curve(task, cfg, progress=False)
r = curve.train()
print(tag, seed, "stage 4 read", curve.tokens, "tokens per student", flush=True)
print(tag, seed, "end", {m["name"]: m["test"]["accuracy"] for m in r.report["members"]}, flush=True)
