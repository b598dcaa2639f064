"""Hostile input across the tool: mutated images, fuzzed HTTP requests, hostile model files."""
import ast
import io
import json
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import jpeg_bytes, start_server, synthetic_photo, train_tiny_run
from photoclass.data.decode import DecodeError, decode_photo
from photoclass.errors import PhotoclassError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from fuzz_decode import mutate, seed_images  # noqa: E402  the long campaign's own mutator


def test_mutated_images_decode_or_fail_cleanly():
    """A short run of benchmarks/fuzz_decode.py: only DecodeError ever leaves decode_photo."""
    rng = random.Random(0)
    seeds = seed_images()
    outcomes = {"ok": 0, "skipped": 0}
    for i in range(1500):
        data = mutate(rng.choice(seeds), rng, seeds)
        try:
            photo = decode_photo(data, size=32)
            assert photo.to_array().shape == (32, 32, 3)
            outcomes["ok"] += 1
        except DecodeError as e:
            assert e.reason and "\n" not in e.reason
            outcomes["skipped"] += 1
    assert outcomes["ok"] > 100 and outcomes["skipped"] > 100  # the mutator reaches both sides


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("hostile"), epochs=1)


def test_the_api_holds_against_schemathesis(run, tmp_path):
    """Every route of the server's own OpenAPI schema: no 5xx, every response as documented."""
    proc, url = start_server(run)
    try:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/openapi.json", "--checks", "all",
             # a schema-valid upload of random bytes is rightly refused (415), not accepted
             "--exclude-checks", "positive_data_acceptance", "--max-examples", "60", "--seed", "0",
             "--workers", "1"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    summary = result.stdout[result.stdout.find("SUMMARY"):]
    assert result.returncode == 0, summary or result.stderr[-2000:]
    assert "Tested: 3" in summary and "failed" not in summary.lower()


class Payload:
    """Unpickling this runs code: it creates the canary file."""

    def __init__(self, canary):
        self.canary = str(canary)

    def __reduce__(self):
        return (open, (self.canary, "w"))


def copy_run(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def refused(fn, *args) -> str:
    with pytest.raises(PhotoclassError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_weights_that_are_a_pickle_are_refused_and_never_run(run, tmp_path):
    from photoclass.runs.rundir import load_model

    hostile, canary = copy_run(run, tmp_path), tmp_path / "canary"
    (hostile / "model.safetensors").write_bytes(pickle.dumps(Payload(canary)))
    assert "not a valid safetensors file" in refused(load_model, hostile)
    buffer = io.BytesIO()
    import torch
    torch.save({"model": Payload(canary)}, buffer)
    (hostile / "last.ckpt").write_bytes(buffer.getvalue())
    assert "cannot be loaded safely" in refused(hostile_resume, hostile)
    assert not canary.exists()


def hostile_resume(run):
    from photoclass.runs.rundir import RunDir

    RunDir(run).load_checkpoint()


@pytest.mark.parametrize("header", [
    b"{not json",
    json.dumps({"w": {"dtype": "F32", "shape": [1000000, 1000000], "data_offsets": [0, 4]}}).encode(),
    None,  # a header length of 2**60 bytes
])
def test_a_corrupt_or_huge_safetensors_header_is_refused(run, tmp_path, header):
    from photoclass.runs.rundir import load_model

    hostile = copy_run(run, tmp_path)
    data = struct.pack("<Q", 2**60) + b"{}" if header is None else struct.pack("<Q", len(header)) + header + b"\0" * 4
    (hostile / "model.safetensors").write_bytes(data)
    assert "safetensors" in refused(load_model, hostile)


@pytest.mark.parametrize("change, expected", [
    ({"weights": "../../outside/model.safetensors"}, "unexpected keys ['weights']"),
    ({"architecture": "../../evil"}, "Unknown model"),
    ({"num_classes": 10**9}, "classes and num_classes"),
    ({"input": {"size": 10**6, "mean": [0, 0, 0], "std": [1, 1, 1]}}, "input must give size"),
])
def test_a_tampered_model_json_is_refused(run, tmp_path, change, expected):
    from photoclass.runs.rundir import load_model

    hostile = copy_run(run, tmp_path)
    meta = json.loads((hostile / "model.json").read_text())
    (hostile / "model.json").write_text(json.dumps({**meta, **change}))
    assert expected.lower() in refused(load_model, hostile).lower()


def test_an_onnx_file_reading_tensors_outside_its_folder_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from photoclass.inference.onnx_predictor import OnnxPredictor

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "24")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "W"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])], [weight])
    model = helper.make_model(graph)
    for key, value in (("photoclass.classes", '["a", "b"]'),
                       ("photoclass.input", '{"size": 1, "mean": [0, 0, 0], "std": [1, 1, 1]}')):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    (tmp_path / "model").mkdir()
    onnx.save(model, str(tmp_path / "model" / "evil.onnx"))
    assert "self-contained" in refused(OnnxPredictor, tmp_path / "model" / "evil.onnx")


def test_no_code_calls_torch_load_without_weights_only():
    """Every torch.load in the package and its tools passes weights_only=True, literally."""
    offenders = []
    for path in [*ROOT.joinpath("photoclass").rglob("*.py"), *ROOT.joinpath("benchmarks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
