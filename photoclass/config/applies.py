"""Which training options a resolved strategy and head solver leave unused, and why.

One table serves the `NOTE:` printed before training (for options given on purpose) and
the report's folded "not used by this strategy" list.
"""

from __future__ import annotations

from . import TrainConfig
from .augment import AugmentSpec, parse_augment

EPOCH_OPTIONS = ("epochs", "lr", "optimizer", "schedule", "min_lr")  # the optimizer of the head or of scratch
PLATEAU_OPTIONS = ("plateau_patience", "plateau_factor")
LOSS_OPTIONS = ("weight_decay", "label_smoothing", "class_weights", "early_stopping", "monitor", "dropout")
LPFT_OPTIONS = ("finetune_epochs", "finetune_lr", "layer_decay", "warmup_epochs")


def unused_options(config) -> dict[str, str]:
    """{option: "has no effect: why. HINT: how to make it apply"} for a TrainConfig whose
    strategy is resolved (not auto); "applies in part: ..." for an augmentation cut to the mirror."""
    strategy, solver = config.strategy, config.head_solver
    one_solve = strategy in ("features", "lpft") and solver == "lbfgs"
    unused: dict[str, str] = {}
    if one_solve:
        why = (
            "the classifier is fitted in one solve (`head_solver` lbfgs), not over epochs"
            if strategy == "features"
            else "lpft fits its classifier in one solve (`head_solver` lbfgs), then fine-tunes with "
            "`finetune_epochs` and `finetune_lr`"
        )
        for name in (*EPOCH_OPTIONS, *PLATEAU_OPTIONS):
            unused[name] = f"{why}. HINT: `{name}` applies with `head_solver` epochs or `strategy` scratch or finetune"
    elif config.schedule != "plateau":
        for name in PLATEAU_OPTIONS:
            unused[name] = (
                f"the schedule is {config.schedule}, not plateau. HINT: `{name}` applies with `schedule` plateau"
            )
    if strategy == "features" and solver == "lbfgs":
        for name in LOSS_OPTIONS:
            unused[name] = (
                "the classifier is a logistic regression fitted in one solve (`head_solver` lbfgs). "
                f"HINT: `{name}` applies with `head_solver` epochs or `strategy` lpft, finetune or scratch"
            )
    if strategy != "lpft":
        for name in LPFT_OPTIONS:
            unused[name] = (
                f"it is an option of `strategy` lpft; this run's strategy is {strategy}. "
                f"HINT: `strategy` lpft fine-tunes every layer after the classifier"
            )
    if strategy != "finetune":
        unused["finetune_blocks"] = (
            f"it is an option of `strategy` finetune; this run's strategy is {strategy}. "
            "HINT: `strategy` finetune trains the last `finetune_blocks` blocks"
        )
    if strategy not in ("features", "lpft"):
        unused["head_solver"] = (
            f"the {strategy} strategy trains every layer it trains over epochs. "
            "HINT: `head_solver` applies with `strategy` features or lpft"
        )
    if applied_augment(config) != parse_augment(config.augment):
        applied, why = augment_note(config)
        what = "" if applied == "none" else f"applies in part: only the mirror of '{config.augment}' is used, as "
        unused["augment"] = f"{what}{why}. HINT: `strategy` lpft or scratch applies `augment` to the pixels"
    return {name: why if why.startswith("applies in part") else f"has no effect: {why}" for name, why in unused.items()}


def unused_in_saved(train: dict) -> dict[str, str]:
    """`unused_options` of a run's saved training options; {} for options this version cannot read."""
    try:
        return unused_options(TrainConfig.from_dict(train))
    except Exception:  # a config.json from another version: nothing is hidden
        return {}


def applied_augment(config) -> AugmentSpec:
    """The augmentation that training really applies: cached features can only be mirrored."""
    asked = parse_augment(config.augment)
    if config.strategy == "features" and config.head_solver == "lbfgs":
        return AugmentSpec()  # the regression fits each photo's features once (mirrored copies did not help)
    return AugmentSpec(hflip=asked.hflip) if config.strategy in ("features", "finetune") else asked


def augment_note(config) -> tuple[str, str]:
    """(what of `augment` is applied, why), for a config whose strategy applies less than asked."""
    if not applied_augment(config).enabled:
        return "none", "the classifier is fitted once on each photo's cached features"
    return "the mirror only", (
        f"the {config.strategy} strategy trains on the cached features of each photo and of its mirror"
    )
