"""PyTorch: a run's best model, on its device in its precision; the reference every export is
checked against."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...config import check_int
from ...core.device import memory_format
from ...core.errors import PhotoclassError
from ...runs.rundir import RunDir
from ...tasks import task_of
from ..prediction import BasePredictor
from .base import Engine


class Predictor(BasePredictor):
    """A run's best model, ready for photos: `Predictor("runs/x").predict(["a.jpg", "dir/"])`."""

    engine = "torch"
    outliers = None  # the run's OutlierScore, when it has one and the check is on

    def __init__(
        self,
        run: str | os.PathLike,
        *,
        batch_size: int = 16,
        threads: int = 0,
        device: str = "auto",
        precision: str = "auto",
        unknown: bool = True,
    ):
        from ...runs.rundir import load_model
        from .. import outliers

        check_int("batch_size", batch_size, 1, 4096)
        trained = RunDir(run).config().get("train", {}).get("precision") if RunDir(run).exists(RunDir.CONFIG) else None
        self._place(threads, device, precision, trained)
        model, meta = load_model(run)
        self.task = task_of(meta)
        # the temperature was fitted on the validation split; the InputSpec read from model.json
        self._use(model, meta["classes"], float(meta.get("temperature", 1.0)), batch_size)
        if unknown and meta.get("outliers") and RunDir(run).exists(RunDir.OUTLIERS):
            self.outliers = outliers.load(RunDir(run) / RunDir.OUTLIERS, meta["outliers"]["k"]).to(self.device)
            self.threshold = float(meta["outliers"]["threshold"])

    def _place(self, threads: int, device: str, precision: str = "auto", trained: str | None = None) -> None:
        """The device, and the precision: by default the one the run was trained and tested in."""
        from ...core.device import resolve_device, resolve_precision
        from ...core.torchsetup import setup_torch

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device, stage="predict", trained=trained)
        setup_torch(threads, 0)

    def _use(self, model, classes: list[str], temperature: float, batch_size: int) -> None:
        if hasattr(model, "inference_copy"):
            model = model.inference_copy()  # BatchNorm folded: same outputs, faster
        self.memory_format = memory_format(self.device)
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        if self.precision == "bf16" and hasattr(model, "forward_head") and hasattr(model, "body"):
            import torch

            self.model.body.to(torch.bfloat16)  # cast once, not at every batch; the classifier stays float32
        self.classes, self.temperature, self.batch_size = classes, temperature, batch_size
        spec = model.input_spec
        self.size, self.mean, self.std = spec.size, spec.mean, spec.std

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        logits, features = self._outputs(pixels)
        return logits, None if features is None else self.outliers(features).cpu().numpy()

    def nearest(self, pixels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, distances (B, k), rows (B, k)): the k training photos nearest each photo
        in the outlier score's features, nearest first; rows index the run's usable photos."""
        if self.outliers is None:
            raise PhotoclassError(
                "This predictor has no index of its run's training photos. HINT: open it with "
                "unknown=True, from a run trained with the 'none of these' check."
            )
        logits, features = self._outputs(pixels, tap=True)
        distances, index = self.outliers.nearest(features, k)
        return self.task.activate(logits), distances.cpu().numpy(), self.outliers.rows[index.cpu()].numpy()

    def embedded(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (B, classes), the features the "none of these" check and the nearest
        training photos compare (B, D)) of (B, S, S, 3) uint8 photos."""
        logits, features = self._outputs(pixels, tap=True)
        return self.task.activate(logits), features.cpu().numpy()

    def _outputs(self, pixels: np.ndarray, tap: bool | None = None):
        """(calibrated logits, the last linear layer's inputs or None without the check)."""
        import contextlib

        import torch

        from ...core.device import autocast
        from ...data.loader import normalize, to_float
        from ..outliers import tapped

        tap = self.outliers is not None if tap is None else tap
        with torch.no_grad(), tapped(self.model) if tap else contextlib.nullcontext() as features:
            x = normalize(to_float(torch.from_numpy(pixels).to(self.device)), self.mean, self.std)
            x = x.contiguous(memory_format=self.memory_format)
            if self.precision != "fp32" and hasattr(self.model, "forward_head"):
                # the backbone in bf16, the classifier in float32 on its features, as training fitted it
                with autocast(self.device, self.precision):
                    found = self.model.forward_features(x)
                logits = self.model.forward_head(found.float())
            else:
                with autocast(self.device, self.precision):
                    logits = self.model(x)
            logits = logits.float() / self.temperature
        return logits.cpu().numpy(), features[0].float() if tap else None


def run_itself(run: Path) -> Path:
    """PyTorch loads the run folder itself."""
    return run


ENGINE = Engine(name="torch", title="PyTorch", open=Predictor, for_run=run_itself, gpu=True)
