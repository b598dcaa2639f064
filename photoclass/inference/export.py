"""Exports of a run's model, in whatever format an engine of the registry makes (ONNX, OpenVINO,
LiteRT; fp32, INT8, bf16), each kept only once its own runtime has given PyTorch's answers on the
run's own photos (`verify.py`).

Every export takes a float32 batch (B, C, S, S), already preprocessed, and gives the
calibrated logits (and the "none of these" score, when the run has it); how to preprocess,
the class names and the check's figures travel in the export's metadata.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

from ..core.atomic import check_writable
from ..core.cpu import bf16_native, cpu_kind
from ..core.errors import PhotoclassError
from ..data.outside import check_outside
from ..runs.rundir import RunDir
from . import verify
from .engines import Engine, engine_names, engines, get_engine
from .engines.exportable import PREPROCESS, exportable, weights_sha256
from .engines.onnx import MAX_ABS_DIFF, export_onnx, onnx_for_run
from .engines.pytorch import Predictor

__all__ = [
    "CALIBRATION_PHOTOS",
    "MAX_ABS_DIFF",
    "PREPROCESS",
    "checked_precision",
    "default_path",
    "export",
    "exports_for_here",
    "export_onnx",
    "exportable",
    "kept_here",
    "onnx_for_run",
    "speedup",
    "verified_exports",
    "weights_sha256",
]

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
    """Export RUN's model and keep it only if its runtime agrees with PyTorch on the run's photos
    (all but those that calibrated it: verify.compare's rule). Returns the check's figures with
    the export's "path"; a failed check writes nothing and raises, saying why. `announce()` is
    called once the run and the output path are found good, before the long work.

    `format`: onnx (RUN/model.onnx; ONNX Runtime), openvino (RUN/openvino/model.xml; OpenVINO
    Runtime) or litert (RUN/model.tflite; LiteRT's interpreter), or any exporting engine
    registered. `int8`: static post-training quantization, per-channel weights, calibrated on up
    to 300 training photos, at most half of them (NNCF for ONNX Runtime's QDQ and for OpenVINO,
    PT2E for LiteRT); judged on all the others;
    `-int8` is added to the name. `bf16` (OpenVINO only, on a CPU with native bf16): float32
    weights run in bf16 arithmetic, checked so; `-bf16` is added to the name.
    """
    engine = _exporting_engine(format)
    precision = _precision(engine, int8, bf16)
    run = RunDir(run)
    reference = Predictor(run.path, device="cpu", precision="fp32")  # first: a bad run is named before anything
    out = Path(out) if out else engine.default_path(run.path, precision)
    check_outside(out, run.data_source())
    check_writable(out.parent, hint="pass --out a path in a folder you can write")
    if announce is not None:
        announce()
    photos, calibration = verify.check_photos(
        run, reference.size, calibration=CALIBRATION_PHOTOS if precision == "int8" else 0, progress=progress
    )
    with tempfile.TemporaryDirectory(prefix=".photoclass-export-", dir=out.parent) as tmp:
        made = engine.convert(run, Path(tmp), precision=precision, calibration=calibration, reference=reference)
        found = _checked(engine, made, run, reference, photos, precision, progress)
        engine.stamp(made, found)
        engine.keep(made, out)
    found["path"] = str(out)
    return found


def _exporting_engine(format: str) -> Engine:
    formats = engine_names(exports=True)
    if format not in formats:
        raise PhotoclassError(f"Unknown export format {format!r}. HINT: use one of {', '.join(formats)}.")
    return get_engine(format)


def _precision(engine: Engine, int8: bool, bf16: bool) -> str:
    """The export's precision, once found one its engine makes and can check on this machine."""
    asked = [precision for precision, on in (("bf16", bf16), ("int8", int8)) if on]
    for precision in asked:
        if precision not in engine.precisions:
            able = [e for e in engines() if precision in e.precisions]
            hint = f"--format {able[0].name} --{precision}, or drop --{precision}" if able else f"drop --{precision}"
            raise PhotoclassError(
                f"{precision} exports run on {', '.join(e.title for e in able) or 'no engine'} only. Received: "
                f"format={engine.name!r}. HINT: {hint}."
            )
    if len(asked) > 1:
        raise PhotoclassError("An export is either --int8 or --bf16, not both. HINT: drop one of them.")
    precision = asked[0] if asked else "fp32"
    if engine.check_precision is not None:
        engine.check_precision(precision)
    return precision


def _checked(
    engine: Engine, made: Path, run: RunDir, reference, photos: verify.Photos, precision: str, progress: bool | None
) -> dict:
    """The check of the export `made` against PyTorch on `photos`; raises, saying why, if it fails."""
    candidate = engine.open(made)
    found = verify.compare(reference, candidate, photos, fp32=precision == "fp32", progress=progress)
    found.update(format=engine.name, int8=precision == "int8", precision=precision, engine=candidate.engine)
    found["cpu"] = cpu_kind()  # where the check ran, and so where its answers and speed are known
    if precision == "int8":
        found["int8_weight_bits"] = engine.int8_weight_bits
    if not found["kept"]:
        kind = {"int8": " INT8", "bf16": " bf16"}.get(precision, "")
        raise PhotoclassError(
            f"The {engine.name}{kind} export of {run.path} failed its check, "
            f"so it was not kept: {found['why_not']}. ({verify.describe(found)})"
        )
    return found


def verified_exports(run: RunDir) -> list[tuple[Path, dict]]:
    """The run's exports at their default paths that passed their check and were made from its
    current weights, with the check's figures, fastest against PyTorch first."""
    found = []
    sha = weights_sha256(run)
    for engine in engines():
        for precision in engine.precisions:
            path = engine.default_path(run.path, precision)
            try:
                meta = engine.read_metadata(path)
            except Exception:  # missing, unreadable, or its runtime is not installed: not a candidate
                continue
            if meta.get("weights_sha256") == sha and "verified" in meta:
                found.append((path, json.loads(meta["verified"])))
    return sorted(found, key=lambda f: -speedup(f[1]))


def speedup(check: dict) -> float:
    """How much faster than PyTorch an export ran in its check: the two took turns batch by
    batch, so the ratio holds however busy the machine was (images/s alone does not)."""
    rate, torch_rate = check.get("images_per_s") or 0, check.get("torch_images_per_s")
    return rate / torch_rate if torch_rate else rate / 1e6  # checks that kept no PyTorch rate come last


def checked_precision(check: dict) -> str:
    """An export's precision, from its check (checks before bf16 exports said only "int8")."""
    return check.get("precision", "int8" if check.get("int8") else "fp32")


def kept_here(check: dict) -> bool:
    """Whether an export's check holds on this CPU: an fp32 export anywhere; a bf16 one where
    bf16 is native; an INT8 one checked on this kind of CPU (`core.cpu`), or anywhere when its
    weights have 7 bits, whose products no CPU saturates."""
    precision = checked_precision(check)
    if precision == "bf16":
        return bf16_native()
    if precision == "int8":
        return check.get("cpu") == cpu_kind() or check.get("int8_weight_bits") == 7
    return True


def exports_for_here(run: RunDir) -> list[tuple[Path, dict]]:
    """The run's verified exports whose check holds on this CPU, those checked on this kind of
    CPU first (their speed was measured on it), fastest against PyTorch first."""
    here = cpu_kind()
    found = [f for f in verified_exports(run) if kept_here(f[1])]
    return sorted(found, key=lambda f: (f[1].get("cpu") != here, -speedup(f[1])))


def default_path(run: RunDir, format: str, precision: str = "fp32") -> Path:
    return get_engine(format).default_path(run.path, precision)
