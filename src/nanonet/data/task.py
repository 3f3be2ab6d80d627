"""The one object every training method receives: a few labelled texts plus unlabelled text."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Task:
    """A classification task as NanoNet sees it.

    ``labelled_labels`` and ``test_labels`` are ids into ``label_names`` (sorted, so the id of a
    class does not depend on the order rows appear in a file). ``unlabelled_texts`` never holds a
    test text; the builders in :mod:`nanonet.data.budget` and :mod:`nanonet.data.builtin` check it.
    """

    name: str
    label_names: list[str]
    labelled_texts: list[str]
    labelled_labels: list[int]
    unlabelled_texts: list[str]
    test_texts: list[str] = field(default_factory=list)
    test_labels: list[int] = field(default_factory=list)
    max_length: int = 128

    def __post_init__(self) -> None:
        # These are programming errors of the code that built the task, not user mistakes,
        # so they are plain ValueErrors rather than NanoNetError.
        if len(self.labelled_texts) != len(self.labelled_labels):
            raise ValueError("labelled_texts and labelled_labels differ in length")
        if len(self.test_texts) != len(self.test_labels):
            raise ValueError("test_texts and test_labels differ in length")
        n = len(self.label_names)
        for ids in (self.labelled_labels, self.test_labels):
            if any(not 0 <= i < n for i in ids):
                raise ValueError(f"a label id is outside 0..{n - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def summary(self) -> dict:
        """Counts worth printing before training (JSON-serialisable)."""
        per_class = Counter(self.labelled_labels)
        return {
            "name": self.name,
            "classes": len(self.label_names),
            "labelled": len(self.labelled_texts),
            "labelled_per_class": {
                name: per_class.get(i, 0) for i, name in enumerate(self.label_names)
            },
            "unlabelled": len(self.unlabelled_texts),
            "test": len(self.test_texts),
            "max_length": self.max_length,
        }
