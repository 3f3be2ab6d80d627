import sys

from devsplit import dev_task, run_config

from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.metrics import evaluate
from nanonet.train.trainer import NanoNetTrainer

tag, seed, threads, *ovr = sys.argv[1:]
seed = int(seed)
task = dev_task(seed, 500)
dev_texts, dev_y = task.test_texts, task.test_labels
cfg = run_config(seed, int(threads), ovr)


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
