"""`run_server`: load a saved model and serve it with uvicorn (what `nanonet serve` calls)."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from nanonet.errors import NanoNetError
from nanonet.models.device import add_device_argument
from nanonet.models.model_folder import LOAD_BACKENDS
from nanonet.serve.limits import ServeSettings


def run_server(
    model_dir: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "torch",
    max_batch: int = 64,
    max_wait_ms: float = 5.0,
    max_texts: int = 256,
    max_chars: int = 20000,
    threads: int | None = None,
    device: str = "auto",
) -> None:
    """Serve `model_dir` until Ctrl-C / SIGTERM. `port=0` picks a free port (printed).

    User mistakes (missing folder, bad setting, port in use) raise NanoNetError before serving.
    """
    import uvicorn

    from nanonet.serve.app import create_app

    ServeSettings(max_batch, max_wait_ms, max_texts, max_chars).check()  # before the slow load
    _set_threads(threads)
    from nanonet.models.classifier import load_classifier

    classifier = load_classifier(model_dir, backend, device)
    app = create_app(
        classifier,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_texts=max_texts,
        max_chars=max_chars,
        backend=backend,
        name=Path(model_dir).resolve().name,
    )
    # The first call pays for lazy kernel setup; pay it before the first client does.
    classifier.predict_proba(["warm-up"], batch_size=1)
    sock = bind_socket(host, port)
    url_host = f"[{host}]" if ":" in host else host
    print(
        f"nanonet: serving {model_dir} on http://{url_host}:{sock.getsockname()[1]} "
        f"({classifier.device}; docs at /docs)",
        flush=True,
    )
    # Access logs cost latency on every request; warnings and errors still show.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C, then re-raises it: that is a normal stop.
        print("nanonet: server stopped.", flush=True)
    finally:
        sock.close()


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise NanoNetError(f"threads must be at least 1, not {threads}.")
    import torch

    torch.set_num_threads(threads)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind here rather than inside uvicorn: a clear error if the port is taken, and port 0."""
    if not 0 <= port <= 65535:
        raise NanoNetError(f"port must be between 0 and 65535, not {port}.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
    # without it every keep-alive response stalls ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise NanoNetError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port "
            "or --host."
        ) from exc
    sock.set_inheritable(True)
    return sock


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The `nanonet serve` options, named like run_server's arguments."""
    parser.add_argument("--model", required=True, help="a folder written by `nanonet train`")
    parser.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--backend", choices=LOAD_BACKENDS, default="torch")
    parser.add_argument("--max-batch", type=int, default=64, help="most texts per model call")
    parser.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="how long a request waits for company"
    )
    parser.add_argument("--max-texts", type=int, default=256, help="most texts per request")
    parser.add_argument("--max-chars", type=int, default=20000, help="most characters per text")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    add_device_argument(parser)


def serve_from_args(args: argparse.Namespace) -> int:
    run_server(
        args.model,
        host=args.host,
        port=args.port,
        backend=args.backend,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        threads=args.threads,
        device=args.device,
    )
    return 0
