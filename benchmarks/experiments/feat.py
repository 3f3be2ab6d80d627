import json
import sys
import time

import numpy as np
import torch
from devsplit import train_order
from sklearn.linear_model import LogisticRegression

from nanonet.bench.methods.encoders import build_encoder, embed
from nanonet.data.budget import sample_budget
from nanonet.data.builtin import load_builtin_splits
from nanonet.models.encoder import Backbone, EncoderClassifier

torch.set_num_threads(2)
ds = sys.argv[1] if len(sys.argv) > 1 else "rotten_tomatoes"
sp = load_builtin_splits(ds)
order = train_order(sp)
dev, big = order[:1000], order[1000:5000]
budgets = {s: sample_budget(sp.train_labels, 10, s)[0] for s in (0, 1, 2)}
y = np.array(sp.train_labels)
idx = np.unique(np.concatenate([dev, big] + [np.array(b) for b in budgets.values()]))
pos = {int(i): k for k, i in enumerate(idx)}
texts = [sp.train_texts[i] for i in idx]
out = {}
for enc in sys.argv[2].split(","):
    t = time.time()
    hf, tok = build_encoder(enc)
    m = EncoderClassifier(Backbone(hf), 2, 0.0).eval()
    X = embed(m, tok, texts, sp.max_length, 64)
    np.save(f"/tmp/exp/{ds}_{enc.replace(':', '_')}.npy", X)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    D = [pos[int(i)] for i in dev]
    B = [pos[int(i)] for i in big]
    res = {}
    for name, F in (("raw", X), ("norm", Xn)):
        for C in (1.0, 10.0, 100.0):
            accs = []
            for _s, b in budgets.items():
                L = [pos[int(i)] for i in b]
                clf = LogisticRegression(C=C, max_iter=2000).fit(F[L], y[b])
                accs.append(float((clf.predict(F[D]) == y[dev]).mean()))
            full = LogisticRegression(C=C, max_iter=3000).fit(F[B], y[big])
            res[f"{name}_C{C}"] = (
                round(np.mean(accs), 4),
                round(np.std(accs), 4),
                round(float((full.predict(F[D]) == y[dev]).mean()), 4),
            )
    out[enc] = res
    print(enc, round(time.time() - t), json.dumps(res), flush=True)
