"""Apply a trained run to photos: files, folders and globs, in batches, bad files reported."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Iterator

import numpy as np

from ..data.arrays import array_layout, load_photo, read_arrays
from ..data.decode import IMAGE_SUFFIXES, DecodeError, decode_photo
from ..data.scan import is_hidden
from ..config import check_int
from ..core.progress import progress_bar
from ..core.device import memory_format
from ..core.errors import PhotoclassError
from ..runs.rundir import RunDir


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), best first
    error: str = ""  # why the photo was skipped
    outlier_score: float | None = None  # distance to the training photos; None: the model has no such check
    unknown: bool = False  # farther than the threshold: "none of these", whatever the top class

    @property
    def label(self) -> str:
        return self.top[0][0] if self.top else ""

    @property
    def confidence(self) -> float:
        return self.top[0][1] if self.top else 0.0

    def to_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        known = (
            {}
            if self.outlier_score is None
            else {"unknown": self.unknown, "outlier_score": round(self.outlier_score, 6)}
        )
        return {
            "path": self.path,
            "label": self.label,
            "confidence": round(self.confidence, 6),
            **known,
            "top": [{"label": c, "probability": round(p, 6)} for c, p in self.top],
        }


class BasePredictor:
    """Decoding, batching and ranking; subclasses turn (B, S, S, 3) uint8 into probabilities.

    With `tta`, each photo is also predicted mirrored and the two probabilities averaged, as
    `evaluate --tta` does."""

    classes: list[str]
    size: int
    batch_size: int = 16
    engine: str = ""
    precision: str = "fp32"  # the arithmetic: fp32, bf16, fp16, or int8 for a quantized export
    tta: bool = False

    threshold: float | None = None  # of the outlier score; None: no "none of these" check

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:  # (B, S, S, 3) -> (B, classes)
        return self.scored(pixels)[0]

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(calibrated logits (B, classes), outlier scores (B,) or None) of (B, S, S, 3) uint8
        photos: what every engine computes, and what an export is checked on."""
        raise NotImplementedError

    def scored(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities (B, classes), outlier scores (B,) or None) of (B, S, S, 3) uint8 photos."""
        logits, scores = self.outputs(pixels)
        return softmax(logits), scores

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities of (B, S, S, 3) uint8 photos, mirrored too with `tta`; with an outlier
        check, its score (of the photo as it is) as one more column."""
        probabilities, scores = self.scored(pixels)
        if self.tta:
            probabilities = (probabilities + self.probabilities(np.ascontiguousarray(pixels[:, :, ::-1]))) / 2
        return probabilities if scores is None or self.threshold is None else np.c_[probabilities, scores]

    def read_row(self, row: np.ndarray) -> tuple[np.ndarray, float | None, bool]:
        """One row of `predict_pixels`: (probabilities, outlier score or None, unknown)."""
        if len(row) == len(self.classes):
            return row, None, False
        score = float(row[-1])
        return row[:-1], score, score > self.threshold

    def predict(
        self, paths: Iterable[str | os.PathLike], *, top_k: int = 3, progress: bool | None = None
    ) -> list[Prediction]:
        files = with_array_items(expand_paths(paths))
        results = [p for batch in self.iter_predict(files, top_k=top_k, progress=progress) for p in batch]
        order = {str(f): i for i, f in enumerate(files)}
        return sorted(results, key=lambda r: order[r.path])

    def iter_predict(self, files: list, *, top_k: int = 3, progress: bool | None = None) -> Iterator[list[Prediction]]:
        """The predictions of `files` (paths or array items), a batch at a time, failed photos
        with their reasons first in each."""
        check_int("top_k", top_k, 1, 100_000)
        k = max(1, min(top_k, len(self.classes)))
        for ok, pixels, failed in self.decoded(files, progress=progress):
            if ok:
                for prediction, row in zip(ok, self.predict_pixels(pixels)):
                    p, prediction.outlier_score, prediction.unknown = self.read_row(row)
                    best = np.argsort(-p, kind="stable")[:k]
                    prediction.top = [(self.classes[i], float(p[i])) for i in best]
            yield failed + ok

    def decoded(
        self, files: list, *, progress: bool | None = None, desc: str = "predict"
    ) -> Iterator[tuple[list[Prediction], np.ndarray | None, list[Prediction]]]:
        """Batches of `files` (paths or ArrayItems) decoded at the model's size: (a blank
        Prediction per decoded photo, their (B, S, S, 3) pixels or None, the failed photos with
        their reasons)."""
        with progress_bar(total=len(files), desc=desc, unit="img", progress=progress) as bar:
            for batch in _batches(files, self.batch_size):
                decoded, ok, failed = [], [], []
                for path in batch:
                    try:
                        photo = (
                            load_photo(path.root, path.name, size=self.size)
                            if isinstance(path, ArrayItem)
                            else decode_photo(path, size=self.size)
                        )
                        decoded.append(photo.to_array())
                        ok.append(Prediction(str(path)))
                    except (DecodeError, OSError) as e:
                        failed.append(Prediction(str(path), error=getattr(e, "reason", None) or str(e)))
                yield ok, np.stack(decoded) if decoded else None, failed
                bar.update(len(batch))


class Predictor(BasePredictor):
    """A run's best model, ready for photos: `Predictor("runs/x").predict(["a.jpg", "dir/"])`."""

    engine = "torch"
    outliers = None  # the run's OutlierScore, when it has one and the check is on

    def __init__(
        self,
        run: str | os.PathLike,
        *,
        batch_size: int = 16,
        threads: int = 0,
        device: str = "auto",
        precision: str = "auto",
        unknown: bool = True,
    ):
        from ..runs.rundir import load_model
        from . import outliers

        check_int("batch_size", batch_size, 1, 4096)
        trained = RunDir(run).config().get("train", {}).get("precision") if RunDir(run).exists(RunDir.CONFIG) else None
        self._place(threads, device, precision, trained)
        model, meta = load_model(run)
        # the temperature was fitted on the validation split; the InputSpec read from model.json
        self._use(model, meta["classes"], float(meta.get("temperature", 1.0)), batch_size)
        if unknown and meta.get("outliers") and RunDir(run).exists(RunDir.OUTLIERS):
            self.outliers = outliers.load(RunDir(run) / RunDir.OUTLIERS, meta["outliers"]["k"]).to(self.device)
            self.threshold = float(meta["outliers"]["threshold"])

    def _place(self, threads: int, device: str, precision: str = "auto", trained: str | None = None) -> None:
        """The device, and the precision: by default the one the run was trained and tested in."""
        from ..core.device import resolve_device, resolve_precision
        from ..core.torchsetup import setup_torch

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device, stage="predict", trained=trained)
        setup_torch(threads, 0)

    def _use(self, model, classes: list[str], temperature: float, batch_size: int) -> None:
        if hasattr(model, "inference_copy"):
            model = model.inference_copy()  # BatchNorm folded: same outputs, faster
        self.memory_format = memory_format(self.device)
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        if self.precision == "bf16" and hasattr(model, "forward_head") and hasattr(model, "body"):
            import torch

            self.model.body.to(torch.bfloat16)  # cast once, not at every batch; the classifier stays float32
        self.classes, self.temperature, self.batch_size = classes, temperature, batch_size
        spec = model.input_spec
        self.size, self.mean, self.std = spec.size, spec.mean, spec.std

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        logits, features = self._outputs(pixels)
        return logits, None if features is None else self.outliers(features).cpu().numpy()

    def nearest(self, pixels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, distances (B, k), rows (B, k)): the k training photos nearest each photo
        in the outlier score's features, nearest first; rows index the run's usable photos."""
        if self.outliers is None:
            raise PhotoclassError(
                "This predictor has no index of its run's training photos. HINT: open it with "
                "unknown=True, from a run trained with the 'none of these' check."
            )
        logits, features = self._outputs(pixels, tap=True)
        distances, index = self.outliers.nearest(features, k)
        return softmax(logits), distances.cpu().numpy(), self.outliers.rows[index.cpu()].numpy()

    def _outputs(self, pixels: np.ndarray, tap: bool | None = None):
        """(calibrated logits, the last linear layer's inputs or None without the check)."""
        import contextlib

        import torch

        from ..core.device import autocast
        from ..data.loader import normalize, to_float
        from .outliers import tapped

        tap = self.outliers is not None if tap is None else tap
        with torch.no_grad(), tapped(self.model) if tap else contextlib.nullcontext() as features:
            x = normalize(to_float(torch.from_numpy(pixels).to(self.device)), self.mean, self.std)
            x = x.contiguous(memory_format=self.memory_format)
            if self.precision != "fp32" and hasattr(self.model, "forward_head"):
                # the backbone in bf16, the classifier in float32 on its features, as training fitted it
                with autocast(self.device, self.precision):
                    found = self.model.forward_features(x)
                logits = self.model.forward_head(found.float())
            else:
                with autocast(self.device, self.precision):
                    logits = self.model(x)
            logits = logits.float() / self.temperature
        return logits.cpu().numpy(), features[0].float() if tap else None


ENGINES = ("torch", "onnx", "openvino", "litert", "auto")


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
    checked on the test photos), and "auto" through the fastest of its verified exports on the machine that checked
    them (`photoclass export`), else ONNX Runtime when installed, else PyTorch. On a GPU
    `device`, "auto" keeps PyTorch. `tta=None` mirrors as the run's own test did (on for
    `small-resnet`), off for exports and for ImageNet.
    """
    from ..core.device import resolve_device

    if engine not in ENGINES:
        raise PhotoclassError(f"Unknown engine {engine!r}. HINT: use one of {', '.join(ENGINES)}.")
    check_int("batch_size", kwargs.get("batch_size", 16), 1, 4096)
    path = Path(model)
    device = kwargs.pop("device", "auto")
    if backbone is not None and str(model) != "imagenet":
        raise PhotoclassError(
            f"--model chooses the backbone of `predict imagenet`; {model} is a trained run. "
            "HINT: drop --model, or predict 'imagenet'."
        )
    if str(model) in ("imagenet", "imagenet-lite0", "imagenet-lite2") and not path.exists():
        from .imagenet import ImageNetPredictor

        if engine not in ("torch", "auto"):
            raise PhotoclassError(f"{model} predicts through PyTorch only. HINT: drop --engine {engine}.")
        kwargs.pop("unknown", None)  # ImageNet's classes have no training photos to measure against
        predictor = ImageNetPredictor(str(model), device=device, model=backbone, **kwargs)
        predictor.tta = bool(tta)
        return predictor
    if not path.exists():
        raise PhotoclassError(f"No such run or model file: {path}. HINT: `photoclass runs` lists the runs.")
    exported = _export_kind(path)
    if exported:
        if device not in ("auto", "cpu"):
            raise PhotoclassError(
                f"An exported model runs on the CPU. Received: device={device!r}. HINT: --device "
                "cpu, or predict from the run folder for a GPU."
            )
    else:
        device = resolve_device(device)
        if engine == "auto" and device.type != "cpu":
            engine = "torch"
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
        if tta is None:
            tta = _tested_with_tta(path)
        path, exported = _engine_for_run(path, engine)
    options = {k: v for k, v in kwargs.items() if k in ("batch_size", "unknown")}
    if exported == "onnx":
        from .onnx_predictor import OnnxPredictor

        predictor = OnnxPredictor(path, threads=kwargs.get("threads", 0), **options)
    elif exported == "openvino":
        from .openvino_engine import OpenVinoPredictor

        predictor = OpenVinoPredictor(path, threads=kwargs.get("threads", 0), **options)
    elif exported == "litert":
        from .litert_engine import LiteRtPredictor

        predictor = LiteRtPredictor(path, threads=kwargs.get("threads", 0), **options)
    else:
        predictor = Predictor(path, device=str(device), **kwargs)
    predictor.tta = bool(tta)
    return predictor


def trained_on(model: str | os.PathLike) -> str | None:
    """The data the run behind `model` was trained on: a run folder's, or that of the run folder
    an export sits in (RUN/model.onnx, RUN/openvino/model.xml); None where no run is found."""
    path = Path(model)
    for folder in (path, path.parent, path.parent.parent):
        if RunDir(folder).exists(RunDir.MODEL_META):
            return RunDir(folder).data_source()
    return None


def _export_kind(path: Path) -> str | None:
    """ "onnx" or "openvino" for an exported model's path (an OpenVINO folder holds model.xml),
    None for anything else."""
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if path.suffix.lower() == ".tflite":
        return "litert"
    if path.suffix.lower() == ".xml" or (
        path.is_dir() and (path / "model.xml").is_file() and not RunDir(path).exists(RunDir.MODEL_META)
    ):
        return "openvino"
    return None


def _engine_for_run(run: Path, engine: str) -> tuple[Path, str | None]:
    """(what to load, its export kind or None for PyTorch) for a run and an engine."""
    if engine == "torch":
        return run, None
    if engine in ("openvino", "litert"):
        from .export import default_path, export, verified_exports

        for found, check in verified_exports(RunDir(run)):
            if check["format"] == engine and check.get("precision", "int8" if check["int8"] else "fp32") == "fp32":
                return found, engine
        print(
            f"exporting {run} to {'OpenVINO' if engine == 'openvino' else 'LiteRT'} once, checked on its test "
            "photos ...",
            flush=True,
        )
        return Path(export(run, engine, out=default_path(RunDir(run), engine))["path"]), engine
    if engine == "auto":
        try:
            from .export import verified_exports

            fastest = verified_exports(RunDir(run))
        except ImportError:
            fastest = []
        if fastest:
            return fastest[0][0], fastest[0][1]["format"]
    try:
        from .export import onnx_for_run
        import onnxruntime  # noqa: F401

        return onnx_for_run(run), "onnx"
    except ImportError:
        if engine == "onnx":
            raise PhotoclassError(
                "engine 'onnx' needs ONNX Runtime and the exporter. HINT: pip install 'photoclass[onnx]'"
            ) from None
        return run, None


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _tested_with_tta(run: Path) -> bool:
    """Whether the run's test figures were measured with mirrored photos (its config.json)."""
    try:
        return bool(RunDir(run).config().get("train", {}).get("tta", False))
    except (PhotoclassError, OSError, ValueError):
        return False


@dataclass(frozen=True)
class ArrayItem:
    """One image of array data (`mnist.npz#x_test/3`), predicted like a photo file."""

    root: Path
    name: str

    def __str__(self) -> str:
        return f"{self.root.parent / self.name}" if self.root.is_file() else f"{self.root / self.name}"


def with_array_items(files: list[Path]) -> list:
    """Array data (an .npz, a CIFAR folder, ...) replaced by its images, in order."""
    out: list = []
    for f in files:
        if array_layout(f) is None:
            out.append(f)
        else:
            arrays = read_arrays(f)
            out += [ArrayItem(arrays.root, name) for name in arrays.names]
    return out


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders searched recursively for image files (hidden ones skipped);
    glob patterns expanded. A path that matches nothing is an error naming it. Array data
    (an .npz or .npy, a CIFAR or IDX folder) is kept whole."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir() and array_layout(path) is not None:
            files.append(path)
        elif path.is_dir():
            files += sorted(_images_under(path))
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(str(raw)):
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
            files += [m for m in matches if m.is_file()]
            for folder in (m for m in matches if m.is_dir()):
                files += sorted(_images_under(folder))
            if not matches:
                raise PhotoclassError(
                    f"No files match {raw!r}. HINT: check the pattern, e.g. 'photos/*.jpg' "
                    "or a folder, read recursively."
                )
        else:
            raise PhotoclassError(
                f"No such file or folder: {raw}. HINT: pass photos, folders of photos or a quoted glob."
            )
    return list(dict.fromkeys(files))  # each file once, in the order given


def _images_under(folder: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        for name in names:
            if not is_hidden(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(root) / name


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
