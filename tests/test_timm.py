"""Any timm backbone, offline-first: tiny timm models with random weights, saved in a temporary
Hugging Face cache (or as a local safetensors file), train, evaluate, predict, export and serve
with no network; `models pull` downloads from a local stand-in for the Hub."""

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

timm = pytest.importorskip("timm", reason="timm needs torchvision (make installs torch 2.14.1 with it)")

import photoclass  # noqa: E402

from conftest import make_flat, request, start_server  # noqa: E402

pytestmark = pytest.mark.trains
TINY = {"cnn": "test_resnet.r160_in1k", "vit": "test_vit.r160_in1k", "convnext": "test_convnext.r160_in1k"}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def save_random_weights(name: str, folder: Path) -> Path:
    """timm's `name` with seeded random weights, as model.safetensors (and config.json) in `folder`."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(
        json.dumps({"architecture": name.split(".")[0], "pretrained_cfg": model.pretrained_cfg}, default=str)
    )
    return folder / "model.safetensors"


def hub_cache_with(cache: Path, *names: str) -> Path:
    """A Hugging Face cache (the layout hf_hub_download writes) holding `names`' weights."""
    for name in names:
        repo = cache / f"models--timm--{name}"
        save_random_weights(name, repo / "snapshots" / COMMIT)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(COMMIT)
    return cache


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """HF_HUB_OFFLINE=1 and a temporary cache with the three tiny models, here and in subprocesses."""
    from huggingface_hub import constants

    base = tmp_path_factory.mktemp("timm")
    cache = hub_cache_with(base / "hub", *TINY.values())
    saved = {k: os.environ.get(k) for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")}
    os.environ.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    patched = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": True}
    before = {k: getattr(constants, k) for k in patched}
    for k, v in patched.items():
        setattr(constants, k, v)
    yield {"base": base, "cache": cache, "data": make_flat(base / "data", per_class=8)}
    for k, v in before.items():
        setattr(constants, k, v)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def cli(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "photoclass", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PHOTOCLASS_TRACKING": "off", **(env or {})},
        cwd=cwd,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", TINY)
def test_a_timm_backbone_trains_predicts_and_exports_offline(offline, kind):
    name, base = TINY[kind], offline["base"]
    result = photoclass.train(
        offline["data"],
        model=name,
        image_size=64,
        out=base / kind,
        cache_dir=base / "pixels",
        verbose=False,
        progress=False,
        track=False,
    )
    assert result.test["count"] > 0 and 0 <= result.test["accuracy"] <= 1
    meta = json.loads((base / kind / "model.json").read_text())
    assert meta["architecture"] == name and meta["input"]["size"] == 64  # --image-size over the weights' 160
    config = json.loads((base / kind / "config.json").read_text())
    assert config["train"]["strategy"] == "features"  # pretrained: the frozen backbone on a CPU
    assert meta["trained_parameters"] < meta["parameters"]
    predicted = photoclass.predict(base / kind, [str(offline["data"] / "rain1.jpg")])
    assert predicted[0].label in ("cloudy", "rain", "shine")
    from photoclass.inference.export import export_onnx

    exported = export_onnx(base / kind)  # kept only when ONNX Runtime agrees with PyTorch
    assert exported["max_abs_diff"] < 1e-3
    onnx_predicted = photoclass.predict(exported["path"], [str(offline["data"] / "rain1.jpg")])
    assert onnx_predicted[0].label == predicted[0].label
    report = (base / kind / "report.html").read_text()
    assert name in report and ("Grad-CAM unavailable" in report) == (kind == "vit")


def test_the_multi_stage_statistics_head_on_timm_features(offline, tmp_path):
    name = TINY["cnn"] + "-ms"
    photoclass.train(
        offline["data"],
        model=name,
        image_size=48,
        out=tmp_path / "run",
        cache_dir=offline["base"] / "pixels",
        verbose=False,
        progress=False,
        track=False,
    )
    model, meta = photoclass.load(tmp_path / "run")
    body = timm.create_model(TINY["cnn"], num_classes=0)
    taps = [1, 2, 3]  # of resnet's five levels, those between the stem and the last stage
    assert model.num_features == body.num_features + sum(2 * body.feature_info[i]["num_chs"] for i in taps)
    assert meta["architecture"] == name and not bool((model._standardize.std == 1).all())  # fitted on training
    from photoclass.inference.export import export_onnx

    assert export_onnx(tmp_path / "run")["max_abs_diff"] < 1e-3


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_finetune_trains_only_the_last_layer_groups_of_a_timm_backbone(offline, tmp_path, kind):
    name = TINY[kind]
    result = photoclass.train(
        offline["data"],
        model=name,
        strategy="finetune",
        finetune_blocks=1,
        epochs=2,
        image_size=48,
        out=tmp_path / "run",
        cache_dir=offline["base"] / "pixels",
        verbose=False,
        progress=False,
        track=False,
    )
    assert result.test["count"] > 0
    trained, meta = photoclass.load(tmp_path / "run")
    start = timm.create_model(name, num_classes=0)  # the pretrained weights in the cache: seed 0
    from safetensors.torch import load_file

    pretrained = load_file(next((offline["cache"] / f"models--timm--{name}" / "snapshots").glob("*/model.safetensors")))
    groups = timm.models.group_parameters(start, start.group_matcher(coarse=False))
    first, last = list(groups.values())[0], list(groups.values())[-1]
    body = {k.removeprefix("body."): v for k, v in trained.state_dict().items() if k.startswith("body.")}
    resampled = {"pos_embed"}  # a ViT's position embeddings, made for 48 px here
    assert all(torch_equal(body[n], pretrained[n]) for n in first if n not in resampled)  # frozen: as pretrained
    assert any(not torch_equal(body[n], pretrained[n]) for n in last if body[n].ndim > 1)  # trained
    assert 0 < meta["trained_parameters"] < meta["parameters"]


def test_lpft_fine_tunes_every_layer_of_a_timm_backbone(offline, tmp_path):
    result = photoclass.train(
        offline["data"],
        model=TINY["convnext"],
        strategy="lpft",
        finetune_epochs=2,
        image_size=48,
        out=tmp_path / "run",
        cache_dir=offline["base"] / "pixels",
        verbose=False,
        progress=False,
        track=False,
    )
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert len(result.history) == 3  # the probe's row, then two epochs of fine-tuning
    assert meta["trained_parameters"] == meta["parameters"]


@pytest.mark.parametrize("kind", TINY)
def test_lpft_rates_follow_timms_layer_groups(offline, kind):
    from photoclass.models.registry import create_model
    from photoclass.training.finetune import discriminative_groups

    net = create_model(TINY[kind], 3, input_size=48)
    groups = discriminative_groups(net, 1e-3, decay=0.5)
    timm_groups = list(timm.models.group_parameters(net.body, net.body.group_matcher(coarse=False)).values())
    norm_alone = all(len(n.split(".")) <= 3 and "norm" in n for n in timm_groups[-1])  # joins the last block
    assert len(groups) == len(timm_groups) + 1 - norm_alone  # and the classifier, last, at the full rate
    rates = [g["lr"] for g in groups]
    assert rates == sorted(rates) and rates[-1] == 1e-3 and abs(rates[0] - 1e-3 * 0.5**4) < 1e-12
    params = [id(p) for g in groups for p in g["params"]]
    assert sorted(params) == sorted(id(p) for p in net.parameters())  # each once


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_timm_architecture_without_weights_trains_from_scratch(offline, tmp_path):
    name = "test_vit4"  # timm has no pretrained weights for it
    assert not timm.models.get_pretrained_cfg(name).hf_hub_id
    result = photoclass.train(
        offline["data"],
        model=name,
        image_size=32,
        epochs=1,
        out=tmp_path / "run",
        cache_dir=offline["base"] / "pixels",
        verbose=False,
        progress=False,
        track=False,
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["strategy"] == "scratch" and result.test["count"] > 0


def test_the_input_contract_comes_from_the_weights_config(offline):
    from photoclass.models.registry import model_info

    info = model_info(TINY["cnn"])
    config = timm.models.get_pretrained_cfg(TINY["cnn"])
    assert info.input_spec.size == config.input_size[-1] and info.input_spec.mean == tuple(config.mean)
    assert info.pretrained and "apache-2.0" in info.description
    dinov2 = model_info("vit_small_patch14_dinov2.lvd142m")  # 518 px as configured: brought down on a CPU
    assert dinov2.input_spec.size == 224 and "518" in dinov2.note
    assert dinov2.input_spec.mean == (0.485, 0.456, 0.406)


@pytest.mark.slow
def test_a_served_timm_run_answers_with_its_classes(offline, tmp_path):
    photoclass.train(
        offline["data"],
        model=TINY["convnext"],
        image_size=48,
        out=tmp_path / "run",
        cache_dir=offline["base"] / "pixels",
        verbose=False,
        progress=False,
        track=False,
    )
    proc, url = start_server(tmp_path / "run")
    try:
        status, body = request(f"{url}/model")
        assert status == 200 and json.loads(body)["classes"] == ["cloudy", "rain", "shine"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_imagenet_names_from_a_timm_backbone_with_its_own_head(offline):
    photo = str(offline["data"] / "rain1.jpg")
    top = photoclass.predict("imagenet", [photo], model=TINY["cnn"], top_k=3)[0].top
    from photoclass.inference.imagenet import imagenet_class_names

    assert len(top) == 3 and all(label in imagenet_class_names() for label, _ in top)
    assert (
        abs(sum(p for _, p in photoclass.predict("imagenet", [photo], model=TINY["cnn"], top_k=1000)[0].top) - 1) < 1e-4
    )
    done = cli("predict", "imagenet", photo, "--model", TINY["vit"], "--format", "json")
    assert done.returncode == 0 and len(json.loads(done.stdout)[0]["top"]) == 3, done.stderr
    wrong = cli("predict", offline["base"], photo, "--model", TINY["cnn"])
    assert wrong.returncode == 2 and "--model chooses the backbone of `predict imagenet`" in wrong.stderr


def test_weights_from_a_local_file_with_an_empty_cache(offline, tmp_path):
    weights = save_random_weights(TINY["cnn"], tmp_path / "mine")
    empty = {"HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    done = cli(
        "train",
        offline["data"],
        "--model",
        TINY["cnn"],
        "--weights",
        weights,
        "--image-size",
        "48",
        "--out",
        tmp_path / "run",
        "--cache-dir",
        offline["base"] / "pixels",
        env=empty,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["weights"] == str(weights)
    folder = cli(
        "train",
        offline["data"],
        "--model",
        TINY["cnn"],
        "--weights",
        tmp_path / "mine",
        "--image-size",
        "48",
        "--out",
        tmp_path / "run2",
        "--cache-dir",
        offline["base"] / "pixels",
        env=empty,
    )
    assert folder.returncode == 0, folder.stderr  # a timm/HF-format folder: its model.safetensors


def test_offline_and_not_cached_is_one_line_and_leaves_nothing(offline, tmp_path):
    done = cli(
        "train",
        offline["data"],
        "--model",
        "convnext_tiny",
        "--out",
        tmp_path / "run",
        "--cache-dir",
        tmp_path / "pixels",
        env={"HF_HUB_CACHE": str(tmp_path / "empty")},
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert (
        "not on this machine and it is offline" in done.stderr and "photoclass models pull convnext_tiny" in done.stderr
    )
    assert str(tmp_path / "empty") in done.stderr  # where it looked
    assert not (tmp_path / "run").exists() and not (tmp_path / "pixels").exists()  # refused before the photos


def test_an_unknown_name_is_one_line_with_the_closest(offline, tmp_path):
    done = cli("train", offline["data"], "--model", "resnet5", "--out", tmp_path / "run")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "Unknown model 'resnet5'. Did you mean resnet50" in done.stderr and not (tmp_path / "run").exists()
    listed = cli("models", "test_*")
    assert listed.returncode == 0 and TINY["vit"] in listed.stdout
    assert "yes" in next(line for line in listed.stdout.splitlines() if TINY["cnn"] in line)  # on this machine


class _Hub(http.server.BaseHTTPRequestHandler):
    """The two calls hf_hub_download makes: HEAD and GET of /ORG/REPO/resolve/REV/FILE."""

    root: Path

    def _serve(self, body: bool) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        file = self.root.joinpath(*parts[:2], *parts[4:]) if len(parts) > 4 and parts[2] == "resolve" else None
        if file is None or not file.is_file():
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802
        self._serve(False)

    def do_GET(self):  # noqa: N802
        self._serve(True)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_models_pull_fills_the_cache_from_a_stand_in_hub(tmp_path):
    save_random_weights(TINY["cnn"], tmp_path / "hub" / "timm" / TINY["cnn"])
    handler = type("Hub", (_Hub,), {"root": tmp_path / "hub"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "HF_HUB_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    try:
        done = cli("models", "pull", TINY["cnn"], env=env)
        missing = cli("models", "pull", TINY["vit"], env=env)  # not on this Hub: one line, exit 2
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    cached = tmp_path / "cache" / f"models--timm--{TINY['cnn']}" / "snapshots" / COMMIT / "model.safetensors"
    assert cached.is_file() and str(cached) in done.stdout
    assert cached.read_bytes() == (tmp_path / "hub" / "timm" / TINY["cnn"] / "model.safetensors").read_bytes()
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    offline_now = cli(
        "train",
        tmp_path / "nodata",
        "--model",
        TINY["cnn"],
        "--out",
        tmp_path / "run",
        env={**env, "HF_HUB_OFFLINE": "1"},
    )
    assert "not on this machine" not in offline_now.stderr  # pulled: found offline (the data is what is missing)
    shutil.rmtree(tmp_path / "cache")


@pytest.mark.parametrize("name", ["mobilenetv3_small_050", "test_vit.r160_in1k"])
def test_a_backbone_whose_pooled_features_pass_a_head_convolution(name):
    from photoclass.models import speed
    from photoclass.models.registry import create_model

    import torch

    net = create_model(name, 3, input_size=64, pretrained=False)  # MobileNetV3: 1,024 features after conv_head, not 576
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    assert speed.cost(name, 64).flops > 0
