"""Batch scoring on Ray Data: `nanonet predict --engine ray --input PATH --output DIR`.

Ray Data reads the input (CSV/TSV, JSON lines, Parquet or text, one file, a folder, or a local
glob, on any filesystem Ray reads: local, s3://, gs://, ...), an actor pool scores it (each
actor loads the model once, with any backend, ONNX int8 included) and the driver writes Parquet
parts with the columns of the single-process output (:mod:`nanonet.infer.output`): ``row``,
``label``, ``prob_<class>``.

Row numbers need one global order, which Ray's parallel writers do not give: so the scored
blocks come back to the driver in input order (``preserve_order``) and the driver numbers the
rows and writes the parts. Scoring, the expensive part, scales with the actors; the driver only
receives a few floats per text. Each part is written under a temporary name and renamed, so a
crash never leaves a half-written part.

Ray starts a fixed actor pool before any read task, so actors on every CPU of the cluster would
leave none for reading and the run would wait forever (ray-project/ray#44687): a local instance
gets one CPU more than ``--workers``, and on a cluster ``--workers`` must leave one CPU free.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from nanonet.data.input_checks import missing_column, no_rows
from nanonet.errors import NanoNetError
from nanonet.infer.output import prediction_columns
from nanonet.models.model_folder import read_model_meta
from nanonet.ray_cluster import quiet_ray_data, ray_session

log = logging.getLogger("nanonet")

PART_ROWS = 100_000  # rows per Parquet part: few files for big inputs, bounded driver memory
FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".txt": "text"}
FORMATS |= {".jsonl": "json", ".ndjson": "json", ".json": "json"}
# Ray reads every file of a folder unless told which: a _SUCCESS or .crc file would break it.
EXTENSIONS = {
    "csv": ["csv"],
    "tsv": ["tsv"],
    "json": ["json", "jsonl", "ndjson"],
    "parquet": ["parquet"],
    "text": ["txt"],
}
READER_CPUS = 1  # CPUs left to Ray Data's read tasks beside the actor pool


class _Scorer:
    """One Ray actor: the model, loaded once, scoring blocks of texts."""

    def __init__(
        self, model_dir: str, backend: str, device: str, threads: int, batch_size: int
    ) -> None:
        import torch

        from nanonet.models.classifier import load_classifier

        # Before loading: ONNX Runtime sizes its thread pool from torch's setting.
        torch.set_num_threads(threads)
        self.clf = load_classifier(model_dir, backend, device)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from nanonet.data.stream_readers import _as_text

        # The single-process reader's rule: a missing value (an empty cell, a JSON null) is an
        # empty text, a number is its string.
        texts = [_as_text(t) for t in batch["text"].tolist()]
        proba = self.clf.predict_proba(texts, batch_size=self.batch_size)
        return {"proba": np.asarray(proba, dtype=np.float32)}


def _txt_lines(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Lines as the single-process .txt reader has them: split at \n only, a \r before it
    # dropped, no row after a final newline (Ray's read_text adds an empty one).
    texts: list[str] = []
    for data in batch["bytes"]:
        lines = bytes(data).decode("utf-8-sig").split("\n")
        if lines[-1] == "":
            lines.pop()
        texts.extend(line.removesuffix("\r") for line in lines)
    return {"text": np.asarray(texts, dtype=object)}


def input_format(path: str) -> str:
    """csv, tsv, json, parquet or text, from the suffix of the path (or of a folder's files)."""
    suffix = Path(path.rstrip("/")).suffix.lower()
    if not suffix and "://" not in path and Path(path).is_dir():
        suffixes = {p.suffix.lower() for p in Path(path).iterdir() if p.is_file()}
        suffixes &= set(FORMATS)
        suffix = suffixes.pop() if len(suffixes) == 1 else ""
    if suffix not in FORMATS:
        raise NanoNetError(
            f"Cannot tell the format of {path}; --engine ray reads files (or a folder of files) "
            "ending in .csv, .tsv, .jsonl, .parquet or .txt."
        )
    return FORMATS[suffix]


def input_paths(path: str) -> str | list[str]:
    """`path`, or the files a local glob matches (Ray itself does not expand globs)."""
    if "://" in path:
        return path
    if not glob.has_magic(path):
        local = Path(path).expanduser()
        if not local.exists():
            raise NanoNetError(f"{path} does not exist; check the path.")
        return str(local)
    files = sorted(glob.glob(os.path.expanduser(path)))
    if not files:
        raise NanoNetError(f"No file matches {path}.")
    return files


def _read(ray: Any, paths: str | list[str], fmt: str, text_column: str) -> Any:
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    extensions = EXTENSIONS[fmt]
    if fmt in ("csv", "tsv"):
        return ray.data.read_csv(
            paths,
            file_extensions=extensions,
            parse_options=pa_csv.ParseOptions(
                delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True
            ),
            # Texts stay texts even when a column holds only numbers ("007" is not 7).
            convert_options=pa_csv.ConvertOptions(column_types={text_column: pa.string()}),
        )
    if fmt == "json":
        # pyarrow reads JSON lines (Ray 2.40 has no lines= option); a JSON document that it
        # cannot read, Ray reads with json.load.
        return ray.data.read_json(paths, file_extensions=extensions)
    if fmt == "parquet":
        return ray.data.read_parquet(paths, file_extensions=extensions)
    files = ray.data.read_binary_files(paths, file_extensions=extensions)
    return files.map_batches(_txt_lines, batch_format="numpy", batch_size=None)


def _pool_size(ray: Any, workers: int | None) -> int:
    cpus = float(ray.cluster_resources().get("CPU", 0))
    if workers is None:
        return max(1, int(cpus) - READER_CPUS)
    # An autoscaling cluster may show no CPUs yet; it grows to what the actors ask for.
    if cpus and workers > cpus - READER_CPUS:
        raise NanoNetError(
            f"--workers {workers} would take every CPU of the Ray cluster ({cpus:g}) and "
            "leave none to read the input; pass --workers "
            f"{max(1, int(cpus) - READER_CPUS)} or fewer."
        )
    return workers


# How a remote traceback names the failures of reading a bad file: undecodable bytes, a CSV or
# JSON line pyarrow cannot parse, JSON that Python's parser (Ray's fallback) cannot parse.
_READ_FAILURE = re.compile(
    r"^(?:UnicodeDecodeError|pyarrow\.lib\.ArrowInvalid|json\.decoder\.JSONDecodeError): (.+)$",
    re.MULTILINE,
)


def _read_error(exc: BaseException, input_path: str) -> NanoNetError | None:
    """A one-line NanoNetError for an input that Ray could not decode or parse, else None:
    other failures keep their traceback."""
    from ray.exceptions import RayTaskError

    found = _READ_FAILURE.search(str(exc)) if isinstance(exc, RayTaskError) else None
    if found is None:
        return None
    return NanoNetError(
        f"{input_path} could not be read on Ray ({found.group(1)}); check its format."
    )


def predict_on_ray(
    model_dir: str | Path,
    input_path: str,
    output_dir: str | Path,
    text_column: str = "text",
    backend: str = "torch",
    device: str = "cpu",
    workers: int | None = None,
    address: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Score `input_path` into Parquet parts in `output_dir` (which must hold no parts yet);
    returns ``rows``, ``parts``, ``seconds`` and ``docs_per_s``."""
    label_names = list(read_model_meta(model_dir)["label_names"])
    fmt = input_format(input_path)
    paths = input_paths(input_path)
    if fmt == "text":
        text_column = "text"
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    local_workers = workers or os.cpu_count() or 1
    with ray_session(address, local_workers + READER_CPUS) as ray:
        pool = _pool_size(ray, workers)
        quiet_ray_data()
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        try:
            data = _read(ray, paths, fmt, text_column)
            names = data.schema().names
        except Exception as exc:
            if (error := _read_error(exc, input_path)) is None:
                raise
            raise error from None
        if text_column not in names:
            raise missing_column(Path(input_path), text_column, names, "--text-column")
        data = data.select_columns([text_column])
        if text_column != "text":
            data = data.rename_columns({text_column: "text"})
        scored = data.map_batches(
            _Scorer,
            batch_format="numpy",
            # Blocks much larger than a model batch: fewer round trips to the actors.
            batch_size=max(batch_size, 256),
            concurrency=pool,
            num_cpus=1,
            fn_constructor_kwargs={
                "model_dir": str(Path(model_dir).resolve()),
                "backend": backend,
                "device": device,
                "threads": 1,
                "batch_size": batch_size,
            },
        )
        rows, parts = 0, 0
        bar = tqdm(unit="doc", desc="predict (ray)", disable=not progress)
        try:
            for batch in scored.iter_batches(batch_size=PART_ROWS, batch_format="numpy"):
                proba = np.asarray(batch["proba"], dtype=np.float32)
                _write_part(out, parts, prediction_columns(rows, proba, label_names))
                rows += len(proba)
                parts += 1
                bar.update(len(proba))
        except Exception as exc:
            if (error := _read_error(exc, input_path)) is None:
                raise
            raise error from None
        finally:
            bar.close()
    if rows == 0:
        raise no_rows(Path(input_path))
    seconds = time.perf_counter() - start
    return {"rows": rows, "parts": parts, "seconds": seconds, "docs_per_s": rows / seconds}


def _write_part(out: Path, number: int, columns: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = out / f"part-{number:05d}.parquet"
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, path)


def existing_parts(output_dir: str | Path) -> list[Path]:
    """The parts, and the temporary files of an interrupted part, in ``output_dir``."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    return sorted([*folder.glob("part-*.parquet"), *folder.glob(".part-*.parquet.tmp")])
