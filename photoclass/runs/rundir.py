"""The run directory, the unit of output: layout, atomic writes, loading back safely.

    config.json  split.csv  metrics.csv  model.safetensors  model.json  last.ckpt
    plots/*.png  test.json

`RunDir` is the only code that knows these names: everyone else asks it, for a file's name
(`RunDir.TEST_METRICS`), its path (`run / RunDir.TEST_METRICS`), whether it is there
(`run.exists(RunDir.TEST_METRICS)`), its content (`run.test_metrics()`, checked, a missing or
damaged file said in one line) or to write it (`run.write_test_metrics(...)`).

Weights are safetensors plus JSON metadata; `last.ckpt` is read with
`torch.load(weights_only=True)`. Nothing in a run is unpickled as code.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import PhotoclassError
from ..models.input_spec import InputSpec
from ..core.atomic import write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:  # torch is imported where weights are read or written, so listing runs stays light
    import torch

# metrics.csv holds only what the seed determines, so two runs can be compared byte for byte;
# wall-clock figures go to timing.csv.
METRICS_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
TIMING_COLUMNS = ("epoch", "seconds", "images_per_s")


class RunDir:
    """One run folder on disk; the only code that knows the names of its files."""

    CONFIG = "config.json"  # every option as resolved, the split's seed, versions
    DATA = "data.json"  # the prepared data's summary (source, counts, cache)
    SPLIT = "split.csv"  # each source item, its label, duplicate group and split
    METRICS = "metrics.csv"  # one row per epoch: what the seed determines
    TIMING = "timing.csv"  # one row per epoch: wall-clock seconds, photos per second
    MODEL_META = "model.json"  # architecture, classes, InputSpec, temperature
    WEIGHTS = "model.safetensors"  # the best weights
    HEAD_WEIGHTS = "head.safetensors"  # LP-FT: the best head of its first stage
    OUTLIERS = "outliers.safetensors"  # the training features "none of these" is measured against
    CHECKPOINT = "last.ckpt"  # what resume needs
    CLASSIFIER = "classifier.json"  # what one logistic-regression solve tuned
    TEST_METRICS = "test.json"  # test metrics with intervals, per class, calibration error
    BEFORE_AFTER = "before_after.json"  # train --compare-to: test figures before and after corrected labels
    SUMMARY = "summary.json"  # a summary run's (seeds or folds): its members and their spread
    TRACKING = "tracking.json"  # the MLflow run it was logged to
    REPORT = "report.html"
    PLOTS = "plots"
    EVALUATIONS = "evaluations"  # re-evaluations, none replacing another
    # `audit --out RUN/audit` puts the audit inside the run, where its report links to it
    AUDIT = "audit"
    REVIEW = "review"  # `photoclass review RUN` keeps its corrections.csv here unless told elsewhere
    AUDIT_ISSUES = "label_issues.csv"
    AUDIT_SUMMARY = "audit.json"
    AUDIT_PAGE = "audit.html"
    # an export's default place in the run, by engine; "-int8" and the like for other precisions
    # plots/NAME.png, written after training and shown by the report
    PLOT_NAMES = (
        "learning_curves",
        "regularization",
        "confusion_matrix",
        "pr_curves",
        "calibration",
        "misclassified",
        "augmentation",
        "outlier_scores",
    )

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def plots(self) -> Path:
        return self.path / self.PLOTS

    def plot(self, name: str) -> Path:
        """plots/NAME.png, for a name of `PLOT_NAMES`."""
        if name not in self.PLOT_NAMES:
            raise ValueError(f"Unknown plot {name!r}. Known plots: {', '.join(self.PLOT_NAMES)}")
        return self.plots / f"{name}.png"

    def export_path(self, file_name: str, precision: str = "fp32") -> Path:
        """Where an export of this run goes by default: an engine's `file_name` (its template,
        e.g. "model{tag}.onnx") in the run folder, tagged with a precision other than fp32
        (model.onnx, model-int8.tflite, openvino-bf16/model.xml, ...)."""
        return self.path / file_name.format(tag="" if precision == "fp32" else f"-{precision}")

    def create(self) -> RunDir:
        self.plots.mkdir(parents=True, exist_ok=True)
        return self

    def remove_temp_files(self) -> int:
        """Delete the temporary files of atomic writes a killed process left; how many."""
        stale = [*self.path.glob(".*.tmp"), *self.plots.glob(".*.tmp")] if self.path.is_dir() else []
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        return len(stale)

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    def write_json(self, name: str, data: Any) -> None:
        write_text_atomic(self.path / name, json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    def read_json(self, name: str) -> Any:
        """The file `name` of the run as JSON; missing or damaged, a one-line error naming both."""
        try:
            return json.loads((self.path / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise self._missing(name) from None
        except ValueError as e:  # not JSON, or not UTF-8
            raise PhotoclassError(
                f"{self.path / name} is damaged, not JSON ({str(e).splitlines()[0][:120]}). "
                "HINT: restore the file, or train the run again."
            ) from None

    def read_csv(self, name: str) -> list[dict[str, str]]:
        try:
            with open(self.path / name, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        except FileNotFoundError:
            raise self._missing(name) from None
        except (ValueError, csv.Error) as e:
            raise PhotoclassError(
                f"{self.path / name} is damaged ({str(e).splitlines()[0][:120]}). "
                "HINT: restore the file, or train the run again."
            ) from None

    def _missing(self, name: str) -> PhotoclassError:
        if name != self.SUMMARY and self.exists(self.SUMMARY):
            return PhotoclassError(self.summary_message())
        return PhotoclassError(
            f"{self.path} is not a complete run: {name} is missing. HINT: pass a run "
            "folder; `photoclass runs` lists the finished ones."
        )

    # What a run holds, read back (checked) and written. Optional files read as None when absent.

    def config(self) -> dict[str, Any]:
        return self.read_json(self.CONFIG)

    def write_config(self, config: dict[str, Any]) -> None:
        self.write_json(self.CONFIG, config)

    def model_meta(self) -> dict[str, Any]:
        """model.json, checked as `check_model_meta` does."""
        return check_model_meta(self.read_json(self.MODEL_META), self.path / self.MODEL_META)

    def write_model_meta(self, meta: dict[str, Any]) -> None:
        self.write_json(self.MODEL_META, meta)

    def test_metrics(self) -> dict[str, Any]:
        """test.json: the test, train and val figures, training's seconds, the misclassified."""
        return self.read_json(self.TEST_METRICS)

    def write_test_metrics(self, evaluation: dict[str, Any]) -> None:
        self.write_json(self.TEST_METRICS, evaluation)

    def data_summary(self) -> dict[str, Any] | None:
        return self.read_json(self.DATA) if self.exists(self.DATA) else None

    def write_data_summary(self, summary: dict[str, Any]) -> None:
        self.write_json(self.DATA, summary)

    def classifier(self) -> dict[str, Any] | None:
        """classifier.json, for a head fitted in one solve; None for one trained in epochs."""
        return self.read_json(self.CLASSIFIER) if self.exists(self.CLASSIFIER) else None

    def write_classifier(self, found: dict[str, Any]) -> None:
        self.write_json(self.CLASSIFIER, found)

    def summary(self) -> dict[str, Any]:
        return self.read_json(self.SUMMARY)

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.write_json(self.SUMMARY, summary)

    def write_tracking(self, tracked: dict[str, Any]) -> None:
        self.write_json(self.TRACKING, tracked)

    def split_rows(self) -> list[dict[str, str]]:
        return self.read_csv(self.SPLIT)

    def write_split(self, text: str) -> None:
        write_text_atomic(self.path / self.SPLIT, text)

    def metrics_rows(self) -> list[dict[str, str]]:
        return self.read_csv(self.METRICS)

    def audit_summary(self) -> dict[str, Any] | None:
        """RUN/audit/audit.json, where the run's data was audited into it; else None."""
        name = f"{self.AUDIT}/{self.AUDIT_SUMMARY}"
        return self.read_json(name) if self.exists(name) else None

    def audit_issues(self) -> list[dict[str, str]]:
        return self.read_csv(f"{self.AUDIT}/{self.AUDIT_ISSUES}")

    def data_source(self) -> str | None:
        """The data the run was trained on (a folder, a CSV, an array file), or None where it is
        not recorded."""
        for name, key in ((self.DATA, "source"), (self.CONFIG, "data")):
            try:
                source = json.loads((self.path / name).read_text(encoding="utf-8")).get(key)
            except (OSError, ValueError, AttributeError):
                continue
            if source:
                return source
        return None

    def summary_message(self) -> str:
        """What to say when a summary run (seeds or folds) is used as one model."""
        try:
            summary = json.loads((self.path / self.SUMMARY).read_text(encoding="utf-8"))
            values, members = summary["test_accuracy"]["values"], summary["members"]
            best = max(range(len(values)), key=values.__getitem__)
            example = f"{self.path / members[best]} (the best test accuracy of them, {values[best]:.4f})"
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            example = "one of its member folders"
        return (
            f"{self.path} is a summary of several runs, not one model. HINT: pass one of its members, e.g. {example}."
        )

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Write metrics.csv and timing.csv from the per-epoch history."""
        for name, columns in ((self.METRICS, METRICS_COLUMNS), (self.TIMING, TIMING_COLUMNS)):
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, columns, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _fmt(row[k]) for k in columns})
            write_text_atomic(self.path / name, buffer.getvalue())

    def save_weights(self, model: torch.nn.Module, name: str = WEIGHTS) -> None:
        from safetensors.torch import save as save_safetensors

        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        write_bytes_atomic(self.path / name, save_safetensors(state))

    def save_model(self, model: torch.nn.Module, meta: dict[str, Any]) -> None:
        self.save_weights(model)
        self.write_model_meta(meta)

    def load_state(self, name: str = WEIGHTS) -> dict[str, torch.Tensor]:
        path = self.path / name
        if not path.is_file():
            raise PhotoclassError(
                f"{self.path} has no {name}: is it a photoclass run? HINT: pass a finished run "
                "folder; `photoclass runs` lists them."
            )
        from safetensors.torch import load as load_safetensors

        try:
            return load_safetensors(path.read_bytes())
        except Exception as e:  # SafetensorError, or a header that is not JSON
            raise PhotoclassError(
                f"{path} is not a valid safetensors file ({str(e)[:120]}); refusing to load "
                "it. HINT: restore the file, or train the run again."
            ) from None

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_bytes_atomic(self.path / self.CHECKPOINT, buffer.getvalue())

    def load_checkpoint(self) -> dict[str, Any]:
        path = self.path / self.CHECKPOINT
        if not path.is_file():
            raise PhotoclassError(
                f"Cannot resume {self.path}: it has no last.ckpt (no epoch finished yet). "
                "HINT: start it again without --resume."
            )
        import torch

        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle.UnpicklingError for code in the file, or a damaged file
            raise PhotoclassError(
                f"{path} cannot be loaded safely ({type(e).__name__}: {str(e).splitlines()[0][:120]}). "
                "Nothing in it was run. HINT: start the run again without --resume."
            ) from None


def _fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else value


def load_model(run: RunDir | str | Path, model: torch.nn.Module | None = None):
    """The best weights of a run as a ready model in eval mode, and its model.json.

    Registered architectures are rebuilt by name; a custom one needs `model`, an instance
    of the same class, into which the weights are loaded.
    """
    from ..models.registry import create_model

    run = run if isinstance(run, RunDir) else RunDir(run)
    meta = run.model_meta()
    spec = InputSpec.from_dict(meta["input"], source=str(run / RunDir.MODEL_META))
    if model is None:
        if meta["architecture"].startswith("custom:"):
            raise PhotoclassError(
                f"{run.path} holds a custom model ({meta['architecture'][7:]}). "
                "HINT: pass model=<an instance of that class> to load its weights."
            )
        model = create_model(
            meta["architecture"], meta["num_classes"], input_size=spec.size, channels=spec.channels, pretrained=False
        )  # the run's own weights follow
    try:
        model.load_state_dict(run.load_state())
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
        raise PhotoclassError(
            f"{run / RunDir.WEIGHTS} does not fit a {meta['architecture']} with "
            f"{meta['num_classes']} classes: {str(e).splitlines()[0][:160]}"
        ) from None
    model.input_spec = spec
    return model.eval(), meta


MODEL_META_KEYS = {
    "architecture",
    "task",
    "decision",
    "classes",
    "num_classes",
    "input",
    "parameters",
    "photoclass",
    "torch",
    "temperature",
    "trained_parameters",
    "outliers",
}


def check_model_meta(meta: Any, path: Path) -> dict[str, Any]:
    """model.json as written by photoclass, or a one-line error: nothing in it names a file."""

    def bad(why: str) -> PhotoclassError:
        return PhotoclassError(f"{path} is not a valid photoclass model.json: {why}. Refusing to load it.")

    if not isinstance(meta, dict):
        raise bad("not a JSON object")
    unknown = sorted(set(meta) - MODEL_META_KEYS)
    if unknown:
        raise bad(f"unexpected keys {unknown}")
    classes, n = meta.get("classes"), meta.get("num_classes")
    if not isinstance(meta.get("architecture"), str):
        raise bad("no architecture name")
    if not isinstance(meta.get("task", ""), str):
        raise bad("task must be the name of a kind of task")
    if not isinstance(meta.get("decision", {}), dict):
        raise bad("decision must be a JSON object")
    if not (
        isinstance(n, int)
        and 1 <= n <= 100_000
        and isinstance(classes, list)
        and len(classes) == n
        and all(isinstance(c, str) for c in classes)
    ):
        raise bad("classes and num_classes disagree or are not names")
    InputSpec.from_dict(meta.get("input"), source=f"{path} is not a valid photoclass model.json")
    temperature = meta.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature <= 100:
        raise bad("temperature must be a positive number")
    found = meta.get("outliers")
    if found is not None and not (
        isinstance(found, dict)
        and isinstance(found.get("k"), int)
        and found["k"] >= 1
        and isinstance(found.get("threshold"), (int, float))
        and not isinstance(found.get("threshold"), bool)
    ):
        raise bad("outliers must give an integer k and a numeric threshold")
    return meta


def summary_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The figures a leaderboard compares, from a run's test.json."""
    test = result["test"]
    out = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_error": test.get("error", 1.0 - test["accuracy"]),  # the task's: 1 - its headline figure
        "test_macro_f1": test["macro_f1"],
        "generalization_gap": result["generalization_gap"],
        "train_accuracy": result["train"]["accuracy"],
        "seconds": result["training"]["seconds"],
    }
    if result.get("val"):
        out["val_accuracy"] = result["val"]["accuracy"]
    if test.get("accuracy_interval"):
        out["test_accuracy_low"], out["test_accuracy_high"] = test["accuracy_interval"]
    if "ece" in test:
        out["test_ece"] = test["ece"]
    return out
