"""ONNX Runtime: a run's model exported by torch.onnx (INT8 by NNCF, as QuantizeLinear/
DequantizeLinear pairs), and predicted with ONNX Runtime and NumPy only, no torch.

The .onnx file carries photoclass's metadata in its metadata_props, each key prefixed
"photoclass.": the class names, the input contract, the temperature, the "none of these"
threshold and the figures of the check it passed.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...core.atomic import check_writable, write_bytes_atomic
from ...core.errors import PhotoclassError
from ...data.outside import check_outside
from ...runs.rundir import RunDir
from ..prediction import BasePredictor
from .base import Engine
from .exported import preprocess, read_contract

MAX_ABS_DIFF = 1e-3  # on logits; float32 reorderings stay far below this


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


def convert(
    run: RunDir, folder: Path, *, precision: str = "fp32", calibration: np.ndarray | None = None, reference=None
) -> Path:
    """folder/made.onnx from the run's model, parity-checked on random inputs; INT8 (NNCF) when
    `calibration` photos are given."""
    fp32 = folder / "model.onnx"
    export_onnx(run.path, fp32)
    made = folder / "made.onnx"
    if calibration is not None:
        quantize_onnx(fp32, made, calibration, reference)
    else:
        fp32.rename(made)
    return made


def read_metadata(path: Path) -> dict[str, str]:
    """photoclass's metadata of an .onnx file, keys without the prefix."""
    import onnx

    props = onnx.load(str(path), load_external_data=False).metadata_props
    return {p.key.removeprefix("photoclass."): p.value for p in props}


def for_run(run: Path) -> Path:
    """RUN/model.onnx, exported once (unchecked but for parity); ImportError without ONNX Runtime."""
    import onnxruntime  # noqa: F401

    return onnx_for_run(run)


def export_onnx(
    run: str | os.PathLike, out: str | os.PathLike | None = None, *, opset: int = 18, samples: np.ndarray | None = None
) -> dict[str, Any]:
    """Write `out` (default RUN/model.onnx) and return {path, max_abs_diff, inputs checked}.

    `samples` (N, S, S, 3) uint8 are checked too, besides random inputs; the file is kept only
    when ONNX Runtime agrees with PyTorch within MAX_ABS_DIFF.
    """
    import onnx
    import torch

    from ...data.loader import normalize, to_float
    from .exportable import exportable, quiet_exporter

    run = RunDir(run)
    out = check_outside(Path(out) if out else run.path / "model.onnx", run.data_source())
    check_writable(out.parent, hint="pass --out a file in a folder you can write")
    model, spec, outputs, metadata = exportable(run)
    size = spec.size
    example = torch.rand(2, spec.channels, size, size)
    with tempfile.TemporaryDirectory() as tmp, quiet_exporter():
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


def onnx_for_run(run: str | os.PathLike, *, verbose: bool = True) -> Path:
    """RUN/model.onnx, exported first when missing or made from other weights."""
    import onnx

    from .exportable import weights_sha256

    run = RunDir(run)
    path = ENGINE.default_path(run)
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


def quantize_onnx(source: Path, out: Path, calibration: np.ndarray, reference) -> None:
    """Static INT8 of the ONNX graph by NNCF, as QuantizeLinear/DequantizeLinear pairs that ONNX
    Runtime runs and OpenVINO converts (`openvino.convert`): per-channel weights, activation
    ranges from `calibration` photos, biases corrected on them (the full correction: OpenVINO
    changed 2 of weather's 821 judged photos with it, 4 with the fast one). Weights keep 7 bits
    (NNCF's overflow fix), so the products of a pair of them stay within the 16 bits CPUs without
    VNNI add them in, and the answers checked on one CPU hold on every other (weather, OpenVINO:
    8-bit weights changed 3 of 821 answers on an AVX512-VNNI CPU and 7 on it emulating AVX2;
    7-bit weights changed the same photos on both). Activations have one range a tensor: NNCF
    otherwise gives the depthwise convolutions' inputs one a channel, which ONNX Runtime cannot
    fuse into its INT8 convolution (weather: 0.39x ONNX Runtime fp32 with them, 0.90x without;
    answers changed: weather 2 of 821 with them, 1 without; clothing 9-10 of 3,481, 7). The
    stem convolution and the "none of these" score's own nodes stay in float. (ONNX Runtime's own
    quantize_static, per-channel too, changed 3 of 16 predictions of a Lite0 run that NNCF's
    left unchanged: the early depthwise convolutions lose too much without bias correction.)"""
    import onnx

    from .exportable import import_nncf

    nncf = import_nncf()
    from nncf.quantization.advanced_parameters import QuantizationParameters

    mean = np.asarray(reference.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(reference.std, dtype=np.float32).reshape(1, -1, 1, 1)
    graph = onnx.load(str(source))
    batches = [calibration[i : i + 1] for i in range(len(calibration))]  # NNCF calibrates one sample at a time
    in_float = _score_only_nodes(graph) + [n.name for n in graph.graph.node if n.op_type == "Conv"][:1]  # the stem
    quantize = functools.partial(
        nncf.quantize,
        graph,
        nncf.Dataset(batches, lambda b: {"input": preprocess(b, mean, std)}),
        subset_size=len(batches),
        ignored_scope=nncf.IgnoredScope(names=in_float, validate=False) if in_float else None,
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            overflow_fix=nncf.OverflowFix.ENABLE,  # 7-bit weights
            activations_quantization_params=QuantizationParameters(per_channel=False),
        ),
    )
    try:
        quantized = quantize(fast_bias_correction=False)
    except RuntimeError:  # the full correction runs cut-out subgraphs, and fails to cut some (compact-cnn's)
        quantized = quantize(fast_bias_correction=True)
    onnx.save(quantized, str(out))


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


def stamp(path: Path, found: dict) -> None:
    """Add the check's figures to the ONNX file's metadata, in place."""
    import onnx

    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = "photoclass.verified", json.dumps(found)
    onnx.save(graph, str(path))


def _max_abs_diff(model, onnx_bytes: bytes, inputs: list) -> float:
    import onnxruntime as ort
    import torch

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


ENGINE = Engine(
    name="onnx",
    title="ONNX",
    open=OnnxPredictor,
    int8_weight_bits=7,
    precisions=("fp32", "int8"),
    file_name="model{tag}.onnx",
    recognizes=lambda path: path.suffix.lower() == ".onnx",
    convert=convert,
    read_metadata=read_metadata,
    stamp=stamp,
    for_run=for_run,
    missing="engine 'onnx' needs ONNX Runtime and the exporter. HINT: pip install 'photoclass[onnx]'",
    ray=True,
)
