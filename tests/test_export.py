"""ONNX export: parity with PyTorch, metadata, and prediction from the file without torch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import photoclass
from photoclass.inference.export import export_onnx
from photoclass.inference.engines.onnx import OnnxPredictor
from photoclass.inference.predictor import Predictor

pytestmark = pytest.mark.trains  # each test trains at least one small model
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "weather"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    photoclass.train(EXAMPLES, out=base / "run", cache_dir=base / "cache", verbose=False, progress=False)
    return base / "run"


@pytest.fixture(scope="module")
def exported(run):
    result = export_onnx(run)  # RUN/model.onnx
    return Path(result["path"]), result


def test_export_matches_pytorch_and_documents_preprocessing(run, exported):
    path, result = exported
    assert path == run / "model.onnx"
    assert result["max_abs_diff"] < 1e-3 and result["inputs_checked"] >= 6
    graph = onnx.load(str(path))
    props = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(props["photoclass.classes"]) == ["cloudy", "rain", "shine", "sunrise"]
    assert json.loads(props["photoclass.input"]) == json.loads((run / "model.json").read_text())["input"]
    assert float(props["photoclass.temperature"]) == json.loads((run / "model.json").read_text())["temperature"]
    assert "(x - mean) / std" in props["photoclass.preprocess"]
    batch = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # a dynamic batch axis


def test_onnx_and_pytorch_agree_on_every_example_photo(run, exported):
    torch_side = Predictor(run).predict([EXAMPLES], top_k=4)
    onnx_side = OnnxPredictor(exported[0]).predict([EXAMPLES], top_k=4)
    assert len(torch_side) == len(onnx_side) == 100
    assert [p.label for p in torch_side] == [p.label for p in onnx_side]
    diff = max(
        abs(a - b) for t, o in zip(torch_side, onnx_side) for (_, a), (_, b) in zip(sorted(t.top), sorted(o.top))
    )
    assert diff < 1e-4


def test_predict_from_onnx_runs_without_torch(exported):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
        "from photoclass.cli import main\n"
        f"sys.exit(main(['predict', {str(exported[0])!r}, {str(EXAMPLES)!r}, '--format', 'json']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 100 and all(r["label"] in ("cloudy", "rain", "shine", "sunrise") for r in rows)


def test_a_foreign_onnx_file_is_a_clear_error(tmp_path):
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["input"], ["logits"])],
            "g",
            [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3])],
            [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 3])],
        )
    )
    onnx.save(model, str(tmp_path / "other.onnx"))
    with pytest.raises(photoclass.PhotoclassError, match="was not exported by photoclass"):
        OnnxPredictor(tmp_path / "other.onnx")


@pytest.mark.slow
def test_a_runs_onnx_file_is_reused_while_fresh_and_remade_when_weights_change(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from conftest import train_tiny_run
    from photoclass.inference.export import onnx_for_run, weights_sha256
    from photoclass.runs.rundir import RunDir

    run = train_tiny_run(tmp_path)
    path = onnx_for_run(run)
    assert "exporting" in capsys.readouterr().out
    made = path.stat().st_mtime_ns
    assert onnx_for_run(run) == path and path.stat().st_mtime_ns == made
    assert "exporting" not in capsys.readouterr().out

    weights = load_file(run / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 0.5
    save_file(weights, run / "model.safetensors", metadata={"format": "pt"})
    onnx_for_run(run)
    assert "exporting" in capsys.readouterr().out
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["photoclass.weights_sha256"] == weights_sha256(RunDir(run))
