"""`python -m nanonet.serve --model DIR [...]`: the same server as `nanonet serve`."""

from __future__ import annotations

import argparse
import sys

from nanonet.errors import NanoNetError
from nanonet.serve.server import add_serve_arguments, serve_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanonet.serve", description=__doc__)
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    # transformers' load reports are noise here, as in the nanonet CLI.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return serve_from_args(args)
    except NanoNetError as exc:
        print(f"nanonet: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
