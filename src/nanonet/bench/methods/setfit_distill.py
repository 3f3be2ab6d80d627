"""SetFit's own route to a small model: the `setfit` model on the teacher's body (the same
training, settings and seed as the `setfit-mpnet` row), distilled with
`setfit.DistillationTrainer` into a small body on exactly the unlabelled pool NanoNet gets.

What setfit 1.2.0's `DistillationTrainer.train()` does (read from its source, not its docs):

1. Body phase. The teacher's body embeds every unlabelled text once and builds the n x n
   cosine-similarity matrix. Text pairs are taken in one fixed order (a permutation by
   `np.random.RandomState(42)` of all n(n+1)/2 index pairs, self-pairs included, whatever the
   seed) and the student's body is trained with `CosineSimilarityLoss`: the squared error
   between the student's cosine of a pair and the pair's target, AdamW at the library's
   `body_learning_rate` (2e-5 for this phase), 10% warm-up, weight decay 0.01, batches of 16.
   How many pairs: with no `num_iterations` (the library default) every pair, i.e. 12.5 million
   pairs (781,000 steps) for 5,000 texts; with `num_iterations=k`, k x n pairs, but every one
   of the n(n+1)/2 pairs is still built first as a Python dict. `max_steps=S` stops building
   after S x batch / 2 + 1 pairs (the cap SetFit halves for positive/negative balance, which
   a distillation does not have) and then trains for S steps, cycling over them: each built
   pair is seen about twice.
2. Head phase. The teacher predicts every unlabelled text (a second full teacher pass: its
   hard class ids, not probabilities) and the student's logistic-regression head is fitted on
   the student body's embeddings of the unlabelled texts with those predictions as labels. So
   the student head is fitted on the teacher's predictions, not on the labelled examples: the
   labelled budget reaches the student only through the teacher.

A bug in setfit 1.2.0 (and 1.0/1.1, same code): `ContrastiveDistillationDataset` builds its
pairs inside the parent constructor, while the (text, index) list it looks indices up in
still holds (text, 0) for every text. Every pair's target is therefore `cos_sim[0][0]`, the
first text's self-similarity, 1.0: the released trainer teaches the student to give every
pair of texts cosine 1 (the body collapses; the head then separates what is left). SetFit's
docs and the SetFit paper describe the teacher's cosine of the pair as the target. With
`fix_pair_targets` (the default) the pairs are built with the right indices, so the targets
are the teacher's cosines; the pairs, their order, the loss and every other step are the
library's own. `fix_pair_targets: false` runs the trainer as released.

`teacher:` in a student spec (`teacher:bottom1`) means the teacher's pretrained encoder,
before SetFit training, cut the way NanoNet cuts its students (`setfit_method.body_folder`).
The scored model is the student alone; the run's train time covers the teacher's SetFit
training as well as the distillation, as both are the cost of the small model.
"""

from __future__ import annotations

from typing import Any

from nanonet.bench.methods.base import RunContext, Trained
from nanonet.bench.methods.setfit_method import (
    as_trained,
    load_setfit_model,
    pooling,
    require_setfit,
    train_setfit,
)
from nanonet.data.task import Task
from nanonet.errors import NanoNetError
from nanonet.models.students import parse_student_spec


def fit(task: Task, settings: dict[str, Any], ctx: RunContext) -> Trained:
    check_settings(settings)
    if not task.unlabelled_texts:
        raise NanoNetError(
            "setfit-distill distils on the unlabelled pool, and this task has no unlabelled texts."
        )
    require_setfit()
    from datasets import Dataset
    from setfit import TrainingArguments

    # The student first, so that a spec that cannot be built fails before the teacher trains.
    # (Its random draws, if any, do not reach the teacher: setfit's Trainer seeds everything.)
    student = load_setfit_model(
        settings["student"],
        ctx.scratch / "student",
        task.max_length,
        settings["teacher"],
        ctx.device,
    )
    teacher = train_setfit(task, settings["teacher"], settings, ctx, name="teacher")
    args = TrainingArguments(
        output_dir=str(ctx.scratch / "distill-checkpoints"),
        batch_size=settings["distill_batch_size"],
        num_epochs=settings["distill_num_epochs"],
        num_iterations=settings["distill_num_iterations"],
        max_steps=settings["distill_max_steps"],
        max_length=task.max_length,
        seed=ctx.seed,
        report_to="none",
        save_strategy="no",
        show_progress_bar=False,
    )
    pool = Dataset.from_dict({"text": list(task.unlabelled_texts)})
    trainer = distillation_trainer(settings["fix_pair_targets"])(
        teacher_model=teacher, student_model=student, args=args, train_dataset=pool
    )
    trainer.train()
    details = {
        "teacher_body": settings["teacher"],
        "student_body": settings["student"],
        "pooling": pooling(student),
        "teacher_setfit": {k: settings[k] for k in ("num_iterations", "batch_size", "num_epochs")},
        "distillation": {
            "max_steps": settings["distill_max_steps"],
            "num_iterations": settings["distill_num_iterations"],
            "batch_size": settings["distill_batch_size"],
            "num_epochs": settings["distill_num_epochs"],
            "pair_targets": "teacher cosine" if settings["fix_pair_targets"] else "as released",
            "unlabelled_texts": len(task.unlabelled_texts),
            "pairs_per_epoch": trainer.pairs_per_epoch,
            "steps": trainer.st_trainer.state.global_step,
        },
    }
    return as_trained(student, ctx, details)


def check_settings(settings: dict[str, Any]) -> None:
    """Refuse settings that cannot work, before minutes of teacher training are spent."""
    problems = []
    for key in ("num_iterations", "batch_size", "num_epochs"):
        problems += _positive(settings, key)
    for key in ("distill_batch_size", "distill_num_epochs"):
        problems += _positive(settings, key)
    steps = settings["distill_max_steps"]
    if not _is_int(steps) or (steps < 1 and steps != -1):
        problems.append(f"distill_max_steps must be an integer >= 1 or -1 (no cap), not {steps!r}")
    iterations = settings["distill_num_iterations"]
    if iterations is not None and (not _is_int(iterations) or iterations < 1):
        problems.append(
            f"distill_num_iterations must be a positive integer or null (the library's "
            f"sampling), not {iterations!r}"
        )
    if not isinstance(settings["fix_pair_targets"], bool):
        problems.append(
            f"fix_pair_targets must be true or false, not {settings['fix_pair_targets']!r}"
        )
    for key in ("teacher", "student"):
        if not isinstance(settings[key], str) or not settings[key].strip():
            problems.append(f"{key} must be an encoder name or a student spec")
    if not problems:
        teacher = parse_student_spec(settings["teacher"])
        if teacher.source == "teacher" or teacher.layers is not None:
            problems.append(
                f"teacher must be a whole encoder (mpnet, minilm-l6, a folder), not "
                f"'{settings['teacher']}'"
            )
    if problems:
        raise NanoNetError("setfit-distill settings: " + "; ".join(problems) + ".")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(settings: dict[str, Any], key: str) -> list[str]:
    value = settings[key]
    return [] if _is_int(value) and value >= 1 else [f"{key} must be >= 1, not {value!r}"]


def distillation_trainer(fix_pair_targets: bool) -> type:
    """setfit's DistillationTrainer, with the pair targets fixed when asked (see the module
    docstring); it also records how many pairs an epoch has, for the run's details."""
    from datasets import Dataset
    from sentence_transformers import util
    from setfit import DistillationTrainer

    class Distiller(DistillationTrainer):
        pairs_per_epoch = 0

        def get_dataset(self, x: Any, y: Any, args: Any, max_pairs: int = -1) -> Any:
            if not fix_pair_targets:
                dataset, loss = super().get_dataset(x, y, args, max_pairs=max_pairs)
            else:  # DistillationTrainer.get_dataset of setfit 1.2.0, with the pairs fixed
                embeddings = self.teacher_model.model_body.encode(
                    list(x), convert_to_tensor=self.teacher_model.has_differentiable_head
                )
                cos_sim = util.cos_sim(embeddings, embeddings)
                pairs = teacher_cosine_pairs(
                    list(x), cos_sim, args.num_iterations, args.sampling_strategy, max_pairs
                )
                dataset = Dataset.from_list(pairs)
                loss = args.loss(self.model.model_body)
            self.pairs_per_epoch = len(dataset)
            return dataset, loss

    return Distiller


def teacher_cosine_pairs(
    texts: list[str],
    cos_sim: Any,
    num_iterations: int | None,
    sampling_strategy: str = "oversampling",
    max_pairs: int = -1,
) -> list[dict[str, Any]]:
    """setfit's ContrastiveDistillationDataset with each pair's target its own cos_sim[i][j]:
    the same pairs in the same order, only the indices fixed."""
    from setfit.sampler import ContrastiveDistillationDataset

    class TeacherCosinePairs(ContrastiveDistillationDataset):
        def generate_pairs(self) -> None:
            # The parent constructor calls this while `sentence_labels` is still (text, 0) for
            # every text; index the texts so each target is cos_sim[i][j] of its own pair.
            self.sentence_labels = [(text, i) for i, text in enumerate(self.sentences)]
            super().generate_pairs()

    return list(TeacherCosinePairs(texts, cos_sim, num_iterations, sampling_strategy, max_pairs))
