"""Apply a trained run to photos: files, folders and globs, in batches, bad files reported; the
engine that runs it is asked of the registry (`engines/`)."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import check_int
from ..core.errors import PhotoclassError
from ..runs.rundir import RunDir
from .engines import Engine, engine_for_file, engine_names, engines, get_engine
from .engines.pytorch import Predictor
from .imagenet import IMAGENET_MODELS
from .prediction import ArrayItem, BasePredictor, Prediction, expand_paths, with_array_items

__all__ = [
    "ArrayItem",
    "BasePredictor",
    "Prediction",
    "Predictor",
    "expand_paths",
    "file_for_run",
    "open_predictor",
    "trained_on",
    "with_array_items",
]


def open_predictor(
    model: str | os.PathLike, *, engine: str = "torch", tta: bool | None = None, backbone: str | None = None, **kwargs
) -> BasePredictor:
    """A predictor for a run directory, an exported `.onnx` file (ONNX Runtime, no torch), an
    OpenVINO export (its model.xml or folder; OpenVINO Runtime, no torch) or a `.tflite` file
    (LiteRT's interpreter, no torch); `"imagenet"`
    predicts the 1,000 ImageNet classes with the pretrained backbone, untrained (`backbone`:
    any timm name whose weights carry an ImageNet-1k head, instead of Lite2).

    For a run directory, `engine` "onnx" runs it through ONNX Runtime (exporting RUN/model.onnx
    once), "openvino" and "litert" through its verified export of that format (made once,
    checked on the test photos), and "auto" through the fastest of its verified exports whose check holds on this CPU
    (`export.exports_for_here`), else ONNX Runtime when installed, else PyTorch. On a GPU
    `device`, "auto" keeps PyTorch. `tta=None` mirrors as the run's own test did (on for
    `small-resnet`), off for exports and for ImageNet.
    """
    from ..core.device import resolve_device

    choices = (*engine_names(), "auto")
    if engine not in choices:
        raise PhotoclassError(f"Unknown engine {engine!r}. HINT: use one of {', '.join(choices)}.")
    check_int("batch_size", kwargs.get("batch_size", 16), 1, 4096)
    path = Path(model)
    device = kwargs.pop("device", "auto")
    if backbone is not None and str(model) != "imagenet":
        raise PhotoclassError(
            f"--model chooses the backbone of `predict imagenet`; {model} is a trained run. "
            "HINT: drop --model, or predict 'imagenet'."
        )
    if str(model) in IMAGENET_MODELS and not path.exists():
        return _imagenet(str(model), engine, device, tta, backbone, kwargs)
    if not path.exists():
        raise PhotoclassError(f"No such run or model file: {path}. HINT: `photoclass runs` lists the runs.")
    chosen = engine_for_file(path)
    if chosen is not None:
        if device not in ("auto", "cpu"):
            raise PhotoclassError(
                f"An exported model runs on the CPU. Received: device={device!r}. HINT: --device "
                "cpu, or predict from the run folder for a GPU."
            )
    else:
        device = resolve_device(device)
        if engine == "auto" and device.type != "cpu":
            engine = next(e.name for e in engines() if e.gpu)
        check_run_folder(path)
        if tta is None:
            tta = _tested_with_tta(path)
        path, chosen = file_for_run(path, engine)
    predictor = _open(chosen, path, str(device), kwargs)
    predictor.tta = bool(tta)
    return predictor


def _imagenet(name: str, engine: str, device: str, tta: bool | None, backbone: str | None, kwargs: dict):
    from .imagenet import ImageNetPredictor

    if engine != "auto" and get_engine(engine).exports:
        raise PhotoclassError(f"{name} predicts through PyTorch only. HINT: drop --engine {engine}.")
    kwargs.pop("unknown", None)  # ImageNet's classes have no training photos to measure against
    predictor = ImageNetPredictor(name, device=device, model=backbone, **kwargs)
    predictor.tta = bool(tta)
    return predictor


def check_run_folder(path: Path) -> None:
    """Refuses a path that is not a run folder, naming what it is (a file, a summary run, another folder)."""
    if path.is_file():
        raise PhotoclassError(
            f"{path} is a file, not a run folder, an .onnx file or an OpenVINO model.xml. "
            f"HINT: pass its folder, {path.parent}"
        )
    if not RunDir(path).exists(RunDir.MODEL_META):
        if RunDir(path).exists(RunDir.SUMMARY):
            raise PhotoclassError(RunDir(path).summary_message())
        raise PhotoclassError(
            f"{path} is not a photoclass run: it has no model.json. HINT: `photoclass runs` lists the runs."
        )


def _open(engine: Engine, path: Path, device: str, kwargs: dict) -> BasePredictor:
    """`engine`'s predictor of `path`: an export takes the batch size, the 'none of these' check
    and its threads; PyTorch takes everything, and the device."""
    if engine.exports:
        return engine.open(path, **{k: v for k, v in kwargs.items() if k in ("batch_size", "unknown", "threads")})
    return engine.open(path, device=device, **kwargs)


def file_for_run(run: Path, engine: str) -> tuple[Path, Engine]:
    """(what to load, the engine that loads it) for a run folder and an engine's name, or "auto":
    the fastest of its verified exports, else the first engine whose runtime is installed,
    exports first (ONNX Runtime, exported once), PyTorch last."""
    if engine == "auto":
        return _fastest(run)
    chosen = get_engine(engine)
    if chosen.for_run is None:
        return _verified_export(run, chosen), chosen
    try:
        return chosen.for_run(run), chosen
    except ImportError:
        raise PhotoclassError(chosen.missing) from None


def _fastest(run: Path) -> tuple[Path, Engine]:
    try:
        from .export import exports_for_here

        fastest = exports_for_here(RunDir(run))
    except ImportError:
        fastest = []
    if fastest:
        return fastest[0][0], get_engine(fastest[0][1]["format"])
    for engine in sorted(engines(), key=lambda e: not e.exports):  # stable: in the registry's order
        if engine.for_run is not None:
            try:
                return engine.for_run(run), engine
            except ImportError:
                continue
    raise PhotoclassError(f"No engine can run {run}. HINT: pip install torch")


def _verified_export(run: Path, engine: Engine) -> Path:
    """The run's verified fp32 export for `engine`, made (and checked) once when missing."""
    from .export import checked_precision, export, verified_exports

    for found, check in verified_exports(RunDir(run)):
        if check["format"] == engine.name and checked_precision(check) == "fp32":
            return found
    print(f"exporting {run} to {engine.title} once, checked on its test photos ...", flush=True)
    return Path(export(run, engine.name, out=engine.default_path(run))["path"])


def trained_on(model: str | os.PathLike) -> str | None:
    """The data the run behind `model` was trained on: a run folder's, or that of the run folder
    an export sits in (RUN/model.onnx, RUN/openvino/model.xml); None where no run is found."""
    path = Path(model)
    for folder in (path, path.parent, path.parent.parent):
        if RunDir(folder).exists(RunDir.MODEL_META):
            return RunDir(folder).data_source()
    return None


def _tested_with_tta(run: Path) -> bool:
    """Whether the run's test figures were measured with mirrored photos (its config.json)."""
    try:
        return bool(RunDir(run).config().get("train", {}).get("tta", False))
    except (PhotoclassError, OSError, ValueError):
        return False
