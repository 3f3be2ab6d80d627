"""`python -m nanonet ...`: the `nanonet` command (used where the console script may not be on
PATH, e.g. the labelling page starting a training run)."""

from __future__ import annotations

import sys

from nanonet.cli import main

if __name__ == "__main__":
    sys.exit(main())
