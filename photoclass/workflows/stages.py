"""How one stage of a run is fitted: the loss, optimizer, schedule and callbacks, then `fit`.

A run has one stage, or two with LP-FT (the head on cached features, then every layer).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig
from ..core import distributed
from ..runs.rundir import RunDir
from ..tasks import Task
from ..training.callbacks import Checkpoint, EarlyStopping, EpochHook, EpochPrinter, LRSchedule, MetricsWriter
from ..training.finetune import discriminative_groups, freeze_batchnorm, warmup_cosine
from ..training.loop import fit, validate
from ..training.state import FitState
from ..training.probe import fit_linear_probe
from ..training.optim import create_optimizer, create_scheduler

CACHED_STRATEGIES = ("features", "finetune")  # frozen layers run once; the rest trains on their outputs


class Stage:
    """Fits one stage of a run: the loss, optimizer, schedule and callbacks, then `fit`.

    Under torchrun the network is wrapped in DistributedDataParallel (batch norm synchronized
    on GPUs; on CPUs, where gloo has no SyncBatchNorm, each process normalizes its share of the
    batch), and only the main process checkpoints, writes metrics and prints.
    """

    def __init__(
        self,
        config: TrainConfig,
        run: RunDir,
        place: distributed.Processes,
        *,
        num_classes: int,
        task: Task,
        on_epoch,
        progress,
        verbose: bool,
    ):
        self.config, self.run, self.place, self.num_classes, self.task = config, run, place, num_classes, task
        self.on_epoch, self.progress, self.verbose = on_epoch, progress, verbose

    def fit(self, net: nn.Module, loaders, *, weights: str, checkpoint):
        """The classifier on cached features, or every layer from scratch, with `config`'s schedule."""
        config = self.config
        net = self._parallel(net, sync_batchnorm=True)
        optimizer = create_optimizer(net, config.optimizer, lr=config.lr, weight_decay=config.weight_decay)
        scheduler = create_scheduler(
            optimizer,
            config.schedule,
            epochs=config.epochs,
            steps_per_epoch=len(loaders["train"]),
            monitor=config.monitor,
            plateau_factor=config.plateau_factor,
            plateau_patience=config.plateau_patience,
            min_lr=config.min_lr,
        )
        pixels = not hasattr(loaders["train"], "features")
        # a linear head on cached features gains nothing from bf16: it keeps fp32's figures
        head_only = not pixels and config.strategy != "finetune"
        return self._fit(
            net,
            loaders,
            optimizer,
            scheduler,
            per_batch=config.schedule == "onecycle",
            weights=weights,
            checkpoint=checkpoint,
            epochs=config.epochs,
            stage="fit",
            per_second=pixels,
            precision="fp32" if head_only else config.precision,
        )

    def probe(self, head: nn.Module, loaders, *, groups, weights: str):
        """The classifier on cached features as a cross-validated logistic regression
        (training/probe.py): one row of history, the weights saved as the best."""
        found = fit_linear_probe(
            head,
            loaders["train_eval"].features,
            loaders["train_eval"].labels,
            groups,
            seed=self.config.seed,
            task=self.task,
        )
        train = validate(head, loaders["train_eval"], task=self.task)
        row = {
            "epoch": 1,
            "train_loss": train["val_loss"],
            "train_acc": train["val_acc"],
            **validate(head, loaders["val"], task=self.task),
            "lr": 0.0,
            "seconds": round(found["seconds"], 3),
            "images_per_s": round(len(loaders["train_eval"].labels) / max(found["seconds"], 1e-9), 1),
        }
        state = FitState(head, None, epochs=1, history=[row])
        if self.place.main:
            self.run.save_weights(head, weights)
            self.run.write_metrics(state.history)
            self.run.write_classifier(found)  # what the cross-validation tuned, for the report
            if self.on_epoch is not None:
                self.on_epoch(row)
        if self.verbose:
            print(
                f"classifier: logistic regression, C={found['C']:g} by 5-fold grouped cross-validation "
                f"({max(found['cv_accuracy'].values()):.4f} out-of-fold); train {self.task.accuracy} "
                f"{row['train_acc']:.4f}, val loss {row['val_loss']:.4f} {self.task.accuracy} {row['val_acc']:.4f}  "
                f"({found['seconds']:.1f} s)",
                flush=True,
            )
        return state

    def fine_tune(self, net: nn.Module, head: nn.Module | None, loaders, *, checkpoint, probe):
        """LP-FT's second stage: every layer, from the probe's best head, for finetune_epochs more."""
        config, run = self.config, self.run
        history, best = [], None
        if probe is not None:  # starting now: the best head of the first stage, kept as the best so far
            distributed.barrier()  # the main process has written it
            head.load_state_dict(run.load_state(RunDir.HEAD_WEIGHTS))
            history = probe.history
            best = _best_value(history, config.monitor)
            if self.place.main:
                run.save_weights(net, RunDir.WEIGHTS)
            if self.verbose:
                print(f"fine-tuning every layer for {config.finetune_epochs} epochs (lpft), from the best head")
        net = self._parallel(freeze_batchnorm(net), sync_batchnorm=False)
        optimizer = torch.optim.AdamW(
            discriminative_groups(net, config.finetune_lr, decay=config.layer_decay, weight_decay=config.weight_decay)
        )
        steps = len(loaders["train"])
        scheduler = warmup_cosine(
            optimizer, warmup_steps=config.warmup_epochs * steps, total_steps=config.finetune_epochs * steps
        )
        first = len(history) if probe is not None else int(checkpoint.get("stage_start", 0))
        return self._fit(
            net,
            loaders,
            optimizer,
            scheduler,
            per_batch=True,
            weights=RunDir.WEIGHTS,
            checkpoint=checkpoint,
            epochs=first + config.finetune_epochs,
            stage="ft",
            per_second=True,
            history=history,
            best=best,
        )

    def _parallel(self, net: nn.Module, *, sync_batchnorm: bool) -> nn.Module:
        if not self.place.active:
            return net
        device = torch.device(self.config.device)
        if sync_batchnorm and device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        return nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    def _fit(
        self,
        net,
        loaders,
        optimizer,
        scheduler,
        *,
        per_batch: bool,
        weights: str,
        checkpoint,
        epochs: int,
        stage: str,
        per_second: bool,
        history=(),
        best=None,
        precision: str | None = None,
    ):
        config, run = self.config, self.run
        class_weights = (
            self.task.class_weights(loaders["train"].labels, self.num_classes).to(config.device)
            if config.class_weights
            else None
        )
        loss_fn = self.task.loss_fn(class_weights=class_weights, label_smoothing=config.label_smoothing)
        callbacks = [EarlyStopping(config.monitor, config.early_stopping)]
        if scheduler is not None:
            callbacks.append(LRSchedule(scheduler, per_batch=per_batch, monitor=config.monitor))
        if self.place.main:
            callbacks += [Checkpoint(run, weights=weights, monitor=config.monitor, best=best), MetricsWriter(run)]
        if self.verbose:  # cached-feature epochs take milliseconds: images/s would be noise
            callbacks.append(
                EpochPrinter(monitor=config.monitor, per_second=per_second, name=str(run.path), acc=self.task.accuracy)
            )
        if self.on_epoch is not None and self.place.main:
            callbacks.append(EpochHook(self.on_epoch))
        return fit(
            net,
            loaders,
            optimizer=optimizer,
            loss_fn=loss_fn,
            epochs=epochs,
            seed=config.seed,
            callbacks=callbacks,
            precision=precision or config.precision,
            resume=checkpoint,
            history=history,
            stage=stage,
            progress=self.progress,
            task=self.task,
        )


def _best_value(history, monitor: str) -> float:
    pick = max if monitor.endswith("acc") else min
    return pick(h[monitor] for h in history)
