"""The model folder's integrity: nanonet.json hashes every file, loading checks them, and
nothing but safetensors, JSON and YAML (safe_load) is ever read from a folder."""

from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from nanonet.cli import main
from nanonet.errors import NanoNetError
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder
from nanonet.models.model_folder import META_FILE, RUN_FILES, read_model_meta
from nanonet.train.config import RunConfig

TEXTS = ["good film", "bad plot"]
# Every file of a folder written by `nanonet train`, tiny tokenizer included.
FILES = [
    "config.json",
    "model.safetensors",
    "head.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
    *RUN_FILES,
]


@pytest.fixture(scope="module")
def saved(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder as `nanonet train` leaves it (run files written before the model)."""
    folder = tmp_path_factory.mktemp("folder") / "model"
    folder.mkdir()
    RunConfig().to_yaml(folder / "config.yaml")
    (folder / "training_summary.json").write_text('{"summary": {}}', encoding="utf-8")
    (folder / "train_log.jsonl").write_text('{"step": 0}\n', encoding="utf-8")
    hf, tok = load_hf_encoder(tiny_bert)
    torch.manual_seed(0)
    clf = NanoNetClassifier(EncoderClassifier(Backbone(hf), 2), tok, ["neg", "pos"], 16)
    return clf.save_pretrained(folder)


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "model"))


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """A file the planted payloads would create if anything ran them."""
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "a planted payload was executed"


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _pickle_payload(marker: Path) -> bytes:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return open, (str(marker), "w")  # unpickling it creates `marker`

    return pickle.dumps(Payload())


def _yaml_payload(marker: Path) -> str:
    return f"!!python/object/apply:builtins.open [{str(marker)!r}, 'w']\n"


# ---------------------------------------------------------------------------- manifest -------
def test_manifest_hashes_every_file_and_the_folder_loads(saved: Path) -> None:
    meta = json.loads((saved / META_FILE).read_text(encoding="utf-8"))
    on_disk = {p.name for p in saved.iterdir()} - {META_FILE}
    assert sorted(meta["files"]) == sorted(on_disk) == sorted(FILES)
    assert meta["format_version"] == 2 and len(meta["sha256"]) == 64
    assert NanoNetClassifier.from_pretrained(saved).label_names == ["neg", "pos"]


@pytest.mark.parametrize("name", [*FILES, META_FILE])
def test_a_damaged_file_is_named(copy: Path, name: str) -> None:
    _flip_a_byte(copy / name)
    with pytest.raises(NanoNetError, match="copy the whole model folder again") as err:
        NanoNetClassifier.from_pretrained(copy)
    assert f"{copy / name} is damaged" in str(err.value)


@pytest.mark.parametrize("name", FILES)
def test_a_missing_file_is_named(copy: Path, name: str) -> None:
    (copy / name).unlink()
    with pytest.raises(
        NanoNetError, match=re.escape(f"is missing {name}, which nanonet.json lists")
    ):
        read_model_meta(copy)


def test_an_edited_manifest_is_refused(copy: Path) -> None:
    meta = json.loads((copy / META_FILE).read_text(encoding="utf-8"))
    meta["label_names"] = ["pos", "neg"]  # valid JSON, wrong model: the self-hash catches it
    (copy / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(NanoNetError, match="was edited after saving"):
        read_model_meta(copy)


def test_the_cli_reports_a_damaged_folder_in_one_line(
    copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _flip_a_byte(copy / "head.safetensors")
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    argv = ["-q", "predict", "--model", str(copy), "--input", str(source)]
    code = main([*argv, "--output", str(tmp_path / "preds.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("nanonet: error: ") and "head.safetensors is damaged" in err[0]


def test_a_folder_without_hashes_still_loads_with_a_warning(
    saved: Path, copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    meta = json.loads((copy / META_FILE).read_text(encoding="utf-8"))
    old = {k: meta[k] for k in ("label_names", "max_length", "pooling", "summary")}
    (copy / META_FILE).write_text(json.dumps({"format_version": 1, **old}), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        clf = NanoNetClassifier.from_pretrained(copy)
    assert "recorded no file hashes" in caplog.text
    expected = NanoNetClassifier.from_pretrained(saved).predict_proba(TEXTS)
    np.testing.assert_allclose(clf.predict_proba(TEXTS), expected)
    clf.save_pretrained(copy)  # saving again adds the hashes
    assert "files" in read_model_meta(copy)


def test_a_newer_format_asks_for_an_upgrade(copy: Path) -> None:
    (copy / META_FILE).write_text('{"format_version": 99}', encoding="utf-8")
    with pytest.raises(NanoNetError, match="upgrade NanoNet"):
        read_model_meta(copy)


# ---------------------------------------------------------------------------- no pickle ------
def test_the_payloads_are_live(marker: Path, tmp_path: Path) -> None:
    # Without this, the refusals below could pass with payloads that do nothing.
    import yaml

    live = tmp_path / "live"
    pickle.loads(_pickle_payload(live)).close()
    assert live.exists()
    live.unlink()
    yaml.unsafe_load(_yaml_payload(live)).close()
    assert live.exists()


@pytest.mark.parametrize("name", ["pytorch_model.bin", "student.pt", "onnx/weights.pkl"])
def test_a_planted_pickle_file_is_refused_unread(copy: Path, marker: Path, name: str) -> None:
    (copy / name).parent.mkdir(exist_ok=True)
    (copy / name).write_bytes(_pickle_payload(marker))
    with pytest.raises(NanoNetError, match=re.escape(f"holds {name}, a pickle file")):
        NanoNetClassifier.from_pretrained(copy)


def test_weights_are_never_taken_from_a_pickle_in_an_unhashed_folder(
    copy: Path, marker: Path
) -> None:
    # An old folder (no hashes) whose safetensors weights were swapped for pytorch_model.bin.
    meta = json.loads((copy / META_FILE).read_text(encoding="utf-8"))
    (copy / META_FILE).write_text(json.dumps({**meta, "format_version": 1}), encoding="utf-8")
    (copy / "model.safetensors").unlink()
    (copy / "pytorch_model.bin").write_bytes(_pickle_payload(marker))
    with pytest.raises(NanoNetError, match=r"pytorch_model\.bin, a pickle file"):
        NanoNetClassifier.from_pretrained(copy)


def test_a_yaml_payload_is_refused_unread(
    copy: Path, marker: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / "config.yaml").write_text(_yaml_payload(marker), encoding="utf-8")
    with pytest.raises(NanoNetError, match=r"config\.yaml is damaged"):
        NanoNetClassifier.from_pretrained(copy)
    # `nanonet train --config` reads it with yaml.safe_load, which refuses the tag.
    code = main(
        ["-q", "train", "--config", str(copy / "config.yaml"), "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is not valid YAML" in err and "python/object" in err
