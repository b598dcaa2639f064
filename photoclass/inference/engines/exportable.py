"""What every export is made from: the run's model with BatchNorm folded and its logits
calibrated (and the "none of these" score as a second output when the run has one), the metadata
it carries, the checksum that tells a stale export, and the quiet imports of the exporters."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import warnings
from typing import Any

import torch

from ...core.errors import PhotoclassError
from ...evaluation.calibration import Calibrated
from ...runs.rundir import RunDir, load_model
from ...tasks import get_task
from .. import outliers

PREPROCESS = (
    "decode with photoclass.decode_photo (EXIF upright, RGB), resize to size x size "
    "(bilinear, aspect not kept), x / 255, (x - mean) / std per channel, NCHW float32; "
    "the logits are already divided by photoclass.temperature: softmax gives calibrated probabilities"
)


def exportable(run: RunDir) -> tuple[torch.nn.Module, Any, list[str], dict[str, str]]:
    """(the module every export is made from, its InputSpec, its output names, the metadata
    it carries): the run's model with BatchNorm folded, its logits calibrated, and the "none
    of these" score as a second output when the run has one."""
    model, meta = load_model(run)
    if hasattr(model, "inference_copy"):
        model = model.inference_copy()
    spec = model.input_spec
    temperature = float(meta.get("temperature", 1.0))
    model = Calibrated(model.eval(), temperature).eval()  # the logits the run's predictions use
    outputs = ["logits"]
    if meta.get("outliers") and run.exists(RunDir.OUTLIERS):
        model = WithOutlierScore(model, outliers.load(run / RunDir.OUTLIERS, meta["outliers"]["k"])).eval()
        outputs.append("outlier_score")
    metadata = {
        "classes": json.dumps(meta["classes"]),
        "input": json.dumps(spec.to_dict()),
        "architecture": meta["architecture"],
        "task": get_task(meta.get("task")).name,
        **({"decision": json.dumps(meta["decision"])} if meta.get("decision") else {}),
        "weights_sha256": weights_sha256(run),
        "temperature": repr(temperature),
        "preprocess": PREPROCESS,
        **({"outliers": json.dumps(meta["outliers"])} if len(outputs) > 1 else {}),
    }
    return model, spec, outputs, metadata


def import_nncf():
    """NNCF, quietly: it imports torch's extension builder, which warns when CUDA is missing."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import nncf
    except ImportError:
        raise PhotoclassError(
            "INT8 exports are quantized by NNCF, which is not installed. HINT: pip install 'photoclass[openvino]'"
        ) from None
    logging.getLogger("nncf").setLevel(logging.ERROR)
    return nncf


class WithOutlierScore(torch.nn.Module):
    """(logits, outlier score): the score of the features `outliers.tap_point` reads."""

    def __init__(self, model: torch.nn.Module, score: outliers.OutlierScore):
        super().__init__()
        self.model, self.score = model, score
        self._seen: list[torch.Tensor] = []
        outliers.tap_point(model).register_forward_pre_hook(lambda module, args: self._seen.append(args[0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._seen.clear()
        logits = self.model(x)
        return logits, self.score(self._seen[-1])


def weights_sha256(run: RunDir) -> str:
    """The checksum of the run's weights, stored in its export to tell a stale one."""
    digest = hashlib.sha256()
    with open(run / RunDir.WEIGHTS, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def quiet_exporter():
    """The exporter logs every torchvision op it skips and warns about its internals."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
