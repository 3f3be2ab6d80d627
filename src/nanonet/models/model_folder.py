"""The saved model folder's on-disk format: its file names and its manifest, ``nanonet.json``.

Every module that reads or writes a model folder takes the names from here. On disk::

  config.json, model.safetensors   the student encoder, a standard HF checkpoint
  head.safetensors                 the linear head (weight, bias) over mean-pooled states
  tokenizer.json, ...              the tokenizer
  README.md                        the generated model card
  config.yaml                      the full run config (`nanonet train` writes it)
  training_summary.json            per-member scores and sizes (`nanonet train`)
  train_log.jsonl                  losses per step (`nanonet train`)
  onnx/                            `nanonet export`: model.onnx, model.int8.onnx, export.json
  nanonet.json                     label names, max length, pooling, training summary and the
                                   sha256 of every file above (but onnx/, which export.json
                                   covers) and of itself, written last

Only safetensors, JSON and YAML (``yaml.safe_load``) are ever read from a folder: a pickle
file in it (``pytorch_model.bin``, ``*.pt``, ...) is refused, never opened, because loading
one can run any code.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nanonet.errors import NanoNetError

# How a model folder can be read: torch, torch without compute on padding, ONNX Runtime (after
# `nanonet export`); `nanonet serve` and `nanonet predict` also take the int8 ONNX file.
BACKENDS = ("torch", "packed", "onnx")
LOAD_BACKENDS = (*BACKENDS, "onnx-int8")

log = logging.getLogger(__name__)

META_FILE = "nanonet.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HEAD_FILE = "head.safetensors"
CARD_FILE = "README.md"
RUN_CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "training_summary.json"
TRAIN_LOG_FILE = "train_log.jsonl"
# Written next to the model by `nanonet train`; hashed when present at save time.
RUN_FILES = (RUN_CONFIG_FILE, SUMMARY_FILE, TRAIN_LOG_FILE)

ONNX_SUBDIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_META_FILE = "export.json"

# 2: nanonet.json records the sha256 of every file. Folders of version 1 still load, unchecked.
FORMAT_VERSION = 2
# Formats that torch, joblib or pickle would unpickle; none of them is ever written here.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")

_REDO = "copy the whole model folder again, or retrain it with `nanonet train`"
_FOLDER_HINT = "pass the folder written by `nanonet train --out`"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def onnx_path(model_dir: str | Path, quantized: bool) -> Path:
    """Where `nanonet export` puts the fp32 or int8 graph of a model folder."""
    return Path(model_dir) / ONNX_SUBDIR / (INT8_FILE if quantized else FP32_FILE)


def write_manifest(folder: Path, meta: dict[str, Any], files: Iterable[str]) -> None:
    """Write ``nanonet.json``: ``meta`` plus the sha256 of each of ``files`` and of itself.

    Call it last: a save cut short then leaves no manifest, and the folder is refused as a
    whole instead of half-loading.
    """
    manifest = {
        **meta,
        "format_version": FORMAT_VERSION,
        "files": {name: file_sha256(folder / name) for name in sorted(set(files))},
    }
    # Hashed as it will read back (JSON turns keys into strings), so the check can recompute it.
    manifest = json.loads(json.dumps(manifest))
    manifest["sha256"] = _self_hash(manifest)
    (folder / META_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def read_model_meta(model_dir: str | Path) -> dict[str, Any]:
    """``nanonet.json`` of a model folder whose files are all as saved, or one NanoNetError
    naming the missing or damaged file and what to do."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise NanoNetError(f"Model folder {folder} does not exist; {_FOLDER_HINT}.")
    meta_file = folder / META_FILE
    if not meta_file.is_file():
        raise NanoNetError(
            f"{folder} is not a NanoNet model folder (no {META_FILE}); {_FOLDER_HINT}."
        )
    _refuse_pickle(folder)
    meta = _parse_manifest(meta_file)
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise NanoNetError(
            f"{meta_file} has format version {version!r}, newer than this NanoNet reads "
            f"({FORMAT_VERSION}); upgrade NanoNet."
        )
    if version < 2:
        log.warning(
            "%s was saved by an older NanoNet that recorded no file hashes, so its files are "
            "not checked; load and save_pretrained it again to add them.",
            folder,
        )
    else:
        _verify(folder, meta)
    _check_fields(meta_file, meta)
    return meta


def _parse_manifest(meta_file: Path) -> dict[str, Any]:
    try:
        meta = json.loads(meta_file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8"
        raise NanoNetError(f"{meta_file} is damaged ({reason}); {_REDO}.") from None
    if not isinstance(meta, dict):
        raise NanoNetError(f"{meta_file} is damaged (not a JSON object); {_REDO}.")
    return meta


def _verify(folder: Path, meta: dict[str, Any]) -> None:
    meta_file = folder / META_FILE
    files = meta.get("files")
    if meta.get("sha256") != _self_hash(meta) or not isinstance(files, dict):
        raise NanoNetError(
            f"{meta_file} is damaged or was edited after saving (its sha256 does not match); "
            f"{_REDO}."
        )
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            raise NanoNetError(f"{folder} is missing {name}, which {META_FILE} lists; {_REDO}.")
        if file_sha256(path) != digest:
            raise NanoNetError(
                f"{path} is damaged or was changed after saving (its sha256 does not match "
                f"{META_FILE}); {_REDO}."
            )


def _check_fields(meta_file: Path, meta: dict[str, Any]) -> None:
    # What loading needs; a hand-made or version-1 manifest may still lack it.
    labels = meta.get("label_names")
    good_labels = isinstance(labels, list) and all(isinstance(n, str) for n in labels)
    max_length = meta.get("max_length")
    if not good_labels or not isinstance(max_length, int) or isinstance(max_length, bool):
        raise NanoNetError(
            f"{meta_file} lacks valid 'label_names' (a list of strings) and 'max_length' (an "
            f"integer); {_REDO}."
        )
    if not isinstance(meta.setdefault("summary", {}), dict):
        raise NanoNetError(f"{meta_file} has a 'summary' that is not an object; {_REDO}.")


def _self_hash(meta: dict[str, Any]) -> str:
    # Canonical JSON (sorted keys) of everything but this hash, so that the manifest covers
    # itself: a flipped byte in a label name is caught like one in the weights.
    body = {k: v for k, v in meta.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _refuse_pickle(folder: Path) -> None:
    # The folder and its onnx/, not deeper: a wrong --model (a home folder) must not be walked.
    onnx = folder / ONNX_SUBDIR
    paths = [*folder.iterdir(), *(onnx.iterdir() if onnx.is_dir() else [])]
    for path in sorted(paths):
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise NanoNetError(
                f"{folder} holds {path.relative_to(folder)}, a pickle file, which can run code "
                f"when loaded; NanoNet never loads pickle: delete it, or {_FOLDER_HINT}."
            )
