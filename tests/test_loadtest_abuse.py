"""benchmarks/loadtest_abuse.py, briefly: a real server on loopback keeps answering well-formed
requests while others send bad ones or trickle theirs, and every bad one gets its 4xx."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from nanonet.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def abuse() -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports its sibling loadtest.py
    try:
        path = ROOT / "benchmarks/loadtest_abuse.py"
        spec = importlib.util.spec_from_file_location("loadtest_abuse", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["loadtest_abuse"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_bad_requests_get_their_4xx_while_well_formed_ones_all_succeed(
    abuse: ModuleType,
    synthetic_csv: tuple[Path, Path],
    tiny_mpnet: Path,
    tiny_bert: Path,
    tmp_path: Path,
) -> None:
    train, pool = synthetic_csv
    model = tmp_path / "model"
    threads = torch.get_num_threads()
    argv = ["-q", "train", "--train", str(train), "--unlabeled", str(pool), "--out", str(model)]
    argv += ["--teacher", str(tiny_mpnet), "--students", str(tiny_bert), "--steps", "3"]
    assert main([*argv, "--threads", "1", "model.min_speedup=null"]) == 0
    torch.set_num_threads(threads)
    out, md = tmp_path / "abuse.json", tmp_path / "LOADTEST.md"
    md.write_text("# load test\n\nearlier figures\n", encoding="utf-8")
    abuse.main(
        [
            *("--model", str(model), "--seconds", "4", "--warmup-seconds", "1"),
            *("--clients", "8", "--abusers", "2", "--tricklers", "2", "--threads", "1"),
            *("--out", str(out), "--markdown", str(md)),
        ]
    )
    r = json.loads(out.read_text(encoding="utf-8"))
    run = r["run"]
    assert run["well_formed"]["errors"] == 0 and run["well_formed"]["requests"] > 0
    assert run["bad"]["wrong"] == 0, run["bad"]["wrong_samples"]
    assert run["bad"]["sent"] >= 12  # every case of the catalogue at least once
    assert run["trickle"]["completed"] > 0 and run["trickle"]["errors"] == 0
    assert r["bar"]["healthy_after"]
    text = md.read_text(encoding="utf-8")
    assert text.startswith("# load test\n\nearlier figures") and "## Under abuse" in text
