"""Which stored runs were made by the code checked out now.

The table accumulates over several sittings and a run is skipped once stored, so a row can mix
runs of different code. A run counts as made by the current code when the files that decide
its result (`src/` and the dependency pins in `pyproject.toml`) are the same at the run's commit
as in the working tree. The report and the HTTP server cannot change a result, so editing them
does not turn stored runs stale; nor does an edit to a comment or a docstring (a Python file
counts as the same when its syntax tree without docstrings is).
"""

from __future__ import annotations

import ast
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
    top: Path | None = None
    for commit in set(commits):
        if commit.endswith("-dirty") or commit == "unknown":
            verdicts[commit] = None
            continue
        try:
            proc = subprocess.run(
                ["git", "diff", "--name-only", commit, "--", *pathspec()],
                cwd=repo,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:  # an unknown commit, no repository
                verdicts[commit] = None
                continue
            changed = proc.stdout.split()
            if changed and top is None:
                top = Path(
                    subprocess.run(
                        ["git", "rev-parse", "--show-toplevel"],
                        cwd=repo,
                        capture_output=True,
                        text=True,
                    ).stdout.strip()
                )
            verdicts[commit] = all(_same_program(commit, path, repo, top) for path in changed)
        except OSError:
            verdicts[commit] = None
    return verdicts


def _same_program(commit: str, path: str, repo: Path, top: Path | None) -> bool:
    """Whether `path` (relative to the repository's top, `top`) differs from `commit` in
    comments and docstrings only."""
    if not path.endswith(".py") or top is None:
        return False
    then = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=repo, capture_output=True, text=True
    )
    now = top / path
    if then.returncode != 0 or not now.is_file():  # added or removed
        return False
    try:
        return _skeleton(then.stdout) == _skeleton(now.read_text(encoding="utf-8"))
    except SyntaxError:
        return False


def _skeleton(source: str) -> str:
    """The syntax tree without docstrings (comments are not in it)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)
