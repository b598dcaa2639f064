"""Hyperparameter sweeps with Optuna: each trial is an ordinary run; poor ones are pruned.

A search space maps option names to a list of choices, a range, or a fixed value::

    {"model": ["compact-cnn", "seed-baseline"], "lr": {"low": 1e-4, "high": 1e-2, "log": true},
     "augment": ["light", "default", "strong"], "dropout": {"low": 0.1, "high": 0.5},
     "batch_size": [16, 32, 64], "image_size": [96, 128, 160], "epochs": 15}

Trials maximize validation accuracy; the test split is left for the leaderboard. A new
study's first trial is `train`'s default model and strategy with every searched option at its
default: the baseline the search has to beat.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import warnings
import tomllib
from pathlib import Path
from typing import Any
from collections.abc import Callable

from ..config import PrepareConfig, TrainConfig, check_int
from ..core.errors import PhotoclassError, UnusedOptionWarning
from ..data.outside import check_outside
from ..models.registry import model_info
from ..runs.rundir import RunDir

DEFAULT_SPACE: dict[str, Any] = {
    "model": [TrainConfig.model, "compact-cnn", "seed-baseline", "efficientnet-lite0-ms"],
    "lr": {"low": 1e-4, "high": 3e-3, "log": True},
    "augment": ["light", "default", "strong"],
    "dropout": {"low": 0.1, "high": 0.5},
    "batch_size": [16, 32, 64],
    "image_size": [96, 128, 160],
    "epochs": 20,
}
DEFAULT_TRIAL = ("model", "strategy")  # the defaults trial's only searched options: at train's defaults


def load_space(space: str | os.PathLike | dict[str, Any] | None) -> dict[str, Any]:
    """A checked space from a dict, a .json or .toml file, or the default."""
    if space is None:
        return dict(DEFAULT_SPACE)
    values = dict(space) if isinstance(space, dict) else _read_space(Path(space))
    known = {f.name for config in (TrainConfig, PrepareConfig) for f in dataclasses.fields(config)}
    for name, spec in values.items():
        if name not in known:
            raise PhotoclassError(
                f"Search space option {name!r} is not a training option. HINT: use some of {sorted(known)}"
            )
        if isinstance(spec, list) and not spec:
            raise PhotoclassError(f"Search space entry {name!r} has no choices.")
        if isinstance(spec, dict) and (set(spec) - {"low", "high", "log", "step"} or not {"low", "high"} <= set(spec)):
            raise PhotoclassError(
                f"Search space entry {name!r} must have low and high (and optionally log or step). Received: {spec!r}"
            )
    return values


def _storage(url: str):
    """An Optuna storage: `journal:PATH` is a journal file (locked appends, for shared file
    systems); anything else is an RDB URL such as sqlite:///sweeps.db or postgresql://..."""
    if not url.startswith("journal:"):
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(url[len("journal:") :]).expanduser()
    if not url[len("journal:") :] or not path.name:
        raise PhotoclassError(f"A journal storage needs a file: journal:PATH. Received: {url!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _check_fixed(fixed: dict[str, Any]) -> None:
    """The options every trial shares, checked once before any trial runs."""
    unknown = sorted(set(fixed) - {f.name for c in (TrainConfig, PrepareConfig) for f in dataclasses.fields(c)})
    if unknown:
        raise PhotoclassError(
            f"Unknown option(s) {unknown} for a sweep. HINT: use training options, as for `photoclass train`."
        )
    for config in (TrainConfig, PrepareConfig):
        names = {f.name for f in dataclasses.fields(config)}
        config.from_dict({k: v for k, v in fixed.items() if k in names})


def _read_space(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as e:
        raise PhotoclassError(
            f"Cannot read the search space {path}: {e}. HINT: a JSON or TOML object of option -> choices or range."
        ) from None
    if not isinstance(values, dict):
        raise PhotoclassError(f"The search space {path} must be an object of option -> choices or range.")
    return values


def _defaults_trial(space: dict[str, Any]) -> dict[str, Any] | None:
    """The params that make a trial `train`'s default model and strategy; None when the space
    searches other choices only."""
    params = {}
    for name in DEFAULT_TRIAL:
        spec, default = space.get(name), getattr(TrainConfig, name)
        if isinstance(spec, list):
            if default not in spec:
                return None
            params[name] = default
    return params


def _chosen_by_the_sweep(space: dict[str, Any], given_space: bool) -> list[str]:
    """The options whose values the sweep sets itself: the searched ones, and the fixed values
    of the default space (a space file's fixed values are the user's)."""
    return [name for name, spec in space.items() if isinstance(spec, (list, dict)) or not given_space]


def suggest(trial, space: dict[str, Any]) -> dict[str, Any]:
    """The options of one trial; a fixed-size model gets no image_size."""
    options: dict[str, Any] = {}
    for name, spec in space.items():
        if name == "image_size" and "model" in options and model_info(options["model"]).fixed_size:
            continue
        if isinstance(spec, list):
            options[name] = trial.suggest_categorical(name, spec)
        elif isinstance(spec, dict):
            whole = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("low", "high"))
            suggest_range = trial.suggest_int if whole else trial.suggest_float
            options[name] = suggest_range(
                name,
                spec["low"],
                spec["high"],
                log=bool(spec.get("log", False)),
                **({"step": spec["step"]} if "step" in spec else {}),
            )
        else:
            options[name] = spec
    return options


def sweep(
    data: str | os.PathLike,
    *,
    train: Callable[..., Any],
    trials: int = 20,
    space: str | os.PathLike | dict | None = None,
    storage: str | None = None,
    study: str | None = None,
    out: str | os.PathLike = "runs",
    seed: int = 0,
    timeout: float | None = None,
    track: bool | str | None = None,
    progress: bool | None = None,
    verbose: bool = True,
    **fixed: Any,
):
    """Run `trials` trials on `data`, each a call of `train` (the workflow's `train()`, which
    writes a run); returns the Optuna study (`study.best_trial`, ...).

    Runs go to OUT/<study>/trial-NNN. `storage` is any Optuna RDB URL, or `journal:PATH` for
    Optuna's journal file (for machines that share a file system but no database server);
    by default sqlite:///OUT/sweeps.db, so a sweep can be resumed or inspected later.
    Several machines sharing one storage and study name work on the same sweep. A new study's
    first trial is `train`'s default model and strategy, the other searched options at their
    defaults too, where the space offers them.
    """
    import optuna

    given_space, space = space is not None, _checked_space(data, space, fixed, trials=trials, timeout=timeout)
    storage = _storage(storage) if storage else None
    out = check_outside(Path(out), data)
    out.mkdir(parents=True, exist_ok=True)
    name = study or f"sweep-{Path(data).resolve().name}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = storage or f"sqlite:///{(out / 'sweeps.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are announced below
    the_study = _create_study(name, storage, seed)
    defaults = _defaults_trial(space)
    if defaults is not None and not the_study.trials:  # a new study
        the_study.enqueue_trial(defaults, user_attrs={"defaults": True})
    chosen = _chosen_by_the_sweep(space, given_space)
    at_defaults = {k: v for k, v in space.items() if k in DEFAULT_TRIAL or k not in chosen}

    def objective(trial) -> float:
        options = {**fixed, **suggest(trial, at_defaults if trial.user_attrs.get("defaults") else space)}
        run = out / name / f"trial-{trial.number:03d}"
        trial.set_user_attr("run", str(run))

        def report(row: dict[str, Any]) -> None:
            trial.report(row["val_acc"], row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"val accuracy {row['val_acc']:.3f} at epoch {row['epoch']}")

        try:
            result = train(data, out=run, on_epoch=report, track=track, progress=progress, verbose=False, **options)
        except PhotoclassError as e:  # this trial's options; the sweep goes on
            trial.set_user_attr("error", str(e))
            raise
        trial.set_user_attr("test_accuracy", result.test["accuracy"])
        evaluation = RunDir(run).test_metrics()
        val = evaluation.get("val") or {}
        return val["accuracy"] if val.get("count") else evaluation["train"]["accuracy"]  # no val split

    with warnings.catch_warnings():  # a NOTE that an option has no effect is for the options the user gave
        for option in chosen:
            warnings.filterwarnings("ignore", message=f"`{re.escape(option)}` ", category=UnusedOptionWarning)
        the_study.optimize(
            objective, n_trials=trials, timeout=timeout, callbacks=[_announcer(verbose)], catch=(PhotoclassError,)
        )
    return the_study


def _checked_space(data, space, fixed: dict[str, Any], *, trials: int, timeout: float | None) -> dict[str, Any]:
    """The search space, less the options given as fixed, once the arguments are checked."""
    check_int("trials", trials, 1, 100_000)
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise PhotoclassError(f"`timeout` must be a positive number of seconds. Received: timeout={timeout!r}")
    space = load_space(space)
    searched = sorted(k for k in fixed if isinstance(space.get(k), (list, dict)))
    if searched:
        raise PhotoclassError(
            f"Options {searched} are both searched and fixed. HINT: drop them from the "
            "command line or from the search space."
        )
    space = {k: v for k, v in space.items() if k not in fixed}  # a fixed option overrides the space's value
    _check_fixed(fixed)
    if not Path(data).is_dir():
        raise PhotoclassError(f"Folder not found: {data}. HINT: sweep a folder of photos, as for `photoclass train`.")
    return space


def _create_study(name: str, storage: str, seed: int):
    import optuna

    return optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    )


def _announcer(verbose: bool) -> Callable[..., None]:
    """The Optuna callback that prints a line per finished trial (nothing unless `verbose`)."""

    def announce(study, trial) -> None:
        if verbose:
            state = trial.state.name.lower()
            value = f"val acc {trial.value:.4f}" if trial.value is not None else trial.user_attrs.get("error", "")
            rest = " (the other searched options at train's defaults)" if trial.user_attrs.get("defaults") else ""
            print(f"trial {trial.number:>3} {state:<8} {value:<14} {trial.params}{rest}", flush=True)

    return announce
