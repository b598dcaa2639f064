"""A prepared dataset: the manifest, the classes, and the pixels of the usable photos (cached, or
decoded when read)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import write_text_atomic
from .cache import CachedImages
from .labelsets import MULTI_LABEL, SINGLE_LABEL, label_matrix
from .streamed import StreamedImages
from .split import SPLITS

MANIFEST_COLUMNS = ("path", "label", "split", "group", "status", "reason")


@dataclass(frozen=True)
class ManifestRow:
    path: str  # relative to the dataset root, posix
    label: str  # multi-label: the photo's labels, sorted and joined by ";" ("" for none)
    split: str  # "train", "val", "test"; "" when skipped
    group: int  # duplicate group; -1 when skipped
    # "ok", "skipped", "merged" (a copy of a photo in another class folder, which carries its labels),
    # or from a correction "dropped" or "outsider" (a photo of no known class)
    status: str
    reason: str  # why skipped, or the conversions made


class PreparedDataset:
    """Photos found, checked, grouped and split; pixels served from the decode cache.

    `images[i]` and `labels[i]` follow `usable`, the rows whose status is ok, in manifest
    order. `indices("train")` selects one split. `task` is the labels' format: single-label
    (`labels` (N,) int64 class indices) or multi-label (`labels` (N, L) uint8, 1 where a photo
    carries label `classes[l]`).
    """

    def __init__(
        self,
        root: Path,
        rows: list[ManifestRow],
        classes: list[str],
        images: CachedImages | StreamedImages,
        summary: dict[str, Any],
        config: dict[str, Any],
        keys: list[str] | None = None,
        task: str = SINGLE_LABEL,
    ):
        self.root = Path(root)
        self.keys = keys  # content keys of the usable photos (a hash of each file's bytes), when known
        self.rows = rows
        self.classes = classes
        self.images = images
        self.summary = summary
        self.config = config
        self.usable = [r for r in rows if r.status == "ok"]
        self.skipped = [r for r in rows if r.status == "skipped"]
        self.task = task
        if task == MULTI_LABEL:
            self.labels = label_matrix([r.label for r in self.usable], classes)  # (N, L) uint8
        else:
            class_index = {c: i for i, c in enumerate(classes)}
            self.labels = np.array([class_index[r.label] for r in self.usable], dtype=np.int64)
        self.splits = np.array([r.split for r in self.usable], dtype=str)
        self.groups = np.array([r.group for r in self.usable], dtype=np.int64)

    def indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}. Received: split={split!r}")
        return np.flatnonzero(self.splits == split)

    def paths(self, split: str | None = None) -> list[Path]:
        rows = self.usable if split is None else [self.usable[i] for i in self.indices(split)]
        return [self.root / r.path for r in rows]

    def exact_images(self) -> CachedImages | StreamedImages:
        """`images`, or where the cache keeps them lossily (jpeg), the same photos decoded from
        their files on read: what test figures are measured on."""
        if not getattr(self.images, "lossy", False):
            return self.images
        c = self.config
        return StreamedImages(
            self.paths(),
            self.images.image_size,
            max_pixels=c["max_pixels"],
            min_side=c["min_side"],
            threads=self.images.threads,
        )

    def __len__(self) -> int:
        return len(self.usable)

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={len(self.indices(s))}" for s in SPLITS)
        return (
            f"PreparedDataset({self.root.name!r}: {len(self)} photos, "
            f"{len(self.classes)} classes {self.classes}, {counts}, skipped={len(self.skipped)})"
        )

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{s}</th>" for s in ("class", *SPLITS))
        held = self.labels.astype(bool) if self.task == MULTI_LABEL else None
        rows = "".join(
            f"<tr><td>{html.escape(c)}</td>"
            + "".join(
                f"<td>{int(((held[:, i] if held is not None else self.labels == i) & (self.splits == s)).sum())}</td>"
                for s in SPLITS
            )
            + "</tr>"
            for i, c in enumerate(self.classes)
        )
        return f"<p>{html.escape(repr(self))}</p><table><tr>{head}</tr>{rows}</table>"

    def save(self, out: str | Path) -> Path:
        """Write `manifest.csv` and `dataset.json` to `out`; returns the manifest path."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "manifest.csv", manifest_csv(self.rows))
        info = {"root": str(self.root), "classes": self.classes, "config": self.config, "summary": self.summary}
        write_text_atomic(out / "dataset.json", json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        return out / "manifest.csv"


def manifest_csv(rows: list[ManifestRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for r in rows:
        writer.writerow([r.path, r.label, r.split, "" if r.group < 0 else r.group, r.status, r.reason])
    return buffer.getvalue()
