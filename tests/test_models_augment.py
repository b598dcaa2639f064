import pytest
import torch

from photoclass import PhotoclassError
from photoclass.data.augment import AugmentSpec, augment_batch, parse_augment
from photoclass.models import count_parameters, create_model, list_models


@pytest.mark.parametrize("info", list_models(), ids=lambda m: m.name)
def test_every_registered_model_builds_and_runs_on_a_tiny_input(info):
    untrained = {"pretrained": False} if info.pretrained else {}
    model = create_model(info.name, num_classes=3, input_size=64, **untrained)
    channels = model.input_spec.channels
    assert model.input_spec.size == 64 and len(model.input_spec.mean) == channels
    assert count_parameters(model) > 10_000
    logits = model.eval()(torch.rand(2, channels, 64, 64))  # (B, C, H, W) -> (B, classes)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_seed_baseline_is_the_classic_keras_model():
    model = create_model("seed-baseline", num_classes=4)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [16, 32, 64]
    assert [(d.in_features, d.out_features) for d in dense] == [(64 * 22 * 22, 512), (512, 4)]
    assert model.input_spec.size == 180


def test_unknown_model_lists_the_choices():
    with pytest.raises(
        PhotoclassError,
        match=r"Unknown model 'resnet9000'. Did you mean resnet.*\? photoclass's own: "
        r".*seed-baseline.*HINT",
    ):
        create_model("resnet9000", 3)


def test_augment_specs_parse_and_bad_ones_explain_themselves():
    assert parse_augment("none") == AugmentSpec()
    spec = parse_augment("hflip,rotate=15,zoom=0.1")
    assert spec.hflip and spec.rotate == 15 and spec.zoom == 0.1 and not spec.vflip
    assert parse_augment("default,rotate=30").rotate == 30
    assert str(parse_augment(str(spec))) == str(spec)
    with pytest.raises(PhotoclassError, match=r"Unknown augmentation 'blur'.*Known:"):
        parse_augment("hflip,blur=2")
    with pytest.raises(PhotoclassError, match=r"needs a number, e.g. zoom=0.1"):
        parse_augment("zoom=big")
    with pytest.raises(PhotoclassError, match=r"rotate=200 is out of range"):
        parse_augment("rotate=200")


def test_augmentation_is_batched_seeded_and_keeps_the_range():
    x = torch.rand(8, 3, 32, 32)
    spec = parse_augment("strong")
    a = augment_batch(x, spec, torch.Generator().manual_seed(1))
    b = augment_batch(x, spec, torch.Generator().manual_seed(1))
    c = augment_batch(x, spec, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_horizontal_flip_alone_mirrors_or_keeps_each_photo():
    x = torch.rand(16, 3, 8, 8)
    out = augment_batch(x, AugmentSpec(hflip=True), torch.Generator().manual_seed(0))
    mirrored = [torch.allclose(o, xi.flip(-1), atol=1e-5) for o, xi in zip(out, x)]
    kept = [torch.allclose(o, xi, atol=1e-5) for o, xi in zip(out, x)]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert any(mirrored) and any(kept)


def test_brightness_changes_the_mean_but_not_the_geometry():
    x = torch.full((4, 3, 8, 8), 0.5)
    out = augment_batch(x, AugmentSpec(brightness=0.2), torch.Generator().manual_seed(0))
    means = out.mean(dim=(1, 2, 3))
    assert ((means >= 0.4 - 1e-6) & (means <= 0.6 + 1e-6)).all() and means.std() > 0
    assert torch.allclose(out.std(dim=(1, 2, 3)), torch.zeros(4), atol=1e-6)


def test_the_layer_table_counts_the_flops_of_one_image():
    from torch import nn

    from photoclass.models.summary import summarize

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 4))
    multiply_adds = (
        8 * 3 * 3 * 3 * 16 * 16 + 8 * 16 * 16 * 4
    )  # the convolution at each output pixel, then the dense layer
    assert summarize(net, 16, 3)["flops"] == 2 * multiply_adds


@pytest.mark.parametrize("name", ["efficientnet-lite0", "seed-mnist"])
def test_the_cost_counted_on_the_meta_device_is_that_of_the_real_model(name):
    from photoclass.models import speed
    from photoclass.models.summary import summarize

    model = create_model(name, num_classes=10, pretrained=False)
    cost = speed.cost(name)
    assert cost.params == count_parameters(model)
    assert cost.flops == summarize(model, model.input_spec.size, model.input_spec.channels)["flops"]
    assert (cost.depthwise > speed.DEPTHWISE_SHARE) == (name == "efficientnet-lite0")  # its depthwise convolutions


def test_the_model_listing_estimates_images_per_second_or_measures_them():
    import subprocess
    import sys

    def listing(*args):
        done = subprocess.run(
            [sys.executable, "-m", "photoclass", "models", *args], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return next(line for line in done.stdout.splitlines() if line.startswith("seed-mnist")).split()

    estimated, measured = listing("seed-mni*"), listing("seed-mni*", "--measure")
    assert estimated[3].startswith("~") and float(estimated[3][1:].replace(",", "")) > 0
    assert float(measured[3].replace(",", "")) > 0 and measured[2] == "0.08"  # GFLOPs
