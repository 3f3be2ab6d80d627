"""benchmarks/gpu_check.py: its report survives failures, and its CPU path runs end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_part_that_fails_is_recorded_not_raised(gpu_check: ModuleType) -> None:
    results: dict = {}
    assert gpu_check.run_part(results, "boom", lambda: 1 / 0) is None
    assert "ZeroDivisionError" in results["failures"]["boom"] and "boom" in results["part_seconds"]
    assert gpu_check.run_part(results, "fine", lambda: 3) == 3 and results["fine"] == 3


def test_without_a_gpu_the_report_is_still_written_with_the_failure(
    gpu_check: ModuleType, tmp_path: Path
) -> None:
    argv = ["--device", "cuda", "--quick", "--no-tests", "--out-dir", str(tmp_path)]
    assert gpu_check.main([*argv, "--cpu-json", str(tmp_path / "none.json")]) == 1
    report = (tmp_path / "GPU.md").read_text()
    assert "## The bar" in report and "**device**" in report and "sees no CUDA GPU" in report


def test_step_rates_skip_each_phase_s_first_step(gpu_check: ModuleType) -> None:
    stamps = [("contrastive", 0.0), ("contrastive", 1.0), ("contrastive", 3.0), ("train", 4.0)]
    assert gpu_check.phase_rates(stamps) == {"contrastive": {"steps": 2, "steps_per_s": 2 / 3}}


@pytest.mark.slow
def test_quick_cpu_run_writes_every_table(gpu_check: ModuleType, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    cpu_json = tmp_path / "cpu.json"
    common = ["--quick", "--out-dir", str(tmp_path), "--cpu-json", str(cpu_json)]
    try:
        assert gpu_check.main(["--cpu-only", *common]) == 0
        assert gpu_check.main(["--device", "cpu", *common]) == 0  # the GPU side, dry-run on CPU
    finally:
        torch.set_num_threads(threads)
    raw = json.loads((tmp_path / "gpu_check_gpu.json").read_text())
    assert not raw.get("failures"), raw.get("failures")
    assert raw["gpu_steps"]["phases"]["train"]["steps_per_s"] > 0
    assert raw["gpu_full_run"]["wall_s"] > 0 and raw["host_cpu"]["cpu_steps"]["phases"]
    report = (tmp_path / "GPU.md").read_text()
    for heading in ("## The bar", "## Training", "## Inference", "## CUDA tests", "## Failures"):
        assert heading in report
    assert "None: every part ran." in report and "NanoNet step vs the project's" in report
