"""`train()`: prepare -> model -> fit -> evaluate -> write the run -> report -> track."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..config import AugmentSpec, PrepareConfig, TrainConfig, did_you_mean, parse_augment, takes_options
from ..config.applies import applied_augment, augment_note, unused_options
from ..core import distributed
from ..core.atomic import check_writable
from ..core.device import channels_last, memory_format, resolve_device, resolve_precision
from ..core.errors import PhotoclassError, UnusedOptionWarning
from ..core.torchsetup import setup_torch
from ..core.version import __version__
from ..data.dataset import PreparedDataset, manifest_csv
from ..data.decode import DecodeError, decode_photo
from ..data.loader import BatchLoader
from ..data.outside import check_outside
from ..data.prepare import prepare
from ..data.summary import corrections_lines, split_text, task_text
from ..evaluation import plots
from ..evaluation.html_report import write_report
from ..evaluation.report import evaluate_dataset, format_test, write_evaluation
from ..experiments.before_after import before_after, format_before_after
from ..experiments.tracking import log_finished_run
from ..inference import outliers
from ..inference.prediction import expand_paths
from ..models.input_spec import InputSpec
from ..models.registry import ModelChoice, choose_model, count_parameters, model_info
from ..runs.rundir import RunDir
from ..tasks import TASKS, Task, get_task, task_for
from ..training.features import feature_loaders
from ..training.finetune import freeze_batchnorm
from .stages import CACHED_STRATEGIES, Stage

RESUME_OPTIONS = ("epochs", "device", "precision", "threads")  # what may change when a run is resumed


@dataclass
class TrainResult:
    run: RunDir
    test: dict[str, Any] | None  # None when interrupted
    history: list[dict[str, Any]]
    interrupted: bool = False
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def path(self) -> Path:
        return self.run.path

    def __repr__(self) -> str:
        if self.test is None:
            return f"TrainResult({str(self.path)!r}, interrupted)"
        return (
            f"TrainResult({str(self.path)!r}, test accuracy {self.test['accuracy']:.4f}, "
            f"loss {self.test['loss']:.4f}, {self._fitted()}, {self.seconds:.1f} s)"
        )

    def _fitted(self) -> str:
        """'one solve' (a logistic regression's), '1 epoch', '12 epochs', 'one solve and 10 epochs' (LP-FT)."""
        solved = self.run.exists(RunDir.CLASSIFIER)  # the head's one solve is the history's first row
        epochs = max(len(self.history) - solved, 0)
        counted = f"{epochs} epoch" if epochs == 1 else f"{epochs} epochs"
        if not solved:
            return counted
        return f"one solve and {counted}" if epochs else "one solve"

    def _repr_html_(self) -> str:
        import html

        report = self.run / RunDir.REPORT
        link = f" · <a href='{report.as_uri()}'>report</a>" if report.is_file() else ""
        return f"<code>{html.escape(repr(self))}</code>{link}"


@takes_options(TrainConfig, PrepareConfig)
def train(
    data: str | os.PathLike | None = None,
    *,
    model: str | nn.Module | None = None,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    track: bool | str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    progress: bool | None = None,
    verbose: bool = True,
    compare_to: str | os.PathLike | None = None,
    **options: Any,
) -> TrainResult:
    """Train `model` (a registry name or any `nn.Module`) on `data`; evaluate it on the test split.

    Options are the fields of `TrainConfig` (epochs, batch_size, lr, augment, ...) and of
    `PrepareConfig` (val_size, test_size, split, ...). `resume=RUN` continues an interrupted
    run with the options it was started with (`epochs=N` continues a finished one to N epochs).

    The finished run is logged to MLflow (see `photoclass.experiments.tracking`): `track` is a
    tracking URI, False for none, or None for the default. `on_epoch(row)` is called after
    each epoch with its metrics; an exception it raises stops training (sweeps prune so).
    `compare_to=RUN` (say, the run before labels were corrected) adds both runs' test figures,
    on the whole test split and on the test photos whose labels did not change, to the report.
    """
    started = time.perf_counter()
    before = _run_to_compare(compare_to)
    place = distributed.processes()  # under torchrun: this process's rank; else the only one
    say = print if verbose and place.main else _silent
    if resume is not None:
        run, config, prep, data = _resume_options(resume, options, place)
    else:
        if data is None:
            raise PhotoclassError(
                "train() needs `data`, a folder of photos, or `resume`, a run. HINT: train('examples/weather')."
            )
        config, prep, data = _resolve_options(data, model, options)
    device = _device(config.device, place)
    distributed.init(device)
    if resume is None:
        run = RunDir(out or distributed.agree(str(_default_run_name(config.model)), place, device))
        if place.main:
            _refuse_existing_run(run)
    created = _first_missing(run.path) if place.main else None  # what a failure must take away again
    if resume is None and place.main:
        check_outside(run.path, data)
        check_writable(run.path, hint="pass another --out")
    try:
        return _train(
            run,
            data,
            config,
            prep,
            model if isinstance(model, nn.Module) else None,
            device=device,
            place=place,
            resume=resume is not None,
            given=set(options) | ({"model"} if model is not None else set()),
            track=track,
            on_epoch=on_epoch,
            before=before,
            progress=progress if place.main else False,
            say=say,
            started=started,
        )
    except BaseException:
        if created is not None and not run.exists(RunDir.CHECKPOINT):  # nothing worth keeping: no empty run left
            shutil.rmtree(created, ignore_errors=True)
        raise


def _train(
    run: RunDir,
    data,
    config: TrainConfig,
    prep: PrepareConfig,
    custom: nn.Module | None,
    *,
    device: torch.device,
    place: distributed.Processes,
    resume: bool,
    given: set[str],
    track,
    on_epoch,
    before: RunDir | None,
    progress,
    say,
    started: float,
) -> TrainResult:
    if place.main:
        run.remove_temp_files()  # left by a process killed mid-write
    if prep.task != "auto":  # an unknown task, or a loss it does not train with, is refused before the photos are read
        _check_loss(config, get_task(prep.task))
    choice = _choose_model(config, custom, say)
    spec = choice.input_spec
    _setup_threads(config, place)
    prep = dataclasses.replace(prep, image_size=spec.size)
    dataset = _prepare_in_turn(data, prep, place, progress, pixels=_keeps_pixels(config, choice, device))
    say(_data_line(dataset.summary))
    task = run_task(config, prep, dataset.summary)
    config, choice = _task_default_model(config, choice, task, len(dataset), say, asked="model" in given or resume)
    _check_test_split(dataset, prep)
    net = build_model(config, choice, len(dataset.classes), device, channels=dataset.summary.get("channels", 3))
    spec = net.input_spec  # grey photos: 1 channel for a model trained from scratch
    auto = config.strategy == "auto"
    config = _resolved(config, choice, net, device)
    if auto:
        _say_strategy(config, say)
    applied = applied_augment(config)
    meta = _model_meta(config, dataset, spec, net, task)
    if not resume and place.main:
        _start_run(run, config, prep, dataset, meta, applied)
        _say_unused(config, given, applied, say)
    checkpoint = run.load_checkpoint() if resume else None
    _note_other_world(run, checkpoint, place, say)
    stage = Stage(
        config,
        run,
        place,
        num_classes=len(dataset.classes),
        task=task,
        on_epoch=on_epoch,
        progress=progress,
        verbose=say is print,
    )
    state, trained, loaders, weights = _fit_stages(stage, net, dataset, config, spec, place, checkpoint, progress)
    unevaluated = _unevaluated(run, state, place, say, started)
    if unevaluated is not None:
        return unevaluated

    say(f"evaluating {'the best epoch' if len(state.history) > 1 else 'the model'} on the test split ...", flush=True)
    trained.load_state_dict(run.load_state(weights))  # the best epoch's weights
    if config.unknown_accept:
        score, meta["outliers"] = _fit_outliers(run, trained, loaders, config, dataset.groups)
        _sharpen_with_outsiders(score, meta["outliers"], net, dataset, spec, config, device, say)
    evaluation = evaluate_dataset(trained, dataset, spec, config, task=task, loaders=loaders, full_model=net)
    if config.unknown_accept:
        _explain_test(run, evaluation, score, meta["outliers"]["threshold"], trained, loaders["test"], dataset)
    _complete_meta(meta, evaluation, trained)
    run.save_model(net, meta)  # the whole network, whichever part of it was trained
    evaluation["training"] = _training_summary(state, config, loaders, started)
    say("writing plots and report.html ...", flush=True)
    write_evaluation(run, evaluation, state.history, dataset, config, augment=str(applied))
    if before is not None:
        _compare_with(before, run, say)
    write_report(run, model=net, dataset=dataset)
    seconds = time.perf_counter() - started
    say(format_test(evaluation["test"], run.path, unknown=evaluation.get("outlier_scores")))
    log_finished_run(run, track, verbose=say is print)
    return TrainResult(run, evaluation["test"], state.history, stopped_early=state.stopped_early, seconds=seconds)


def _unevaluated(run: RunDir, state, place: distributed.Processes, say, started: float) -> TrainResult | None:
    """The result of a process that evaluates nothing: not the main one, or interrupted."""
    if not place.main:  # the main process evaluates and writes; the others are done
        return TrainResult(
            run, None, state.history, stopped_early=state.stopped_early, seconds=time.perf_counter() - started
        )
    if state.interrupted:
        say(
            f"interrupted: {run.path} holds epochs 1-{len(state.history)}; continue with "
            f"`photoclass train --resume {run.path}`"
        )
        return TrainResult(run, None, state.history, interrupted=True, seconds=time.perf_counter() - started)
    return None


def _check_test_split(dataset: PreparedDataset, prep: PrepareConfig) -> None:
    if not len(dataset.indices("test")):
        raise PhotoclassError(
            f"The test split of {dataset.root} is empty ({dataset.summary['usable']} photos, "
            f"test_size {prep.test_size}): nothing would measure the model. HINT: add photos, "
            "or raise --test-size."
        )


def run_task(config: TrainConfig, prep: PrepareConfig, data_summary: dict[str, Any]) -> Task:
    """The run's task (`task`, or with auto the data's), checked against `loss` and configured with
    it and the threshold rule: how it trains and how it decides."""
    task = task_for(prep.task, data_summary)
    _check_loss(config, task)
    return task.configured({"rule": config.threshold_rule, "loss": config.loss})


def _check_loss(config: TrainConfig, task: Task) -> None:
    """Refuse a `loss` that the run's task does not train with (asl on one label a photo)."""
    if config.loss not in task.losses:
        takers = " or ".join(t.name for t in TASKS.values() if config.loss in t.losses)
        raise PhotoclassError(
            f"`loss` {config.loss} is for {takers} runs; this run is {task.name} (the data's labels, or `task`). "
            f"HINT: leave `loss` out (auto: {task.name}'s own loss), or pass `task` {takers} where each photo "
            "has several labels"
        )


def _say_strategy(config: TrainConfig, say) -> None:
    """What `--strategy auto` chose, and why."""
    if config.strategy == "features":
        say(
            "strategy: features (auto on a CPU: the frozen backbone runs once and the head trains in "
            "milliseconds an epoch; --strategy lpft also fine-tunes every layer, minutes an epoch here)"
        )
    elif config.strategy == "lpft":
        say("strategy: lpft (auto on a GPU: the head on frozen features, then every layer fine-tuned)")


def _note_other_world(run: RunDir, checkpoint: dict | None, place: distributed.Processes, say) -> None:
    if checkpoint is not None and checkpoint.get("processes", 1) != place.world:
        say(
            f"note: {run.path} was saved by {checkpoint.get('processes', 1)} process(es) and resumes with "
            f"{place.world}; the global batch is the same, so training continues, but later epochs will not "
            "match an uninterrupted run bit for bit"
        )


def _fit_stages(
    stage: Stage,
    net: nn.Module,
    dataset: PreparedDataset,
    config: TrainConfig,
    spec: InputSpec,
    place,
    checkpoint,
    progress,
):
    """Fit the run's stage or stages (LP-FT: the head, then every layer), from `checkpoint`
    when resuming: (the last stage's FitState, the part it trained, its loaders, the file of
    its best weights)."""
    fine_tuning = checkpoint is not None and checkpoint.get("stage") == "ft"  # killed in lpft's second stage
    if not fine_tuning:
        trained, loaders, weights = _trained_part(net, dataset, config, spec, place, progress)
        if _probes(config):
            state = stage.probe(trained, loaders, groups=dataset.groups[loaders["train_eval"].indices], weights=weights)
        else:
            state = stage.fit(trained, loaders, weights=weights, checkpoint=checkpoint)
    if config.strategy == "lpft" and (fine_tuning or not state.interrupted):
        head = None if fine_tuning else trained
        trained, loaders, weights = net, _pixel_loaders(dataset, config, spec, place), RunDir.WEIGHTS
        state = stage.fine_tune(
            net, head, loaders, checkpoint=checkpoint if fine_tuning else None, probe=None if fine_tuning else state
        )
    return state, trained, loaders, weights


def _training_summary(state, config: TrainConfig, loaders, started: float) -> dict[str, Any]:
    return {
        "epochs_run": len(state.history),
        "best_epoch": _best_epoch(state.history, config.monitor),
        "stopped_early": state.stopped_early,
        "seconds": round(time.perf_counter() - started, 2),
        "train_images_per_s": round(float(np.mean([h["images_per_s"] for h in state.history])), 1)
        if state.history
        else 0,
        **({"features_by": loaders["train"].encoder} if hasattr(loaders["train"], "encoder") else {}),
    }


def _fit_outliers(run: RunDir, trained: nn.Module, loaders, config: TrainConfig, groups: np.ndarray) -> dict:
    """The "none of these" score on the training photos' features, its threshold from the
    validation photos and, where the backbone stayed frozen, the training photos themselves;
    saved beside the weights. Returns its model.json entry."""
    fitted = loaders["train_eval"]
    keep = outliers.bank_rows(len(fitted.labels), config.seed)  # only the bank's rows are held
    rows = np.asarray(fitted.indices)[keep]  # the bank's photos, as rows of the dataset
    train = outliers.features_of(trained, fitted.batches(), rows=len(fitted.labels), keep=keep)
    val = (
        outliers.features_of(trained, loaders["val"].batches(), rows=len(loaders["val"].labels))
        if loaders["val"] is not fitted
        else train[:0]
    )
    frozen = config.strategy == "features"  # trained features sit closer to their own photos than to new ones
    score, info = outliers.fit(
        train,
        val,
        accept=config.unknown_accept,
        rows=rows,
        groups=groups[rows] if frozen else None,
        seed=config.seed,
    )
    outliers.save(score, run / RunDir.OUTLIERS)
    return score, info


def _complete_meta(meta: dict, evaluation: dict, trained: nn.Module) -> None:
    """What model.json learns from the test: the temperature (fitted on the validation split),
    the decision rule (label sets), and how many parameters were trained (the rest stayed as pretrained)."""
    meta["temperature"] = evaluation["temperature"]
    if "decision" in evaluation:
        meta["decision"] = evaluation["decision"]
    meta["trained_parameters"] = sum(p.numel() for p in trained.parameters() if p.requires_grad)


def _compare_with(before: RunDir, run: RunDir, say) -> None:
    compared = before_after(before, run)
    run.write_json(RunDir.BEFORE_AFTER, compared)
    say(format_before_after(compared))


def _run_to_compare(path) -> RunDir | None:
    if path is None:
        return None
    before = RunDir(path)
    if not (before.exists(RunDir.TEST_METRICS) and before.exists(RunDir.SPLIT)):
        raise PhotoclassError(
            f"--compare-to {path}: not a finished run (no {RunDir.TEST_METRICS} and {RunDir.SPLIT} there). "
            "HINT: pass the folder of a run that finished training."
        )
    return before


def _sharpen_with_outsiders(score, info: dict, net: nn.Module, dataset, spec, config: TrainConfig, device, say) -> None:
    """Lower the "none of these" threshold in `info` with the photos of no known class: those a
    correction marked outsider and those in `config.outsiders`; says what they changed."""
    marked = [dataset.root / r.path for r in dataset.rows if r.status == "outsider"]
    paths = [p for p in marked if p.is_file()]
    if len(paths) < len(marked):  # an array item (x.npz#10) has no file of its own to read
        say(f"outsiders: {len(marked) - len(paths)} marked outsider have no photo file (array items): left out")
    if config.outsiders:
        folder = Path(config.outsiders).expanduser()
        if not folder.is_dir():
            raise PhotoclassError(f"--outsiders {folder}: no such folder. HINT: pass a folder of photos of no class.")
        paths += expand_paths([folder])
    if not paths:
        return
    if spec.channels != 3:
        say("outsiders: left out, the model reads grey arrays, not photos")
        return
    pixels, unreadable = [], []
    for path in paths:
        try:
            pixels.append(decode_photo(path, size=spec.size).to_array())
        except DecodeError as e:
            unreadable.append(f"{path}: {e.reason}")
    if not pixels:
        say(f"outsiders: none of the {len(paths)} photos could be read, e.g. {unreadable[0]}")
        return
    images = np.stack(pixels)
    loader = BatchLoader(
        images,
        np.zeros(len(images)),
        np.arange(len(images)),
        batch_size=64,
        mean=spec.mean,
        std=spec.std,
        device=device,
    )
    found = outliers.sharpen(
        score.reference, score.scores(outliers.features_of(net, loader.batches())), info["threshold"]
    )
    found["unreadable"] = unreadable
    info.update(threshold=found["threshold"], sharpened=found)
    say(
        f"outsiders: {found['outsiders']} photos of no class set the 'none of these' threshold "
        f"({found['before']:.3f} -> {found['threshold']:.3f}); it flags {found['outsiders_flagged']} of them "
        f"(before: {found['outsiders_flagged_before']}) and accepts {found['known_accepted']:.1%} of the known photos"
        + (f"; {len(unreadable)} unreadable, skipped" if unreadable else "")
    )


def _explain_test(
    run: RunDir,
    evaluation: dict,
    score: outliers.OutlierScore,
    threshold: float,
    trained: nn.Module,
    test: BatchLoader,
    dataset: PreparedDataset,
    k: int = 3,
) -> None:
    """The test photos' outlier scores (the share accepted, a histogram) and, beside each
    misclassified photo in `evaluation`, its k nearest training photos."""
    features = outliers.features_of(trained, test.batches())
    if not len(features):
        return
    values = score.scores(features)
    evaluation["outlier_scores"] = {
        "threshold": threshold,
        "test_photos": len(values),
        "test_accepted": float((values <= threshold).float().mean()),
    }
    plots.outlier_histogram({"test photos": values.numpy()}, threshold, run.plot("outlier_scores"))
    position = {int(i): n for n, i in enumerate(test.indices)}
    wrong = [w for w in evaluation["misclassified"] if w["index"] in position]
    if wrong:
        distances, nearest = score.nearest(features[[position[w["index"]] for w in wrong]], k)
        for w, far, found in zip(wrong, distances.tolist(), score.rows[nearest].tolist()):
            w["nearest"] = [
                {"path": dataset.usable[r].path, "label": dataset.usable[r].label, "distance": round(max(0.0, d), 6)}
                for d, r in zip(far, found)
            ]


def build_model(
    config: TrainConfig, choice: ModelChoice, num_classes: int, device: torch.device, channels: int = 3
) -> nn.Module:
    """The chosen model for `num_classes`, with its input contract, on `device`; a model trained
    from scratch takes `channels` (1 for grey data), a pretrained one 3."""
    net = choice.build(num_classes, channels=channels, dropout=config.dropout)
    return net.to(device, memory_format=memory_format(device, config.channels_last))


def _trained_part(
    net: nn.Module,
    dataset: PreparedDataset,
    config: TrainConfig,
    spec: InputSpec,
    place: distributed.Processes,
    progress,
):
    """(the part of `net` that trains, its loaders, its weights file) for the strategy."""
    if config.strategy not in (*CACHED_STRATEGIES, "lpft"):
        return net, _pixel_loaders(dataset, config, spec, place), RunDir.WEIGHTS
    if config.strategy == "finetune" and hasattr(net, "freeze_below"):
        # a timm backbone has no cut common to all architectures: its frozen blocks run on every batch
        net = freeze_batchnorm(net.freeze_below(config.finetune_blocks))
        return net, _pixel_loaders(dataset, config, spec, place, augment=applied_augment(config)), RunDir.WEIGHTS
    # frozen layers run once over the photos; fit() trains the rest on their cached outputs
    encode, trained = net.split_for_training(config.finetune_blocks if config.strategy == "finetune" else 0)
    loaders = feature_loaders(
        encode,
        dataset,
        spec,
        batch_size=config.batch_size,
        flip_augment=applied_augment(config).hflip and not _probes(config),
        device=config.device,
        place=place,
        precision=config.precision,
        progress=progress,
        reuse=config.strategy == "features",
    )
    # e.g. a multiscale head standardizes its inputs: the outermost module that measures them does
    measures = next((m for m in trained.modules() if hasattr(m, "fit_statistics")), None)
    if measures is not None:
        measures.fit_statistics(loaders["train_eval"].features)
    return trained, loaders, RunDir.HEAD_WEIGHTS


def _resolve_options(data, model, options: dict[str, Any]):
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    prep_fields = {f.name for f in dataclasses.fields(PrepareConfig)}
    unknown = sorted(set(options) - train_fields - prep_fields)
    if unknown:
        raise PhotoclassError(
            f"Unknown option(s) {unknown}.{did_you_mean(unknown, train_fields | prep_fields)} "
            f"Known options: {sorted(train_fields | prep_fields)}"
        )
    prepared = Path(data) / "dataset.json"
    prep_values = {}
    if prepared.is_file():  # a folder written by `photoclass prepare`: reuse its source and options
        saved = RunDir(data).read_json("dataset.json")
        data = saved.get("summary", {}).get("source", saved["root"])  # a CSV's own path, not its folder
        prep_values = {k: v for k, v in saved["config"].items() if k in prep_fields}
    prep_values.update({k: v for k, v in options.items() if k in prep_fields})
    train_values = {k: v for k, v in options.items() if k in train_fields}
    if isinstance(model, str):
        train_values["model"] = model
    elif isinstance(model, nn.Module):
        train_values["model"] = f"custom:{type(model).__name__}"
    if not train_values.get("model", "").startswith("custom:"):  # the model's own defaults first
        name = train_values.get("model", TrainConfig.model)
        train_values = {**model_info(name).defaults, **train_values}
    if "seed" in options:
        prep_values["seed"] = options["seed"]
    return TrainConfig.from_dict(train_values), PrepareConfig.from_dict(prep_values), data


def _resume_options(resume, options: dict[str, Any], place: distributed.Processes):
    """The run and its saved options; `epochs` alone may change (to continue a finished run)."""
    run = RunDir(resume)
    if not run.path.is_dir():
        raise PhotoclassError(f"Cannot resume {run.path}: no such run folder. HINT: photoclass runs lists them.")
    other = sorted(set(options) - set(RESUME_OPTIONS))
    if other:
        raise PhotoclassError(
            f"--resume continues a run with its own options; only {', '.join(RESUME_OPTIONS)} "
            f"may change. Received: {other}. HINT: start a new run with --out instead."
        )
    saved = run.config()
    config, prep = TrainConfig.from_dict(saved["train"]), PrepareConfig.from_dict(saved["prepare"])
    done = len(run.metrics_rows()) if run.exists(RunDir.METRICS) else 0  # epochs saved
    epochs = options.get("epochs")
    if run.exists(RunDir.TEST_METRICS) and config.strategy == "features" and _probes(config):
        raise PhotoclassError(
            f"{run.path} is finished: its classifier was fitted in one go (L-BFGS), so there are "
            "no epochs to continue. HINT: train a new run, with --head-solver epochs for epochs."
        )
    if run.exists(RunDir.TEST_METRICS) and not (epochs and epochs > done):
        raise PhotoclassError(
            f"{run.path} is finished ({done} epochs); nothing to resume and nothing changed. "
            f"HINT: --epochs N (more than {done}) continues training it to N epochs."
        )
    moved = {k: options[k] for k in ("device", "precision", "threads") if k in options}
    if moved:
        config = dataclasses.replace(config, **moved)
    if epochs is not None:
        if epochs <= done:
            raise PhotoclassError(
                f"{run.path} has already run {done} epochs. Received: epochs={epochs}. "
                f"HINT: ask for more than {done}, or leave --epochs out."
            )
        config = dataclasses.replace(config, epochs=epochs)
        saved["train"] = config.to_dict()
        if place.main:
            run.write_config(saved)
    return run, config, prep, saved["data"]


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (runs/ for a first runs/x), or None."""
    path = path.absolute()
    missing = None
    while not path.exists():
        missing, path = path, path.parent
    return missing


def _device(name: str, place: distributed.Processes) -> torch.device:
    """The device asked for; under torchrun, each process on a machine takes its own GPU."""
    device = resolve_device(name)
    if place.active and device.type == "cuda" and name in ("auto", "cuda"):
        device = torch.device("cuda", place.local_rank)
    return device


def _prepare_in_turn(data, prep: PrepareConfig, place: distributed.Processes, progress, *, pixels: bool | str):
    """The main process decodes into the cache first; the others then find it warm."""
    dataset = prepare(data, config=prep, progress=progress, pixels=pixels) if place.main else None
    distributed.barrier()
    return dataset if dataset is not None else prepare(data, config=prep, progress=False, pixels=pixels)


def _setup_threads(config: TrainConfig, place: distributed.Processes) -> None:
    """Processes on one machine share its cores: one each by default under torchrun."""
    threads = config.threads or (max(1, (os.cpu_count() or 1) // place.local_world) if place.active else 0)
    setup_torch(threads, config.seed)


def _choose_model(config: TrainConfig, custom: nn.Module | None, say) -> ModelChoice:
    """The model resolved once (a timm backbone's weights found before the photos are read);
    the input size chosen for a CPU is said."""
    choice = choose_model(
        config.model if custom is None else custom, image_size=config.image_size, weights=config.weights
    )
    if choice.note:
        say(f"input: {choice.note}")
    return choice


def _task_default_model(config: TrainConfig, choice: ModelChoice, task, photos: int, say, *, asked: bool):
    """(config, choice) with the task's own default model when it has one for this many photos
    and none was `asked` for."""
    if asked or choice.custom is not None:
        return config, choice
    model, why = task.default_model(photos)
    if why:
        say(f"model: {model or config.model} for {task.name} data: {why} (--model picks another)")
    if model is None or model == config.model:
        return config, choice
    config = dataclasses.replace(config, model=model)
    return config, _choose_model(config, None, say)


def _keeps_pixels(config: TrainConfig, choice: ModelChoice, device: torch.device) -> bool | str:
    """Whether training keeps the photos' decoded pixels in the cache: True where it reads them
    more than once; "auto" for `features`, which runs the frozen backbone over each photo once,
    so that only few photos' pixels are kept (decoding them again costs 9% of a small run's
    time; keeping 100,000 would cost 20 GB of disk)."""
    if choice.custom is not None:
        return True
    return True if _strategy(config.strategy, choice.pretrained, device) != "features" else "auto"


def _strategy(strategy: str, pretrained: bool, device: torch.device) -> str:
    if strategy != "auto":
        return strategy
    return "scratch" if not pretrained else "lpft" if device.type == "cuda" else "features"


def _refuse_existing_run(run: RunDir) -> None:
    if run.exists(RunDir.CHECKPOINT) or run.exists(RunDir.TEST_METRICS):  # weights alone: killed in epoch 1
        raise PhotoclassError(
            f"{run.path} already holds a run. HINT: pass another --out, or --resume {run.path} to continue it."
        )
    if run.path.exists() and not run.path.is_dir():
        raise PhotoclassError(f"{run.path} is a file, not a run folder. HINT: pass another --out.")


def _resolved(config: TrainConfig, choice: ModelChoice, net: nn.Module, device: torch.device) -> TrainConfig:
    """`config` with what actually runs: the strategy, the input size, the head's dropout, the
    device and the precision."""
    spec = net.input_spec
    pretrained = hasattr(net, "split_for_training") and choice.pretrained
    if config.strategy in (*CACHED_STRATEGIES, "lpft") and not pretrained:
        raise PhotoclassError(
            f"strategy={config.strategy!r} needs a pretrained model; "
            f"{config.model!r} is trained from scratch. HINT: --model efficientnet-lite0"
        )
    strategy = _strategy(config.strategy, pretrained, device)
    dropout = next((m.p for m in net.modules() if isinstance(m, nn.Dropout)), config.dropout)
    stage = "features" if strategy in CACHED_STRATEGIES else "train"  # bf16 features are not fp32's: core/device.py
    return dataclasses.replace(
        config,
        strategy=strategy,
        image_size=spec.size,
        dropout=dropout,
        device=str(device),
        precision=resolve_precision(config.precision, device, stage=stage),
        channels_last=channels_last(device, config.channels_last),
    )


def _probes(config: TrainConfig) -> bool:
    """Whether the classifier on cached features is fitted as a logistic regression."""
    return config.strategy in ("features", "lpft") and config.head_solver == "lbfgs"


def _say_unused(config: TrainConfig, given: set[str], applied: AugmentSpec, say) -> None:
    """Warn of options given that the resolved strategy ignores, and say which augmentation applies."""
    _warn_unused(config, given)
    if "augment" not in given and applied != parse_augment(config.augment):
        what, why = augment_note(config)
        say(f"augmentation: {what}, as {why} (--strategy lpft or scratch augments the pixels)")


def _warn_unused(config: TrainConfig, given: set[str]) -> None:
    """An UnusedOptionWarning for each option given on purpose that the resolved strategy ignores."""
    for name, why in unused_options(config).items():
        if name in given:
            warnings.warn(f"`{name}` {why}", UnusedOptionWarning, stacklevel=5)


def _model_meta(config: TrainConfig, dataset: PreparedDataset, spec: InputSpec, net: nn.Module, task) -> dict:
    return {
        "architecture": config.model,
        "task": task.name,
        "classes": dataset.classes,
        "num_classes": len(dataset.classes),
        "input": spec.to_dict(),
        "parameters": count_parameters(net),
        "photoclass": __version__,
        "torch": torch.__version__,
    }


def _start_run(
    run: RunDir, config: TrainConfig, prep: PrepareConfig, dataset: PreparedDataset, meta, applied: AugmentSpec
) -> None:
    run.create()
    run.write_model_meta(meta)
    run.write_config(
        {
            "data": str(dataset.root),
            "train": config.to_dict(),
            "prepare": prep.to_dict(),
            "applied": {"augment": str(applied)},
            "model": meta,
            "versions": {"photoclass": __version__, "torch": torch.__version__, "numpy": np.__version__},
        },
    )
    run.write_split(manifest_csv(dataset.rows))
    run.write_data_summary(dataset.summary)


def _pixel_loaders(
    dataset: PreparedDataset,
    config: TrainConfig,
    spec: InputSpec,
    place: distributed.Processes,
    augment: AugmentSpec | None = None,
) -> dict[str, BatchLoader]:
    """Training batches split among the processes; every process validates on all the photos,
    so all agree on early stopping and the schedule without talking. `augment` replaces the
    configured augmentation."""

    def loader(split: str, train: bool) -> BatchLoader:
        # the test figures are measured on the photos as decoded, not on a lossy cache
        return BatchLoader(
            dataset.exact_images() if split == "test" else dataset.images,
            dataset.labels,
            dataset.indices(split),
            batch_size=config.batch_size,
            mean=spec.mean,
            std=spec.std,
            augment=(parse_augment(config.augment) if augment is None else augment) if train else None,
            shuffle=train,
            device=config.device,
            shard=(place.rank, place.world) if train else (0, 1),
            channels_last=config.channels_last,
        )

    loaders = {
        "train": loader("train", True),
        "train_eval": loader("train", False),
        "val": loader("val", False),
        "test": loader("test", False),
    }
    if not len(loaders["val"].indices):
        loaders["val"] = loaders["train_eval"]  # too few photos for a validation split
    return loaders


def _best_epoch(history, monitor: str) -> int:
    if not history:
        return 0
    pick = max if monitor.endswith("acc") else min
    return pick(history, key=lambda h: h[monitor])["epoch"]


def _default_run_name(model: str) -> Path:
    return Path("runs") / f"{model.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"


def _data_line(summary: dict[str, Any]) -> str:
    s = summary["splits"]
    notes = "".join(f"\nNOTE: {note}" for note in summary.get("notes", []))
    task = task_text(summary)
    kind = "labels" if task else "classes"
    return (
        f"data: {summary['usable']} photos in {len(summary['classes'])} {kind} (layout {summary['layout']}, "
        f"{summary['skipped']} skipped); train {s['train']}, val {s['val']}, test {s['test']} "
        f"({split_text(summary)})"
        + (f"\n{task}" if task else "")
        + notes
        + "\n".join(corrections_lines(summary.get("corrections")))
    )


def _silent(*args, **kwargs) -> None:
    pass
