"""A frozen encoder compiled by OpenVINO for this CPU, when OpenVINO is installed.

The features of `features` and `finetune` come from a module that never changes while they
are computed, so in bf16 it is converted once (about 2 s for EfficientNet-Lite2) and run by
OpenVINO: encoding clothing_small's 3,781 photos with the default model on 2 cores of an AMX
Xeon took 18.2 s, against PyTorch's 31.1 in bf16 and 41.3 in fp32 (benchmarks/precision.py).
In fp32 OpenVINO took 35.8 s, too little gain for the conversion on a few thousand photos, so
fp32 stays with PyTorch unless PHOTOCLASS_ENCODER=openvino; PHOTOCLASS_ENCODER=torch keeps
PyTorch for bf16 too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
import torch

log = logging.getLogger(__name__)


def openvino_encoder(
    encode: Callable[[torch.Tensor], torch.Tensor], precision: str, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """`encode` run by OpenVINO in `precision`, or None where PyTorch goes on: not on a CPU,
    OpenVINO missing, fp32 unless PHOTOCLASS_ENCODER=openvino, or PHOTOCLASS_ENCODER=torch."""
    choice = os.environ.get("PHOTOCLASS_ENCODER", "auto").lower()
    if choice not in ("auto", "torch", "openvino"):
        from ..core.errors import PhotoclassError

        raise PhotoclassError(f"PHOTOCLASS_ENCODER={choice!r} is not an encoder. HINT: auto, torch or openvino.")
    wanted = precision == "bf16" or (precision == "fp32" and choice == "openvino")
    if choice == "torch" or device.type != "cpu" or not wanted:
        return None
    try:
        import openvino  # noqa: F401
    except ImportError:
        return None
    return OpenVinoEncoder(encode, precision)


class OpenVinoEncoder:
    """Called like `encode`; converted on its first batch, whose shape it takes as the example.
    Should the conversion fail (an operation OpenVINO lacks), `encode` itself goes on."""

    engine = "openvino"

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor], precision: str):
        self.encode, self.precision = encode, precision
        self.compiled = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is None and self.engine == "openvino":
            self.compiled = self._compile(x[:1])
        if self.compiled is None:
            return self.encode(x)
        return torch.from_numpy(np.asarray(self.compiled(np.ascontiguousarray(x.float().numpy()))[0]))

    def _compile(self, example: torch.Tensor):
        import openvino as ov

        try:
            with torch.no_grad(), torch.autocast("cpu", enabled=False):  # autocast's casts would be traced
                model = ov.convert_model(_AsModule(self.encode).eval(), example_input=example.float())
            config = {
                "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            }  # torchrun's share of the cores
            return ov.Core().compile_model(model, "CPU", config)
        except Exception as e:  # the features are the same either way, only slower
            log.info("OpenVINO could not convert the encoder (%s); PyTorch encodes the photos", str(e)[:200])
            self.engine = "torch"
            if self.precision == "bf16":
                weights_in_bf16(self.encode)
            return None


def weights_in_bf16(encode: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Cast the weights of `encode`'s module (a frozen copy of its own) to bf16 in place: under
    autocast that is faster than casting them at every batch (124 against 114 images/s for
    Lite2)."""
    module = getattr(encode, "__self__", encode)
    if isinstance(module, torch.nn.Module):
        module.to(torch.bfloat16)


class _AsModule(torch.nn.Module):
    """A bound method (`model.forward_features`) as a module of its own, for the converter."""

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.encode = encode
        owner = getattr(encode, "__self__", encode)
        if isinstance(owner, torch.nn.Module):
            self.owner = owner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)
