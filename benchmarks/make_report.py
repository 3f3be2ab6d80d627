"""Regenerate benchmarks/RESULTS.md and benchmarks/plots/*.png from benchmarks/results/*.json.

    python benchmarks/make_report.py [--config benchmarks/configs/protocol.yaml]

Reads only the stored results (it runs nothing), so it is safe to run at any time, also while
a benchmark is running. With the default config, planned runs without a result show as missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nanonet.bench.report import main

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    # The config's paths are relative to the repository root, wherever this is started from.
    os.chdir(ROOT)
    sys.exit(main(sys.argv[1:] or ["--config", "benchmarks/configs/protocol.yaml"]))
