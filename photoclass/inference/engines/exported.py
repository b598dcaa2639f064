"""What every exported model shares: the photoclass metadata it carries (classes, input contract,
the figures of its check), read into its predictor, and the NumPy preprocessing it takes."""

from __future__ import annotations

import json

import numpy as np

from ...config import GREY_WEIGHTS
from ...core.errors import PhotoclassError
from ...models.input_spec import InputSpec
from ...tasks import task_of
from ..prediction import BasePredictor


def read_contract(predictor: BasePredictor, meta: dict[str, str], path, format: str, batch_size: int) -> None:
    """Set an export's predictor up from its photoclass metadata (keys without the prefix):
    the classes, the task, the input contract, the figures of the check it passed."""
    if "classes" not in meta:
        raise PhotoclassError(
            f"{path} was not exported by photoclass: it has no class names. "
            f"HINT: photoclass export RUN --format {format}"
        )
    predictor.classes = json.loads(meta["classes"])
    decision = json.loads(meta["decision"]) if "decision" in meta else None
    predictor.task = task_of({"task": meta.get("task"), "decision": decision})  # none recorded: single-label
    spec = InputSpec.from_dict(json.loads(meta.get("input", "null")), source=str(path))
    predictor.size, predictor.batch_size = spec.size, batch_size
    predictor.mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    predictor.std = np.asarray(spec.std, dtype=np.float32).reshape(1, -1, 1, 1)
    predictor.verified = json.loads(meta["verified"]) if "verified" in meta else None
    predictor.precision = "int8" if (predictor.verified or {}).get("int8") else "fp32"


def preprocess(pixels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(B, S, S, 3) uint8 -> the (B, C, S, S) float32 an export takes: scaled, grey for a
    1-channel model (as photoclass.data.loader.normalize makes it), normalized."""
    x = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255
    if mean.shape[1] == 1:
        x = np.tensordot(np.asarray(GREY_WEIGHTS, dtype=np.float32), x, axes=([0], [1]))[:, None]
    return np.ascontiguousarray((x - mean) / std)
