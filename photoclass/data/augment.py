"""Batched augmentation on tensors: flips, rotation, zoom, shift, shear, brightness, contrast.

One random affine matrix per image, applied with a single `grid_sample` over the batch, so
the cost is one resampling pass whatever the mix. A spec is a comma-separated list:
`"hflip,rotate=10,zoom=0.1,shift=0.05,brightness=0.1,contrast=0.1"`, or a preset name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config.augment import PRESETS, AugmentSpec, parse_augment  # noqa: F401  (re-exported)


def augment_batch(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """Augment a float batch (B, 3, H, W) in [0, 1]; returns a new tensor of the same shape."""
    b = x.shape[0]

    def uniform(limit: float) -> torch.Tensor:  # (B,) in [-limit, limit]; drawn on the CPU, so the same anywhere
        return ((torch.rand(b, generator=generator) * 2 - 1) * limit).to(x.device)

    if spec.geometric:
        angle = uniform(math.radians(spec.rotate))
        shear = uniform(math.radians(spec.shear))
        scale = 1 + uniform(spec.zoom)  # > 1 samples a wider area: zoom out
        sx = scale * _signs(b, generator, x.device) if spec.hflip else scale
        sy = scale * _signs(b, generator, x.device) if spec.vflip else scale
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(b, 2, 3, device=x.device)
        # rotation @ shear @ scale(with flips), in normalized coordinates; then shift
        theta[:, 0, 0] = cos * sx
        theta[:, 0, 1] = (-sin + cos * torch.tan(shear)) * sy
        theta[:, 1, 0] = sin * sx
        theta[:, 1, 1] = (cos + sin * torch.tan(shear)) * sy
        theta[:, 0, 2] = uniform(2 * spec.shift)
        theta[:, 1, 2] = uniform(2 * spec.shift)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if spec.brightness:
        x = x * (1 + uniform(spec.brightness)).view(b, 1, 1, 1)
    if spec.contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (1 + uniform(spec.contrast)).view(b, 1, 1, 1) + mean
    return x.clamp_(0, 1) if spec.brightness or spec.contrast else x


def _signs(b: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B,) of -1 or +1, half each on average (a mirror or not)."""
    return torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0).to(device)
