"""Which stored runs were made by the code checked out now.

The table accumulates over several sittings and a run is skipped once stored, so a row can mix
runs of different code. A run counts as made by the current code when the files that decide
its result (`src/` and the dependency pins in `pyproject.toml`) are the same at the run's commit
as in the working tree. The report and the HTTP server cannot change a result, so editing them
does not turn stored runs stale.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

RESULT_CODE = ("src", "pyproject.toml")
NOT_RESULT_CODE = (
    "src/nanonet/bench/report.py",
    "src/nanonet/bench/code_version.py",
    "src/nanonet/serve",
)


def pathspec() -> list[str]:
    # 'top': relative to the repository root, not to the results folder git is run from
    return [*(f":(top){p}" for p in RESULT_CODE), *(f":(top,exclude){p}" for p in NOT_RESULT_CODE)]


def current_code(commits: Iterable[str], repo: Path) -> dict[str, bool | None]:
    """Per commit: True when its result code equals the working tree's, False when not, None
    when it cannot be told ('-dirty' runs, unknown commits, no git)."""
    verdicts: dict[str, bool | None] = {}
    for commit in set(commits):
        if commit.endswith("-dirty") or commit == "unknown":
            verdicts[commit] = None
            continue
        try:
            proc = subprocess.run(
                ["git", "diff", "--quiet", commit, "--", *pathspec()],
                cwd=repo,
                capture_output=True,
            )
        except OSError:
            verdicts[commit] = None
            continue
        # git diff --quiet: 0 same, 1 different, anything else (unknown commit, no repo) unknown
        verdicts[commit] = {0: True, 1: False}.get(proc.returncode)
    return verdicts
