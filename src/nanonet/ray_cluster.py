"""Joining a Ray cluster, shared by `nanonet predict --engine ray` and `nanonet train --engine
ray`. Ray is an optional dependency (`pip install 'nanonet[ray]'`) and is imported here only."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nanonet.errors import NanoNetError

log = logging.getLogger("nanonet")

INSTALL_HINT = "pip install 'nanonet[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise NanoNetError(
            f"--engine ray needs Ray, which is not installed; install it with `{INSTALL_HINT}`."
        ) from None
    return ray


@contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[Any]:
    """The `ray` module, connected: to the cluster at `address` (e.g. ray://head:10001 or
    `auto`), or to a local instance of `workers` CPUs that listens on loopback only and is
    shut down at the end. A session already connected in this process is reused as it is."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    # Ray's own workers would otherwise also print every log line of ours on the driver.
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise NanoNetError(
                f"Could not connect to the Ray cluster at {address}: {exc}"
            ) from None
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a laptop
        ray.init(
            # "local": a new instance even where RAY_ADDRESS or a `ray start` cluster would
            # otherwise be joined, so that the instance is the loopback-only one asked for.
            address="local",
            num_cpus=workers,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **options,
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def quiet_ray_data() -> None:
    # Ray Data prints its execution plan to stderr at INFO; the CLI prints one line per run.
    # Ray Data's log file in the session folder keeps everything.
    import ray.data  # configures the ray.data logger on first import

    # Errors too: one that ends the run comes back to us as an exception, and a bad input
    # file is then said in one sentence instead of Ray's two full tracebacks.
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.CRITICAL)
    # Our progress bars count texts; Ray's would count blocks.
    ray.data.DataContext.get_current().enable_progress_bars = False
