"""HTTP serving: `create_app` (FastAPI, micro-batched) and `run_server` (uvicorn)."""

from __future__ import annotations

from nanonet.models.classifier import load_classifier
from nanonet.serve.app import create_app
from nanonet.serve.server import add_serve_arguments, run_server, serve_from_args

__all__ = ["add_serve_arguments", "create_app", "load_classifier", "run_server", "serve_from_args"]
