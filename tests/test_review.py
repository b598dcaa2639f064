"""`photoclass review`: the queues of a tiny run, corrections written per action and undone,
the token rule, one-line errors, and the page in headless chromium."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import (
    headless_chromium,
    make_flat,
    needs_chromium,
    request,
    save,
    sha256_tree,
    start_server,
    synthetic_photo,
    train_tiny_run,
)

pytestmark = pytest.mark.trains
pytest.importorskip("fastapi", reason="the serve extra is not installed")

TOKEN = "review-token-for-tests"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("review"), per_class=8, epochs=2)


@pytest.fixture(scope="module")
def built(run):
    from photoclass.serve.review_queues import build_review

    return build_review(run, progress=False)


def post(url, body, token=None):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    status, data = request(url, json.dumps(body).encode(), headers)
    return status, json.loads(data)


def checked_ids(session: dict) -> list[int]:
    return next(q["ids"] for q in session["queues"] if q["name"] == "checked")


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "photoclass", *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_the_queues_of_a_tiny_run(run, built):
    from photoclass.data.corrections import file_sha256

    split = {r["path"]: r for r in csv.DictReader(open(run / "split.csv"))}
    assert sorted(p.path for p in built.photos) == sorted(p for p, r in split.items() if r["status"] == "ok")
    queues = {q.name: q for q in built.queues}
    assert {"suspects", "mistakes", "conflicts", "checked"} <= set(queues)
    checked = [p for p in built.photos if p.split in ("val", "test")]
    assert sorted(queues["checked"].ids) == sorted(p.id for p in checked)
    wrong = {p.id for p in checked if p.top[0][0] != p.labels[0]}
    assert set(queues["mistakes"].ids) == wrong
    assert sum(len(cell) for row in built.confusion for cell in row) == len(checked)
    for t, row in enumerate(built.confusion):
        for p, cell in enumerate(row):
            assert all(built.photos[i].labels[0] == built.classes[t] for i in cell)
            assert all(built.photos[i].top[0][0] == built.classes[p] for i in cell)
    for photo in built.photos:
        assert photo.labels == [split[photo.path]["label"]]
        assert photo.sha256 == file_sha256(photo.file)
        assert photo.nearest and all(built.photos[i].split == "train" and i != photo.id for i, _ in photo.nearest)
        assert abs(sum(p for _, p in photo.top) - 1) < 1e-3  # three classes: all of them


def test_a_folder_of_new_photos_gives_the_unknown_and_unsure_queues(run, tmp_path):
    from photoclass.serve.review_queues import build_review

    new = make_flat(tmp_path / "new", per_class=2, start_seed=500)
    found = build_review(run, photos=new, progress=False)
    queues = {q.name: q for q in found.queues}
    fresh = [p for p in found.photos if p.split == "new"]
    assert len(fresh) == 6 and all(p.labels == [] and len(p.sha256) == 64 for p in fresh)
    assert set(queues["unknown"].ids) == {p.id for p in fresh if p.unknown}
    assert set(queues["unsure"].ids) == {p.id for p in fresh if not p.unknown and p.top[0][1] < 0.6}


@pytest.fixture(scope="module")
def server(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("review-out")
    proc, url = start_server(run, "--out", out, "--device", "cpu", command="review")
    yield url, out
    proc.kill()


def test_an_action_is_a_row_at_once_and_undo_takes_it_back(server, built):
    url, out = server
    session = json.loads(request(f"{url}/api/session")[1])
    first, second = (session["photos"][str(i)] for i in checked_ids(session)[:2])
    other = next(c for c in session["classes"] if c != first["labels"][0])
    status, answer = post(f"{url}/api/action", {"id": first["id"], "action": "relabel", "new_label": other})
    assert status == 200 and answer["done"] == {"action": "relabel", "new_label": other}
    rows = rows_of(out / "corrections.csv")
    assert [(r["sha256"], r["path"], r["old_label"], r["action"], r["new_label"]) for r in rows] == [
        (first["sha256"], first["path"], first["labels"][0], "relabel", other)
    ]
    assert post(f"{url}/api/action", {"id": second["id"], "action": "drop"})[0] == 200
    assert len(rows_of(out / "corrections.csv")) == 2
    status, answer = post(f"{url}/api/undo", {})
    assert status == 200 and answer["sha256"] == second["sha256"] and answer["done"] is None
    assert [r["action"] for r in rows_of(out / "corrections.csv")] == ["relabel"]
    done = json.loads(request(f"{url}/api/session")[1])["done"]
    assert done == {first["sha256"]: {"action": "relabel", "new_label": other}}
    assert post(f"{url}/api/undo", {})[0] == 200
    assert post(f"{url}/api/undo", {}) == (409, {"error": "nothing to undo"})


def test_bad_actions_are_refused_in_one_line(server):
    url, out = server
    status, answer = post(f"{url}/api/action", {"id": 0, "action": "rename"})
    assert status == 400 and "unknown action 'rename'" in answer["error"]
    status, answer = post(f"{url}/api/action", {"id": 0, "action": "relabel", "new_label": "  "})
    assert status == 400 and "empty name" in answer["error"]
    assert post(f"{url}/api/action", {"id": 10**6, "action": "keep"})[0] == 404
    assert request(f"{url}/photo/{10**6}")[0] == 404
    assert not (out / "corrections.csv").exists() or not rows_of(out / "corrections.csv")


def test_photos_and_gradcam_are_served_and_the_photo_is_its_own_bytes(server, built):
    url, _ = server
    photo = built.photos[0]
    status, data = request(f"{url}/photo/{photo.id}")
    assert status == 200 and data == photo.file.read_bytes()
    status, data = request(f"{url}/gradcam/{photo.id}")
    assert status == 200 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_request_without_the_token_off_loopback_is_401(run, tmp_path):
    proc, url = start_server(
        run, "--host", "0.0.0.0", "--out", tmp_path / "out", command="review", env={"PHOTOCLASS_TOKEN": TOKEN}
    )
    try:
        assert request(f"{url}/health")[0] == 200  # the page and /health stay open
        assert request(f"{url}/")[0] == 200
        for path in ("/api/session", "/photo/0", "/gradcam/0"):
            assert request(f"{url}{path}")[0] == 401, path
            assert request(f"{url}{path}", headers={"Authorization": "Bearer wrong-token-1"})[0] == 401, path
        assert post(f"{url}/api/action", {"id": 0, "action": "keep"})[0] == 401
        assert not (tmp_path / "out" / "corrections.csv").exists()
        assert request(f"{url}/api/session", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert post(f"{url}/api/action", {"id": 0, "action": "keep"}, token=TOKEN)[0] == 200
    finally:
        proc.kill()


def test_bad_runs_folders_and_hosts_are_one_line(run, tmp_path):
    from photoclass import PhotoclassError
    from photoclass.workflows.review import corrections_path

    with pytest.raises(PhotoclassError, match="No such run: .*nope"):
        corrections_path(tmp_path / "nope", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PhotoclassError, match="not a photoclass run: it has no model.json"):
        corrections_path(tmp_path / "empty", None)
    with pytest.raises(PhotoclassError, match="inside the data folder"):
        corrections_path(run, run.parent / "data" / "review")
    with pytest.raises(PhotoclassError, match="--photos .*: no such folder"):
        corrections_path(run, tmp_path / "out", tmp_path / "missing")
    assert not (tmp_path / "empty" / "review").exists()
    for args, said in (
        ((tmp_path / "nope",), "No such run"),
        ((run, "--host", "0.0.0.0"), "lets other machines in, and no token was given"),
        ((run, "--out", run.parent / "data" / "fixes"), "inside the data folder"),
    ):
        found = cli("review", *args, "--port", "1")
        lines = found.stderr.strip().splitlines()
        assert found.returncode != 0 and len(lines) == 1 and said in lines[0], found.stderr
    assert not (run.parent / "data" / "fixes").exists()


def test_a_restarted_server_resumes_from_the_corrections_file(run, tmp_path):
    out = tmp_path / "out"
    proc, url = start_server(run, "--out", out, command="review")
    try:
        session = json.loads(request(f"{url}/api/session")[1])
        chosen = session["photos"][str(checked_ids(session)[0])]
        assert post(f"{url}/api/action", {"id": chosen["id"], "action": "outsider"})[0] == 200
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc, url = start_server(run, "--out", out, command="review")
    try:
        done = json.loads(request(f"{url}/api/session")[1])["done"]
        assert done == {chosen["sha256"]: {"action": "outsider", "new_label": ""}}
    finally:
        proc.kill()


@needs_chromium
def test_the_review_page_in_headless_chromium(run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data = run.parent / "data"
    before = sha256_tree(data)
    out = tmp_path / "out"
    proc, url = start_server(run, "--out", out, command="review")
    try:
        with headless_chromium(tmp_path / "profile", width=1200, height=900) as driver:
            driver.get(f"{url}/")
            wait = WebDriverWait(driver, 30)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-queue=checked]")).pop().click()
            wait.until(lambda d: d.find_element(By.ID, "photo").get_attribute("src"))

            def done() -> int:
                return len(driver.find_elements(By.CSS_SELECTOR, "#photos li.done"))

            def press(key: str) -> None:
                count = done()
                ActionChains(driver).send_keys(key).perform()
                wait.until(lambda d: done() == count + 1)

            classes = [
                b.get_attribute("data-label") for b in driver.find_elements(By.CSS_SELECTOR, "#class-buttons button")
            ]
            for _ in range(3):  # relabel by digit keys, each to a class other than the one given
                given = driver.find_element(By.CSS_SELECTOR, "#given b").text
                press(str(next(i for i, c in enumerate(classes, 1) if c != given)))
            press("d")
            press("o")
            shot = tmp_path / "review-page.png"
            driver.save_screenshot(str(shot))
            if os.environ.get("PHOTOCLASS_SCREENSHOTS"):
                Path(os.environ["PHOTOCLASS_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(os.environ["PHOTOCLASS_SCREENSHOTS"]) / "review-page.png")
            driver.refresh()  # the state is the server's: the five photos show done again
            wait.until(lambda d: done() == 5)
            assert "done" in driver.find_element(By.ID, "state").text or done() == 5
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors
    finally:
        proc.send_signal(signal.SIGKILL)  # nothing already clicked may be lost
        proc.wait()
    rows = rows_of(out / "corrections.csv")
    assert Counter(r["action"] for r in rows) == {"relabel": 3, "drop": 1, "outsider": 1}
    assert all(r["new_label"] in classes and r["new_label"] != r["old_label"] for r in rows if r["action"] == "relabel")
    assert sha256_tree(data) == before
    # train applies them: the new labels in split.csv, the dropped photo and the outsider out of training
    retrained = train_tiny_run(run.parent, name="corrected", corrections=[out / "corrections.csv"])
    split = {r["path"]: r for r in csv.DictReader(open(retrained / "split.csv"))}
    for r in rows:
        if r["action"] == "relabel":
            assert split[r["path"]]["label"] == r["new_label"]
        else:
            assert split.get(r["path"], {}).get("status") != "ok"  # dropped and outsiders: out of training
    assert sha256_tree(data) == before


def test_new_photos_are_never_written_among(run, tmp_path):
    from photoclass import PhotoclassError
    from photoclass.workflows.review import corrections_path

    new = tmp_path / "new"
    save(synthetic_photo(3), new / "a.jpg")
    with pytest.raises(PhotoclassError, match="inside the data folder"):
        corrections_path(run, new / "review", new)


def test_label_sets_are_reviewed_as_whole_sets(tmp_path):
    import photoclass
    from photoclass.serve.review_queues import build_review
    from test_multilabel_train import squares

    data, truth = squares(tmp_path / "photos", photos=45)
    run = tmp_path / "run"
    photoclass.train(
        data, out=run, model="compact-cnn", image_size=32, epochs=2, threads=1,
        cache_dir=tmp_path / "cache", verbose=False, progress=False,
    )  # fmt: skip
    found = build_review(run, progress=False)
    assert found.multi_label and found.confusion is None
    for photo in found.photos:
        assert sorted(photo.labels) == sorted(truth[photo.path].split())
        assert photo.decided is not None and set(photo.decided) <= set(found.classes)
    mistakes = next(q for q in found.queues if q.name == "mistakes")
    checked = [p for p in found.photos if p.split in ("val", "test")]
    assert set(mistakes.ids) == {p.id for p in checked if set(p.decided) != set(p.labels)}
    proc, url = start_server(run, "--out", tmp_path / "out", command="review")
    try:
        photo = next(p for p in found.photos if p.labels)
        wanted = sorted(set(photo.labels) ^ {found.classes[0]}) or [found.classes[1]]
        status, answer = post(f"{url}/api/action", {"id": photo.id, "action": "relabel", "new_label": " ".join(wanted)})
        assert status == 200, answer
    finally:
        proc.kill()
    (row,) = rows_of(tmp_path / "out" / "corrections.csv")
    assert row["old_label"] == " ".join(photo.labels) and row["new_label"] == " ".join(wanted)


def test_an_array_data_set_is_shown_as_png_and_its_corrections_match_in_train(tmp_path):
    import numpy as np

    import photoclass

    rng = np.random.default_rng(0)
    x, y = (rng.random((45, 28, 28)) * 255).astype(np.uint8), np.arange(45) % 3
    for i in range(45):
        x[i, :, : 9 * (y[i] + 1)] = 250
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    options = dict(model="compact-cnn", image_size=32, threads=1, cache_dir=tmp_path / "cache", verbose=False)
    photoclass.train(tmp_path / "digits.npz", out=tmp_path / "run", epochs=2, progress=False, **options)
    proc, url = start_server(tmp_path / "run", "--out", tmp_path / "out", command="review")
    try:
        session = json.loads(request(f"{url}/api/session")[1])
        chosen = session["photos"][str(checked_ids(session)[0])]
        status, data = request(f"{url}/photo/{chosen['id']}")
        assert status == 200 and data[:8] == b"\x89PNG\r\n\x1a\n"
        other = next(c for c in session["classes"] if c != chosen["labels"][0])
        assert post(f"{url}/api/action", {"id": chosen["id"], "action": "relabel", "new_label": other})[0] == 200
    finally:
        proc.kill()
    photoclass.train(
        tmp_path / "digits.npz", out=tmp_path / "fixed", epochs=1, progress=False,
        corrections=[tmp_path / "out" / "corrections.csv"], **options,
    )  # fmt: skip
    split = {r["path"]: r for r in csv.DictReader(open(tmp_path / "fixed" / "split.csv"))}
    assert split[chosen["path"]]["label"] == other


def test_an_audited_run_gives_the_audits_flagged_photos(run, tmp_path):
    from photoclass.serve.review_queues import build_review

    audited = shutil.copytree(run, tmp_path / "run")
    paths = [r["path"] for r in csv.DictReader(open(run / "split.csv")) if r["status"] == "ok"][:3]
    (audited / "audit").mkdir()
    (audited / "audit" / "label_issues.csv").write_text(
        "path,given_label,suggested_label,score,flagged\n"
        f"{paths[0]},cloudy,rain,0.01,1\n{paths[1]},cloudy,rain,0.02,1\n{paths[2]},cloudy,rain,0.4,0\n"
    )
    found = build_review(audited, progress=False)
    suspects = next(q for q in found.queues if q.name == "suspects")
    assert [found.photos[i].path for i in suspects.ids] == paths[:2]
    assert "label_issues.csv" in suspects.note


def test_the_models_outputs_are_kept_for_the_next_start(run, built, tmp_path, monkeypatch):
    from photoclass.inference.engines.pytorch import Predictor
    from photoclass.serve.review_queues import build_review

    cache = tmp_path / "outputs.npz"
    build_review(run, cache=cache, progress=False)

    def refuse(self, pixels):
        raise AssertionError("the model ran again")

    monkeypatch.setattr(Predictor, "embedded", refuse)
    again = build_review(run, cache=cache, progress=False)
    assert [(p.top, p.nearest) for p in again.photos] == [(p.top, p.nearest) for p in built.photos]
    cache.write_bytes(b"damaged")
    monkeypatch.undo()
    assert [p.top for p in build_review(run, cache=cache, progress=False).photos] == [p.top for p in built.photos]
