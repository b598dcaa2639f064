"""RunDir: the one owner of a run folder's file names; its readers say a missing or damaged
file in one line naming the run and the file."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from photoclass.core.errors import PhotoclassError
from photoclass.runs.rundir import RunDir

META = {
    "architecture": "compact-cnn",
    "classes": ["cloudy", "rain", "shine"],
    "num_classes": 3,
    "input": {"size": 32, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "channels": 3, "resize": "bilinear"},
    "temperature": 1.5,
}


def test_each_accessor_writes_the_file_a_user_sees_and_reads_it_back(tmp_path):
    run = RunDir(tmp_path).create()
    run.write_config({"data": "photos"})
    run.write_model_meta(META)
    run.write_test_metrics({"test": {"accuracy": 0.5}})
    run.write_data_summary({"source": "photos"})
    run.write_classifier({"C": 1.0})
    run.write_summary({"members": []})
    run.write_tracking({"run_id": "x"})
    run.write_split("path,label\na.jpg,rain\n")
    row = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5, "lr": 0.1}
    run.write_metrics([{**row, "seconds": 2.0, "images_per_s": 15.0}])
    on_disk = {p.name for p in tmp_path.iterdir()}
    assert on_disk == {
        "plots",
        "config.json",
        "model.json",
        "test.json",
        "data.json",
        "classifier.json",
        "summary.json",
        "tracking.json",
        "split.csv",
        "metrics.csv",
        "timing.csv",
    }
    assert json.loads((tmp_path / "model.json").read_text()) == META  # the same JSON as before
    assert run.config() == {"data": "photos"} and run.model_meta() == META
    assert run.test_metrics()["test"]["accuracy"] == 0.5 and run.summary() == {"members": []}
    assert run.data_summary() == {"source": "photos"} and run.classifier() == {"C": 1.0}
    assert run.split_rows() == [{"path": "a.jpg", "label": "rain"}]
    assert run.metrics_rows()[0]["epoch"] == "1"


def test_optional_files_read_as_none_when_absent(tmp_path):
    run = RunDir(tmp_path)
    assert run.classifier() is None and run.data_summary() is None and run.audit_summary() is None


@pytest.mark.parametrize(
    "read, name",
    [
        (RunDir.config, "config.json"),
        (RunDir.model_meta, "model.json"),
        (RunDir.test_metrics, "test.json"),
        (RunDir.split_rows, "split.csv"),
        (RunDir.metrics_rows, "metrics.csv"),
    ],
)
def test_a_missing_file_is_one_line_naming_the_run_and_the_file(tmp_path, read, name):
    with pytest.raises(PhotoclassError, match=rf"{tmp_path} is not a complete run: {name} is missing") as e:
        read(RunDir(tmp_path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("read, name", [(RunDir.config, "config.json"), (RunDir.test_metrics, "test.json")])
def test_a_damaged_json_file_is_one_line_naming_it(tmp_path, read, name):
    (tmp_path / name).write_text('{"data": ')
    with pytest.raises(PhotoclassError, match=rf"{tmp_path / name} is damaged, not JSON") as e:
        read(RunDir(tmp_path))
    assert "\n" not in str(e.value)


def test_model_meta_is_checked(tmp_path):
    RunDir(tmp_path).write_model_meta({**META, "pickle": "os.system"})
    with pytest.raises(PhotoclassError, match=r"not a valid photoclass model.json: unexpected keys \['pickle'\]"):
        RunDir(tmp_path).model_meta()


def test_a_summary_run_read_as_one_run_points_to_a_member(tmp_path):
    RunDir(tmp_path).write_summary({"members": ["seed-0"], "test_accuracy": {"values": [0.9]}})
    with pytest.raises(PhotoclassError, match="is a summary of several runs, not one model"):
        RunDir(tmp_path).model_meta()


def test_plots_and_exports_have_their_names_in_the_run(tmp_path):
    run = RunDir(tmp_path)
    assert run.plot("confusion_matrix") == tmp_path / "plots" / "confusion_matrix.png"
    assert run.export_path("model{tag}.onnx") == tmp_path / "model.onnx"
    assert run.export_path("model{tag}.tflite", "int8") == tmp_path / "model-int8.tflite"
    assert run.export_path("openvino{tag}/model.xml", "bf16") == tmp_path / "openvino-bf16" / "model.xml"
    with pytest.raises(ValueError, match="Unknown plot 'confusion'. Known plots: learning_curves"):
        run.plot("confusion")


def test_serve_reads_model_json_through_the_checked_loader(tmp_path):
    from photoclass.serve.app import _model_info

    (tmp_path / "model.json").write_text("[1, 2")
    predictor = SimpleNamespace(classes=["a", "b"], size=32)
    with pytest.raises(PhotoclassError, match="model.json is damaged, not JSON"):
        _model_info(tmp_path, predictor)
    RunDir(tmp_path).write_model_meta([1, 2])
    with pytest.raises(PhotoclassError, match="not a valid photoclass model.json: not a JSON object"):
        _model_info(tmp_path, predictor)


def test_serve_refuses_a_run_with_a_broken_model_json_in_one_line(tmp_path):
    (tmp_path / "model.json").write_text('{"architecture": ')
    (tmp_path / "model.safetensors").write_bytes(b"weights")  # never reached: model.json is read first
    done = subprocess.run(
        [sys.executable, "-m", "photoclass.cli", "serve", str(tmp_path), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.json is damaged, not JSON" in lines[0], done.stderr
