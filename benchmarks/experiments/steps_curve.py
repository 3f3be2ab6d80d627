"""Does the cohort keep learning past the default 200 steps? Dev-split accuracy of the teacher
and of every student along one run (set NANONET_DEV_DATASET for another dataset).

    NANONET_DEV_DATASET=20newsgroups python steps_curve.py TAG SEED THREADS [overrides...]

Prints one line per checkpoint: tag, seed, where, member, dev accuracy. The test split is
never read.
"""

import sys

from devsplit import dev_task, run_config

from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.metrics import evaluate
from nanonet.train.trainer import NanoNetTrainer

tag, seed, threads, *ovr = sys.argv[1:]
seed = int(seed)
task = dev_task(seed, 500, pool_cap=5000)
cfg = run_config(seed, int(threads), ovr)
every = max(1, cfg.train.steps // 4)


class Curve(NanoNetTrainer):
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
        self._score("after contrastive stage", [self.teacher])

    def nanonet_step(self, step, lab, unl):
        if step > 0 and step % every == 0:
            self._score(
                f"step {step}",
                [self.teacher, *self.students] if step % (2 * every) == 0 else self.students,
            )
        return super().nanonet_step(step, lab, unl)


r = Curve(task, cfg, progress=False).train()
print(tag, seed, "end", {m["name"]: m["test"]["accuracy"] for m in r.report["members"]}, flush=True)
