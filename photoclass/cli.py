"""The command line: parse, call the Python API, print. No logic of its own."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import difflib
import io
import json
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from .config import AUDIT_SKIPS, PrepareConfig, TrainConfig
from .core.errors import PhotoclassError, UnusedOptionWarning
from .core.version import __version__

_TYPES = {"int": int, "float": float, "str": str}
_SHOW_WARNING = warnings.showwarning


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, naming the command's own --help, and the nearest
    name for a misspelt command or choice. Options are never abbreviated: `--epoch` is not
    silently `--epochs`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            word, choices = wrong.group(1), re.findall(r"'([^']*)'", wrong.group(2))
            message = (
                f"{message[: wrong.start()]}invalid choice: {word!r}{_did_you_mean(word, choices)} "
                f"(choose from {', '.join(choices)})"
            )
        self.exit(2, f"{self.prog}: error: {message}. HINT: {self.prog} --help\n")


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _unknown_options(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Exit with one line naming the unknown words, the nearest flag of the subcommand and its --help."""
    command = parser.subcommands[args.command]
    flags = [f for action in command._actions for f in action.option_strings if f.startswith("--")]  # noqa: SLF001
    hints = [
        f"{word}: did you mean {close[0]}?"
        for word in extra
        if word.startswith("-")
        for close in [difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.6)]
        if close
    ]
    command.error(f"unrecognized arguments: {' '.join(extra)}" + (f" ({'; '.join(hints)})" if hints else ""))


def add_config_options(parser: argparse.ArgumentParser, *configs, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the config dataclasses (`image_size` -> `--image-size`).

    Every flag defaults to None, meaning "not given": the API applies its own (and the
    model's) defaults, which the help shows.
    """
    seen = set(skip)  # and a field in two configs (seed) gets one flag
    for config in configs:
        for f in dataclasses.fields(config):
            if f.name in seen:
                continue
            seen.add(f.name)
            flag, default = "--" + f.name.replace("_", "-"), f.default
            help_text = f.metadata.get("help", "")
            if f.type in ("bool", "bool | None"):
                shown = "auto" if default is None else "on" if default else "off"
                parser.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=None, help=f"{help_text} (default: {shown})"
                )
                continue
            if f.type.startswith("tuple"):  # repeatable
                parser.add_argument(
                    flag, action="append", default=None, metavar=f.metadata.get("metavar"), help=help_text
                )
                continue
            shown = "" if default is None else f" (default: {default})"
            parser.add_argument(
                flag,
                type=_TYPES[f.type.replace(" | None", "")],
                default=None,
                choices=f.metadata.get("choices"),
                metavar=f.metadata.get("metavar"),
                help=help_text + shown,
            )


def given_options(args: argparse.Namespace, *configs, skip: tuple[str, ...] = ()) -> dict:
    """The config fields given on the command line."""
    names = {f.name for config in configs for f in dataclasses.fields(config)} - set(skip)
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its name and help; `arguments` adds its own arguments, then one flag per
    field of `configs` (less `skip`) is generated; `handler` runs it and returns the exit status."""

    name: str
    handler: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None]
    help: str
    description: str | None = None
    configs: tuple[type, ...] = ()
    skip: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {}  # by name, in the order `photoclass --help` lists them


def command(
    name: str,
    arguments: Callable[[argparse.ArgumentParser], None],
    *,
    help: str,
    description: str | None = None,
    configs: tuple[type, ...] = (),
    skip: tuple[str, ...] = (),
):
    """Register the decorated function as the handler of the subcommand `name`."""

    def register(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = Command(name, handler, arguments, help, description, configs, skip)
        return handler

    return register


def _add_device_options(p: argparse.ArgumentParser, *, precision: bool = False) -> None:
    p.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps (default: %(default)s)",
    )
    if precision:
        from .core.device import PRECISIONS

        p.add_argument(
            "--precision",
            default="auto",
            choices=PRECISIONS,
            help="auto: as the run was trained and tested, where this CPU or GPU computes it natively; "
            "else fp32 (default: %(default)s)",
        )


def _add_tta_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average each photo's prediction with its mirror's (twice the work; default: as the "
        "run's test was measured, on for small-resnet)",
    )


def _add_tracking_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow store (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)",
    )
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")


def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="folder of photos")
    parser.add_argument("--out", metavar="DIR", help="output folder (default prepared/<DATA name>)")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="decode and fingerprint the photos on a Ray cluster (ADDRESS, or 'local'), whose workers see "
        "the same files; duplicates are grouped and the split made here. Needs photoclass[ray]",
    )
    parser.add_argument(
        "--keep-pixels",
        action="store_true",
        help="also keep the decoded photos in the cache (200 KB a photo at 260 px), ready for training "
        "that reads them every epoch (lpft, finetune, scratch); the default strategy needs none",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


@command(
    "prepare",
    _prepare_arguments,
    help="scan, check, deduplicate and split a folder of photos",
    description="Scan DATA, decode and fingerprint every photo, group "
    "duplicates and write DIR/manifest.csv with a fair split.",
    configs=(PrepareConfig,),
)
def cmd_prepare(args) -> int:
    from .data.prepare import prepare
    from .data.summary import format_summary

    out = Path(args.out) if args.out else Path("prepared") / Path(args.data).resolve().name
    if args.ray and args.keep_pixels:
        raise PhotoclassError(
            "--ray keeps no pixels: the cluster's workers send back fingerprints. HINT: drop "
            "--keep-pixels; training decodes what it needs."
        )
    dataset = prepare(
        args.data,
        out=out,
        config=PrepareConfig(**given_options(args, PrepareConfig)),
        pixels=args.keep_pixels,
        ray=args.ray,
    )
    print(json.dumps(dataset.summary, indent=2, ensure_ascii=False) if args.json else format_summary(dataset.summary))
    return 0


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", nargs="?", help="folder of photos, or one written by prepare")
    parser.add_argument("--out", metavar="RUN", help="run directory (default runs/<model>-<time>)")
    parser.add_argument(
        "--resume",
        metavar="RUN",
        help="continue an interrupted run from its last.ckpt (with --epochs N: a finished one, to N epochs)",
    )
    parser.add_argument(
        "--compare-to",
        metavar="RUN",
        help="a finished run (say, before --corrections) whose test figures the report sets beside this "
        "run's: on the whole test split and on the test photos whose labels did not change",
    )
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        metavar="S,S,...",
        help="one run per seed, and a summary run "
        "with the mean, spread and 95%% interval (e.g. 0,1,2); with --folds K alone: one run per fold",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="data-parallel over N processes on this machine: "
        "runs torchrun --standalone --nproc-per-node N (default: one process)",
    )
    _add_tracking_options(parser)


@command(
    "train",
    _train_arguments,
    help="train and evaluate a model on a folder of photos",
    description="Prepare DATA (reusing the cache), train MODEL, evaluate it on "
    "the held-out test split and write a run directory.",
    configs=(TrainConfig, PrepareConfig),
)
def cmd_train(args) -> int:
    from .core import distributed
    from .runs.rundir import RunDir
    from .workflows.train import train

    if args.nproc is not None and args.nproc < 1:
        raise PhotoclassError(f"--nproc must be at least 1. Received: {args.nproc}")
    if args.nproc and args.nproc > 1 and not distributed.processes().active:
        return _launch_torchrun(args.nproc, args.argv)
    options = given_options(args, TrainConfig, PrepareConfig)
    if args.seeds or (args.folds and args.fold is None):  # a summary run over seeds or all the folds
        from .workflows.repeat import train_repeated

        if args.resume or not args.data:
            raise PhotoclassError(
                "--seeds and --folds need DATA and cannot --resume. HINT: photoclass train DATA --seeds 0,1,2"
            )
        options.pop("folds", None)
        train_repeated(
            args.data, seeds=args.seeds or (), folds=args.folds or 0, out=args.out, track=_track(args), **options
        )
        return 0
    if args.resume:
        result = train(resume=args.resume, track=_track(args), **options)
    else:
        if not args.data:
            raise PhotoclassError(
                "train needs DATA, a folder of photos, or --resume RUN. HINT: photoclass train examples/weather"
            )
        result = train(args.data, out=args.out, track=_track(args), compare_to=args.compare_to, **options)
    if result.interrupted:
        return 130
    if result.test is None:  # a process of a torchrun group other than the main one: it wrote nothing
        return 0
    print(f"done in {result.seconds:.1f} s (data, training, test, report)")
    if result.run.exists(RunDir.REPORT):
        print(f"report: {result.run / RunDir.REPORT}")
    return 0


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must be integers separated by commas, e.g. 0,1,2; got {text!r}"
        ) from None
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be integers of 0 or more, e.g. 0,1,2; got {text!r}")
    return seeds


def _launch_torchrun(nproc: int, argv: list[str]) -> int:
    """`torchrun --standalone --nproc-per-node N -m photoclass ARGV`, without --nproc."""
    import subprocess

    rest, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--nproc":
            skip = True
        elif not word.startswith("--nproc="):
            rest.append(word)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "photoclass",
        *rest,
    ]
    return subprocess.call(command)


def _track(args) -> bool | str | None:
    return False if args.no_track else args.tracking_uri


def _lr_find_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="folder of photos")
    parser.add_argument("--out", default="lr-find.png", metavar="FILE", help="the plot (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=100, help="batches to raise the rate over (default: %(default)s)")
    parser.add_argument("--start-lr", type=float, default=1e-7, help="default: %(default)s")
    parser.add_argument("--end-lr", type=float, default=1.0, help="default: %(default)s")


@command(
    "lr-find",
    _lr_find_arguments,
    help="the learning-rate range test: loss against rate, and a suggestion",
    description="Train the part of MODEL that `train` would fit, raising the rate every "
    "step from --start-lr to --end-lr; plot the loss and suggest a rate.",
    configs=(TrainConfig, PrepareConfig),
)
def cmd_lr_find(args) -> int:
    from .workflows.lr_find import lr_find

    finding = lr_find(
        args.data,
        out=args.out,
        steps=args.steps,
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        **given_options(args, TrainConfig, PrepareConfig),
    )
    print(
        f"suggested learning rate: {finding.suggestion:.2e} (a tenth of the rate at the lowest loss); "
        f"use --lr {finding.suggestion:.1e}"
    )
    print(f"plot: {finding.plot}")
    return 0


def _audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="folder of photos")
    parser.add_argument(
        "--out", default="audit", metavar="DIR", help="label_issues.csv, audit.html, audit.json (default: %(default)s)"
    )
    parser.add_argument(
        "--model", default=TrainConfig.model, metavar="NAME", help="the pretrained features (default: %(default)s)"
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--top", type=int, default=10, help="suspects printed (default: %(default)s)")
    _add_device_options(parser)


@command(
    "audit",
    _audit_arguments,
    help="find likely mislabeled photos, conflicting duplicates and outliers",
    description="Rank every photo of DATA by how likely its label is wrong (cleanlab's "
    "confident learning on out-of-fold probabilities from frozen pretrained features, in "
    "folds that keep duplicates together). DATA is never changed.",
    configs=(PrepareConfig,),
    skip=AUDIT_SKIPS,
)
def cmd_audit(args) -> int:
    from .runs.rundir import RunDir
    from .workflows.audit import audit

    if args.folds < 2:
        raise PhotoclassError(f"--folds must be at least 2. Received: {args.folds}")
    if args.top < 0:
        raise PhotoclassError(f"--top must be 0 or more. Received: {args.top}")
    result = audit(
        args.data,
        out=args.out,
        model=args.model,
        folds=args.folds,
        seed=args.seed,
        device=args.device,
        **given_options(args, PrepareConfig, skip=AUDIT_SKIPS),
    )
    print(
        f"{len(result.suspects)} photos; cleanlab flags {len(result.flagged)} as likely mislabeled; "
        f"{len(result.conflicts)} duplicate groups carry different labels; the {len(result.outliers)} least typical "
        "photos (outliers, highest outlier_score first) are on the page"
    )
    if args.top:
        width = max(len(s["path"]) for s in result.suspects[: args.top])
        print(f"\n{'path':<{width}}  {'given':<14}{'looks like':<14}{'score':>7}  flagged")
        for s in result.suspects[: args.top]:
            print(
                f"{s['path']:<{width}}  {s['given_label']:<14}{s['suggested_label']:<14}{s['score']:>7.3f}  "
                f"{'yes' if s['flagged'] else ''}"
            )
    print(f"\nranked list: {result.out / RunDir.AUDIT_ISSUES}\nwith the photos: {result.out / RunDir.AUDIT_PAGE}")
    return 0


def _runs_arguments(parser: argparse.ArgumentParser) -> None:
    from .experiments.leaderboard import SORT_KEYS

    parser.add_argument("roots", metavar="ROOT", nargs="*", default=["runs"])
    parser.add_argument(
        "--data",
        metavar="FOLDER",
        help="only runs on this data: its folder (or CSV, array file) or "
        "that folder's name; without it, each data set is ranked on its own",
    )
    parser.add_argument(
        "--sort",
        choices=SORT_KEYS,
        default="select",
        help="select (default): the order `photoclass select` prefers (lowest test error; within "
        "--tolerance, the smallest gap); error: by test error alone",
    )
    parser.add_argument("--tolerance", type=float, default=0.01, help="of the select order (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")


@command(
    "runs",
    _runs_arguments,
    help="the leaderboard: finished runs with their test figures",
    description="List finished runs under ROOT (default runs/), best first.",
)
def cmd_runs(args) -> int:
    from .experiments.leaderboard import list_runs

    board = list_runs(*args.roots, data=args.data, sort=args.sort, tolerance=args.tolerance)
    print(json.dumps(board.to_dicts(), indent=2) if args.json else board.to_text())
    return 0


def _select_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("roots", metavar="ROOT", nargs="*", default=["runs"])
    parser.add_argument(
        "--data",
        metavar="FOLDER",
        help="only runs on this data: its folder (or CSV, array file) or "
        "that folder's name; needed where the runs are on several data sets",
    )
    parser.add_argument("--tolerance", type=float, default=0.01, help="in accuracy (default: %(default)s, one point)")
    parser.add_argument("--copy-to", metavar="DIR", help="copy the winning run there (e.g. best/)")
    parser.add_argument("--json", action="store_true", help="print the winner, the reason and the candidates as JSON")


@command(
    "select",
    _select_arguments,
    help="pick the run with the lowest test error, then the smallest gap",
    description="Among runs within TOLERANCE of the lowest test error, pick the one "
    "with the smallest generalization gap; say why.",
)
def cmd_select(args) -> int:
    from .experiments.leaderboard import copy_run, list_runs, select_run

    selection = select_run(list_runs(*args.roots, data=args.data), tolerance=args.tolerance)
    if args.json:
        print(
            json.dumps(
                {
                    "winner": selection.winner.to_dict(),
                    "reason": selection.reason,
                    "candidates": [str(r.path) for r in selection.candidates],
                },
                indent=2,
            )
        )
    else:
        print(selection.reason)
    if args.copy_to:
        print(
            f"copied to {copy_run(selection.winner.path, args.copy_to)}", file=sys.stderr if args.json else sys.stdout
        )
    return 0


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA")
    parser.add_argument("--trials", type=int, default=20, help="default: %(default)s")
    parser.add_argument("--space", metavar="FILE", help="JSON or TOML search space (default: built in)")
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: an RDB URL, or journal:PATH for a journal "
        "file on a shared file system (default sqlite:///OUT/sweeps.db)",
    )
    parser.add_argument("--study", metavar="NAME", help="study name; reuse it to continue a sweep")
    parser.add_argument("--out", default="runs", metavar="DIR", help="trial runs go to DIR/STUDY/ (default: runs)")
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="start no trial after this long (default: none)"
    )
    _add_tracking_options(parser)


@command(
    "sweep",
    _sweep_arguments,
    help="search models and options with Optuna; each trial is a run",
    description="Search the space (models, learning rate, augmentation, dropout, batch "
    "and image size) for the best validation accuracy, pruning poor trials. Any "
    "training option given is fixed for every trial.",
    configs=(TrainConfig, PrepareConfig),
)
def cmd_sweep(args) -> int:
    from .workflows.sweep import sweep

    fixed = given_options(args, TrainConfig, PrepareConfig)
    sampler_seed = fixed.pop("seed", 0)
    study = sweep(
        args.data,
        trials=args.trials,
        space=args.space,
        storage=args.storage,
        study=args.study,
        out=args.out,
        timeout=args.timeout,
        track=_track(args),
        seed=sampler_seed,
        **fixed,
    )
    states = [t.state.name for t in study.trials]
    print(
        f"study {study.study_name}: {states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, "
        f"{states.count('FAIL')} failed"
    )
    if states.count("COMPLETE"):
        best = study.best_trial
        print(
            f"best: trial {best.number}, val accuracy {best.value:.4f}, test accuracy "
            f"{best.user_attrs.get('test_accuracy', float('nan')):.4f}, run {best.user_attrs['run']}"
        )
        rest = " (the other searched options at train's defaults)" if best.user_attrs.get("defaults") else ""
        print(f"  {best.params}{rest}")
    return 0


def _track_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", metavar="RUN", nargs="+")
    parser.add_argument("--tracking-uri", metavar="URI", help="default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")


@command("track", _track_arguments, help="log finished runs to MLflow (again)")
def cmd_track(args) -> int:
    from .experiments.tracking import track_run, tracking_uri

    for run in args.runs:
        print(f"{run}: MLflow run {track_run(run, uri=args.tracking_uri)} in {tracking_uri(args.tracking_uri)}")
    return 0


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN")


@command("report", _report_arguments, help="rebuild a run's report.html")
def cmd_report(args) -> int:
    from .evaluation.html_report import write_report

    print(f"report: {write_report(args.run)}")
    return 0


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", metavar="RUN", nargs="+")
    parser.add_argument("--out", default="compare.html", metavar="FILE", help="default: %(default)s")
    parser.add_argument("--tolerance", type=float, default=0.01, help="of the selection rule (default: %(default)s)")


@command("compare", _compare_arguments, help="one HTML page comparing runs")
def cmd_compare(args) -> int:
    from .experiments.compare import mixed_data_note, write_comparison

    print(f"comparison: {write_comparison(args.runs, args.out, tolerance=args.tolerance)}")
    if note := mixed_data_note(args.runs):
        print(f"NOTE: {note}")
    return 0


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN")
    parser.add_argument("--data", metavar="DIR", help="evaluate on every photo of this folder instead")
    parser.add_argument(
        "--outsiders",
        metavar="DIR",
        help="photos of none of the classes: how well the 'none of these' "
        "check tells them from the test photos (AUROC, shares accepted)",
    )
    parser.add_argument("--tta", action="store_true", help="average each test photo and its mirror")
    _add_device_options(parser, precision=True)
    parser.add_argument("--json", action="store_true", help="print the evaluation as JSON")


@command("evaluate", _evaluate_arguments, help="re-evaluate a saved run, on its test split or another folder")
def cmd_evaluate(args) -> int:
    from .evaluation.report import format_test
    from .workflows.evaluate import evaluate_outsiders, evaluate_run

    if args.outsiders:
        if args.data:
            raise PhotoclassError("--outsiders and --data are two different evaluations. HINT: run them one at a time.")
        found = evaluate_outsiders(args.run, args.outsiders)
        if args.json:
            print(json.dumps(found, indent=2))
            return 0
        on_accepted = found["test_accuracy_on_accepted"]
        print(
            f"'none of these' on {found['outsider_photos']} outside photos against {found['test_photos']} test photos "
            f"of {args.run}:\n"
            f"  AUROC {found['auroc']:.4f} (1: every outsider farther than every test photo)\n"
            f"  at the threshold {found['threshold']:.4f}: {found['outsiders_accepted']:.1%} of the outsiders and "
            f"{found['test_accepted']:.1%} of the test photos accepted as known\n"
            f"  test accuracy {found['test_accuracy']:.4f}, on the accepted photos "
            + (f"{on_accepted:.4f}" if on_accepted is not None else "-")
            + f"\nwritten to {found['written_to']}"
        )
        return 0
    evaluation = evaluate_run(args.run, args.data, tta=args.tta or None, device=args.device, precision=args.precision)
    if args.json:
        print(json.dumps(evaluation, indent=2))
    else:
        print(format_test(evaluation["test"], args.run))
        if "generalization_gap" in evaluation:
            print(f"generalization gap (train - test accuracy): {evaluation['generalization_gap']:+.4f}")
        print(f"written to {evaluation['written_to']}")
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    from .inference.engines import engine_names  # the choices of --engine and --format

    parser.add_argument("run", metavar="RUN")
    parser.add_argument(
        "--format",
        choices=engine_names(exports=True),
        default="onnx",
        help="onnx: ONNX Runtime; openvino: OpenVINO Runtime; litert: LiteRT (TensorFlow Lite: Android, "
        "edge boards) (default: %(default)s)",
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--int8",
        action="store_true",
        help="static INT8 (per-channel weights, 7-bit for onnx and openvino so that every CPU gives the "
        "same answers; calibrated on training photos: NNCF, or PT2E for LiteRT); kept only if it holds "
        "the answers and the accuracy",
    )
    kind.add_argument(
        "--bf16",
        action="store_true",
        help="OpenVINO only, on a CPU with native bf16 (AVX512-BF16 or "
        "AMX): float32 weights computed in bf16, checked so; kept only if it holds the answers",
    )
    parser.add_argument(
        "--out",
        metavar="PATH",
        help="default RUN/model.onnx, RUN/openvino/model.xml or RUN/model.tflite, with -int8 or -bf16 added",
    )


@command(
    "export",
    _export_arguments,
    help="export a run's model (ONNX, OpenVINO, LiteRT; fp32 or INT8), kept only if it "
    "gives PyTorch's answers on the run's photos",
)
def cmd_export(args) -> int:
    from .core.cpu import describe_cpu
    from .inference.export import export
    from .inference.verify import describe

    kind = f"{args.format}{' INT8' if args.int8 else ' bf16' if args.bf16 else ''}"
    found = export(
        args.run,
        args.format,
        int8=args.int8,
        bf16=args.bf16,
        out=args.out,
        announce=lambda: print(
            f"exporting {args.run} to {kind}, then checking it on the run's photos ...\n{describe_cpu()}",
            file=sys.stderr,
            flush=True,
        ),
    )
    print(f"kept {found['path']}: {describe(found)}")
    return 0


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    from .inference.engines import engine_names  # the choices of --engine and --format

    parser.add_argument("run", metavar="RUN", help="a run directory, or a model.onnx")
    _add_server_options(parser, guarded="/predict and /model")
    parser.add_argument("--top-k", type=int, default=3, help="classes in each answer (default: %(default)s)")
    parser.add_argument("--max-upload-mb", type=float, default=10, help="larger uploads get 413 (default: %(default)s)")
    parser.add_argument(
        "--max-queue", type=int, default=64, help="requests waiting beyond this get 503 (default: %(default)s)"
    )
    parser.add_argument(
        "--engine",
        choices=("auto", *engine_names(exports=True), *engine_names(exports=False)),
        default="auto",
        help="auto (default): the fastest of the run's verified exports (`photoclass export`) that hold "
        "on this CPU, else "
        "ONNX Runtime when installed (exports RUN/model.onnx once), else PyTorch",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30,
        metavar="S",
        help="an upload, or its answer, taking longer gets 408 or 504 (default: %(default)s)",
    )
    parser.add_argument(
        "--log-requests",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="print a line per request (default: on)",
    )
    _add_tta_option(parser)
    _add_device_options(parser, precision=True)


@command("serve", _serve_arguments, help="serve predictions over HTTP, with a web page at /")
def cmd_serve(args) -> int:
    import uvicorn

    from .serve.access import check_access
    from .serve.app import create_app

    if not args.max_upload_mb > 0:
        raise PhotoclassError(f"--max-upload-mb must be a positive number. Received: {args.max_upload_mb}")
    token = check_access(args.host, args.token, args.no_auth)
    app = create_app(
        args.run,
        top_k=args.top_k,
        max_bytes=int(args.max_upload_mb * 2**20),
        max_queue=args.max_queue,
        engine=args.engine,
        port=args.port,
        device=args.device,
        precision=args.precision,
        tta=args.tta,
        token=token,
        timeout=args.timeout,
    )
    guard = "token required" if token else "no token"
    print(
        f"serving {args.run} with {app.state.engine} at http://{args.host}:{args.port}/ ({guard}; Ctrl-C to stop)",
        flush=True,
    )
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="info" if args.log_requests else "warning", timeout_keep_alive=5
    )
    return 0


def _add_server_options(parser: argparse.ArgumentParser, guarded: str = "every request but the page's own") -> None:
    """--host, --port, --token and --no-auth: the same rules for every server (serve/access.py)."""
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s (this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"require `Authorization: Bearer TOKEN` on {guarded} (default: $PHOTOCLASS_TOKEN); "
        "needed to listen beyond this machine",
    )
    parser.add_argument("--no-auth", action="store_true", help="listen beyond this machine without a token, on purpose")


def _review_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run directory")
    parser.add_argument("--photos", metavar="DIR", help="a folder of new photos: their unsure and 'unknown' ones too")
    parser.add_argument(
        "--out", metavar="DIR", help="where corrections.csv is written, outside the data (default: RUN/review)"
    )
    _add_server_options(parser)
    _add_device_options(parser)


@command(
    "review",
    _review_arguments,
    help="a web page to look at likely mislabeled photos and mistakes, and fix labels into corrections.csv",
)
def cmd_review(args) -> int:
    from .workflows.review import review

    review(
        args.run,
        photos=args.photos,
        out=args.out,
        host=args.host,
        port=args.port,
        token=args.token,
        no_auth=args.no_auth,
        device=args.device,
        announce=lambda line: print(line, flush=True),
    )
    return 0


def _label_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data", metavar="DATA", help="unlabelled photos; or class folders plus loose photos; or a CSV (path,label)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="where labels.csv goes (outside DATA); resumable")
    parser.add_argument(
        "--classes", metavar="A,B,C", help="the class names (default: those the labels already known use)"
    )
    parser.add_argument("--model", metavar="NAME", help="the frozen backbone (default: training's default model)")
    _add_server_options(parser)
    parser.add_argument("--cache-dir", metavar="DIR", help="the decode and feature cache (default: the user's)")
    parser.add_argument("--log-requests", action="store_true", help="print a line per request")


@command("label", _label_arguments, help="label photos on a local page, in the order that teaches the model most")
def cmd_label(args) -> int:
    from .workflows.label import label

    label(
        args.data,
        out=args.out,
        classes=args.classes,
        model=args.model,
        host=args.host,
        port=args.port,
        token=args.token,
        no_auth=args.no_auth,
        cache_dir=args.cache_dir,
        log_requests=args.log_requests,
    )
    return 0


def _add_predict_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """predict's --ray, and the size of its pool of actors."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="with --out: predict on a Ray cluster (ADDRESS, or 'local' for this machine's cores), a pool of "
        "actors each holding the run's ONNX (or --engine openvino) export; needs photoclass[ray]",
    )
    parser.add_argument(
        "--actors",
        type=int,
        default=0,
        metavar="N",
        help="with --ray: predictors on the cluster, each with --threads threads (default: one per CPU)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, metavar="N", help="with --ray: threads of each actor (default: %(default)s)"
    )


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    from .inference.engines import engine_names  # the choices of --engine and --format

    parser.add_argument(
        "run",
        metavar="RUN",
        help="a run directory, a model.onnx from `photoclass export`, or "
        "'imagenet': the 1,000 ImageNet classes, no training (imagenet-lite0 for the smaller backbone)",
    )
    parser.add_argument("paths", metavar="PATH", nargs="+")
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="with RUN 'imagenet': any timm backbone whose weights carry an "
        "ImageNet-1k classifier, e.g. convnext_tiny.fb_in22k_ft_in1k (default: EfficientNet-Lite2)",
    )
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per photo (default: %(default)s)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", help="default: %(default)s")
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="write a row per photo to FILE (.csv, .jsonl or .parquet) as it "
        "goes, instead of printing; run again, it resumes, skipping the photos already there",
    )
    _add_predict_ray_arguments(parser)
    parser.add_argument("--sort-into", metavar="DIR", help="copy (never move) each photo into DIR/<predicted class>/")
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        metavar="P",
        help="with --sort-into: below P, copy into DIR/_unsure/ instead; compared with the confidence "
        "as printed, to three places (default: %(default)s)",
    )
    parser.add_argument(
        "--unknown",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mark photos far from every training photo 'unknown' (none of the classes), and sort them "
        "into DIR/_unknown/ (default: on, for runs trained with the check)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="default: %(default)s")
    parser.add_argument(
        "--engine",
        choices=(*engine_names(), "auto"),
        default="torch",
        help="onnx: ONNX Runtime, about twice as fast (exports RUN/model.onnx once); openvino: OpenVINO "
        "Runtime (exports and checks RUN/openvino/ once); litert: LiteRT (RUN/model.tflite, likewise); auto: "
        "the fastest of the run's verified exports, else ONNX Runtime when installed (default: %(default)s)",
    )
    _add_tta_option(parser)
    _add_device_options(parser, precision=True)


@command(
    "predict",
    _predict_arguments,
    help="predict photos with a trained run; optionally sort copies",
    description="Predict files, folders (recursively) and globs with RUN's model.",
)
def cmd_predict(args) -> int:
    from .core.atomic import check_writable
    from .data.outside import check_outside
    from .inference.predictor import open_predictor, trained_on
    from .inference.sort import check_min_confidence, sort_into

    check_min_confidence(args.min_confidence)
    # never among the photos predicted, nor the photos the run was trained on
    read = [*(p if Path(p).is_dir() else Path(p).parent for p in args.paths), trained_on(args.run)]
    if args.out:
        check_outside(args.out, *read, flag="--out")
    if args.sort_into:  # checked before predicting, then again for each photo's folder by sort_into
        check_outside(args.sort_into, *read, flag="--sort-into")
        check_writable(args.sort_into, hint="pass a folder for --sort-into")
    if args.ray:
        if not args.out:
            raise PhotoclassError(
                "--ray writes its predictions to a file. HINT: add --out results.csv (or .jsonl, .parquet)."
            )
        from .inference.ray_predict import RayPredictor, ray_engine

        predictor = RayPredictor(
            args.run,
            address=args.ray,
            engine=ray_engine(args.engine),
            actors=args.actors,
            threads=args.threads,
            batch_size=args.batch_size,
            unknown=args.unknown,
        )
        return _predict_to_file(predictor, args)
    predictor = open_predictor(
        args.run,
        engine=args.engine,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        tta=args.tta,
        backbone=args.model,
        unknown=args.unknown,
    )
    if args.out:
        return _predict_to_file(predictor, args)
    predictions = predictor.predict(args.paths, top_k=args.top_k)
    print(format_predictions(predictions, args.format))
    failed = [p for p in predictions if p.error]
    if failed and args.format == "table":
        print(f"\nskipped ({len(failed)}):", file=sys.stderr)
        for p in failed:
            print(f"  {p.path}: {p.error}", file=sys.stderr)
    if args.sort_into:
        counts = sort_into(predictions, args.sort_into, min_confidence=args.min_confidence, task=predictor.task)
        print(
            f"copied {sum(counts.values())} photos into {args.sort_into}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            file=sys.stderr,
        )
    return 0


def _predict_to_file(predictor, args) -> int:
    from collections import Counter

    from .inference.results import predict_to_file
    from .inference.sort import sort_into

    counts: Counter = Counter()

    def sort(batch) -> None:
        counts.update(sort_into(batch, args.sort_into, min_confidence=args.min_confidence, task=predictor.task))

    written = predict_to_file(
        predictor, args.paths, args.out, top_k=args.top_k, on_batch=sort if args.sort_into else None
    )
    done = f", {written.before} already there" if written.before else ""
    print(
        f"{written.predicted} photos predicted into {written.path} in {written.seconds:.1f} s{done}"
        + (f"; {written.failed} unreadable, listed there with their reasons" if written.failed else ""),
        file=sys.stderr,
    )
    if args.sort_into:
        print(
            f"copied {sum(counts.values())} photos into {args.sort_into}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            file=sys.stderr,
        )
    return 0


def format_predictions(predictions, fmt: str) -> str:
    """`top` means the same everywhere: the k best classes, the predicted one first."""
    if fmt == "json":
        return json.dumps([p.to_dict() for p in predictions], indent=2, ensure_ascii=False)
    if fmt == "csv":
        from .inference.results import csv_columns, csv_row

        sets = next((list(p.scores) for p in predictions if p.scores), None)  # a multi-label model's labels
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(csv_columns(sets))
        writer.writerows(csv_row(p, places=4, sets=sets) for p in predictions)
        return buffer.getvalue().rstrip("\n")
    from .inference.sort import CONFIDENCE_PLACES as places

    # the columns of --format csv and json, with the same meaning: `label` is the closest class
    # always, `unknown` says whether the photo is far from every training photo
    checked = any(p.outlier_score is not None for p in predictions)
    width = max([len(p.path) for p in predictions] + [4])
    # a multi-label run's column holds each photo's decided set, as wide as the widest
    said = {id(p): p.label if p.labels is None else " ".join(p.labels) or "(none of the labels)" for p in predictions}
    sets = any(p.labels is not None for p in predictions)
    labels = max([14] + [len(said[id(p)]) + 2 for p in predictions if sets and not p.error])
    lines = [
        f"{'path':<{width}}  {'labels' if sets else 'label':<{labels}}{'conf':>7}{'  unknown' if checked else ''}  top"
    ]
    for p in predictions:
        if not p.error:
            top = ", ".join(f"{c} {v:.{places}f}" for c, v in p.top)
            marker = f"  {'yes' if p.unknown else 'no':>7}" if checked else ""
            lines.append(f"{p.path:<{width}}  {said[id(p)]:<{labels}}{p.confidence:>7.{places}f}{marker}  {top}")
    unknown = sum(p.unknown for p in predictions)
    if unknown:
        lines.append(
            f"({unknown} unknown: farther from every training photo than the run's threshold, which "
            "nearly all known photos are within, so likely of none of these classes; --sort-into puts "
            "them in _unknown/, --no-unknown turns the check off)"
        )
    return "\n".join(lines)


def _similar_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run trained with the 'none of these' check (the default)")
    parser.add_argument("paths", metavar="PATH", nargs="+")
    parser.add_argument("-k", type=int, default=5, help="training photos per photo (default: %(default)s)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="default: %(default)s")
    parser.add_argument("--html", metavar="FILE", help="also write a page with thumbnails")
    parser.add_argument("--batch-size", type=int, default=16, help="default: %(default)s")
    _add_device_options(parser)


@command(
    "similar",
    _similar_arguments,
    help="the training photos nearest each photo, in the model's features",
    description="For each photo: RUN's prediction, its 'none of these' score, and the K "
    "nearest training photos with their labels and cosine distances.",
)
def cmd_similar(args) -> int:
    from .inference.similar import format_similar, similar, write_similar_page

    if args.html:  # never inside the photos' folders, nor the run's
        from .data.outside import check_outside
        from .runs.rundir import RunDir

        check_outside(
            args.html,
            *(p if Path(p).is_dir() else Path(p).parent for p in args.paths),
            RunDir(args.run).data_source(),
            flag="--html",
        )
    found = similar(args.run, args.paths, k=args.k, batch_size=args.batch_size, device=args.device)
    print(
        json.dumps([s.to_dict() for s in found], indent=2, ensure_ascii=False)
        if args.format == "json"
        else format_similar(found)
    )
    if args.html:
        print(f"written to {write_similar_page(args.run, found, args.html)}", file=sys.stderr)
    return 0


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pattern",
        nargs="*",
        metavar="NAME|PATTERN",
        help="a glob, e.g. 'seed-*' or '*convnext*', one name for its layer table, or pull NAME...",
    )
    parser.add_argument(
        "--classes", type=int, default=10, help="classes for the parameter count (default: %(default)s)"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PX",
        help="input side for the layer table (default: the model's own)",
    )
    parser.add_argument("--json", action="store_true", help="the layer table as JSON")
    parser.add_argument(
        "--measure",
        action="store_true",
        help="time each listed model here (random weights, batch 8) instead of estimating its images/s from its GFLOPs",
    )


@command(
    "models",
    _models_arguments,
    help="list the available models, or one model's layers; pull timm weights",
    description="List photoclass's own models (a glob such as '*convnext*' also searches timm's "
    "pretrained backbones), show one model's layers, or `models pull NAME...` to download timm "
    "weights into the Hugging Face cache.",
)
def cmd_models(args) -> int:
    from .models.registry import list_models, model_info

    if args.classes < 1:
        raise PhotoclassError(f"--classes must be at least 1. Received: {args.classes}")
    words = args.pattern or ["*"]
    if words[0] == "pull":
        return _pull(words[1:])
    if len(words) > 1:
        raise PhotoclassError(
            f"models takes one NAME or pattern. Received: {' '.join(words)}. HINT: quote a pattern, "
            "e.g. photoclass models '*convnext*'"
        )
    pattern = words[0]
    if not any(c in pattern for c in "*?["):  # one model: its layers
        return _model_summary(model_info(pattern), args)
    found = list_models(pattern)
    timm_found = _timm_names(pattern)
    if not found and not timm_found:
        raise PhotoclassError(
            f"No model matches {pattern!r}. HINT: `photoclass models` lists photoclass's own; "
            "'*convnext*' searches the timm names too."
        )
    if timm_found:
        _print_timm_names(timm_found, pattern, measure=args.measure)
    if not found:
        return 0
    print(f"{'name':<22}{'params':>12}{'GFLOPs':>8}{'img/s':>9}{'input':>10}  description")
    for info in found:
        size = args.image_size or info.input_spec.size
        try:
            params, gflops, speed = _cost_columns(info.name, size, args.classes, args.measure)
        except (PhotoclassError, RuntimeError):
            params, gflops, speed = "too small", "", ""  # e.g. seed-cifar below 16 px
        print(
            f"{info.name:<22}{params:>12}{gflops:>8}{speed:>9}{f'{size}x{info.input_spec.channels}':>10}  "
            f"{info.description}"
        )
    print(
        f"\n(parameters for {args.classes} classes; {_speed_words(args.measure)}; `photoclass models NAME` lists a "
        "model's layers)"
    )
    from .core.cpu import describe_cpu

    print(f"exports: {describe_cpu()}")
    return 0


def _cost_columns(name: str, size: int, classes: int, measure: bool) -> tuple[str, str, str]:
    """(parameters, GFLOPs, images/s) as printed; images/s measured, or estimated with a `~`."""
    from .models import speed

    cost = speed.cost(name, size, classes)
    rate = speed.measured(name, size) if measure else speed.estimated(cost)
    shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.1f}"
    return f"{cost.params:,}", f"{cost.flops / 1e9:.2f}", shown if measure else f"~{shown}"


def _speed_words(measure: bool) -> str:
    if measure:
        return "img/s measured here: random weights, batch 8, fp32"
    return "~img/s estimated from GFLOPs and a rate measured here; --measure times each"


def _pull(names: list[str]) -> int:
    """`photoclass models pull NAME...`: each timm backbone's weights into the Hugging Face cache."""
    from .models.registry import model_info
    from .models.timm_models import pull

    if not names:
        raise PhotoclassError("models pull needs the names of timm backbones. HINT: photoclass models pull resnet50")
    for name in names:
        if not model_info(name).timm:
            print(f"{name}: photoclass's own model; its weights ship with photoclass")
            continue
        print(f"{name}: {pull(name)}", flush=True)
    return 0


def _timm_names(pattern: str) -> list[str]:
    if pattern == "*":  # over a thousand: listed only when asked for by a pattern
        return []
    from .models.timm_models import timm_names

    return timm_names(pattern)


def _print_timm_names(names: list[str], pattern: str, *, measure: bool) -> None:
    from .models.registry import model_info
    from .models.timm_models import pretrained_config, weights_on_machine

    shown = names[:40]
    print(
        f"{len(names)} timm backbones with pretrained weights match {pattern!r}"
        f"{f' (the first {len(shown)})' if len(names) > len(shown) else ''}:"
    )
    print(f"  {'name':<46}{'params':>13}{'GFLOPs':>8}{'img/s':>9}{'input':>7}  {'on this machine':<16}licence")
    for name in shown:
        size = model_info(name).input_spec.size
        try:
            params, gflops, speed = _cost_columns(name, size, 1000, measure)
        except Exception:  # an op the meta device or the counter cannot run: the listing goes on
            params, gflops, speed = "?", "?", "?"
        licence = pretrained_config(name).get("license") or "?"
        if "noncommercial" in licence.replace("-", "").lower() or licence.lower().startswith("cc-by-nc"):
            licence += " (non-commercial)"
        print(
            f"  {name:<46}{params:>13}{gflops:>8}{speed:>9}{size:>7}  "
            f"{'yes' if weights_on_machine(name) else 'no':<16}{licence}",
            flush=True,
        )
    print(
        f"  (parameters with a 1,000-class classifier; {_speed_words(measure)};\n"
        "  `photoclass models NAME` lists one's layers; `photoclass models pull NAME` downloads its weights)\n"
    )


def _untrained_model(info, classes: int, size: int):
    """The registered model at `size`, without loading weights (counting and summaries need none)."""
    from .models.registry import create_model

    with warnings.catch_warnings():  # torch warns of a zero-sized layer before it fails to run
        warnings.simplefilter("ignore")
        return create_model(info.name, classes, input_size=size, pretrained=False)


def _model_summary(info, args) -> int:
    from .config import check_int
    from .models.summary import format_summary, summarize

    size = args.image_size or info.input_spec.size
    check_int("image_size", size, 8, 1024)
    model = _untrained_model(info, args.classes, size)
    try:
        summary = summarize(model, size, model.input_spec.channels)
    except RuntimeError as e:
        raise PhotoclassError(
            f"{info.name} does not run at {size} px: {str(e).splitlines()[0][:160]}. "
            f"HINT: its own size is {info.input_spec.size}."
        ) from None
    if args.json:
        print(json.dumps({"model": info.name, "classes": args.classes, **summary}, indent=2))
    else:
        print(format_summary(summary, f"{info.name}: {info.description} ({args.classes} classes)"))
    return 0


def _augment_preview_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA")
    parser.add_argument("--augment", default="default", metavar="SPEC", help="default: %(default)s")
    parser.add_argument("--out", default="augment-preview.png", help="default: %(default)s")
    parser.add_argument("--photos", type=int, default=4, help="default: %(default)s")


@command(
    "augment-preview",
    _augment_preview_arguments,
    help="write a grid of augmented training photos",
    configs=(PrepareConfig,),
)
def cmd_augment_preview(args) -> int:
    from .config import parse_augment
    from .data.outside import check_outside
    from .data.prepare import prepare
    from .evaluation.report import augmentation_preview

    parse_augment(args.augment)  # a bad spec, or an output among the photos, is refused before they are read
    check_outside(args.out, args.data)
    if args.photos < 1:
        raise PhotoclassError(f"--photos must be at least 1. Received: {args.photos}")
    dataset = prepare(args.data, config=PrepareConfig(**given_options(args, PrepareConfig)))
    path = augmentation_preview(dataset, args.augment, Path(args.out), photos=args.photos, seed=dataset.config.seed)
    print(f"augmentation preview: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="photoclass",
        description="From a folder of photos to a trained, evaluated, servable image classifier.",
    )
    parser.add_argument("--version", action="version", version=f"photoclass {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    parser.subcommands = sub.choices  # name -> its parser, for the nearest flag of a misspelt one
    for entry in COMMANDS.values():
        command_parser = sub.add_parser(entry.name, help=entry.help, description=entry.description)
        entry.arguments(command_parser)
        add_config_options(command_parser, *entry.configs, skip=entry.skip)
        command_parser.set_defaults(func=entry.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unknown_options(parser, args, extra)
    args.argv = argv
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", UnusedOptionWarning)  # once a command, not once a trial or seed
            warnings.showwarning = _show_note
            code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except PhotoclassError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        print("photoclass: interrupted; finished work is kept in the cache", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `photoclass runs | head -1`: the reader left
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (no flush error at exit)
        return _fail(
            "the output pipe was closed before everything was written. HINT: read the whole "
            "output, or write it to a file"
        )
    except OSError as e:  # a path that cannot be read or written, a full disk, ...
        where = f" {e.filename}" if e.filename else ""
        return _fail(f"{e.strerror or e}:{where}. HINT: check the path and its permissions")
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("PHOTOCLASS_DEBUG"):
            raise
        return _fail(
            f"unexpected {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}. "
            "HINT: PHOTOCLASS_DEBUG=1 shows the traceback; please report it"
        )


def _fail(message: str) -> int:
    print(f"photoclass: error: {flag_spelling(message)}", file=sys.stderr)
    return 2


def _show_note(message, category, *args, **kwargs) -> None:
    """Warnings meant for the user (an option with no effect) as one NOTE line; others as usual."""
    if issubclass(category, UnusedOptionWarning):
        print(f"NOTE: {flag_spelling(str(message))}", flush=True)
    else:
        _SHOW_WARNING(message, category, *args, **kwargs)


def flag_spelling(message: str) -> str:
    """A message of the Python API in the words of the command line: `label_regex` and
    `label_regex=x` become --label-regex and --label-regex=x."""
    return _API_NAME.sub(lambda m: "--" + (m.group(1) or m.group(2)).replace("_", "-"), message)


_FLAGGED = sorted(
    {f.name for config in (TrainConfig, PrepareConfig) for f in dataclasses.fields(config)}
    | {
        "min_confidence",
        "top_k",
        "max_upload_mb",
        "max_queue",
        "start_lr",
        "end_lr",
        "steps",
        "folds",
        "top",
        "classes",
        "photos",
        "copy_to",
        "sort_into",
        "tracking_uri",
    },
    key=len,
    reverse=True,
)
_API_NAME = re.compile(r"`(" + "|".join(_FLAGGED) + r")`|(?<![\w./-])(" + "|".join(_FLAGGED) + r")(?==)")


if __name__ == "__main__":
    sys.exit(main())
