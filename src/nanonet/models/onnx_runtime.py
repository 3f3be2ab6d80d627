"""Run an exported NanoNet model with ONNX Runtime instead of PyTorch.

`OnnxEncoderClassifier` stands in for `EncoderClassifier` at inference: NanoNetClassifier only
calls ``model(input_ids, mask)`` and ``model.eval()``, so tokenisation, length-sorted batching and
label handling stay in one place. The files are written by :mod:`nanonet.infer.export`
(``nanonet export --model DIR --format onnx [--quantize int8]``) into ``DIR/onnx/``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from nanonet.errors import NanoNetError
from nanonet.models.device import resolve_device
from nanonet.models.model_folder import (
    EXPORT_META_FILE,
    HEAD_FILE,
    ONNX_SUBDIR,
    file_sha256,
    onnx_path,
)

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"


CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

log = logging.getLogger("nanonet")


def export_command(model_dir: str | Path, quantized: bool) -> str:
    quant = " --quantize int8" if quantized else ""
    return f"nanonet export --model {model_dir} --format onnx{quant}"


class OnnxEncoderClassifier:
    """An ONNX Runtime session with the call signature of `EncoderClassifier` (inference only)."""

    def __init__(
        self, path: Path, threads: int | None = None, device: torch.device | None = None
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.device = device or torch.device("cpu")  # where the graph runs
        self.input_device = torch.device("cpu")  # ORT takes numpy arrays, whatever the device
        options = ort.SessionOptions()
        # Lets ORT fuse LayerNorm/GELU/MatMul+Add at load time; the file stays portable.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Same default as the torch backend, so switching backends does not change CPU usage.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1  # a sequential graph: a second pool would only idle
        providers: list[str | tuple[str, dict[str, str]]] = [CPU_PROVIDER]
        if self.device.type == "cuda":
            providers = [(CUDA_PROVIDER, {"device_id": str(self.device.index or 0)}), CPU_PROVIDER]
        self.session = ort.InferenceSession(
            str(self.path), sess_options=options, providers=providers
        )
        if self.device.type == "cuda" and self.session.get_providers()[0] != CUDA_PROVIDER:
            # ORT falls back to the CPU with a warning when the CUDA libraries do not load.
            raise NanoNetError(
                f"ONNX Runtime could not start its CUDA provider for {self.path.name} (it ran "
                f"with {', '.join(self.session.get_providers())}); check that onnxruntime-gpu "
                "matches this machine's CUDA, or use --device cpu or --backend torch."
            )
        dim = self.session.get_outputs()[0].shape[-1]
        self.num_labels: int | None = dim if isinstance(dim, int) else None

    def __call__(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feeds = {
            INPUT_NAMES[0]: _as_int64(input_ids),
            INPUT_NAMES[1]: _as_int64(mask),
        }
        (logits,) = self.session.run([OUTPUT_NAME], feeds)
        return torch.from_numpy(logits)

    def eval(self) -> OnnxEncoderClassifier:
        return self  # no dropout to switch off: the graph was exported in eval mode

    def __repr__(self) -> str:
        return f"OnnxEncoderClassifier({self.path})"


def _as_int64(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.int64)


def onnx_device(spec: str | torch.device = "cpu") -> torch.device:
    """Where ONNX Runtime should run for `spec`. CUDA needs onnxruntime-gpu: asked for
    explicitly without it, one NanoNetError says what to install; with `auto`, the CPU."""
    import onnxruntime as ort

    device = resolve_device(spec, "device")
    if device.type != "cuda" or CUDA_PROVIDER in ort.get_available_providers():
        return device
    if str(spec).strip().lower() == "auto":
        log.info("ONNX Runtime has no CUDA provider (pip install 'nanonet[gpu]'); on the CPU")
        return torch.device("cpu")
    raise NanoNetError(
        f"The onnx backend on {device} needs onnxruntime-gpu, which is not installed (this "
        f"ONNX Runtime offers {', '.join(ort.get_available_providers())}); run "
        "`pip uninstall -y onnxruntime && pip install 'nanonet[gpu]'`, or use --backend torch "
        "or --device cpu."
    )


def load_onnx_model(
    model_dir: str | Path,
    quantized: bool = False,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> OnnxEncoderClassifier:
    """The exported graph of a model folder; a NanoNetError says how to export it if missing."""
    path = onnx_path(model_dir, quantized)
    kind = "int8 ONNX" if quantized else "ONNX"
    if not path.is_file():
        raise NanoNetError(
            f"{Path(model_dir)} has no {kind} export ({path.name} is missing); create it with "
            f"`{export_command(model_dir, quantized)}`."
        )
    _check_not_stale(Path(model_dir), quantized)
    target = onnx_device(device)
    try:
        return OnnxEncoderClassifier(path, threads, target)
    except NanoNetError:
        raise
    except Exception as exc:  # ORT raises its own pybind types for unreadable or foreign files
        raise NanoNetError(
            f"ONNX Runtime cannot load {path} ({type(exc).__name__}); re-create it with "
            f"`{export_command(model_dir, quantized)}`."
        ) from exc


def _check_not_stale(model_dir: Path, quantized: bool) -> None:
    # A model folder retrained in place (or a head replaced) would otherwise keep serving the old
    # graph silently. Only the head is hashed on load: it is tiny and changes with every training.
    meta_file = model_dir / ONNX_SUBDIR / EXPORT_META_FILE
    head = model_dir / HEAD_FILE
    if not meta_file.is_file() or not head.is_file():
        return
    try:
        recorded = json.loads(meta_file.read_text(encoding="utf-8"))["source"][HEAD_FILE]
    except (ValueError, KeyError, TypeError):
        return
    if recorded != file_sha256(head):
        raise NanoNetError(
            f"The ONNX export in {model_dir / ONNX_SUBDIR} is older than the model in {model_dir}; "
            f"re-create it with `{export_command(model_dir, quantized)}`."
        )
