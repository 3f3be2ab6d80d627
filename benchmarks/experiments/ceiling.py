"""Student capacity: train on 4,000 TRUE labels from the train split, score on the dev split."""

import sys
import time

import numpy as np
import torch
from devsplit import train_order

from nanonet.bench.methods.encoders import build_encoder
from nanonet.data.batching import bucketed_epochs, length_sorted_batches, pad_batch
from nanonet.data.builtin import load_builtin_splits
from nanonet.models import peft
from nanonet.models.encoder import Backbone, EncoderClassifier
from nanonet.models.peft import apply_lora, inject_missing_biases, set_trainable

torch.set_num_threads(int(sys.argv[2]))
sp = load_builtin_splits("rotten_tomatoes")
order = train_order(sp)
dev, big = order[:1000], order[1000:5000]
y = torch.tensor(sp.train_labels)
for spec in sys.argv[1].split(";"):
    enc, mode, epochs = spec.split(",")
    torch.manual_seed(0)
    hf, tok = build_encoder(enc)
    inject_missing_biases(hf)
    m = EncoderClassifier(Backbone(hf), 2, 0.1)
    if mode.startswith("lora"):
        # lora: query/value only (the default); lora-all: every Linear in the layers;
        # lora16: rank 16 on query/value.
        targets = peft.LORA_TARGETS
        if mode == "lora-all":
            peft.LORA_TARGETS = (*targets, "k", "o", "key", "dense")
        apply_lora(m.backbone, 16 if mode == "lora16" else 8)
        peft.LORA_TARGETS = targets
        mode = "lora"
    set_trainable(m, mode, 0)
    if mode == "lora":
        for n, p in m.named_parameters():
            if n.endswith("bias"):
                p.requires_grad = True
    groups = [
        {
            "params": [
                p for n, p in m.named_parameters() if p.requires_grad and n.startswith("head.")
            ],
            "lr": 1e-2,
        },
        {
            "params": [
                p
                for n, p in m.named_parameters()
                if p.requires_grad and not n.startswith("head.") and n.endswith("bias")
            ],
            "lr": 1e-3 if mode != "full" else 5e-5,
        },
        {
            "params": [
                p
                for n, p in m.named_parameters()
                if p.requires_grad and not n.startswith("head.") and not n.endswith("bias")
            ],
            "lr": 1e-3 if mode == "lora" else 5e-5,
        },
    ]
    opt = torch.optim.AdamW([g for g in groups if g["params"]])
    ids = tok([sp.train_texts[i] for i in big], truncation=True, max_length=128)["input_ids"]
    yb = y[big]
    rng = np.random.default_rng(0)
    it = bucketed_epochs([len(x) for x in ids], 32, rng)
    steps = int(epochs) * len(ids) // 32
    t = time.time()
    m.train()
    for _s in range(steps):
        b = next(it)
        loss = torch.nn.functional.cross_entropy(
            m(*pad_batch([ids[i] for i in b], tok.pad_token_id)), yb[b]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    dids = tok([sp.train_texts[i] for i in dev], truncation=True, max_length=128)["input_ids"]
    pred = torch.zeros(len(dev), dtype=torch.long)
    with torch.no_grad():
        for b in length_sorted_batches([len(x) for x in dids], 64):
            pred[b] = m(*pad_batch([dids[i] for i in b], tok.pad_token_id)).argmax(-1)
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    total = sum(p.numel() for p in m.parameters())
    print(
        spec,
        "dev acc",
        round(float((pred == y[dev]).float().mean()), 4),
        f"trainable {trainable} ({100 * trainable / total:.2f}%)",
        f"{time.time() - t:.0f}s",
        flush=True,
    )
