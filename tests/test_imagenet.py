"""ImageNet predictions out of the box, and model summaries."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from photoclass.inference.imagenet import imagenet_class_names
from photoclass.models import create_model
from photoclass.models.summary import summarize

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "weather"


def photoclass_cli(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "photoclass", *map(str, args)], capture_output=True, text=True)
    if check and result.returncode:
        raise AssertionError(result.stderr)
    return result


def test_the_imagenet_class_names_ship_with_the_package():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby" and names[967] == "espresso"
    assert len(set(names)) == 1000  # each class its own name: JSON, CSV and --sort-into folders stay apart
    assert names[134] == "crane (bird)" and names[517] == "crane (machine)"


def test_imagenet_refuses_the_onnx_engine_in_one_line():
    from photoclass import PhotoclassError
    from photoclass.inference.predictor import open_predictor

    with pytest.raises(PhotoclassError, match="imagenet predicts through PyTorch only. HINT: drop --engine onnx"):
        open_predictor("imagenet", engine="onnx")


@pytest.mark.slow
def test_predict_imagenet_names_scikit_images_cat_and_coffee(tmp_path):
    data = pytest.importorskip("skimage.data")
    Image.fromarray(data.chelsea()).save(tmp_path / "chelsea.png")
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.png")
    out = photoclass_cli("predict", "imagenet", tmp_path / "chelsea.png", tmp_path / "coffee.png", "--format", "json")
    cat, coffee = json.loads(out.stdout)
    assert cat["label"] in {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}, cat["top"]
    assert coffee["label"] in {"espresso", "cup", "coffee mug"}, coffee["top"]
    assert 0 < cat["confidence"] <= 1 and len(cat["top"]) == 3


@pytest.mark.slow
def test_predict_imagenet_answers_in_csv_for_the_example_photos_and_skips_a_bad_file(tmp_path):
    photos = sorted(EXAMPLES.glob("*.jpg"))[:3]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = photoclass_cli(
        "predict", "imagenet-lite0", *photos, tmp_path / "broken.jpg", "--format", "csv", "--top-k", "5"
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "path,label,confidence,unknown,outlier_score,top,error" and len(lines) == 5
    names = set(imagenet_class_names())
    for line in lines[1:4]:
        path, label, _, unknown, score, top, _ = line.split(",")
        assert label in names and len(top.split(";")) == 5
        assert unknown == score == ""  # ImageNet's classes have no training photos to measure against
    assert lines[4].split(",")[1] == "" and "JPEG" in lines[4]


def test_models_name_prints_each_layer_with_the_keras_total():
    out = photoclass_cli("models", "seed-cifar").stdout
    assert "total params: 4,597,834" in out
    assert "(3200)" in out and "(64, 30, 30)" in out  # Keras's 'valid' padding: 32 -> 30
    table = json.loads(photoclass_cli("models", "seed-mnist", "--json").stdout)
    assert table["input"] == [1, 28, 28] and table["layers"][-1]["output"] == [10]
    assert sum(layer["params"] for layer in table["layers"]) == table["total"]
    listed = photoclass_cli("models", "seed-c*", "--image-size", "16").stdout
    assert "1,452,106" in listed and "16x3" in listed  # the listing follows --image-size too
    assert "\nexports: this CPU: " in listed and "INT8: " in listed and "bf16: " in listed  # what to expect here
    assert "too small" in photoclass_cli("models", "seed-c*", "--image-size", "12").stdout


def test_seed_cifar_trains_with_keras_rmsprop():
    from photoclass.models.registry import model_info
    from photoclass.training.optim import create_optimizer

    defaults = model_info("seed-cifar").defaults
    assert defaults["optimizer"] == "rmsprop" and defaults["lr"] == 1e-3 and defaults["weight_decay"] == 0.0
    group = create_optimizer(create_model("seed-cifar", 10), "rmsprop", lr=1e-3).param_groups[0]
    assert (group["alpha"], group["eps"], group["momentum"]) == (0.9, 1e-7, 0)  # Keras's rho, epsilon, momentum


def test_a_summary_follows_the_image_size_and_refuses_one_a_flatten_cannot_take():
    model = create_model("compact-cnn", 3, input_size=64)
    summary = summarize(model, 64)
    assert summary["layers"][0]["output"] == [24, 32, 32] and summary["total"] == sum(
        p.numel() for p in model.parameters()
    )
    bad = photoclass_cli("models", "seed-mnist", "--image-size", "12", check=False)
    assert bad.returncode != 0 and "does not run at 12 px" in bad.stderr and "Traceback" not in bad.stderr
