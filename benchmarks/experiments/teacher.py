"""Teacher adaptation variants on RT: top-4 layers of MPNet over cached layer-8 states."""

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from devsplit import train_order
from sklearn.linear_model import LogisticRegression

from nanonet.data.batching import length_sorted_batches, pad_batch
from nanonet.data.budget import sample_budget
from nanonet.data.builtin import load_builtin_splits
from nanonet.models.assets import encoder_dir
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder, mean_pool
from nanonet.models.peft import apply_lora, inject_missing_biases, set_trainable

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
ds = "rotten_tomatoes"
sp = load_builtin_splits(ds)
order = train_order(sp)
dev = order[:1000]
y = np.array(sp.train_labels)
hf, tok = load_hf_encoder(encoder_dir("all-mpnet-base-v2"))
inject_missing_biases(hf)
base_state = {k: v.clone() for k, v in hf.state_dict().items()}
CUT = 8


def ids_of(idx):
    return tok([sp.train_texts[i] for i in idx], truncation=True, max_length=sp.max_length)[
        "input_ids"
    ]


@torch.no_grad()
def cache(model, ids):
    out = [None] * len(ids)
    for b in length_sorted_batches([len(x) for x in ids], 64):
        i, m = pad_batch([ids[j] for j in b], tok.pad_token_id)
        h = model.backbone.run_layers(model.backbone.embed(i), m, 0, CUT)
        for r, j in enumerate(b):
            out[j] = h[r, : len(ids[j])].clone()
    return out


def pad_states(states):
    w = max(s.shape[0] for s in states)
    H = torch.zeros(len(states), w, states[0].shape[1])
    M = torch.zeros(len(states), w, dtype=torch.long)
    for r, s in enumerate(states):
        H[r, : s.shape[0]] = s
        M[r, : s.shape[0]] = 1
    return H, M


def pooled(model, states, grad=False):
    outs = []
    with torch.set_grad_enabled(grad):
        for b in (
            length_sorted_batches([s.shape[0] for s in states], 64)
            if not grad
            else [list(range(len(states)))]
        ):
            H, M = pad_states([states[j] for j in b])
            p = mean_pool(model.backbone.run_layers(H, M, start=CUT), M)
            outs.append((b, p))
    if grad:
        return outs[0][1]
    res = torch.zeros(len(states), outs[0][1].shape[1])
    for b, p in outs:
        res[b] = p
    return res


model = EncoderClassifier(Backbone(hf), 2, 0.0).eval()
t = time.time()
dev_states = cache(model, ids_of(dev))
print("cached dev", round(time.time() - t), flush=True)


def lr_acc(Ptr, ytr, Pdev, C=10.0):
    Ptr = F.normalize(Ptr, dim=-1).numpy()
    Pdev = F.normalize(Pdev, dim=-1).numpy()
    clf = LogisticRegression(C=C, max_iter=3000).fit(Ptr, ytr)
    return float((clf.predict(Pdev) == y[dev]).mean())


def run(variant, seed, steps=50, lr=1e-3, mode="bitfit"):
    hf.load_state_dict(base_state, strict=False)
    torch.manual_seed(seed)
    m = EncoderClassifier(Backbone(hf), 2, 0.0)
    if mode == "lora":
        apply_lora(m.backbone, 8)
    set_trainable(m, "bitfit" if mode == "lora+bias" else mode, CUT)
    if mode == "lora":  # also the biases
        for n, p in m.named_parameters():
            if (
                n.endswith("bias")
                and "layer." in n
                and int(n.split("layer.")[1].split(".")[0]) >= CUT
            ):
                p.requires_grad = True
    b = sample_budget(sp.train_labels, 10, seed)[0]
    yl = torch.tensor(y[b])
    lab_states = cache(m, ids_of(b))
    params = [p for n, p in m.named_parameters() if p.requires_grad and not n.startswith("head.")]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    same = (yl[:, None] == yl[None, :]).float()
    iu = torch.triu_indices(len(b), len(b), 1)
    torch.Generator().manual_seed(seed)
    for _s in range(steps):
        if variant == "none":
            break
        z = F.normalize(pooled(m, lab_states, grad=True), dim=-1)
        sim = z @ z.T
        if variant == "cospair":  # SetFit's CosineSimilarityLoss over all pairs
            loss = F.mse_loss(sim[iu[0], iu[1]], same[iu[0], iu[1]])
        elif variant == "supcon":
            tau = 0.1
            logits = sim / tau - torch.eye(len(b)) * 1e9
            logp = logits.log_softmax(-1)
            pos = same - torch.eye(len(b))
            loss = -(logp * pos).sum(-1).div(pos.sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        Pl = pooled(m, lab_states)
        Pd = pooled(m, dev_states)
    return lr_acc(Pl, y[b], Pd)


for spec in sys.argv[1].split(";"):
    variant, steps, lr, mode = spec.split(",")
    t = time.time()
    accs = [run(variant, s, int(steps), float(lr), mode) for s in (0, 1, 2)]
    print(
        spec,
        [round(a, 4) for a in accs],
        round(np.mean(accs), 4),
        "±",
        round(np.std(accs), 4),
        f"{time.time() - t:.0f}s",
        flush=True,
    )
