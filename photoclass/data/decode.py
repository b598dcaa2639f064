"""The one safe way to open a photo.

Every path that turns bytes into pixels (ingest, prediction, serving) goes through
`decode_photo`: the real format is sniffed, only allow-listed formats are opened, the
declared size is checked before any pixel is decoded, EXIF orientation is applied and
every mode becomes 8-bit RGB. A file that cannot be read raises `DecodeError` with a
one-line reason; the file itself is only ever read.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG covers MPO
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
SUFFIX_FORMATS = {  # the format a suffix promises, to notice files named wrongly
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

Source = Union[str, os.PathLike, bytes, BinaryIO]


class DecodeError(Exception):
    """A photo that cannot be used; `reason` is one line for the report.

    `kind` says which: "empty", "format" (not an allowed image format), "bomb" (too many
    pixels) or "unreadable" (damaged, too small, unconvertible).
    """

    def __init__(self, reason: str, kind: str = "unreadable"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class DecodedPhoto:
    image: Image.Image  # RGB, upright; resized to (size, size) when a size was asked for
    width: int  # original size, after EXIF orientation
    height: int
    format: str
    note: str  # the conversions made, "" when none

    def to_array(self) -> np.ndarray:
        return np.asarray(self.image, dtype=np.uint8)  # (H, W, 3)


def decode_photo(
    source: Source,
    *,
    size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
    name: str | None = None,
) -> DecodedPhoto:
    """Open `source` (a path, bytes or a binary file) as an upright RGB image.

    With `size`, the result is resized to `size` x `size` (JPEGs are decoded at a reduced
    scale first, which is several times faster for large photos). Any file either decodes
    or raises DecodeError with a one-line reason.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on corrupt EXIF and the like
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(source, size, max_pixels, min_side, name)
    except DecodeError:
        raise
    except OSError as e:  # a path that cannot be read
        raise DecodeError(f"cannot read the file: {_short(e)}") from None
    except Exception as e:  # Pillow's parsers meet hostile bytes with many kinds of exception (fuzzed)
        raise DecodeError(f"unreadable image ({type(e).__name__}: {_short(e)})") from None


def _decode(source: Source, size: int | None, max_pixels: int, min_side: int, name: str | None) -> DecodedPhoto:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise DecodeError("empty file (0 bytes)", "empty")
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        name = name or os.fspath(source)
        if os.path.getsize(source) == 0:
            raise DecodeError("empty file (0 bytes)", "empty")
    notes: list[str] = []
    try:
        im = Image.open(source, formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise DecodeError(_describe_unknown(source), "format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own guard fired first; its message holds the pixel count only
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise DecodeError(_bomb_reason(int(pixels.group(1)) if pixels else None, max_pixels), "bomb") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DecodeError(f"unreadable image: {_short(e)}") from None
    with im:
        fmt = im.format or "unknown"
        width, height = im.size
        if width * height > max_pixels:
            raise DecodeError(_bomb_reason(width * height, max_pixels, (width, height)), "bomb")
        if name:
            promised = SUFFIX_FORMATS.get(Path(name).suffix.lower())
            if promised and promised != fmt and {promised, fmt} != {"JPEG", "MPO"}:
                notes.append(f"{fmt} named {Path(name).suffix}")
        try:
            frames = getattr(im, "n_frames", 1)  # seeks through the file
        except Exception:  # a damaged later frame; the first may still be fine
            frames = None
            im.seek(0)
        if frames is None or frames > 1:
            notes.append(f"animated ({frames or 'unreadable'} frames), first frame used")
        if size is not None and fmt in ("JPEG", "MPO"):
            im.draft(None, (size, size))  # DCT-domain downscale: 2-8x faster decode
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise DecodeError(f"unreadable {fmt}: {_short(e)}") from None
        except Image.DecompressionBombError:
            raise DecodeError(_bomb_reason(width * height, max_pixels, (width, height)), "bomb") from None
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation not in (1, None):
            im = ImageOps.exif_transpose(im)
            notes.append(f"EXIF orientation {orientation} applied")
            if orientation in (5, 6, 7, 8):
                width, height = height, width
        if min(width, height) < min_side:
            raise DecodeError(
                f"too small ({width}x{height} pixels); photos need at least {min_side} px on each side (min_side)"
            )
        rgb, note = _to_rgb(im)
        if note:
            notes.append(note)
        if size is not None and rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.BILINEAR)
        elif rgb is im:
            rgb = im.copy()  # detach from the file before it is closed
    return DecodedPhoto(rgb, width, height, fmt, "; ".join(notes))


def _to_rgb(im: Image.Image) -> tuple[Image.Image, str]:
    """Convert any mode to 8-bit RGB; alpha lands on white. Returns (image, note)."""
    mode = im.mode
    if mode == "RGB":
        return im, ""
    if mode in _SIXTEEN_BIT_MODES or mode == "F":
        grey = np.asarray(im).astype(np.float64)
        top = 1.0 if mode == "F" and grey.max() <= 1.0 else (255.0 if mode == "F" else 65535.0)
        grey8 = np.clip(np.rint(grey * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey8).convert("RGB"), f"{_bits(mode)} grey scaled to 8-bit"
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "P+alpha"
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        note = "alpha composited on white" if rgba.getextrema()[3][0] < 255 else ""
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), note
    note = {"L": "grayscale", "1": "1-bit", "P": "palette", "CMYK": "CMYK"}.get(mode, mode)
    try:
        return im.convert("RGB"), f"{note} converted to RGB"
    except (ValueError, OSError) as e:
        raise DecodeError(f"cannot convert mode {mode} to RGB: {_short(e)}") from None


def _bits(mode: str) -> str:
    return "32-bit float" if mode == "F" else "16-bit"


def _bomb_reason(pixels: int | None, max_pixels: int, size: tuple[int, int] | None = None) -> str:
    dims = f"{size[0]}x{size[1]} = " if size else ""
    declared = f"declares {dims}{pixels / 1e6:.0f} MP, " if pixels else ""
    return (
        f"refused as a possible decompression bomb: {declared}over the limit of {max_pixels / 1e6:.0f} MP (max_pixels)"
    )


def _describe_unknown(source) -> str:
    allowed = ", ".join(ALLOWED_FORMATS)
    try:
        source.seek(0)
        head = source.read(32)
    except AttributeError:
        with open(source, "rb") as f:
            head = f.read(32)
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        what = "a HEIC photo, which is not supported; convert it to JPEG"
    elif head[4:12] == b"ftypavif":
        what = "an AVIF image, which is not supported; convert it to JPEG"
    elif head[:4] == b"%PDF":
        what = "a PDF document"
    elif head[:2] == b"\xff\xd8":
        what = "a JPEG too damaged to read"
    elif head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        what = "text, not an image"
    else:
        what = "not an image format photoclass reads"
    return f"{what} (allowed formats: {allowed})"


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160]
