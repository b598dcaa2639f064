"""Models by name: `@register_model` builders, `create_model(name)`, `list_models()`.

A builder takes `num_classes` (and keyword options) and returns an `nn.Module` carrying
`input_spec`: the input size and normalization its weights expect, stored with the weights
and used alike by training, prediction, export and serving.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from collections.abc import Callable

from torch import nn

from ..core.errors import PhotoclassError
from .input_spec import InputSpec


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    input_spec: InputSpec
    description: str
    pretrained: bool = False
    fixed_size: bool = False  # a Flatten layer ties the weights to one input size
    defaults: dict = field(default_factory=dict)  # training defaults suited to this model
    timm: bool = False  # a timm backbone: built at the input size, its weights found offline-first
    note: str = ""  # said when the model is used: e.g. the input size chosen for a CPU


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    input_size: int,
    description: str,
    mean=None,
    std=None,
    channels: int = 3,
    pretrained: bool = False,
    fixed_size: bool = False,
    **defaults,
):
    def wrap(builder):
        spec = InputSpec(input_size, tuple(mean or (0.0,) * channels), tuple(std or (1.0,) * channels), channels)
        _REGISTRY[name] = ModelInfo(name, builder, spec, description, pretrained, fixed_size, defaults)
        return builder

    return wrap


def list_models(pattern: str = "*") -> list[ModelInfo]:
    _import_builtin_models()
    return [info for name, info in sorted(_REGISTRY.items()) if fnmatch.fnmatch(name, pattern)]


def model_info(name: str) -> ModelInfo:
    """A photoclass model, or any timm backbone by its name (`resnet50`, `convnext_tiny.fb_in22k`,
    `hf-hub:ORG/REPO`)."""
    _import_builtin_models()
    if name in _REGISTRY:
        return _REGISTRY[name]
    from . import timm_models

    if not timm_models.is_timm_name(name):
        close = timm_models.closest_names(name, _REGISTRY)
        guess = f" Did you mean {', '.join(close)}?" if close else ""
        raise PhotoclassError(
            f"Unknown model {name!r}.{guess} photoclass's own: {', '.join(sorted(_REGISTRY))}. "
            f"HINT: `photoclass models` describes them, `photoclass models '*{name[:6]}*'` lists "
            "the timm names."
        )
    return _timm_info(name)


@lru_cache(maxsize=None)
def _timm_info(name: str) -> ModelInfo:
    from . import timm_models

    config = timm_models.pretrained_config(name)
    spec, note = timm_models.input_spec(name)
    base, multiscale = timm_models.split_name(name)
    what = f"timm {timm_models.architecture(name) if not base.startswith('hf-hub:') else base}"
    what += "; classifier on up to 4 stages' mean and spread too" if multiscale else ""
    licence = f", licence {config['license']}" if config.get("license") else ""
    weights = bool(config.get("hf_hub_id"))  # without any, the backbone trains from scratch
    return ModelInfo(
        name,
        partial(timm_models.build, name, pretrained=weights),
        spec,
        what + licence,
        pretrained=weights,
        timm=True,
        note=note,
    )


def create_model(
    name: str,
    num_classes: int,
    *,
    input_size: int | None = None,
    channels: int | None = None,
    pretrained: bool = True,
    **kwargs,
) -> nn.Module:
    """Build a registered model; `input_size` overrides the registered one, and so does
    `channels` (1 or 3) for a model trained from scratch (pretrained ones take 3).
    `pretrained=False` skips loading a pretrained model's weights (others have none)."""
    info = model_info(name)
    size = input_size or info.input_spec.size
    spec = replace(info.input_spec, size=size)
    if info.fixed_size or info.timm:  # a ViT's position embeddings are made for one size too
        kwargs["input_size"] = size
    if info.pretrained and not pretrained:
        kwargs["pretrained"] = False
    if channels is not None and channels != spec.channels and not info.pretrained:
        kwargs["in_channels"] = channels
        spec = spec.with_channels(channels)
    model = info.builder(num_classes=num_classes, **kwargs)
    model.input_spec = spec
    model.model_name = name
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _import_builtin_models() -> None:
    from . import cnn, efficientnet_lite, small  # noqa: F401  (they register on import)
