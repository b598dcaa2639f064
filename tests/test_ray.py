"""Prepare and predict on a local Ray cluster (ray.init(num_cpus=2)): the same results as the plain run."""

import csv

import pytest

import photoclass
from photoclass.inference.predictor import open_predictor
from photoclass.inference.ray_predict import RayPredictor
from photoclass.inference.results import predict_to_file

from conftest import make_flat, save, synthetic_photo, train_tiny_run

ray = pytest.importorskip("ray")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


def test_prepare_on_ray_matches_the_plain_run(cluster, tmp_path):
    photos = make_flat(tmp_path / "flat", per_class=8)
    (photos / "broken3.jpg").write_bytes(b"not a photo")
    save(synthetic_photo(3), photos / "cloudy100.jpg")  # the same photo as one make_flat saved: a duplicate group
    plain = photoclass.prepare(photos, cache_dir=tmp_path / "plain", progress=False, pixels=False)
    on_ray = photoclass.prepare(photos, cache_dir=tmp_path / "ray", progress=False, ray="local")
    assert on_ray.rows == plain.rows  # paths, labels, splits, duplicate groups, skipped files and reasons
    assert on_ray.summary["duplicates"] == plain.summary["duplicates"]
    assert on_ray.summary["skipped"] == 1


def test_predict_on_ray_matches_the_plain_run_and_resumes(cluster, tmp_path):
    run = train_tiny_run(tmp_path / "train")
    photos = tmp_path / "new"
    for i in range(30):
        save(synthetic_photo(500 + i, cls=i % 3), photos / f"p{i:02d}.jpg")
    (photos / "broken.jpg").write_bytes(b"nope")
    plain = tmp_path / "plain.csv"
    predict_to_file(open_predictor(run, engine="onnx"), [photos], plain, progress=False)
    on_ray = tmp_path / "ray.csv"
    predictor = RayPredictor(run, address="local", engine="onnx", actors=2, batch_size=4)
    first = predict_to_file(predictor, [photos / f"p{i:02d}.jpg" for i in range(10)], on_ray, progress=False)
    rest = predict_to_file(predictor, [photos], on_ray, progress=False)
    assert (first.predicted, rest.before, rest.predicted) == (10, 10, 21)

    def rows(path):
        with open(path, newline="") as f:
            return {r["path"]: r for r in csv.DictReader(f)}

    a, b = rows(plain), rows(on_ray)
    assert sorted(a) == sorted(b) and len(b) == 31
    for path, row in a.items():
        assert (b[path]["label"], b[path]["error"], b[path]["unknown"]) == (row["label"], row["error"], row["unknown"])
        if not row["error"]:
            assert float(b[path]["confidence"]) == pytest.approx(float(row["confidence"]), abs=1e-5)
