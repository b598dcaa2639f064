"""Cached-feature training without a pixel cache: photos decoded straight into the backbone,
their features kept for the next run, and the head's cost in proportion to the photos."""

import numpy as np
import pytest
import torch

import photoclass
from photoclass.models import create_model
from photoclass.training import features as features_module
from photoclass.training import probe
from photoclass.training.features import feature_loaders

from conftest import make_flat

pytestmark = pytest.mark.trains


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_flat(tmp_path_factory.mktemp("stream") / "flat", per_class=8)


@pytest.fixture(scope="module")
def encoder():
    net = create_model("efficientnet-lite0", 3).eval()
    return net, net.input_spec


def encode_all(net, dataset, spec, **options):
    encode, _ = net.split_for_training(0)
    loaders = feature_loaders(encode, dataset, spec, batch_size=8, flip_augment=False, progress=False, **options)
    return {split: loaders[split].features for split in ("train_eval", "val", "test")}


def test_streamed_photos_give_the_features_of_the_pixel_cache_and_keep_no_pixels(photos, encoder, tmp_path):
    net, spec = encoder
    kept = photoclass.prepare(
        photos, image_size=spec.size, cache_dir=tmp_path / "kept", progress=False, pixel_cache="raw"
    )
    streamed = photoclass.prepare(
        photos, image_size=spec.size, cache_dir=tmp_path / "streamed", progress=False, pixels=False
    )
    assert streamed.summary["cache"]["pixels"] == "decoded when read"
    assert not list((tmp_path / "streamed").rglob("*.u8")) and list((tmp_path / "kept").rglob("*.u8"))
    assert streamed.summary["duplicates"] == kept.summary["duplicates"]
    assert (streamed.splits == kept.splits).all()
    assert np.array_equal(streamed.images[np.arange(5)], kept.images[np.arange(5)])
    a = encode_all(net, kept, spec, reuse=False)
    b = encode_all(net, streamed, spec, reuse=False)
    for split in a:
        assert len(a[split]) and torch.equal(a[split], b[split])


def test_a_second_run_reuses_the_features_and_a_pixel_run_decodes_again(photos, encoder, tmp_path, monkeypatch):
    net, spec = encoder
    dataset = photoclass.prepare(photos, image_size=spec.size, cache_dir=tmp_path / "c", progress=False, pixels=False)
    encoded = []
    real = features_module._encode

    def counting(encode, data, spec_, indices, **options):
        encoded.append(len(indices))
        return real(encode, data, spec_, indices, **options)

    monkeypatch.setattr(features_module, "_encode", counting)
    first = encode_all(net, dataset, spec)
    assert sum(encoded) == len(dataset)
    encoded.clear()
    other_split = photoclass.prepare(
        photos, image_size=spec.size, cache_dir=tmp_path / "c", progress=False, pixels=False, seed=5
    )
    second = encode_all(net, other_split, spec)
    assert sum(encoded) == 0  # every photo's features came from the cache
    by_key = {
        k: f
        for split in first
        for k, f in zip(
            [dataset.keys[i] for i in dataset.indices("train" if split == "train_eval" else split)], first[split]
        )
    }
    for split in second:
        indices = other_split.indices("train" if split == "train_eval" else split)
        for i, row in zip(indices, second[split]):
            assert torch.equal(row, by_key[other_split.keys[i]])
    encode_all(net, dataset, spec, precision="bf16")  # another arithmetic is another encoder
    assert sum(encoded) == len(dataset)
    pixels = photoclass.prepare(photos, image_size=spec.size, cache_dir=tmp_path / "c", progress=False)
    assert pixels.summary["cache"]["decoded"] == len(dataset)  # fingerprints alone do not count as decoded


def test_the_heads_cross_validation_uses_a_grouped_share_past_the_limit(monkeypatch):
    rng = np.random.default_rng(0)
    n = 600
    y = torch.as_tensor(rng.integers(0, 3, n))
    x = torch.randn(n, 8) + torch.nn.functional.one_hot(y, 3).float().repeat(1, 3)[:, :8] * 2
    groups = np.arange(n) // 2  # pairs of duplicates
    monkeypatch.setattr(probe, "CV_LIMIT", 200)
    head = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(8, 3))
    found = probe.fit_linear_probe(head, x, y, groups, seed=0)
    assert found["photos"] == n and 180 <= found["cv_photos"] <= 220  # one of 3 folds: a third, give or take
    accuracy = float((head(x).argmax(1) == y).float().mean())
    assert accuracy > 0.8  # the final fit uses every photo


def test_auto_keeps_the_pixels_of_few_photos_and_streams_many(photos, tmp_path, monkeypatch):
    from photoclass.data import prepare as prepare_module

    few = photoclass.prepare(photos, image_size=64, cache_dir=tmp_path / "few", progress=False, pixels="auto")
    assert few.summary["cache"]["pixels"].startswith("kept") and list((tmp_path / "few").rglob("*.u8"))
    monkeypatch.setattr(prepare_module, "KEEP_PIXELS_LIMIT", len(few) * 64 * 64 * 3 - 1)  # one byte short
    many = photoclass.prepare(photos, image_size=64, cache_dir=tmp_path / "many", progress=False, pixels="auto")
    assert many.summary["cache"]["pixels"] == "decoded when read" and not list((tmp_path / "many").rglob("*.u8"))
    with pytest.raises(ValueError, match="pixels"):
        photoclass.prepare(photos, image_size=64, cache_dir=tmp_path / "bad", progress=False, pixels="yes")
