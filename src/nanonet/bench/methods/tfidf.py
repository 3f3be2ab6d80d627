"""TF-IDF (word 1-2 grams) + logistic regression."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from nanonet.bench.methods.base import RunContext, Trained
from nanonet.data.task import Task
from nanonet.errors import NanoNetError


def fit(task: Task, settings: dict[str, Any], ctx: RunContext) -> Trained:
    if settings["fit_on"] not in ("all", "labelled"):
        raise NanoNetError(f"tfidf fit_on must be 'all' or 'labelled', not {settings['fit_on']}.")
    corpus = list(task.labelled_texts)
    if settings["fit_on"] == "all":
        corpus += task.unlabelled_texts
    # min_df only makes sense over a corpus larger than the labelled budget.
    min_df = settings["min_df"] if settings["fit_on"] == "all" else 1
    vectorizer = TfidfVectorizer(
        ngram_range=(1, settings["ngram_max"]), sublinear_tf=settings["sublinear_tf"], min_df=min_df
    )
    vectorizer.fit(corpus)
    clf = LogisticRegression(C=settings["C"], max_iter=settings["max_iter"], random_state=ctx.seed)
    clf.fit(vectorizer.transform(task.labelled_texts), task.labelled_labels)

    def predict(texts: list[str]) -> np.ndarray:
        return clf.predict(vectorizer.transform(texts))

    def save(folder: Path) -> None:
        # What a deployment needs, without pickle: vocabulary, IDF weights, coefficients.
        folder.mkdir(parents=True, exist_ok=True)
        vocab = {k: int(v) for k, v in vectorizer.vocabulary_.items()}
        (folder / "vocabulary.json").write_text(json.dumps(vocab), encoding="utf-8")
        np.savez(folder / "weights.npz", idf=vectorizer.idf_, coef=clf.coef_, bias=clf.intercept_)

    n_params = int(clf.coef_.size + clf.intercept_.size)
    return Trained(
        predict=predict,
        save=save,
        trainable_params=n_params,
        total_params=n_params,
        details={"features": len(vectorizer.vocabulary_), "fit_on": settings["fit_on"]},
    )
