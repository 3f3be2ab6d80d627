import sys

import numpy as np

from nanonet.data.builtin import builtin_task, load_builtin_splits
from nanonet.data.task import Task
from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.config import RunConfig
from nanonet.train.metrics import evaluate
from nanonet.train.trainer import NanoNetTrainer

tag, seed, threads, *ovr = sys.argv[1:]
seed = int(seed)
sp = load_builtin_splits("rotten_tomatoes")
order = np.random.default_rng(123).permutation(len(sp.train_texts))
dev = order[:500]
dev_texts = [sp.train_texts[i] for i in dev]
dev_y = [sp.train_labels[i] for i in dev]
t = builtin_task("rotten_tomatoes", 10, seed, None)
pool = [x for x in t.unlabelled_texts if x not in set(dev_texts)][:2000]
task = Task(
    "rotten_tomatoes",
    t.label_names,
    t.labelled_texts,
    t.labelled_labels,
    pool,
    dev_texts,
    dev_y,
    128,
)
cfg = RunConfig()
cfg.train.seed = seed
cfg.train.threads = int(threads)
for o in ovr:
    cfg.override(o)


class Diag(NanoNetTrainer):
    def _ev(self, where):
        self.teacher.model.eval()
        clf = NanoNetClassifier(self.teacher.model, self.teacher.tokenizer, task.label_names, 128)
        print(
            tag, seed, where, round(evaluate(clf, dev_texts, dev_y, 64)["accuracy"], 4), flush=True
        )

    def _init_heads(self):
        super()._init_heads()
        self._ev("after contrastive+centroid head")

    def nanonet_step(self, step, lab, unl):
        if step == 0:
            self._ev("after CE warmup")
        if step == 100:
            self._ev("online step 100")
        return super().nanonet_step(step, lab, unl)


r = Diag(task, cfg, progress=False).train()
print(tag, seed, "end", {m["name"]: m["test"]["accuracy"] for m in r.report["members"]}, flush=True)
