"""Models by name: `@register_model` builders, `create_model(name)`, `list_models()`.

A builder takes `num_classes` (and keyword options) and returns an `nn.Module` carrying
`input_spec`: the input size and normalization its weights expect, stored with the weights
and used alike by training, prediction, export and serving.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
import os
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


@dataclass(frozen=True)
class ModelChoice:
    """A model as asked for, resolved once on its way from `--model` to the network: its
    registry entry (None for a user's own nn.Module), the input contract at the size asked,
    and where a timm backbone's pretrained weights are (found offline-first)."""

    name: str
    info: ModelInfo | None
    input_spec: InputSpec
    weights: Path | None = None
    custom: nn.Module | None = None
    note: str = ""  # what to say when the model is used: e.g. the input size chosen for a CPU

    @property
    def pretrained(self) -> bool:
        return self.info is not None and self.info.pretrained

    def build(self, num_classes: int, *, channels: int | None = None, dropout: float | None = None) -> nn.Module:
        """The network for `num_classes`, carrying its input contract; `channels` (1 or 3) for one
        trained from scratch (a pretrained one takes 3)."""
        if self.custom is not None:
            self.custom.input_spec = self.input_spec
            return self.custom
        options = {"dropout": dropout} if dropout is not None else {}
        if self.weights is not None:
            options["weights"] = self.weights
        return create_model(self.name, num_classes, input_size=self.input_spec.size, channels=channels, **options)


def choose_model(
    model: str | nn.Module,
    *,
    image_size: int | None = None,
    weights: str | os.PathLike | None = None,
    find_weights: bool = True,
) -> ModelChoice:
    """`model` (a name, or a user's nn.Module) resolved once: its entry, its input contract at
    `image_size` (default its own), and, for a pretrained timm backbone with `find_weights`, its
    weights file (`weights`, else the Hugging Face cache, else a download when online)."""
    if isinstance(model, nn.Module):
        spec = getattr(model, "input_spec", None) or InputSpec(224)
        spec = replace(spec, size=image_size) if image_size else spec
        return ModelChoice(f"custom:{type(model).__name__}", None, spec, custom=model)
    info = model_info(model)
    if weights is not None and not info.timm:
        raise PhotoclassError(
            f"`weights` loads a timm backbone's weights; {model} is photoclass's own. "
            "HINT: leave `weights` out, or pass a timm name as `model`."
        )
    spec = replace(info.input_spec, size=image_size) if image_size else info.input_spec
    found = None
    if info.timm and info.pretrained and find_weights:
        from .timm_models import find_weights as find

        found = find(model, weights)
    return ModelChoice(model, info, spec, found, note="" if image_size else info.note)


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
