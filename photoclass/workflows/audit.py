"""`audit()`: likely mislabeled photos, duplicates with different labels, and outliers.

Reads the folder, never changes it: the findings go to OUT/label_issues.csv (most
suspicious first), OUT/audit.html (with the photos) and OUT/audit.json.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AUDIT_SKIPS, PrepareConfig, TrainConfig, takes_options
from ..core.progress import progress_bar
from ..core.atomic import check_writable, write_text_atomic
from ..core.device import resolve_device, resolve_precision
from ..core.errors import PhotoclassError
from ..core.torchsetup import setup_torch
from ..data.loader import BatchLoader
from ..data.outside import check_outside
from ..data.prepare import prepare
from ..evaluation.html_report import write_audit_page, write_report
from ..evaluation.label_errors import outlier_scores
from ..models.registry import create_model, model_info
from ..runs.rundir import RunDir
from ..tasks import task_for
from ..training.features import extract_features, lowered

OUTLIERS_SHOWN = 12


@dataclass
class Audit:
    suspects: list[dict[str, Any]]  # every photo, most suspicious first
    conflicts: list[list[dict[str, Any]]]  # duplicate groups whose photos carry different labels
    outliers: list[dict[str, Any]]  # the least typical photos, highest outlier_score first
    out: Path

    @property
    def flagged(self) -> list[dict[str, Any]]:
        return [s for s in self.suspects if s["flagged"]]

    def __repr__(self) -> str:
        return (
            f"Audit({len(self.suspects)} photos, {len(self.flagged)} likely mislabeled, "
            f"{len(self.conflicts)} conflicting duplicate groups, in {str(self.out)!r})"
        )


@takes_options(PrepareConfig, exclude=AUDIT_SKIPS)
def audit(
    data: str | os.PathLike,
    *,
    out: str | os.PathLike = "audit",
    model: str = TrainConfig.model,
    folds: int = 5,
    seed: int = 0,
    device: str = "auto",
    progress: bool | None = None,
    **options: Any,
) -> Audit:
    """Rank every photo of `data` by how likely its label is wrong (cleanlab on out-of-fold
    probabilities from frozen `model` features, in duplicate-grouped folds)."""
    info = model_info(model)
    if not info.pretrained:
        raise PhotoclassError(
            f"audit needs a pretrained model for its features; {model!r} is not. HINT: --model {TrainConfig.model}"
        )
    root, out = Path(data).expanduser().resolve(), Path(out).expanduser()
    if not root.exists():
        raise PhotoclassError(
            f"{data} not found. HINT: audit what `photoclass train` takes: a folder of photos, "
            "a CSV of labels or image arrays."
        )
    check_outside(out, root)
    check_writable(out, hint="pass another --out")
    where = resolve_device(device)
    setup_torch(0, seed)
    config = PrepareConfig.from_dict({**options, "image_size": info.input_spec.size, "seed": seed})
    dataset = prepare(root, config=config, progress=progress, pixels=False)  # each photo is read once
    net = create_model(model, len(dataset.classes)).to(where).eval()
    encode, _ = net.split_for_training(0)
    every = np.arange(len(dataset))
    loader = BatchLoader(
        dataset.images,
        dataset.labels,
        every,
        batch_size=16,
        mean=info.input_spec.mean,
        std=info.input_spec.std,
        device=where,
    )
    precision = resolve_precision("auto", where, stage="features")
    features = (
        extract_features(
            lowered(encode, precision, where), loader, desc="features", progress=progress, precision=precision
        )
        .cpu()
        .numpy()
    )
    task = task_for(config.task, dataset.summary)
    issues = task.label_issues(features, dataset.labels, dataset.groups, folds=folds, seed=seed, progress=progress)
    rows, classes = dataset.usable, dataset.classes
    suspects = [
        {
            "path": rows[s.index].path,
            "given_label": task.named(s.given, classes),
            "suggested_label": task.named(s.suggested, classes),
            "score": s.score,
            "flagged": s.flagged,
        }
        for s in issues
    ]
    # one call: half a minute for 12,000 photos
    with progress_bar(total=1, desc="outlier scores", unit="step", progress=progress) as bar:
        scores = outlier_scores(features)
        bar.update()
    outliers = [
        {"path": rows[i].path, "label": rows[i].label, "outlier_score": round(float(scores[i]), 6)}
        for i in np.argsort(-scores, kind="stable")[:OUTLIERS_SHOWN]
    ]  # farthest first, as predict's
    result = Audit(suspects, _conflicting_groups(dataset), outliers, out)
    _write(result, dataset.root)
    return result


def _conflicting_groups(dataset) -> list[list[dict[str, Any]]]:
    groups: dict[int, list] = {}
    for row in dataset.usable:
        groups.setdefault(row.group, []).append(row)
    return [
        [{"path": r.path, "label": r.label} for r in members]
        for members in groups.values()
        if len({r.label for r in members}) > 1
    ]


def _write(result: Audit, root: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "given_label", "suggested_label", "score", "flagged"])
    for s in result.suspects:
        writer.writerow([s["path"], s["given_label"], s["suggested_label"], f"{s['score']:.6f}", int(s["flagged"])])
    write_text_atomic(result.out / RunDir.AUDIT_ISSUES, buffer.getvalue())
    RunDir(result.out).write_json(
        RunDir.AUDIT_SUMMARY,
        {
            "root": str(root),
            "photos": len(result.suspects),
            "flagged": len(result.flagged),
            "conflicts": result.conflicts,
            "outliers": result.outliers,
        },
    )
    write_audit_page(root, result.suspects, result.conflicts, result.outliers, result.out / RunDir.AUDIT_PAGE)
    run = RunDir(result.out.parent)
    if run.exists(RunDir.REPORT) and run.exists(RunDir.TEST_METRICS):  # audited into a run: its report links to it
        write_report(run)
