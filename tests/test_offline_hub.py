"""A machine that cannot reach the Hugging Face Hub, without HF_HUB_OFFLINE set: a well-known
backbone not in the cache is refused in one line, after one short check of the Hub, instead of
huggingface_hub's ~55 s of retries and a false 'holds no model.safetensors'."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("timm", reason="timm needs torchvision (make installs torch 2.14.1 with it)")

from conftest import free_port, make_flat  # noqa: E402
from photoclass.core.errors import PhotoclassError  # noqa: E402
from photoclass.models import timm_models  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_probe():
    timm_models.hub_unreachable.cache_clear()
    yield
    timm_models.hub_unreachable.cache_clear()


def cli_without_network(*args, endpoint: str, cache):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cache), HF_HUB_DISABLE_TELEMETRY="1", PHOTOCLASS_TRACKING="off")
    return subprocess.run(
        [sys.executable, "-m", "photoclass", *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )


def assert_said_offline(done, name: str) -> None:
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "not on this machine and it is offline" in done.stderr and "could not be reached" in done.stderr
    assert f"`photoclass models pull {name}`" in done.stderr
    # the retries (about 55 s of them) and their false reason are gone, whatever the machine's speed
    assert "holds no" not in done.stderr and "Traceback" not in done.stderr and "Retrying" not in done.stderr


def test_models_pull_against_a_refused_port_says_offline_at_once(tmp_path):
    done = cli_without_network(
        "models", "pull", "resnet50", endpoint=f"http://127.0.0.1:{free_port()}", cache=tmp_path / "empty"
    )
    assert_said_offline(done, "resnet50")
    assert "Connection refused" in done.stderr and str(tmp_path / "empty") in done.stderr


def test_train_against_a_hub_that_hangs_up_says_offline_before_the_photos(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:  # accepts each connection and closes it without a word
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    hub = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        done = cli_without_network(
            "train",
            make_flat(tmp_path / "photos", per_class=3),
            "--model",
            "convnext_tiny",
            "--out",
            tmp_path / "run",
            "--cache-dir",
            tmp_path / "pixels",
            endpoint=hub,
            cache=tmp_path / "empty",
        )
    finally:
        listener.close()
    assert_said_offline(done, "convnext_tiny")
    assert not (tmp_path / "run").exists() and not (tmp_path / "pixels").exists()


def test_a_hub_name_that_does_not_resolve_is_unreachable(monkeypatch):
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    start = time.monotonic()
    why = timm_models.hub_unreachable("https://hub.photoclass-test.invalid")
    assert "ConnectError" in why and "Name or service not known" in why and time.monotonic() - start < 2


def test_a_dns_lookup_that_hangs_is_cut_short(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(30))
    monkeypatch.setattr(timm_models, "HUB_PROBE_SECONDS", 0.5)
    start = time.monotonic()
    assert timm_models.hub_unreachable("https://slow-dns.photoclass-test.invalid") == "no answer in 0.5 s"
    assert time.monotonic() - start < 2


def test_a_connection_lost_after_the_check_is_not_a_missing_file(monkeypatch, tmp_path):
    import httpx2
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    def lost(*args, **kwargs):  # what hf_hub_download raises when its HEAD fails and nothing is cached
        raise LocalEntryNotFoundError("cannot find the requested files") from httpx2.ConnectError("reset")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lost)
    monkeypatch.setattr(timm_models, "hub_unreachable", lambda endpoint: None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(PhotoclassError, match=r"offline \(.*ConnectError while downloading\).*models pull resnet50"):
        timm_models.pull("resnet50")
