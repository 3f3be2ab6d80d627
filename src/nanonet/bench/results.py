"""Result files: one JSON per (dataset, method, seed), written atomically, read leniently."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nanonet.bench.config import RunSpec

SCHEMA = 1
# Statuses a run can end with. "unavailable": the method cannot run on this machine (e.g. the
# setfit package is missing); recorded so the table says why a row is empty.
STATUSES = ("ok", "crashed", "timeout", "unavailable")


def result_path(results_dir: Path, run: RunSpec) -> Path:
    return results_dir / f"{run.stem}.json"


def log_path(results_dir: Path, run: RunSpec) -> Path:
    return results_dir / "logs" / f"{run.stem}.log"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary sibling, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_jsonable)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_result(path: Path) -> dict[str, Any] | None:
    """A stored result, or None when there is none or it cannot be read (then it is re-run)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("status") in STATUSES else None


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    return [r for p in sorted(results_dir.glob("*.json")) if (r := read_result(p)) is not None]


def skip_reason(stored: dict[str, Any] | None, run: RunSpec, retry_failed: bool) -> str | None:
    """Why `run` need not run again, or None when it must.

    A stored "ok" result is kept while the method's settings are unchanged; a crash or timeout
    is kept (it is a result too) unless `retry_failed`. "unavailable" is always tried again:
    it costs seconds, and the missing package may have been installed since. A result stored
    for other settings is stale.
    """
    if stored is None or stored["status"] == "unavailable":
        return None
    if stored.get("fingerprint") != run.fingerprint():
        return None
    if stored["status"] == "ok":
        return "already stored"
    if not retry_failed:
        return f"stored as {stored['status']} (--retry-failed runs it again)"
    return None


def base_record(run: RunSpec, status: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "dataset": run.dataset,
        "method": run.method.name,
        "kind": run.method.kind,
        "seed": run.seed,
        "labels_per_class": run.labels_per_class,
        "status": status,
        "settings": run.settings,
        "fingerprint": run.fingerprint(),
        "pareto_members": run.method.pareto_members,
        "note": run.method.note,
        "date": now_iso(),
    }


def _jsonable(value: Any) -> Any:
    # numpy scalars and paths end up in records; everything else is a bug worth a TypeError.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
