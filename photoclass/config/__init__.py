"""Typed options for each command: defaults in one place, checked once, saved with the output.

Each field carries its help text; the CLI's flags are generated from these dataclasses
(`--image-size` from `image_size`), so a new option is added here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from ..core.device import PRECISIONS
from ..core.errors import PhotoclassError
from .augment import AugmentSpec, parse_augment  # noqa: F401  (re-exported)

SPLIT_MODES = ("grouped", "naive")
PIXEL_CACHES = ("auto", "jpeg", "raw")
LAYOUTS = ("auto", "flat", "folders", "split", "csv", "jsonl", "npz", "npy", "cifar", "idx")
LABEL_SEPARATORS = (" ", ";", "|", ",")  # what may part a CSV cell's labels (multi-label)
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL's convert("L"): grey stays grey
DEFAULT_LABEL_REGEX = r"^([^\W\d_]+)"  # the leading letters of the stem: cloudy12 -> cloudy
DEFAULT_MAX_PIXELS = 120_000_000  # a 100 MP camera still passes; a 20k x 20k bomb does not
DEFAULT_MIN_SIDE = 16
OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
SCHEDULES = ("plateau", "cosine", "onecycle", "none")
MONITORS = ("val_loss", "val_acc")
STRATEGIES = ("auto", "scratch", "features", "finetune", "lpft")
HEAD_SOLVERS = ("lbfgs", "epochs")
LOSSES = ("auto", "bce", "asl")


def option(default: Any, help: str, *, choices: tuple | None = None, metavar: str | None = None):
    """A config field with what its CLI flag needs: help text and, where fixed, the choices."""
    return field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar})


@dataclass(frozen=True)
class PrepareConfig:
    """How a folder of photos becomes a prepared dataset."""

    image_size: int = option(224, "side in px; photos are resized to image_size x image_size")
    val_size: float = option(0.15, "fraction of each class held out for validation")
    test_size: float = option(0.15, "fraction of each class held out for the test")
    seed: int = option(0, "seed of the split (and of training)")
    split: str = option("grouped", "grouped keeps duplicate photos in one split; naive does not", choices=SPLIT_MODES)
    folds: int = option(
        0,
        "with 2 or more: the test photos are one of this many grouped, stratified folds "
        "(--fold), and val_size is taken from the rest; 0: a plain split",
    )
    fold: int = option(0, "with --folds: which fold is the test split, from 0")
    layout: str = option(
        "auto",
        "flat (label in file name), folders (one per class), split "
        "(train/val/test folders), csv (a file of path,label[,split] rows), jsonl (a "
        '{"path": ..., "labels": [...]} line per photo), npz/npy (image '
        "arrays), cifar (the CIFAR python folder), idx (MNIST files); auto detects it",
        choices=LAYOUTS,
    )
    task: str = option(
        "auto",
        "what the model answers: single-label (one class a photo) or multi-label (a set of labels a "
        "photo); auto decides from the data and says why",
        metavar="KIND",
    )
    path_column: str = option("path", "with a CSV: the column holding each photo's path", metavar="NAME")
    label_column: str = option("label", "with a CSV: the column holding each photo's label", metavar="NAME")
    label_sep: str | None = option(
        None,
        "with a CSV: what parts the labels in a cell (' ', ';', '|' or ','), making the data "
        "multi-label; default: decided from the cells (';' or '|' in several cells, or words that "
        "recur in many combinations), and said in a note",
        metavar="SEP",
    )
    label_regex: str | None = option(
        None,
        "regex with one group, the label, for flat folders (default: the leading letters of the file name)",
        metavar="REGEX",
    )
    follow_symlinks: bool = option(False, "follow symlinks inside the folder")
    max_pixels: int = option(DEFAULT_MAX_PIXELS, "refuse larger images (decompression bombs)")
    min_side: int = option(DEFAULT_MIN_SIDE, "refuse images with a shorter side, in px")
    cache_dir: str | None = option(
        None, "decode cache (default $PHOTOCLASS_CACHE, else $XDG_CACHE_HOME/photoclass)", metavar="DIR"
    )
    pixel_cache: str = option(
        "auto",
        "how decoded photos are kept for strategies that read pixels every epoch: "
        "raw (uint8 arrays, exact, the fastest) or jpeg (quality 95, 6-7x smaller, about "
        "1 ms a photo to read); auto: raw up to 2 GiB of pixels (14,000 photos at "
        "224 px), jpeg past it",
        choices=PIXEL_CACHES,
    )
    workers: int = option(0, "decoding processes; 0: one per core")
    corrections: tuple[str, ...] = option(
        (),
        "a corrections.csv (from `photoclass review`) applied over the labels, matched by each photo's "
        "SHA-256; repeat for several; the photos are not touched",
        metavar="FILE",
    )

    def __post_init__(self):
        if self.cache_dir is not None:  # accept a Path; stored as text so configs stay JSON
            object.__setattr__(self, "cache_dir", str(self.cache_dir))
        if isinstance(self.corrections, (str, bytes)) or hasattr(self.corrections, "__fspath__"):
            object.__setattr__(self, "corrections", (self.corrections,))
        object.__setattr__(self, "corrections", tuple(str(c) for c in self.corrections))
        check_int("image_size", self.image_size, 16, 1024)
        check_fraction("val_size", self.val_size)
        check_fraction("test_size", self.test_size)
        if self.val_size + self.test_size >= 0.9:
            raise PhotoclassError(
                f"`val_size` + `test_size` must leave at least 10% for training. "
                f"Received: val_size={self.val_size}, test_size={self.test_size}"
            )
        check_int("seed", self.seed, 0, 2**32 - 1)
        check_choice("split", self.split, SPLIT_MODES)
        if self.folds != 0:
            check_int("folds", self.folds, 2, 100)
        check_int("fold", self.fold, 0, max(self.folds - 1, 0))
        check_choice("layout", self.layout, LAYOUTS)
        check_choice("pixel_cache", self.pixel_cache, PIXEL_CACHES)
        if self.label_sep is not None:
            check_choice("label_sep", self.label_sep, LABEL_SEPARATORS)
        compile_label_regex(self.label_regex)
        check_int("max_pixels", self.max_pixels, 1, 10**10)
        check_int("min_side", self.min_side, 1, 10_000)
        check_int("workers", self.workers, 0, 256)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PrepareConfig:
        return from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained and evaluated; saved, resolved, as config.json in each run."""

    model: str = option(
        "efficientnet-lite2-ms",
        "a name from `photoclass models`, or any timm backbone "
        "(resnet50, convnext_tiny.fb_in22k_ft_in1k, hf-hub:ORG/REPO)",
        metavar="NAME",
    )
    weights: str | None = option(
        None,
        "a timm backbone's pretrained weights: a safetensors file or a timm- or "
        "Hugging Face-format folder (default: the Hugging Face cache, else a download when "
        "online)",
        metavar="FILE|DIR",
    )
    strategy: str = option(
        "auto",
        "scratch: every layer; features: frozen pretrained backbone, the head "
        "trains on cached features; finetune: also the last --finetune-blocks blocks; "
        "lpft: features first, then the whole network (discriminative rates, warm-up, cosine); "
        "auto: for pretrained models features on a CPU and lpft on a GPU, else scratch",
        choices=STRATEGIES,
    )
    head_solver: str = option(
        "lbfgs",
        "with --strategy features or lpft, how the classifier on the frozen "
        "features is fitted: lbfgs, a logistic regression whose L2 strength 5-fold grouped "
        "cross-validation on the training photos chooses (seconds; --epochs, --lr and the "
        "schedule do not apply); epochs, the optimizer for --epochs",
        choices=HEAD_SOLVERS,
    )
    finetune_blocks: int = option(
        1,
        "with --strategy finetune: how many of the last blocks train (of a timm backbone: of timm's layer groups)",
        metavar="N",
    )
    epochs: int = option(30, "most epochs to train (the pretrained models: 40)")
    finetune_epochs: int = option(
        10, "with --strategy lpft: epochs of fine-tuning the whole network, after the head's epochs"
    )
    finetune_lr: float = option(
        3e-4,
        "with --strategy lpft: the classifier's rate while fine-tuning; the "
        "rate falls by --layer-decay for each fifth of the network below it",
    )
    layer_decay: float = option(
        0.5,
        "with --strategy lpft: rate factor per fifth of the network's depth, from "
        "the classifier down (the first layers learn at --finetune-lr x decay^4)",
    )
    warmup_epochs: int = option(1, "with --strategy lpft: epochs over which the fine-tuning rate rises from 0")
    batch_size: int = option(32, "photos per training step")
    image_size: int | None = option(None, "input side in px (default: the model's own)", metavar="PX")
    lr: float = option(1e-3, "learning rate")
    optimizer: str = option("adamw", "optimizer", choices=OPTIMIZERS)
    weight_decay: float = option(1e-4, "weight decay")
    schedule: str = option(
        "plateau", "learning-rate schedule: reduce on plateau, cosine, one-cycle, or none", choices=SCHEDULES
    )
    plateau_patience: int = option(3, "with plateau: epochs without improvement before the rate drops")
    plateau_factor: float = option(0.5, "with plateau: the rate is multiplied by this when it drops")
    min_lr: float = option(1e-6, "the schedules' floor for the learning rate")
    early_stopping: int = option(8, "epochs without improvement before stopping; 0: never", metavar="PATIENCE")
    monitor: str = option(
        "val_loss", "the metric for early stopping, plateau and the best checkpoint", choices=MONITORS
    )
    label_smoothing: float = option(0.0, "label smoothing of the loss, 0 to below 1")
    dropout: float | None = option(None, "dropout rate of the model's head (default: the model's own)")
    class_weights: bool = option(False, "weight the loss by inverse class frequency")
    loss: str = option(
        "auto",
        "with several labels a photo: bce, binary cross-entropy; asl, the asymmetric loss (Ben-Baruch et "
        "al. 2021: negatives focused by p^4 and shifted by 0.05); auto: bce, and with one label a photo "
        "cross-entropy (its only loss)",
        choices=LOSSES,
    )
    threshold_rule: str = option(
        "f1",
        "with several labels a photo: how each label's threshold is chosen on the validation photos: f1 "
        "(the best F1), precision=P (the lowest reaching precision P), recall=R (the highest keeping recall R)",
        metavar="RULE",
    )
    augment: str = option(
        "default", "'default', 'none', 'light', 'strong' or e.g. 'hflip,rotate=10,zoom=0.1'", metavar="SPEC"
    )
    seed: int = option(0, "seed of the split and of training")
    threads: int = option(0, "torch threads; 0: one per core")
    channels_last: bool | None = option(
        None,
        "channels-last memory format; auto: on a CPU (faster oneDNN "
        "convolutions), off on a GPU (cuDNN's channels-last depthwise "
        "kernels take seconds to warm up for every new shape)",
    )
    device: str = option("auto", "auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps", metavar="DEVICE")
    precision: str = option(
        "auto",
        "fp32, bf16 or fp16 (with a gradient scaler); auto: on a CPU with native "
        "bf16 (AMX, AVX512-BF16) bf16 to train on pixels and fp32 for cached features, "
        "fp32 on other CPUs, bf16 on GPUs that have it, else fp16",
        choices=PRECISIONS,
    )
    top_k: int = option(2, "top-k accuracy reported besides top-1")
    tta: bool = option(False, "test-time augmentation: average each test photo and its mirror")
    unknown_accept: float = option(
        0.975,
        "the share of known photos the 'none of these' threshold accepts (the "
        "validation photos and, for frozen features, each training photo against the "
        "others): a photo farther from the training photos than that is unknown; "
        "0: no check",
        metavar="SHARE",
    )
    outsiders: str | None = option(
        None,
        "a folder of photos of none of the classes (besides those a corrections file marks outsider): "
        "they lower the 'none of these' threshold to flag more of them, never below accepting 90%% "
        "of the known photos; never a class",
        metavar="DIR",
    )

    def __post_init__(self):
        check_int("epochs", self.epochs, 1, 10_000)
        check_int("batch_size", self.batch_size, 1, 4096)
        if self.image_size is not None:
            check_int("image_size", self.image_size, 16, 1024)
        check_positive("lr", self.lr)
        check_choice("head_solver", self.head_solver, HEAD_SOLVERS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_fraction("weight_decay", self.weight_decay)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_int("finetune_blocks", self.finetune_blocks, 1, 100)
        check_int("finetune_epochs", self.finetune_epochs, 1, 10_000)
        check_positive("finetune_lr", self.finetune_lr)
        if not (isinstance(self.layer_decay, (int, float)) and 0 < self.layer_decay <= 1):
            raise PhotoclassError(
                f"`layer_decay` must be a number above 0 and at most 1, e.g. 0.5. "
                f"Received: layer_decay={self.layer_decay!r}"
            )
        check_int("warmup_epochs", self.warmup_epochs, 0, 10_000)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("plateau_patience", self.plateau_patience, 0, 10_000)
        if not (isinstance(self.plateau_factor, (int, float)) and 0 < self.plateau_factor < 1):
            raise PhotoclassError(
                f"`plateau_factor` must be a number between 0 and 1, e.g. 0.5. "
                f"Received: plateau_factor={self.plateau_factor!r}"
            )
        check_fraction("min_lr", self.min_lr)
        check_choice("monitor", self.monitor, MONITORS)
        check_fraction("label_smoothing", self.label_smoothing)
        check_choice("loss", self.loss, LOSSES)
        check_fraction("unknown_accept", self.unknown_accept)
        if self.dropout is not None:
            check_fraction("dropout", self.dropout)
        check_int("early_stopping", self.early_stopping, 0, 10_000)
        check_int("seed", self.seed, 0, 2**32 - 1)
        check_int("threads", self.threads, 0, 256)
        check_int("top_k", self.top_k, 1, 100)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(self.device)):
            raise PhotoclassError(f"`device` must be auto, cpu, cuda, cuda:N or mps. Received: device={self.device!r}")
        check_choice("precision", self.precision, PRECISIONS)
        check_threshold_rule(self.threshold_rule)
        parse_augment(self.augment)  # raises on a bad spec

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        values = dict(values)
        if "bf16" in values:  # config.json of runs made before `precision`
            bf16 = values.pop("bf16")
            values.setdefault("precision", "bf16" if bf16 else "fp32")
            values.setdefault("device", "cpu")
        return from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def from_dict(cls, values: dict[str, Any]):
    """Build a config dataclass, rejecting unknown keys with the list of known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise PhotoclassError(
            f"Unknown option(s) for {cls.__name__}: {unknown}.{did_you_mean(unknown, known)} "
            f"Known options: {sorted(known)}"
        )
    return cls(**values)


def did_you_mean(unknown, known) -> str:
    """' HINT: did you mean `epochs`?' for the nearest known name to each unknown one, or ''."""
    close = [match[0] for name in unknown for match in [difflib.get_close_matches(name, list(known), n=1)] if match]
    return f" HINT: did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""


def check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PhotoclassError(f"`{name}` must be an integer from {low} to {high}. Received: {name}={value!r}")


def check_fraction(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise PhotoclassError(f"`{name}` must be a fraction from 0 to below 1, e.g. 0.15. Received: {name}={value!r}")


def check_threshold_rule(rule: str) -> None:
    kind, _, target = str(rule).partition("=")
    try:
        value = float(target) if target else None
    except ValueError:
        value = -1.0
    in_range = value is None or 0 < value <= 1
    if kind not in ("f1", "precision", "recall") or (kind == "f1") != (value is None) or not in_range:
        raise PhotoclassError(
            "`threshold_rule` must be f1, precision=P or recall=R with 0 < P, R <= 1, e.g. precision=0.9. "
            f"Received: threshold_rule={rule!r}"
        )


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise PhotoclassError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise PhotoclassError(f"`{name}` must be a positive number. Received: {name}={value!r}")


def compile_label_regex(label_regex: str | None) -> re.Pattern:
    try:
        pattern = re.compile(label_regex or DEFAULT_LABEL_REGEX)
    except re.error as e:
        raise PhotoclassError(
            f"`label_regex` is not a valid regular expression ({e}). Received: {label_regex!r}"
        ) from None
    if pattern.groups != 1:
        raise PhotoclassError(
            f"`label_regex` must have exactly one group, the label, e.g. '^([a-z]+)'. "
            f"Received: {label_regex!r} with {pattern.groups} groups"
        )
    return pattern


# PrepareConfig's options that audit does not take: it reads every photo, at its model's size,
# in folds of its own (`seed` and `folds` are its own arguments)
AUDIT_SKIPS = ("image_size", "seed", "val_size", "test_size", "split", "folds", "fold")


def takes_options(*configs: type, exclude: tuple[str, ...] = ()):
    """Spell a function's `**options` out in its signature: one keyword-only parameter per field
    of `configs` (the options dataclasses it reads them into; not those in `exclude`), with its
    default, so that `inspect.signature` and a notebook's help list them. The function itself
    is unchanged."""
    import inspect

    def decorate(func):
        signature = inspect.signature(func)
        named = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in named} | set(exclude)
        for config in configs:
            for f in dataclasses.fields(config):
                if f.name not in taken:
                    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    named.append(
                        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=f.type)
                    )
                    taken.add(f.name)
        func.__signature__ = signature.replace(parameters=named)
        return func

    return decorate
