"""Streaming `nanonet predict`: chunked reading, incremental output, resume, constant memory.

A tiny randomly initialised classifier is enough: what is tested is the plumbing around it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nanonet.cli import main
from nanonet.data.readers import read_table
from nanonet.data.stream_readers import count_rows, iter_texts
from nanonet.errors import NanoNetError
from nanonet.infer.output import output_columns
from nanonet.infer.stream import StreamInterrupted, predict_stream
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder

# Awkward on purpose: CSV quoting, spaces, strings pandas would read as missing or numbers.
TEXTS = [
    "good great film",
    "bad, awful plot",
    'a "quoted" story',
    "  leading and trailing spaces  ",
    "NA",
    "null",
    "007",
    "the movie was fine",
    "boring dull story",
    "a",
]
WRITERS: dict[str, Callable[[Path, Sequence[str]], Path]] = {}


def _writer(suffix: str) -> Callable[[Callable[..., Path]], Callable[..., Path]]:
    def register(fn: Callable[..., Path]) -> Callable[..., Path]:
        WRITERS[suffix] = fn
        return fn

    return register


@_writer(".csv")
def _write_csv(path: Path, texts: Sequence[str], sep: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow(["id", "text"])
        writer.writerows([i, t] for i, t in enumerate(texts))
    return path


@_writer(".tsv")
def _write_tsv(path: Path, texts: Sequence[str]) -> Path:
    return _write_csv(path, texts, sep="\t")


@_writer(".jsonl")
def _write_jsonl(path: Path, texts: Sequence[str]) -> Path:
    lines = [json.dumps({"id": i, "text": t}) for i, t in enumerate(texts)]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")  # blank lines are skipped
    return path


WRITERS[".ndjson"] = _write_jsonl
WRITERS[".json"] = _write_jsonl  # JSON lines saved as .json


@_writer(".parquet")
def _write_parquet(path: Path, texts: Sequence[str]) -> Path:
    pd.DataFrame({"id": range(len(texts)), "text": list(texts)}).to_parquet(path)
    return path


@_writer(".txt")
def _write_txt(path: Path, texts: Sequence[str]) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def _flat(chunks: Iterator[list[str]]) -> list[str]:
    return [text for chunk in chunks for text in chunk]


def _user_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanonet: error: "), err
    return lines[0]


# ---------------------------------------------------------------------------- fixtures -------
@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Tiny models on a shared machine: more threads only add contention.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _classifier(folder: Path, labels: Sequence[str]) -> NanoNetClassifier:
    hf, tok = load_hf_encoder(folder)
    torch.manual_seed(0)
    model = EncoderClassifier(Backbone(hf), num_labels=len(labels))
    return NanoNetClassifier(model, tok, labels, max_length=16)


@pytest.fixture(scope="module")
def clf(tiny_bert: Path) -> NanoNetClassifier:
    return _classifier(tiny_bert, ["neg", "pos"])


@pytest.fixture(scope="module")
def model_dir(clf: NanoNetClassifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clf.save_pretrained(tmp_path_factory.mktemp("stream") / "model")


@pytest.fixture
def texts_csv(tmp_path: Path) -> Path:
    return _write_csv(tmp_path / "texts.csv", TEXTS)


def _cli(model: Path, source: Path, output: Path, *extra: str) -> int:
    argv = ["-q", "predict", "--model", str(model), "--input", str(source)]
    return main([*argv, "--output", str(output), *extra])


# ---------------------------------------------------------------------------- reading --------
@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_iter_texts_reads_every_format_in_chunks(suffix: str, tmp_path: Path) -> None:
    path = WRITERS[suffix](tmp_path / f"texts{suffix}", TEXTS)
    chunks = list(iter_texts(path, chunk_rows=4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert _flat(iter(chunks)) == TEXTS


def test_iter_texts_reads_a_json_document_whole(tmp_path: Path) -> None:
    path = tmp_path / "texts.json"
    path.write_text(json.dumps([{"text": t} for t in TEXTS], indent=2), encoding="utf-8")
    assert [len(c) for c in iter_texts(path, chunk_rows=4)] == [4, 4, 2]


def test_iter_texts_agrees_with_read_table(tmp_path: Path) -> None:
    # Quoted newlines, a BOM and Windows line ends: the stream sees the rows readers.py sees.
    texts = ["two\nlines", "comma, inside", "plain"]
    path = tmp_path / "bom.csv"
    body = "text\r\n" + "".join(f'"{t}"\r\n' for t in texts)
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    assert _flat(iter_texts(path, chunk_rows=2)) == read_table(path, label_column=None)[0]
    txt = tmp_path / "crlf.txt"
    txt.write_bytes(b"\xef\xbb\xbfone\r\ntwo \r\nthree")
    assert _flat(iter_texts(txt)) == ["one", "two ", "three"] == read_table(txt)[0]


def test_iter_texts_yields_empty_and_missing_texts(tmp_path: Path) -> None:
    txt = tmp_path / "blank.txt"
    txt.write_text("a\n\n   \nb\n", encoding="utf-8")
    assert _flat(iter_texts(txt)) == ["a", "", "   ", "b"]
    jsonl = tmp_path / "sparse.jsonl"
    jsonl.write_text('{"text": "a"}\n{"other": 1}\n{"text": null}\n', encoding="utf-8")
    assert _flat(iter_texts(jsonl)) == ["a", "", ""]


def _same_error_as_read_table(path: Path, text_column: str = "text") -> str:
    with pytest.raises(NanoNetError) as whole:
        read_table(path, text_column=text_column, label_column=None)
    with pytest.raises(NanoNetError) as streamed:
        _flat(iter_texts(path, text_column=text_column))
    assert str(streamed.value) == str(whole.value)
    return str(streamed.value)


def test_user_errors_read_like_read_table(tmp_path: Path) -> None:
    assert "does not exist" in _same_error_as_read_table(tmp_path / "missing.csv")
    (tmp_path / "texts.xlsx").write_text("x", encoding="utf-8")
    assert "unsupported extension" in _same_error_as_read_table(tmp_path / "texts.xlsx")
    (tmp_path / "blank.txt").write_text(" \n\n", encoding="utf-8")
    assert "is empty" in _same_error_as_read_table(tmp_path / "blank.txt")
    (tmp_path / "header.csv").write_text("text,label\n", encoding="utf-8")
    assert "no data rows" in _same_error_as_read_table(tmp_path / "header.csv")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{oops\n', encoding="utf-8")
    assert "line 2 is not valid JSON" in _same_error_as_read_table(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_unknown_column_names_the_existing_ones(suffix: str, tmp_path: Path) -> None:
    path = WRITERS[suffix](tmp_path / f"texts{suffix}", TEXTS)
    message = _same_error_as_read_table(path, text_column="review")
    assert "'review'" in message and "'id', 'text'" in message


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl"])
def test_non_utf8_names_the_byte_offset_and_line(suffix: str, tmp_path: Path) -> None:
    # Past the first 1 MiB block, right after a multi-byte character: offsets must be exact.
    lines = ["text"] + [f"line {i} é" for i in range(60_000)]
    path = tmp_path / f"latin{suffix}"
    if suffix == ".jsonl":
        lines = [json.dumps({"text": t}) for t in lines]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8") + b"caf\xe9\nmore\n")
    message = _same_error_as_read_table(path)
    assert "byte 0xe9" in message and f"line {len(lines) + 1})" in message


def test_count_rows_where_it_is_cheap(tmp_path: Path) -> None:
    assert count_rows(_write_txt(tmp_path / "a.txt", TEXTS)) == len(TEXTS)
    (tmp_path / "b.txt").write_text("one\ntwo", encoding="utf-8")  # no final newline
    assert count_rows(tmp_path / "b.txt") == 2
    assert count_rows(_write_parquet(tmp_path / "c.parquet", TEXTS)) == len(TEXTS)
    # A quoted text can span lines, so counting a CSV's lines would be wrong: no total.
    assert count_rows(_write_csv(tmp_path / "d.csv", TEXTS)) is None


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl"])
def test_iter_texts_does_not_read_the_whole_file(suffix: str, tmp_path: Path) -> None:
    texts = [f"short text number {i}" for i in range(200_000)]
    path = WRITERS[suffix](tmp_path / f"big{suffix}", texts)
    assert path.stat().st_size > 4_000_000
    tracemalloc.start()
    try:
        chunks = iter_texts(path, chunk_rows=1000)
        first = next(chunks)
        _, peak = tracemalloc.get_traced_memory()
        chunks.close()
    finally:
        tracemalloc.stop()
    assert first == texts[:1000]
    # The whole file as bytes is > 4 MB, as 200k str objects ~14 MB; one chunk of 1000
    # texts plus the readers' buffers stays well under 2 MB.
    assert peak < 2_000_000, peak


# ---------------------------------------------------------------------------- predicting -----
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_stream_output_equals_predict_proba(
    clf: NanoNetClassifier, texts_csv: Path, tmp_path: Path, suffix: str
) -> None:
    output = tmp_path / f"preds{suffix}"
    stats = predict_stream(clf, texts_csv, output, chunk_rows=3, batch_size=2, progress=False)
    assert stats["rows"] == stats["total"] == len(TEXTS) and stats["skipped"] == 0
    frame = pd.read_csv(output) if suffix == ".csv" else pd.read_json(output, lines=True)
    assert list(frame.columns) == output_columns(clf.label_names)
    assert frame["row"].tolist() == list(range(len(TEXTS)))
    expected = clf.predict_proba(TEXTS)
    np.testing.assert_allclose(frame[["prob_neg", "prob_pos"]].to_numpy(), expected, atol=1e-6)
    assert frame["label"].tolist() == [clf.label_names[i] for i in expected.argmax(-1)]


def test_empty_texts_are_predicted_and_warned_about_once(
    clf: NanoNetClassifier, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = _write_csv(tmp_path / "gaps.csv", ["good film", "", "bad", "   ", "", "ok"])
    output = tmp_path / "preds.csv"
    with caplog.at_level(logging.WARNING):
        stats = predict_stream(clf, source, output, chunk_rows=2, progress=False)
    assert stats["rows"] == 6 and stats["empty_texts"] == 3
    assert len(pd.read_csv(output)) == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3 empty or whitespace-only texts (output rows 1, 3, 4)" in warnings[0]


# ---------------------------------------------------------------------------- resuming -------
def _reference(clf: NanoNetClassifier, source: Path, output: Path) -> bytes:
    predict_stream(clf, source, output, chunk_rows=3, progress=False)
    return output.read_bytes()


def _assert_same_output(output: Path, full: bytes, kept: bytes) -> None:
    """The resumed file keeps what was written before the cut byte for byte and then reads as
    the uninterrupted one: the same rows and labels, probabilities equal to float32 noise
    (rows after the cut are batched with other neighbours, which moves the last bit)."""
    written = output.read_bytes()
    assert written.startswith(kept)
    assert len(written.splitlines()) == len(full.splitlines())
    read = pd.read_json if output.suffix == ".jsonl" else pd.read_csv
    a = read(output, lines=True) if output.suffix == ".jsonl" else read(output)
    b = read(io.BytesIO(full), lines=True) if output.suffix == ".jsonl" else read(io.BytesIO(full))
    assert list(a.columns) == list(b.columns)
    assert a["row"].tolist() == b["row"].tolist() and a["label"].tolist() == b["label"].tolist()
    probs = [c for c in a.columns if c.startswith("prob_")]
    np.testing.assert_allclose(a[probs].to_numpy(), b[probs].to_numpy(), atol=1e-6)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_after_a_cut_off_write(
    clf: NanoNetClassifier, texts_csv: Path, tmp_path: Path, suffix: str
) -> None:
    full = _reference(clf, texts_csv, tmp_path / f"full{suffix}")
    output = tmp_path / f"preds{suffix}"
    lines = full.splitlines(keepends=True)
    output.write_bytes(b"".join(lines[:5]) + lines[5][:7])  # a kill -9 in mid-line
    stats = predict_stream(clf, texts_csv, output, chunk_rows=3, resume=True, progress=False)
    done = 4 if suffix == ".csv" else 5  # complete data rows before the cut
    assert (stats["skipped"], stats["rows"]) == (done, len(TEXTS) - done)
    _assert_same_output(output, full, b"".join(lines[: done + (suffix == ".csv")]))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_after_ctrl_c_gives_the_uninterrupted_output(
    clf: NanoNetClassifier,
    texts_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
) -> None:
    full = _reference(clf, texts_csv, tmp_path / f"full{suffix}")
    output = tmp_path / f"preds{suffix}"
    real = clf.predict_proba
    calls = []

    def interrupt_second_chunk(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(texts, batch_size)

    monkeypatch.setattr(clf, "predict_proba", interrupt_second_chunk)
    with pytest.raises(StreamInterrupted) as stopped:
        predict_stream(clf, texts_csv, output, chunk_rows=3, progress=False)
    assert stopped.value.rows == 3
    kept = output.read_bytes()
    assert full.startswith(kept)
    monkeypatch.undo()
    stats = predict_stream(clf, texts_csv, output, chunk_rows=3, resume=True, progress=False)
    assert stats["skipped"] == 3
    _assert_same_output(output, full, kept)


def test_resume_of_a_finished_output_writes_nothing(
    clf: NanoNetClassifier, texts_csv: Path, tmp_path: Path
) -> None:
    output = tmp_path / "preds.csv"
    full = _reference(clf, texts_csv, output)
    stats = predict_stream(clf, texts_csv, output, resume=True, progress=False)
    assert (stats["skipped"], stats["rows"]) == (len(TEXTS), 0)
    assert output.read_bytes() == full


def test_resume_with_another_models_output_is_refused(
    clf: NanoNetClassifier, tiny_bert: Path, texts_csv: Path, tmp_path: Path
) -> None:
    output = tmp_path / "preds.csv"
    full = _reference(clf, texts_csv, output)
    other = _classifier(tiny_bert, ["spam", "ham"])
    with pytest.raises(NanoNetError, match="another model"):
        predict_stream(other, texts_csv, output, resume=True, progress=False)
    assert output.read_bytes() == full


def test_resume_refuses_a_file_it_did_not_write(
    clf: NanoNetClassifier, texts_csv: Path, tmp_path: Path
) -> None:
    output = tmp_path / "notes.csv"
    output.write_text("keep me", encoding="utf-8")  # no newline: not a partial line of ours
    with pytest.raises(NanoNetError, match="another model or program"):
        predict_stream(clf, texts_csv, output, resume=True, progress=False)
    assert output.read_text(encoding="utf-8") == "keep me"


def test_resume_with_a_shorter_input_is_refused(
    clf: NanoNetClassifier, texts_csv: Path, tmp_path: Path
) -> None:
    output = tmp_path / "preds.csv"
    _reference(clf, texts_csv, output)
    shorter = _write_csv(tmp_path / "short.csv", TEXTS[:4])
    with pytest.raises(NanoNetError, match="another input"):
        predict_stream(clf, shorter, output, resume=True, progress=False)


# ---------------------------------------------------------------------------- command line ---
def test_cli_predicts_txt_to_jsonl_with_row_numbers(model_dir: Path, tmp_path: Path) -> None:
    source = _write_txt(tmp_path / "texts.txt", TEXTS)
    output = tmp_path / "preds.jsonl"
    assert _cli(model_dir, source, output, "--chunk-rows", "4") == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [r["row"] for r in records] == list(range(len(TEXTS)))


def test_cli_interrupt_says_how_to_resume(
    model_dir: Path,
    texts_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "preds.csv"
    real = NanoNetClassifier.predict_proba
    calls = []

    def interrupt_second_chunk(
        self: NanoNetClassifier, texts: Sequence[str], batch_size: int = 64
    ) -> np.ndarray:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, texts, batch_size)

    monkeypatch.setattr(NanoNetClassifier, "predict_proba", interrupt_second_chunk)
    assert _cli(model_dir, texts_csv, output, "--chunk-rows", "4") == 130
    err = capsys.readouterr().err
    assert "interrupted after 4 rows; re-run with --resume to continue." in err
    assert "nothing was written" not in err
    monkeypatch.undo()
    assert _cli(model_dir, texts_csv, output, "--chunk-rows", "4", "--resume") == 0
    assert pd.read_csv(output)["row"].tolist() == list(range(len(TEXTS)))


def test_cli_existing_output_mentions_resume_and_overwrite(
    model_dir: Path, texts_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "preds.csv"
    output.write_text("keep me\n", encoding="utf-8")
    message = _user_error(capsys, _cli(model_dir, texts_csv, output))
    assert "--resume" in message and "--overwrite" in message
    message = _user_error(capsys, _cli(model_dir, texts_csv, output, "--resume", "--overwrite"))
    assert "pass one" in message
    assert output.read_text(encoding="utf-8") == "keep me\n"


def test_cli_resume_header_mismatch_is_a_user_error(
    model_dir: Path, texts_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "preds.csv"
    output.write_text("row,label,prob_spam,prob_ham\n0,spam,0.5,0.5\n", encoding="utf-8")
    assert "another model" in _user_error(capsys, _cli(model_dir, texts_csv, output, "--resume"))


@pytest.mark.parametrize(
    ("extra", "words"),
    [(["--chunk-rows", "0"], "--chunk-rows"), (["--text-column", "review"], "'review'")],
)
def test_cli_bad_options_fail_before_loading_the_model(
    texts_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    words: str,
) -> None:
    # The model folder does not exist: the error must be about the option, found first.
    code = _cli(tmp_path / "no-model", texts_csv, tmp_path / "preds.csv", *extra)
    assert words in _user_error(capsys, code)
    assert not (tmp_path / "preds.csv").exists()


def test_cli_json_document_input_is_read_once(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "texts.json"
    source.write_text(json.dumps([{"text": t} for t in TEXTS], indent=2), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert _cli(model_dir, source, tmp_path / "preds.csv") == 0
    assert len(pd.read_csv(tmp_path / "preds.csv")) == len(TEXTS)
    assert sum("read whole" in r.getMessage() for r in caplog.records) == 1
