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
        import torch

        from ..config import check_int
        from ..core.device import resolve_device
        from ..core.torchsetup import setup_torch
        from ..models.registry import create_model

        check_int("batch_size", batch_size, 1, 4096)
        self.device = resolve_device(device)
        setup_torch(threads, 0)
        model = create_model(IMAGENET_MODELS[name], 1000)  # the checkpoint's own classifier loads too
        self.model = model.inference_copy().eval().to(self.device, memory_format=torch.channels_last)
        self.classes = imagenet_class_names()
        self.temperature = 1.0
        spec = model.input_spec
        self.size, self.mean, self.std = spec.size, spec.mean, spec.std
        self.batch_size = batch_size
