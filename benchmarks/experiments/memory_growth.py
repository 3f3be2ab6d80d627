"""Resident memory over a NanoNet run, step by step: does a run's peak come from what it holds
(caches, models) or from growth that nothing holds (the allocator's fragmentation)?

    .venv/bin/python benchmarks/experiments/memory_growth.py 20newsgroups 0 \
        [--mmap-threshold BYTES] [--trim-every STEPS] [section.key=value ...]

Prints, every 20 steps and at each phase, the process's current RSS (/proc/self/statm), its
peak (`ru_maxrss`), what the frozen-bottom cache stores and the heap glibc holds
(`mallinfo2`'s arena, free inside it in brackets). `--mmap-threshold` calls
`mallopt(M_MMAP_THRESHOLD, BYTES)` first, which fixes glibc's threshold (by default it rises
after the first large free, up to 32 MB, and later large tensors then come from a heap that
seldom shrinks). `--trim-every` calls `release_free_memory()` (nanonet/memory.py:
`malloc_trim(0)`) every that many steps and at each phase, which hands the heap's free pages
back to the system; the trainer's own calls are switched off, so each option runs alone.
"""

import ctypes
import os
import resource
import sys
import time
from typing import Any

from memory_phases import training_run

from nanonet.memory import release_free_memory
from nanonet.train import trainer as trainer_module

M_MMAP_THRESHOLD = -3
PAGE = os.sysconf("SC_PAGE_SIZE")
T0 = time.time()


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = MallInfo2


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def heap() -> str:
    info = LIBC.mallinfo2()
    return f"heap {info.arena / 2**20:6.0f} MB ({info.fordblks / 2**20:5.0f} free)"


def main(dataset: str, seed: int, args: list[str]) -> None:
    if args and args[0] == "--mmap-threshold":
        LIBC.mallopt(M_MMAP_THRESHOLD, int(args[1]))
        args = args[2:]
    trim = 0
    if args and args[0] == "--trim-every":
        trim, args = int(args[1]), args[2:]
    # The trainer's own hand-backs off, so that the options below are what is compared.
    trainer_module.release_free_memory = lambda: False  # type: ignore[attr-defined]
    trainer_cls = trainer_module.NanoNetTrainer
    current: list[Any] = []

    def line(what: str) -> None:
        trainer = current[0] if current else None
        cache = getattr(trainer, "cache", None)
        stored = cache.stored_bytes / 2**20 if cache is not None else 0.0
        print(
            f"{what:42s} {time.time() - T0:5.0f} s rss {rss_mb():6.0f} peak {peak_mb():6.0f}",
            f"cache {stored:5.0f} {heap()}",
            flush=True,
        )

    def phase(self: trainer_module.NanoNetTrainer, name: str) -> None:
        if trim:
            release_free_memory()
        line(f"phase: {name}")

    def on_step(logs: dict[str, Any]) -> None:
        if trim and logs["step"] % trim == 0:
            release_free_memory()
        if logs["step"] % 20 == 0:
            line(f"  {logs['phase']} step {logs['step']}")

    trainer_cls._phase = phase  # type: ignore[method-assign]
    task, cfg = training_run(dataset, seed, args)
    line("data loaded")
    t0 = time.time()
    trainer = trainer_cls(task, cfg, on_step=on_step, progress=False)
    current.append(trainer)
    trainer.train()
    line(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
