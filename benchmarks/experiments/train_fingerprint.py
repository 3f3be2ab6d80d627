"""Digests of what tiny training runs produce, to show a refactor changes nothing.

Runs the tests' tiny random encoders through every stage (defaults; self-training with
embedding distillation; uneven labels; a run stopped mid-stage and resumed) and prints, per
run, a digest of every member's weights and of the logged losses. Run it at two commits and
diff the output:

    PYTHONPATH=src:tests python benchmarks/experiments/train_fingerprint.py > before.txt
"""

import contextlib
import hashlib
import tempfile
from pathlib import Path

import torch

from conftest import _write_tiny
from nanonet.train.checkpoint import Checkpoints
from nanonet.train.trainer import NanoNetTrainer
from test_train import _config, _task

torch.set_num_threads(1)


def digest(trainer: NanoNetTrainer) -> str:
    h = hashlib.sha256()
    for m in [trainer.teacher, *trainer.students]:
        for k, v in sorted(m.model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def losses(logs: list[dict]) -> str:
    rows = []
    for r in logs:
        values = {k: round(v, 6) for k, v in r.items() if isinstance(v, float) and k != "seconds"}
        rows.append((r["phase"], r["step"], values))
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


tmp = Path(tempfile.mkdtemp())
mpnet = _write_tiny(tmp / "mpnet", "mpnet", 4)
bert = _write_tiny(tmp / "bert", "bert", 3)
variants = {
    "default": {},
    "selftrain+embkd": {"teacher_pseudo_per_class": 2, "embed_kd_weight": 1.0},
    "uneven": {},
}
for name, extra in variants.items():
    task = _task()
    if name == "uneven":
        task.labelled_labels = [0] * 14 + [1] * 6
    logs: list[dict] = []
    trainer = NanoNetTrainer(
        task, _config(mpnet, ["teacher:0", str(bert)], **extra), logs.append, False
    )
    result = trainer.train()
    print(name, digest(trainer), losses(logs), result.kept, len(logs))

cfg = _config(mpnet, ["teacher:0"], teacher_contrastive_draws=2, checkpoint_every=2)


def stop_in_stage_3(row: dict) -> None:
    if row["phase"] == "train" and row["step"] == 3:
        raise KeyboardInterrupt


checkpoints = Checkpoints(tmp / "checkpoints", 2)
with contextlib.suppress(KeyboardInterrupt):
    NanoNetTrainer(_task(), cfg, stop_in_stage_3, False, checkpoints).train()
resumed = NanoNetTrainer(_task(), cfg, None, False, checkpoints, True)
resumed.train()
print("resumed", digest(resumed))
