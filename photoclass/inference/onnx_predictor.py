"""Predict with an exported ONNX model: ONNX Runtime and NumPy only, no torch."""
from __future__ import annotations

import json
import os

import numpy as np

from ..errors import PhotoclassError
from .predictor import BasePredictor


class OnnxPredictor(BasePredictor):
    engine = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 16):
        try:
            import onnxruntime as ort
        except ImportError:
            raise PhotoclassError("Predicting from an .onnx file needs ONNX Runtime. "
                                  "HINT: pip install onnxruntime") from None
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        if "photoclass.classes" not in props:
            raise PhotoclassError(f"{path} was not exported by photoclass: it has no class names. "
                                  "HINT: photoclass export RUN --format onnx")
        self.classes = json.loads(props["photoclass.classes"])
        spec = json.loads(props["photoclass.input"])
        self.size = spec["size"]
        self.mean = np.asarray(spec["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(spec["std"], dtype=np.float32).reshape(1, 3, 1, 1)
        self.batch_size = batch_size

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        x = (pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255 - self.mean) / self.std  # (B, 3, S, S)
        logits = self.session.run(["logits"], {"input": np.ascontiguousarray(x)})[0]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)
