"""The compact (jpeg) pixel cache: what strategies that read pixels every epoch keep."""

import numpy as np
import torch

import photoclass
from photoclass.data import loader as loader_module
from photoclass.data import prepare as prepare_module
from photoclass.data.loader import BatchLoader

from conftest import make_flat


def test_the_jpeg_cache_is_smaller_close_to_raw_and_test_photos_are_read_exactly(tmp_path):
    photos = make_flat(tmp_path / "flat", per_class=6)
    raw = photoclass.prepare(photos, image_size=96, cache_dir=tmp_path / "raw", progress=False, pixel_cache="raw")
    jpeg = photoclass.prepare(photos, image_size=96, cache_dir=tmp_path / "jpeg", progress=False, pixel_cache="jpeg")
    assert jpeg.summary["cache"]["pixels"] == "kept (jpeg)" and raw.summary["cache"]["pixels"] == "kept (raw)"
    packs = list((tmp_path / "jpeg").rglob("*.jpgs"))
    assert packs and all(p.with_name(p.name + ".idx").exists() for p in packs)
    raw_bytes = sum(p.stat().st_size for p in (tmp_path / "raw").rglob("*.u8"))
    assert sum(p.stat().st_size for p in packs) < raw_bytes / 3

    every = np.arange(len(raw))
    a, b = raw.images[every], jpeg.images[every]
    difference = np.abs(a.astype(int) - b).mean()
    assert 0 < difference < 2  # lossy, by under 2 levels in 255
    assert np.array_equal(jpeg.images[every], b)  # read again: the same pixels
    assert np.array_equal(jpeg.images[3], b[3])
    assert np.array_equal(jpeg.exact_images()[every], a) and raw.exact_images() is raw.images

    again = photoclass.prepare(photos, image_size=96, cache_dir=tmp_path / "jpeg", progress=False, pixel_cache="jpeg")
    assert again.summary["cache"]["decoded"] == 0 and np.array_equal(again.images[every], b)


def test_a_loader_over_the_jpeg_cache_gives_the_same_batches_mapped_or_in_ram(tmp_path, monkeypatch):
    photos = make_flat(tmp_path / "flat", per_class=6)
    data = photoclass.prepare(photos, image_size=64, cache_dir=tmp_path / "c", progress=False, pixel_cache="jpeg")
    train = data.indices("train")

    def epoch():
        loader = BatchLoader(
            data.images, data.labels, train, batch_size=4, mean=(0.5,) * 3, std=(0.5,) * 3, shuffle=True
        )
        return [(x.clone(), y.clone()) for x, y in loader.batches(seed=3)]

    in_ram = epoch()
    monkeypatch.setattr(loader_module, "PRELOAD_LIMIT_BYTES", 0)  # read a batch ahead from the packs
    read = epoch()
    assert len(read) == len(in_ram) > 1
    assert all(torch.equal(x, x2) and torch.equal(y, y2) for (x, y), (x2, y2) in zip(in_ram, read))


def test_auto_keeps_raw_pixels_until_they_would_pass_the_limit_then_jpeg(tmp_path, monkeypatch):
    photos = make_flat(tmp_path / "flat", per_class=6)  # 18 photos
    small = photoclass.prepare(photos, image_size=32, cache_dir=tmp_path / "c", progress=False)
    assert small.summary["cache"]["pixels"] == "kept (raw)" and not small.images.lossy
    monkeypatch.setattr(prepare_module, "RAW_CACHE_LIMIT", 18 * 32 * 32 * 3 - 1)
    large = photoclass.prepare(photos, image_size=32, cache_dir=tmp_path / "c", progress=False)
    assert large.summary["cache"]["pixels"] == "kept (jpeg)" and large.images.lossy


def test_image_arrays_stay_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "RAW_CACHE_LIMIT", 0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    np.savez(tmp_path / "digits.npz", x=x, y=np.arange(40) % 2)
    data = photoclass.prepare(tmp_path / "digits.npz", image_size=28, cache_dir=tmp_path / "c", progress=False)
    assert data.summary["cache"]["pixels"] == "kept (raw)"
    assert np.array_equal(data.images[np.arange(40)][..., 0], x[..., 0])
