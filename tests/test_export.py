"""ONNX export and the ONNX Runtime backend: tiny random models, plus one run on the real L3."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import synthetic_rows
from nanonet.data.batching import pad_batch
from nanonet.errors import NanoNetError
from nanonet.infer.export import export_model, export_onnx
from nanonet.models.classifier import NanoNetClassifier, onnx_classifier
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder
from nanonet.models.model_folder import onnx_path
from nanonet.models.onnx_runtime import OnnxEncoderClassifier, load_onnx_model

# Several lengths in one call: exercises dynamic sequence axes and padding in one batch.
TEXTS = [
    "good",
    "the plot was very dull and boring",
    "a lovely film",
    " ".join(["this movie is not quite great but the actor was superb"] * 8),
    "bad movie",
]


def _save_tiny_model(encoder_folder: Path, out: Path, seed: int = 0) -> Path:
    hf, tok = load_hf_encoder(encoder_folder)
    model = EncoderClassifier(Backbone(hf), num_labels=2)
    torch.manual_seed(seed)
    # A large random head: logit margins well above int8 noise, so labels are comparable.
    torch.nn.init.normal_(model.head.weight, std=3.0)
    NanoNetClassifier(model, tok, ["neg", "pos"], max_length=64).save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=["tiny_mpnet", "tiny_bert"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export") / request.param
    _save_tiny_model(request.getfixturevalue(request.param), folder)
    export_onnx(folder, quantize="int8")
    return folder


def test_export_writes_the_files_and_records_parity(exported: Path) -> None:
    onnx_dir = exported / "onnx"
    assert sorted(p.name for p in onnx_dir.iterdir()) == [
        "export.json",
        "model.int8.onnx",
        "model.onnx",
    ]
    info = json.loads((onnx_dir / "export.json").read_text())
    assert info["opset"] == 17
    assert info["quantization"] == "int8"
    assert info["parity_max_abs_diff"] < 1e-4
    assert info["torch"] == torch.__version__


def test_onnx_logits_match_torch_at_every_length(exported: Path) -> None:
    clf = NanoNetClassifier.from_pretrained(exported)
    session = OnnxEncoderClassifier(onnx_path(exported, quantized=False))
    # One text per batch and all texts in one padded batch: both shapes must match.
    batches = [clf.tokenize([t]) for t in TEXTS] + [clf.tokenize(TEXTS)]
    for ids in batches:
        input_ids, mask = pad_batch(ids, clf.tokenizer.pad_token_id)
        with torch.no_grad():
            expected = clf.model(input_ids, mask)
        got = session(input_ids, mask)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
        assert torch.equal(got.argmax(-1), expected.argmax(-1))


def test_onnx_classifier_predicts_like_the_torch_one(exported: Path) -> None:
    texts = [t for t, _ in synthetic_rows(20, seed=3)] + TEXTS
    torch_clf = NanoNetClassifier.from_pretrained(exported)
    onnx_clf = onnx_classifier(exported)
    assert isinstance(onnx_clf.model, OnnxEncoderClassifier)
    assert onnx_clf.label_names == torch_clf.label_names
    assert onnx_clf.predict(texts) == torch_clf.predict(texts)
    np.testing.assert_allclose(
        onnx_clf.predict_proba(texts), torch_clf.predict_proba(texts), atol=1e-4
    )


def test_int8_agrees_with_fp32_on_most_predictions(exported: Path) -> None:
    texts = [t for t, _ in synthetic_rows(50, seed=4)]
    fp32 = onnx_classifier(exported).predict_logits(texts)
    int8 = onnx_classifier(exported, quantized=True).predict_logits(texts)
    agreement = (fp32.argmax(-1) == int8.argmax(-1)).mean()
    assert agreement >= 0.9, agreement


def test_fp32_reexport_drops_a_stale_int8_file(tiny_bert: Path, tmp_path: Path) -> None:
    folder = _save_tiny_model(tiny_bert, tmp_path / "m")
    first = export_onnx(folder, quantize="int8")
    assert onnx_path(folder, quantized=True) in first
    second = export_onnx(folder)
    assert not onnx_path(folder, quantized=True).exists()
    assert second == [folder / "onnx" / "model.onnx", folder / "onnx" / "export.json"]
    assert not list((folder / "onnx").glob(".*tmp*"))  # no temporary files left behind


def test_a_retrained_model_refuses_its_old_export(tiny_bert: Path, tmp_path: Path) -> None:
    folder = _save_tiny_model(tiny_bert, tmp_path / "m")
    export_onnx(folder)
    _save_tiny_model(tiny_bert, folder, seed=1)  # new head, same folder
    with pytest.raises(NanoNetError, match="older than the model"):
        onnx_classifier(folder)


# -- user errors -------------------------------------------------------------------------------


def test_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match="does not exist"):
        export_onnx(tmp_path / "nope")


def test_a_folder_that_is_not_a_model_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match="not a NanoNet model folder"):
        export_onnx(tmp_path)
    with pytest.raises(NanoNetError, match="not a NanoNet model folder"):
        onnx_classifier(tmp_path)


def test_unknown_format_or_quantization_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match="Unknown export format 'tflite'"):
        export_model(tmp_path, "tflite")
    with pytest.raises(NanoNetError, match="Unknown quantization 'int4'"):
        export_onnx(tmp_path, quantize="int4")


def test_a_missing_export_says_how_to_create_it(tiny_bert: Path, tmp_path: Path) -> None:
    folder = _save_tiny_model(tiny_bert, tmp_path / "m")
    with pytest.raises(NanoNetError, match=r"nanonet export --model .* --format onnx`"):
        load_onnx_model(folder, quantized=False)
    with pytest.raises(NanoNetError, match="--format onnx --quantize int8`"):
        onnx_classifier(folder, quantized=True)


def test_an_unreadable_onnx_file_is_a_user_error(tiny_bert: Path, tmp_path: Path) -> None:
    folder = _save_tiny_model(tiny_bert, tmp_path / "m")
    (folder / "onnx").mkdir()
    onnx_path(folder, quantized=False).write_bytes(b"not an onnx graph")
    with pytest.raises(NanoNetError, match="cannot load"):
        load_onnx_model(folder)


# -- the real packaged student ---------------------------------------------------------------


@pytest.mark.slow
def test_real_minilm_l3_export_keeps_its_predictions(tmp_path: Path) -> None:
    from nanonet.data.builtin import builtin_task
    from nanonet.models.assets import encoder_dir

    task = builtin_task("rotten_tomatoes", 10, 0)
    hf, tok = load_hf_encoder(encoder_dir("minilm-l3"))
    clf = NanoNetClassifier(EncoderClassifier(Backbone(hf), 2), tok, task.label_names, 128)
    ids, mask = pad_batch(clf.tokenize(task.labelled_texts), tok.pad_token_id)
    with torch.no_grad():
        pooled = clf.model.embed_pooled(ids, mask)
    clf.model.init_head_from_centroids(pooled, torch.tensor(task.labelled_labels))
    folder = clf.save_pretrained(tmp_path / "l3")
    export_onnx(folder, quantize="int8")

    texts, labels = task.test_texts[:500], np.asarray(task.test_labels[:500])
    # Same predict_logits code path for all three, so only the model differs.
    torch_pred = clf.predict_logits(texts).argmax(-1)
    fp32_pred = onnx_classifier(folder).predict_logits(texts).argmax(-1)
    int8_clf = onnx_classifier(folder, quantized=True)
    start = time.perf_counter()
    int8_pred = int8_clf.predict_logits(texts).argmax(-1)
    int8_s = time.perf_counter() - start

    agreement = (fp32_pred == torch_pred).mean()
    torch_acc, int8_acc = (torch_pred == labels).mean(), (int8_pred == labels).mean()
    print(
        f"L3 on 500 rotten_tomatoes test texts: fp32 ONNX/torch agreement {agreement:.3f}, "
        f"accuracy torch {torch_acc:.3f}, int8 {int8_acc:.3f} "
        f"(int8 agreement {(int8_pred == torch_pred).mean():.3f}, {int8_s:.2f}s)"
    )
    assert agreement >= 0.995
    assert int8_acc >= torch_acc - 0.01
