"""The NanoNet run: a teacher adapted online, distilled into a cohort of students.

Read `nanonet_step` next to `shared/docs/method.md`: it is the method, line for line.
Everything else here is set-up (building the models, tokenizing, caching the frozen bottom of
the teacher) and the choice of the student to keep.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from nanonet.data.batching import (
    bucketed_epochs,
    length_sorted_batches,
    pad_batch,
    pair_batch,
    scaled_batch_size,
)
from nanonet.data.task import Task
from nanonet.errors import NanoNetError
from nanonet.models.assets import encoder_dir, max_input_tokens
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder
from nanonet.models.peft import apply_lora, count_parameters, inject_missing_biases, set_trainable
from nanonet.models.speed import best_docs_per_second, class_ids, untrained_classifier
from nanonet.models.students import (
    StudentSpec,
    parse_student_spec,
    select_layers,
    subset_layers,
)
from nanonet.train.config import RunConfig
from nanonet.train.losses import (
    distillation_loss,
    mutual_loss,
    pair_similarity_loss,
    rampup,
    supervised_loss,
)
from nanonet.train.metrics import agreement, evaluate
from nanonet.train.views import VIEWS, apply_views

log = logging.getLogger("nanonet")

Ids = list[list[int]]

# Token width above which the contrastive stage checkpoints the teacher's layers: at 128 tokens
# it saved 0.5 GB on 20newsgroups (2.9 -> 2.4 GB), at 256 tokens 1.5 GB.
CHECKPOINT_ABOVE = 128


@dataclass
class Member:
    """One model of the run (teacher or student) with its own tokenization of the data."""

    name: str
    model: EncoderClassifier
    tokenizer: Any
    ids: dict[str, Ids]  # "labelled" / "unlabelled" / "holdout" -> token ids per text
    view: str = "none"
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def params(self) -> tuple[int, int]:
        return count_parameters(self.model)


@dataclass
class TrainResult:
    classifier: NanoNetClassifier  # the kept student
    kept: str
    report: dict[str, Any] = field(default_factory=dict)


class NanoNetTrainer:
    """Builds the teacher and students for a Task and runs the NanoNet loop."""

    def __init__(
        self,
        task: Task,
        config: RunConfig,
        on_step: Callable[[dict[str, float]], None] | None = None,
        progress: bool = True,
    ) -> None:
        self.task = task
        self.cfg = config
        self.on_step = on_step
        self.progress = progress
        self.num_labels = len(task.label_names)
        self.max_length = task.max_length  # what the teacher reads
        self._validate()
        cap = config.train.max_train_length
        self.train_length = min(task.max_length, cap) if cap else task.max_length
        # what the saved (kept) student reads at prediction time
        self.student_length = config.train.student_max_length or self.train_length
        self._check_lengths()

    def read_length(self, member: Member) -> int:
        """Tokens `member` reads at prediction: the teacher the dataset's length, a student
        what it was trained on (or train.student_max_length)."""
        return self.max_length if member is self.teacher else self.student_length

    # ------------------------------------------------------------------ set-up ----------
    def _validate(self) -> None:
        self.cfg.validate()
        tc = self.cfg.train
        if self.num_labels < 2:
            raise NanoNetError("Training needs at least two classes in the labelled data.")
        if tc.kd_loss not in ("kl", "mse"):
            raise NanoNetError(f"train.kd_loss must be 'kl' or 'mse', not '{tc.kd_loss}'.")
        for view in tc.views:
            if view not in VIEWS:
                raise NanoNetError(f"Unknown view '{view}'; choose from {', '.join(VIEWS)}.")
        if not self.cfg.model.students:
            raise NanoNetError("model.students is empty; give at least one student spec.")

    def _check_lengths(self) -> None:
        """Refuse a length beyond an encoder's position table here, not as an index error later."""
        mc = self.cfg.model
        teacher_dir = encoder_dir(mc.teacher)
        checks = [(mc.teacher, teacher_dir, self.max_length, "data.max_length")]
        cap = self.cfg.train.max_train_length
        if self.student_length > self.train_length:
            student_reads, setting = self.student_length, "train.student_max_length"
        elif cap and cap < self.max_length:
            student_reads, setting = self.train_length, "train.max_train_length"
        else:
            student_reads, setting = self.train_length, "data.max_length"
        for spec_text in mc.students:
            source = parse_student_spec(spec_text).source
            folder = teacher_dir if source == "teacher" else encoder_dir(source)
            checks.append((spec_text, folder, student_reads, setting))
        for name, folder, length, key in checks:
            limit = max_input_tokens(folder)
            if length > limit:
                raise NanoNetError(
                    f"{key}={length} is longer than encoder '{name}' can read ({limit} tokens); "
                    f"set {key} to {limit} or less."
                )

    def _split_pool(self, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        """Hold out some unlabelled texts to choose the kept student (never the test set)."""
        pool = list(self.task.unlabelled_texts)
        n_hold = min(self.cfg.train.selection_holdout, len(pool) // 5)
        order = rng.permutation(len(pool))
        hold = [pool[i] for i in order[:n_hold]]
        train = [pool[i] for i in order[n_hold:]]
        return train, hold

    def _tokenize(self, tokenizer: Any, texts: list[str]) -> Ids:
        if not texts:
            return []
        return tokenizer(texts, truncation=True, max_length=self.train_length)["input_ids"]

    def _member(self, name: str, model: EncoderClassifier, tokenizer: Any, view: str) -> Member:
        texts = {
            "labelled": self.task.labelled_texts,
            "unlabelled": self.unlabelled,
            "holdout": self.holdout,
        }
        ids = {k: self._tokenize(tokenizer, v) for k, v in texts.items()}
        return Member(name, model, tokenizer, ids, view)

    def _build_teacher(self) -> Member:
        mc = self.cfg.model
        hf, tok = load_hf_encoder(encoder_dir(mc.teacher))
        inject_missing_biases(hf)
        # No dropout in the teacher: its predictions on unlabelled text are the students' targets.
        model = EncoderClassifier(Backbone(hf), self.num_labels, dropout=0.0)
        n = model.backbone.num_layers
        self.teacher_cut = max(0, n - mc.teacher_trainable_layers)
        if mc.teacher_peft == "lora":
            apply_lora(model.backbone, mc.lora_rank)
        set_trainable(model, mc.teacher_peft, self.teacher_cut)
        self._teacher_hf, self._teacher_tok = hf, tok
        return self._member(f"teacher ({mc.teacher})", model, tok, "none")

    def _student_encoder(self, spec: StudentSpec) -> tuple[Any, Any]:
        """The student's encoder (its chosen layers, weights copied) and tokenizer."""
        if spec.source == "teacher":
            base, tok = self._teacher_hf, self._teacher_tok
        else:
            base, tok = load_hf_encoder(encoder_dir(spec.source))
        return subset_layers(base, select_layers(spec.layers, base.config.num_hidden_layers)), tok

    def _build_student(self, spec_text: str, view: str) -> Member:
        mc = self.cfg.model
        spec = parse_student_spec(spec_text)
        hf, tok = self._student_encoder(spec)
        inject_missing_biases(hf)
        model = EncoderClassifier(Backbone(hf), self.num_labels, dropout=mc.dropout)
        if mc.peft == "lora":
            apply_lora(model.backbone, mc.lora_rank)
        set_trainable(model, mc.peft, 0)
        return self._member(str(spec), model, tok, view)

    def _fast_enough_students(self) -> list[str]:
        """The student specs worth training: those that read this data at least
        model.min_speedup times as fast as the teacher.

        A student exists to replace the teacher at inference, and the speed of a width-384
        encoder against MPNet depends on text length (MiniLM-L6: 7.5x on short reviews, 14.6x
        on long posts), so it is measured on this run's texts rather than assumed. Timed like
        the benchmark's docs/s (tokenization included, batch 64; the fastest of three passes)
        on up to 64 held-out texts, before the student costs any training time. If none is
        fast enough, the fastest is trained. The RNG state is restored afterwards: a run whose
        cohort is not cut trains exactly as it would without the screen.
        """
        specs = list(self.cfg.model.students)
        floor = self.cfg.model.min_speedup
        self.speed_screen: list[dict[str, Any]] = []
        if floor is None or len(specs) < 2:
            return specs
        sample = (self.holdout or self.unlabelled or self.task.labelled_texts)[:64]
        batch = self.cfg.train.eval_batch_size
        t = self.teacher
        with torch.random.fork_rng(), torch.no_grad():
            teacher_clf = NanoNetClassifier(
                t.model, t.tokenizer, self.task.label_names, self.max_length
            )
            teacher_speed = _docs_per_second(teacher_clf, sample, batch)
            speedups = []
            for spec_text in specs:
                hf, tok = self._student_encoder(parse_student_spec(spec_text))
                clf = untrained_classifier(hf, tok, self.num_labels, self.student_length)
                speedups.append(_docs_per_second(clf, sample, batch) / teacher_speed)
        kept = [s for s, x in zip(specs, speedups, strict=True) if x >= floor]
        if not kept:
            kept = [specs[int(np.argmax(speedups))]]
            log.warning(
                "no student reads this data %.0fx faster than the teacher "
                "(model.min_speedup); training the fastest, %s (%.1fx)",
                floor,
                kept[0],
                max(speedups),
            )
        for spec_text, x in zip(specs, speedups, strict=True):
            self.speed_screen.append(
                {"student": spec_text, "speedup": round(x, 2), "trained": spec_text in kept}
            )
            if spec_text not in kept:
                log.info(
                    "%s left out of the cohort: %.1fx the teacher's speed on these texts, "
                    "under model.min_speedup=%g",
                    spec_text,
                    x,
                    floor,
                )
        return kept

    def _optimizer(
        self, member: Member, total_steps: int, lr_bias: float, lr_head: float, peft: str
    ) -> None:
        tc = self.cfg.train
        groups: dict[str, list[torch.nn.Parameter]] = {"head": [], "bias": [], "other": []}
        for name, p in member.model.named_parameters():
            if not p.requires_grad:
                continue
            key = (
                "head" if name.startswith("head.") else "bias" if name.endswith("bias") else "other"
            )
            groups[key].append(p)
        lrs = {
            "head": lr_head,
            "bias": lr_bias,
            "other": tc.lr_lora if peft == "lora" else tc.lr_full,
        }
        if peft == "full":
            # Full fine-tuning moves every weight: biases then take the small full-FT rate too.
            lrs["bias"] = min(lr_bias, tc.lr_full * 10)
        param_groups = [
            {"params": ps, "lr": lrs[k], "weight_decay": 0.0 if k == "bias" else tc.weight_decay}
            for k, ps in groups.items()
            if ps
        ]
        member.optimizer = torch.optim.AdamW(param_groups)
        # Linear decay to 10%: a gentle finish without a tuned schedule.
        member.scheduler = torch.optim.lr_scheduler.LambdaLR(
            member.optimizer, lambda s: max(0.1, 1.0 - 0.9 * s / max(1, total_steps))
        )

    def _start_teacher_cache(self) -> None:
        """Keep the frozen bottom of the teacher's output per text, filled on first use.

        Valid because nothing below `teacher_cut` trains and the teacher sees no views.
        Filled lazily, so a run that draws 2,000 of 5,000 unlabelled texts pays for 2,000.
        Stored in fp16 (half the memory); converted back to fp32 per batch.
        """
        self.cache: dict[str, list[torch.Tensor | None]] | None = None
        if self.teacher_cut > 0:
            self.cache = {split: [None] * len(ids) for split, ids in self.teacher.ids.items()}

    @torch.no_grad()
    def _fill_cache(self, split: str, idx: list[int]) -> None:
        assert self.cache is not None
        t, store = self.teacher, self.cache[split]
        missing = [i for i in idx if store[i] is None]
        if not missing:
            return
        input_ids, mask = pad_batch([t.ids[split][i] for i in missing], t.pad_id)
        h = t.model.backbone.run_layers(
            t.model.backbone.embed(input_ids), mask, 0, self.teacher_cut
        )
        for row, i in enumerate(missing):
            store[i] = h[row, : len(t.ids[split][i])].to(torch.float16).clone()

    # ------------------------------------------------------------------ forward helpers --
    def teacher_pooled(self, split: str, idx: list[int], checkpoint: bool = False) -> torch.Tensor:
        """The teacher's sentence vectors, from its cached frozen bottom when there is one."""
        t = self.teacher
        if self.cache is None:
            input_ids, mask = pad_batch([t.ids[split][i] for i in idx], t.pad_id)
            return t.model.pooled_from(t.model.backbone.embed(input_ids), mask, 0, checkpoint)
        self._fill_cache(split, idx)
        hidden, mask = _pad_states([self.cache[split][i] for i in idx])  # type: ignore[misc]
        return t.model.pooled_from(hidden, mask, self.teacher_cut, checkpoint)

    def teacher_logits(self, split: str, idx: list[int]) -> torch.Tensor:
        return self.teacher.model.classify(self.teacher_pooled(split, idx))

    def student_logits(self, member: Member, split: str, idx: list[int]) -> torch.Tensor:
        ids = [member.ids[split][i] for i in idx]
        mask_id = getattr(member.tokenizer, "mask_token_id", None)
        ids = apply_views(ids, member.view, self.cfg.train.view_rate, self.rng, mask_id)
        return member.model(*pad_batch(ids, member.pad_id))

    # ------------------------------------------------------------------ the method -------
    def teacher_contrastive_stage(self) -> None:
        """Stage 1: the teacher's trainable biases learn to separate the classes (SetFit-style).

        With ten examples per class the head alone cannot move a frozen embedding much; pulling
        same-class texts together and pushing others apart first lifts the teacher from its
        frozen-probe level (measured on rotten_tomatoes: +5.5 points over three label draws).
        """
        tc = self.cfg.train
        if tc.teacher_contrastive_steps == 0 or len(self.task.labelled_texts) < 2:
            return
        params = [
            p
            for n, p in self.teacher.model.named_parameters()
            if p.requires_grad and not n.startswith("head.")
        ]
        if not params:
            return
        opt = torch.optim.AdamW(params, lr=tc.teacher_contrastive_lr, weight_decay=0.0)
        labels = self.task.labelled_labels
        bar = tqdm(
            range(tc.teacher_contrastive_steps),
            desc="teacher: contrastive stage",
            disable=not self.progress,
        )
        for step in bar:
            batch = pair_batch(labels, tc.contrastive_batch_size, self.rng)
            # The pair loss needs every text of the batch at once, and unlike the training
            # batches this one does not shrink for long texts: on 20newsgroups read at 256
            # tokens the saved activations took 3.5 GB. Checkpointed layers keep their input
            # only, but the stage takes longer (rotten_tomatoes: 36 -> 58 s), so only long
            # batches pay for it.
            width = max(len(self.teacher.ids["labelled"][i]) for i in batch)
            pooled = self.teacher_pooled("labelled", batch, checkpoint=width > CHECKPOINT_ABOVE)
            loss = pair_similarity_loss(pooled, self.y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self._emit({"phase": "contrastive", "step": step, "teacher_pair": loss.item()}, bar)

    def teacher_warmup_step(self, lab: list[int]) -> dict[str, float]:
        """Teacher-only step on the labels, so that early distillation targets are not noise."""
        y = self.y[lab]
        loss = supervised_loss(self.teacher_logits("labelled", lab), y)
        self._update([self.teacher], loss)
        return {"teacher_sup": loss.item()}

    def nanonet_step(self, step: int, lab: list[int], unl: list[int]) -> dict[str, float]:
        """One NanoNet step (method.md, "Losses for student k")."""
        tc = self.cfg.train
        y = self.y[lab]
        r = rampup(step, tc.steps, tc.rampup_fraction)
        logs: dict[str, float] = {"rampup": r}

        # Teacher: adapted online from the labels (bias terms + head).
        teacher_loss = supervised_loss(self.teacher_logits("labelled", lab), y)
        logs["teacher_sup"] = teacher_loss.item()
        t_unl = None
        if tc.use_teacher:
            # Targets need no gradient unless the teacher learns from its own pseudo-labels.
            with torch.set_grad_enabled(tc.teacher_pseudo_label_threshold is not None):
                t_unl = self.teacher_logits("unlabelled", unl)

        # Students, each on its own view of the labelled and the unlabelled batch.
        s_lab = [self.student_logits(s, "labelled", lab) for s in self.students]
        s_unl = [self.student_logits(s, "unlabelled", unl) for s in self.students]
        student_loss = torch.zeros(())
        for k in range(len(self.students)):
            sup = supervised_loss(s_lab[k], y)
            kd = (
                distillation_loss(s_unl[k], t_unl, tc.temperature, tc.kd_loss)
                if t_unl is not None
                else torch.zeros(())
            )
            peers = [s_unl[j].detach() for j in range(len(self.students)) if j != k]
            mutual = mutual_loss(s_unl[k], peers, tc.temperature, tc.kd_loss)
            student_loss = student_loss + sup + tc.kd_weight * kd + tc.mutual_weight * r * mutual
            logs[f"s{k}_sup"], logs[f"s{k}_kd"], logs[f"s{k}_mutual"] = (
                sup.item(),
                kd.item(),
                mutual.item(),
            )

        # Teacher also learns from unlabelled text where it is confident and the cohort agrees.
        if t_unl is not None and tc.teacher_pseudo_label_threshold is not None:
            conf, pseudo = torch.softmax(t_unl.detach(), -1).max(-1)
            agree = conf >= tc.teacher_pseudo_label_threshold
            for s in s_unl:
                agree &= s.detach().argmax(-1) == pseudo
            logs["teacher_pseudo_frac"] = agree.float().mean().item()
            if agree.any():
                teacher_loss = teacher_loss + r * supervised_loss(t_unl[agree], pseudo[agree])

        self._update([self.teacher, *self.students], teacher_loss + student_loss)
        logs["loss"] = teacher_loss.item() + student_loss.item()
        return logs

    def _update(self, members: list[Member], loss: torch.Tensor) -> None:
        for m in members:
            m.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for m in members:
            m.optimizer.step()
            m.scheduler.step()

    # ------------------------------------------------------------------ run --------------
    def train(self) -> TrainResult:
        tc = self.cfg.train
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed)
        self.rng = np.random.default_rng(tc.seed)
        started = time.perf_counter()

        self.unlabelled, self.holdout = self._split_pool(np.random.default_rng(tc.seed + 1))
        if not self.unlabelled:
            log.warning("no unlabelled text: students learn from the labels only")
        self.y = torch.tensor(self.task.labelled_labels, dtype=torch.long)

        self.teacher = self._build_teacher()
        views = tc.views or ["none"]
        self.students = [
            self._build_student(spec, views[k % len(views)])
            for k, spec in enumerate(self._fast_enough_students())
        ]
        mc = self.cfg.model
        self._optimizer(
            self.teacher,
            tc.teacher_warmup_steps + tc.steps,
            tc.teacher_lr_bias,
            tc.teacher_lr_head,
            mc.teacher_peft,
        )
        for s in self.students:
            self._optimizer(s, tc.steps, tc.lr_bias, tc.lr_head, mc.peft)
        self._log_parameters()
        self.teacher.model.eval()
        self._start_teacher_cache()
        lab_bs, unl_bs = self._batch_sizes()
        # Phase marks in the log: a run stopped by a time limit still shows where time went.
        self._phase("teacher contrastive stage", started)
        self.teacher_contrastive_stage()
        self._init_heads()
        self._phase("teacher warm-up", started)

        lab_iter = bucketed_epochs([len(x) for x in self.teacher.ids["labelled"]], lab_bs, self.rng)
        unl_iter: Iterator[list[int]] | None = None
        if self.unlabelled:
            unl_iter = bucketed_epochs(
                [len(x) for x in self.teacher.ids["unlabelled"]], unl_bs, self.rng
            )
        self._set_train_mode()
        bar = tqdm(
            range(tc.teacher_warmup_steps), desc="teacher warm-up", disable=not self.progress
        )
        for step in bar:
            logs = self.teacher_warmup_step(next(lab_iter))
            self._emit({"phase": "warmup", "step": step, **logs}, bar)
        self._phase(f"nanonet steps ({tc.steps})", started)
        bar = tqdm(range(tc.steps), desc="nanonet", disable=not self.progress)
        for step in bar:
            lab = next(lab_iter)
            if unl_iter is None:
                logs = self._supervised_only_step(lab)
            else:
                logs = self.nanonet_step(step, lab, next(unl_iter))
            self._emit({"phase": "train", "step": step, **logs}, bar)
        train_seconds = time.perf_counter() - started
        self._phase("choosing the kept student", started)

        for m in [self.teacher, *self.students]:
            m.model.eval()
        kept_index, selection = self._choose_student()
        report = self._report(train_seconds, kept_index, selection)
        kept = self.students[kept_index]
        clf = NanoNetClassifier(
            kept.model,
            kept.tokenizer,
            self.task.label_names,
            self.student_length,
            report["summary"],
        )
        return TrainResult(classifier=clf, kept=kept.name, report=report)

    def _batch_sizes(self) -> tuple[int, int]:
        tc = self.cfg.train
        ids = self.teacher.ids["unlabelled"] or self.teacher.ids["labelled"]
        mean_len = float(np.mean([len(x) for x in ids]))
        lab = scaled_batch_size(tc.labeled_batch_size, mean_len, tc.batch_reference_length)
        unl = scaled_batch_size(tc.unlabeled_batch_size, mean_len, tc.batch_reference_length)
        log.info(
            "texts of %.0f tokens on average (training reads at most %d): "
            "batches of %d labelled + %d unlabelled texts",
            mean_len,
            self.train_length,
            lab,
            unl,
        )
        return lab, unl

    @staticmethod
    def _phase(name: str, started: float) -> None:
        log.info("%s (at %.0f s)", name, time.perf_counter() - started)

    def _supervised_only_step(self, lab: list[int]) -> dict[str, float]:
        y = self.y[lab]
        loss = supervised_loss(self.teacher_logits("labelled", lab), y)
        for s in self.students:
            loss = loss + supervised_loss(self.student_logits(s, "labelled", lab), y)
        self._update([self.teacher, *self.students], loss)
        return {"loss": loss.item()}

    def _set_train_mode(self) -> None:
        self.teacher.model.eval()  # no dropout: see _build_teacher
        for s in self.students:
            s.model.train()

    def _emit(self, logs: dict[str, Any], bar: Any) -> None:
        if self.on_step is not None:
            self.on_step(logs)
        if logs["step"] % 5 == 0:
            shown = {
                k: f"{v:.3f}"
                for k, v in logs.items()
                if k in ("loss", "teacher_sup", "teacher_pair")
            }
            bar.set_postfix(shown)

    @torch.no_grad()
    def _init_heads(self) -> None:
        """Centroid-initialise every head on the labelled examples (init_head_from_centroids).

        In batches: the whole labelled set in one batch made [texts, heads, T, T] attention
        tensors (20newsgroups read at 256 tokens: 200 texts, +1.3 GB at the run's peak).
        """
        y = self.y
        n, size = len(self.teacher.ids["labelled"]), self.cfg.train.eval_batch_size
        chunks = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
        pooled = torch.cat([self.teacher_pooled("labelled", c) for c in chunks])
        self.teacher.model.init_head_from_centroids(pooled, y)
        for s in self.students:
            s.model.eval()
            ids = s.ids["labelled"]
            pooled = torch.cat(
                [s.model.embed_pooled(*pad_batch([ids[i] for i in c], s.pad_id)) for c in chunks]
            )
            s.model.init_head_from_centroids(pooled, y)

    @torch.no_grad()
    def _predict_split(self, member: Member, split: str) -> np.ndarray:
        ids = member.ids[split]
        out = np.zeros((len(ids), self.num_labels), dtype=np.float32)
        for batch in length_sorted_batches([len(x) for x in ids], 64):
            if member is self.teacher:
                out[batch] = self.teacher_logits(split, batch).numpy()
            else:
                out[batch] = member.model(
                    *pad_batch([ids[i] for i in batch], member.pad_id)
                ).numpy()
        return out

    def _choose_student(self) -> tuple[int, dict[str, Any]]:
        """Keep the student that agrees most with the reference on held-out unlabelled text.

        The reference is the adapted teacher (or, without a teacher, the cohort's mean
        prediction). Among students within `selection_tolerance` of the best agreement, the
        cheapest at inference (fewest FLOPs per token) is kept: the point of the cohort is a
        small, fast model. No test text is involved.
        """
        split = "holdout" if self.holdout else "unlabelled" if self.unlabelled else "labelled"
        preds = [self._predict_split(s, split) for s in self.students]
        if self.cfg.train.use_teacher:
            ref = self._predict_split(self.teacher, split)
            criterion = f"agreement with the teacher on {split} texts"
        else:
            ref = np.mean([_softmax(p) for p in preds], axis=0)
            criterion = f"agreement with the cohort's mean prediction on {split} texts"
        scores = [agreement(p, ref) for p in preds]
        cost = [flops_per_token(s.model.backbone.hf.config) for s in self.students]
        best = max(scores)
        tol = self.cfg.train.selection_tolerance
        near = [k for k in range(len(scores)) if scores[k] >= best - tol]
        kept = min(near, key=lambda k: (cost[k], -scores[k]))
        criterion += f" (the cheapest within {tol:.3f} of the best)" if tol > 0 else ""
        return kept, {"criterion": criterion, "n": len(ref), "scores": scores}

    def _log_parameters(self) -> None:
        for m in [self.teacher, *self.students]:
            trainable, total = m.params()
            log.info(
                "%-34s trainable %10s / %12s parameters (%.3f%%)",
                m.name,
                f"{trainable:,}",
                f"{total:,}",
                100 * trainable / total,
            )

    def _report(self, train_seconds: float, kept: int, selection: dict[str, Any]) -> dict[str, Any]:
        members = []
        for k, m in enumerate([self.teacher, *self.students]):
            trainable, total = m.params()
            entry: dict[str, Any] = {
                "name": m.name,
                "role": "teacher" if k == 0 else "student",
                "trainable_params": trainable,
                "total_params": total,
            }
            if k > 0:
                entry["selection_score"] = selection["scores"][k - 1]
                entry["kept"] = k - 1 == kept
            members.append(entry)
        if self.task.test_texts:
            self._evaluate_members(members)
        kept_entry = members[kept + 1]
        summary = {
            "dataset": self.task.name,
            "seed": self.cfg.train.seed,
            "labels_per_class": self.cfg.data.labels_per_class,
            "labelled_examples": len(self.task.labelled_texts),
            "unlabelled_examples": len(self.unlabelled),
            "selection_holdout": len(self.holdout),
            "student": kept_entry["name"],
            "teacher": self.cfg.model.teacher,
            "peft": self.cfg.model.peft,
            "trainable_params": kept_entry["trainable_params"],
            "total_params": kept_entry["total_params"],
            "teacher_trainable_params": members[0]["trainable_params"],
            "teacher_total_params": members[0]["total_params"],
            "train_seconds": round(train_seconds, 1),
            "selection": selection["criterion"],
        }
        if "test" in kept_entry:
            summary["test_accuracy"] = kept_entry["test"]["accuracy"]
            summary["test_macro_f1"] = kept_entry["test"]["macro_f1"]
            summary["test_size"] = kept_entry["test"]["n"]
        return {
            "summary": summary,
            "members": members,
            "speed_screen": self.speed_screen,
            "train_seconds": train_seconds,
        }

    def _evaluate_members(self, members: list[dict[str, Any]]) -> None:
        for entry, m in zip(members, [self.teacher, *self.students], strict=True):
            clf = NanoNetClassifier(
                m.model, m.tokenizer, self.task.label_names, self.read_length(m)
            )
            log.info("evaluating %s on %d test texts", m.name, len(self.task.test_texts))
            entry["test"] = evaluate(
                clf, self.task.test_texts, self.task.test_labels, self.cfg.train.eval_batch_size
            )


def flops_per_token(config: Any) -> int:
    """Multiply-adds per token in the encoder's linear layers: a proxy for inference cost."""
    h, i = config.hidden_size, config.intermediate_size
    return config.num_hidden_layers * (4 * h * h + 2 * h * i)


def _pad_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(s.shape[0] for s in states)
    hidden = torch.zeros(len(states), width, states[0].shape[1])
    mask = torch.zeros(len(states), width, dtype=torch.long)
    for row, s in enumerate(states):
        hidden[row, : s.shape[0]] = s.float()
        mask[row, : s.shape[0]] = 1
    return hidden, mask


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _docs_per_second(clf: NanoNetClassifier, texts: list[str], batch_size: int) -> float:
    return best_docs_per_second(class_ids(clf, batch_size), texts)
