"""Grad-CAM: where in the photo the evidence for a class was (Selvaraju et al., 2017)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def last_conv(model: nn.Module) -> nn.Module:
    """The layer a model names for Grad-CAM, else the last Conv2d in module order: the
    highest-level feature map of the usual CNNs."""
    if hasattr(model, "gradcam_layer"):
        layer = model.gradcam_layer()
        if layer is None:
            raise ValueError(
                f"{type(model).__name__} is a transformer: its only convolution cuts the photo into "
                "patches, so Grad-CAM does not apply"
            )
        return layer
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer for Grad-CAM")
    return convs[-1]


def gradcam(
    model: nn.Module, x: torch.Tensor, target: int | None = None, layer: nn.Module | None = None
) -> tuple[np.ndarray, int]:
    """A heatmap in [0, 1] of x's size (H, W) for `target` (default: the predicted class).

    `x` is one preprocessed image (1, 3, H, W). Returns (heatmap, target).
    """
    layer = layer or last_conv(model)
    saved: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output):
        output.register_hook(lambda grad: saved.__setitem__("grad", grad))
        saved["activation"] = output

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x.requires_grad_(True))
            target = int(logits.argmax(1)) if target is None else target
            model.zero_grad(set_to_none=True)
            logits[0, target].backward()
    finally:
        handle.remove()
        model.train(was_training)
    weights = saved["grad"].mean(dim=(2, 3), keepdim=True)  # each channel's importance
    cam = torch.relu((weights * saved["activation"]).sum(1, keepdim=True)).detach()
    cam = nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return (cam / cam.max() if cam.max() > 0 else cam).numpy(), target


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heatmap (jet colours) blended over an (H, W, 3) uint8 image of the same size."""
    import matplotlib

    colours = matplotlib.colormaps["jet"](heatmap)[..., :3] * 255
    return (image * (1 - alpha) + colours * alpha).clip(0, 255).astype(np.uint8)
