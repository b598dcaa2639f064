"""`train()`: from a folder of photos (or a prepared one) to an evaluated run directory."""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..config import PrepareConfig, TrainConfig
from ..data.augment import parse_augment
from ..data.dataset import PreparedDataset, manifest_csv
from ..data.loader import BatchLoader
from ..data.prepare import prepare
from ..errors import PhotoclassError
from ..evaluation.html_report import write_report
from ..evaluation.report import evaluate_dataset, write_evaluation
from ..models.registry import InputSpec, count_parameters, create_model, model_info
from ..runs.atomic import check_writable, write_text_atomic
from ..runs.rundir import RunDir
from ..runs.tracking import log_finished_run
from .callbacks import EarlyStopping, GracefulInterrupt
from .features import feature_loaders
from .loop import predict_logits, train_one_epoch
from .perf import setup_torch


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
        return (f"TrainResult({str(self.path)!r}, test accuracy {self.test['accuracy']:.4f}, "
                f"loss {self.test['loss']:.4f}, {len(self.history)} epochs, {self.seconds:.1f} s)")

    def _repr_html_(self) -> str:
        import html

        report = self.path / "report.html"
        link = f" · <a href='{report.as_uri()}'>report</a>" if report.is_file() else ""
        return f"<code>{html.escape(repr(self))}</code>{link}"


def train(data: str | os.PathLike | None = None, *, model: str | nn.Module | None = None,
          out: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
          track: bool | str | None = None, on_epoch: Callable[[dict[str, Any]], None] | None = None,
          progress: bool | None = None, verbose: bool = True, **options: Any) -> TrainResult:
    """Train `model` (a registry name or any `nn.Module`) on `data`; evaluate it on the test split.

    Options are the fields of `TrainConfig` (epochs, batch_size, lr, augment, ...) and of
    `PrepareConfig` (val_size, test_size, split, ...). `resume=RUN` continues an interrupted
    run from its `last.ckpt` with the options it was started with.

    The finished run is logged to MLflow (see `photoclass.runs.tracking`): `track` is a
    tracking URI, False for none, or None for the default. `on_epoch(row)` is called after
    each epoch with its metrics; an exception it raises stops training (sweeps prune so).
    """
    started = time.perf_counter()
    if resume is not None:
        run = RunDir(resume)
        saved = run.read_json("config.json")
        config, prep = TrainConfig.from_dict(saved["train"]), PrepareConfig.from_dict(saved["prepare"])
        data = saved["data"]
    else:
        if data is None:
            raise PhotoclassError("train() needs `data`, a folder of photos, or `resume`, a run.")
        config, prep, data = _resolve_options(data, model, options)
        run = RunDir(out or _default_run_name(config.model))
        if not (run.exists("last.ckpt") or run.exists("test.json")):  # else _start_run says why
            check_writable(run.path, hint="pass another --out")
    run.remove_temp_files()  # left by a process killed mid-write
    custom = model if isinstance(model, nn.Module) else None
    spec = _input_spec(config, custom)
    setup_torch(config.threads, config.seed)

    dataset = prepare(data, config=dataclasses.replace(prep, image_size=spec.size), progress=progress)
    net = custom if custom is not None else create_model(
        config.model, len(dataset.classes), input_size=spec.size,
        **({"dropout": config.dropout} if config.dropout is not None else {}))
    net.input_spec = spec
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    meta = _model_meta(config, dataset, spec, net)
    if resume is None:
        _start_run(run, config, prep, dataset, meta)

    strategy = _strategy(config, net)
    if strategy in ("features", "finetune"):
        # frozen layers run once over the photos; fit() trains the rest on their cached outputs
        encode, trained = net.split_for_training(0 if strategy == "features" else config.finetune_blocks)
        loaders = feature_loaders(encode, dataset, spec, batch_size=config.batch_size,
                                  flip_augment=parse_augment(config.augment).hflip, progress=progress)
        for module in trained.modules():  # e.g. a multiscale head standardizes its inputs
            if hasattr(module, "fit_statistics"):
                module.fit_statistics(loaders["train_eval"].features)
        weights = "head.safetensors"
    else:
        trained, loaders, weights = net, _loaders(dataset, config, spec), "model.safetensors"
    history, interrupted, stopped_early = fit(trained, loaders, config, run, meta, weights=weights,
                                               resume=resume is not None, on_epoch=on_epoch,
                                               progress=progress, verbose=verbose)
    if interrupted:
        return TrainResult(run, None, history, interrupted=True, seconds=time.perf_counter() - started)
    trained.load_state_dict(run.load_state(weights))  # the best epoch's weights
    run.save_model(net, meta)  # the whole network, whichever part of it was trained
    evaluation = evaluate_dataset(trained, dataset, spec, config, loaders=loaders, full_model=net)
    evaluation["training"] = {
        "epochs_run": len(history), "best_epoch": _best_epoch(history, config.monitor),
        "stopped_early": stopped_early, "seconds": round(time.perf_counter() - started, 2),
        "train_images_per_s": round(float(np.mean([h["images_per_s"] for h in history])), 1) if history else 0,
    }
    write_evaluation(run, evaluation, history, dataset, config)
    write_report(run, model=net, dataset=dataset)
    log_finished_run(run, track, verbose=verbose)
    return TrainResult(run, evaluation["test"], history, stopped_early=stopped_early,
                       seconds=time.perf_counter() - started)


def fit(net: nn.Module, loaders: dict[str, BatchLoader], config: TrainConfig, run: RunDir,
        meta: dict[str, Any], *, weights: str = "model.safetensors", resume: bool,
        on_epoch: Callable[[dict[str, Any]], None] | None = None, progress: bool | None, verbose: bool):
    """The epoch loop; the best epoch's weights go to `weights` in the run.

    Returns (history, interrupted, stopped_early).
    """
    train_loader = loaders["train"]
    loss_fn = nn.CrossEntropyLoss(weight=_class_weights(train_loader, meta) if config.class_weights else None,
                                  label_smoothing=config.label_smoothing)
    optimizer = _optimizer(net, config)
    scheduler = _scheduler(optimizer, config, len(train_loader))
    per_batch = config.schedule == "onecycle"
    stopper = EarlyStopping(config.monitor, config.early_stopping)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        ckpt = run.load_checkpoint()
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        stopper.load_state_dict(ckpt["early_stopping"])
        history = ckpt["history"]
        start_epoch = int(ckpt["epoch"]) + 1
        if verbose:
            print(f"resuming {run.path} at epoch {start_epoch + 1}/{config.epochs}")

    stopped_early = False
    with GracefulInterrupt() as interrupt:
        for epoch in range(start_epoch, config.epochs):
            seed = _epoch_seed(config.seed, epoch)
            stats = train_one_epoch(net, train_loader, optimizer, loss_fn, seed=seed, bf16=config.bf16,
                                    step_scheduler=scheduler.step if per_batch else None,
                                    should_stop=lambda: interrupt.requested,
                                    desc=f"epoch {epoch + 1}/{config.epochs}", progress=progress)
            if interrupt.requested:  # the partial epoch is dropped; resume repeats it
                if verbose:
                    print(f"interrupted: {run.path} holds epochs 1-{epoch}; continue with "
                          f"`photoclass train --resume {run.path}`")
                return history, True, False
            val_logits, val_labels = predict_logits(net, loaders["val"], bf16=config.bf16)
            row = {"epoch": epoch + 1, "train_loss": stats["loss"], "train_acc": stats["acc"],
                   "val_loss": float(nn.functional.cross_entropy(val_logits, val_labels)),
                   "val_acc": float((val_logits.argmax(1) == val_labels).float().mean()),
                   "lr": optimizer.param_groups[0]["lr"],
                   "seconds": round(stats["seconds"], 3), "images_per_s": round(stats["images_per_s"], 1)}
            history.append(row)
            improved = stopper.update(epoch + 1, row)
            if scheduler is not None and not per_batch:
                scheduler.step(row[config.monitor]) if config.schedule == "plateau" else scheduler.step()
            if improved:
                run.save_weights(net, weights)
            run.save_checkpoint({  # before metrics.csv: a row there means its epoch is saved
                "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "early_stopping": stopper.state_dict(), "history": history, "epoch": epoch,
            })
            run.write_metrics(history)
            if verbose:
                print(_epoch_line(row, config.epochs, improved), flush=True)
            if on_epoch is not None:
                on_epoch(row)
            if stopper.should_stop:
                stopped_early = True
                if verbose:
                    print(f"early stopping: {config.monitor} has not improved for "
                          f"{config.early_stopping} epochs; best was epoch {stopper.best_epoch}")
                break
    return history, False, stopped_early


def _resolve_options(data, model, options: dict[str, Any]):
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    prep_fields = {f.name for f in dataclasses.fields(PrepareConfig)}
    unknown = sorted(set(options) - train_fields - prep_fields)
    if unknown:
        raise PhotoclassError(f"Unknown option(s) {unknown}. Known options: "
                              f"{sorted(train_fields | prep_fields)}")
    prepared = Path(data) / "dataset.json"
    prep_values = {}
    if prepared.is_file():  # a folder written by `photoclass prepare`: reuse its source and options
        saved = RunDir(data).read_json("dataset.json")
        data = saved["root"]
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


def _strategy(config: TrainConfig, net: nn.Module) -> str:
    pretrained = hasattr(net, "split_for_training") and not config.model.startswith("custom:") \
        and model_info(config.model).pretrained
    if config.strategy in ("features", "finetune") and not pretrained:
        raise PhotoclassError(f"strategy={config.strategy!r} needs a pretrained model; "
                              f"{config.model!r} is trained from scratch. HINT: --model efficientnet-lite0")
    return config.strategy if config.strategy != "auto" else ("features" if pretrained else "scratch")


def _input_spec(config: TrainConfig, custom: nn.Module | None) -> InputSpec:
    if custom is not None:
        spec = getattr(custom, "input_spec", None) or InputSpec(224)
    else:
        spec = model_info(config.model).input_spec
    return dataclasses.replace(spec, size=config.image_size) if config.image_size else spec


def _model_meta(config: TrainConfig, dataset: PreparedDataset, spec: InputSpec, net: nn.Module) -> dict:
    return {"architecture": config.model, "classes": dataset.classes, "num_classes": len(dataset.classes),
            "input": spec.to_dict(), "parameters": count_parameters(net),
            "photoclass": __version__, "torch": torch.__version__}


def _start_run(run: RunDir, config: TrainConfig, prep: PrepareConfig, dataset: PreparedDataset, meta) -> None:
    if run.exists("last.ckpt") or run.exists("test.json"):  # weights alone: killed before its first epoch ended
        raise PhotoclassError(f"{run.path} already holds a run. HINT: pass another --out, or "
                              f"--resume {run.path} to continue it.")
    run.create()
    run.write_json("model.json", meta)
    run.write_json("config.json", {
        "data": str(dataset.root), "train": config.to_dict(), "prepare": prep.to_dict(),
        "model": meta, "versions": {"photoclass": __version__, "torch": torch.__version__,
                                    "numpy": np.__version__},
    })
    write_text_atomic(run / "split.csv", manifest_csv(dataset.rows))
    run.write_json("data.json", dataset.summary)


def _loaders(dataset: PreparedDataset, config: TrainConfig, spec: InputSpec) -> dict[str, BatchLoader]:
    def loader(split: str, train: bool) -> BatchLoader:
        return BatchLoader(dataset.images, dataset.labels, dataset.indices(split),
                           batch_size=config.batch_size, mean=spec.mean, std=spec.std,
                           augment=parse_augment(config.augment) if train else None, shuffle=train)
    loaders = {"train": loader("train", True), "train_eval": loader("train", False),
               "val": loader("val", False), "test": loader("test", False)}
    if not len(loaders["val"].indices):
        loaders["val"] = loaders["train_eval"]  # too few photos for a validation split
    return loaders


def _optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in net.parameters() if p.requires_grad]
    # fused: one kernel for the whole update; half the time of foreach on a 16M-parameter model
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True,
                               weight_decay=config.weight_decay)
    return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    if config.schedule == "plateau":
        mode = "max" if config.monitor.endswith("acc") else "min"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=config.plateau_factor, patience=config.plateau_patience,
            min_lr=config.min_lr)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.min_lr)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                   total_steps=config.epochs * max(steps_per_epoch, 1))
    return None


def _class_weights(loader: BatchLoader, meta) -> torch.Tensor:
    counts = torch.bincount(loader.labels, minlength=meta["num_classes"]).float()
    return counts.sum() / (len(counts) * counts.clamp(min=1))


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


def _best_epoch(history, monitor: str) -> int:
    if not history:
        return 0
    pick = max if monitor.endswith("acc") else min
    return pick(history, key=lambda h: h[monitor])["epoch"]


def _default_run_name(model: str) -> Path:
    return Path("runs") / f"{model.replace(':', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"


def _epoch_line(row: dict[str, Any], epochs: int, improved: bool) -> str:
    return (f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  lr {row['lr']:.2g}  "
            f"{row['seconds']:.1f} s ({row['images_per_s']:.0f} img/s){'  *' if improved else ''}")
