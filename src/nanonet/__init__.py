"""NanoNet: a few labels + unlabelled text -> a small, fast text classifier.

from nanonet import NanoNetClassifier, RunConfig, train
result = train(RunConfig())                      # rotten_tomatoes, 10 labels per class
result.classifier.save_pretrained("model/")
clf = NanoNetClassifier.from_pretrained("model/")
clf.predict(["a gripping, beautifully shot film"])
"""

import os

# Weights come only from installed packages: never let transformers reach for a hub.
# Set before transformers is first imported, which reads them at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from nanonet.errors import NanoNetError
from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from nanonet.train.run import fit, load_task
from nanonet.train.trainer import NanoNetTrainer, TrainResult

__all__ = [
    "DataConfig",
    "ModelConfig",
    "NanoNetClassifier",
    "NanoNetError",
    "NanoNetTrainer",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "fit",
    "load_task",
]
__version__ = "0.1.0"
