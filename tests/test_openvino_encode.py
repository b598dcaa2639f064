"""Frozen encoders compiled by OpenVINO: PyTorch's features, chosen on CPUs for bf16 (fp32
when asked), and PyTorch whenever it is asked for or OpenVINO cannot convert the module."""

import numpy as np
import pytest
import torch

import photoclass
from photoclass.data.loader import BatchLoader
from photoclass.models.registry import create_model
from photoclass.training import openvino_encode
from photoclass.training.features import extract_features, lowered

from conftest import make_flat

pytest.importorskip("openvino", reason="the openvino extra is not installed")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    base = tmp_path_factory.mktemp("encode")
    return photoclass.prepare(
        make_flat(base / "data", per_class=6), image_size=64, cache_dir=base / "cache", progress=False
    )


def encoder():
    return create_model("efficientnet-lite0-ms", num_classes=3).eval().split_for_training(0)[0]


def features(encode, photos, precision="fp32"):
    spec = create_model("efficientnet-lite0-ms", num_classes=3).input_spec
    loader = BatchLoader(
        photos.images, photos.labels, np.arange(len(photos)), batch_size=8, mean=spec.mean, std=spec.std
    )
    return extract_features(encode, loader, precision=precision, progress=False)


def test_openvino_gives_pytorchs_features_on_a_cpu(photos, monkeypatch):
    monkeypatch.delenv("PHOTOCLASS_ENCODER", raising=False)
    assert openvino_encode.openvino_encoder(encoder(), "fp32", torch.device("cpu")) is None  # fp32: PyTorch's own
    monkeypatch.setenv("PHOTOCLASS_ENCODER", "openvino")
    fast = lowered(encoder(), "fp32")
    want = features(encoder(), photos)  # the bound method itself: PyTorch
    got = features(fast, photos)
    assert fast.engine == "openvino" and got.dtype == torch.float32 and got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert torch.equal(features(fast, photos), got)  # the same photos, the same features


def test_bf16_through_openvino_stays_close_and_float32(photos, monkeypatch):
    if "BF16" not in __import__("openvino").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no native bf16")
    monkeypatch.delenv("PHOTOCLASS_ENCODER", raising=False)
    got, want = features(lowered(encoder(), "bf16"), photos, "bf16"), features(encoder(), photos)
    assert got.dtype == torch.float32 and not torch.equal(got, want)  # computed in bf16, not traced as fp32
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.98


def test_pytorch_when_asked_off_the_cpu_or_when_conversion_fails(photos, monkeypatch):
    monkeypatch.setenv("PHOTOCLASS_ENCODER", "torch")
    assert openvino_encode.openvino_encoder(encoder(), "bf16", torch.device("cpu")) is None
    monkeypatch.setenv("PHOTOCLASS_ENCODER", "openvino")
    assert openvino_encode.openvino_encoder(encoder(), "bf16", torch.device("meta")) is None
    assert openvino_encode.openvino_encoder(encoder(), "fp16", torch.device("cpu")) is None
    monkeypatch.setenv("PHOTOCLASS_ENCODER", "tensorrt")
    with pytest.raises(photoclass.PhotoclassError, match="PHOTOCLASS_ENCODER='tensorrt'.*auto, torch or openvino"):
        lowered(encoder(), "fp32")
    monkeypatch.setenv("PHOTOCLASS_ENCODER", "openvino")

    def refuse(*args, **kwargs):
        raise RuntimeError("no such operation")

    monkeypatch.setattr("openvino.convert_model", refuse)
    fallback = lowered(encoder(), "fp32")
    assert torch.equal(features(fallback, photos), features(encoder(), photos)) and fallback.engine == "torch"
    in_bf16 = lowered(encoder(), "bf16")  # PyTorch again, its weights in bf16
    got = features(in_bf16, photos, "bf16")
    assert torch.nn.functional.cosine_similarity(got, features(encoder(), photos)).min() > 0.98
    assert in_bf16.engine == "torch" and in_bf16.encode.__self__.body.conv_stem.weight.dtype == torch.bfloat16


def test_a_bf16_run_says_openvino_made_its_features(tmp_path, monkeypatch):
    import json

    monkeypatch.delenv("PHOTOCLASS_ENCODER", raising=False)
    data = make_flat(tmp_path / "data", per_class=6)
    photoclass.train(
        data,
        out=tmp_path / "run",
        model="efficientnet-lite0-ms",
        precision="bf16",
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    assert json.loads((tmp_path / "run" / "test.json").read_text())["training"]["features_by"] == "openvino"
