"""Devices: --device on every command, GPU defaults, SDPA for MPNet; CUDA tests run on a GPU only.

Everything not marked `cuda` runs on the CPU, also on a GPU machine (conftest.py makes `auto`
mean the CPU there), so these tests check the device logic with `cpu` and a CPU-only torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import synthetic_rows
from nanonet.cli import _parser, _train_config, main
from nanonet.data.batching import pad_batch
from nanonet.data.task import Task
from nanonet.errors import NanoNetError
from nanonet.models import device as device_module
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.device import autocast, device_of, resolve_device
from nanonet.models.encoder import (
    Backbone,
    EncoderClassifier,
    MPNetSdpaSelfAttention,
    load_hf_encoder,
    use_sdpa_for_mpnet,
)
from nanonet.train import cohort, teacher_depth
from nanonet.train.config import RunConfig
from nanonet.train.device_defaults import GPU_DEFAULTS, apply_device_defaults
from nanonet.train.trainer import NanoNetTrainer

CUDA = torch.device("cuda", 0)
ROOT = Path(__file__).resolve().parents[1]
LABELS = ["neg", "pos"]


def _save_model(encoder: Path, folder: Path) -> Path:
    hf, tok = load_hf_encoder(encoder)
    torch.manual_seed(0)
    model = EncoderClassifier(Backbone(hf), num_labels=2)
    NanoNetClassifier(model, tok, LABELS, max_length=16).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def saved_bert(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_model(tiny_bert, tmp_path_factory.mktemp("device") / "bert-model")


@pytest.fixture(scope="module")
def saved_mpnet(tiny_mpnet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_model(tiny_mpnet, tmp_path_factory.mktemp("device") / "mpnet-model")


def _task() -> Task:
    rows = synthetic_rows(10, seed=1)
    pool = sorted({t for t, _ in synthetic_rows(40, seed=2)} - {t for t, _ in rows})
    test = synthetic_rows(10, seed=3)
    return Task(
        name="synthetic",
        label_names=LABELS,
        labelled_texts=[t for t, _ in rows],
        labelled_labels=[LABELS.index(y) for _, y in rows],
        unlabelled_texts=pool,
        test_texts=[t for t, _ in test],
        test_labels=[LABELS.index(y) for _, y in test],
        max_length=32,
    )


def _config(teacher: Path, students: list[str], device: str = "auto") -> RunConfig:
    cfg = RunConfig()
    cfg.model.teacher = str(teacher)
    cfg.model.students = students
    cfg.model.teacher_trainable_layers = 2
    cfg.model.min_speedup = None
    cfg.train.steps = 4
    cfg.train.teacher_warmup_steps = 2
    cfg.train.teacher_contrastive_steps = 2
    cfg.train.selection_holdout = 10
    cfg.train.device = device
    return cfg


# ----------------------------------------------------------------------- resolving ----------


@pytest.mark.parametrize("spec", ["auto", "cpu", "CPU", " cpu ", None, torch.device("cpu")])
def test_auto_and_cpu_resolve_to_the_cpu_without_a_gpu(spec: object) -> None:
    assert resolve_device(spec) == torch.device("cpu")  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "mps", "cuda:-1", "tpu:0"])
def test_an_unknown_device_is_one_sentence_naming_the_choices(spec: str) -> None:
    with pytest.raises(NanoNetError, match=r"--device must be auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_a_gpu_is_an_error_not_a_fallback(spec: str) -> None:
    with pytest.raises(NanoNetError, match="sees no CUDA GPU; use cpu or auto") as err:
        resolve_device(spec, "train.device")
    assert str(err.value).startswith(f"train.device is '{spec}'")
    assert str(err.value).count(". ") == 0  # one sentence


def test_a_gpu_index_beyond_the_visible_ones_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(NanoNetError, match=r"only 1 CUDA GPU\(s\) are visible \(cuda:0\)"):
        resolve_device("cuda:1")


def test_the_device_is_checked_in_validate_before_anything_loads() -> None:
    cfg = RunConfig()
    cfg.train.device = "cuda"
    with pytest.raises(NanoNetError, match=r"train\.device is 'cuda'"):
        cfg.validate()
    cfg.train.device = "gpu"
    with pytest.raises(NanoNetError, match=r"train\.device must be"):
        cfg.validate()


def test_cpu_helpers_change_nothing() -> None:
    cpu = torch.device("cpu")
    ids, mask = pad_batch([[1, 2, 3], [4]], 0)
    ids2, mask2 = pad_batch([[1, 2, 3], [4]], 0, cpu)
    assert torch.equal(ids, ids2) and torch.equal(mask, mask2)
    with autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert device_of(torch.nn.Linear(2, 2)) == cpu and device_of(object()) == cpu


# ----------------------------------------------------------------------- GPU defaults -------


def test_gpu_defaults_name_real_keys_and_differ_from_the_cpu_ones() -> None:
    cpu = RunConfig()
    for key, value in GPU_DEFAULTS.items():
        section, name = key.split(".")
        assert getattr(getattr(cpu, section), name) != value


def test_device_defaults_change_nothing_on_the_cpu() -> None:
    cfg = RunConfig()
    assert apply_device_defaults(cfg, torch.device("cpu")) == {}
    assert cfg == RunConfig()


def test_device_defaults_fill_only_what_the_user_did_not_set() -> None:
    cfg = RunConfig()
    changed = apply_device_defaults(cfg, CUDA)
    assert changed == {k: (getattr(RunConfig().train, k[6:]), v) for k, v in GPU_DEFAULTS.items()}
    assert cfg.train.steps == GPU_DEFAULTS["train.steps"]
    assert apply_device_defaults(cfg, CUDA) == {}  # idempotent

    overridden = RunConfig()
    overridden.override("train.steps=200")  # the CPU default, but chosen
    apply_device_defaults(overridden, CUDA)
    assert overridden.train.steps == 200
    assert overridden.train.batch_reference_length is None

    python_set = RunConfig()
    python_set.train.steps = 300
    apply_device_defaults(python_set, CUDA)
    assert python_set.train.steps == 300

    from_file = RunConfig.from_dict({"train": {"steps": 200, "batch_reference_length": 48}})
    assert apply_device_defaults(from_file, CUDA) == {}  # a CPU run's config.yaml repeats


def test_cli_train_writes_the_resolved_gpu_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(device_module, "cuda_available", lambda: True)  # auto -> cuda:0
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    args = _parser().parse_args(["train", "--dataset", "rotten_tomatoes", "--out", "x"])
    cfg = _train_config(args)
    cfg.to_yaml(tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]
    assert saved["steps"] == 400 and saved["batch_reference_length"] is None
    assert saved["device"] == "auto"  # the resolved values, not the machine, are stated

    flag = _parser().parse_args(["train", "--dataset", "x", "--out", "x", "--steps", "200"])
    assert _train_config(flag).train.steps == 200  # a flag is a choice


# ----------------------------------------------------------------------- commands -----------


def _stderr_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


def test_every_command_refuses_cuda_without_a_gpu(
    saved_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts, out = tmp_path / "in.txt", str(tmp_path / "o.csv")
    texts.write_text("good movie\n")
    model, text_file = str(saved_bert), str(texts)
    commands = [
        ["train", "--dataset", "rotten_tomatoes", "--out", str(tmp_path / "m")],
        ["predict", "--model", model, "--input", text_file, "--output", out],
        ["eval", "--model", model, "--input", text_file],
        ["serve", "--model", model, "--port", "0"],
        ["bench", "--config", str(ROOT / "benchmarks/configs/smoke.yaml")],
    ]
    for argv in commands:
        assert main(["-q", *argv, "--device", "cuda"]) == 2, argv
        assert "sees no CUDA GPU" in _stderr_error(capsys), argv
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "m").exists()


def test_predict_and_eval_run_on_the_cpu_device(
    saved_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "in.csv"
    texts.write_text("text,label\ngood movie,pos\ndull plot,neg\n")
    out = tmp_path / "o.csv"
    argv = ["predict", "--model", str(saved_bert), "--input", str(texts), "--output", str(out)]
    assert main(["-q", *argv, "--device", "cpu"]) == 0
    assert len(out.read_text().splitlines()) == 3
    assert main(["-q", "eval", "--model", str(saved_bert), "--input", str(texts)]) == 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["torch", "packed"])
def test_from_pretrained_places_the_model_on_the_device(saved_bert: Path, backend: str) -> None:
    clf = NanoNetClassifier.from_pretrained(saved_bert, backend=backend, device="cpu")
    assert clf.device == torch.device("cpu")
    with pytest.raises(NanoNetError, match="device is 'cuda'"):
        NanoNetClassifier.from_pretrained(saved_bert, backend=backend, device="cuda")


def test_onnx_on_cuda_without_onnxruntime_gpu_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import onnxruntime as ort

    from nanonet.models.onnx_runtime import CUDA_PROVIDER, onnx_device

    if CUDA_PROVIDER in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    monkeypatch.setattr(device_module, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    with pytest.raises(NanoNetError, match=r"needs onnxruntime-gpu.*nanonet\[gpu\]"):
        onnx_device("cuda")
    assert onnx_device("auto") == torch.device("cpu")  # auto: the best there is
    assert onnx_device("cpu") == torch.device("cpu")


def test_serve_metadata_names_the_device(saved_bert: Path) -> None:
    from fastapi.testclient import TestClient

    from nanonet.serve import create_app, load_classifier

    clf = load_classifier(saved_bert, "torch", "cpu")
    with TestClient(create_app(clf)) as client:
        assert client.get("/metadata").json()["device"] == "cpu"


def test_bench_child_gets_the_resolved_device() -> None:
    from nanonet.bench.config import MethodSpec, RunSpec
    from nanonet.bench.harness import child_command

    run = RunSpec("rotten_tomatoes", MethodSpec("tfidf", "tfidf", {}), 0, 10)
    command = child_command(Path("c.yaml"), run, Path("o.json"), "cpu")
    assert command[-2:] == ["--device", "cpu"]


# ----------------------------------------------------------------------- attention ----------


def test_mpnet_sdpa_attention_matches_the_eager_one(tiny_mpnet: Path) -> None:
    hf, tok = load_hf_encoder(tiny_mpnet)
    model = EncoderClassifier(Backbone(hf), num_labels=2, dropout=0.0).eval()
    ids, mask = pad_batch(tok(["good movie", "a very dull and boring plot", "it"])["input_ids"], 1)
    keys = set(model.state_dict())
    with torch.no_grad():
        eager = model(ids, mask)
        use_sdpa_for_mpnet(hf)
        fused = model(ids, mask)
    assert all(type(layer.attention.attn) is MPNetSdpaSelfAttention for layer in hf.encoder.layer)
    assert set(model.state_dict()) == keys  # same weights, same checkpoint
    torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-5)


def test_mpnet_keeps_eager_attention_on_the_cpu(saved_mpnet: Path) -> None:
    clf = NanoNetClassifier.from_pretrained(saved_mpnet, device="cpu")
    attn = clf.model.backbone.hf.encoder.layer[0].attention.attn
    assert type(attn) is not MPNetSdpaSelfAttention  # CPU results stay bit-for-bit


def test_a_cpu_run_reports_its_device_and_keeps_everything_on_the_cpu(tiny_mpnet: Path) -> None:
    trainer = NanoNetTrainer(_task(), _config(tiny_mpnet, ["teacher:0"], "cpu"), progress=False)
    result = trainer.train()
    assert result.report["device"] == "cpu"
    assert trainer.cfg.train.batch_reference_length == 48  # CPU defaults untouched
    assert device_of(trainer.students[0].model) == torch.device("cpu")


@pytest.mark.parametrize("where", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_a_resumed_run_folds_stage_1_into_the_teacher_where_it_lives(
    tiny_mpnet: Path, where: str
) -> None:
    # A run resumed past stage 1 re-creates the adapters (on the CPU) and folds the checkpoint's
    # weights into a teacher that may already sit on the GPU.
    mc = _config(tiny_mpnet, ["teacher:0"]).model
    device = torch.device(where)
    first, _, _, cut = cohort.build_teacher(mc, 2)
    first.to(device)
    trained = teacher_depth.open_teacher_depth(
        first, mc.lora_rank, torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        for p in trained:  # as stage 1 would: the adapters' up-projections start at zero
            p.add_(0.01 * torch.randn_like(p))
    state = teacher_depth.stage1_weights(first)
    teacher_depth.close_teacher_depth(first, mc, cut, [state])
    resumed, _, _, _ = cohort.build_teacher(mc, 2)
    resumed.to(device)
    teacher_depth.redo_teacher_depth(resumed, mc, cut, [state])
    folded = dict(first.backbone.named_parameters())
    for name, p in resumed.backbone.named_parameters():
        assert p.device.type == where
        torch.testing.assert_close(p, folded[name])


# ----------------------------------------------------------------------- on a GPU -----------


@pytest.mark.cuda
def test_cuda_run_keeps_models_cache_and_targets_on_the_gpu(tiny_mpnet: Path) -> None:
    cfg = _config(tiny_mpnet, ["teacher:0", "teacher:bottom2"], "cuda")
    cfg.train.distill_epochs = 0.5
    trainer = NanoNetTrainer(_task(), cfg, progress=False)
    result = trainer.train()
    assert result.report["device"].startswith("cuda:")
    assert cfg.train.batch_reference_length is None  # a GPU default filled in
    assert cfg.train.steps == 4  # set by the test: kept
    for m in [trainer.teacher, *trainer.students]:
        assert all(p.is_cuda and p.dtype == torch.float32 for p in m.model.parameters())
    assert trainer.y.is_cuda and trainer.targets is not None
    assert all(t.is_cuda for t in trainer.targets.logits.values())
    proba = result.classifier.predict_proba(["good movie", "dull plot"])
    assert np.isfinite(proba).all() and np.allclose(proba.sum(1), 1.0, atol=1e-5)


@pytest.mark.cuda
def test_frozen_bottom_cache_is_fp16_on_the_gpu(tiny_mpnet: Path) -> None:
    trainer = NanoNetTrainer(_task(), _config(tiny_mpnet, ["teacher:0"], "cuda"), progress=False)
    trainer.train()
    cached = [h for h in trainer.cache.store["unlabelled"] if h is not None]
    assert cached and all(h.is_cuda and h.dtype == torch.float16 for h in cached)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["torch", "packed"])
@pytest.mark.parametrize("encoder", ["saved_bert", "saved_mpnet"])
def test_gpu_predictions_match_the_cpu(
    backend: str, encoder: str, request: pytest.FixtureRequest
) -> None:
    folder = request.getfixturevalue(encoder)
    texts = ["good movie", "a very dull and boring plot that was not fine", "it", "great"]
    cpu = NanoNetClassifier.from_pretrained(folder, backend=backend, device="cpu")
    gpu = NanoNetClassifier.from_pretrained(folder, backend=backend, device="cuda")
    assert gpu.device.type == "cuda"
    expected = cpu.predict_logits(texts, batch_size=3)
    gpu.bf16 = False  # fp32 on the GPU: the same numbers up to kernel rounding
    np.testing.assert_allclose(gpu.predict_logits(texts, batch_size=3), expected, atol=1e-4)
    gpu.bf16 = True
    np.testing.assert_allclose(gpu.predict_logits(texts, batch_size=3), expected, atol=5e-2)


@pytest.mark.cuda
def test_mpnet_switches_to_sdpa_on_the_gpu(saved_mpnet: Path) -> None:
    gpu = NanoNetClassifier.from_pretrained(saved_mpnet, device="cuda")
    attn = gpu.model.backbone.hf.encoder.layer[0].attention.attn
    assert type(attn) is MPNetSdpaSelfAttention


@pytest.mark.cuda
def test_onnx_on_the_gpu_when_onnxruntime_gpu_is_there(saved_bert: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from nanonet.infer.export import export_model
    from nanonet.models.onnx_runtime import CUDA_PROVIDER

    if CUDA_PROVIDER not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    export_model(saved_bert, "onnx", None)
    cpu = NanoNetClassifier.from_pretrained(saved_bert, backend="onnx", device="cpu")
    gpu = NanoNetClassifier.from_pretrained(saved_bert, backend="onnx", device="cuda")
    assert gpu.model.session.get_providers()[0] == CUDA_PROVIDER
    texts = ["good movie", "dull plot"]
    np.testing.assert_allclose(gpu.predict_logits(texts), cpu.predict_logits(texts), atol=1e-3)


@pytest.mark.cuda
def test_streamed_predict_on_the_gpu(saved_bert: Path, tmp_path: Path) -> None:
    from nanonet.infer.stream import predict_stream

    texts = tmp_path / "in.txt"
    texts.write_text("good movie\ndull plot\n")
    clf = NanoNetClassifier.from_pretrained(saved_bert, device="cuda")
    stats = predict_stream(clf, texts, tmp_path / "o.csv", progress=False)
    assert stats["rows"] == 2 and len((tmp_path / "o.csv").read_text().splitlines()) == 3


@pytest.mark.cuda
def test_serve_on_the_gpu(saved_bert: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from nanonet.serve import create_app, load_classifier

    clf = load_classifier(saved_bert, "torch", "cuda")
    with TestClient(create_app(clf)) as client:
        assert client.get("/metadata").json()["device"].startswith("cuda")
        body = client.post("/predict", json={"texts": ["good movie"]}).json()
        assert body["predictions"][0]["label"] in LABELS
