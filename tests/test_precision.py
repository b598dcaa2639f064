"""`--precision auto`: bf16 where the CPU has it natively, fp32 elsewhere, recorded in the run;
feature extraction and prediction in bf16 keep float32 outputs and fp32's answers."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import photoclass
from photoclass.core import device as devices
from photoclass.core.device import resolve_precision
from photoclass.inference.predictor import Predictor, open_predictor
from photoclass.inference.verify import run_photos
from photoclass.runs.rundir import RunDir
from photoclass.training.features import extract_features
from photoclass.data.loader import BatchLoader

from conftest import make_flat, train_tiny_run

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_on_a_cpu_with_native_bf16_and_only_where_measured(monkeypatch, native):
    monkeypatch.setattr(devices, "native_bf16", lambda: native)
    bf16 = "bf16" if native else "fp32"
    assert resolve_precision("auto", CPU) == resolve_precision("auto", CPU, stage="train") == bf16
    assert resolve_precision("auto", CPU, stage="features") == "fp32"  # bf16 features moved answers
    assert resolve_precision("auto", CPU, stage="predict", trained="bf16") == bf16  # as the run was tested
    assert resolve_precision("auto", CPU, stage="predict", trained="fp32") == "fp32"
    assert resolve_precision("auto", CPU, stage="predict") == "fp32"
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU, stage="features") == "bf16"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    with pytest.raises(photoclass.PhotoclassError, match="precision"):
        resolve_precision("int4", CPU)


def test_native_bf16_reads_this_cpu_unless_told_no(monkeypatch):
    assert not devices.native_bf16()  # conftest says no
    monkeypatch.delenv("PHOTOCLASS_NATIVE_BF16")
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = cpuinfo.read_text().split()
    assert devices.native_bf16() == any(f in flags for f in ("amx_tile", "amx_bf16", "avx512_bf16"))


def test_bf16_features_are_float32_and_point_the_same_way():
    torch.manual_seed(0)
    encode = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    ).eval()
    images = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    loader = BatchLoader(images, np.zeros(10, int), np.arange(10), batch_size=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    fp32 = extract_features(encode, loader, progress=False)
    bf16 = extract_features(encode, loader, progress=False, precision="bf16")
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape == (10, 8)
    assert not torch.equal(fp32, bf16)  # the arithmetic really changed
    assert torch.nn.functional.cosine_similarity(fp32, bf16).min() > 0.99


@pytest.mark.trains
def test_the_run_records_the_precision_auto_chose_and_predicts_in_it(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "native_bf16", lambda: True)
    run = train_tiny_run(tmp_path, epochs=1, track=False)
    assert json.loads((run / "config.json").read_text())["train"]["precision"] == "bf16"
    assert Predictor(run).precision == "bf16" and Predictor(run, precision="fp32").precision == "fp32"
    monkeypatch.setattr(devices, "native_bf16", lambda: False)
    assert Predictor(run).precision == "fp32"  # a CPU that only emulates bf16
    other = train_tiny_run(tmp_path, name="other", epochs=1, track=False)
    assert json.loads((other / "config.json").read_text())["train"]["precision"] == "fp32"


@pytest.mark.trains
def test_bf16_prediction_gives_fp32s_classes(tmp_path):
    run = train_tiny_run(tmp_path, per_class=12, epochs=3, precision="fp32", track=False)
    photos = run_photos(RunDir(run), 32)
    fp32 = Predictor(run, device="cpu", precision="fp32")
    bf16 = Predictor(run, device="cpu", precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    want, got = fp32.outputs(photos.pixels), bf16.outputs(photos.pixels)
    assert got[0].dtype == np.float32 and not np.array_equal(want[0], got[0])
    assert (want[0].argmax(1) == got[0].argmax(1)).mean() >= 0.9
    assert np.abs(want[1] - got[1]).max() < 0.05  # the 'none of these' distances barely move
    assert open_predictor(run, precision="bf16").precision == "bf16"


@pytest.mark.trains
def test_features_strategy_in_bf16_keeps_fp32s_test_answers(tmp_path):
    """The pretrained backbone's features in bf16, the head fitted on them as in fp32."""
    data = make_flat(tmp_path / "data", per_class=10)
    options = dict(
        model="efficientnet-lite0",
        image_size=64,
        threads=1,
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    runs = {p: photoclass.train(data, out=tmp_path / p, precision=p, **options) for p in ("fp32", "bf16")}
    photos = run_photos(RunDir(runs["fp32"].run.path), 64)
    labels = {
        p: Predictor(r.run.path, device="cpu", precision=p).probabilities(photos.pixels).argmax(1)
        for p, r in runs.items()
    }
    assert (labels["fp32"] == labels["bf16"]).mean() >= 0.8
    assert abs(runs["fp32"].test["accuracy"] - runs["bf16"].test["accuracy"]) <= 2 / len(photos.labels) + 1e-9
    for name, result in runs.items():
        assert json.loads((result.run.path / "config.json").read_text())["train"]["precision"] == name


@pytest.mark.trains
def test_auto_keeps_cached_features_in_fp32_even_with_native_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "native_bf16", lambda: True)
    data = make_flat(tmp_path / "data", per_class=6)
    result = photoclass.train(
        data,
        out=tmp_path / "run",
        model="efficientnet-lite0",
        image_size=64,
        threads=1,
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    config = json.loads((result.run.path / "config.json").read_text())["train"]
    assert (config["strategy"], config["precision"]) == ("features", "fp32")
    assert Predictor(result.run.path).precision == "fp32"
