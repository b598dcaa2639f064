"""LiteRT (TensorFlow Lite): a run's model converted by `litert-torch` (INT8 by PT2E static
quantization), and predicted with LiteRT's interpreter and NumPy, no torch.

The .tflite file takes one photo at a time, (1, C, S, S) float32 as `preprocess` makes it
(LiteRT's conversion of EfficientNet-Lite with a free batch dimension gives wrong answers),
and carries photoclass's metadata in its flatbuffer's metadata table, each key prefixed
"photoclass.".
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from ...core.errors import PhotoclassError
from ...runs.rundir import RunDir
from ..prediction import BasePredictor
from .base import Engine
from .exported import preprocess, read_contract

PREFIX = "photoclass."


def _litert_torch():
    try:
        import litert_torch
    except ImportError:
        raise PhotoclassError(
            "LiteRT exports are made by litert-torch, which is not installed. HINT: pip install 'photoclass[litert]'"
        ) from None
    return litert_torch


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise PhotoclassError("LiteRT is not installed. HINT: pip install ai-edge-litert") from None
    return schema


def convert(
    run: RunDir, folder: Path, *, precision: str = "fp32", calibration: np.ndarray | None = None, reference=None
) -> Path:
    """folder/made.tflite from the run's model, with its metadata; INT8 (per-channel weights,
    activations calibrated on `calibration` photos) when they are given."""
    import torch

    from .exportable import exportable, quiet_exporter

    out = folder / "made.tflite"
    model, spec, _, metadata = exportable(run)
    sample = (torch.rand(1, spec.channels, spec.size, spec.size),)
    options = {}
    with quiet_exporter(), _silenced() as said:
        litert_torch = _litert_torch()  # its import logs too
        if calibration is not None:
            model, options["quant_config"] = _quantized(model, spec, sample, calibration)
        try:
            converted = litert_torch.convert(model, sample, **options)
        except Exception as e:  # the converter's own limits: an operation it cannot lower, ...
            raise PhotoclassError(
                f"litert-torch could not convert {run.path}'s model: {(str(e).strip() or said()).splitlines()[0][:200]}"
            ) from None
        converted.export(str(out))
    stamp(out, metadata)
    return out


def _quantized(model, spec, sample: tuple, calibration: np.ndarray):
    """(the model quantized by PT2E, static INT8 calibrated on `calibration` photos, its QuantConfig)."""
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from ...data.loader import normalize, to_float
    from ..outliers import OutlierScore

    # the classifier and the "none of these" search stay in float, as in the NNCF exports
    # (weather: 95.8% agreement with them quantized or not, the loss is in the backbone)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantizer.set_module_type(torch.nn.Linear, None)
    quantizer.set_module_type(OutlierScore, None)
    graph = torch.export.export(model, sample).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for pixels in calibration:
            x = normalize(to_float(torch.from_numpy(np.ascontiguousarray(pixels[None]))), spec.mean, spec.std)
            prepared(x)
    model = convert_pt2e(prepared, fold_quantize=False)
    return model, QuantConfig(pt2e_quantizer=quantizer)


@contextlib.contextmanager
def _silenced():
    """The converter's progress lines and its C++ logs (written straight to file descriptors
    1 and 2) go to a temporary file; yields a function that reads them back."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stdout.flush(), sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            yield lambda: (sink.seek(0), sink.read().decode(errors="replace"))[1]
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def stamp(path: Path, metadata: dict[str, str]) -> None:
    """Add `metadata` (each key prefixed) to the .tflite file's metadata table, in place."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    model.metadata = [
        m for m in (model.metadata or []) if (m.name or b"").decode().removeprefix(PREFIX) not in metadata
    ]
    model.buffers = model.buffers or []
    for key, value in metadata.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value.encode(), dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = PREFIX + key, len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(builder.Output())
    os.replace(tmp, path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """photoclass's metadata of a .tflite file, keys without the prefix."""
    schema = _schema()
    try:
        model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
        found = {}
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            name = (entry.Name() or b"").decode()
            if name.startswith(PREFIX):
                found[name.removeprefix(PREFIX)] = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode()
    except (OSError, ValueError, AttributeError, UnicodeDecodeError) as e:
        raise PhotoclassError(
            f"{path} is not a readable LiteRT model: {e}. HINT: photoclass export RUN --format litert"
        ) from None
    return found


class LiteRtPredictor(BasePredictor):
    """An exported .tflite model on this machine's CPU, through LiteRT's interpreter."""

    engine = "litert"

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 16, unknown: bool = True, threads: int = 0):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise PhotoclassError(
                "Predicting from a .tflite file needs LiteRT. HINT: pip install ai-edge-litert"
            ) from None
        meta = read_metadata(path)
        read_contract(self, meta, path, "litert", batch_size)
        try:
            with _silenced():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
                interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
        except (ValueError, RuntimeError) as e:
            raise PhotoclassError(
                f"LiteRT refuses {path}: {str(e).splitlines()[0][:200]}. HINT: export it again "
                "with `photoclass export RUN --format litert`."
            ) from None
        self.runner = interpreter.get_signature_runner()
        # an INT8 model may take and give integers: (scale, zero point) convert at its edges
        self.input_quantization = _quantization(self.runner.get_input_details()["args_0"])
        self.output_quantization = {name: _quantization(d) for name, d in self.runner.get_output_details().items()}
        self.scored_outputs = unknown and "outliers" in meta
        if self.scored_outputs:
            self.threshold = float(json.loads(meta["outliers"])["threshold"])

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = _quantize(preprocess(pixels, self.mean, self.std), self.input_quantization)
        found = [
            {
                name: _dequantize(value, self.output_quantization[name])
                for name, value in self.runner(args_0=x[i : i + 1]).items()
            }
            for i in range(len(x))
        ]  # one photo at a time: see the module
        logits = (
            np.concatenate([f["output_0"] for f in found]) if found else np.zeros((0, len(self.classes)), np.float32)
        )
        scores = np.concatenate([f["output_1"] for f in found]).reshape(-1) if self.scored_outputs and found else None
        return logits, scores


def _quantization(detail: dict) -> tuple[float, int, type] | None:
    """(scale, zero point, integer type) of an integer tensor, None for a float one."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return None
    scales, zeros = detail["quantization_parameters"]["scales"], detail["quantization_parameters"]["zero_points"]
    return float(scales[0]), int(zeros[0]), dtype


def _quantize(x: np.ndarray, quantization) -> np.ndarray:
    if quantization is None:
        return x
    scale, zero, dtype = quantization
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _dequantize(x: np.ndarray, quantization) -> np.ndarray:
    if quantization is None:
        return x
    scale, zero, _ = quantization
    return ((x.astype(np.float32) - zero) * scale).astype(np.float32)


def _stamp_check(path: Path, found: dict) -> None:
    stamp(path, {"verified": json.dumps(found)})


ENGINE = Engine(
    name="litert",
    title="LiteRT",
    open=LiteRtPredictor,
    precisions=("fp32", "int8"),
    file_name="model{tag}.tflite",
    recognizes=lambda path: path.suffix.lower() == ".tflite",
    convert=convert,
    read_metadata=read_metadata,
    stamp=_stamp_check,
)
