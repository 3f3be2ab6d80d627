"""Which texts to label: `nanonet suggest`.

Two rules, both deterministic for a seed:
- **cold start** (no model yet): texts that cover the pool. The pool is embedded with an
  encoder (the teacher by default), clustered by spherical k-means into `n` clusters (k-means++
  start, seeded), and each cluster gives its most central text: near-duplicates share a
  cluster and so cost one label, and every region of the data gets one.
- **with a trained model**: texts the model is least sure of (smallest margin between its two
  most probable classes), kept diverse: the `uncertain_factor * n` least sure are clustered
  into `n` and each cluster gives its least sure text.
Memory is bounded for a pool of any size: the pool is streamed, and the texts considered are a
uniform sample (reservoir, seeded) of at most `max_candidates`; the output names each text's
row in the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nanonet.data.batching import length_sorted_batches, pad_batch
from nanonet.data.stream_readers import iter_texts
from nanonet.errors import NanoNetError
from nanonet.models.assets import encoder_dir
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder

log = logging.getLogger("nanonet")


@dataclass
class Suggestion:
    row: int  # 0-based row of the text in the pool file
    text: str
    score: float  # cold start: the share of the pool its cluster stands for; else 1 - margin
    reason: str


def sample_pool(
    chunks: Iterable[list[str]], limit: int, seed: int, skip: set[str] | None = None
) -> tuple[list[int], list[str], int]:
    """(rows, texts, pool size): a uniform sample of at most `limit` distinct, non-blank texts
    not in `skip` (reservoir sampling: one pass, memory bounded by `limit`)."""
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    texts: list[str] = []
    seen = 0
    row = -1
    kept_texts: set[str] = set()
    for chunk in chunks:
        for text in chunk:
            row += 1
            if not text.strip() or (skip and text in skip) or text in kept_texts:
                continue
            seen += 1
            if len(texts) < limit:
                rows.append(row)
                texts.append(text)
                kept_texts.add(text)
            else:
                j = int(rng.integers(seen))
                if j < limit:
                    kept_texts.discard(texts[j])
                    rows[j], texts[j] = row, text
                    kept_texts.add(text)
    return rows, texts, row + 1


@torch.inference_mode()
def embed(
    model: EncoderClassifier,
    tokenizer: object,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(unit sentence vectors, logits) of `texts`."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]  # type: ignore[operator]
    pad = tokenizer.pad_token_id  # type: ignore[attr-defined]
    vectors = np.zeros((len(ids), model.backbone.hidden_size), dtype=np.float32)
    logits = np.zeros((len(ids), model.head.out_features), dtype=np.float32)
    batches = length_sorted_batches([len(x) for x in ids], batch_size)
    for batch in tqdm(batches, desc="reading the pool", disable=not progress, unit="batch"):
        pooled = model.embed_pooled(*pad_batch([ids[i] for i in batch], pad))
        vectors[batch] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        logits[batch] = model.classify(pooled).numpy()
    return vectors, logits


def spherical_kmeans(
    x: np.ndarray, k: int, seed: int, iterations: int = 25
) -> tuple[np.ndarray, np.ndarray]:
    """(assignment per row, unit centres) of unit vectors `x`, k-means++ start."""
    rng = np.random.default_rng(seed)
    n = len(x)
    centres = np.empty((k, x.shape[1]), dtype=x.dtype)
    centres[0] = x[rng.integers(n)]
    closest = 1.0 - x @ centres[0]
    for c in range(1, k):
        weights = np.clip(closest, 0.0, None) ** 2
        total = weights.sum()
        i = int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n))
        centres[c] = x[i]
        closest = np.minimum(closest, 1.0 - x @ centres[c])
    assign = np.full(n, -1, dtype=np.int64)
    for _ in range(iterations):
        new = (x @ centres.T).argmax(1)
        if np.array_equal(new, assign):
            break
        assign = new
        for c in range(k):
            members = x[assign == c]
            if len(members):
                mean = members.sum(0)
                centres[c] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return assign, centres


def cover(vectors: np.ndarray, n: int, seed: int) -> list[tuple[int, float]]:
    """(index, share of the sample) of the most central text of each of `n` clusters, the
    largest clusters first."""
    assign, centres = spherical_kmeans(vectors, n, seed)
    picks = []
    for c in range(n):
        members = np.flatnonzero(assign == c)
        if len(members) == 0:
            continue
        best = members[int((vectors[members] @ centres[c]).argmax())]
        picks.append((int(best), len(members) / len(vectors)))
    return sorted(picks, key=lambda p: (-p[1], p[0]))


def least_sure(
    vectors: np.ndarray, logits: np.ndarray, n: int, seed: int, uncertain_factor: int = 5
) -> list[tuple[int, float]]:
    """(index, 1 - margin) of `n` texts the model is least sure of, one per cluster of the
    `uncertain_factor * n` least sure, the least sure first."""
    proba = torch.softmax(torch.from_numpy(logits), -1).numpy()
    top2 = np.sort(proba, axis=1)[:, -2:]
    doubt = 1.0 - (top2[:, 1] - top2[:, 0])
    order = np.argsort(-doubt, kind="stable")[: max(n, uncertain_factor * n)]
    if len(order) <= n:
        return [(int(i), float(doubt[i])) for i in order]
    assign, _ = spherical_kmeans(vectors[order], n, seed)
    picks = []
    for c in range(n):
        members = order[assign == c]
        if len(members):
            best = members[int(doubt[members].argmax())]
            picks.append((int(best), float(doubt[best])))
    return sorted(picks, key=lambda p: (-p[1], p[0]))


def suggest(
    pool: str | Path,
    n: int,
    model_dir: str | Path | None = None,
    encoder: str = "all-mpnet-base-v2",
    text_column: str = "text",
    seed: int = 0,
    max_candidates: int = 20_000,
    max_length: int = 128,
    exclude: Iterable[str] = (),
    progress: bool = True,
) -> list[Suggestion]:
    """`n` texts of the file `pool` to label next (see the module's docstring)."""
    if n < 1:
        raise NanoNetError(f"--n must be at least 1, not {n}.")
    if max_candidates < n:
        raise NanoNetError(f"max_candidates ({max_candidates}) must be at least --n ({n}).")
    chunks = iter_texts(pool, text_column, 4096)  # checks the file and column first
    model, tokenizer, length = _model(model_dir, encoder, max_length)
    rows, texts, size = sample_pool(chunks, max_candidates, seed, set(exclude))
    if len(texts) < n:
        raise NanoNetError(
            f"{pool} has {len(texts)} distinct non-empty texts not labelled yet; ask for at "
            f"most that many (--n {len(texts)})."
        )
    log.info("choosing %d of %d texts (a sample of the pool's %d rows)", n, len(texts), size)
    picks = choose(model, tokenizer, length, texts, n, seed, model_dir is not None, progress)
    return [Suggestion(rows[i], texts[i], score, reason) for i, score, reason in picks]


def choose_texts(
    texts: Sequence[str],
    n: int,
    encoder: str = "all-mpnet-base-v2",
    seed: int = 0,
    max_length: int = 128,
    progress: bool = False,
) -> list[int]:
    """Indices of the `n` texts of `texts` a cold start picks (for callers holding the pool in
    memory, such as the benchmark)."""
    model, tokenizer, length = _model(None, encoder, max_length)
    return [i for i, _, _ in choose(model, tokenizer, length, texts, n, seed, False, progress)]


def choose(
    model: EncoderClassifier,
    tokenizer: object,
    max_length: int,
    texts: Sequence[str],
    n: int,
    seed: int,
    by_doubt: bool,
    progress: bool,
) -> list[tuple[int, float, str]]:
    """(index, score, reason) of the `n` texts to label: the model's doubt when `by_doubt`
    (a trained model), else coverage."""
    vectors, logits = embed(model, tokenizer, texts, max_length, progress=progress)
    if by_doubt:
        picks = least_sure(vectors, logits, n, seed)
        reason = "the model is unsure (1 - margin between its two likeliest classes)"
    else:
        picks = cover(vectors, n, seed)
        reason = "central text of a cluster holding this share of the pool"
    return [(i, round(score, 4), reason) for i, score in picks]


def _model(
    model_dir: str | Path | None, encoder: str, max_length: int
) -> tuple[EncoderClassifier, object, int]:
    if model_dir is not None:
        from nanonet.models.classifier import NanoNetClassifier

        clf = NanoNetClassifier.from_pretrained(model_dir, device="cpu")
        return clf.model, clf.tokenizer, clf.max_length
    hf, tokenizer = load_hf_encoder(encoder_dir(encoder))
    model = EncoderClassifier(Backbone(hf), num_labels=1, dropout=0.0).eval()
    return model, tokenizer, max_length
