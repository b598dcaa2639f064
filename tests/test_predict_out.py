"""`predict --out FILE`: rows written as photos are predicted, and a killed run resumed."""

import csv
import json
import subprocess
import sys

import pytest

from photoclass.inference.predictor import Predictor
from photoclass.inference.results import predict_to_file

from conftest import save, synthetic_photo, train_tiny_run

pytestmark = pytest.mark.trains


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("out"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos") / "new"
    for i in range(40):
        save(synthetic_photo(900 + i, cls=i % 3), root / f"p{i:02d}.jpg")
    (root / "broken.jpg").write_bytes(b"not a photo at all")
    return root


def read_rows(path):
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


class Interrupted(Predictor):
    """Stops like Ctrl-C after `batches` batches."""

    batches = 3

    def iter_predict(self, files, **kwargs):
        for n, batch in enumerate(super().iter_predict(files, **kwargs)):
            if n == self.batches:
                raise KeyboardInterrupt
            yield batch


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_killed_run_resumes_with_every_photo_once(run, photos, tmp_path, suffix):
    out = tmp_path / f"results{suffix}"
    interrupted = Interrupted(run, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(interrupted, [photos], out, progress=False)
    journal = out if suffix != ".parquet" else tmp_path / f".results{suffix}.partial.jsonl"
    assert not (suffix == ".parquet" and out.exists())  # Parquet appears only when whole
    with open(journal, "a") as f:
        f.write('"a half-written row, as a kill leaves it')
    written = predict_to_file(Predictor(run, batch_size=4), [photos], out, progress=False)
    assert (written.total, written.before, written.predicted) == (41, 12, 41 - 12)
    rows = read_rows(out)
    paths = [r["path"] for r in rows]
    assert sorted(paths) == sorted(str(p) for p in photos.iterdir())  # none missing, none twice
    assert sum(1 for r in rows if r.get("error")) == 1  # broken.jpg, with its reason
    expected = {p.path: p for p in Predictor(run).predict([photos])}
    for row in rows:
        want = expected[row["path"]]
        if want.error:
            assert row["error"] == want.error
        else:
            assert row["label"] == want.label
            assert float(row["confidence"]) == pytest.approx(want.confidence, abs=1e-5)
    assert suffix != ".parquet" or not journal.exists()
    again = predict_to_file(Predictor(run), [photos], out, progress=False)
    assert (again.before, again.predicted) == (41, 0) and len(read_rows(out)) == 41


def test_cli_out_lists_unreadable_photos_and_refuses_the_photos_folder(run, photos, tmp_path):
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "photoclass", "predict", str(run), str(photos), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "41 photos predicted" in done.stderr and "1 unreadable" in done.stderr
    broken = [r for r in read_rows(out) if r["path"].endswith("broken.jpg")]
    assert len(broken) == 1 and broken[0]["error"] and "label" not in broken[0]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "0 photos predicted" in again.stderr and "41 already there" in again.stderr
    inside = subprocess.run(cmd[:-1] + [str(photos / "r.csv")], capture_output=True, text=True, timeout=300)
    assert inside.returncode == 2 and "inside the data folder" in inside.stderr
    assert "Traceback" not in inside.stderr and not (photos / "r.csv").exists()
    wrong = subprocess.run(cmd[:-1] + [str(tmp_path / "r.xlsx")], capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and ".jsonl" in wrong.stderr
