"""Hostile input across the tool: mutated images, fuzzed HTTP requests, hostile model files."""

import ast
import io
import json
import pickle
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_flat, start_server, train_tiny_run
from photoclass.data.decode import DecodeError, decode_photo
from photoclass.core.errors import PhotoclassError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from fuzz_decode import mutate, seed_images  # noqa: E402  the long campaign's own mutator


SEEDS = seed_images()


@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**64 - 1), st.sampled_from([None, 32]))
def test_mutated_images_decode_or_fail_cleanly(seed, size):
    """A short run of benchmarks/fuzz_decode.py's mutator, driven by hypothesis: any input
    either decodes or raises DecodeError with a one-line reason."""
    rng = random.Random(seed)
    data = mutate(rng.choice(SEEDS), rng, SEEDS)
    try:
        photo = decode_photo(data, size=size)
    except DecodeError as e:
        assert e.reason and "\n" not in e.reason
    else:
        assert photo.to_array().ndim == 3 and photo.to_array().shape[2] == 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("hostile"), epochs=1)


@pytest.mark.slow
def test_the_api_holds_against_schemathesis(run, tmp_path):
    """Every route of the server's own OpenAPI schema: no 5xx, every response as documented."""
    proc, url = start_server(run)
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "all",
                # a schema-valid upload of random bytes is rightly refused (415), not accepted
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "60",
                "--seed",
                "0",
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=600,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    summary = result.stdout[result.stdout.find("SUMMARY") :]
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


@pytest.mark.parametrize(
    "header",
    [
        b"{not json",
        json.dumps({"w": {"dtype": "F32", "shape": [1000000, 1000000], "data_offsets": [0, 4]}}).encode(),
        None,  # a header length of 2**60 bytes
    ],
)
def test_a_corrupt_or_huge_safetensors_header_is_refused(run, tmp_path, header):
    from photoclass.runs.rundir import load_model

    hostile = copy_run(run, tmp_path)
    data = struct.pack("<Q", 2**60) + b"{}" if header is None else struct.pack("<Q", len(header)) + header + b"\0" * 4
    (hostile / "model.safetensors").write_bytes(data)
    assert "safetensors" in refused(load_model, hostile)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"weights": "../../outside/model.safetensors"}, "unexpected keys ['weights']"),
        ({"architecture": "../../evil"}, "Unknown model"),
        ({"num_classes": 10**9}, "classes and num_classes"),
        ({"input": {"size": 10**6, "mean": [0, 0, 0], "std": [1, 1, 1]}}, "input spec needs size"),
    ],
)
def test_a_tampered_model_json_is_refused(run, tmp_path, change, expected):
    from photoclass.runs.rundir import load_model

    hostile = copy_run(run, tmp_path)
    meta = json.loads((hostile / "model.json").read_text())
    (hostile / "model.json").write_text(json.dumps({**meta, **change}))
    assert expected.lower() in refused(load_model, hostile).lower()


def test_an_onnx_file_reading_tensors_outside_its_folder_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from photoclass.inference.engines.onnx import OnnxPredictor

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "24")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    model = helper.make_model(graph)
    for key, value in (
        ("photoclass.classes", '["a", "b"]'),
        ("photoclass.input", '{"size": 1, "mean": [0, 0, 0], "std": [1, 1, 1]}'),
    ):
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
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def prepare_cli(*args, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "photoclass.cli", "prepare", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def cached_pixels(out: Path, cache: Path, data: Path):
    import photoclass

    dataset = photoclass.prepare(data, cache_dir=cache, image_size=48, progress=False, pixel_cache="raw")
    return {r.path: dataset.images[i] for i, r in enumerate(dataset.usable)}


def test_two_processes_sharing_a_cache_neither_corrupt_nor_repeat_it(tmp_path):
    import sqlite3

    data, cache = make_flat(tmp_path / "data", per_class=60), tmp_path / "cache"
    procs = [
        prepare_cli(
            data,
            "--out",
            tmp_path / f"out{i}",
            "--cache-dir",
            cache,
            "--image-size",
            48,
            "--workers",
            1,
            "--keep-pixels",
            "--pixel-cache",
            "raw",
        )
        for i in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert (tmp_path / "out0" / "manifest.csv").read_bytes() == (tmp_path / "out1" / "manifest.csv").read_bytes()
    with sqlite3.connect(cache / "index.sqlite") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT pack) FROM photos").fetchone() == (180, 1)  # decoded once
    pixels = cached_pixels(tmp_path / "out0", cache, data)
    for path, array in list(pixels.items())[::17]:
        assert np.array_equal(array, decode_photo(data / path, size=48).to_array())


@pytest.mark.parametrize("form", ["raw", "jpeg"])
def test_an_interrupted_prepare_leaves_nothing_a_later_run_trusts(tmp_path, form):
    import signal
    import time

    data, cache = make_flat(tmp_path / "data", per_class=150), tmp_path / "cache"
    options = ["--image-size", 160, "--out", tmp_path / "o", "--keep-pixels", "--pixel-cache", form]
    proc = prepare_cli(data, "--cache-dir", cache, "--workers", 1, *options)
    deadline = time.time() + 120
    while time.time() < deadline and not list(cache.glob("packs/*/.*.tmp")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert list(cache.glob("packs/*/.*.tmp")), "the kill should land while a pack is being written"

    rerun = prepare_cli(data, "--cache-dir", cache, *options)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert not list(cache.glob("packs/*/.*.tmp"))  # the half-written pack was removed, not used
    import photoclass

    dataset = photoclass.prepare(data, cache_dir=cache, image_size=160, progress=False, pixel_cache=form)
    for i in range(0, len(dataset), 37):
        path = data / dataset.usable[i].path
        difference = np.abs(dataset.images[i].astype(int) - decode_photo(path, size=160).to_array()).mean()
        assert difference == 0 if form == "raw" else difference < 2


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path):
    import time

    target = Path("/sys/photoclass-test-out")  # sysfs refuses new files, even to root
    data = make_flat(tmp_path / "data", per_class=4)
    for command in (
        ["prepare", data, "--out", target],
        ["train", data, "--out", target, "--cache-dir", tmp_path / "c"],
    ):
        started = time.time()
        result = subprocess.run(
            [sys.executable, "-m", "photoclass.cli", *map(str, command)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"Cannot write to {target}" in result.stderr and "HINT" in result.stderr
        assert not (tmp_path / "c").exists()  # refused before the photos were even decoded
        assert time.time() - started < 30


def test_a_full_disk_is_refused_before_decoding(tmp_path, monkeypatch):
    import shutil as shutil_module

    import photoclass

    data = make_flat(tmp_path / "data", per_class=4)
    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage._replace(free=2**20))
    with pytest.raises(PhotoclassError, match="Not enough free space") as info:
        photoclass.prepare(data, out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    assert "1 MB free" in str(info.value)


@pytest.mark.slow
def test_a_kill_inside_a_checkpoint_write_resumes_to_the_same_result(tmp_path):
    """Two trials of benchmarks/crash_campaign.py: one mid-write, one at a random moment."""
    from crash_campaign import COMMAND, kill_and_resume, make_photos, same_result, train

    data, cache = make_photos(tmp_path / "data"), tmp_path / "cache"
    reference = train(data, "--out", tmp_path / "reference", "--cache-dir", cache, "--epochs", 4, *COMMAND)
    assert reference.wait(timeout=300) == 0
    for mid_write, name in ((True, "mid-write"), (False, "random")):
        outcome = kill_and_resume(data, tmp_path / name, cache, 4, mid_write=mid_write, delay=0.3, after_epochs=1)
        assert outcome["readable"] and outcome["resumed"], outcome
        assert outcome["leftover_after_resume"] == 0
        assert same_result(tmp_path / name, tmp_path / "reference")
