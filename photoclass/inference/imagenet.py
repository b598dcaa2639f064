"""ImageNet predictions with no training: the pretrained backbone with its own 1,000-class
head, like a course's `VGG16` + `decode_predictions`. The class names ship with the
package (models/imagenet_classes.txt, the first WordNet name of each ImageNet-1k class)."""

from __future__ import annotations

from importlib import resources

from ..core.errors import PhotoclassError
from .engines.pytorch import Predictor

IMAGENET_MODELS = {
    "imagenet": "efficientnet-lite2",
    "imagenet-lite0": "efficientnet-lite0",
    "imagenet-lite2": "efficientnet-lite2",
}


def imagenet_class_names() -> list[str]:
    text = resources.files("photoclass.models").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = text.splitlines()
    if len(names) != 1000:
        raise PhotoclassError(
            f"imagenet_classes.txt holds {len(names)} names instead of 1000. HINT: reinstall photoclass."
        )
    return names


class ImageNetPredictor(Predictor):
    """`ImageNetPredictor().predict(["cat.jpg"])`: ImageNet top-k for photos, offline."""

    def __init__(
        self,
        name: str = "imagenet",
        *,
        batch_size: int = 16,
        threads: int = 0,
        device: str = "auto",
        precision: str = "auto",
        model: str | None = None,
    ):
        """`model`: any timm backbone whose weights carry an ImageNet-1k head, instead of Lite2."""
        from ..config import check_int
        from ..models.registry import create_model, model_info

        check_int("batch_size", batch_size, 1, 4096)
        self._place(threads, device, precision)
        if model is not None and model_info(model).timm:
            from ..models.timm_models import imagenet_classifier

            model = imagenet_classifier(model)
        elif model is None or model in IMAGENET_MODELS.values():  # the checkpoint's own classifier loads too
            model = create_model(model or IMAGENET_MODELS[name], 1000)
        else:
            raise PhotoclassError(
                f"{model} has no ImageNet classifier. HINT: --model efficientnet-lite0, "
                "efficientnet-lite2, or a timm backbone with ImageNet-1k weights."
            )
        self._use(model, imagenet_class_names(), 1.0, batch_size)
