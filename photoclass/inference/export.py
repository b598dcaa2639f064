"""ONNX export of a run's model, checked numerically against PyTorch before it is kept.

The graph takes a float32 batch (B, 3, S, S), already preprocessed; how to preprocess is in
the file's metadata (`photoclass.preprocess`, `photoclass.input`), with the class names.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.loader import normalize, to_float
from ..data.outside import check_outside
from ..core.errors import PhotoclassError
from ..evaluation.calibration import Calibrated
from ..core.atomic import check_writable, write_bytes_atomic
from ..runs.rundir import RunDir, load_model
from . import outliers

PREPROCESS = ("decode with photoclass.decode_photo (EXIF upright, RGB), resize to size x size "
              "(bilinear, aspect not kept), x / 255, (x - mean) / std per channel, NCHW float32; "
              "the logits are already divided by photoclass.temperature: softmax gives calibrated probabilities")
MAX_ABS_DIFF = 1e-3  # on logits; float32 reorderings stay far below this


def export_onnx(run: str | os.PathLike, out: str | os.PathLike | None = None, *, opset: int = 18,
                samples: np.ndarray | None = None) -> dict[str, Any]:
    """Write `out` (default RUN/model.onnx) and return {path, max_abs_diff, inputs checked}.

    `samples` (N, S, S, 3) uint8 are checked too, besides random inputs; the file is kept only
    when ONNX Runtime agrees with PyTorch within MAX_ABS_DIFF.
    """
    import onnx

    run = RunDir(run)
    model, meta = load_model(run)
    out = check_outside(Path(out) if out else run.path / "model.onnx", run.data_source())
    check_writable(out.parent, hint="pass --out a file in a folder you can write")
    if hasattr(model, "inference_copy"):
        model = model.inference_copy()
    spec = model.input_spec
    temperature = float(meta.get("temperature", 1.0))
    model = Calibrated(model.eval(), temperature).eval()  # the logits the run's predictions use
    outputs = ["logits"]
    if meta.get("outliers") and (run.path / outliers.FILE).is_file():
        model = WithOutlierScore(model, outliers.load(run.path / outliers.FILE, meta["outliers"]["k"])).eval()
        outputs.append("outlier_score")
    size = spec.size
    example = torch.rand(2, spec.channels, size, size)
    with tempfile.TemporaryDirectory() as tmp, _quiet_exporter():
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=outputs,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                          opset_version=opset, dynamo=True, external_data=False, verbose=False)
        graph = onnx.load(str(path))
    for key, value in {"photoclass.classes": json.dumps(meta["classes"]),
                       "photoclass.input": json.dumps(spec.to_dict()),
                       "photoclass.architecture": meta["architecture"],
                       "photoclass.weights_sha256": weights_sha256(run),
                       "photoclass.temperature": repr(temperature),
                       "photoclass.preprocess": PREPROCESS,
                       **({"photoclass.outliers": json.dumps(meta["outliers"])} if len(outputs) > 1 else {})}.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    buffer = io.BytesIO()
    onnx.save(graph, buffer)
    data = buffer.getvalue()

    inputs = [torch.rand(1, spec.channels, size, size), torch.rand(5, spec.channels, size, size) * 4 - 2]
    if samples is not None and len(samples):
        pixels = to_float(torch.from_numpy(np.ascontiguousarray(samples)))
        inputs.append(normalize(pixels, spec.mean, spec.std).contiguous())
    diff = _max_abs_diff(model, data, inputs)
    if not diff <= MAX_ABS_DIFF:
        raise PhotoclassError(f"ONNX export of {run.path} disagrees with PyTorch: max |diff| {diff:.2e} "
                              f"> {MAX_ABS_DIFF}. The file was not written.")
    write_bytes_atomic(out, data)
    return {"path": str(out), "max_abs_diff": diff, "inputs_checked": sum(len(x) for x in inputs),
            "bytes": len(data)}


class WithOutlierScore(torch.nn.Module):
    """(logits, outlier score): the score of the features entering the last linear layer."""

    def __init__(self, model: torch.nn.Module, score: outliers.OutlierScore):
        super().__init__()
        self.model, self.score = model, score
        self._seen: list[torch.Tensor] = []
        outliers.last_linear(model).register_forward_pre_hook(lambda module, args: self._seen.append(args[0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._seen.clear()
        logits = self.model(x)
        return logits, self.score(self._seen[-1])


def weights_sha256(run: RunDir) -> str:
    """The checksum of the run's weights, stored in its export to tell a stale one."""
    digest = hashlib.sha256()
    with open(run.path / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def onnx_for_run(run: str | os.PathLike, *, verbose: bool = True) -> Path:
    """RUN/model.onnx, exported first when missing or made from other weights."""
    import onnx

    run = RunDir(run)
    path = run.path / "model.onnx"
    if path.is_file():
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        temperature = repr(float(run.read_json("model.json").get("temperature", 1.0)))
        if props.get("photoclass.weights_sha256") == weights_sha256(run) and \
                props.get("photoclass.temperature") == temperature:
            return path
    if verbose:
        print(f"exporting {run.path} to ONNX once, for faster inference ...", flush=True)
    return Path(export_onnx(run.path, path)["path"])


@contextlib.contextmanager
def _quiet_exporter():
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


def _max_abs_diff(model, onnx_bytes: bytes, inputs: list[torch.Tensor]) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            expected = model(x)
            expected = expected if isinstance(expected, tuple) else (expected,)  # logits, and the outlier score
            for want, got in zip(expected, session.run(names, {"input": x.numpy()})):
                worst = max(worst, float(np.abs(want.numpy() - got).max()))
    return worst
