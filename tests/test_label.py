"""`photoclass label`: the order of labelling, labels.csv, bad input, and the page by keys."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import headless_chromium, needs_chromium, request, save, start_server, synthetic_photo

import photoclass
from photoclass.core.errors import PhotoclassError
from photoclass.data.labels_file import append_label, read_labels, write_labels
from photoclass.training.active import Selector, cv_accuracy
from photoclass.workflows import label as label_workflow
from photoclass.workflows.label import LabelSession

pytest.importorskip("fastapi", reason="the serve extra is not installed")


def blobs(centres, sizes, spread=0.3, seed=0) -> tuple[torch.Tensor, np.ndarray]:
    """2-D points around `centres`, `sizes` of each, and each point's blob."""
    rng = np.random.default_rng(seed)
    points = [rng.normal(c, spread, (n, 2)) for c, n in zip(centres, sizes)]
    return torch.from_numpy(np.concatenate(points)).float(), np.repeat(np.arange(len(sizes)), sizes)


def answered(selector: Selector, truth: np.ndarray, count: int, start=()) -> list[int]:
    """The first `count` photos the selector asks for, answered with `truth`."""
    labelled, head = list(start), None
    if labelled:
        head = selector.fit(np.array(labelled), truth[labelled])
    for _ in range(count):
        labelled.append(selector.next(np.array(labelled, dtype=np.int64), head))
        head = selector.fit(np.array(labelled), truth[labelled], init=head)
    return labelled[len(start) :]


def test_the_cold_start_covers_every_cluster_even_small_ones():
    x, blob = blobs([(0, 0), (6, 0), (0, 6), (6, 6), (12, 12)], [120, 60, 30, 20, 15])
    selector = Selector(x, 5)
    first = answered(selector, blob, 5)
    assert sorted(blob[first].tolist()) == [0, 1, 2, 3, 4]  # random picks would miss the small blobs
    for i in first:  # typical photos: near their blob's centre, not its edge
        centre = x[blob == blob[i]].mean(0)
        assert torch.dist(x[i], centre) < 0.6


def test_after_the_cold_start_picks_lie_near_the_boundary():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.uniform(-3, 3, (600, 2))).float()
    truth = (x[:, 0] > 0).numpy().astype(np.int64)  # the boundary: x = 0
    selector = Selector(x, 2)
    cold = answered(selector, truth, selector.cold_start)
    later = answered(selector, truth, 8, start=cold)
    assert np.median(np.abs(x[later, 0].numpy())) < 0.5  # the pool's median distance is 1.5
    assert len(set(later) | set(cold)) == len(later) + len(cold)  # no photo asked twice


def test_cross_validated_estimate_has_an_interval():
    x, blob = blobs([(0, 0), (5, 0)], [20, 20])
    estimate = cv_accuracy(x.double(), blob)
    assert estimate["photos"] == 40 and estimate["accuracy"] == 1.0
    assert 0.8 < estimate["interval"][0] < 1.0 and estimate["interval"][1] == 1.0
    assert cv_accuracy(x[:3].double(), blob[:3])["accuracy"] is None  # too few, one class


def test_labels_file_round_trips_with_odd_names(tmp_path):
    path = tmp_path / "labels.csv"
    append_label(path, "/photos/a, b.jpg", "cat")
    append_label(path, '/photos/"quoted".jpg', "dog")
    assert read_labels(path) == {"/photos/a, b.jpg": "cat", '/photos/"quoted".jpg': "dog"}
    write_labels(path, {"/photos/c.jpg": "cat"})
    assert path.read_text().splitlines() == ["path,label", "/photos/c.jpg,cat"]
    path.write_text("file,class\nx.jpg,cat\n")
    with pytest.raises(PhotoclassError, match=r"does not start with the header `path,label`.*HINT"):
        read_labels(path)


@pytest.fixture
def fake_features(monkeypatch):
    """Features from each photo's mean colour: the session without a backbone (fast)."""
    from PIL import Image

    def features(paths, *, model, cache_dir=None, progress=None, **_):
        rows = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).mean((0, 1)) for p in paths]
        return torch.from_numpy(np.stack(rows)), np.arange(len(paths)), [""] * len(paths)

    monkeypatch.setattr(label_workflow, "photo_features", features)


def loose_photos(folder: Path, count: int = 24) -> Path:
    for i in range(count):
        save(synthetic_photo(i, cls=i % 3), folder / f"p{i}.jpg")
    return folder


def test_answers_are_written_at_once_undone_and_resumed(tmp_path, fake_features):
    data, out = loose_photos(tmp_path / "photos"), tmp_path / "out"
    before = sorted(p.name for p in data.iterdir())
    session = LabelSession(data, out=out, classes="cloudy, rain,shine")
    assert session.classes == ["cloudy", "rain", "shine"]
    given = []
    for _ in range(6):
        current = session.state()["current"]
        label = session.classes[int(current["name"][1:-4]) % 3]
        state = session.answer(current["id"], label)
        given.append((str(data / current["name"]), label))
        assert read_labels(out / "labels.csv") == dict(given)  # on disk before the answer returns
    assert state["labelled"] == 6 and state["current"]["guess"]["label"] in session.classes
    asked = state["current"]["id"]
    state = session.skip(asked)
    assert state["skipped"] == 1 and state["current"]["id"] != asked
    state = session.undo()
    assert state["labelled"] == 5 and read_labels(out / "labels.csv") == dict(given[:5])
    assert state["current"]["name"] == Path(given[5][0]).name  # the undone photo is asked again
    with pytest.raises(PhotoclassError, match="not the one being asked"):
        session.answer(asked, "rain")

    again = LabelSession(data, out=out)  # resumed: the classes come from the answers
    assert again.state()["labelled"] == 5 and again.classes == ["cloudy", "rain", "shine"]
    assert sorted(p.name for p in data.iterdir()) == before  # nothing written inside the photos' folder


def test_class_folders_count_as_labelled(tmp_path, fake_features):
    data = loose_photos(tmp_path / "photos", 10)
    for i, name in enumerate(("cat", "dog")):
        for k in range(3):
            save(synthetic_photo(100 + 10 * i + k, cls=i), data / name / f"{k}.jpg")
    session = LabelSession(data, out=tmp_path / "out")
    state = session.state()
    assert session.classes == ["cat", "dog"] and state["labelled"] == 6 and state["photos"] == 16
    assert len(read_labels(tmp_path / "out" / "labels.csv")) == 6  # so that labels.csv alone trains
    assert not state["current"]["name"].startswith(("0", "1", "2"))  # a loose photo is asked


@pytest.mark.parametrize(
    "classes, message",
    [
        ("a,,b", "An empty class name"),
        ("a,b,a", "Class 'a' is given twice"),
        ("a", "at least 2 classes"),
        (None, "at least 2 classes"),
        ("a;b,c", "single-label"),
    ],
)
def test_bad_classes_are_refused_in_one_line(tmp_path, fake_features, classes, message):
    data = loose_photos(tmp_path / "photos", 4)
    with pytest.raises(PhotoclassError, match=message) as error:
        LabelSession(data, out=tmp_path / "out", classes=classes)
    assert "\n" not in str(error.value) and "HINT" in str(error.value)


def test_bad_folders_are_refused_in_one_line(tmp_path, fake_features):
    data = loose_photos(tmp_path / "photos", 4)
    with pytest.raises(PhotoclassError, match="Folder not found"):
        LabelSession(tmp_path / "nowhere", out=tmp_path / "out", classes="a,b")
    with pytest.raises(PhotoclassError, match="inside the photos' folder"):
        LabelSession(data, out=data / "labels", classes="a,b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PhotoclassError, match="must be a folder"):
        LabelSession(data, out=tmp_path / "file", classes="a,b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PhotoclassError, match="No photos found"):
        LabelSession(tmp_path / "empty", out=tmp_path / "out", classes="a,b")


def test_the_cli_refuses_a_missing_folder_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "photoclass", "label", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Folder not found" in done.stderr and "HINT" in done.stderr


def test_the_cli_refuses_another_host_without_a_token(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "photoclass", "label", str(tmp_path), "--out", str(tmp_path / "o"), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PHOTOCLASS_TOKEN": ""},
    )
    assert done.returncode == 2 and "no token was given" in done.stderr


@pytest.mark.slow
def test_the_server_keeps_serves_token_rules_and_survives_sigkill(tmp_path):
    token = "a-long-enough-token"
    data = loose_photos(tmp_path / "photos", 8)
    proc, url = start_server(
        data,
        *("--out", tmp_path / "out", "--classes", "a,b", "--model", "efficientnet-lite0", "--token", token),
        *("--cache-dir", tmp_path / "cache"),
        command="label",
        timeout=180,
    )
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        assert request(f"{url}/health")[0] == 200 and request(f"{url}/")[0] == 200  # the page asks for the token
        assert request(f"{url}/state")[0] == 401
        assert request(f"{url}/state", headers={"Authorization": "Bearer wrong-token"})[0] == 401
        status, body = request(f"{url}/state", headers=bearer)
        current = json.loads(body)["current"]
        assert status == 200 and current["name"].startswith("p")
        status, photo = request(f"{url}/photo/{current['id']}", headers=bearer)
        assert status == 200 and photo[:2] == b"\xff\xd8"  # a JPEG
        answer = json.dumps({"photo": current["id"] + 1, "label": "a"}).encode()
        status, body = request(f"{url}/answer", answer, {**bearer, "Content-Type": "application/json"})
        assert status == 409 and "not the one being asked" in json.loads(body)["error"]
        answer = json.dumps({"photo": current["id"], "label": "a"}).encode()
        assert request(f"{url}/answer", answer, {"Content-Type": "application/json"})[0] == 401
        status, body = request(f"{url}/answer", answer, {**bearer, "Content-Type": "application/json"})
        assert status == 200 and json.loads(body)["labelled"] == 1
    finally:
        proc.kill()  # SIGKILL: an acknowledged answer is on disk already
        proc.wait(timeout=20)
    assert list(read_labels(tmp_path / "out" / "labels.csv").values()) == ["a"]


@needs_chromium
@pytest.mark.trains
@pytest.mark.slow
def test_label_ten_photos_by_keys_then_train_on_them(tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    data, out = tmp_path / "photos", tmp_path / "out"
    for i in range(30):
        save(synthetic_photo(i, cls=i % 3, size=(120, 90)), data / f"p{i}.jpg")
    proc, url = start_server(
        data,
        *("--out", out, "--classes", "cloudy,rain,shine", "--model", "efficientnet-lite0"),
        *("--cache-dir", tmp_path / "cache"),
        command="label",
        timeout=180,
    )
    try:
        with headless_chromium(tmp_path / "profile", width=1100, height=750) as driver:
            driver.get(f"{url}/")
            counts = lambda d: d.find_element(By.ID, "counts").text  # noqa: E731
            WebDriverWait(driver, 30).until(lambda d: counts(d).startswith("0 labelled of 30"))
            for n in range(1, 11):
                name = driver.find_element(By.ID, "name").text  # p<i>.jpg, of class i % 3
                key = str(int(name[1:-4]) % 3 + 1)
                buttons = driver.find_elements(By.CSS_SELECTOR, "#classes .class")
                right = "guessed" in buttons[int(key) - 1].get_attribute("class")  # Enter confirms the guess
                driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER if right else key)
                WebDriverWait(driver, 30).until(lambda d: counts(d).startswith(f"{n} labelled"))
            WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.images[0].complete"))
            assert "estimated accuracy" in driver.find_element(By.ID, "estimate").text
            shot = tmp_path / "label-page.png"
            driver.save_screenshot(str(shot))
            assert shot.stat().st_size > 1000
            if os.environ.get("PHOTOCLASS_SCREENSHOTS"):
                folder = Path(os.environ["PHOTOCLASS_SCREENSHOTS"])
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, folder / "label-page.png")
            logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not logs, logs
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    assert all(r["label"] == ("cloudy", "rain", "shine")[int(Path(r["path"]).name[1:-4]) % 3] for r in rows)
    elsewhere = tmp_path / "elsewhere"  # the paths are absolute: labels.csv trains from any folder
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = photoclass.train(
        out / "labels.csv",
        out=tmp_path / "run",
        model="compact-cnn",
        image_size=32,
        epochs=1,
        threads=1,
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        test_size=0.2,
        val_size=0.2,
    )
    assert (tmp_path / "run" / "model.json").exists() and result is not None
