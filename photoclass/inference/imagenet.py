"""ImageNet predictions with no training: the pretrained backbone with its own 1,000-class
head, like a course's `VGG16` + `decode_predictions`. The class names ship with the
package (models/imagenet_classes.txt, the first WordNet name of each ImageNet-1k class)."""
from __future__ import annotations

from importlib import resources

from ..core.errors import PhotoclassError
from .predictor import Predictor

IMAGENET_MODELS = {"imagenet": "efficientnet-lite2", "imagenet-lite0": "efficientnet-lite0",
                   "imagenet-lite2": "efficientnet-lite2"}


def imagenet_class_names() -> list[str]:
    text = resources.files("photoclass.models").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = text.splitlines()
    if len(names) != 1000:
        raise PhotoclassError(f"imagenet_classes.txt holds {len(names)} names instead of 1000. HINT: reinstall photoclass.")
    return names


class ImageNetPredictor(Predictor):
    """`ImageNetPredictor().predict(["cat.jpg"])`: ImageNet top-k for photos, offline."""

    def __init__(self, name: str = "imagenet", *, batch_size: int = 16, threads: int = 0, device: str = "auto"):
        from ..config import check_int
        from ..models.registry import create_model

        check_int("batch_size", batch_size, 1, 4096)
        self._place(threads, device)
        model = create_model(IMAGENET_MODELS[name], 1000)  # the checkpoint's own classifier loads too
        self._use(model, imagenet_class_names(), 1.0, batch_size)
