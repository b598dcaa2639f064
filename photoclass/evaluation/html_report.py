"""Self-contained HTML pages: `report.html` for one run, and a page comparing runs.

Everything is embedded (images as data: URIs), so a page can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .labels_report import corrections_section, outsiders_text
from ..config import PrepareConfig, TrainConfig
from ..config.applies import unused_in_saved
from ..core.version import __version__
from ..data.arrays import load_photo
from ..data.decode import DecodeError
from ..data.outside import check_outside
from ..data.loader import normalize, to_float
from ..core.atomic import write_text_atomic
from ..models.input_spec import InputSpec
from ..models.summary import summarize
from ..runs.rundir import RunDir, load_model
from .gradcam import gradcam, overlay

GALLERY_LIMIT = 60  # misclassified photos shown
GRADCAM_PHOTOS = 6
THUMB = 200  # px, longest side of a gallery photo
AGREED_SHOWN = 12  # audit: photos whose given label the model agrees with, least confidently

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;color:#1d2330}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde;padding-bottom:4px}
.sub{color:#667}.tiles{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.tile{background:#f3f5fa;border-radius:8px;padding:8px 14px}.tile b{display:block;font-size:20px}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #e6e8ef;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr.win{background:#e8f6e8}
img.plot{max-width:100%}.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:210px}figure img{max-width:200px;max-height:200px;display:block}
figcaption{font-size:12px;color:#334;overflow-wrap:anywhere}.explained{display:flex;gap:8px;background:#f7f8fb;padding:6px;border-radius:6px}
figure.near{width:100px}figure.near img{max-width:96px;max-height:96px}.missing{width:200px;height:120px;background:#eee;display:flex;
align-items:center;justify-content:center;color:#888}.cols{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
"""


def write_report(run: str | os.PathLike | RunDir, *, model: nn.Module | None = None, dataset=None) -> Path:
    """Write RUN/report.html from the run directory (and the photos it was trained on)."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    check_outside(run / RunDir.REPORT, run.data_source(), flag="RUN")
    config, result = run.config(), run.test_metrics()
    meta = run.model_meta()
    summary = dataset.summary if dataset is not None else run.data_summary()
    root = Path(config["data"])
    rows = run.split_rows()
    test = result["test"]
    train = config["train"]

    classifier = run.classifier()
    one_solve = classifier is not None and result["training"]["epochs_run"] == 1
    fitted = (
        ("classifier", f"C={classifier['C']:g} by {classifier.get('folds', 5)}-fold CV")
        if one_solve
        else ("best epoch", f"{result['training']['best_epoch']} of {result['training']['epochs_run']}")
    )
    parts = [
        f"<h1>{html.escape(run.path.name)}</h1>",
        f"<div class=sub>{html.escape(train['model'])} on {html.escape(str(root))} · photoclass "
        f"{html.escape(config['versions']['photoclass'])} · report made {time.strftime('%Y-%m-%d %H:%M')}</div>",
        _tiles(
            [
                *([("test mAP", f"{test['mAP']:.2%}")] if _sets(test) else []),
                ("test exact match" if _sets(test) else "test accuracy", f"{test['accuracy']:.2%}"),
                *_interval_tile(test),
                ("test loss", f"{test['loss']:.4f}"),
                ("macro F1", f"{test['macro_f1']:.4f}"),
                ("gap (train - test acc.)", f"{result['generalization_gap']:+.2%}"),
                fitted,
                ("seconds (data, training, test)", f"{result['training']['seconds']:.1f}"),
            ]
        ),
    ]
    parts += ["<h2>Data</h2>", _data_section(summary, rows, meta["classes"])]
    corrected = corrections_section(
        summary, run.read_json(RunDir.BEFORE_AFTER) if run.exists(RunDir.BEFORE_AFTER) else None
    )
    if corrected:
        parts += ["<h2 id=corrections>Corrected labels</h2>", corrected]
    if classifier is not None:
        parts += [
            "<h2 id=classifier>How the classifier was fitted</h2>",
            _classifier_section(classifier),
            _plot(run.plot("regularization")),
        ]
    if run.plot("learning_curves").is_file():
        parts += ["<h2>Learning curves</h2>", _plot(run.plot("learning_curves"))]
    parts += _test_results(run, test)
    if "ece" in test:
        pooled = " (pooled over every photo and label; each label's is in the table above)" if _sets(test) else ""
        parts += [
            f"<h2>Calibration</h2><p>Expected calibration error on the test photos{pooled}: {test['ece']:.3f} with "
            f"the temperature {result.get('temperature', 1.0):.3g} fitted on the validation split "
            f"({test['ece_unscaled']:.3f} without it).</p>",
            _plot(run.plot("calibration")),
        ]
    wrong = result.get("misclassified", [])
    parts += _mistakes_section(root, test, wrong, len(result.get("wrong_paths", wrong)))
    parts += ["<h2 id=unknown>None of these</h2>", _unknown_section(run, result, meta)]
    parts += ["<h2 id=audit>Label audit</h2>", _audit_section(run, root)]
    given = _given_sets(rows, wrong) if _sets(test) else None
    parts += [
        "<h2>Where the model looks (Grad-CAM)</h2>",
        _gradcam_section(run, model, meta, root, rows, wrong, result.get("wrong_paths", []), given),
    ]
    applied = config.get("applied", {}).get("augment", train["augment"])
    if run.plot("augmentation").is_file() and applied != "none":
        parts += [
            f"<h2>Augmentation preview</h2><p>Applied in training: <b>{html.escape(applied)}</b></p>",
            _plot(run.plot("augmentation")),
        ]
    parts += ["<h2>Model</h2>", _model_section(model, meta, run)]
    parts += ["<h2>Configuration</h2>", _configuration_section(train, config["prepare"])]
    path = run / RunDir.REPORT
    write_text_atomic(path, page(f"photoclass report: {run.path.name}", "\n".join(parts)))
    return path


def _test_results(run: RunDir, test: dict[str, Any]) -> list[str]:
    """The per-class table beside the confusion matrix; for label sets, the per-label table
    (its counts at each saved threshold) above each label's precision-recall curve."""
    if not _sets(test):
        return [
            "<h2>Test results</h2><div class=cols>",
            _per_class_table(test),
            _plot(run.plot("confusion_matrix")),
            "</div>",
        ]
    return [
        "<h2>Test results</h2>",
        "<p>Each label on its own, on the test photos: TP, FP, FN and TN count the photos given it or not "
        "(at its threshold) against those that have it or not.</p>",
        f"<div id=per-label>{_per_class_table(test)}</div>",
        "<p>Precision against recall as each label's threshold falls; the red dot is the saved threshold, "
        "the dotted line the share of photos with the label.</p>",
        _plot(run.plot("pr_curves")),
    ]


def _mistakes_section(root: Path, test: dict[str, Any], wrong: list[dict[str, Any]], count: int) -> list[str]:
    """The gallery of wrong test photos (at most `GALLERY_LIMIT` of the `count`), surest first."""
    if _sets(test):
        return [
            f"<h2 id=misclassified>Test photos with a wrong label set ({count} of {test['count']})</h2>",
            "<p>Each photo's labels it has but was not given (missed) and those it was given but has not "
            "(extra); first the photo whose surest wrong label is farthest past its threshold.</p>",
            _gallery(root, wrong[:GALLERY_LIMIT]) if wrong else "<p>None: every test photo's set is right.</p>",
        ]
    return [
        f"<h2 id=misclassified>Misclassified test photos ({count} of {test['count']})</h2>",
        _gallery(root, wrong[:GALLERY_LIMIT]) if wrong else "<p>None: every test photo is right.</p>",
    ]


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<meta name=generator content='photoclass {__version__}'><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def _audit_section(run: RunDir, root: Path) -> str:
    """A link to RUN/audit/audit.html with its most suspicious photos, or how to make it."""
    audit = run.audit_summary()
    if audit is None:
        command = f"photoclass audit {root} --out {run / RunDir.AUDIT}"
        return (
            f"<p>No label audit yet. <code>{html.escape(command)}</code> ranks the photos most likely to be "
            "mislabeled (cleanlab, on out-of-fold predictions) and adds it here.</p>"
        )
    top = [r for r in run.audit_issues() if _disagrees(r)][:5]
    items = "".join(
        f"<li>{html.escape(r['path'])}: given <b>{html.escape(r['given_label'])}</b>, looks like "
        f"<b>{html.escape(r['suggested_label'])}</b></li>"
        for r in top
    )
    listed = (
        f"the most suspicious of those the model would label otherwise:</p><ul>{items}</ul>"
        if top
        else "the model would label none of them otherwise.</p>"
    )
    return (
        f"<p><a href='{RunDir.AUDIT}/{RunDir.AUDIT_PAGE}'>The label audit</a> flags {audit['flagged']} of "
        f"{audit['photos']} photos as likely mislabeled; {listed}"
    )


def _disagrees(suspect: dict[str, Any]) -> bool:
    """Whether the out-of-fold model picks another label than the photo's given one."""
    return suspect["suggested_label"] != suspect["given_label"]


def _interval_tile(test: dict[str, Any]) -> list[tuple[str, str]]:
    low, high = test.get("accuracy_interval") or (None, None)
    return [("95% interval", f"{low:.1%} to {high:.1%}")] if low is not None else []


def _tiles(items: list[tuple[str, str]]) -> str:
    return (
        "<div class=tiles>"
        + "".join(f"<div class=tile>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in items)
        + "</div>"
    )


def _data_section(summary: dict[str, Any] | None, rows: list[dict[str, str]], classes: list[str]) -> str:
    counts = {c: {s: 0 for s in ("train", "val", "test")} for c in classes}
    for r in rows:
        labels = [r["label"]] if r["label"] in counts else r["label"].split(";")  # a multi-label row: "a;b"
        for label in labels if r["status"] == "ok" else ():
            if label in counts:
                counts[label][r["split"]] += 1
    table = "<table><tr><th>class</th><th class=n>train</th><th class=n>val</th><th class=n>test</th></tr>"
    table += (
        "".join(
            f"<tr><td>{html.escape(c)}</td>" + "".join(f"<td class=n>{n}</td>" for n in v.values()) + "</tr>"
            for c, v in counts.items()
        )
        + "</table>"
    )
    skipped = [r for r in rows if r["status"] == "skipped"]
    groups: dict[str, int] = {}
    for r in rows:
        if r["status"] == "ok":
            groups[r["group"]] = groups.get(r["group"], 0) + 1
    shared = [n for n in groups.values() if n > 1]
    usable = sum(r["status"] == "ok" for r in rows)
    facts = [
        f"{counted(usable, 'usable photo')}, {len(skipped)} skipped",
        f"{counted(len(shared), 'group')} of duplicate or near-duplicate photos "
        f"({counted(sum(shared), 'photo')}), each kept within one split",
    ]
    leaked = summary.get("leaks", {}).get("naive_split_test_with_twin_in_train") if summary else None
    if leaked is not None:
        facts.append(f"a naive split would have put {counted(leaked, 'test photo')} beside a near-twin in training")
    if summary and summary.get("converted"):
        facts.append(f"{counted(summary['converted'], 'odd file')} converted (e.g. PNG named .jpg, grayscale)")
    out = table + "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in facts) + "</ul>"
    if skipped:
        out += (
            "<details><summary>skipped files</summary><ul>"
            + "".join(f"<li>{html.escape(r['path'])}: {html.escape(r['reason'])}</li>" for r in skipped[:200])
            + "</ul></details>"
        )
    return out


def counted(count: int, noun: str) -> str:
    """'1 photo', '2 photos': the count and the noun, plural unless the count is one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# the per-class table's columns, in order, each shown where test.json's per_class rows have it:
# (key, header, format, tooltip)
PER_CLASS_COLUMNS = (
    ("ap", "AP", "{:.3f}", "average precision: the area under the label's precision-recall curve"),
    ("threshold", "threshold", "{:.3f}", "the label is decided at or above this probability (fitted on validation)"),
    ("tp", "TP", "{}", "test photos with the label, given it"),
    ("fp", "FP", "{}", "test photos without the label, given it"),
    ("fn", "FN", "{}", "test photos with the label, not given it"),
    ("tn", "TN", "{}", "test photos without the label, not given it"),
    ("precision", "precision", "{:.3f}", ""),
    ("recall", "recall", "{:.3f}", ""),
    ("f1", "F1", "{:.3f}", ""),
    ("support", "support", "{}", ""),
    ("ece", "ECE", "{:.3f}", "expected calibration error of the label's probabilities"),
)


def _per_class_table(test: dict[str, Any]) -> str:
    """One row a class (a label, for label sets: its counts at the saved threshold too)."""
    first = next(iter(test["per_class"].values()), {})
    columns = [c for c in PER_CLASS_COLUMNS if c[0] in first]
    head = f"<tr><th>{'label' if _sets(test) else 'class'}</th>" + "".join(
        f"<th class=n title='{html.escape(why)}'>{header}</th>" if why else f"<th class=n>{header}</th>"
        for _, header, _, why in columns
    )
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td class=n>{shown.format(c[key])}</td>" for key, _, shown, _ in columns)
        + "</tr>"
        for name, c in test["per_class"].items()
    )
    return f"<table>{head}</tr>{body}</table>"


def _sets(test: dict[str, Any]) -> bool:
    """Whether the run answers a set of labels a photo (its headline is mAP), not one class."""
    return "mAP" in test


def _model_section(model: nn.Module | None, meta: dict[str, Any], run: RunDir) -> str:
    """The layer table of `photoclass models NAME`, for the run's own input size and classes."""
    try:
        if model is None:
            model, _ = load_model(run)
        spec = InputSpec.from_dict(meta["input"], source=str(run / RunDir.MODEL_META))
        summary = summarize(model, spec.size, spec.channels)
    except Exception as e:  # a custom module that does not run on one zero image: the rest of the report stands
        return f"<p>Layer table unavailable: {html.escape(str(e).splitlines()[0] if str(e) else type(e).__name__)}</p>"
    rows = "".join(
        f"<tr><td>{html.escape(r['name'])} ({html.escape(r['kind'])})</td>"
        f"<td>({', '.join(map(str, r['output']))})</td><td class=n>{r['params']:,}</td></tr>"
        for r in summary["layers"]
    )
    trained = meta.get("trained_parameters", summary["trainable"])
    return (
        f"<p>{html.escape(meta['architecture'])}: {summary['total']:,} parameters, {trained:,} trained and "
        f"{summary['total'] - trained:,} frozen, for {spec.channels}x{spec.size}x{spec.size} input and "
        f"{meta['num_classes']} classes.</p>"
        f"<details><summary>{len(summary['layers'])} layers</summary><table><tr><th>layer (type)</th>"
        f"<th>output shape</th><th class=n>params</th></tr>{rows}</table></details>"
    )


def _classifier_section(classifier: dict[str, Any]) -> str:
    accuracies = classifier["cv_accuracy"].values()
    best, worst, photos = max(accuracies), min(accuracies), classifier.get("photos")
    spread = f" ({round((best - worst) * photos)} of {photos} photos)" if photos else ""
    return (
        f"<p>A logistic regression on the backbone's frozen features, solved by L-BFGS in "
        f"{classifier['seconds']:.1f} s. Its strength C was chosen by {classifier.get('folds', 5)}-fold grouped "
        f"cross-validation on the training photos: C = {classifier['C']:g}, {best:.2%} out-of-fold accuracy; "
        f"over the strengths tried it ranged from {worst:.2%} to {best:.2%}{spread}. There are no epochs: the "
        "options of epoch training (epochs, optimizer, learning rate, schedule) do not apply.</p>"
    )


def _configuration_section(train: dict[str, Any], prepare: dict[str, Any]) -> str:
    """The options that applied, and those this run's strategy left unused, folded, with why."""
    unused = unused_in_saved(train)
    applied = {k: v for k, v in train.items() if k not in unused}
    out = (
        "<div class=cols>"
        + _key_value_table(applied, "training")
        + _key_value_table(prepare, "data preparation")
        + "</div>"
    )
    if unused:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td>{_value_cell(k, train[k])}<td>{html.escape(why)}</td></tr>"
            for k, why in unused.items()
        )
        out += (
            f"<details id=unused><summary>not used by this strategy ({len(unused)})</summary><table>"
            f"<tr><th>option</th><th>value</th><th>why</th></tr>{rows}</table></details>"
        )
    return out


def _key_value_table(values: dict[str, Any], title: str) -> str:
    body = "".join(f"<tr><td>{html.escape(str(k))}</td>{_value_cell(k, v)}</tr>" for k, v in values.items())
    return f"<table><tr><th colspan=2>{html.escape(title)}</th></tr>{body}</table>"


def _value_cell(name: str, value: Any) -> str:
    """An option's value; one left unset reads 'default', what that means in its tooltip."""
    if value is not None:
        return f"<td>{html.escape(str(value))}</td>"
    helps = {f.name: f.metadata.get("help", "") for c in (TrainConfig, PrepareConfig) for f in dataclasses.fields(c)}
    return f"<td class=sub title='{html.escape(helps.get(name, 'not set'))}'>default</td>"


def _gallery(root: Path, wrong: list[dict[str, Any]]) -> str:
    """Each mistake, and beside it the training photos nearest it when the run has them: what
    the model had seen that looks like it."""
    figures = []
    for w in wrong:
        photo = thumbnail(root, w["path"])
        image = (
            f"<img alt='{html.escape(w['path'])}' src='{photo}'>"
            if photo
            else "<div class=missing>photo not found</div>"
        )
        mistake = (
            f"<figure data-path='{html.escape(w['path'])}'>{image}<figcaption>{_mistake_caption(w)}<br>"
            f"{html.escape(w['path'])}</figcaption></figure>"
        )
        if not w.get("nearest"):
            figures.append(mistake)
            continue
        near = "".join(
            f"<figure class=near><img alt='{html.escape(n['path'])}' src='{thumbnail(root, n['path'], 96) or ''}'>"
            f"<figcaption>{html.escape(n['label'])} · {n['distance']:.2f}</figcaption></figure>"
            for n in w["nearest"]
        )
        figures.append(
            f"<div class=explained>{mistake}<div><small>nearest training photos</small>"
            f"<div class=gallery>{near}</div></div></div>"
        )
    return "<div class=gallery>" + "".join(figures) + "</div>"


def _mistake_caption(wrong: dict[str, Any]) -> str:
    """'<b>cloudy</b> taken for <b>rain</b> (93%)'; for a label set, its missed and extra labels."""
    if "missed" not in wrong:
        return (
            f"<b>{html.escape(wrong['true'])}</b> taken for <b>{html.escape(wrong['predicted'])}</b> "
            f"({wrong['confidence']:.0%})"
        )
    changes = [
        f"{kind} <b class={kind}>{html.escape(', '.join(wrong[kind]))}</b>"
        for kind in ("missed", "extra")
        if wrong[kind]
    ]
    return (
        f"{'; '.join(changes)} (by {wrong['confidence']:.2f})<br>true {html.escape(_set_text(wrong['true']))}, "
        f"given {html.escape(_set_text(wrong['predicted']))}"
    )


def _set_text(named: str) -> str:
    """A label set as `Task.named` writes it ('a;b', '(none)') for reading: 'a, b'."""
    return named.replace(";", ", ")


def _nth(k: int) -> str:
    return "nearest" if k == 1 else f"{k}th nearest"


def _unknown_section(run: RunDir, result: dict[str, Any], meta: dict[str, Any]) -> str:
    """The 'none of these' check: its threshold, the share of test photos it accepts, the histogram."""
    scores, check = result.get("outlier_scores"), meta.get("outliers")
    if not check or not scores:
        return "<p>This run has no 'none of these' check (trained with <code>--unknown-accept 0</code>).</p>"
    return (
        f"<p>A photo whose features are farther than {check['threshold']:.3f} (cosine) from its "
        f"{_nth(check['k'])} training photo is <b>unknown</b>: none of the classes. The threshold accepts "
        f"{check['accept']:.1%} of {check['validated_on']} {check.get('reference', 'validation photos')}; "
        f"it accepts "
        f"{scores['test_accepted']:.1%} of the {scores['test_photos']} test photos. "
        f"<code>photoclass evaluate {html.escape(str(run.path))} --outsiders DIR</code> measures it on photos of "
        "no class; <code>photoclass similar</code> lists any photo's nearest training photos.</p>"
        + outsiders_text(check)
        + _plot(run.plot("outlier_scores"))
    )


def _gradcam_section(
    run: RunDir,
    model: nn.Module | None,
    meta: dict[str, Any],
    root: Path,
    rows: list[dict[str, str]],
    wrong: list[dict[str, Any]],
    every_wrong: list[str],
    given: dict[str, str] | None = None,
) -> str:
    """Grad-CAM of a few wrong and right test photos; `given` holds each test photo's predicted
    label set, where the answer is a set (the heat map is then its most probable label's)."""
    test_paths = [r["path"] for r in rows if r["split"] == "test" and r["status"] == "ok"]
    wrong_paths = [w["path"] for w in wrong]
    right_paths = [p for p in test_paths if p not in set(wrong_paths) | set(every_wrong)]
    chosen = (
        wrong_paths[: GRADCAM_PHOTOS // 2] + right_paths[: GRADCAM_PHOTOS - min(len(wrong_paths), GRADCAM_PHOTOS // 2)]
    )
    labels = {r["path"]: r["label"] for r in rows}
    try:
        if model is None:
            model, _ = load_model(run)
        spec = InputSpec.from_dict(meta["input"], source=str(run / RunDir.MODEL_META))
        figures = []
        for path in chosen:
            try:
                pixels = load_photo(root, path, size=spec.size).to_array()
            except (DecodeError, OSError):
                continue
            x = normalize(to_float(torch.from_numpy(pixels[None].copy())), spec.mean, spec.std)
            heatmap, predicted = gradcam(model, x)
            true = labels[path] if given is None else _set_text(labels[path] or "(none)")
            answer = (
                f"predicted <b>{html.escape(meta['classes'][predicted])}</b>"
                if given is None
                else f"given <b>{html.escape(_set_text(given.get(path, labels[path])))}</b><br>heat map: "
                f"{html.escape(meta['classes'][predicted])}"
            )
            figures.append(
                f"<figure><img alt='Grad-CAM of {html.escape(path)}' src='{_array_uri(overlay(pixels, heatmap))}'>"
                f"<figcaption>true <b>{html.escape(true)}</b>, {answer}<br>{html.escape(path)}</figcaption></figure>"
            )
    except Exception as e:  # a model without conv layers, or photos gone: the rest of the report stands
        return f"<p>Grad-CAM unavailable: {html.escape(str(e))}</p>"
    if not figures:
        return "<p>Grad-CAM unavailable: the test photos could not be read.</p>"
    explained = "the most probable label" if given is not None else "the predicted class"
    return (
        f"<p>Red areas weighed most for {explained} (Grad-CAM on the last convolution).</p>"
        "<div class=gallery>" + "".join(figures) + "</div>"
    )


def _given_sets(rows: list[dict[str, str]], wrong: list[dict[str, Any]]) -> dict[str, str]:
    """Each test photo's predicted label set: a mistake's as recorded, a right photo's its own."""
    given = {r["path"]: r["label"] or "(none)" for r in rows if r["split"] == "test"}
    return given | {w["path"]: w["predicted"] for w in wrong}


def _plot(path: Path) -> str:
    if not path.is_file():
        return "<p>(not available)</p>"
    return f"<img class=plot alt='{html.escape(path.stem)}' src='{data_uri(path.read_bytes(), 'png')}'>"


def thumbnail(root: Path, relpath: str, size: int = THUMB) -> str | None:
    """A data: URI of the photo (or array image) at most `size` px; None if it cannot be read."""
    try:
        photo = load_photo(root, relpath)
    except (DecodeError, OSError):
        return None
    image = photo.image
    if max(image.size) < size // 2:  # 28-px digits: enlarged, pixels kept sharp
        scale = size // 2 // max(image.size)
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.thumbnail((size, size))
    return _array_uri(np.asarray(image))


def _array_uri(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=85)
    return data_uri(buffer.getvalue(), "jpeg")


def data_uri(data: bytes, kind: str) -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"


def write_audit_page(
    root: Path,
    suspects: list[dict[str, Any]],
    conflicts: list[list[dict[str, Any]]],
    outliers: list[dict[str, Any]],
    path: Path,
    *,
    shown: int = 60,
) -> Path:
    """audit.html: the photos the out-of-fold model labels otherwise, then those it agrees with
    least confidently; the duplicate groups whose photos carry different labels; and the least
    typical photos."""

    def figure(row: dict[str, Any], caption: str) -> str:
        photo = thumbnail(root, row["path"])
        image = (
            f"<img alt='{html.escape(row['path'])}' src='{photo}'>"
            if photo
            else "<div class=missing>photo not found</div>"
        )
        return (
            f"<figure data-path='{html.escape(row['path'])}'>{image}<figcaption>{caption}<br>"
            f"{html.escape(row['path'])}</figcaption></figure>"
        )

    flagged = sum(1 for s in suspects if s["flagged"])
    mislabeled = [s for s in suspects if _disagrees(s)]
    agreed = [s for s in suspects if not _disagrees(s)][:AGREED_SHOWN]
    parts = [
        f"<h1>Label audit: {html.escape(str(root))}</h1>",
        f"<p>{len(suspects)} photos; cleanlab flags {flagged} as likely mislabeled, and the model that never "
        f"saw a photo picks another label than the given one for {len(mislabeled)}. Most suspicious first "
        "(score: the out-of-fold probability of the given label). Nothing in the folder was changed.</p>",
        f"<h2>Likely mislabeled: the model picks another label ({len(mislabeled)})</h2><div class=gallery>",
    ]
    parts += [
        figure(
            s,
            f"given <b>{html.escape(s['given_label'])}</b>, looks like "
            f"<b>{html.escape(s['suggested_label'])}</b> ({s['score']:.2f})",
        )
        for s in mislabeled[:shown]
    ]
    parts += [
        "</div>",
        "<h2>Least confident of the rest: the model agrees with the given label</h2><div class=gallery>",
    ]
    parts += [
        figure(s, f"given <b>{html.escape(s['given_label'])}</b>, the model agrees ({s['score']:.2f})") for s in agreed
    ]
    parts += ["</div>", f"<h2>Duplicates with different labels ({len(conflicts)} groups)</h2>"]
    for group in conflicts[:20]:
        parts += (
            ["<div class=gallery>"]
            + [figure(r, f"labelled <b>{html.escape(r['label'])}</b>") for r in group]
            + ["</div>"]
        )
    parts += [
        f"<h2>Least typical photos: the {len(outliers)} farthest from the rest (highest outlier score first)</h2>"
        "<div class=gallery>"
    ]
    parts += [figure(o, f"{html.escape(o['label'])}, outlier score {o['outlier_score']:.3f}") for o in outliers]
    parts += ["</div>"]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, page(f"photoclass label audit: {root.name}", "\n".join(parts)))
    return path
