"""The run directory, the unit of output: layout, atomic writes, loading back safely.

    config.json  split.csv  metrics.csv  model.safetensors  model.json  last.ckpt
    plots/*.png  test.json

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
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def plots(self) -> Path:
        return self.path / "plots"

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
        try:
            return json.loads((self.path / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            if name != "summary.json" and self.exists("summary.json"):
                raise PhotoclassError(self.summary_message()) from None
            raise PhotoclassError(
                f"{self.path} is not a complete run: {name} is missing. HINT: pass a run "
                "folder; `photoclass runs` lists the finished ones."
            ) from None

    def data_source(self) -> str | None:
        """The data the run was trained on (a folder, a CSV, an array file), or None where it is
        not recorded."""
        for name, key in (("data.json", "source"), ("config.json", "data")):
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
            summary = json.loads((self.path / "summary.json").read_text(encoding="utf-8"))
            values, members = summary["test_accuracy"]["values"], summary["members"]
            best = max(range(len(values)), key=values.__getitem__)
            example = f"{self.path / members[best]} (the best test accuracy of them, {values[best]:.4f})"
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            example = "one of its member folders"
        return (
            f"{self.path} is a summary of several runs, not one model. HINT: pass one of its members, e.g. {example}."
        )

    def read_csv(self, name: str) -> list[dict[str, str]]:
        with open(self.path / name, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Write metrics.csv and timing.csv from the per-epoch history."""
        for name, columns in (("metrics.csv", METRICS_COLUMNS), ("timing.csv", TIMING_COLUMNS)):
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, columns, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _fmt(row[k]) for k in columns})
            write_text_atomic(self.path / name, buffer.getvalue())

    def save_weights(self, model: torch.nn.Module, name: str = "model.safetensors") -> None:
        from safetensors.torch import save as save_safetensors

        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        write_bytes_atomic(self.path / name, save_safetensors(state))

    def save_model(self, model: torch.nn.Module, meta: dict[str, Any]) -> None:
        self.save_weights(model)
        self.write_json("model.json", meta)

    def load_state(self, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
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
        write_bytes_atomic(self.path / "last.ckpt", buffer.getvalue())

    def load_checkpoint(self) -> dict[str, Any]:
        path = self.path / "last.ckpt"
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
    meta = check_model_meta(run.read_json("model.json"), run.path / "model.json")
    spec = InputSpec.from_dict(meta["input"], source=str(run.path / "model.json"))
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
            f"{run.path / 'model.safetensors'} does not fit a {meta['architecture']} with "
            f"{meta['num_classes']} classes: {str(e).splitlines()[0][:160]}"
        ) from None
    model.input_spec = spec
    return model.eval(), meta


MODEL_META_KEYS = {
    "architecture",
    "task",
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
