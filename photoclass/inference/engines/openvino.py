"""OpenVINO: a run's ONNX graph converted by OpenVINO's own `convert_model` (INT8: the ONNX
engine's graph quantized by NNCF), and predicted with OpenVINO Runtime and NumPy, no torch.

The IR (model.xml + model.bin) carries photoclass's metadata in its rt_info, under
"photoclass": the class names, the input contract, the temperature, the "none of these"
threshold, the arithmetic it was checked in (f32, or bf16 on CPUs that have it) and the
figures of the check it passed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ...core.errors import PhotoclassError
from ...runs.rundir import RunDir
from ..prediction import BasePredictor
from .base import Engine
from .exported import preprocess, read_contract

KEYS = (
    "classes",
    "input",
    "architecture",
    "task",
    "decision",
    "weights_sha256",
    "temperature",
    "preprocess",
    "outliers",
    "verified",
    "inference_precision",
)


def _openvino():
    try:
        import openvino
    except ImportError:
        raise PhotoclassError("OpenVINO is not installed. HINT: pip install 'photoclass[openvino]'") from None
    return openvino


def convert(
    run: RunDir, folder: Path, *, precision: str = "fp32", calibration: np.ndarray | None = None, reference=None
) -> Path:
    """folder/made/model.xml from the run's ONNX graph (parity-checked on random inputs). INT8 is
    the ONNX engine's quantized graph (`onnx.quantize_onnx`), converted: OpenVINO runs its
    QuantizeLinear/DequantizeLinear pairs in INT8, the depthwise convolutions included, where
    NNCF's quantization of the converted graph left them in float (weather: 236 images/s
    against 127, on 2 AVX512-VNNI cores)."""
    from .onnx import export_onnx, quantize_onnx

    source = folder / "model.onnx"
    export_onnx(run.path, source)
    if calibration is not None:
        quantize_onnx(source, folder / "int8.onnx", calibration, reference)
    return convert_onnx(
        folder / "int8.onnx" if calibration is not None else source, folder / "made", source, bf16=precision == "bf16"
    )


def convert_onnx(onnx_path: Path, folder: Path, metadata_from: Path | None = None, *, bf16: bool = False) -> Path:
    """folder/model.xml from the ONNX file, with the metadata of `metadata_from` (default: its
    own); run in bf16 arithmetic when `bf16` (the weights stay float32). Returns the .xml path."""
    import onnx

    ov = _openvino()
    graph = onnx.load(str(metadata_from or onnx_path), load_external_data=False)
    props = {p.key: p.value for p in graph.metadata_props}
    model = ov.convert_model(str(onnx_path))
    for key in KEYS:
        if f"photoclass.{key}" in props:
            model.set_rt_info(props[f"photoclass.{key}"], ["photoclass", key])
    model.set_rt_info("bf16" if bf16 else "f32", ["photoclass", "inference_precision"])
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
    return folder / "model.xml"


def has_bf16() -> bool:
    """Whether OpenVINO computes in bf16 natively on this CPU (AVX512-BF16 or AMX), and
    ONEDNN_MAX_CPU_ISA leaves it so."""
    from ...core.cpu import bf16_native

    capped = "ONEDNN_MAX_CPU_ISA" in os.environ and not bf16_native()
    return not capped and "BF16" in _openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def check_precision(precision: str) -> None:
    """A bf16 export is checked in bf16: on a CPU that computes in it."""
    if precision == "bf16" and not has_bf16():
        raise PhotoclassError(
            "This CPU has no native bf16 (AVX512-BF16 or AMX), so a bf16 export could not be "
            "checked in bf16 here. HINT: export it on the machine that will run it, or drop --bf16."
        )


def _takes_pixels(model, mean: np.ndarray, std: np.ndarray):
    """The model with its preprocessing inside the graph: it takes the (B, S, S, 3) uint8
    pixels themselves, scaled in OpenVINO's own kernels: in NumPy it took nearly a third of
    a bf16 batch's time on 2 cores."""
    from openvino.preprocess import PrePostProcessor

    ov = _openvino()
    steps = PrePostProcessor(model)
    given = steps.input()
    given.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    given.model().set_layout(ov.Layout("NCHW"))
    given.preprocess().convert_element_type(ov.Type.f32).mean((255 * mean).tolist()).scale((255 * std).tolist())
    return steps.build()


def stamp(xml: Path, found: dict) -> None:
    """Add the check's figures to the IR's metadata, in place."""
    ov = _openvino()
    model = ov.Core().read_model(str(xml))
    model.set_rt_info(json.dumps(found), ["photoclass", "verified"])
    ov.save_model(model, str(xml) + ".tmp.xml", compress_to_fp16=False)
    for suffix in (".bin", ".xml"):
        os.replace(str(xml) + ".tmp" + suffix, xml.with_suffix(suffix))


def move(xml: Path, out: Path) -> None:
    """The IR's two files to `out` (the .xml path), the weights first: an .xml is never beside
    weights it was not saved with for longer than one rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(xml.with_suffix(".bin"), out.with_suffix(".bin"))
    os.replace(xml, out)


def read_metadata(path: Path) -> dict[str, str]:
    """photoclass's metadata of an IR (its model.xml), keys without the prefix."""
    return _model_metadata(_openvino().Core().read_model(str(path)))


def _model_metadata(model) -> dict[str, str]:
    found = {}
    for key in KEYS:
        if model.has_rt_info(["photoclass", key]):
            found[key] = model.get_rt_info(["photoclass", key]).astype(str)
    return found


class OpenVinoPredictor(BasePredictor):
    """An exported IR (model.xml, or its folder), on this machine's CPU in the arithmetic it was
    checked in: f32 (OpenVINO would otherwise pick bf16 on CPUs that have it), or bf16 for an
    export made with `bf16=True`, in f32 on a CPU without it."""

    engine = "openvino"

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 16, unknown: bool = True, threads: int = 0):
        ov = _openvino()
        path = Path(path)
        xml = path / "model.xml" if path.is_dir() else path
        if not xml.is_file() or not xml.with_suffix(".bin").is_file():
            raise PhotoclassError(
                f"No OpenVINO model at {path}: it needs model.xml and model.bin side by side. "
                "HINT: photoclass export RUN --format openvino"
            )
        core = ov.Core()
        try:
            model = core.read_model(str(xml))
        except RuntimeError as e:
            raise PhotoclassError(
                f"OpenVINO refuses {xml}: {str(e).splitlines()[0][:200]}. HINT: export it again "
                "with `photoclass export RUN --format openvino`."
            ) from None
        meta = _model_metadata(model)
        read_contract(self, meta, xml, "openvino", batch_size)
        self.in_graph = self.mean.shape[1] == 3
        if self.in_graph:
            model = _takes_pixels(model, self.mean.ravel(), self.std.ravel())
        config = {"INFERENCE_PRECISION_HINT": "bf16" if meta.get("inference_precision") == "bf16" else "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        if self.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16:  # not where the CPU lacks it
            self.precision = "bf16"
        names = {o.get_any_name() for o in self.compiled.outputs}
        self.names = ["logits"] + (["outlier_score"] if unknown and "outlier_score" in names else [])
        if len(self.names) > 1:
            self.threshold = float(json.loads(meta["outliers"])["threshold"])
        self.request = self.compiled.create_infer_request()

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(pixels, dtype=np.uint8) if self.in_graph else preprocess(pixels, self.mean, self.std)
        result = self.request.infer({0: x}, share_inputs=True)  # no copy: the call waits for the answer
        found = [np.asarray(result[self.compiled.output(name)]) for name in self.names]
        return found[0], (found[1] if len(found) > 1 else None)


def _is_ir(path: Path) -> bool:
    """An IR's model.xml, or a folder holding one (and not a run folder, which has model.json)."""
    return path.suffix.lower() == ".xml" or (
        path.is_dir() and (path / "model.xml").is_file() and not RunDir(path).exists(RunDir.MODEL_META)
    )


ENGINE = Engine(
    name="openvino",
    title="OpenVINO",
    open=OpenVinoPredictor,
    int8_weight_bits=7,
    precisions=("fp32", "int8", "bf16"),
    file_name="openvino{tag}/model.xml",
    recognizes=_is_ir,
    convert=convert,
    read_metadata=read_metadata,
    stamp=stamp,
    keep=move,
    check_precision=check_precision,
    ray=True,
)
