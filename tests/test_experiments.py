"""Tracking (a real MLflow SQLite store), the leaderboard and selection rule, sweeps, reports."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import headless_chromium, make_flat, needs_chromium, train_tiny_run
from photoclass.core.errors import PhotoclassError
from photoclass.experiments.leaderboard import list_runs, rank_runs, select_run

pytestmark = pytest.mark.trains  # each test trains at least one small model


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "photoclass.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PHOTOCLASS_TRACKING": "off"},
    )


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """Three finished runs on one synthetic folder, each logged to a fresh MLflow store."""
    base = tmp_path_factory.mktemp("experiments")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    runs = [
        train_tiny_run(base / "runs", name=f"run-{i}", epochs=2 + i, lr=lr, seed=i, track=uri)
        for i, lr in enumerate((1e-3, 3e-3, 1e-2))
    ]
    return base, uri, runs


def test_mlflow_holds_each_runs_params_history_metrics_and_artifacts(three_runs):
    MlflowClient = pytest.importorskip("mlflow.tracking", reason="the track extra is not installed").MlflowClient

    base, uri, runs = three_runs
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("photoclass")
    assert experiment.artifact_location == (base / "mlruns").resolve().as_uri()  # beside the store, not in the cwd
    logged = {Path(r.data.tags["photoclass.run_dir"]).name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(logged) == ["run-0", "run-1", "run-2"]
    for run in runs:
        result = json.loads((run / "test.json").read_text())
        mlrun = logged[run.name]
        assert mlrun.data.metrics["test_accuracy"] == pytest.approx(result["test"]["accuracy"])
        assert mlrun.data.metrics["test_loss"] == pytest.approx(result["test"]["loss"])
        assert mlrun.data.metrics["generalization_gap"] == pytest.approx(result["generalization_gap"])
        assert mlrun.data.params["train.lr"] == str(json.loads((run / "config.json").read_text())["train"]["lr"])
        history = client.get_metric_history(mlrun.info.run_id, "val_loss")
        assert [m.step for m in history] == list(range(1, result["training"]["epochs_run"] + 1))
        artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
        assert {"report.html", "model.safetensors", "test.json", "plots"} <= artifacts
        assert mlrun.info.status == "FINISHED"


def test_tracking_a_run_again_replaces_its_mlflow_run(three_runs):
    MlflowClient = pytest.importorskip("mlflow.tracking", reason="the track extra is not installed").MlflowClient

    base, uri, runs = three_runs
    before = json.loads((runs[0] / "tracking.json").read_text())["run_id"]
    result = cli("track", runs[0], "--tracking-uri", uri)
    assert result.returncode == 0, result.stderr
    client = MlflowClient(uri)
    active = client.search_runs([client.get_experiment_by_name("photoclass").experiment_id])
    assert len(active) == 3 and before not in {r.info.run_id for r in active}


def test_a_broken_tracking_store_never_costs_the_run(tmp_path, capsys):
    import photoclass

    data = make_flat(tmp_path / "data", per_class=6)
    result = photoclass.train(
        data,
        out=tmp_path / "run",
        model="compact-cnn",
        image_size=32,
        epochs=1,
        threads=1,
        cache_dir=tmp_path / "cache",
        track="sqlite:////sys/photoclass-test/mlflow.db",  # sysfs takes no files
        progress=False,
    )
    assert result.test is not None and (tmp_path / "run" / "test.json").is_file()
    out = capsys.readouterr().out
    assert "tracking: could not log to" in out and f"photoclass track {tmp_path / 'run'}" in out


def test_tracking_never_writes_into_the_data_folder_a_run_is_started_from(tmp_path, capsys, monkeypatch):
    pytest.importorskip("mlflow", reason="the track extra is not installed")
    import photoclass

    data = make_flat(tmp_path / "data", per_class=6)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    monkeypatch.chdir(data)  # `photoclass train .` among the photos: MLflow's default store is the cwd
    monkeypatch.setenv("PHOTOCLASS_TRACKING", "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    photoclass.train(
        ".",
        out=tmp_path / "run",
        model="compact-cnn",
        image_size=32,
        epochs=1,
        threads=1,
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    out = capsys.readouterr().out
    assert "--tracking-uri" in out and "mlflow.db is inside the data folder" in out
    result = cli("track", tmp_path / "run", "--tracking-uri", f"sqlite:///{data / 'sub' / 'mlflow.db'}")
    assert result.returncode != 0 and "inside the data folder" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_the_leaderboard_shows_the_numbers_of_each_test_json(three_runs):
    base, _, runs = three_runs
    result = cli("runs", base / "runs", "--json")
    assert result.returncode == 0, result.stderr
    rows = {Path(r["run"]).name: r for r in json.loads(result.stdout)}
    assert sorted(rows) == ["run-0", "run-1", "run-2"]
    for run in runs:
        saved = json.loads((run / "test.json").read_text())
        assert rows[run.name]["test_accuracy"] == saved["test"]["accuracy"]
        assert rows[run.name]["test_loss"] == saved["test"]["loss"]
        assert rows[run.name]["gap"] == saved["generalization_gap"]
    assert [r["run"] for r in json.loads(result.stdout)][0] == str(select_run(list_runs(base / "runs")).winner.path)
    by_error = json.loads(cli("runs", base / "runs", "--json", "--sort", "error").stdout)
    errors = [r["test_error"] for r in by_error]
    assert errors == sorted(errors)  # best first
    table = cli("runs", base / "runs").stdout
    assert "run-0" in table and "test acc" in table


def fake_run(
    root: Path, name: str, test_acc: float, train_acc: float, loss: float = 0.3, data: str = "/photos/weather"
) -> Path:
    """A finished run's config.json and test.json, with chosen figures."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps({"data": data, "train": {"model": "compact-cnn"}, "prepare": {}, "versions": {"photoclass": "0"}})
    )
    (run / "test.json").write_text(
        json.dumps(
            {
                "test": {"accuracy": test_acc, "loss": loss, "macro_f1": test_acc},
                "train": {"accuracy": train_acc},
                "generalization_gap": train_acc - test_acc,
                "training": {"seconds": 10.0},
            }
        )
    )
    return run


def test_select_prefers_the_smaller_gap_within_tolerance(tmp_path):
    fake_run(tmp_path, "overfit", test_acc=0.950, train_acc=1.000)  # most accurate, gap 5 points
    fake_run(tmp_path, "steady", test_acc=0.945, train_acc=0.955)  # 0.5 points behind, gap 1 point
    fake_run(tmp_path, "weak", test_acc=0.900, train_acc=0.900)  # no gap, but far behind
    selection = select_run(list_runs(tmp_path), tolerance=0.01)
    assert selection.winner.name == "steady"
    assert {r.name for r in selection.candidates} == {"overfit", "steady"}
    assert "within 1.0%" in selection.reason and "overfit" in selection.reason

    assert select_run(list_runs(tmp_path), tolerance=0.001).winner.name == "overfit"  # steady now outside

    result = cli("select", tmp_path, "--copy-to", tmp_path / "best")
    assert result.returncode == 0, result.stderr
    assert "steady" in result.stdout.splitlines()[0]
    assert json.loads((tmp_path / "best" / "test.json").read_text())["test"]["accuracy"] == 0.945
    assert len(list_runs(tmp_path / "best")) == 1


def test_ties_name_the_real_decider_and_runs_lists_in_the_select_order(tmp_path):
    fake_run(tmp_path, "a", test_acc=0.95, train_acc=0.97, loss=0.30)
    fake_run(tmp_path, "b", test_acc=0.95, train_acc=0.97, loss=0.20)  # same error and gap, lower loss
    fake_run(tmp_path, "c", test_acc=0.90, train_acc=0.90)
    selection = select_run(list_runs(tmp_path), tolerance=0.01)
    assert selection.winner.name == "b"
    assert "gaps and test errors are equal, so the lower test loss decided" in selection.reason
    assert "smallest" not in selection.reason
    fake_run(tmp_path, "d", test_acc=0.95, train_acc=0.98, loss=0.10)  # same error, larger gap
    selection = select_run(list_runs(tmp_path), tolerance=0.0)
    assert selection.winner.name == "b" and "the lower test loss decided" in selection.reason
    order = [row["run"] for row in json.loads(cli("runs", tmp_path, "--json", "--tolerance", "0").stdout)]
    assert [Path(r).name for r in order] == [r.name for r in rank_runs(list_runs(tmp_path, sort="name"), tolerance=0)]
    assert Path(order[0]).name == "b" and Path(order[-1]).name == "c"
    assert cli("select", tmp_path, "--tolerance", "0").stdout.startswith(str(tmp_path / "b"))


def test_select_with_no_runs_is_a_one_line_error(tmp_path):
    result = cli("select", tmp_path)
    assert result.returncode == 2 and "No finished runs" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_ten_trial_sweep_prunes_and_its_best_trial_is_on_the_leaderboard(tmp_path):
    pytest.importorskip("optuna", reason="the sweep extra is not installed")
    import photoclass.workflows.sweep as sweeps

    data = make_flat(tmp_path / "data", per_class=8)
    space = {
        "model": ["compact-cnn"],
        "lr": {"low": 1e-6, "high": 3e-2, "log": True},
        "augment": ["none", "light"],
        "dropout": {"low": 0.0, "high": 0.5},
        "batch_size": [8],
        "image_size": [32],
        "epochs": 5,
    }
    (tmp_path / "space.json").write_text(json.dumps(space))
    study = sweeps.sweep(
        data,
        trials=10,
        space=tmp_path / "space.json",
        out=tmp_path / "runs",
        study="s",
        threads=1,
        cache_dir=tmp_path / "cache",
        track=False,
        verbose=False,
        progress=False,
    )
    states = [t.state.name for t in study.trials]
    assert len(states) == 10 and states.count("PRUNED") >= 1 and states.count("COMPLETE") >= 1
    assert (tmp_path / "runs" / "sweeps.db").is_file()  # the study is stored, to resume or inspect
    best = study.best_trial
    board = list_runs(tmp_path / "runs")
    assert len(board) == states.count("COMPLETE") and board.incomplete == states.count("PRUNED")
    entry = next(r for r in board if r.path == Path(best.user_attrs["run"]))
    assert entry.test_accuracy == best.user_attrs["test_accuracy"]
    assert entry.options["lr"] == pytest.approx(best.params["lr"])


def test_a_bad_search_space_is_a_clear_error(tmp_path):
    (tmp_path / "space.json").write_text('{"lr": {"low": 0.1}}')
    result = cli("sweep", tmp_path, "--space", tmp_path / "space.json", "--trials", 1, "--out", tmp_path / "o")
    assert result.returncode == 2 and "low and high" in result.stderr


def stand_in_sweep(tmp_path, **options):
    """A sweep whose `train` only records its options and warns as train does for a CPU's
    frozen features (lbfgs); returns (each trial's options, the NOTEs, the study)."""
    import warnings

    pytest.importorskip("optuna", reason="the sweep extra is not installed")
    from photoclass.config import TrainConfig
    from photoclass.core.errors import UnusedOptionWarning
    from photoclass.experiments.sweep import sweep
    from photoclass.workflows.train import _warn_unused

    calls = []

    def train(data, *, out, on_epoch, track, progress, verbose, **given):
        calls.append(given)
        _warn_unused(TrainConfig(strategy="features"), set(given))
        out.mkdir(parents=True)
        (out / "test.json").write_text(json.dumps({"val": {"accuracy": 0.5, "count": 4}}))
        return type("Result", (), {"test": {"accuracy": 0.5}})

    (tmp_path / "data").mkdir(exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study = sweep(tmp_path / "data", train=train, trials=3, out=tmp_path / "runs", verbose=False, **options)
    return calls, [str(w.message) for w in caught if w.category is UnusedOptionWarning], study


def test_a_sweep_first_tries_the_default_model_and_notes_no_option_it_chose_itself(tmp_path):
    from photoclass.config import TrainConfig

    calls, notes, study = stand_in_sweep(tmp_path)
    assert calls[0] == {"model": TrainConfig.model}  # train's defaults: the baseline to beat
    assert study.trials[0].params == {"model": TrainConfig.model} and study.trials[0].user_attrs["defaults"]
    assert all("lr" in c for c in calls[1:]) and notes == []  # epochs, lr, dropout, augment: the sweep's values


def test_a_sweep_notes_the_options_the_user_gave_and_keeps_the_defaults_trial_in_the_space(tmp_path):
    space = {"model": ["compact-cnn"], "lr": {"low": 1e-4, "high": 1e-2, "log": True}, "epochs": 5}
    calls, notes, _ = stand_in_sweep(tmp_path, space=space, dropout=0.2, study="a")
    assert all(c["model"] == "compact-cnn" and "lr" in c for c in calls)  # no default model outside the space
    assert {n.split("`")[1] for n in notes} == {"dropout", "epochs"}  # given on the command line or in the space
    calls, _, _ = stand_in_sweep(tmp_path, space={"lr": space["lr"]}, model="compact-cnn", study="b")
    assert calls[0] == {"model": "compact-cnn"} and "lr" in calls[1]  # the given model, lr at its default first


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    return train_tiny_run(base, epochs=1)  # one epoch: some test photos are surely wrong


def test_report_embeds_everything_and_its_gallery_holds_the_runs_misclassified_photos(reported_run):
    import re

    page = (reported_run / "report.html").read_text()
    assert not re.search(r"""(src|href)=['"]?(?!data:)[a-z]+:""", page)  # nothing fetched from elsewhere
    wrong = json.loads((reported_run / "test.json").read_text())["misclassified"]
    assert wrong, "a one-epoch run should get some test photos wrong"
    assert re.findall(r"<figure data-path='([^']+)'>", page) == [w["path"] for w in wrong]
    for section in ("Data", "Learning curves", "Test results", "Grad-CAM", "Augmentation preview", "Configuration"):
        assert section in page
    assert page.count("Grad-CAM of ") >= 3


@pytest.mark.slow
def test_report_and_compare_commands(reported_run, tmp_path):
    other = train_tiny_run(reported_run.parent, name="run-b", epochs=2, lr=3e-3)
    (reported_run / "report.html").unlink()
    assert cli("report", reported_run).returncode == 0 and (reported_run / "report.html").is_file()
    result = cli("compare", reported_run, other, "--out", tmp_path / "compare.html")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "compare.html").read_text()
    assert str(reported_run) in page and str(other) in page and "Selected:" in page
    assert page.count("class=win") == 1


@needs_chromium
def test_the_report_opens_in_headless_chromium_without_errors(reported_run, tmp_path):
    with headless_chromium(tmp_path / "profile", width=1200, height=3000) as driver:
        driver.get((reported_run / "report.html").as_uri())
        broken = driver.execute_script(
            "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length"
        )
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        mistakes = driver.execute_script(
            "return document.querySelectorAll('#misclassified + .gallery figure:not(.near) img').length"
        )
        nearest = driver.execute_script(
            "return document.querySelectorAll('#misclassified + .gallery figure.near img').length"
        )
        driver.save_screenshot(str(tmp_path / "report.png"))
    assert broken == 0 and errors == []
    wrong = json.loads((reported_run / "test.json").read_text())["misclassified"]
    assert mistakes == len(wrong) and nearest == sum(len(w["nearest"]) for w in wrong)  # each beside its neighbours
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.slow
def test_the_notebook_example_runs_start_to_end(tmp_path):
    """examples/notebook.py: prepare, two trainings (tracked), leaderboard, compare, select, predict."""
    MlflowClient = pytest.importorskip("mlflow.tracking", reason="the track extra is not installed").MlflowClient

    script = Path(__file__).resolve().parents[1] / "examples" / "notebook.py"
    env = {**os.environ, "PHOTOCLASS_TRACKING": "on", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "notebook-output"
    assert (out / "compare.html").is_file()
    assert sorted(r.name for r in list_runs(out / "runs")) == ["compact-cnn", "efficientnet-lite0-ms"]
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    assert len(client.search_runs([client.get_experiment_by_name("photoclass").experiment_id])) == 2
    predictions = [line for line in result.stdout.splitlines() if line.startswith("rain")]
    assert len(predictions) == 3


@pytest.mark.slow
def test_two_sweeps_share_one_journal_file(tmp_path):
    pytest.importorskip("optuna", reason="the sweep extra is not installed")
    import photoclass.workflows.sweep as sweeps

    data = make_flat(tmp_path / "data", per_class=6)
    space = {
        "model": ["compact-cnn"],
        "lr": {"low": 1e-3, "high": 1e-2, "log": True},
        "image_size": [32],
        "epochs": 2,
        "batch_size": [8],
    }
    journal = f"journal:{tmp_path / 'shared' / 'sweeps.journal'}"
    for machine in ("a", "b"):  # as two machines would, one after the other or at once
        study = sweeps.sweep(
            data,
            trials=2,
            space=space,
            storage=journal,
            study="s",
            out=tmp_path / machine,
            threads=1,
            cache_dir=tmp_path / "cache",
            track=False,
            verbose=False,
            progress=False,
        )
    assert len(study.trials) == 4 and (tmp_path / "shared" / "sweeps.journal").is_file()
    assert {t.user_attrs["run"].split("/")[-3] for t in study.trials} == {"a", "b"}


def test_runs_within_noise_on_the_same_test_photos_are_tied_by_mcnemar(tmp_path):
    from photoclass.evaluation.stats import mcnemar_p

    assert mcnemar_p(3, 0) == pytest.approx(0.25) and mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    photos = [f"p{i}.jpg" for i in range(100)]

    def paired_run(name: str, wrong: list[str], train_acc: float, test_photos=photos) -> None:
        run = fake_run(tmp_path, name, test_acc=1 - len(wrong) / len(test_photos), train_acc=train_acc)
        result = json.loads((run / "test.json").read_text())
        (run / "test.json").write_text(json.dumps({**result, "wrong_paths": wrong}))
        (run / "split.csv").write_text(
            "path,label,split,group,status,reason\n"
            + "".join(f"{p},a,test,{i},ok,\n" for i, p in enumerate(test_photos))
        )

    paired_run("best", photos[:5], train_acc=1.00)  # 95% test accuracy, gap 5 points
    paired_run("close", photos[:8], train_acc=0.93)  # 92%: 3 points behind, gap 1 point, p = 0.25
    paired_run("worse", photos[:20], train_acc=0.80)  # 80%: p = 2 / 2**15, a real difference
    selection = select_run(list_runs(tmp_path), tolerance=0.01)
    assert {r.name for r in selection.candidates} == {"best", "close"}
    assert selection.winner.name == "close" and "McNemar" in selection.reason and "its gap" in selection.reason
    other = [f"q{i}.jpg" for i in range(100)]  # different test photos: no paired test, only the tolerance
    paired_run("elsewhere", other[:8], train_acc=0.93, test_photos=other)
    assert "elsewhere" not in {r.name for r in select_run(list_runs(tmp_path), tolerance=0.01).candidates}


def test_mcnemar_ties_no_run_outside_the_best_runs_interval(tmp_path):
    from photoclass.evaluation.stats import wilson_interval

    photos = [f"p{i}.jpg" for i in range(16)]
    for name, wrong, train_acc in (("best", photos[:1], 1.0), ("bad", photos[:6], 0.6)):
        run = fake_run(tmp_path, name, test_acc=1 - len(wrong) / 16, train_acc=train_acc)
        result = json.loads((run / "test.json").read_text())
        result["test"]["accuracy_interval"] = list(wilson_interval(16 - len(wrong), 16))
        (run / "test.json").write_text(json.dumps({**result, "wrong_paths": wrong}))
        (run / "split.csv").write_text(
            "path,label,split,group,status,reason\n" + "".join(f"{p},a,test,{i},ok,\n" for i, p in enumerate(photos))
        )
    # 10 of 16 against 15 of 16: McNemar's p is 0.06, but 62.5% lies below best's interval (71.7-98.9%)
    selection = select_run(list_runs(tmp_path), tolerance=0.01)
    assert selection.winner.name == "best" and [r.name for r in selection.candidates] == ["best"]


def test_runs_on_different_data_sets_are_ranked_each_on_its_own_and_select_will_not_mix_them(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "flowers-good", test_acc=0.90, train_acc=0.90, data="/photos/flowers")
    fake_run(runs, "flowers-mid", test_acc=0.80, train_acc=0.80, data="/photos/flowers")
    fake_run(runs, "flowers-bad", test_acc=0.70, train_acc=0.70, data="/photos/flowers")
    fake_run(runs, "bees-good", test_acc=0.85, train_acc=0.85, data="/photos/hymenoptera")  # between two flowers
    fake_run(runs, "bees-bad", test_acc=0.60, train_acc=0.60, data="/photos/hymenoptera")
    board = list_runs(runs)
    assert [(data, rank, r.name) for data, rank, r in board.ranked()] == [
        ("flowers", 1, "flowers-good"),
        ("flowers", 2, "flowers-mid"),
        ("flowers", 3, "flowers-bad"),
        ("hymenoptera", 1, "bees-good"),
        ("hymenoptera", 2, "bees-bad"),
    ]
    assert [r.name for r in list_runs(runs, sort="error")] == [r.name for r in board]  # every order keeps them apart
    with pytest.raises(
        PhotoclassError,
        match=r"^Cannot select across data sets: runs on 2 data sets: flowers \(3 runs\), "
        r"hymenoptera \(2 runs\); .* HINT: pass --data FOLDER \(or its name\) to choose among one, "
        r"e\.g\. --data flowers\.$",
    ):
        select_run(board)
    assert select_run(list_runs(runs, data="hymenoptera")).winner.name == "bees-good"
    assert select_run(list_runs(runs, data="/photos/flowers")).winner.name == "flowers-good"
    assert "on hymenoptera" in select_run(list_runs(runs, data="hymenoptera")).reason

    table = cli("runs", runs).stdout.splitlines()
    assert table[0].split()[:3] == ["data", "#", "run"]
    assert [line.split()[:3] for line in table[1:6]] == [
        [data, str(rank), str(r.path)] for data, rank, r in board.ranked()
    ]
    assert table[-1].startswith("(runs on 2 data sets, each ranked on its own: flowers (3 runs), hymenoptera (2 runs)")
    rows = json.loads(cli("runs", runs, "--json").stdout)
    assert [(r["data"], r["data_source"], r["rank"]) for r in rows][2:4] == [
        ("flowers", "/photos/flowers", 3),
        ("hymenoptera", "/photos/hymenoptera", 1),
    ]
    refused = cli("select", runs, "--copy-to", tmp_path / "best")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1 and "--data FOLDER" in refused.stderr
    assert "flowers (3 runs), hymenoptera (2 runs)" in refused.stderr and not (tmp_path / "best").exists()
    picked = cli("select", runs, "--data", "hymenoptera", "--copy-to", tmp_path / "best")
    assert picked.returncode == 0 and picked.stdout.startswith(str(runs / "bees-good"))
    assert json.loads((tmp_path / "best" / "config.json").read_text())["data"] == "/photos/hymenoptera"
    missing = cli("select", runs, "--data", "tulips")
    assert missing.returncode == 2 and "No finished runs on tulips" in missing.stderr
    assert "the runs found are on flowers (3 runs), hymenoptera (2 runs)" in missing.stderr


def test_a_copy_of_a_data_folder_under_the_same_name_is_another_data_set(tmp_path):
    fake_run(tmp_path, "clean", test_acc=0.80, train_acc=0.80, data="/photos/flowers")
    fake_run(tmp_path, "corrupted", test_acc=0.60, train_acc=0.60, data="/corrupted/flowers")
    board = list_runs(tmp_path)
    assert [(data, rank) for data, rank, _ in board.ranked()] == [("/corrupted/flowers", 1), ("/photos/flowers", 1)]
    with pytest.raises(
        PhotoclassError,
        match=r"runs on 2 data sets: /corrupted/flowers \(1 run\), "
        r"/photos/flowers \(1 run\); .* HINT: pass --data FOLDER",
    ):
        select_run(list_runs(tmp_path, data="flowers"))  # the name alone matches both
    assert select_run(list_runs(tmp_path, data="/corrupted/flowers")).winner.name == "corrupted"


def test_runs_select_and_compare_on_two_real_data_folders(tmp_path):
    import photoclass

    ants = make_flat(tmp_path / "ants-bees", per_class=6)
    flowers = make_flat(tmp_path / "flowers", per_class=6, start_seed=100)
    options = {
        "model": "compact-cnn",
        "image_size": 32,
        "epochs": 1,
        "threads": 1,
        "cache_dir": tmp_path / "cache",
        "verbose": False,
        "progress": False,
    }
    for name, data, lr in (("a1", ants, 1e-3), ("a2", ants, 1e-2), ("f1", flowers, 1e-3)):
        photoclass.train(data, out=tmp_path / "runs" / name, lr=lr, **options)
    runs = tmp_path / "runs"
    table = cli("runs", runs).stdout.splitlines()
    assert sorted(line.split()[:2] for line in table[1:4]) == [["ants-bees", "1"], ["ants-bees", "2"], ["flowers", "1"]]
    refused = cli("select", runs)
    assert refused.returncode == 2 and "runs on 2 data sets: ants-bees (2 runs), flowers (1 run)" in refused.stderr
    picked = cli("select", runs, "--data", ants)  # the folder, as given to train
    assert picked.returncode == 0 and picked.stdout.split()[0] in (str(runs / "a1"), str(runs / "a2"))
    assert "on ants-bees" in picked.stdout
    assert cli("select", runs, "--data", "flowers").stdout.startswith(str(runs / "f1"))

    result = cli("compare", runs / "a1", runs / "a2", runs / "f1", "--out", tmp_path / "compare.html")
    assert result.returncode == 0, result.stderr
    assert "NOTE: these runs are on 2 data sets: ants-bees (2 runs), flowers (1 run)" in result.stdout
    page = (tmp_path / "compare.html").read_text()
    assert "<b>NOTE:</b>" in page and "Selected on ants-bees:" in page and "Selected on flowers" not in page
    assert page.count("class=win") == 1


@pytest.mark.parametrize("count, says", [(1, "1 odd file converted"), (2, "2 odd files converted")])
def test_the_reports_data_facts_count_one_in_the_singular(count, says):
    from photoclass.evaluation.html_report import _data_section

    rows = [
        {"path": f"a{i}.jpg", "status": "ok", "label": "a", "split": "train", "group": "g", "reason": ""}
        for i in range(2)
    ] + [{"path": "b.jpg", "status": "skipped", "label": "", "split": "", "group": "", "reason": "truncated"}]
    facts = _data_section({"converted": count, "leaks": {"naive_split_test_with_twin_in_train": 1}}, rows, ["a"])
    assert says in facts and "2 usable photos, 1 skipped" in facts
    assert "1 group of duplicate or near-duplicate photos (2 photos)" in facts
    assert "would have put 1 test photo beside" in facts


def test_image_grid_captions_are_wrapped_to_fit_their_tiles(tmp_path, monkeypatch):
    from itertools import combinations

    import numpy as np

    from photoclass.evaluation import plots

    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig))
    captions = [
        "golden_retriever -> labrador_retriever (0.61)",
        "cumulonimbus_clouds -> partly_cloudy_sky (0.55)",
        "photos_of_the_eiffel_tower_at_night_in_winter -> tokyo_tower_on_a_summer_evening (0.71)",
        "rain -> shine (0.99)",
    ]
    plots.image_grid([np.zeros((64, 64, 3), np.uint8)] * 4, captions, tmp_path / "grid.png", columns=4, title="t")
    fig = kept[0]
    fig.canvas.draw()
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    boxes = [t.get_window_extent() for t in titles]
    plots._pyplot().close(fig)
    assert not any(a.overlaps(b) for a, b in combinations(boxes, 2))  # side by side, not over each other
    lines = [t.get_text().splitlines() for t in titles]
    assert all(len(line) <= plots.CAPTION_CHARS for caption in lines for line in caption)
    assert lines[2][-1].startswith("...") and lines[2][-1].endswith("(0.71)")  # the confidence kept


def test_the_reports_configuration_shows_an_unset_option_as_default_not_none():
    import dataclasses

    from photoclass.config import PrepareConfig, TrainConfig
    from photoclass.evaluation.html_report import _configuration_section

    train = dataclasses.asdict(TrainConfig(strategy="features", dropout=None))  # dropout: unused, and unset
    table = _configuration_section(train, dataclasses.asdict(PrepareConfig()))
    assert "None" not in table
    assert "<td>weights</td><td class=sub title='a timm backbone&#x27;s pretrained weights" in table
    assert (
        "<td>dropout</td><td class=sub title='dropout rate of the model&#x27;s head (default: the model&#x27;s own)'>default</td>"
        in table
    )
