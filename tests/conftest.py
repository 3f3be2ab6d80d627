"""Shared fixtures: tiny randomly initialised encoders (BERT and MPNet) with real tokenizers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

WORDS = [
    "good",
    "great",
    "fine",
    "superb",
    "lovely",
    "bad",
    "awful",
    "poor",
    "boring",
    "dull",
    "movie",
    "film",
    "plot",
    "actor",
    "story",
    "the",
    "a",
    "an",
    "is",
    "was",
    "it",
    "this",
    "that",
    "and",
    "or",
    "but",
    "very",
    "not",
    "quite",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` run only where PyTorch sees a GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)")
    for item in items:
        if item.get_closest_marker("cuda"):  # not `keywords`: a parameter id may be "cuda"
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _cpu_unless_cuda(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` means the CPU in every test not marked `cuda`, also on a GPU machine: those tests
    compare exact CPU numbers, and the GPU has its own tests."""
    if not request.node.get_closest_marker("cuda"):
        from nanonet.models import device

        monkeypatch.setattr(device, "cuda_available", lambda: False)


def _vocab(specials: list[str]) -> dict[str, int]:
    return {w: i for i, w in enumerate(specials + list(WORDS))}


def _write_tiny(folder: Path, family: str, layers: int) -> Path:
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizerFast,
        MPNetConfig,
        MPNetModel,
        MPNetTokenizerFast,
    )

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    common = dict(
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
    )
    if family == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = BertTokenizerFast(vocab=_vocab(specials), do_lower_case=True)
        model = BertModel(BertConfig(vocab_size=len(specials) + len(WORDS), **common))
    else:
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = MPNetTokenizerFast(
            vocab=_vocab(specials),
            do_lower_case=True,
            bos_token="<s>",
            cls_token="<s>",
            eos_token="</s>",
            sep_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
            mask_token="<mask>",
        )
        model = MPNetModel(MPNetConfig(vocab_size=len(specials) + len(WORDS), **common))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_tiny(tmp_path_factory.mktemp("tiny") / "mpnet", "mpnet", 4)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_tiny(tmp_path_factory.mktemp("tiny") / "bert", "bert", 3)


def synthetic_rows(n_per_class: int, seed: int = 0) -> list[tuple[str, str]]:
    """Short 'reviews' whose label is readable from the words: learnable by a tiny model."""
    import random

    rng = random.Random(seed)
    pos, neg, filler = WORDS[:5], WORDS[5:10], WORDS[10:]
    rows = []
    for label, words in (("pos", pos), ("neg", neg)):
        for _ in range(n_per_class):
            body = rng.choices(words, k=3) + rng.choices(filler, k=rng.randint(2, 8))
            rng.shuffle(body)
            rows.append((" ".join(body), label))
    rng.shuffle(rows)
    return rows


def pool_csv(path: Path, n_per_class: int, seed: int) -> Path:
    """A one-column (text) CSV of synthetic texts, without labels."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([t] for t, _ in synthetic_rows(n_per_class, seed=seed))
    return path


@pytest.fixture
def synthetic_csv(tmp_path: Path) -> tuple[Path, Path]:
    """(labelled train CSV with 10 per class, unlabelled CSV) of synthetic text."""
    import csv

    rows = synthetic_rows(10, seed=1)
    train = tmp_path / "train.csv"
    with train.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    pool = tmp_path / "pool.csv"
    with pool.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        seen = {t for t, _ in rows}
        w.writerows([t] for t, _ in synthetic_rows(40, seed=2) if t not in seen)
    return train, pool
