"""The server's token, its bind rule and its timeout, against the real `photoclass serve`."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

from conftest import (
    free_port,
    headless_chromium,
    jpeg_bytes,
    needs_chromium,
    request,
    start_server,
    synthetic_photo,
    train_tiny_run,
)

pytestmark = pytest.mark.trains
pytest.importorskip("fastapi", reason="the serve extra is not installed")

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("auth"), per_class=6, epochs=1)


@pytest.fixture(scope="module")
def guarded(run):
    proc, url = start_server(run, "--engine", "torch", "--timeout", "2", env={"PHOTOCLASS_TOKEN": TOKEN})
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def photo() -> bytes:
    return jpeg_bytes(synthetic_photo(3, cls=1))


@pytest.mark.parametrize(
    "header, says",
    [
        (None, "needs a token"),
        ("Bearer", "needs a token"),
        (f"Basic {TOKEN}", "needs a token"),
        ("Bearer wrong-token-of-any-length", "wrong token"),
        (f"Bearer {TOKEN}x", "wrong token"),
        (f"bearer {TOKEN[:-1]}", "wrong token"),
    ],
)
def test_anything_but_the_token_gets_401_saying_whether_it_was_missing_or_wrong(guarded, header, says):
    headers = {} if header is None else {"Authorization": header}
    for status, body in (
        request(f"{guarded}/model", headers=headers),
        request(f"{guarded}/predict", data=photo(), headers={**headers, "Content-Type": "image/jpeg"}),
    ):
        error = json.loads(body)["error"]
        assert status == 401 and "Authorization: Bearer" in error
        assert says in error and ("wrong token" in error) == (says == "wrong token")


def test_the_token_opens_predict_and_model_and_health_stays_open(guarded):
    assert request(f"{guarded}/health")[0] == 200
    status, page = request(f"{guarded}/")
    assert status == 200 and b'id="login"' in page  # the page itself asks for the token
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, body = request(f"{guarded}/model", headers=auth)
    assert status == 200 and json.loads(body)["classes"] == ["cloudy", "rain", "shine"]
    status, body = request(f"{guarded}/predict", data=photo(), headers={**auth, "Content-Type": "image/jpeg"})
    assert status == 200 and json.loads(body)["label"] in ("cloudy", "rain", "shine")
    status, body = request(
        f"{guarded}/predict", data=photo(), headers={"Authorization": f"bearer {TOKEN}", "Content-Type": "image/jpeg"}
    )
    assert status == 200  # the scheme's case does not matter (RFC 7235)


def test_an_upload_slower_than_the_timeout_gets_408(guarded):
    address = urllib.parse.urlsplit(guarded)
    with socket.create_connection((address.hostname, address.port), timeout=10) as s:
        s.sendall(
            f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: image/jpeg\r\n"
            "Content-Length: 5000\r\n\r\n".encode()
            + photo()[:100]
        )  # and then nothing more
        started = time.monotonic()
        answer = read_response(s)
    assert answer.startswith("HTTP/1.1 408") and "longer than 2 s" in answer
    assert 1.5 <= time.monotonic() - started <= 8


def read_response(s: socket.socket) -> str:
    """The whole answer: the head and the body may come in separate packets."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < content_length(data):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def content_length(data: bytes) -> int:
    found = re.search(rb"(?im)^content-length:\s*(\d+)", data.partition(b"\r\n\r\n")[0])
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
def test_listening_beyond_this_machine_without_a_token_is_refused(run, host):
    done = subprocess.run(
        [sys.executable, "-m", "photoclass", "serve", run, "--host", host, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PHOTOCLASS_TOKEN": ""},
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "--token" in done.stderr and "--no-auth" in done.stderr and "Traceback" not in done.stderr


def test_a_non_loopback_bind_starts_with_a_token_or_on_purpose_without(run):
    for extra in (["--token", TOKEN], ["--no-auth"]):
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "photoclass",
                "serve",
                run,
                "--host",
                "0.0.0.0",
                "--port",
                str(port),
                "--engine",
                "torch",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if request(f"http://127.0.0.1:{port}/health")[0] == 200:
                        break
                except OSError:  # not listening yet
                    pass
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.3)
            expected = 401 if extra[0] == "--token" else 200
            assert request(f"http://127.0.0.1:{port}/model")[0] == expected
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_a_short_token_is_refused(run):
    done = subprocess.run(
        [sys.executable, "-m", "photoclass", "serve", run, "--token", "abc", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "at least 8" in done.stderr


@needs_chromium
def test_the_page_asks_for_the_token_then_predicts(guarded, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = tmp_path / "photo.jpg"
    image.write_bytes(photo())
    with headless_chromium(tmp_path / "profile") as driver:
        driver.get(f"{guarded}/")
        login = WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "login"))
        WebDriverWait(driver, 20).until(lambda d: login.is_displayed())
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        WebDriverWait(driver, 20).until(lambda d: "cloudy" in d.find_element(By.ID, "model").text)
        assert not login.is_displayed()
        chooser = driver.find_element(By.ID, "file")
        driver.execute_script("arguments[0].hidden = false", chooser)
        chooser.send_keys(str(image))
        predicted = WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "predicted"))[0]
        assert predicted.text in ("cloudy", "rain", "shine")
