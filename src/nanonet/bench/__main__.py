"""`python -m nanonet.bench --config benchmarks/configs/protocol.yaml [filters]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nanonet.bench.harness import add_bench_arguments, bench_from_args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nanonet.bench",
        description="Run the benchmark protocol (one process per dataset/method/seed; stored "
        "results are skipped) and regenerate the report.",
    )
    add_bench_arguments(parser)
    return bench_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
