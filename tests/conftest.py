"""Tiny synthetic photo folders, made fresh in tmp_path for each test."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Runs trained by tests are not logged to MLflow unless a test asks (subprocesses inherit this).
os.environ["PHOTOCLASS_TRACKING"] = "off"
# Every CPU runs the tests in fp32, so their figures are alike on AVX2 and AMX machines;
# tests/test_precision.py switches bf16 on where it tests it.
os.environ["PHOTOCLASS_NATIVE_BF16"] = "0"
# The suite decodes into a cache of its own, removed when it ends, never into the user's
# ~/.cache/photoclass (subprocesses inherit this too).
TEST_CACHE = Path(tempfile.mkdtemp(prefix="photoclass-test-cache-"))
os.environ["PHOTOCLASS_CACHE"] = str(TEST_CACHE)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


CLASSES = ("cloudy", "rain", "shine")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
_no_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed"
)


def needs_chromium(test):
    """Marks a test `browser` and skips it where Debian's chromium is missing."""
    return pytest.mark.browser(_no_chromium(test))


@contextlib.contextmanager
def headless_chromium(profile: Path, *, width: int = 900, height: int = 900):
    """Selenium driving Debian's chromium, headless, with the browser's console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_AVOID_STATS"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


WEATHER = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather"


def synthetic_photo(seed: int, size=(96, 64), cls: int = 0) -> Image.Image:
    """A distinct 'photo': a class-tinted gradient with random rectangles."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.zeros((h, w, 3), dtype=np.float64)
    base[..., cls % 3] = 120 + 100 * x / w
    base[..., (cls + 1) % 3] = 60 + 80 * y / h
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 8), rng.integers(0, h - 8)
        x1, y1 = x0 + rng.integers(4, w // 2), y0 + rng.integers(4, h // 2)
        base[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    base += rng.normal(0, 6, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def save(image: Image.Image, path: Path, fmt: str = "JPEG", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **kw)
    return path


def make_flat(root: Path, per_class: int = 6, classes=CLASSES, start_seed: int = 0) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            save(synthetic_photo(start_seed + 1000 * c + i, cls=c), root / f"{name}{i + 1}.jpg")
    return root


def make_folders(root: Path, per_class: int = 6, classes=CLASSES) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            save(synthetic_photo(1000 * c + i, cls=c), root / name / f"img_{i}.jpg")
    return root


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg_bytes(image: Image.Image, **kw) -> bytes:
    return encoded(image, "JPEG", **kw)


def sha256_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def flat_folder(tmp_path) -> Path:
    return make_flat(tmp_path / "flat")


@pytest.fixture
def weather_dir() -> Path:
    if not WEATHER.is_dir():
        pytest.skip(f"the weather photos are not at {WEATHER}")
    return WEATHER


def make_corpus(root: Path) -> dict[str, tuple[str, str]]:
    """Odd and broken files, named `<label><n>.<ext>`. Returns name -> (status, reason part)."""
    root.mkdir(parents=True, exist_ok=True)
    photo = synthetic_photo(7, size=(120, 80))
    expected: dict[str, tuple[str, str]] = {}

    def add(name: str, data: bytes, status: str, reason: str) -> None:
        (root / name).write_bytes(data)
        expected[name] = (status, reason)

    good = jpeg_bytes(photo, quality=90)
    add("odd1.jpg", good[: len(good) // 2], "skipped", "truncated")
    add("odd2.jpg", b"", "skipped", "empty file")
    add("odd3.jpg", b"this is a text file, not a photo\n" * 5, "skipped", "text, not an image")
    add("odd4.jpg", encoded(photo, "GIF"), "ok", "GIF named .jpg")
    add("odd5.jpg", encoded(photo, "PNG"), "ok", "PNG named .jpg")
    add("odd6.jpg", encoded(photo, "WEBP"), "ok", "WEBP named .jpg")
    add("odd7.jpg", jpeg_bytes(photo.convert("L")), "ok", "grayscale")
    add("odd8.png", encoded(photo.convert("P", palette=Image.ADAPTIVE), "PNG"), "ok", "palette")
    rgba = photo.convert("RGBA")
    rgba.putalpha(0)
    add("odd9.png", encoded(rgba, "PNG"), "ok", "alpha composited on white")
    add("odd10.jpg", jpeg_bytes(photo.convert("CMYK")), "ok", "CMYK")
    ramp = (np.tile(np.arange(256, dtype=np.uint32), (32, 1)) * 257).astype(np.uint16)
    add("odd11.png", encoded(Image.fromarray(ramp), "PNG"), "ok", "16-bit")
    exif = Image.Exif()
    exif[0x0112] = 6
    add("odd12.jpg", jpeg_bytes(photo, exif=exif.tobytes()), "ok", "EXIF orientation 6")
    add("odd13.jpg", jpeg_bytes(Image.new("RGB", (1, 1), "red")), "skipped", "too small")
    add("odd14.png", png_declaring(20_000, 20_000), "skipped", "decompression bomb")
    add("odd15_ünïcödé_☀.jpg", jpeg_bytes(synthetic_photo(8)), "ok", "")
    frames = [synthetic_photo(20 + i, size=(64, 48)) for i in range(3)]
    add(
        "odd16.gif",
        encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "ok",
        "animated (3 frames), first frame used",
    )
    add("odd17.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 100, "skipped", "")
    return expected


def train_tiny_run(base: Path, *, name: str = "run", per_class: int = 10, epochs: int = 2, **options) -> Path:
    """A quickly trained compact-cnn run (32 px) on synthetic photos (base/data), at base/NAME."""
    import photoclass

    data = base / "data" if (base / "data").is_dir() else make_flat(base / "data", per_class=per_class)
    options = {"model": "compact-cnn", "image_size": 32, "epochs": epochs, "threads": 1, **options}
    photoclass.train(data, out=base / name, cache_dir=base / "cache", verbose=False, progress=False, **options)
    return base / name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run, *extra, env=None, command="serve", timeout=60):
    """`photoclass COMMAND RUN --port P EXTRA...` (serve, review, or label with DATA as RUN) as a
    process; (the process, its base URL) once /health answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "photoclass.cli", command, str(run), "--port", str(port), *map(str, extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read()) from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def request(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
