"""The benchmark harness of ../shared/docs/benchmark.md.

    python -m nanonet.bench --config benchmarks/configs/protocol.yaml   (or `make bench`)

config.py    the YAML: datasets, seeds, methods and their settings
harness.py   one child process per (dataset, method, seed); skip stored, record failures
run_one.py   the child: train, score, time, measure, write one result JSON
methods/     nanonet (and its ablations), setfit, setfit-distill, finetune, probe, tfidf
measure.py   scores, throughput (docs/s), size on disk
report.py    RESULTS.md and the plots, from the stored JSONs

The entry point for a command line is `nanonet.bench.harness.bench_main`. Nothing is imported
here, so that `python -m nanonet.bench.run_one` starts clean.
"""
