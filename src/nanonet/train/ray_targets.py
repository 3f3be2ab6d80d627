"""The adapted teacher's outputs for a whole pool, computed on a Ray actor pool
(`nanonet train --engine ray`).

On a big pool the costly part of training is the teacher reading every text once its
adaptation is done. Here the teacher (its weights put in Ray's object store once) is loaded
once per actor, each actor reads length-sorted slices of the pool's token ids (one flat int32
array + offsets, shared zero-copy by the actors of a node) and returns logits (and sentence
vectors when embedding distillation needs them); the driver scatters them back by index and the
students then train from this cache exactly as in a local run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from nanonet.data.batching import length_sorted_batches, pad_batch
from nanonet.models.device import device_of
from nanonet.models.encoder import EncoderClassifier
from nanonet.ray_cluster import quiet_ray_data, ray_session

if TYPE_CHECKING:
    from nanonet.train.cohort import Member
    from nanonet.train.config import TrainConfig
    from nanonet.train.teacher_cache import TeacherTargets


class _TeacherReader:
    """One Ray actor: the teacher, loaded once, reading slices of the pool."""

    def __init__(
        self,
        model: EncoderClassifier,
        flat: np.ndarray,
        offsets: np.ndarray,
        pad_id: int,
        batch_size: int,
        keep_vectors: bool,
        threads: int,
    ) -> None:
        import ray

        # Ray Data hands the constructor the references as they were given.
        model, flat, offsets = (
            ray.get(x) if isinstance(x, ray.ObjectRef) else x for x in (model, flat, offsets)
        )
        torch.set_num_threads(threads)
        self.model = model.eval()
        self.flat, self.offsets, self.pad_id = flat, offsets, pad_id
        self.batch_size, self.keep_vectors = batch_size, keep_vectors

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        index = batch["data"].astype(np.int64)
        ids = [self.flat[self.offsets[i] : self.offsets[i + 1]] for i in index]
        logits, vectors = [], []
        order = length_sorted_batches([len(x) for x in ids], self.batch_size)
        for part in order:
            input_ids, mask = pad_batch([ids[j] for j in part], self.pad_id, torch.device("cpu"))
            pooled = self.model.pooled_from(self.model.backbone.embed(input_ids), mask, 0)
            logits.append(self.model.classify(pooled).float().numpy())
            if self.keep_vectors:
                vectors.append(pooled.float().numpy())
        flat_order = np.concatenate([np.asarray(p, dtype=np.int64) for p in order])
        out = {"id": index[flat_order], "logits": np.concatenate(logits)}
        if self.keep_vectors:
            out["pooled"] = np.concatenate(vectors)
        return out


def teacher_outputs_on_ray(
    model: EncoderClassifier,
    ids: Sequence[np.ndarray],
    pad_id: int,
    batch_size: int,
    keep_vectors: bool,
    workers: int,
    address: str | None,
    texts_per_task: int = 512,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits, sentence vectors or None) of the teacher for every text of `ids`, in order."""
    if not len(ids):
        raise ValueError("no texts to read")
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate([np.asarray(x, dtype=np.int32) for x in ids])
    # ray.put pickles the model itself; a copy is needed only to bring it off a GPU.
    on_cpu = device_of(model).type == "cpu"
    cpu_model = model if on_cpu else copy.deepcopy(model).to("cpu")
    # One CPU more than the actors take: the driver's own tasks must not wait for them.
    with ray_session(address, workers + 1) as ray:
        model_ref, flat_ref, offsets_ref = ray.put(cpu_model), ray.put(flat), ray.put(offsets)
        quiet_ray_data()
        # Length-sorted ids, so each task's texts pad to about the same width, in blocks of
        # `texts_per_task` (one block would keep all but one actor idle).
        order = np.argsort(lengths, kind="stable")
        blocks = np.array_split(order, max(workers, math.ceil(len(order) / texts_per_task)))
        data = ray.data.from_numpy([b for b in blocks if len(b)])  # one column: "data"
        scored = data.map_batches(
            _TeacherReader,
            batch_size=texts_per_task,
            batch_format="numpy",
            concurrency=workers,
            num_cpus=1,
            fn_constructor_kwargs={
                "model": model_ref,
                "flat": flat_ref,
                "offsets": offsets_ref,
                "pad_id": pad_id,
                "batch_size": batch_size,
                "keep_vectors": keep_vectors,
                "threads": 1,
            },
        )
        logits: np.ndarray | None = None
        vectors: np.ndarray | None = None
        for part in scored.iter_batches(batch_size=None, batch_format="numpy"):
            if logits is None:
                logits = np.zeros((len(ids), part["logits"].shape[1]), dtype=np.float32)
                if keep_vectors:
                    vectors = np.zeros((len(ids), part["pooled"].shape[1]), dtype=np.float32)
            logits[part["id"]] = part["logits"]
            if vectors is not None:
                vectors[part["id"]] = part["pooled"]
    assert logits is not None
    return logits, vectors


def fill_targets_on_ray(
    targets: TeacherTargets, teacher: Member, splits: Sequence[str], tc: TrainConfig
) -> None:
    """Every text of `splits` gets its targets at once, read by `teacher` on a Ray actor
    pool (one pass over all of them: starting Ray takes seconds)."""
    ids = [x for split in splits for x in teacher.ids[split]]
    logits, vectors = teacher_outputs_on_ray(
        teacher.model,
        ids,
        teacher.pad_id,
        tc.eval_batch_size,
        targets.keep_vectors,
        tc.ray_workers,
        tc.ray_address,
    )
    device = device_of(teacher.model)
    start = 0
    for split in splits:
        end = start + len(teacher.ids[split])
        part = torch.from_numpy(logits[start:end]).to(device)
        pooled = torch.from_numpy(vectors[start:end]).to(device) if vectors is not None else None
        targets.put(split, part, pooled)
        start = end
