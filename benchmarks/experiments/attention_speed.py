"""Does fused (SDPA) attention explain why sentence-transformers runs MiniLM-L3 faster?

    .venv/bin/python benchmarks/experiments/attention_speed.py bbc_news out.json

At 256 tokens, `setfit-minilm-l3` (sentence-transformers' `encode`) timed 53 docs/s on bbc_news
where our predictor ran the same body at 35. Our encoders were loaded with eager attention
(materialised [T, T] scores); sentence-transformers loads BERT with SDPA. This times the
MiniLM-L3 predictor (untrained head: weights do not change speed) on the benchmark's throughput
sample, batch 64, 2 threads, with each attention implementation and at several read lengths,
with sentence-transformers' `encode` as the reference. Nothing else may run meanwhile.
"""

import json
import sys

from nanonet.bench.config import load_bench_config
from nanonet.bench.environment import pin_threads, provenance
from nanonet.bench.measure import throughput_sample
from nanonet.models.assets import encoder_dir
from nanonet.models.encoder import load_hf_encoder
from nanonet.models.speed import docs_per_second, untrained_classifier
from nanonet.train.config import DataConfig
from nanonet.train.run import load_task

LENGTHS = (256, 128)
REPEATS = 3


def main(dataset: str, out: str) -> None:
    pin_threads(2)
    bench = load_bench_config("benchmarks/configs/protocol.yaml")
    data = load_task(DataConfig(dataset=dataset, labels_per_class=10), 0)
    ids = throughput_sample(len(data.test_texts), bench.dataset(dataset).throughput_texts)
    texts = [data.test_texts[i] for i in ids]
    folder = str(encoder_dir("minilm-l3"))
    rows = []
    for length in LENGTHS:
        for attention in ("eager", "sdpa"):
            hf, tok = load_hf_encoder(folder, attention=attention)
            clf = untrained_classifier(hf, tok, len(data.label_names), length)
            runs = [
                docs_per_second(lambda t, c=clf: c.predict(t, batch_size=64), texts)
                for _ in range(REPEATS)
            ]
            rows.append({"reader": f"nanonet ({attention})", "length": length, "docs_per_s": runs})
            print(rows[-1], flush=True)
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(folder, device="cpu")
        st.max_seq_length = length
        runs = [
            docs_per_second(lambda t, s=st: s.encode(t, batch_size=64), texts)
            for _ in range(REPEATS)
        ]
        attention = st[0].auto_model.config._attn_implementation
        rows.append(
            {"reader": f"sentence-transformers ({attention})", "length": length, "docs_per_s": runs}
        )
        print(rows[-1], flush=True)
    record = {
        **provenance(threads=2),
        "texts": len(texts),
        "rows": rows,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
