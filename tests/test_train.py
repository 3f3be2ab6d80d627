"""Losses, views, batching, config and the NanoNet loop, on tiny random models."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import synthetic_rows
from nanonet.data.batching import (
    bucketed_epochs,
    head_of,
    length_sorted_batches,
    pad_batch,
    pair_batch,
    scaled_batch_size,
)
from nanonet.data.task import Task
from nanonet.errors import NanoNetError
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.encoder import EncoderClassifier
from nanonet.train import cohort, teacher_depth
from nanonet.train import trainer as trainer_module
from nanonet.train.config import RunConfig
from nanonet.train.losses import (
    balanced_class_weights,
    distillation_loss,
    embedding_loss,
    mutual_loss,
    pair_similarity_loss,
    rampup,
    supervised_loss,
)
from nanonet.train.pseudo_labels import balanced_pseudo_labels, self_training_check
from nanonet.train.run_report import TEACHER_SCORE_BATCH
from nanonet.train.selection import choose_student
from nanonet.train.trainer import NanoNetTrainer
from nanonet.train.views import apply_view

# ----------------------------------------------------------------------- losses -------------


def test_distillation_is_zero_for_identical_logits_and_positive_otherwise() -> None:
    a = torch.tensor([[2.0, -1.0, 0.5]])
    assert distillation_loss(a, a, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    assert distillation_loss(a, -a, 2.0).item() > 0.1
    assert distillation_loss(a, a + 1.0, 2.0, "mse").item() == pytest.approx(1.0)


def test_distillation_sends_no_gradient_to_the_target() -> None:
    student = torch.zeros(2, 3, requires_grad=True)
    target = torch.randn(2, 3, requires_grad=True)
    distillation_loss(student, target, 1.0).backward()
    assert student.grad is not None and target.grad is None


def test_mutual_loss_averages_over_peers_and_is_zero_without_peers() -> None:
    own = torch.tensor([[1.0, 0.0]])
    p1, p2 = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    assert mutual_loss(own, [], 1.0).item() == 0.0
    both = mutual_loss(own, [p1, p2], 1.0).item()
    assert both == pytest.approx(distillation_loss(own, p1, 1.0).item() / 2)


def test_supervised_loss_is_cross_entropy() -> None:
    logits = torch.tensor([[10.0, -10.0]])
    assert supervised_loss(logits, torch.tensor([0])).item() < 1e-6


def test_class_weights_give_each_class_the_same_total_and_leave_balanced_labels_alone() -> None:
    labels = [0, 0, 0, 1, 2, 2]
    weights = balanced_class_weights(labels, 4)
    assert weights is not None
    per_class = [weights[c].item() * labels.count(c) for c in (0, 1, 2)]
    assert per_class == pytest.approx([2.0, 2.0, 2.0])  # n / k each: the mean weight stays 1
    assert weights[3].item() == 0.0  # a class without labels
    assert balanced_class_weights([0, 1, 1, 0], 2) is None
    assert balanced_class_weights([0, 0, 2, 2], 3) is None  # absent classes do not unbalance
    logits, y = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 0, 1])
    balanced = balanced_class_weights(y.tolist(), 2)
    assert supervised_loss(logits, y, balanced) > supervised_loss(logits, y)  # the minority counts


def test_rampup_grows_linearly_then_stays_at_one() -> None:
    assert rampup(0, 100, 0.2) == 0.0
    assert rampup(10, 100, 0.2) == pytest.approx(0.5)
    assert rampup(50, 100, 0.2) == 1.0
    assert rampup(0, 100, 0.0) == 1.0


# ----------------------------------------------------------------------- views --------------


def test_pair_loss_is_zero_for_separated_classes_and_positive_otherwise() -> None:
    y = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    assert pair_similarity_loss(separated, y).item() == pytest.approx(0.0, abs=1e-6)
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]], requires_grad=True)
    loss = pair_similarity_loss(mixed, y)
    assert loss.item() > 0.5
    loss.backward()
    assert mixed.grad is not None and mixed.grad.abs().sum() > 0


def test_pair_loss_weighs_positive_and_negative_pairs_equally() -> None:
    # Three classes, one pair each way wrong: positives all at cos 0, negatives all at cos 0.
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    z = torch.eye(6)
    # 3 positive pairs with loss 1 each, 12 negative pairs with loss 0: mean of the two means.
    assert pair_similarity_loss(z, y).item() == pytest.approx(0.5)


@pytest.mark.parametrize(("n_classes", "size"), [(2, 32), (20, 32), (5, 8)])
def test_pair_batches_hold_same_class_pairs(n_classes: int, size: int) -> None:
    labels = [c for c in range(n_classes) for _ in range(10)]
    rng = np.random.default_rng(0)
    for _ in range(20):
        batch = pair_batch(labels, size, rng)
        assert len(batch) == len(set(batch)) and len(batch) <= max(size, 4)
        counts = Counter(labels[i] for i in batch)
        assert len(counts) >= 2 and min(counts.values()) >= 2


@pytest.mark.parametrize("view", ["cutoff", "shuffle", "mask", "none"])
def test_views_keep_the_special_tokens_at_both_ends(view: str) -> None:
    rng = np.random.default_rng(0)
    ids = [101, *range(1000, 1030), 102]
    out = apply_view(ids, view, 0.3, rng, mask_id=103)
    assert out[0] == 101 and out[-1] == 102


def test_cutoff_drops_tokens_shuffle_keeps_them() -> None:
    rng = np.random.default_rng(0)
    ids = [1, *range(10, 60), 2]
    cut = apply_view(ids, "cutoff", 0.3, rng, None)
    assert 2 < len(cut) < len(ids)
    shuffled = apply_view(ids, "shuffle", 0.1, rng, None)
    assert Counter(shuffled) == Counter(ids) and shuffled != ids
    # Local: no token moves far.
    assert max(abs(shuffled.index(t) - ids.index(t)) for t in ids) <= 3


# ----------------------------------------------------------------------- batching -----------


def test_inference_batches_cover_every_index_once_longest_first() -> None:
    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = length_sorted_batches(lengths, 3)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(7))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


def test_training_batches_are_an_epoch_of_similar_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(1, 100, size=200))
    it = bucketed_epochs(lengths, 10, rng)
    epoch = [next(it) for _ in range(20)]
    assert sorted(i for b in epoch for i in b) == list(range(200))
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in epoch])
    assert spread < 20  # random batches would spread about 80


def test_batch_size_shrinks_with_text_length_only_past_the_reference() -> None:
    assert scaled_batch_size(32, 30.0, 48) == 32  # short texts: the nominal size
    assert scaled_batch_size(32, 128.0, 48) == 12  # same tokens per batch
    assert scaled_batch_size(16, 5000.0, 48) == 2  # never a batch of one
    assert scaled_batch_size(32, 500.0, None) == 32  # scaling off


def test_pad_batch_pads_to_the_batch_maximum_only() -> None:
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


# ----------------------------------------------------------------------- config -------------


def test_scientific_notation_without_a_dot_is_a_float() -> None:
    cfg = RunConfig()
    cfg.override("train.lr_bias=1e-3")
    assert cfg.train.lr_bias == 0.001


def test_config_yaml_round_trip(tmp_path: Path) -> None:
    cfg = RunConfig()
    cfg.override("train.steps=7")
    cfg.override("model.students=[teacher:0, minilm-l3]")
    cfg.to_yaml(tmp_path / "c.yaml")
    assert RunConfig.from_yaml(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize(
    "text", ["train:\n  stepz: 3\n", "train:\n  steps: many\n", "- a list\n", "train: [1\n"]
)
def test_bad_config_files_are_user_errors(tmp_path: Path, text: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(NanoNetError):
        RunConfig.from_yaml(tmp_path / "c.yaml")


@pytest.mark.parametrize("item", ["train.steps", "nope.steps=1", "train.nope=1", "train.seed=x"])
def test_bad_overrides_are_user_errors(item: str) -> None:
    with pytest.raises(NanoNetError):
        RunConfig().override(item)


# ----------------------------------------------------------------------- the loop -----------


def _task() -> Task:
    rows = synthetic_rows(10, seed=1)
    names = ["neg", "pos"]
    seen = {t for t, _ in rows}
    pool = sorted({t for t, _ in synthetic_rows(60, seed=2)} - seen)
    test = synthetic_rows(20, seed=3)
    return Task(
        name="synthetic",
        label_names=names,
        labelled_texts=[t for t, _ in rows],
        labelled_labels=[names.index(y) for _, y in rows],
        unlabelled_texts=pool,
        test_texts=[t for t, _ in test],
        test_labels=[names.index(y) for _, y in test],
        max_length=32,
    )


def _config(teacher: Path, students: list[str], **train: object) -> RunConfig:
    cfg = RunConfig()
    cfg.model.teacher = str(teacher)
    cfg.model.students = students
    cfg.model.teacher_trainable_layers = 2
    cfg.model.min_speedup = None  # tiny models: no student is 10x faster than the teacher
    cfg.train.steps = 6
    cfg.train.teacher_warmup_steps = 2
    cfg.train.teacher_contrastive_steps = 3
    cfg.train.selection_holdout = 10
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _moved_teacher_weights(trainer: NanoNetTrainer, teacher: Path) -> list[str]:
    from nanonet.models.encoder import load_hf_encoder

    fresh_state = load_hf_encoder(teacher)[0].state_dict()
    state = trainer.teacher.model.backbone.hf.state_dict()
    assert set(state) == set(fresh_state)  # the adapters were folded in: a plain checkpoint
    return [k for k, v in state.items() if not torch.equal(v, fresh_state[k])]


def test_stage1_at_full_depth_folds_adapters_into_every_layer(
    tiny_mpnet: Path, tiny_bert: Path
) -> None:
    trainer = NanoNetTrainer(_task(), _config(tiny_mpnet, ["teacher:0,1"]), progress=False)
    result = trainer.train()
    moved = _moved_teacher_weights(trainer, tiny_mpnet)
    # Stage 1 reached the bottom layers (0-1) through biases and query/value adapters ...
    assert any("layer.0." in k and k.endswith("q.weight") for k in moved)
    assert any("layer.1." in k and k.endswith("bias") for k in moved)
    # ... and nothing else: no key/output/feed-forward weight, no embedding table.
    assert all(k.endswith(("bias", "q.weight", "v.weight")) for k in moved), moved
    # The stage-1 weights count as trained, though frozen after it.
    teacher = result.report["members"][0]
    trainable_now = sum(p.numel() for p in trainer.teacher.model.parameters() if p.requires_grad)
    assert teacher["trainable_params"] == trainable_now + trainer.teacher.trained_before
    assert trainer.teacher.trained_before > 0


@pytest.mark.parametrize("student", ["teacher:0", "tiny-bert"])
def test_model_dropout_sets_every_dropout_in_a_student_and_none_in_the_teacher(
    tiny_mpnet: Path, tiny_bert: Path, student: str
) -> None:
    spec = str(tiny_bert) if student == "tiny-bert" else student
    ids = torch.randint(5, 20, (4, 12))
    mask = torch.ones_like(ids)
    outputs = {}
    for p in (0.0, 0.5):
        mc = _config(tiny_mpnet, [spec]).model
        mc.dropout = p
        teacher, hf, tok, _ = cohort.build_teacher(mc, 2)
        model, _, _ = cohort.build_student(spec, mc, 2, hf, tok)
        rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
        assert rates == {p}
        # The teacher keeps its encoder's own rate (0.1), also where the student is cut from it.
        teacher_rates = {m.p for m in teacher.backbone.modules() if isinstance(m, torch.nn.Dropout)}
        assert teacher_rates == {0.1}
        model.train()
        outputs[p] = [model(ids, mask) for _ in range(2)]
    assert torch.equal(*outputs[0.0])  # no dropout left anywhere: training mode is deterministic
    assert not torch.equal(*outputs[0.5])


def test_model_dropout_out_of_range_is_a_user_error() -> None:
    cfg = RunConfig()
    cfg.model.dropout = 1.0
    with pytest.raises(NanoNetError, match=r"model\.dropout"):
        cfg.validate()


def test_stage1_draws_start_alike_and_fold_in_as_their_mean(tiny_mpnet: Path) -> None:
    mc = _config(tiny_mpnet, ["teacher:0"]).model
    model, _, _, cut = cohort.build_teacher(mc, 2)
    before = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    teacher_depth.open_teacher_depth(model, mc.lora_rank, torch.Generator().manual_seed(0))
    start = {n: v for n, v in teacher_depth.stage1_weights(model).items() if ".lora_" not in n}
    draws, noise = [], torch.Generator().manual_seed(1)
    for k in range(2):
        if k:
            teacher_depth.restart_teacher_depth(model, start, torch.Generator().manual_seed(k))
            for n, v in teacher_depth.stage1_weights(model).items():  # the same start as draw 0 ...
                if ".lora_b" in n or n in start:
                    assert torch.equal(v, start.get(n, torch.zeros_like(v))), n
                elif ".lora_a" in n:  # ... but adapters drawn anew
                    assert not torch.equal(v, draws[0][n]), n
        with torch.no_grad():  # as stage 1 would train them
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.01 * torch.randn(p.shape, generator=noise))
        draws.append(teacher_depth.stage1_weights(model))
    teacher_depth.close_teacher_depth(model, mc, cut, draws)
    after = dict(model.backbone.named_parameters())
    assert set(after) == set(before)  # folded: a plain encoder again
    scale = 2.0  # LoRA's alpha / rank
    for name, value in after.items():
        key = "backbone." + name
        a_key, b_key = key.replace(".weight", ".lora_a"), key.replace(".weight", ".lora_b")
        bias_key = key.replace(".bias", ".base.bias")
        if (
            name.endswith(".weight") and a_key in draws[0]
        ):  # an adapted matrix: the mean of the draws' low-rank updates
            update = sum(d[b_key] @ d[a_key] for d in draws) / 2
            torch.testing.assert_close(value, before[name] + scale * update)
        elif key in draws[0] or bias_key in draws[0]:  # a bias: the draws' mean
            k = key if key in draws[0] else bias_key
            torch.testing.assert_close(value, (draws[0][k] + draws[1][k]) / 2)
        else:
            assert torch.equal(value, before[name]), name


def _stage1_run(
    teacher: Path, folder: Path, stop_at: int | None = None, resume: bool = False
) -> tuple[NanoNetTrainer, list[dict]]:
    """A run with two stage-1 draws of 3 steps and a checkpoint after every step; stopped
    after stage-1 step `stop_at` as Ctrl-C would stop it."""
    from nanonet.train.checkpoint import Checkpoints

    cfg = _config(teacher, ["teacher:0"], teacher_contrastive_draws=2, checkpoint_every=1)
    logs: list[dict] = []

    def on_step(row: dict) -> None:
        logs.append(row)
        if row["phase"] == "contrastive" and row["step"] == stop_at:
            raise KeyboardInterrupt

    checkpoints = Checkpoints(folder, cfg.train.checkpoint_every)
    trainer = NanoNetTrainer(_task(), cfg, on_step, False, checkpoints, resume)
    trainer.train()
    return trainer, logs


def test_stage1_runs_each_draw_and_a_run_resumed_within_one_ends_the_same(
    tiny_mpnet: Path, tmp_path: Path
) -> None:
    whole, logs = _stage1_run(tiny_mpnet, tmp_path / "whole")
    assert Counter(r["phase"] for r in logs)["contrastive"] == 2 * 3
    first, second = whole.stage1_draws
    assert any(not torch.equal(first[n], second[n]) for n in first)
    with pytest.raises(KeyboardInterrupt):  # stopped in the second draw's second step
        _stage1_run(tiny_mpnet, tmp_path / "stopped", stop_at=4)
    resumed, logs = _stage1_run(tiny_mpnet, tmp_path / "stopped", resume=True)
    assert [r["step"] for r in logs if r["phase"] == "contrastive"] == [4, 5]
    # The same teacher: the first draw from the checkpoint, the second's adapters, optimiser
    # and dropout masks where they stood (the frozen-bottom cache's fp16 rounding aside).
    state = resumed.teacher.model.state_dict()
    for name, value in whole.teacher.model.state_dict().items():
        torch.testing.assert_close(state[name], value, atol=1e-4, rtol=0)


def test_head_of_keeps_the_opening_tokens_and_the_closing_one() -> None:
    ids = np.arange(10, dtype=np.int32)
    assert head_of(ids, 4).tolist() == [0, 1, 2, 9]
    assert head_of(ids, 10) is ids


def test_stage1_reads_only_the_opening_tokens_of_each_text(
    tiny_mpnet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0"], contrastive_max_length=8)
    cfg.train.contrastive_long_texts = True  # texts longer than it reads: run it all the same
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    inside, widths = [], []
    real_pad, real_stage = trainer_module.pad_batch, trainer.teacher_contrastive_stage

    def spy(ids: list[np.ndarray], *args: object) -> tuple[torch.Tensor, torch.Tensor]:
        if inside:
            widths.append(max(len(x) for x in ids))
        return real_pad(ids, *args)

    def stage1(*args: object) -> None:
        inside.append(True)
        real_stage(*args)
        inside.clear()

    monkeypatch.setattr(trainer_module, "pad_batch", spy)
    trainer.teacher_contrastive_stage = stage1  # type: ignore[method-assign]
    trainer.train()
    longest = max(len(x) for x in trainer.teacher.ids["labelled"])
    assert longest > 8  # the texts are longer than what stage 1 reads ...
    steps = 3 * cfg.train.teacher_contrastive_draws
    assert len(widths) == steps and max(widths) == 8  # ... and it read 8 tokens at most
    assert trainer.depth.draws and trainer.stage1_steps == 3


def test_stage1_is_skipped_where_the_labelled_texts_are_longer_than_it_reads(
    tiny_mpnet: Path,
) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0"], contrastive_max_length=8)
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    logs: list[dict] = []
    trainer.on_step = logs.append
    result = trainer.train()
    lengths = [len(x) for x in trainer.teacher.ids["labelled"]]
    assert np.median(lengths) > 8
    assert not any(entry["phase"] == "contrastive" for entry in logs)
    assert result.report["teacher_contrastive_steps"] == 0
    # No stage 1: below its trainable top layers the teacher is the pretrained one.
    moved = _moved_teacher_weights(trainer, tiny_mpnet)
    assert moved and not any("layer.0." in k or "layer.1." in k for k in moved)

    # Texts no longer than what stage 1 reads: it runs.
    cfg = _config(tiny_mpnet, ["teacher:0"], contrastive_max_length=max(lengths))
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    assert trainer.train().report["teacher_contrastive_steps"] == 3
    assert any("layer.0." in k for k in _moved_teacher_weights(trainer, tiny_mpnet))


def test_nanonet_run_trains_only_what_it_should(
    tiny_mpnet: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0,1", str(tiny_bert)])
    cfg.model.teacher_contrastive_peft = "top"
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    logs: list[dict] = []
    trainer.on_step = logs.append
    scored: list[tuple[bool, int]] = []  # (is the teacher, batch) of each test-split scoring
    real_predict = NanoNetClassifier.predict_logits

    def spy(self: NanoNetClassifier, texts: list[str], batch_size: int = 64) -> np.ndarray:
        scored.append((self.model is trainer.teacher.model, batch_size))
        return real_predict(self, texts, batch_size)

    monkeypatch.setattr(NanoNetClassifier, "predict_logits", spy)
    result = trainer.train()
    # The teacher's frozen bottom (embeddings, layers 0-1 of 4) is exactly the pretrained one.
    moved = _moved_teacher_weights(trainer, tiny_mpnet)
    assert moved and all(k.endswith("bias") for k in moved)
    assert all(("layer.2." in k or "layer.3." in k) for k in moved)

    phases = Counter(entry["phase"] for entry in logs)
    distill = phases.pop("distill")
    assert phases == {"contrastive": 3, "warmup": 2, "train": 6}
    assert distill == result.report["distill_steps"] > 0  # stage 4 is on by default
    last_joint = [r for r in logs if r["phase"] == "train"][-1]
    assert {"s0_sup", "s0_kd", "s1_mutual", "teacher_sup"} <= set(last_joint)

    report = result.report
    assert [m["role"] for m in report["members"]] == ["teacher", "student", "student"]
    assert sum(m.get("kept", False) for m in report["members"]) == 1
    assert "test" in report["members"][1] and 0.0 <= report["summary"]["test_accuracy"] <= 1.0
    assert report["summary"]["selection_holdout"] == 10
    # The report scores the teacher in smaller batches than the students (memory, not speed).
    assert cfg.train.eval_batch_size > TEACHER_SCORE_BATCH
    assert scored == [(True, TEACHER_SCORE_BATCH), (False, 64), (False, 64)]
    assert result.classifier.predict(["good movie"])[0] in ("neg", "pos")


def test_same_seed_same_model_different_seed_different_model(tiny_mpnet: Path) -> None:
    def run(seed: int) -> np.ndarray:
        cfg = _config(tiny_mpnet, ["teacher:0", "teacher:3"], seed=seed)
        res = NanoNetTrainer(_task(), cfg, progress=False).train()
        return res.classifier.predict_proba(["good movie", "dull plot"])

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, c)


def test_uneven_labels_are_weighted_and_even_ones_train_as_without_weights(
    tiny_mpnet: Path,
) -> None:
    def run(task: Task, balance: bool) -> np.ndarray:
        cfg = _config(tiny_mpnet, ["teacher:0"], balance_classes=balance, distill_epochs=0.0)
        res = NanoNetTrainer(task, cfg, progress=False).train()
        return res.classifier.predict_proba(["good movie", "dull plot"])

    even = _task()
    assert len(set(Counter(even.labelled_labels).values())) == 1
    np.testing.assert_array_equal(run(even, True), run(even, False))
    keep = [i for i, y in enumerate(even.labelled_labels) if y == 0 or i % 3 == 0]
    uneven = dataclasses.replace(
        even,
        labelled_texts=[even.labelled_texts[i] for i in keep],
        labelled_labels=[even.labelled_labels[i] for i in keep],
    )
    assert len(set(Counter(uneven.labelled_labels).values())) == 2
    assert not np.allclose(run(uneven, True), run(uneven, False))


def test_learns_the_synthetic_task(tiny_mpnet: Path) -> None:
    """A tiny random model with full fine-tuning should beat chance on a learnable task."""
    cfg = _config(tiny_mpnet, ["teacher:bottom2"], steps=60, teacher_warmup_steps=20, lr_full=3e-3)
    cfg.model.peft = cfg.model.teacher_peft = "full"
    cfg.model.teacher_trainable_layers = 4
    res = NanoNetTrainer(_task(), cfg, progress=False).train()
    assert res.report["summary"]["test_accuracy"] >= 0.8


def test_ablations_run_without_teacher_and_without_mutual(tiny_mpnet: Path) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0", "teacher:1"], use_teacher=False, mutual_weight=0.0)
    res = NanoNetTrainer(_task(), cfg, progress=False).train()
    assert "cohort" in res.report["summary"]["selection"]


def test_no_unlabelled_text_falls_back_to_supervised(tiny_mpnet: Path) -> None:
    task = _task()
    task.unlabelled_texts = []
    res = NanoNetTrainer(task, _config(tiny_mpnet, ["teacher:0"]), progress=False).train()
    assert res.report["summary"]["unlabelled_examples"] == 0


@pytest.mark.parametrize(("field", "value"), [("kd_loss", "js"), ("views", ["blur"]), ("steps", 0)])
def test_bad_training_settings_are_user_errors(tiny_mpnet: Path, field: str, value) -> None:
    with pytest.raises(NanoNetError):
        NanoNetTrainer(_task(), _config(tiny_mpnet, ["teacher:0"], **{field: value}))


def test_selection_prefers_the_cheaper_student_within_the_tolerance(tiny_mpnet: Path) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0,1,2", "teacher:3"], selection_tolerance=1.0)
    res = NanoNetTrainer(_task(), cfg, progress=False).train()
    assert res.kept == "teacher:3"  # every score is within 1.0: the 1-layer student wins
    cfg = _config(tiny_mpnet, ["teacher:0,1,2", "teacher:3"], selection_tolerance=0.0)
    res = NanoNetTrainer(_task(), cfg, progress=False).train()
    students = res.report["members"][1:]
    kept = next(m for m in students if m["kept"])
    assert kept["selection_score"] == max(m["selection_score"] for m in students)


def _stub_speeds(monkeypatch: pytest.MonkeyPatch, docs_per_s: list[float]) -> None:
    """The speed screen times the teacher and then each student, in order, in one call."""

    def stub(clfs: list, *args: object) -> list[float]:
        assert len(clfs) == len(docs_per_s)
        return docs_per_s

    monkeypatch.setattr("nanonet.train.cohort._docs_per_second", stub)


def test_speed_screen_leaves_out_slow_students_and_keeps_the_rng(
    tiny_mpnet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    students = ["teacher:0", "teacher:1", "teacher:0,1"]
    plain = NanoNetTrainer(_task(), _config(tiny_mpnet, students[:2]), progress=False).train()
    cfg = _config(tiny_mpnet, students)
    cfg.model.min_speedup = 10.0
    _stub_speeds(monkeypatch, [10.0, 150.0, 100.0, 60.0])
    screened = NanoNetTrainer(_task(), cfg, progress=False).train()
    screen = screened.report["speed_screen"]
    assert [{k: v for k, v in row.items() if k != "cpu_share"} for row in screen] == [
        {"student": "teacher:0", "speedup": 15.0, "trained": True},
        {"student": "teacher:1", "speedup": 10.0, "trained": True},
        {"student": "teacher:0,1", "speedup": 6.0, "trained": False},
    ]
    assert 0.0 < screen[0]["cpu_share"] == screen[2]["cpu_share"]
    names = [m["name"] for m in screened.report["members"][1:]]
    assert names == ["teacher:0", "teacher:1"]
    # Timing builds throw-away encoders; the run after it draws the same random numbers.
    for a, b in zip(plain.report["members"], screened.report["members"], strict=True):
        assert a["test"]["accuracy"] == b["test"]["accuracy"]
        assert a.get("selection_score") == b.get("selection_score")


def test_speed_screen_trains_the_fastest_when_none_is_fast_enough(
    tiny_mpnet: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0,1", "teacher:1"])
    cfg.model.min_speedup = 10.0
    _stub_speeds(monkeypatch, [10.0, 20.0, 30.0])
    # The logger's own level, whatever earlier tests left (in CI, once, nothing was captured).
    with caplog.at_level(logging.INFO, logger="nanonet"):
        res = NanoNetTrainer(_task(), cfg, progress=False).train()
    assert res.kept == "teacher:1"
    assert [m["name"] for m in res.report["members"][1:]] == ["teacher:1"]
    assert "training the fastest, teacher:1" in caplog.text


@pytest.mark.parametrize(("cpu_share", "warned"), [(0.45, True), (0.95, False)])
def test_speed_screen_warns_when_a_busy_machine_may_have_cut_the_cohort(
    tiny_mpnet: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cpu_share: float,
    warned: bool,
) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0", "teacher:0,1"])
    model, hf, tok, _ = cohort.build_teacher(cfg.model, 2)
    teacher = cohort.Member("teacher", model, tok, {})

    class Busy:  # the machine's load, as the screen's CPU share reads it
        def __init__(self, threads: int) -> None:
            pass

        def share(self) -> float:
            return cpu_share

    monkeypatch.setattr("nanonet.train.cohort.CpuShare", Busy)

    def screen(docs_per_s: list[float]) -> list[dict]:
        _stub_speeds(monkeypatch, docs_per_s)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="nanonet"):
            return cohort.fast_enough_students(
                cfg.model.students, 10.0, teacher, 32, 32, ["a", "b"], ["x y z"], 8, hf, tok
            )[1]

    rows = screen([1.0, 20.0, 5.0])  # teacher:0,1 left out
    assert [r["cpu_share"] for r in rows] == [cpu_share, cpu_share]
    assert ("the machine was busy" in caplog.text) is warned
    screen([1.0, 20.0, 15.0])  # nobody left out: the load changed nothing, so no warning
    assert "the machine was busy" not in caplog.text


def test_teacher_pseudo_labels_are_off_by_default_and_opt_in(tiny_mpnet: Path) -> None:
    def train_logs(**train: object) -> list[dict]:
        logs: list[dict] = []
        cfg = _config(tiny_mpnet, ["teacher:0"], **train)
        NanoNetTrainer(_task(), cfg, on_step=logs.append, progress=False).train()
        return [r for r in logs if r["phase"] == "train"]

    assert all("teacher_pseudo_frac" not in r for r in train_logs())
    opted = train_logs(teacher_pseudo_label_threshold=0.0)
    assert all(0.0 <= r["teacher_pseudo_frac"] <= 1.0 for r in opted)


def test_contrastive_stage_can_be_switched_off(tiny_mpnet: Path) -> None:
    logs: list[dict] = []
    cfg = _config(tiny_mpnet, ["teacher:0"], teacher_contrastive_steps=0)
    NanoNetTrainer(_task(), cfg, on_step=logs.append, progress=False).train()
    assert not any(r["phase"] == "contrastive" for r in logs)


def test_teacher_cache_fills_on_first_use_and_matches_the_full_forward(tiny_mpnet: Path) -> None:
    # Two steps of 4 unlabelled texts draw far fewer than the pool holds.
    # Without stage 4, whose cached targets read the whole pool and then free this cache.
    cfg = _config(tiny_mpnet, ["teacher:0"], steps=2, unlabeled_batch_size=4, distill_epochs=0.0)
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    trainer.train()
    store = trainer.cache.store["unlabelled"]
    drawn = [i for i, h in enumerate(store) if h is not None]
    assert 0 < len(drawn) < len(store)  # only the texts the loop drew were computed
    idx = drawn[:4]
    with torch.no_grad():
        cached = trainer.teacher_pooled("unlabelled", idx)
        t = trainer.teacher
        full = t.model.embed_pooled(*pad_batch([t.ids["unlabelled"][i] for i in idx], t.pad_id))
    torch.testing.assert_close(cached, full, atol=2e-2, rtol=2e-2)  # fp16 cache


def test_head_init_in_batches_equals_one_batch(
    tiny_mpnet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[torch.Tensor] = []
    real = EncoderClassifier.init_head_from_centroids

    def spy(self: EncoderClassifier, pooled: torch.Tensor, labels: torch.Tensor) -> None:
        seen.append(pooled)
        real(self, pooled, labels)

    batches: list[int] = []
    real_pooled, real_init = NanoNetTrainer.teacher_pooled, NanoNetTrainer._init_heads

    def pooled_spy(self: NanoNetTrainer, split: str, idx: list[int], **kw: Any) -> torch.Tensor:
        if getattr(self, "in_head_init", False):
            batches.append(len(idx))
        return real_pooled(self, split, idx, **kw)

    def init_spy(self: NanoNetTrainer) -> None:
        self.in_head_init = True  # type: ignore[attr-defined]
        real_init(self)
        self.in_head_init = False  # type: ignore[attr-defined]

    monkeypatch.setattr(EncoderClassifier, "init_head_from_centroids", spy)
    monkeypatch.setattr(NanoNetTrainer, "teacher_pooled", pooled_spy)
    monkeypatch.setattr(NanoNetTrainer, "_init_heads", init_spy)
    for size in (3, 64):  # 20 labelled texts: 7 batches, then one
        cfg = _config(tiny_mpnet, ["teacher:0"], eval_batch_size=size, steps=1)
        NanoNetTrainer(_task(), cfg, progress=False).train()
    assert batches == [3] * 6 + [2] + [20]
    assert len(seen) == 4  # teacher and student, twice
    for small, whole in zip(seen[:2], seen[2:], strict=True):
        assert small.shape == whole.shape == (20, whole.shape[1])
        torch.testing.assert_close(small, whole, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("above", "expected"), [(128, False), (4, True)])
def test_contrastive_stage_checkpoints_only_long_batches(
    tiny_mpnet: Path, monkeypatch: pytest.MonkeyPatch, above: int, expected: bool
) -> None:
    flags: list[bool] = []
    real = NanoNetTrainer.teacher_pooled

    def spy(
        self: NanoNetTrainer, split: str, idx: list[int], checkpoint: bool = False, **kw: Any
    ) -> torch.Tensor:
        flags.append(checkpoint)
        return real(self, split, idx, checkpoint, **kw)

    monkeypatch.setattr(trainer_module, "CHECKPOINT_ABOVE", above)
    monkeypatch.setattr(NanoNetTrainer, "teacher_pooled", spy)
    cfg = _config(tiny_mpnet, ["teacher:0"], steps=1, teacher_warmup_steps=0)
    NanoNetTrainer(_task(), cfg, progress=False).train()
    n = 3 * cfg.train.teacher_contrastive_draws  # the contrastive steps (texts: < 20 tokens)
    assert flags[:n] == [expected] * n
    assert not any(flags[n:])  # nothing else checkpoints


def test_training_reads_at_most_max_train_length_tokens(tiny_mpnet: Path) -> None:
    task = _task()
    task.unlabelled_texts = [" ".join(["good"] * 60)] * 20
    cfg = _config(tiny_mpnet, ["teacher:0"], max_train_length=16)
    trainer = NanoNetTrainer(task, cfg, progress=False)
    result = trainer.train()
    assert max(len(x) for x in trainer.teacher.ids["unlabelled"]) == 16
    # The saved student reads what it was trained on; the teacher keeps the task's length.
    assert result.classifier.max_length == 16
    assert trainer.max_length == 32


def test_student_max_length_overrides_what_the_saved_student_reads(tiny_mpnet: Path) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0"], max_train_length=16, student_max_length=24)
    result = NanoNetTrainer(_task(), cfg, progress=False).train()
    assert result.classifier.max_length == 24


def test_student_max_length_below_8_is_refused(tiny_mpnet: Path) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0"], student_max_length=4)
    with pytest.raises(NanoNetError, match="student_max_length"):
        NanoNetTrainer(_task(), cfg, progress=False)


def test_data_length_beyond_the_position_table_is_refused(tiny_mpnet: Path) -> None:
    task = dataclasses.replace(_task(), max_length=200)  # the tiny MPNet reads 128 at most
    with pytest.raises(NanoNetError, match=r"data\.max_length=200 .* \(128 tokens\)"):
        NanoNetTrainer(task, _config(tiny_mpnet, ["teacher:0"]), progress=False)


def test_student_length_beyond_the_position_table_is_refused(tiny_mpnet: Path) -> None:
    ok = _config(tiny_mpnet, ["teacher:0"], student_max_length=128)
    assert NanoNetTrainer(_task(), ok, progress=False).student_length == 128
    too_long = _config(tiny_mpnet, ["teacher:0"], student_max_length=129)
    with pytest.raises(NanoNetError, match=r"student_max_length=129"):
        NanoNetTrainer(_task(), too_long, progress=False)


def test_a_student_that_reads_less_than_the_teacher_names_the_setting_to_lower(
    tiny_mpnet: Path, tiny_bert: Path
) -> None:
    # Teacher: the tiny BERT (130 tokens); student: the tiny MPNet (128 tokens).
    task = dataclasses.replace(_task(), max_length=130)
    for cap, setting in [(None, "data.max_length"), (129, "train.max_train_length")]:
        cfg = _config(tiny_bert, [str(tiny_mpnet)], max_train_length=cap)
        with pytest.raises(NanoNetError, match=rf"{setting}=1(30|29) .* '.*mpnet' .*\(128 tokens"):
            NanoNetTrainer(task, cfg, progress=False)
    ok = _config(tiny_bert, [str(tiny_mpnet)], max_train_length=128)
    assert NanoNetTrainer(task, ok, progress=False).train_length == 128


def test_embedding_loss_is_zero_for_the_teacher_itself_and_positive_otherwise() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(6, 8, generator=g)
    for kind in ("cosine", "mse", "similarity"):
        assert embedding_loss(t.clone(), t, kind).item() == pytest.approx(0.0, abs=1e-6)
        assert embedding_loss(torch.randn(6, 8, generator=g), t, kind).item() > 0.01
    # Similarity-preserving distillation compares batch geometry, so widths may differ.
    assert embedding_loss(torch.randn(6, 3, generator=g), t, "similarity").item() > 0.0
    student = torch.randn(6, 8, requires_grad=True)
    target = torch.randn(6, 8, requires_grad=True)
    embedding_loss(student, target).backward()
    assert target.grad is None and student.grad is not None


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("train.embed_kd_loss", "l1", "train.embed_kd_loss must be one of cosine"),
        ("train.kd_loss", "js", "train.kd_loss must be one of kl, mse"),
        ("model.peft", "adapters", "model.peft must be one of bitfit"),
        ("train.distill_epochs", -1, "train.distill_epochs must be at least 0"),
        ("train.distill_max_tokens", 0, "train.distill_max_tokens must be at least 1"),
        ("train.views", ["blur"], "Unknown view 'blur'"),
        ("model.students", [], "model.students is empty"),
    ],
)
def test_every_setting_is_checked_before_anything_loads(key: str, value, words: str) -> None:
    cfg = RunConfig()
    cfg.model.teacher = "/nonexistent/teacher"  # never reached: validation comes first
    section, name = key.split(".")
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(NanoNetError, match=words):
        NanoNetTrainer(_task(), cfg, progress=False)


def test_distill_max_tokens_ends_stage_4_once_the_students_have_read_that_many(
    tiny_mpnet: Path,
) -> None:
    # Uncapped, 2 epochs of the 40 training pool texts in batches of 8 are 10 steps.
    cfg = _config(tiny_mpnet, ["teacher:0"], distill_epochs=2.0, unlabeled_batch_size=8, steps=2)
    cfg.train.distill_max_tokens = 150
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    read: list[int] = []
    real_step = trainer.distill_step

    def spy(lab: list[int], unl: list[int]) -> dict[str, float]:
        ids = trainer.teacher.ids["unlabelled"]
        read.append(sum(min(len(ids[i]), trainer.train_length) for i in unl))
        return real_step(lab, unl)

    trainer.distill_step = spy  # type: ignore[method-assign]
    result = trainer.train()
    assert 1 < len(read) == result.report["distill_steps"] < 10
    # Counted on the pool's mean length, so the batches drawn may read a little more or less.
    per_step = sum(read) / len(read)
    assert (len(read) - 1) * per_step < 150 * 1.5 and len(read) * per_step > 150 / 1.5


def test_distill_stage_trains_students_only_from_the_cached_teacher(tiny_mpnet: Path) -> None:
    logs: list[dict] = []
    # 40 of the pool's texts train, 10 are held out; batches of 8: 2 epochs are 10 steps.
    cfg = _config(
        tiny_mpnet, ["teacher:0", "teacher:1"], distill_epochs=2.0, unlabeled_batch_size=8
    )
    trainer = NanoNetTrainer(_task(), cfg, on_step=logs.append, progress=False)
    n_unl = len(_task().unlabelled_texts) - 10
    real_step = trainer.distill_step
    teacher_states: list[dict[str, torch.Tensor]] = []
    cached_bottom: list[bool] = []

    def spy(lab: list[int], unl: list[int]) -> dict[str, float]:
        teacher_states.append(_snapshot(trainer.teacher.model))
        cached_bottom.append(trainer.cache is not None)
        return real_step(lab, unl)

    trainer.distill_step = spy  # type: ignore[method-assign]
    result = trainer.train()
    steps = Counter(r["phase"] for r in logs)["distill"]
    assert steps == -(-2 * n_unl // 8) == result.report["distill_steps"]
    for state in teacher_states[1:]:  # the teacher no longer moves
        for key, value in state.items():
            assert torch.equal(value, teacher_states[0][key])
    assert {"s0_emb", "s1_kd", "s1_mutual"} <= set(logs[-1])
    # The cached targets are the adapted teacher's own outputs.
    idx = [0, 3, 5]
    with torch.no_grad():
        t = trainer.teacher
        live = t.model.embed_pooled(*pad_batch([t.ids["unlabelled"][i] for i in idx], t.pad_id))
    cached, logits = trainer.targets.get("unlabelled", idx)
    # vectors are kept only for embedding distillation (off here), the logits always
    assert cached is None
    torch.testing.assert_close(logits, t.model.classify(live), atol=2e-2, rtol=2e-2)
    # The first epoch's targets came through the frozen-bottom cache, which gave its memory
    # back once every pool text had its target.
    assert cached_bottom[0] and not all(cached_bottom), cached_bottom
    assert trainer.cache is None


def test_students_of_another_width_get_a_projection_the_same_width_starts_at_identity(
    tiny_mpnet: Path, tiny_bert: Path
) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0", str(tiny_bert)], embed_kd_weight=1.0)
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    trainer.unlabelled, trainer.holdout = _task().unlabelled_texts, []
    trainer._build_cohort()
    same, other = trainer.students
    width = trainer.teacher.model.backbone.hidden_size
    assert torch.equal(same.projection.weight, torch.eye(width))
    assert other.projection.weight.shape == (width, other.model.backbone.hidden_size)
    cfg = _config(tiny_mpnet, ["teacher:0"], embed_kd_loss="similarity")
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    trainer.unlabelled, trainer.holdout = _task().unlabelled_texts, []
    trainer._build_cohort()
    assert trainer.students[0].projection is None


def test_a_student_side_switch_leaves_the_teacher_and_the_batches_unchanged(
    tiny_mpnet: Path,
) -> None:
    """Each random stream has its own generator: views draw from theirs, batches from theirs."""

    def teacher_after(**train: object) -> dict[str, torch.Tensor]:
        trainer = NanoNetTrainer(_task(), _config(tiny_mpnet, ["teacher:0"], **train))
        trainer.progress = False
        trainer.train()
        return _snapshot(trainer.teacher.model)

    a = teacher_after(views=["none"], embed_kd_weight=0.0)
    b = teacher_after(views=["cutoff"], embed_kd_weight=1.0)
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_pseudo_labels_are_class_balanced_and_most_confident_first() -> None:
    logits = np.array([[5.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 0.5], [4.0, 0.0]])
    chosen, labels = balanced_pseudo_labels(logits, per_class=2)
    assert chosen == [0, 5, 3, 4] and labels == [0, 0, 1, 1]
    # A class with fewer predicted texts than asked gives what it has; none are made up.
    chosen, labels = balanced_pseudo_labels(logits, per_class=10)
    assert labels.count(0) == 4 and labels.count(1) == 2


def test_teacher_self_training_repeats_stages_1_and_2_on_pseudo_labels(tiny_mpnet: Path) -> None:
    logs: list[dict] = []
    cfg = _config(tiny_mpnet, ["teacher:0"], teacher_pseudo_per_class=3)
    trainer = NanoNetTrainer(_task(), cfg, on_step=logs.append, progress=False)
    read = Counter()
    teacher_logits = trainer.teacher_logits

    def counting(split: str, idx: list[int]) -> torch.Tensor:
        read[split] += 1
        return teacher_logits(split, idx)

    trainer.teacher_logits = counting  # type: ignore[method-assign]
    trainer.train()
    # The teacher's supervised batches come from labels + pseudo-labels from self-training on,
    # through stage 3 too: one batch per self-training step and per joint step.
    assert read["teacher"] == cfg.train.teacher_warmup_steps + cfg.train.steps
    phases = Counter(r["phase"] for r in logs)
    # Stage 1 takes its draws; self-training's stage 1 (the top layers only) one.
    draws = cfg.train.teacher_contrastive_draws
    assert phases["contrastive"] == 3 * draws and phases["self-training contrastive"] == 3
    assert phases["self-training"] == 2
    assert len(trainer.teacher.ids["teacher"]) == 20 + 6
    # The pseudo-labelled texts come from the pool, never the labelled or held-out texts.
    pool_ids = {tuple(x) for x in trainer.teacher.ids["unlabelled"]}
    assert all(tuple(x) in pool_ids for x in trainer.teacher.ids["teacher"][20:])


def _clusters(seed: int, per_class: int, pool_per_class: int) -> tuple[np.ndarray, ...]:
    """Two classes apart on one axis of 32 noisy ones, as unit vectors: a few labels leave a
    linear head unsure of the axis, a pool of the same texts shows it."""
    rng = np.random.default_rng(seed)

    def draw(n: int, sign: int) -> np.ndarray:
        x = rng.normal(0.0, 1.0, (n, 32))
        x[:, 0] += 2.0 * sign
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    x_lab = np.concatenate([draw(per_class, -1), draw(per_class, 1)])
    pool = np.concatenate([draw(pool_per_class, -1), draw(pool_per_class, 1)])
    return x_lab, np.repeat([0, 1], per_class), pool


def test_the_self_training_check_sees_pseudo_labels_from_an_on_task_pool_help() -> None:
    verdicts = [self_training_check(*_clusters(seed, 6, 200), 100) for seed in range(5)]
    assert all(v["labels"] == 12 for v in verdicts)
    assert all(v["with"] >= v["without"] for v in verdicts)
    assert sum(v["with"] for v in verdicts) > sum(v["without"] for v in verdicts)
    assert verdicts == [self_training_check(*_clusters(seed, 6, 200), 100) for seed in range(5)]


def test_the_self_training_check_copes_with_a_class_of_one_label() -> None:
    x_lab, y_lab, pool = _clusters(0, 5, 50)
    x_lab, y_lab = x_lab[4:], y_lab[4:]  # class 0 keeps one label: its fold has no class 0
    verdict = self_training_check(x_lab, y_lab, pool, 20)
    assert 0 <= verdict["without"] <= 6 and 0 <= verdict["with"] <= 6


@pytest.mark.parametrize(("with_right", "runs"), [(12, True), (10, True), (9, False)])
def test_teacher_self_training_runs_unless_the_check_says_it_hurts(
    tiny_mpnet: Path, monkeypatch: pytest.MonkeyPatch, with_right: int, runs: bool
) -> None:
    seen: dict[str, tuple[int, ...]] = {}

    def check(x_lab: np.ndarray, y_lab: np.ndarray, pool: np.ndarray, k: int) -> dict[str, int]:
        # steps: none has run yet, so the teacher is still the pretrained one
        seen.update(lab=x_lab.shape, y=y_lab.shape, pool=pool.shape, k=(k,), steps=(len(logs),))
        return {"labels": len(y_lab), "without": 10, "with": with_right}

    monkeypatch.setattr(trainer_module, "self_training_check", check)
    logs: list[dict] = []
    cfg = _config(tiny_mpnet, ["teacher:0"], teacher_pseudo_per_class=3, teacher_pseudo_check=True)
    trainer = NanoNetTrainer(_task(), cfg, on_step=logs.append, progress=False)
    result = trainer.train()
    hidden = trainer.teacher.model.backbone.hidden_size
    assert seen == {
        "lab": (20, hidden),
        "y": (20,),
        "pool": (len(trainer.unlabelled), hidden),
        "k": (3,),
        "steps": (0,),
    }
    phases = Counter(r["phase"] for r in logs)
    assert (phases["self-training"] == 2) is runs
    assert (trainer.pseudo_labels is not None) is runs
    assert result.report["self_training_check"]["ran"] is runs


def test_the_self_training_check_needs_self_training_on() -> None:
    cfg = RunConfig()
    cfg.train.teacher_pseudo_check = True
    with pytest.raises(NanoNetError, match="teacher_pseudo_per_class"):
        cfg.validate()


def test_selection_scores_expected_accuracy_under_the_teachers_probabilities() -> None:
    teacher = np.log(np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]]))
    a = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # agrees everywhere
    b = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # differs where unsure
    kept, sel = choose_student([a, b], teacher, costs=[2, 1], tolerance=0.0, split="holdout")
    assert sel["scores"] == pytest.approx(
        [(0.9 + 0.6 + 0.8 + 0.5) / 4, (0.9 + 0.4 + 0.8 + 0.5) / 4]
    )
    assert kept == 0 and sel["agreement"] == [1.0, 0.75]
    assert sel["stderr_vs_best"][0] == 0.0 and sel["stderr_vs_best"][1] > 0.0
    kept, _ = choose_student([a, b], teacher, costs=[2, 1], tolerance=0.1, split="holdout")
    assert kept == 1  # within the tolerance, the cheaper one


def test_a_bounded_frozen_bottom_cache_gives_the_same_states(tiny_mpnet: Path) -> None:
    from nanonet.train.cohort import build_teacher, tokenize
    from nanonet.train.teacher_cache import FrozenBottomCache

    cfg = _config(tiny_mpnet, ["teacher:0"])
    model, _, tok, cut = build_teacher(cfg.model, 2)
    ids = {"unlabelled": tokenize(tok, _task().unlabelled_texts, 32)}
    assert all(x.dtype == np.int32 for x in ids["unlabelled"])  # 4 bytes per token
    free = FrozenBottomCache(model, ids, tok.pad_token_id, cut)
    tight = FrozenBottomCache(model, ids, tok.pad_token_id, cut, max_bytes=4_000)
    for batch in ([0, 1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11], [2, 12, 13, 3]):
        a, mask_a = free.states("unlabelled", batch)
        b, mask_b = tight.states("unlabelled", batch)
        torch.testing.assert_close(b, a, atol=2e-3, rtol=0)  # fp16 either way
        assert torch.equal(mask_a, mask_b)
    assert 0 < tight.stored_bytes <= 4_000 < free.stored_bytes
    assert any(s is None for s in tight.store["unlabelled"][:14])  # some were not kept


def test_frozen_bottom_cache_read_once_drops_what_it_hands_out(tiny_mpnet: Path) -> None:
    from nanonet.train.cohort import build_teacher, tokenize
    from nanonet.train.teacher_cache import FrozenBottomCache

    cfg = _config(tiny_mpnet, ["teacher:0"])
    model, _, tok, cut = build_teacher(cfg.model, 2)
    ids = {"unlabelled": tokenize(tok, _task().unlabelled_texts, 32)}
    cache = FrozenBottomCache(model, ids, tok.pad_token_id, cut)
    before, _ = cache.states("unlabelled", [0, 1, 2])
    full = cache.stored_bytes
    cache.read_once()
    # A stored state is handed out as it was, then dropped with its bytes.
    again, _ = cache.states("unlabelled", [1, 1, 3])
    torch.testing.assert_close(again[0], before[1])
    store = cache.store["unlabelled"]
    assert store[0] is not None and store[1] is None and store[3] is None  # 3: never stored
    assert 0 < cache.stored_bytes < full
    # Read again, a dropped state is computed afresh (the same numbers, up to fp16).
    fresh, _ = cache.states("unlabelled", [1])
    torch.testing.assert_close(fresh[0], before[1], atol=2e-3, rtol=0)
    assert store[1] is None


def test_stage_4_does_not_grow_the_frozen_bottom_cache(tiny_mpnet: Path) -> None:
    # One joint step draws a few pool texts; stage 4 then reads half of the 40-text pool.
    # Storing what stage 4 reads would grow the cache at every step; it only shrinks.
    cfg = _config(tiny_mpnet, ["teacher:0"], steps=1, unlabeled_batch_size=4, distill_epochs=0.5)
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    stored: list[int] = []
    real_step = trainer.distill_step

    def spy(lab: list[int], unl: list[int]) -> dict[str, float]:
        out = real_step(lab, unl)
        stored.append(sum(h is not None for h in trainer.cache.store["unlabelled"]))
        return out

    trainer.distill_step = spy  # type: ignore[method-assign]
    trainer.train()
    assert len(stored) > 2 and stored[0] <= 4
    assert stored == sorted(stored, reverse=True), stored


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_heaps_free_memory_goes_back_to_the_system() -> None:
    import os

    from nanonet import memory

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    # Freeing a 40 MB tensor raises glibc's mmap threshold to 32 MB: the 1 MB tensors after it
    # come from the heap, as a run's activations do. All but the last are then freed; the
    # last keeps the heap's top in use, so glibc cannot shrink the heap by itself.
    del_me = torch.ones(10 * 2**20)
    del del_me
    blocks = [torch.ones(2**18) for _ in range(200)]
    last = blocks.pop()
    before = rss()
    blocks.clear()
    if rss() < before - 100 * 2**20:
        pytest.skip("this C library returned the memory by itself")
    assert memory.release_free_memory()
    assert rss() < before - 100 * 2**20
    del last


def test_teacher_targets_keep_vectors_only_when_asked(tiny_mpnet: Path) -> None:
    from nanonet.train.teacher_cache import TeacherTargets

    torch.manual_seed(0)
    vectors = torch.randn(7, 4)
    head = torch.nn.Linear(4, 3)
    lengths = {"unlabelled": [3, 1, 4, 1, 5, 9, 2]}
    pooled_fn = lambda split, idx: vectors[idx]  # noqa: E731
    both = TeacherTargets(pooled_fn, head, lengths, batch_size=3)
    lean = TeacherTargets(pooled_fn, head, lengths, batch_size=3, keep_vectors=False)
    vec, logits = lean.get("unlabelled", [5, 0])  # computed when first asked for
    assert vec is None and lean.pooled == {} and lean.done["unlabelled"].sum() == 2
    torch.testing.assert_close(both.all_logits("unlabelled"), head(vectors).detach())
    torch.testing.assert_close(lean.all_logits("unlabelled"), both.all_logits("unlabelled"))
    torch.testing.assert_close(both.get("unlabelled", [5, 0])[0], vectors[[5, 0]])
    torch.testing.assert_close(logits, head(vectors[[5, 0]]).detach())


def test_students_cut_from_the_teacher_share_its_tokenizer_and_token_ids(
    tiny_mpnet: Path, tiny_bert: Path
) -> None:
    # A BERT student first: the student cut from the teacher must still get the teacher's
    # tokenizer (it once got the BERT student's).
    cfg = _config(tiny_mpnet, [str(tiny_bert), "teacher:0"])
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    trainer.unlabelled, trainer.holdout = trainer._split_pool(np.random.default_rng(0))
    trainer._build_cohort()
    bert, cut = trainer.students
    assert cut.tokenizer is trainer.teacher.tokenizer and bert.tokenizer is not cut.tokenizer
    # one copy of the pool's token ids for the teacher and the students cut from it
    assert cut.ids["unlabelled"] is trainer.teacher.ids["unlabelled"]
    assert cut.ids is not trainer.teacher.ids  # but each its own dict of splits
    assert bert.ids["unlabelled"] is not cut.ids["unlabelled"]
