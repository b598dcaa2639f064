"""What a new user trips on: options that do nothing, a report of what did not run, messages
that could say more. Each test is one thing found by trying photoclass from the README alone."""

import json
import re
import warnings

import pytest

import photoclass
from photoclass.cli import flag_spelling, main
from photoclass.config import TrainConfig
from photoclass.config.applies import unused_options

from conftest import make_flat, synthetic_photo, save

pytestmark = pytest.mark.trains


@pytest.fixture(scope="module")
def features_run(tmp_path_factory):
    """The default strategy (frozen Lite0 features, the L-BFGS head), trained with options
    given on purpose that it does not use, through the CLI; its stdout and the run."""
    base = tmp_path_factory.mktemp("newuser")
    data = make_flat(base / "data", per_class=8)
    return base, data


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_option_given_on_purpose_that_does_nothing_gets_one_note(features_run, capsys):
    base, data = features_run
    code, out, _ = _cli(
        [
            "train",
            data,
            "--model",
            "efficientnet-lite0",
            "--epochs",
            "20",
            "--lr",
            "0.01",
            "--augment",
            "strong",
            "--out",
            base / "noted",
            "--cache-dir",
            base / "cache",
            "--no-track",
        ],
        capsys,
    )
    assert code == 0
    notes = [line for line in out.splitlines() if line.startswith("NOTE:")]
    assert [n.split()[1] for n in notes] == ["--epochs", "--lr", "--augment"]
    assert notes[0] == (
        "NOTE: --epochs has no effect: the classifier is fitted in one solve (--head-solver lbfgs), "
        "not over epochs. HINT: --epochs applies with --head-solver epochs or --strategy scratch or "
        "finetune"
    )
    assert out.index("NOTE: --epochs") < out.index("classifier: logistic regression")  # before training starts
    assert "augmentation:" not in out  # the note says it; no second line


def test_defaults_get_no_note_and_the_augmentation_line_is_a_sentence(features_run, capsys):
    base, data = features_run
    code, out, _ = _cli(
        [
            "train",
            data,
            "--model",
            "efficientnet-lite0",
            "--out",
            base / "plain",
            "--cache-dir",
            base / "cache",
            "--no-track",
        ],
        capsys,
    )
    assert code == 0 and "NOTE:" not in out
    assert (
        "augmentation: none, as the classifier is fitted once on each photo's cached features "
        "(--strategy lpft or scratch augments the pixels)"
    ) in out


def test_the_python_api_warns_the_same_way_in_its_own_names(features_run):
    base, data = features_run
    with pytest.warns(photoclass.UnusedOptionWarning, match=r"^`finetune_epochs` has no effect: .*`strategy` lpft"):
        photoclass.train(
            data,
            model="efficientnet-lite0",
            finetune_epochs=3,
            out=base / "api",
            cache_dir=base / "cache",
            verbose=False,
            progress=False,
            track=False,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", photoclass.UnusedOptionWarning)  # a default: nothing to say
        photoclass.train(
            data,
            model="efficientnet-lite0",
            out=base / "api2",
            cache_dir=base / "cache",
            verbose=False,
            progress=False,
            track=False,
        )


def test_the_report_shows_what_ran(features_run, capsys):
    base, _ = features_run
    run = base / "noted"
    report = (run / "report.html").read_text()
    classifier = json.loads((run / "classifier.json").read_text())
    assert f"C = {classifier['C']:g}" in report and len(classifier["cv_accuracy"]) >= 5
    assert (run / "plots" / "regularization.png").is_file()
    assert not (run / "plots" / "learning_curves.png").exists() and "Learning curves" not in report
    assert not (run / "plots" / "augmentation.png").exists() and "Augmentation preview" not in report
    folded = report[report.index("<details id=unused>") :]
    folded = folded[: folded.index("</details>")]
    for name in ("epochs", "lr", "optimizer", "schedule", "dropout", "augment", "finetune_lr"):
        assert f"<td>{name}</td>" in folded, name
    applied = report[report.index("<h2>Configuration</h2>") : report.index("<details id=unused>")]
    assert "<td>epochs</td>" not in applied and "<td>model</td>" in applied and "<td>seed</td>" in applied
    meta = json.loads((run / "model.json").read_text())
    parameters = re.search(r"([\d,]+) parameters, ([\d,]+) trained and ([\d,]+) frozen", report)
    total, trained, frozen = (int(g.replace(",", "")) for g in parameters.groups())
    assert trained == meta["trained_parameters"] < frozen and trained + frozen == total


def test_a_run_trained_over_epochs_keeps_its_curves_and_preview(tmp_path):
    data = make_flat(tmp_path / "data", per_class=6)
    photoclass.train(
        data,
        model="compact-cnn",
        image_size=32,
        epochs=2,
        threads=1,
        out=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        verbose=False,
        progress=False,
        track=False,
    )
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Learning curves" in report and "Augmentation preview" in report and "<details id=unused>" in report
    assert "How the classifier was fitted" not in report
    assert re.search(r"([\d,]+) parameters, \1 trained and 0 frozen", report)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            "train DATA --epcohs 20",
            "photoclass train: error: unrecognized arguments: --epcohs 20 (--epcohs: did you mean "
            "--epochs?). HINT: photoclass train --help",
        ),
        ("train DATA --epoch 20", "did you mean --epochs?"),  # never taken as an abbreviation
        ("trian DATA", "invalid choice: 'trian'; did you mean train?"),
        ("predict RUN x --format jsn", "invalid choice: 'jsn'; did you mean json?"),
        (
            "runs --sortt error",
            "photoclass runs: error: unrecognized arguments: --sortt (--sortt: did you mean "
            "--sort?). HINT: photoclass runs --help",
        ),  # 'error' is taken as a ROOT
    ],
)
def test_a_misspelt_flag_or_command_suggests_the_nearest(argv, expected, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv.split())
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1 and expected in err


def test_errors_on_the_command_line_use_flag_spelling(tmp_path, capsys):
    only = make_flat(tmp_path / "one", per_class=3, classes=("cloudy",))
    code, _, err = _cli(["prepare", only, "--out", tmp_path / "p", "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 2 and "pass --label-regex for labels in file names" in err and "label_regex" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _cli(["prepare", empty, "--out", tmp_path / "p2", "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 2 and "No images found" in err and "HINT: pass the folder that holds the photos" in err
    assert (
        flag_spelling("`val_size` + `test_size` must ... Received: val_size=0.5")
        == "--val-size + --test-size must ... Received: --val-size=0.5"
    )
    assert flag_spelling("see runs/image_size=3 and `unknown_name`") == "see runs/image_size=3 and `unknown_name`"


def test_an_unknown_python_option_names_the_nearest():
    with pytest.raises(
        photoclass.PhotoclassError, match=r"Unknown option\(s\) \['epoch'\]. HINT: did you mean `epochs`"
    ):
        photoclass.train("nowhere", epoch=3)


@pytest.mark.parametrize(
    "strategy, solver, unused, used",
    [
        (
            "features",
            "lbfgs",
            {"epochs", "lr", "dropout", "augment", "finetune_epochs", "finetune_blocks"},
            {"head_solver", "batch_size", "tta", "seed"},
        ),
        ("features", "epochs", {"finetune_epochs", "augment"}, {"epochs", "lr", "dropout", "head_solver"}),
        (
            "lpft",
            "lbfgs",
            {"epochs", "lr", "finetune_blocks"},
            {"finetune_epochs", "finetune_lr", "dropout", "augment"},
        ),
        ("scratch", "lbfgs", {"head_solver", "finetune_lr", "finetune_blocks"}, {"epochs", "lr", "augment", "dropout"}),
        ("finetune", "lbfgs", {"finetune_epochs", "head_solver", "augment"}, {"epochs", "finetune_blocks"}),
    ],
)
def test_which_options_each_strategy_uses(strategy, solver, unused, used):
    found = unused_options(TrainConfig(strategy=strategy, head_solver=solver))
    assert unused <= set(found) and not used & set(found)
    assert all(why.startswith(("has no effect: ", "applies in part: ")) and "HINT" in why for why in found.values())


def test_a_given_split_is_said_to_be_kept(tmp_path, capsys):
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        for c, name in enumerate(("cat", "dog")):
            for i in range(n):
                save(synthetic_photo(100 * c + i + hash(split) % 50, cls=c), tmp_path / "d" / split / name / f"{i}.jpg")
    code, out, _ = _cli(["prepare", tmp_path / "d", "--out", tmp_path / "p", "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 0 and "(layout: split; the data's own train/val/test splits, kept)" in out.splitlines()[0]


def test_a_printed_confidence_never_contradicts_the_threshold(tmp_path):
    from photoclass.cli import format_predictions
    from photoclass.inference.predictor import Prediction
    from photoclass.inference.sort import sort_into

    photo = save(synthetic_photo(0), tmp_path / "photos" / "p.jpg")
    near = [Prediction(str(photo), top=[("cat", p), ("dog", 1 - p)]) for p in (0.89961, 0.8994)]
    table = format_predictions(near, "table")
    assert "0.900" in table and "0.899" in table
    counts = sort_into(near, tmp_path / "sorted", min_confidence=0.9)
    assert counts == {"cat": 1, "_unsure": 1}  # shown 0.900: sorted; shown 0.899: unsure
