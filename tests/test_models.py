"""Encoders, students, parameter efficiency and the saved-model format, on tiny random models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nanonet.data.batching import pad_batch
from nanonet.errors import NanoNetError
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder, mean_pool
from nanonet.models.peft import (
    apply_lora,
    count_parameters,
    inject_missing_biases,
    merge_lora,
    set_trainable,
)
from nanonet.models.students import parse_student_spec, select_layers, subset_layers

TEXTS = ["good movie", "the plot was very dull and boring", "a lovely film", "bad"]


def _batch(tok, texts=TEXTS):
    return pad_batch(tok(texts)["input_ids"], tok.pad_token_id)


@pytest.fixture(params=["tiny_mpnet", "tiny_bert"])
def encoder(request):
    hf, tok = load_hf_encoder(request.getfixturevalue(request.param))
    return hf.eval(), tok


def test_backbone_matches_hugging_face_forward_with_padding(encoder) -> None:
    hf, tok = encoder
    ids, mask = _batch(tok)
    with torch.no_grad():
        ours = Backbone(hf)(ids, mask)
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)


def test_bert_runs_fused_attention_with_the_same_result_as_eager(tiny_bert) -> None:
    hf, tok = load_hf_encoder(tiny_bert)
    assert hf.config._attn_implementation == "sdpa"
    eager, _ = load_hf_encoder(tiny_bert, attention="eager")
    ids, mask = _batch(tok)
    with torch.no_grad():
        fused, plain = Backbone(hf.eval())(ids, mask), Backbone(eager.eval())(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(fused[real], plain[real], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_a_text_result(encoder) -> None:
    hf, tok = encoder
    backbone = Backbone(hf)
    with torch.no_grad():
        alone = mean_pool(backbone(*_batch(tok, [TEXTS[3]])), _batch(tok, [TEXTS[3]])[1])
        ids, mask = _batch(tok)
        in_batch = mean_pool(backbone(ids, mask), mask)[3]
    torch.testing.assert_close(alone[0], in_batch, atol=1e-5, rtol=1e-5)


def test_student_from_layers_equals_those_teacher_layers(encoder) -> None:
    hf, tok = encoder
    teacher = Backbone(hf)
    layers = [0, 2]
    student = Backbone(subset_layers(hf, layers)).eval()
    assert student.num_layers == 2
    ids, mask = _batch(tok)
    with torch.no_grad():
        h = teacher.embed(ids)
        for i in layers:
            h = teacher.run_layers(h, mask, start=i, end=i + 1)
        torch.testing.assert_close(student(ids, mask), h, atol=1e-5, rtol=1e-5)
    # A copy, not a view: training the student must not move the teacher.
    student_param = next(student.layers[0].parameters())
    assert student_param.data_ptr() != next(teacher.layers[0].parameters()).data_ptr()


def test_cached_bottom_then_top_equals_full_forward(encoder) -> None:
    hf, tok = encoder
    model = EncoderClassifier(Backbone(hf), num_labels=3, dropout=0.0).eval()
    ids, mask = _batch(tok)
    with torch.no_grad():
        bottom = model.backbone.run_layers(model.backbone.embed(ids), mask, 0, 2)
        torch.testing.assert_close(
            model.classify(model.pooled_from(bottom, mask, 2)),
            model(ids, mask),
            atol=1e-5,
            rtol=1e-5,
        )


def test_checkpointed_layers_give_the_same_gradients(encoder) -> None:
    hf, tok = encoder
    model = EncoderClassifier(Backbone(hf), num_labels=3, dropout=0.0).eval()
    ids, mask = _batch(tok)
    hidden = model.backbone.embed(ids).detach()
    grads = []
    for checkpoint in (False, True):
        model.zero_grad()
        model.pooled_from(hidden, mask, 0, checkpoint=checkpoint).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("0,2", [0, 2]),
        ("bottom2", [0, 1]),
        ("top2", [2, 3]),
        ("stride2", [0, 2]),
        (None, [0, 1, 2, 3]),
    ],
)
def test_layer_selectors(selector, expected) -> None:
    assert select_layers(selector, 4) == expected


@pytest.mark.parametrize("selector", ["4", "0,0", "top", "x", "-1", ""])
def test_bad_layer_selectors_are_user_errors(selector) -> None:
    with pytest.raises(NanoNetError):
        select_layers(selector or ",", 4)


def test_student_spec_parsing_keeps_path_case() -> None:
    assert str(parse_student_spec("Teacher:0,1")) == "teacher:0,1"
    spec = parse_student_spec("/Models/MyEncoder")
    assert spec.source == "/Models/MyEncoder" and spec.layers is None


def test_injected_biases_are_zero_and_leave_the_function_unchanged() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8, bias=False), nn.LayerNorm(8, bias=False), nn.Linear(8, 2))
    x = torch.randn(5, 8)
    before = net(x)
    assert inject_missing_biases(net) == 2
    assert net[0].bias is not None and torch.all(net[0].bias == 0)
    assert net[1].bias is not None
    torch.testing.assert_close(net(x), before)
    assert inject_missing_biases(net) == 0


def _one_step(model: EncoderClassifier, tok) -> dict[str, bool]:
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ids, mask = _batch(tok)
    nn.functional.cross_entropy(model(ids, mask), torch.tensor([0, 1, 0, 1])).backward()
    opt.step()
    return {k: not torch.equal(v, before[k]) for k, v in model.named_parameters()}


def test_bitfit_step_changes_only_biases_and_head(encoder) -> None:
    hf, tok = encoder
    model = EncoderClassifier(Backbone(hf), num_labels=2)
    set_trainable(model, "bitfit")
    changed = _one_step(model, tok)
    assert any(changed.values())
    for name, did in changed.items():
        if did:
            assert name.startswith("head.") or name.endswith("bias"), name
    trainable, total = count_parameters(model)
    assert 0 < trainable < total * 0.2


def test_frozen_bottom_layers_do_not_change(encoder) -> None:
    hf, tok = encoder
    model = EncoderClassifier(Backbone(hf), num_labels=2)
    set_trainable(model, "bitfit", first_layer=2)
    changed = _one_step(model, tok)
    for name, did in changed.items():
        if "embeddings" in name or "layer.0." in name or "layer.1." in name:
            assert not did, name
    assert any(did for name, did in changed.items() if "layer.2." in name)


def test_lora_is_identity_at_start_and_merges_exactly(encoder) -> None:
    hf, tok = encoder
    model = EncoderClassifier(Backbone(hf), num_labels=2, dropout=0.0).eval()
    ids, mask = _batch(tok)
    with torch.no_grad():
        before = model(ids, mask)
    assert apply_lora(model.backbone, rank=2) == 2 * model.backbone.num_layers
    set_trainable(model, "lora")
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), before)
    changed = _one_step(model, tok)
    moved = [n for n, did in changed.items() if did]
    assert any(".lora_" in n for n in moved)
    assert all(n.startswith("head.") or ".lora_" in n or n.endswith("bias") for n in moved)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # make the adapters matter
        adapted = model(ids, mask)
        merge_lora(model)
        torch.testing.assert_close(model(ids, mask), adapted, atol=1e-5, rtol=1e-5)


def test_full_mode_trains_everything(encoder) -> None:
    hf, _ = encoder
    model = EncoderClassifier(Backbone(hf), num_labels=2)
    set_trainable(model, "full")
    trainable, total = count_parameters(model)
    assert trainable == total


def test_unknown_peft_mode_is_a_user_error(encoder) -> None:
    with pytest.raises(NanoNetError):
        set_trainable(EncoderClassifier(Backbone(encoder[0]), 2), "prefix")


def test_centroid_head_separates_labelled_examples() -> None:
    pooled = torch.tensor([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.1, 0.8]])
    labels = torch.tensor([0, 0, 1, 1])
    # Any object with a `head` will do: the method only touches the head.
    holder = type("Holder", (), {"head": nn.Linear(2, 2)})()
    EncoderClassifier.init_head_from_centroids(holder, pooled, labels)
    assert holder.head(pooled).argmax(-1).tolist() == [0, 0, 1, 1]


def test_save_and_load_round_trip_gives_identical_predictions(tiny_bert, tmp_path: Path) -> None:
    hf, tok = load_hf_encoder(tiny_bert)
    model = EncoderClassifier(Backbone(hf), num_labels=2)
    apply_lora(model.backbone, rank=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    clf = NanoNetClassifier(model, tok, ["neg", "pos"], max_length=16, summary={"seed": 0})
    before = clf.predict_proba(TEXTS)
    clf.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "head.safetensors", "nanonet.json"} <= files
    assert "README.md" in files and not any(f.endswith((".bin", ".pkl")) for f in files)
    loaded = NanoNetClassifier.from_pretrained(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), before, atol=1e-6)
    assert loaded.predict(TEXTS) == clf.predict(TEXTS)
    assert loaded.label_names == ["neg", "pos"] and loaded.summary == {"seed": 0}


def test_predict_validates_its_input(tiny_bert) -> None:
    hf, tok = load_hf_encoder(tiny_bert)
    clf = NanoNetClassifier(EncoderClassifier(Backbone(hf), 2), tok, ["a", "b"])
    with pytest.raises(NanoNetError, match="list of texts"):
        clf.predict("one string")
    with pytest.raises(NanoNetError, match="not a string"):
        clf.predict(["ok", 3])


def test_loading_a_folder_that_is_not_a_model_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match="not a NanoNet model folder"):
        NanoNetClassifier.from_pretrained(tmp_path)


def test_packed_runner_matches_the_plain_model(encoder) -> None:
    from nanonet.models.packed import PackedEncoderClassifier

    hf, tok = encoder
    model = EncoderClassifier(Backbone(hf), num_labels=3).eval()
    ids, mask = _batch(tok)
    with torch.no_grad():
        plain = model(ids, mask)
    packed = PackedEncoderClassifier(model)(ids, mask)
    torch.testing.assert_close(packed, plain, atol=1e-5, rtol=1e-5)
