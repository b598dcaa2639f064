"""Exports of a run's model (ONNX, OpenVINO, LiteRT; fp32 or INT8), each kept only once its own
runtime has given PyTorch's answers on the run's test photos (`verify.py`).

Every export takes a float32 batch (B, C, S, S), already preprocessed, and gives the
calibrated logits (and the "none of these" score, when the run has it); how to preprocess,
the class names and the check's figures travel in the export's metadata.
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
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..data.loader import normalize, to_float
from ..data.outside import check_outside
from ..core.errors import PhotoclassError
from ..evaluation.calibration import Calibrated
from ..core.atomic import check_writable, write_bytes_atomic
from ..runs.rundir import RunDir, load_model
from . import outliers, verify

PREPROCESS = (
    "decode with photoclass.decode_photo (EXIF upright, RGB), resize to size x size "
    "(bilinear, aspect not kept), x / 255, (x - mean) / std per channel, NCHW float32; "
    "the logits are already divided by photoclass.temperature: softmax gives calibrated probabilities"
)
MAX_ABS_DIFF = 1e-3  # on logits; float32 reorderings stay far below this


def export_onnx(
    run: str | os.PathLike, out: str | os.PathLike | None = None, *, opset: int = 18, samples: np.ndarray | None = None
) -> dict[str, Any]:
    """Write `out` (default RUN/model.onnx) and return {path, max_abs_diff, inputs checked}.

    `samples` (N, S, S, 3) uint8 are checked too, besides random inputs; the file is kept only
    when ONNX Runtime agrees with PyTorch within MAX_ABS_DIFF.
    """
    import onnx

    run = RunDir(run)
    out = check_outside(Path(out) if out else run.export_path("onnx"), run.data_source())
    check_writable(out.parent, hint="pass --out a file in a folder you can write")
    model, spec, outputs, metadata = exportable(run)
    size = spec.size
    example = torch.rand(2, spec.channels, size, size)
    with tempfile.TemporaryDirectory() as tmp, _quiet_exporter():
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["input"],
            output_names=outputs,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        graph = onnx.load(str(path))
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = f"photoclass.{key}", value
    buffer = io.BytesIO()
    onnx.save(graph, buffer)
    data = buffer.getvalue()

    inputs = [torch.rand(1, spec.channels, size, size), torch.rand(5, spec.channels, size, size) * 4 - 2]
    if samples is not None and len(samples):
        pixels = to_float(torch.from_numpy(np.ascontiguousarray(samples)))
        inputs.append(normalize(pixels, spec.mean, spec.std).contiguous())
    diff = _max_abs_diff(model, data, inputs)
    if not diff <= MAX_ABS_DIFF:
        raise PhotoclassError(
            f"ONNX export of {run.path} disagrees with PyTorch: max |diff| {diff:.2e} "
            f"> {MAX_ABS_DIFF}. The file was not written."
        )
    write_bytes_atomic(out, data)
    return {"path": str(out), "max_abs_diff": diff, "inputs_checked": sum(len(x) for x in inputs), "bytes": len(data)}


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
        "weights_sha256": weights_sha256(run),
        "temperature": repr(temperature),
        "preprocess": PREPROCESS,
        **({"outliers": json.dumps(meta["outliers"])} if len(outputs) > 1 else {}),
    }
    return model, spec, outputs, metadata


FORMATS = ("onnx", "openvino", "litert")
PRECISIONS = {"onnx": ("fp32", "int8"), "openvino": ("fp32", "int8", "bf16"), "litert": ("fp32", "int8")}
CALIBRATION_PHOTOS = 300  # training photos an INT8 export is calibrated on


def export(
    run: str | os.PathLike,
    format: str = "onnx",
    *,
    int8: bool = False,
    bf16: bool = False,
    out: str | os.PathLike | None = None,
    progress: bool | None = None,
    announce: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Export RUN's model and keep it only if its runtime agrees with PyTorch on the run's test
    photos (verify.compare's rule). Returns the check's figures with the export's "path"; a
    failed check writes nothing and raises, saying why. `announce()` is called once the run
    and the output path are found good, before the long work.

    `format`: onnx (RUN/model.onnx; ONNX Runtime), openvino (RUN/openvino/model.xml; OpenVINO
    Runtime) or litert (RUN/model.tflite; LiteRT's interpreter). `int8`: static post-training
    quantization, per-channel weights, calibrated on up to 300 training photos (NNCF for ONNX
    Runtime's QDQ and for OpenVINO, PT2E for LiteRT); `-int8` is added to the name. `bf16`
    (OpenVINO only, on a CPU with native bf16): float32 weights run in bf16 arithmetic, checked
    so; `-bf16` is added to the name.
    """
    from .predictor import Predictor

    if format not in FORMATS:
        raise PhotoclassError(f"Unknown export format {format!r}. HINT: use one of {', '.join(FORMATS)}.")
    if bf16:
        _check_bf16(format, int8)
    precision = "int8" if int8 else "bf16" if bf16 else "fp32"
    run = RunDir(run)
    reference = Predictor(run.path, device="cpu", precision="fp32")  # first: a bad run is named before anything
    out = Path(out) if out else default_path(run, format, precision)
    check_outside(out, run.data_source())
    check_writable(out.parent, hint="pass --out a path in a folder you can write")
    if announce is not None:
        announce()
    photos = verify.run_photos(run, reference.size, progress=progress)
    calibration = (
        verify.run_photos(run, reference.size, "train", limit=CALIBRATION_PHOTOS, progress=progress).pixels
        if int8
        else None
    )
    with tempfile.TemporaryDirectory(prefix=".photoclass-export-", dir=out.parent) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        if format != "litert":  # LiteRT converts from PyTorch itself
            export_onnx(run.path, fp32)  # the graph ONNX and OpenVINO start from, parity-checked on random inputs
        if format == "onnx":
            from .onnx_predictor import OnnxPredictor

            made = Path(tmp) / "made.onnx"
            if int8:
                quantize_onnx(fp32, made, calibration, reference)
            else:
                fp32.rename(made)
            candidate = OnnxPredictor(made)
        elif format == "openvino":
            from . import openvino_engine

            made = openvino_engine.convert(fp32, Path(tmp) / "made", calibration, reference, bf16=bf16)
            candidate = openvino_engine.OpenVinoPredictor(made)
        else:
            from . import litert_engine

            made = litert_engine.convert(run, Path(tmp) / "made.tflite", calibration)
            candidate = litert_engine.LiteRtPredictor(made)
        found = verify.compare(reference, candidate, photos, fp32=precision == "fp32", progress=progress)
        found.update(format=format, int8=int8, precision=precision, engine=candidate.engine)
        if not found["kept"]:
            kind = {"int8": " INT8", "bf16": " bf16"}.get(precision, "")
            raise PhotoclassError(
                f"The {format}{kind} export of {run.path} failed its check, "
                f"so it was not kept: {found['why_not']}. ({verify.describe(found)})"
            )
        del candidate
        if format == "onnx":
            _stamp_onnx(made, found)
            write_bytes_atomic(out, made.read_bytes())
        elif format == "litert":
            litert_engine.stamp(made, {"verified": json.dumps(found)})
            write_bytes_atomic(out, made.read_bytes())
        else:
            openvino_engine.stamp(made, found)
            openvino_engine.move(made, out)
    found["path"] = str(out)
    return found


def verified_exports(run: RunDir) -> list[tuple[Path, dict]]:
    """The run's exports at their default paths that passed their check and were made from its
    current weights, with the check's figures, fastest first."""
    found = []
    sha = weights_sha256(run)
    for format in FORMATS:
        for precision in PRECISIONS[format]:
            path = default_path(run, format, precision)
            try:
                meta = _metadata(path, format)
            except Exception:  # missing, unreadable, or its runtime is not installed: not a candidate
                continue
            if meta.get("weights_sha256") == sha and "verified" in meta:
                found.append((path, json.loads(meta["verified"])))
    return sorted(found, key=lambda f: -(f[1].get("images_per_s") or 0))


def _check_bf16(format: str, int8: bool) -> None:
    """A bf16 export is OpenVINO's, not INT8, and checked on a CPU that computes in bf16."""
    if format != "openvino":
        raise PhotoclassError(
            f"bf16 exports run on OpenVINO only. Received: format={format!r}. HINT: --format "
            "openvino --bf16, or drop --bf16."
        )
    if int8:
        raise PhotoclassError("An export is either --int8 or --bf16, not both. HINT: drop one of them.")
    from .openvino_engine import has_bf16

    if not has_bf16():
        raise PhotoclassError(
            "This CPU has no native bf16 (AVX512-BF16 or AMX), so a bf16 export could not be "
            "checked in bf16 here. HINT: export it on the machine that will run it, or drop --bf16."
        )


def _metadata(path: Path, format: str) -> dict[str, str]:
    if format == "onnx":
        import onnx

        props = onnx.load(str(path), load_external_data=False).metadata_props
        return {p.key.removeprefix("photoclass."): p.value for p in props}
    if format == "litert":
        from .litert_engine import read_metadata

        return read_metadata(path)
    from .openvino_engine import _openvino, read_metadata

    return read_metadata(_openvino().Core().read_model(str(path)))


def default_path(run: RunDir, format: str, precision: str = "fp32") -> Path:
    return run.export_path(format, precision)


def quantize_onnx(source: Path, out: Path, calibration: np.ndarray, reference) -> None:
    """Static INT8 of the ONNX graph by NNCF, as QuantizeLinear/DequantizeLinear pairs that
    ONNX Runtime runs: per-channel weights, activation ranges from `calibration` photos, biases
    corrected. The stem convolution and the "none of these" score's own nodes stay in float.
    (ONNX Runtime's own quantize_static, per-channel too, changed 3 of 16 predictions of a
    Lite0 run that NNCF's left unchanged: the early depthwise convolutions lose too much
    without bias correction.)"""
    import onnx

    from .onnx_predictor import preprocess

    nncf = import_nncf()
    mean = np.asarray(reference.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(reference.std, dtype=np.float32).reshape(1, -1, 1, 1)
    graph = onnx.load(str(source))
    batches = [calibration[i : i + 1] for i in range(len(calibration))]  # NNCF calibrates one sample at a time
    in_float = _score_only_nodes(graph) + [n.name for n in graph.graph.node if n.op_type == "Conv"][:1]  # the stem
    quantized = nncf.quantize(
        graph,
        nncf.Dataset(batches, lambda b: {"input": preprocess(b, mean, std)}),
        subset_size=len(batches),
        ignored_scope=nncf.IgnoredScope(names=in_float, validate=False) if in_float else None,
    )
    onnx.save(quantized, str(out))


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


def _score_only_nodes(graph) -> list[str]:
    """The nodes that only the "outlier_score" output needs (the search over the bank)."""
    producers = {o: n for n in graph.graph.node for o in n.output}

    def ancestors(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            node = producers.get(todo.pop())
            if node is not None and node.name not in seen:
                seen.add(node.name)
                todo += list(node.input)
        return seen

    if "outlier_score" not in [o.name for o in graph.graph.output]:
        return []
    return sorted(ancestors("outlier_score") - ancestors("logits"))


def _stamp_onnx(path: Path, found: dict) -> None:
    import onnx

    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = "photoclass.verified", json.dumps(found)
    onnx.save(graph, str(path))


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


def onnx_for_run(run: str | os.PathLike, *, verbose: bool = True) -> Path:
    """RUN/model.onnx, exported first when missing or made from other weights."""
    import onnx

    run = RunDir(run)
    path = run.export_path("onnx")
    if path.is_file():
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        temperature = repr(float(run.model_meta().get("temperature", 1.0)))
        if (
            props.get("photoclass.weights_sha256") == weights_sha256(run)
            and props.get("photoclass.temperature") == temperature
        ):
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
