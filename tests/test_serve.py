"""The real HTTP server, started as `photoclass serve` on a free port."""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import (
    headless_chromium,
    jpeg_bytes,
    needs_chromium,
    png_declaring,
    request,
    start_server,
    synthetic_photo,
    train_tiny_run,
)

pytestmark = pytest.mark.trains  # each test trains at least one small model
pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (runs are served through it)")


def upload(base, content: bytes, filename="photo.jpg", content_type="image/jpeg"):
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, payload = request(f"{base}/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return status, json.loads(payload)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(trained_run):
    proc, url = start_server(trained_run, "--max-upload-mb", 1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_health_model_and_page(server):
    assert json.loads(request(f"{server}/health")[1])["status"] == "ok"
    info = json.loads(request(f"{server}/model")[1])
    assert info["classes"] == ["cloudy", "rain", "shine"] and info["input_size"] == 32
    assert info["engine"] == "onnxruntime"  # a run is served through ONNX Runtime by default
    assert 0 <= info["test"]["accuracy"] <= 1
    status, page = request(f"{server}/")
    assert status == 200 and b"Drop a photo here" in page


def test_a_good_photo_gets_ranked_classes(server):
    status, result = upload(server, jpeg_bytes(synthetic_photo(3, cls=1)))
    assert status == 200
    assert result["label"] == result["top"][0]["label"] and len(result["top"]) == 3
    assert abs(sum(t["probability"] for t in result["top"]) - 1) < 1e-3


@pytest.mark.parametrize(
    "content, filename, status, message",
    [
        (b"", "empty.jpg", 400, "empty"),
        (b"hello, not a photo", "photo.jpg", 415, "text, not an image"),
        (b"\0\0\0\x18ftypheic" + b"\0" * 64, "IMG_1.HEIC", 415, "HEIC"),
        (png_declaring(20_000, 20_000), "bomb.png", 422, "decompression bomb"),
        (jpeg_bytes(synthetic_photo(4))[:400], "cut.jpg", 422, "unreadable"),
        (b"\xff\xd8" + b"\0" * (2 * 2**20), "huge.jpg", 413, "over the limit"),
    ],
)
def test_bad_uploads_get_the_fitting_status_and_a_json_error(server, content, filename, status, message):
    got, result = upload(server, content, filename)
    assert got == status and message in result["error"]


def test_the_content_type_is_not_trusted(server):
    status, result = upload(server, b"GIF89a not really", "x.gif", content_type="image/gif")
    assert status == 415


def test_malformed_requests_are_400_not_500(server):
    status, payload = request(f"{server}/predict", b"garbage", {"Content-Type": "multipart/form-data; boundary=zz"})
    assert status == 400 and "error" in json.loads(payload)
    boundary = "b1"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--{boundary}--\r\n'.encode()
    status, payload = request(f"{server}/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert (
        status == 400 and "named 'file'" in json.loads(payload)["error"] and "'other'" in json.loads(payload)["error"]
    )
    status, payload = request(f"{server}/predict", b"")  # a bare POST: no field, no body
    assert status == 400 and "multipart file field named 'file'" in json.loads(payload)["error"]


def test_concurrent_requests_each_get_their_own_answer(server):
    photos = [jpeg_bytes(synthetic_photo(50 + i, cls=i % 3)) for i in range(24)]
    alone = [upload(server, photo) for photo in photos]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda photo: upload(server, photo), photos))
    assert [s for s, _ in together] == [200] * 24
    for (_, a), (_, b) in zip(alone, together):  # batched with others, the same answer as alone
        assert a["label"] == b["label"] and abs(a["confidence"] - b["confidence"]) < 1e-4


def test_the_micro_batcher_groups_waiting_calls_and_routes_rows_back():
    import asyncio

    import numpy as np

    from photoclass.serve.batching import MicroBatcher

    def slow_double(x):
        time.sleep(0.05)
        if (x < 0).any():
            raise ValueError("negative input")
        return x * 2

    async def main():
        batcher = MicroBatcher(slow_double, max_batch=4)
        results = await asyncio.gather(*(batcher(np.full(2, i)) for i in range(10)))
        failed = await asyncio.gather(batcher(np.full(2, -1)), return_exceptions=True)
        return batcher, results, failed

    batcher, results, failed = asyncio.run(main())
    assert [r[0] for r in results] == [2 * i for i in range(10)]
    assert batcher.batches[:3] == [4, 4, 2]
    assert isinstance(failed[0], ValueError)


@pytest.mark.slow
def test_pytorch_and_an_exported_onnx_file_serve_the_same_answers(trained_run, server, tmp_path):
    from photoclass.inference.export import export_onnx

    path = export_onnx(trained_run, tmp_path / "model.onnx")["path"]
    (proc, url), (torch_proc, torch_url) = start_server(path), start_server(trained_run, "--engine", "torch")
    try:
        assert json.loads(request(f"{torch_url}/model")[1])["engine"] == "torch"
        photo = jpeg_bytes(synthetic_photo(3, cls=1))
        labels = {upload(u, photo)[1]["top"][0]["label"] for u in (url, torch_url, server)}
        assert len(labels) == 1
        assert json.loads(request(f"{url}/model")[1])["classes"] == ["cloudy", "rain", "shine"]
    finally:
        for p in (proc, torch_proc):
            p.terminate()
            p.wait(timeout=10)


@pytest.mark.slow
def test_a_full_queue_answers_503(tmp_path):
    proc, url = start_server(train_tiny_run(tmp_path, per_class=6, epochs=1), "--max-queue", 0)
    try:
        status, result = upload(url, jpeg_bytes(synthetic_photo(6)))
        assert status == 503 and "busy" in result["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@needs_chromium
def test_the_web_page_in_headless_chromium(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(synthetic_photo(9, cls=2)))
    expected = upload(server, photo.read_bytes())[1]["label"]

    with headless_chromium(tmp_path / "profile") as driver:
        driver.get(f"{server}/")
        WebDriverWait(driver, 20).until(lambda d: "cloudy" in d.find_element(By.ID, "model").text)
        chooser = driver.find_element(By.ID, "file")
        driver.execute_script("arguments[0].hidden = false", chooser)
        chooser.send_keys(str(photo))
        predicted = WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "predicted"))[0]
        assert predicted.text == expected
        bars = driver.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert len(bars) == 3
        track = bars[0].find_element(By.CSS_SELECTOR, ".track").size["width"]
        fill = bars[0].find_element(By.CSS_SELECTOR, ".fill").size["width"]
        assert fill >= track / 3 - 1  # the top class's bar is drawn, at least a third long
        driver.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 1000
