"""Predict with an exported ONNX model: ONNX Runtime and NumPy only, no torch."""

from __future__ import annotations

import json
import os

import numpy as np

from ..config import GREY_WEIGHTS
from ..core.errors import PhotoclassError
from ..models.input_spec import InputSpec
from .predictor import BasePredictor


class OnnxPredictor(BasePredictor):
    engine = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 16, unknown: bool = True, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise PhotoclassError(
                "Predicting from an .onnx file needs ONNX Runtime. HINT: pip install onnxruntime"
            ) from None
        _refuse_external_data(path)
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads  # 0: ONNX Runtime's choice, every core
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime's own checks: malformed graph, external data escaping, ...
            raise PhotoclassError(
                f"ONNX Runtime refuses {path}: {str(e).splitlines()[0][:200]}. HINT: export it "
                "again with `photoclass export RUN`."
            ) from None
        props = {k.removeprefix("photoclass."): v for k, v in self.session.get_modelmeta().custom_metadata_map.items()}
        read_contract(self, props, path, "onnx", batch_size)
        names = [o.name for o in self.session.get_outputs()]
        self.names = ["logits"] + (["outlier_score"] if unknown and "outlier_score" in names else [])
        if len(self.names) > 1:
            self.threshold = float(json.loads(props["outliers"])["threshold"])

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        found = self.session.run(self.names, {"input": preprocess(pixels, self.mean, self.std)})
        return found[0], (found[1] if len(found) > 1 else None)


def read_contract(predictor: BasePredictor, meta: dict[str, str], path, format: str, batch_size: int) -> None:
    """Set an export's predictor up from its photoclass metadata (keys without the prefix):
    the classes, the input contract, the figures of the check it passed."""
    if "classes" not in meta:
        raise PhotoclassError(
            f"{path} was not exported by photoclass: it has no class names. "
            f"HINT: photoclass export RUN --format {format}"
        )
    predictor.classes = json.loads(meta["classes"])
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


def _refuse_external_data(path: str | os.PathLike) -> None:
    """photoclass exports one self-contained file; tensors stored elsewhere are refused.

    Checked with the onnx package when it is installed (ONNX Runtime refuses paths that leave
    the model's folder too, from version 1.2x on).
    """
    try:
        import onnx
    except ImportError:
        return
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as e:
        raise PhotoclassError(
            f"{path} is not a readable ONNX file: {str(e).splitlines()[0][:160]}. HINT: export "
            "it again with `photoclass export RUN`."
        ) from None
    external = [t.name for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise PhotoclassError(
            f"{path} keeps tensors in other files ({', '.join(external[:3])}); photoclass "
            "loads only self-contained ONNX files. HINT: re-export with `photoclass export`."
        )
