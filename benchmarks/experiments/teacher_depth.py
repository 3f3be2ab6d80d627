"""Stage 1 (the teacher's pair loss) at full depth: LoRA in every layer of MPNet vs bias terms of
its top 4 layers, and SetFit itself as the reference, on the dev split (never the test set).

Every variant ends in a logistic-regression head on the unit-length embeddings, so only the
encoder's adaptation differs. Usage:
    python teacher_depth.py THREADS 'variant,steps,lr,rank;...' [seeds] [noise seeds]
Noise seeds redraw stage 1's own randomness (adapters' start, dropout masks) for the same label
draw: how much of a result is the draw of that noise rather than of the labels.
variants: top4-bitfit | all-lora | all-lora-ffn | all-lora-avgK | setfit (steps/lr ignored for
setfit). all-lora-avgK trains stage 1 K times (noise draws K*n .. K*n+K-1) and averages the K
folded weight sets (a uniform soup: every draw starts from the same MPNet).
NANONET_PROBE_ONLY=1 skips the stages 2-3 replay (a third of the time).
NANONET_STAGE1_LEN=N: stage 1 reads the first N tokens of each labelled text (the run's
`train.contrastive_max_length`); the probe still reads the dataset's length.
NANONET_STAGE1_BATCH=B: stage 1 steps on batches drawn as the run draws them (`pair_batch`,
`train.contrastive_batch_size`) instead of every labelled text at once.
Labelled texts that fall in the dev split are left out of its score.
"""

import copy
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from devsplit import splits, train_order
from sklearn.linear_model import LogisticRegression

from nanonet.data.batching import length_sorted_batches, pad_batch, pair_batch
from nanonet.data.budget import sample_budget
from nanonet.models.assets import encoder_dir
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder, mean_pool
from nanonet.models.peft import (
    apply_lora,
    count_parameters,
    inject_missing_biases,
    merge_lora,
    set_trainable,
)
from nanonet.train.losses import pair_similarity_loss

torch.set_num_threads(int(sys.argv[1]))
SPECS = sys.argv[2]
SEEDS = [int(s) for s in sys.argv[3].split(",")] if len(sys.argv) > 3 else [0, 1, 2]
NOISE = [int(s) for s in sys.argv[4].split(",")] if len(sys.argv) > 4 else [0]
STAGE1_LEN = int(os.environ.get("NANONET_STAGE1_LEN", "0")) or None
STAGE1_BATCH = int(os.environ.get("NANONET_STAGE1_BATCH", "0")) or None
sp = splits()
dev = train_order(sp)[:1000]
y = np.array(sp.train_labels)
n_classes = len(set(sp.train_labels))
folder = encoder_dir("all-mpnet-base-v2")
hf0, tok = load_hf_encoder(folder)
inject_missing_biases(hf0)


def ids_of(texts):
    return tok(texts, truncation=True, max_length=sp.max_length)["input_ids"]


@torch.no_grad()
def embed_all(model, ids):
    out = torch.zeros(len(ids), model.backbone.hidden_size)
    for b in length_sorted_batches([len(x) for x in ids], 64):
        i, m = pad_batch([ids[j] for j in b], tok.pad_token_id)
        out[b] = mean_pool(model.backbone(i, m), m)
    return out


def dev_acc(pred):
    """Accuracy on the dev texts that are not among the label draw's (`scored`)."""
    return float((np.asarray(pred) == y[dev])[scored].mean())


def lr_acc(ptr, ytr, pdev):
    ptr = F.normalize(ptr, dim=-1).numpy()
    pdev = F.normalize(pdev, dim=-1).numpy()
    clf = LogisticRegression(max_iter=3000).fit(ptr, ytr)  # SetFit's head: C=1
    return dev_acc(clf.predict(pdev))


def wrap_ffn(module, rank):
    from nanonet.models.peft import LoRALinear

    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if name in ("k", "o", "key", "dense") and isinstance(child, torch.nn.Linear):
                setattr(parent, name, LoRALinear(child, rank, 2.0 * rank))
                n += 1
    return n


def pair_train(variant, seed, steps, lr, rank, texts, labels, noise=0):
    if variant.startswith("all-lora-avg"):
        k = int(variant.removeprefix("all-lora-avg"))
        runs = [
            stage1("all-lora", seed, steps, lr, rank, texts, labels, k * noise + d)
            for d in range(k)
        ]
        m, share = runs[0]
        soup = {n: sum(r[0].state_dict()[n] for r in runs) / k for n in m.state_dict()}
        m.load_state_dict(soup)
    else:
        m, share = stage1(variant, seed, steps, lr, rank, texts, labels, noise)
    ids = ids_of(texts)
    probe = lr_acc(embed_all(m, ids), labels, embed_all(m, dev_ids))
    ce = (
        float("nan")
        if os.environ.get("NANONET_PROBE_ONLY")
        else ce_stages(m, ids, torch.tensor(labels), seed)
    )
    return probe, ce, share


def stage1(variant, seed, steps, lr, rank, texts, labels, noise):
    """Stage 1 for one noise draw; the adapters folded into the weights."""
    torch.manual_seed(seed + 7919 * noise)  # noise 0: the draws of the earlier sittings
    # A fresh copy: LoRA wraps modules in place, and a wrapped model would not reload cleanly.
    m = EncoderClassifier(Backbone(copy.deepcopy(hf0)), n_classes, 0.0)
    first = 8 if variant == "top4-bitfit" else 0
    if variant.startswith("all-lora"):
        apply_lora(m.backbone, rank, 2.0 * rank)
        if variant == "all-lora-ffn":
            wrap_ffn(m.backbone, rank)
        set_trainable(m, "lora", 0)
    else:
        set_trainable(m, "bitfit", first)
    tr, tot = count_parameters(m.backbone)
    ids = [x[:STAGE1_LEN] if STAGE1_LEN else x for x in ids_of(texts)]
    yl = torch.tensor(labels)
    rng = np.random.default_rng([seed, noise])
    every = list(range(len(ids)))
    params = [p for p in m.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    # The pipeline's teacher has no dropout (its outputs are targets); SetFit trains with it.
    m.train(not variant.endswith("-nodrop"))
    for _ in range(steps):
        b = pair_batch(labels, STAGE1_BATCH, rng) if STAGE1_BATCH else every
        i, msk = pad_batch([ids[j] for j in b], tok.pad_token_id)
        # The run's loss: positives and negatives weighted equally.
        loss = pair_similarity_loss(mean_pool(m.backbone(i, msk), msk), yl[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    if variant.startswith("all-lora"):
        merge_lora(m.backbone)
    return m, tr / tot


def ce_stages(m, ids, yl, seed, steps=240, batch=16):
    """Stages 2-3 as the pipeline runs them for the teacher: centroid-initialised head, then
    cross-entropy on labelled batches through the top-4 layers' biases and the head, no dropout,
    rates 1e-4 / 1e-3 decaying linearly to 10%. Returns dev accuracy of its argmax."""
    set_trainable(m, "bitfit", 8)
    m.eval()
    i, msk = pad_batch(ids, tok.pad_token_id)
    with torch.no_grad():
        m.init_head_from_centroids(mean_pool(m.backbone(i, msk), msk), yl)
    heads = [p for n, p in m.named_parameters() if n.startswith("head.")]
    biases = [p for n, p in m.named_parameters() if p.requires_grad and not n.startswith("head.")]
    opt = torch.optim.AdamW([{"params": heads, "lr": 1e-3}, {"params": biases, "lr": 1e-4}])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.1, 1 - 0.9 * s / steps))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        b = rng.choice(len(ids), size=min(batch, len(ids)), replace=False)
        ib, mb = pad_batch([ids[j] for j in b], tok.pad_token_id)
        loss = F.cross_entropy(m(ib, mb), yl[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        pred = torch.cat(
            [
                m(*pad_batch([dev_ids[j] for j in c], tok.pad_token_id)).argmax(-1)
                for c in np.array_split(np.arange(len(dev_ids)), 16)
            ]
        )
    return dev_acc(pred.numpy())


def setfit_run(seed, texts, labels):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(str(folder))
    model.model_body.max_seq_length = sp.max_length
    args = TrainingArguments(
        output_dir="/tmp/exp/setfit_ckpt",
        batch_size=16,
        num_epochs=1,
        num_iterations=20,
        seed=seed,
        report_to="none",
        save_strategy="no",
        show_progress_bar=False,
    )
    Trainer(
        model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels})
    ).train()
    pred = model.predict(dev_texts, as_numpy=True, use_labels=False)
    return dev_acc(pred), 1.0


dev_texts = [sp.train_texts[j] for j in dev]
dev_ids = ids_of(dev_texts)
for spec in SPECS.split(";"):
    variant, steps, lr, rank = spec.split(",")
    t = time.time()
    accs, ces = [], []
    for seed, noise in [(s, n) for s in SEEDS for n in NOISE]:
        b = sample_budget(sp.train_labels, 10, seed)[0]
        scored = ~np.isin(dev, b)
        texts = [sp.train_texts[j] for j in b]
        labels = [int(y[j]) for j in b]
        ce = float("nan")
        if variant == "setfit":
            acc, share = setfit_run(seed, texts, labels)
        else:
            acc, ce, share = pair_train(
                variant, seed, int(steps), float(lr), int(rank), texts, labels, noise
            )
        accs.append(acc)
        ces.append(ce)
        print(
            f"  {spec} seed {seed} noise {noise}: probe {acc:.4f}, after stages 2-3 {ce:.4f}",
            flush=True,
        )
    print(
        spec,
        [round(a, 4) for a in accs],
        f"probe {np.mean(accs):.4f} ± {np.std(accs):.4f}",
        f"stages 2-3 {np.mean(ces):.4f} ± {np.std(ces):.4f}",
        f"{time.time() - t:.0f}s",
        flush=True,
    )
