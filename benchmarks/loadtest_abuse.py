"""`nanonet serve` under abuse: well-formed traffic keeps working while others misbehave.

    python benchmarks/loadtest_abuse.py --model DIR [--backend onnx-int8] [--seconds 60]
        [--clients 64] [--abusers 4] [--tricklers 4] [--warmup-seconds 10]

Starts the server on a free loopback port (as benchmarks/loadtest.py does), warms it up with
`--clients` well-formed clients, reads its RSS, then for `--seconds` runs at once:
- `--clients` closed-loop clients sending well-formed requests (each must get a 200);
- `--abusers` clients cycling through the bad requests of ABUSE (malformed JSON, wrong types,
  oversized bodies, too many or too long texts, a form post, an empty body): each must get its
  4xx, never a 5xx or a dropped connection;
- `--tricklers` clients that send a well-formed request one small piece every 20 ms over a raw
  socket (a slow client must not hold up anyone else, and gets its 200), and now and then give
  up half-way through a body (the server must drop the connection without harm).
Then reads the RSS again. Writes benchmarks/results/loadtest_abuse.json and the "Under abuse"
section of benchmarks/LOADTEST.md. Bar (issue 25): 0 errors for well-formed requests, a 4xx for
every bad one, and the RSS at the end within 10% of the RSS after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from loadtest import (
    ABUSE_SECTION,
    _one_request,
    _pcts,
    _versions,
    add_server_arguments,
    load_texts,
    running_server,
)

from nanonet.bench.environment import git_commit, machine

ROOT = Path(__file__).resolve().parents[1]
JSON = {"content-type": "application/json"}
SECTION = ABUSE_SECTION


@dataclass(frozen=True)
class Bad:
    """A bad request and the status it must get."""

    name: str
    status: int
    body: bytes
    headers: dict[str, str]


def abuse_catalogue(max_texts: int, max_chars: int, max_body: int) -> list[Bad]:
    def js(obj: Any) -> bytes:
        return json.dumps(obj).encode()

    return [
        Bad("malformed JSON", 422, b'{"text": "good', JSON),
        Bad("not JSON at all", 422, b"\x00\xff\xfe garbage", JSON),
        Bad("text is a number", 422, js({"text": 5}), JSON),
        Bad("texts is a string", 422, js({"texts": "good"}), JSON),
        Bad("texts holds a null", 422, js({"texts": ["good", None]}), JSON),
        Bad("a JSON list", 422, js(["good"]), JSON),
        Bad("unknown key", 422, js({"txt": "good"}), JSON),
        Bad("empty body", 422, b"", JSON),
        Bad("form post", 422, b"text=good", {"content-type": "application/x-www-form-urlencoded"}),
        Bad("too many texts", 413, js({"texts": ["good"] * (max_texts + 1)}), JSON),
        Bad("a text too long", 413, js({"text": "a" * (max_chars + 1)}), JSON),
        Bad("body over the byte cap", 413, b'{"text": "' + b"a" * (max_body + 1) + b'"}', JSON),
    ]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not (Path(args.model) / "nanonet.json").is_file():
        print(f"loadtest_abuse: {args.model} is not a NanoNet model folder.", file=sys.stderr)
        return 2
    try:
        with running_server(args, with_process=True) as (url, proc):
            results = measure(url, proc.pid, load_texts(), args)
    except KeyboardInterrupt:
        print("loadtest_abuse: interrupted; the server was stopped, nothing was written.")
        return 130
    results["command"] = shlex.join(["python", *sys.argv])
    write_results(results, Path(args.out), Path(args.markdown))
    print(markdown(results))
    return 0 if results["bar_met"] else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="a folder written by `nanonet train`")
    p.add_argument("--backend", choices=["torch", "packed", "onnx", "onnx-int8"], default="torch")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup-seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=64, help="well-formed closed-loop clients")
    p.add_argument("--abusers", type=int, default=4)
    p.add_argument("--tricklers", type=int, default=4)
    add_server_arguments(p)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/loadtest_abuse.json"))
    p.add_argument("--markdown", default=str(ROOT / "benchmarks/LOADTEST.md"))
    return p


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


# ---------------------------------------------------------------------------- measure -------
def measure(url: str, pid: int, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    meta = httpx.get(f"{url}/metadata", timeout=10).json()
    limits = meta["limits"]
    max_body = limits["max_texts"] * (6 * limits["max_chars"] + 8) + 4096  # as the server's cap
    catalogue = abuse_catalogue(limits["max_texts"], limits["max_chars"], max_body)
    print(f"loadtest_abuse: warm-up, {args.clients} clients for {args.warmup_seconds:g} s ...")
    warm = asyncio.run(run_all(url, texts, catalogue, args, args.warmup_seconds, abuse=False))
    rss_warm = rss_mb(pid)
    print(f"loadtest_abuse: RSS after warm-up {rss_warm} MB; {args.seconds:g} s under abuse ...")
    run = asyncio.run(run_all(url, texts, catalogue, args, args.seconds, abuse=True))
    time.sleep(1.0)  # let the server finish what the last clients left
    rss_end = rss_mb(pid)
    healthy = httpx.get(f"{url}/health", timeout=10).status_code == 200
    growth = (rss_end - rss_warm) / rss_warm
    bar = {
        "well_formed_errors_0": run["well_formed"]["errors"] == 0
        and warm["well_formed"]["errors"] == 0,
        "every_bad_request_4xx": run["bad"]["wrong"] == 0 and run["bad"]["sent"] > 0,
        "tricklers_answered": run["trickle"]["errors"] == 0 and run["trickle"]["completed"] > 0,
        "rss_within_10pct": abs(growth) <= 0.10,
        "healthy_after": healthy,
    }
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "git_commit": git_commit(),
        "versions": _versions(),
        "model": {"dir": str(Path(args.model).resolve()), "name": meta["name"]},
        "server": {
            "backend": meta["backend"],
            "threads": args.threads,
            **meta["batching"],
            **limits,
        },
        "clients": args.clients,
        "abusers": args.abusers,
        "tricklers": args.tricklers,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup_seconds,
        "warmup": warm,
        "run": run,
        "rss_mb": {"after_warmup": rss_warm, "end": rss_end, "growth": round(growth, 4)},
        "bar": bar,
        "bar_met": all(bar.values()),
    }


async def run_all(
    url: str,
    texts: list[str],
    catalogue: list[Bad],
    args: argparse.Namespace,
    seconds: float,
    abuse: bool,
) -> dict[str, Any]:
    stop_at = time.perf_counter() + seconds
    latencies: list[float] = []
    errors: list[str] = []
    bad: Counter[str] = Counter()
    wrong: list[str] = []
    trickle: Counter[str] = Counter()
    n = args.clients + (args.abusers if abuse else 0)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def well_formed(k: int) -> None:
            i = k
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                error = await _one_request(client, texts[i % len(texts)])
                i += args.clients
                if error is None:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors.append(error)

        async def abuser(k: int) -> None:
            i = k
            while time.perf_counter() < stop_at:
                case = catalogue[i % len(catalogue)]
                i += 1
                try:
                    r = await client.post("/predict", content=case.body, headers=case.headers)
                    status = r.status_code
                except httpx.HTTPError as exc:
                    status, r = 0, None
                    wrong.append(f"{case.name}: {type(exc).__name__}")
                bad["sent"] += 1
                bad[f"{case.name} -> {status}"] += 1
                if status != case.status and r is not None:
                    wrong.append(f"{case.name}: HTTP {status} (expected {case.status})")

        async def trickler(k: int) -> None:
            host, port = url.removeprefix("http://").split(":")
            i = k
            while time.perf_counter() < stop_at:
                i += 1
                outcome = await _trickle(host, int(port), texts[i % len(texts)], give_up=i % 4 == 0)
                trickle[outcome] += 1

        jobs = [well_formed(k) for k in range(args.clients)]
        if abuse:
            jobs += [abuser(k) for k in range(args.abusers)]
            jobs += [trickler(k) for k in range(args.tricklers)]
        start = time.perf_counter()
        await asyncio.gather(*jobs)
        elapsed = time.perf_counter() - start
    return {
        "well_formed": {
            "requests": len(latencies) + len(errors),
            "errors": len(errors),
            "error_samples": errors[:5],
            "req_per_s": round(len(latencies) / elapsed, 1),
            **_pcts(latencies),
        },
        "bad": {
            "sent": bad.pop("sent", 0),
            "wrong": len(wrong),
            "wrong_samples": wrong[:5],
            "by_case": dict(sorted(bad.items())),
        },
        "trickle": {
            "completed": trickle["200"],
            "abandoned": trickle["abandoned"],
            "errors": sum(v for k, v in trickle.items() if k not in ("200", "abandoned")),
            "outcomes": dict(trickle),
        },
    }


async def _trickle(host: str, port: int, text: str, give_up: bool, piece: int = 8) -> str:
    """A well-formed request sent `piece` bytes every 20 ms; "200", "abandoned" (closed
    half-way through the body, on purpose) or what went wrong."""
    body = json.dumps({"text": text}).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    data = head + (body[: len(body) // 2] if give_up else body)
    try:
        reader, writer = await asyncio.open_connection(host, port)
        for i in range(0, len(data), piece):
            writer.write(data[i : i + piece])
            await writer.drain()
            await asyncio.sleep(0.02)
        if give_up:
            writer.close()
            return "abandoned"
        status_line = await asyncio.wait_for(reader.readline(), timeout=60)
        await asyncio.wait_for(reader.read(), timeout=60)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        return f"{type(exc).__name__}"
    parts = status_line.split()
    return parts[1].decode() if len(parts) > 1 else f"bad status line {status_line!r}"


# ---------------------------------------------------------------------------- output --------
def write_results(results: dict[str, Any], out: Path, md: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    text = md.read_text(encoding="utf-8") if md.is_file() else ""
    text = text.split(f"\n{SECTION}\n")[0].rstrip("\n")  # replace an earlier section
    md.write_text((text + "\n\n" if text else "") + markdown(results) + "\n", encoding="utf-8")
    print(f"loadtest_abuse: wrote {out} and the '{SECTION}' section of {md}")


def markdown(r: dict[str, Any]) -> str:
    m, run, rss, bar = r["machine"], r["run"], r["rss_mb"], r["bar"]
    wf, bad, tr = run["well_formed"], run["bad"], run["trickle"]
    cases = "; ".join(f"{k}: {v}" for k, v in bad["by_case"].items())
    yes = {True: "met", False: "NOT met"}
    return "\n".join(
        [
            SECTION,
            "",
            f"{r['date']} · commit `{r['git_commit'][:12]}` · {m['cpu']}, {m['cores']} cores · "
            f"backend {r['server']['backend']} · generated by `benchmarks/loadtest_abuse.py`",
            "",
            f"{r['clients']} well-formed closed-loop clients for {r['seconds']:g} s (after "
            f"{r['warmup_seconds']:g} s of warm-up), alongside {r['abusers']} clients sending "
            f"bad requests and {r['tricklers']} that trickle theirs 8 bytes per 20 ms (every "
            "fourth gives up half-way). Client and server share the CPU.",
            "",
            "| traffic | requests | errors / wrong answers | req/s | p50 ms | p99 ms |",
            "|---|---:|---:|---:|---:|---:|",
            f"| well-formed | {wf['requests']} | {wf['errors']} | {wf['req_per_s']:.1f} | "
            f"{wf['p50_ms']:.1f} | {wf['p99_ms']:.1f} |",
            f"| bad (each must get its 4xx) | {bad['sent']} | {bad['wrong']} | | | |",
            f"| trickled, completed / abandoned | {tr['completed']} / {tr['abandoned']} | "
            f"{tr['errors']} | | | |",
            "",
            f"Bad requests by case and status: {cases}.",
            "",
            f"Server RSS: {rss['after_warmup']:.0f} MB after warm-up, {rss['end']:.0f} MB at the "
            f"end ({rss['growth']:+.1%}).",
            "",
            "Bar: well-formed 0 errors: "
            f"{yes[bar['well_formed_errors_0']]}; every bad request a 4xx: "
            f"{yes[bar['every_bad_request_4xx']]}; slow clients answered: "
            f"{yes[bar['tricklers_answered']]}; RSS within 10%: {yes[bar['rss_within_10pct']]}; "
            f"healthy after: {yes[bar['healthy_after']]}.",
            "",
            f"Command: `{r['command']}`",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
