"""Each label's best place in the photo: the regions head (CSRA's max), its one-solve fit, and
the multi-label default model that carries it through training, prediction and export."""

import json

import pytest
import torch

import photoclass
from photoclass.models.layers import RegionHead, region_means
from photoclass.models.registry import create_model
from photoclass.tasks import MULTI_LABEL, SINGLE_LABEL
from photoclass.training.probe import fit_linear_probe
from test_multilabel_train import squares


def test_region_means_are_the_cells_of_an_adaptive_pool():
    x = torch.randn(2, 4, 10, 7)
    for grid in (1, 3, 7):
        want = torch.nn.functional.adaptive_avg_pool2d(x, grid).flatten(2).transpose(1, 2).flatten(1)
        assert torch.allclose(region_means(x, grid), want, atol=1e-6)


def test_the_head_adds_each_class_best_region_above_its_mean_region():
    head = RegionHead(pooled=6, channels=4, regions=3, num_classes=2, dropout=0.0).eval()
    torch.nn.init.normal_(head.fc.weight)
    head.standardize.mean.normal_()
    head.standardize.std.uniform_(0.5, 2)
    pooled, cells = torch.randn(5, 6), torch.randn(5, 3, 4)
    found = head(torch.cat([pooled, cells.flatten(1)], 1))
    standardized = (cells - head.standardize.mean[2:]) / head.standardize.std[2:]
    scores = standardized @ head.fc.weight[:, 2:].T  # (photos, regions, classes)
    plain = head.fc((pooled - head.standardize.mean) / head.standardize.std)
    assert torch.allclose(found, plain + scores.amax(1) - scores.mean(1), atol=1e-5)


def test_the_model_split_for_its_cached_features_gives_the_same_outputs():
    net = create_model("efficientnet-lite2-regions", 3, input_size=96, pretrained=False).eval()
    encode, head = net.split_for_training(0)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(head(encode(x)), net(x), atol=1e-4)


def test_the_one_solve_fit_refits_the_whole_head_when_a_label_sits_in_one_region():
    # the label is a bump in one cell of nine, anywhere: the pooled mean barely shows it
    torch.manual_seed(0)
    n, channels = 400, 8
    labels = (torch.rand(n, 1) < 0.5).long()
    cells = torch.randn(n, 9, channels) * 0.3
    where = torch.randint(0, 9, (n,))
    cells[torch.arange(n), where, 0] += 2.0 * labels[:, 0]
    features = torch.cat([cells.mean(1), cells.flatten(1)], 1)
    groups = torch.arange(n).numpy()

    def fitted(head):
        head.fit_statistics(features) if hasattr(head, "fit_statistics") else head[0].fit_statistics(features)
        fit_linear_probe(head, features, labels, groups, seed=0, task=MULTI_LABEL)
        with torch.no_grad():
            return MULTI_LABEL.loss(head(features), labels)

    regions = fitted(RegionHead(channels, channels, 9, 1, dropout=0.0))
    from photoclass.models.layers import Standardize

    plain = fitted(torch.nn.Sequential(Standardize(features.shape[1]), torch.nn.Linear(features.shape[1], 1)))
    assert regions < 0.8 * plain


def test_the_regions_model_is_the_default_only_up_to_its_limit():
    assert MULTI_LABEL.default_model(800)[0] == "efficientnet-lite2-regions"
    assert MULTI_LABEL.default_model(MULTI_LABEL.regions_limit + 1)[0] is None
    assert SINGLE_LABEL.default_model(800)[0] is None


@pytest.mark.trains
def test_a_multi_label_run_without_a_model_trains_predicts_and_exports_the_regions_model(tmp_path):
    data, _ = squares(tmp_path / "photos", photos=60)
    options = dict(image_size=64, threads=1, seed=0, verbose=False, progress=False, cache_dir=tmp_path / "cache")
    photoclass.train(data, out=tmp_path / "run", **options)
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["architecture"] == "efficientnet-lite2-regions" and meta["task"] == "multi-label"
    assert "mAP" in json.loads((tmp_path / "run" / "test.json").read_text())["test"]
    pytest.importorskip("onnxruntime")
    from photoclass.inference.export import export
    from photoclass.inference.predictor import Predictor, open_predictor

    found = export(tmp_path / "run", "onnx")
    assert found["kept"], found.get("why_not")
    photos = sorted(data.parent.glob("*.png"))[:12]
    want = Predictor(tmp_path / "run", unknown=False).predict(photos)
    got = open_predictor(found["path"], unknown=False).predict(photos)
    assert [p.labels for p in got] == [p.labels for p in want]
