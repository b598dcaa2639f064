"""Typed options for each command: defaults in one place, checked once, saved with the output."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .data.decode import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
from .data.scan import LAYOUTS, compile_label_regex
from .errors import PhotoclassError

SPLIT_MODES = ("grouped", "naive")


@dataclass(frozen=True)
class PrepareConfig:
    """How a folder of photos becomes a prepared dataset."""

    image_size: int = 224  # px; photos are resized to image_size x image_size
    val_size: float = 0.15  # fractions of each class
    test_size: float = 0.15
    seed: int = 0
    split: str = "grouped"  # "grouped" keeps duplicate groups in one split; "naive" does not
    layout: str = "auto"
    label_regex: str | None = None  # one group; default: the leading letters of the stem
    follow_symlinks: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    cache_dir: str | None = None
    workers: int = 0  # processes for decoding; 0 = one per core

    def __post_init__(self):
        if self.cache_dir is not None:  # accept a Path; stored as text so configs stay JSON
            object.__setattr__(self, "cache_dir", str(self.cache_dir))
        _check_int("image_size", self.image_size, 16, 1024)
        _check_fraction("val_size", self.val_size)
        _check_fraction("test_size", self.test_size)
        if self.val_size + self.test_size >= 0.9:
            raise PhotoclassError(
                f"`val_size` + `test_size` must leave at least 10% for training. "
                f"Received: val_size={self.val_size}, test_size={self.test_size}"
            )
        _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_choice("split", self.split, SPLIT_MODES)
        _check_choice("layout", self.layout, LAYOUTS)
        compile_label_regex(self.label_regex)
        _check_int("max_pixels", self.max_pixels, 1, 10**10)
        _check_int("min_side", self.min_side, 1, 10_000)
        _check_int("workers", self.workers, 0, 256)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PrepareConfig:
        return from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def from_dict(cls, values: dict[str, Any]):
    """Build a config dataclass, rejecting unknown keys with the list of known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise PhotoclassError(
            f"Unknown option(s) for {cls.__name__}: {unknown}. Known options: {sorted(known)}"
        )
    return cls(**values)


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PhotoclassError(
            f"`{name}` must be an integer from {low} to {high}. Received: {name}={value!r}"
        )


def _check_fraction(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise PhotoclassError(
            f"`{name}` must be a fraction from 0 to below 1, e.g. 0.15. Received: {name}={value!r}"
        )


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise PhotoclassError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")


OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
SCHEDULES = ("plateau", "cosine", "onecycle", "none")
MONITORS = ("val_loss", "val_acc")
STRATEGIES = ("auto", "scratch", "features", "finetune")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained and evaluated; saved as config.json in each run."""

    model: str = "efficientnet-lite0-ms"
    strategy: str = "auto"  # scratch: every layer; features: frozen pretrained backbone + head;
    # finetune: also the last `finetune_blocks` blocks, on cached activations of those below
    finetune_blocks: int = 1
    epochs: int = 30
    batch_size: int = 32
    image_size: int | None = None  # px; None: the model's own input size
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    schedule: str = "plateau"  # reduce on plateau, cosine, one-cycle, or none
    plateau_patience: int = 3  # epochs without improvement before the learning rate drops
    plateau_factor: float = 0.5
    min_lr: float = 1e-6
    early_stopping: int = 8  # epochs without improvement before stopping; 0: never
    monitor: str = "val_loss"
    label_smoothing: float = 0.0
    dropout: float | None = None  # None: the model's own
    class_weights: bool = False  # weight the loss by inverse class frequency
    augment: str = "default"  # preset or spec, see photoclass.data.augment
    seed: int = 0
    threads: int = 0  # torch threads; 0: one per core
    channels_last: bool = True
    bf16: bool = False  # autocast to bfloat16; only pays on CPUs with native bf16
    top_k: int = 2
    tta: bool = False  # test photos predicted as they are and mirrored, probabilities averaged

    def __post_init__(self):
        _check_int("epochs", self.epochs, 1, 10_000)
        _check_int("batch_size", self.batch_size, 1, 4096)
        if self.image_size is not None:
            _check_int("image_size", self.image_size, 16, 1024)
        _check_positive("lr", self.lr)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_int("finetune_blocks", self.finetune_blocks, 1, 100)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("monitor", self.monitor, MONITORS)
        _check_fraction("label_smoothing", self.label_smoothing)
        if self.dropout is not None:
            _check_fraction("dropout", self.dropout)
        _check_int("early_stopping", self.early_stopping, 0, 10_000)
        _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_int("threads", self.threads, 0, 256)
        _check_int("top_k", self.top_k, 1, 100)
        from .data.augment import parse_augment
        parse_augment(self.augment)  # raises on a bad spec

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        return from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise PhotoclassError(f"`{name}` must be a positive number. Received: {name}={value!r}")
