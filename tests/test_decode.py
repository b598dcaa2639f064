import io
import time

import numpy as np
import pytest
from PIL import Image

from photoclass.data.decode import DecodeError, decode_photo

from conftest import make_corpus, png_declaring, synthetic_photo


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


def test_every_corpus_file_is_converted_or_skipped_with_a_reason(corpus):
    root, expected = corpus
    for name, (status, reason) in expected.items():
        try:
            photo = decode_photo(root / name, size=64)
        except DecodeError as e:
            assert status == "skipped", f"{name} was skipped: {e.reason}"
            assert reason in e.reason, f"{name}: {e.reason!r}"
            assert "\n" not in e.reason
            continue
        assert status == "ok", f"{name} was read but should be skipped"
        assert reason in photo.note, f"{name}: {photo.note!r}"
        pixels = photo.to_array()
        assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8


def test_sixteen_bit_ramp_keeps_256_grey_levels(corpus):
    root, _ = corpus
    pixels = decode_photo(root / "odd11.png").to_array()
    assert len(np.unique(pixels[..., 0])) >= 256
    assert (pixels[..., 0] == pixels[..., 1]).all()
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255


def test_transparent_rgba_lands_on_white(corpus):
    root, _ = corpus
    pixels = decode_photo(root / "odd9.png").to_array()
    assert (pixels == 255).all()


def test_half_transparent_red_blends_with_white():
    image = Image.new("RGBA", (32, 32), (255, 0, 0, 128))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    pixels = decode_photo(buf.getvalue()).to_array()
    assert pixels[0, 0, 0] == 255 and 120 <= pixels[0, 0, 1] <= 135


def test_exif_orientation_6_comes_out_upright(tmp_path):
    # Stored sideways: a 40 wide x 80 high buffer whose red stripe is on its left side.
    # Orientation 6 means "rotate 90 degrees clockwise to display": the stripe goes on top.
    stored = np.zeros((80, 40, 3), dtype=np.uint8)
    stored[:, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    photo = decode_photo(path)
    pixels = photo.to_array()
    assert (photo.width, photo.height) == (80, 40)
    assert pixels.shape == (40, 80, 3)
    assert pixels[:8, :, 0].mean() > 200 and pixels[-8:, :, 0].mean() < 50
    assert "EXIF orientation 6" in photo.note


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "lime", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    photo = decode_photo(path)
    assert tuple(photo.to_array()[16, 16]) == (255, 0, 0)
    assert "animated (3 frames), first frame used" in photo.note


def test_declared_20000_square_is_refused_fast_without_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(20_000, 20_000))
    started = time.perf_counter()
    with pytest.raises(
        DecodeError, match=r"decompression bomb: declares (20000x20000 = )?400 MP, over the limit of 120 MP"
    ):
        decode_photo(path)
    assert time.perf_counter() - started < 1.0


def test_max_pixels_is_checked_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_declaring(3000, 2000))
    with pytest.raises(DecodeError, match=r"declares 3000x2000 = 6 MP, over the limit of 5 MP"):
        decode_photo(path, max_pixels=5_000_000)


def test_only_allow_listed_formats_are_opened(tmp_path):
    path = tmp_path / "photo.jpg"
    synthetic_photo(1).save(path, format="PPM")  # Pillow reads PPM, but it is not allowed
    with pytest.raises(DecodeError, match=r"allowed formats: JPEG, PNG"):
        decode_photo(path)


def test_heic_gets_a_helpful_reason(tmp_path):
    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 64)
    with pytest.raises(DecodeError, match="HEIC photo, which is not supported; convert it to JPEG"):
        decode_photo(path)


def test_jpeg_draft_decode_matches_full_decode(tmp_path):
    big = synthetic_photo(3, size=(1600, 1200)).resize((1600, 1200))
    path = tmp_path / "big.jpg"
    big.save(path, quality=95)
    fast = decode_photo(path, size=64).to_array().astype(int)
    slow = np.asarray(decode_photo(path).image.resize((64, 64), Image.BILINEAR)).astype(int)
    assert np.abs(fast - slow).mean() < 4


def test_bytes_and_file_objects_are_accepted():
    data = io.BytesIO()
    synthetic_photo(2).save(data, "PNG")
    from_bytes = decode_photo(data.getvalue(), size=32).to_array()
    data.seek(0)
    from_file = decode_photo(data, size=32).to_array()
    assert np.array_equal(from_bytes, from_file)
