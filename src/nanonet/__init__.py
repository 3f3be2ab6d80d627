"""NanoNet: a few labels + unlabelled text -> a small, fast text classifier.

from nanonet import NanoNetClassifier, RunConfig, train
result = train(RunConfig())                      # rotten_tomatoes, 10 labels per class
result.classifier.save_pretrained("model/")
clf = NanoNetClassifier.from_pretrained("model/")
clf.predict(["a gripping, beautifully shot film"])
"""

from nanonet.errors import NanoNetError
from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from nanonet.train.run import load_task, train
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
    "load_task",
    "train",
]
__version__ = "0.1.0"
