"""The command line: parse, call the Python API, print. No logic of its own."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from . import __version__
from .config import PrepareConfig, SPLIT_MODES
from .data.scan import LAYOUTS
from .errors import PhotoclassError


def _add_prepare_options(p: argparse.ArgumentParser) -> None:
    d = PrepareConfig()
    p.add_argument("--image-size", type=int, default=d.image_size, help="side in px (default %(default)s)")
    p.add_argument("--val-size", type=float, default=d.val_size, help="fraction (default %(default)s)")
    p.add_argument("--test-size", type=float, default=d.test_size, help="fraction (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="split seed (default %(default)s)")
    p.add_argument("--split", choices=SPLIT_MODES, default=d.split,
                   help="grouped keeps duplicate photos in one split (default); naive does not")
    p.add_argument("--layout", choices=LAYOUTS, default=d.layout,
                   help="flat (label in file name), folders (one per class), split (train/val/test)")
    p.add_argument("--label-regex", default=None,
                   help="regex with one group for the label in flat folders (default: leading letters)")
    p.add_argument("--follow-symlinks", action="store_true", help="follow symlinks inside the folder")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="refuse larger images (default %(default)s)")
    p.add_argument("--cache-dir", default=None, help="decode cache (default $XDG_CACHE_HOME/photoclass)")
    p.add_argument("--workers", type=int, default=d.workers, help="decoding processes (default: one per core)")


def _prepare_config(args) -> PrepareConfig:
    return PrepareConfig(
        image_size=args.image_size, val_size=args.val_size, test_size=args.test_size,
        seed=args.seed, split=args.split, layout=args.layout, label_regex=args.label_regex,
        follow_symlinks=args.follow_symlinks, max_pixels=args.max_pixels,
        cache_dir=args.cache_dir, workers=args.workers,
    )


def cmd_prepare(args) -> int:
    from .data.prepare import prepare
    from .data.summary import format_summary

    out = Path(args.out) if args.out else Path("prepared") / Path(args.data).resolve().name
    dataset = prepare(args.data, out=out, config=_prepare_config(args))
    print(json.dumps(dataset.summary, indent=2, ensure_ascii=False) if args.json
          else format_summary(dataset.summary))
    return 0


def cmd_train(args) -> int:
    from .training.trainer import train

    if args.resume:
        result = train(resume=args.resume)
    else:
        if not args.data:
            raise PhotoclassError("train needs DATA, a folder of photos, or --resume RUN.")
        options = {k: getattr(args, k) for k in _TRAIN_OPTIONS if getattr(args, k) is not None}
        if args.class_weights:
            options["class_weights"] = True
        if args.tta:
            options["tta"] = True
        result = train(args.data, out=args.out, track=_track(args), **options)
    if result.interrupted:
        return 130
    print(format_test(result.test, result.run.path, result.seconds))
    if (result.run.path / "report.html").is_file():
        print(f"report: {result.run.path / 'report.html'}")
    return 0


def _track(args) -> bool | str | None:
    return False if args.no_track else args.tracking_uri


def cmd_runs(args) -> int:
    from .runs.leaderboard import list_runs

    board = list_runs(*args.roots, data=args.data, sort=args.sort)
    print(json.dumps([r.to_dict() for r in board], indent=2) if args.json else board.to_text())
    return 0


def cmd_select(args) -> int:
    from .runs.leaderboard import copy_run, list_runs, select_run

    selection = select_run(list_runs(*args.roots, data=args.data), tolerance=args.tolerance)
    if args.json:
        print(json.dumps({"winner": selection.winner.to_dict(), "reason": selection.reason,
                          "candidates": [str(r.path) for r in selection.candidates]}, indent=2))
    else:
        print(selection.reason)
    if args.copy_to:
        print(f"copied to {copy_run(selection.winner.path, args.copy_to)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_track(args) -> int:
    from .runs.tracking import track_run, tracking_uri

    for run in args.runs:
        print(f"{run}: MLflow run {track_run(run, uri=args.tracking_uri)} in {tracking_uri(args.tracking_uri)}")
    return 0


def cmd_report(args) -> int:
    from .evaluation.html_report import write_report

    print(f"report: {write_report(args.run)}")
    return 0


def cmd_compare(args) -> int:
    from .evaluation.html_report import write_comparison

    print(f"comparison: {write_comparison(args.runs, args.out, tolerance=args.tolerance)}")
    return 0


def cmd_sweep(args) -> int:
    from .training.sweep import sweep

    fixed = {k: getattr(args, k) for k in ("epochs", "cache_dir", "seed") if getattr(args, k) is not None}
    study = sweep(args.data, trials=args.trials, space=args.space, storage=args.storage, study=args.study,
                  out=args.out, timeout=args.timeout, track=_track(args), **fixed)
    states = [t.state.name for t in study.trials]
    print(f"study {study.study_name}: {states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, "
          f"{states.count('FAIL')} failed")
    if states.count("COMPLETE"):
        best = study.best_trial
        print(f"best: trial {best.number}, val accuracy {best.value:.4f}, test accuracy "
              f"{best.user_attrs.get('test_accuracy', float('nan')):.4f}, run {best.user_attrs['run']}")
        print(f"  {best.params}")
    return 0


def format_test(test: dict, run_path, seconds: float | None = None) -> str:
    lines = ["", f"test: accuracy {test['accuracy']:.4f}  loss {test['loss']:.4f}  "
                 f"macro F1 {test['macro_f1']:.4f}  ({test['count']} photos)"]
    lines.append(f"  {'class':<16}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}")
    for name, c in test["per_class"].items():
        lines.append(f"  {name:<16}{c['precision']:>10.3f}{c['recall']:>8.3f}{c['f1']:>8.3f}{c['support']:>9}")
    if seconds is not None:
        lines.append(f"done in {seconds:.1f} s")
    lines.append(f"run: {run_path}")
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    from .evaluation.report import evaluate_run

    evaluation = evaluate_run(args.run, args.data, tta=args.tta or None)
    if args.json:
        print(json.dumps(evaluation, indent=2))
    else:
        print(format_test(evaluation["test"], args.run))
        if "generalization_gap" in evaluation:
            print(f"generalization gap (train - test accuracy): {evaluation['generalization_gap']:+.4f}")
        print(f"written to {evaluation['written_to']}")
    return 0


def cmd_models(args) -> int:
    from .models.registry import count_parameters, create_model, list_models

    print(f"{'name':<16}{'params':>12}{'input':>8}  description")
    for info in list_models(args.pattern):
        untrained = {"pretrained": False} if info.pretrained else {}  # counting needs no weights
        params = count_parameters(create_model(info.name, args.classes, **untrained))
        print(f"{info.name:<16}{params:>12,}{info.input_spec.size:>8}  {info.description}")
    return 0


def cmd_augment_preview(args) -> int:
    from .data.prepare import prepare
    from .evaluation.report import augmentation_preview

    dataset = prepare(args.data, image_size=args.image_size, seed=args.seed,
                      **({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    path = augmentation_preview(dataset, args.augment, Path(args.out), photos=args.photos, seed=args.seed)
    print(f"augmentation preview: {path}")
    return 0


def cmd_predict(args) -> int:
    from .inference.predictor import open_predictor
    from .inference.sort import sort_into

    if not 0 <= args.min_confidence <= 1:
        raise PhotoclassError(f"--min-confidence must be from 0 to 1. Received: {args.min_confidence}")
    predictor = open_predictor(args.run, engine=args.engine, batch_size=args.batch_size)
    predictions = predictor.predict(args.paths, top_k=args.top_k)
    print(format_predictions(predictions, args.format))
    failed = [p for p in predictions if p.error]
    if failed and args.format == "table":
        print(f"\nskipped ({len(failed)}):", file=sys.stderr)
        for p in failed:
            print(f"  {p.path}: {p.error}", file=sys.stderr)
    if args.sort_into:
        counts = sort_into(predictions, args.sort_into, min_confidence=args.min_confidence)
        print(f"copied {sum(counts.values())} photos into {args.sort_into}: "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), file=sys.stderr)
    return 0


def format_predictions(predictions, fmt: str) -> str:
    if fmt == "json":
        return json.dumps([p.to_dict() for p in predictions], indent=2, ensure_ascii=False)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "label", "confidence", "top", "error"])
        for p in predictions:
            top = ";".join(f"{c}:{v:.4f}" for c, v in p.top)
            writer.writerow([p.path, p.label, f"{p.confidence:.4f}" if not p.error else "", top, p.error])
        return buffer.getvalue().rstrip("\n")
    width = max([len(p.path) for p in predictions] + [4])
    lines = [f"{'path':<{width}}  {'label':<14}{'conf':>6}  top"]
    for p in predictions:
        if not p.error:
            top = ", ".join(f"{c} {v:.2f}" for c, v in p.top[1:])
            lines.append(f"{p.path:<{width}}  {p.label:<14}{p.confidence:>6.2f}  {top}")
    return "\n".join(lines)


def cmd_export(args) -> int:
    from .export import export_onnx

    result = export_onnx(args.run, args.out)
    print(f"exported {result['path']} ({result['bytes'] / 2**20:.1f} MiB); ONNX Runtime matches PyTorch "
          f"on {result['inputs_checked']} inputs, max |logit difference| {result['max_abs_diff']:.2e}")
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from .serve.app import create_app

    app = create_app(args.run, top_k=args.top_k, max_bytes=args.max_upload_mb * 2**20,
                     max_queue=args.max_queue, engine=args.engine)
    print(f"serving {args.run} at http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


_TRAIN_OPTIONS = ("model", "strategy", "finetune_blocks", "epochs", "batch_size", "image_size", "lr", "optimizer", "schedule",
                  "augment", "label_smoothing", "dropout", "weight_decay", "early_stopping", "threads", "seed",
                  "val_size", "test_size", "split", "layout", "label_regex", "cache_dir")


def _add_tracking_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow store (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="photoclass",
        description="From a folder of photos to a trained, evaluated, servable image classifier.",
    )
    parser.add_argument("--version", action="version", version=f"photoclass {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("prepare", help="scan, check, deduplicate and split a folder of photos",
                       description="Scan DATA, decode every photo once into the cache, group "
                       "duplicates and write DIR/manifest.csv with a fair split.")
    p.add_argument("data", metavar="DATA", help="folder of photos")
    p.add_argument("--out", metavar="DIR", help="output folder (default prepared/<DATA name>)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_prepare_options(p)
    p.set_defaults(func=cmd_prepare)

    from .config import OPTIMIZERS, SCHEDULES, STRATEGIES
    t = sub.add_parser("train", help="train and evaluate a model on a folder of photos",
                       description="Prepare DATA (reusing the cache), train MODEL, evaluate it on "
                       "the held-out test split and write a run directory.")
    t.add_argument("data", metavar="DATA", nargs="?", help="folder of photos, or one written by prepare")
    t.add_argument("--model", help="a name from `photoclass models` (default efficientnet-lite0-ms)")
    t.add_argument("--strategy", choices=STRATEGIES,
                   help="features: frozen pretrained backbone, train the head (default for pretrained models)")
    t.add_argument("--finetune-blocks", type=int, metavar="N",
                   help="with --strategy finetune: how many of the last blocks train (default 1)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--image-size", type=int, help="input side in px (default: the model's)")
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--schedule", choices=SCHEDULES)
    t.add_argument("--augment", metavar="SPEC", help="'default', 'none', 'strong' or e.g. 'hflip,rotate=10,zoom=0.1'")
    t.add_argument("--label-smoothing", type=float)
    t.add_argument("--dropout", type=float, help="dropout rate of the model's head (default: the model's)")
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="epochs without improvement; 0: off")
    t.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    t.add_argument("--tta", action="store_true", help="test-time augmentation: average each test photo and its mirror")
    t.add_argument("--threads", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--val-size", type=float)
    t.add_argument("--test-size", type=float)
    t.add_argument("--split", choices=SPLIT_MODES)
    t.add_argument("--layout", choices=LAYOUTS)
    t.add_argument("--label-regex", help="regex with one group for the label in flat folders")
    t.add_argument("--cache-dir")
    t.add_argument("--out", metavar="RUN", help="run directory (default runs/<model>-<time>)")
    t.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last.ckpt")
    _add_tracking_options(t)
    t.set_defaults(func=cmd_train)

    from .runs.leaderboard import SORT_KEYS
    r = sub.add_parser("runs", help="the leaderboard: finished runs with their test figures",
                       description="List finished runs under ROOT (default runs/), best first.")
    r.add_argument("roots", metavar="ROOT", nargs="*", default=["runs"])
    r.add_argument("--data", metavar="NAME", help="only runs on the data folder of this name")
    r.add_argument("--sort", choices=SORT_KEYS, default="error", help="default: test error")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_runs)

    se = sub.add_parser("select", help="pick the run with the lowest test error, then the smallest gap",
                        description="Among runs within TOLERANCE of the lowest test error, pick the one "
                        "with the smallest generalization gap; say why.")
    se.add_argument("roots", metavar="ROOT", nargs="*", default=["runs"])
    se.add_argument("--data", metavar="NAME")
    se.add_argument("--tolerance", type=float, default=0.01, help="in accuracy, default 0.01 (one point)")
    se.add_argument("--copy-to", metavar="DIR", help="copy the winning run there (e.g. best/)")
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_select)

    sw = sub.add_parser("sweep", help="search models and options with Optuna; each trial is a run",
                        description="Search the space (models, learning rate, augmentation, dropout, batch "
                        "and image size) for the best validation accuracy, pruning poor trials.")
    sw.add_argument("data", metavar="DATA")
    sw.add_argument("--trials", type=int, default=20)
    sw.add_argument("--space", metavar="FILE", help="JSON or TOML search space (default: built in)")
    sw.add_argument("--storage", metavar="URL", help="Optuna storage (default sqlite:///OUT/sweeps.db)")
    sw.add_argument("--study", metavar="NAME", help="study name; reuse it to continue a sweep")
    sw.add_argument("--out", default="runs", metavar="DIR", help="trial runs go to DIR/STUDY/ (default runs)")
    sw.add_argument("--timeout", type=float, metavar="SECONDS")
    sw.add_argument("--epochs", type=int, help="fix the epochs of every trial")
    sw.add_argument("--seed", type=int, help="seeds the search's sampler (default 0)")
    sw.add_argument("--cache-dir")
    _add_tracking_options(sw)
    sw.set_defaults(func=cmd_sweep)

    tr = sub.add_parser("track", help="log finished runs to MLflow (again)")
    tr.add_argument("runs", metavar="RUN", nargs="+")
    tr.add_argument("--tracking-uri", metavar="URI", help="default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    tr.set_defaults(func=cmd_track)

    rp = sub.add_parser("report", help="rebuild a run's report.html")
    rp.add_argument("run", metavar="RUN")
    rp.set_defaults(func=cmd_report)

    co = sub.add_parser("compare", help="one HTML page comparing runs")
    co.add_argument("runs", metavar="RUN", nargs="+")
    co.add_argument("--out", default="compare.html", metavar="FILE")
    co.add_argument("--tolerance", type=float, default=0.01)
    co.set_defaults(func=cmd_compare)

    e = sub.add_parser("evaluate", help="re-evaluate a saved run, on its test split or another folder")
    e.add_argument("run", metavar="RUN")
    e.add_argument("--data", metavar="DIR", help="evaluate on every photo of this folder instead")
    e.add_argument("--tta", action="store_true", help="average each test photo and its mirror")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="export a run's model to ONNX, checked against PyTorch")
    x.add_argument("run", metavar="RUN")
    x.add_argument("--format", choices=("onnx",), default="onnx")
    x.add_argument("--out", metavar="FILE", help="default RUN/model.onnx")
    x.set_defaults(func=cmd_export)

    sv = sub.add_parser("serve", help="serve predictions over HTTP, with a web page at /")
    sv.add_argument("run", metavar="RUN", help="a run directory, or a model.onnx")
    sv.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--top-k", type=int, default=3)
    sv.add_argument("--max-upload-mb", type=int, default=10)
    sv.add_argument("--max-queue", type=int, default=64, help="requests waiting beyond this get 503")
    sv.add_argument("--engine", choices=("auto", "onnx", "torch"), default="auto",
                    help="auto (default): ONNX Runtime when installed (exports RUN/model.onnx once), else PyTorch")
    sv.set_defaults(func=cmd_serve)

    pr = sub.add_parser("predict", help="predict photos with a trained run; optionally sort copies",
                        description="Predict files, folders (recursively) and globs with RUN's model.")
    pr.add_argument("run", metavar="RUN", help="a run directory, or a model.onnx from `photoclass export`")
    pr.add_argument("paths", metavar="PATH", nargs="+")
    pr.add_argument("--top-k", type=int, default=3)
    pr.add_argument("--format", choices=("table", "json", "csv"), default="table")
    pr.add_argument("--sort-into", metavar="DIR",
                    help="copy (never move) each photo into DIR/<predicted class>/")
    pr.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                    help="with --sort-into: below P, copy into DIR/_unsure/ instead")
    pr.add_argument("--batch-size", type=int, default=16)
    pr.add_argument("--engine", choices=("torch", "onnx", "auto"), default="torch",
                    help="onnx: ONNX Runtime, about twice as fast (exports RUN/model.onnx once)")
    pr.set_defaults(func=cmd_predict)

    m = sub.add_parser("models", help="list the available models")
    m.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'seed-*'")
    m.add_argument("--classes", type=int, default=4, help="classes for the parameter count")
    m.set_defaults(func=cmd_models)

    a = sub.add_parser("augment-preview", help="write a grid of augmented training photos")
    a.add_argument("data", metavar="DATA")
    a.add_argument("--augment", default="default", metavar="SPEC")
    a.add_argument("--out", default="augment-preview.png")
    a.add_argument("--photos", type=int, default=4)
    a.add_argument("--image-size", type=int, default=224)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--cache-dir")
    a.set_defaults(func=cmd_augment_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PhotoclassError as e:
        print(f"photoclass: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("photoclass: interrupted; finished work is kept in the cache", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
