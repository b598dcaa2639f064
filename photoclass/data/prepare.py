"""scan -> hash -> decode (cached) -> find duplicates -> split -> manifest."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..core.progress import progress_bar
from ..core.version import __version__
from ..config import PrepareConfig
from ..core.errors import PhotoclassError
from ..core.atomic import check_writable
from ..core.raycluster import RayPool
from .arrays import ARRAY_LAYOUTS, ArraySet, array_layout, read_arrays
from .cache import ImageCache, array_keys
from .dataset import ManifestRow, PreparedDataset
from .decode import ALLOWED_FORMATS
from .dedupe import ARRAY_MAX_HASH_DISTANCE, ARRAY_MAX_THUMB_DIFFERENCE, find_duplicates
from .outside import check_outside
from .scan import FoundPhoto, ScanResult, scan_folder
from .streamed import StreamedImages
from .split import SPLITS, grouped_folds, grouped_split, leaked_test_photos, naive_split

MAX_LISTED = 20  # skipped / converted files listed by name in the summary
RAW_CACHE_LIMIT = 2 * 2**30  # bytes of raw pixels past which `auto` keeps photos as jpeg: 14,000 at 224 px
KEEP_PIXELS_LIMIT = 2**30  # bytes of raw pixels up to which pixels="auto" keeps them: 5,300 photos at 260 px


def prepare(
    data: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    config: PrepareConfig | None = None,
    progress: bool | None = None,
    pixels: bool | str = True,
    ray: str | None = None,
    **options: Any,
) -> PreparedDataset:
    """Scan, decode, deduplicate and split the photos in `data`.

    Options are the fields of `PrepareConfig` (image_size, val_size, test_size, seed, split,
    layout, label_regex, ...). With `out`, writes `manifest.csv` and `dataset.json` there.
    `progress=None` shows a bar only on a terminal. Without `pixels`, the decoded photos are
    fingerprinted but not kept, and the dataset's `images` decode them again when read (for
    work that reads each photo once; array data is always kept). `pixels="auto"` keeps them
    when they are few (up to KEEP_PIXELS_LIMIT bytes), where keeping costs little disk and
    saves the second decode. With `ray` (a cluster's address, or "local"), the photos are
    decoded and fingerprinted by the cluster's workers, which must see the same files, and
    grouped and split here; their pixels are not kept.
    """
    config = config or PrepareConfig.from_dict(options)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    root = Path(data).expanduser()
    arrays = _arrays(root, config.layout)
    if arrays is not None:
        root = arrays.root
        scan = ScanResult(
            root,
            arrays.layout,
            [
                FoundPhoto(root, name, label, split)
                for name, label, split in zip(arrays.names, arrays.labels, arrays.given_split)
            ],
        )
    else:  # checks the folder first: nothing is written for a bad one
        scan = scan_folder(
            root,
            layout=config.layout,
            label_regex=config.label_regex,
            follow_symlinks=config.follow_symlinks,
            path_column=config.path_column,
            label_column=config.label_column,
        )
        if scan.layout == "csv":
            root = scan.root  # the CSV's folder, which its relative paths start from
    if out is not None:
        check_outside(out, data)
        check_writable(out, hint="pass another --out")
    if config.cache_dir is not None:
        check_outside(config.cache_dir, data, flag="--cache-dir")
    labelled = [p for p in scan.photos if p.label]
    timings["scan"] = time.perf_counter() - started

    workers = config.workers or os.cpu_count() or 1
    if pixels == "auto":
        pixels = len(labelled) * config.image_size**2 * 3 <= KEEP_PIXELS_LIMIT
    elif not isinstance(pixels, bool):
        raise ValueError(f"pixels must be True, False or 'auto', not {pixels!r}")
    pixel_format = _pixel_format(config.pixel_cache, len(labelled), config.image_size, arrays is not None)
    cache = ImageCache(
        config.cache_dir,
        config.image_size,
        max_pixels=config.max_pixels,
        min_side=config.min_side,
        pixel_format=pixel_format,
    )
    try:
        t = time.perf_counter()
        keys = (
            array_keys(arrays.images) if arrays is not None else cache.content_keys([p.path for p in labelled], workers)
        )
        timings["hash"] = time.perf_counter() - t
        t = time.perf_counter()
        with progress_bar(total=len(keys), desc="decode", unit="img", progress=progress) as bar:
            if arrays is not None:
                entries, decoded = cache.store_arrays(keys, arrays.images, progress=bar.update)
            else:
                entries, decoded = cache.decode_missing(
                    keys,
                    [p.path for p in labelled],
                    workers=workers,
                    progress=bar.update,
                    pixels=pixels and not ray,
                    pool=RayPool(ray) if ray else None,
                )
        timings["decode"] = time.perf_counter() - t
    finally:
        cache.close()

    ok = [(p, k) for p, k in zip(labelled, keys) if entries[k].status == "ok"]
    if not ok:
        raise PhotoclassError(_no_photos_message(root, scan, labelled, keys, entries))
    ok_entries = [entries[k] for _, k in ok]
    classes = sorted({p.label for p, _ in ok}, key=_class_order)
    if len(classes) < 2:
        raise PhotoclassError(
            f"Training needs photos of at least 2 classes, but {root} contains only one "
            f"class: {classes[0]!r} ({len(ok)} photos). HINT: check the layout "
            f"(found {scan.layout!r}), or pass `label_regex` for labels in file names."
        )

    t = time.perf_counter()
    duplicates = find_duplicates(
        [k for _, k in ok],
        np.array([e.phash for e in ok_entries], dtype=np.uint64),
        np.frombuffer(b"".join(e.thumb for e in ok_entries), dtype=np.uint8).reshape(len(ok), -1),
        **(
            {}
            if arrays is None
            else {"max_hash_distance": ARRAY_MAX_HASH_DISTANCE, "max_thumb_difference": ARRAY_MAX_THUMB_DIFFERENCE}
        ),
    )
    timings["dedupe"] = time.perf_counter() - t

    t = time.perf_counter()
    label_ids = np.array([classes.index(p.label) for p, _ in ok])
    splits, given_leaks = _assign_splits([p for p, _ in ok], label_ids, duplicates.group, config)
    naive = naive_split(label_ids, val_size=config.val_size, test_size=config.test_size, seed=config.seed)
    timings["split"] = time.perf_counter() - t

    rows = [
        ManifestRow(p.relpath, p.label, s, int(g), "ok", entries[k].reason)
        for (p, k), s, g in zip(ok, splits, duplicates.group)
    ]
    rows += [ManifestRow(p.relpath, p.label or "", "", -1, "skipped", p.reason) for p in scan.photos if not p.label]
    rows += [
        ManifestRow(p.relpath, p.label, "", -1, "skipped", entries[k].reason)
        for p, k in zip(labelled, keys)
        if entries[k].status != "ok"
    ]
    if arrays is None:  # array images keep their order: file#10 after file#9
        rows.sort(key=lambda r: r.path)
    timings["total"] = time.perf_counter() - started

    summary = _summary(
        root,
        scan,
        rows,
        classes,
        duplicates,
        ok,
        splits,
        leaked_test_photos(naive, duplicates.group),
        given_leaks,
        config,
        timings,
        {"dir": str(cache.root), "decoded": decoded, "reused": len(keys) - decoded},
    )
    summary["channels"] = arrays.channels if arrays is not None else 3
    summary["source"] = str(Path(data).expanduser().resolve())  # a CSV's own path; the folder otherwise
    summary["given_splits"] = sorted({p.given_split for p, _ in ok if p.given_split})
    summary["folds"], summary["fold"] = config.folds, config.fold
    # scan order is manifest order, so the cached images line up with the usable rows
    streamed = (not pixels or bool(ray)) and arrays is None
    images = (
        StreamedImages(
            [p.path for p, _ in ok],
            config.image_size,
            max_pixels=config.max_pixels,
            min_side=config.min_side,
            threads=workers,
        )
        if streamed
        else cache.images(ok_entries)
    )
    summary["cache"]["pixels"] = "decoded when read" if streamed else f"kept ({pixel_format})"
    dataset = PreparedDataset(
        root.resolve(),
        rows,
        classes,
        images,
        summary,
        {**config.to_dict(), "photoclass": __version__},
        keys=[k for _, k in ok],
    )
    if out is not None:
        summary["manifest"] = str(dataset.save(out))
    return dataset


def _arrays(root: Path, layout: str) -> ArraySet | None:
    """The image arrays at `root`, when it holds arrays (by layout, or detected)."""
    if layout in ARRAY_LAYOUTS or (layout == "auto" and root.exists() and array_layout(root)):
        return read_arrays(root, layout)
    return None


def _assign_splits(
    photos: list[FoundPhoto], labels: np.ndarray, groups: np.ndarray, config: PrepareConfig
) -> tuple[np.ndarray, int | None]:
    """Split, respecting given train/val/test folders. Returns (splits, leaks in given split)."""
    # naive: every photo its own group; leaks are still counted with the real groups
    split_groups = np.arange(len(labels)) if config.split == "naive" else groups
    given = np.array([p.given_split or "" for p in photos])
    if config.folds and given.any():
        raise PhotoclassError(
            "--folds makes its own test splits, but this data comes split into train/val/test. "
            "HINT: drop --folds, or give one pool to split: a folder of class folders with "
            "--layout folders, a CSV without a split column, an .npz with x and y."
        )
    if config.folds:
        fold_of = grouped_folds(labels, split_groups, folds=config.folds, seed=config.seed)
        filled = len(np.unique(fold_of))
        if filled < config.folds:  # said before fold 0 trains, not when the first empty fold comes up
            raise PhotoclassError(
                f"--folds {config.folds} is more folds than these {len(labels)} photos fill: only "
                f"{filled} get test photos (each group of duplicates stays in one fold). "
                f"HINT: --folds {filled} or fewer."
            )
        test = fold_of == config.fold
        splits = np.full(len(labels), "test", dtype=object)
        rest = np.flatnonzero(~test)
        splits[rest] = grouped_split(
            labels[rest], split_groups[rest], val_size=config.val_size, test_size=0.0, seed=config.seed
        )
        return splits.astype(str), None
    if not given.any():
        return grouped_split(
            labels, split_groups, val_size=config.val_size, test_size=config.test_size, seed=config.seed
        ), None
    given = given.astype(object)
    blank = np.flatnonzero(given == "")  # CSV rows without a split fill the splits that no row names
    if len(blank):
        named = set(given[given != ""].tolist())
        given[blank] = grouped_split(
            labels[blank],
            split_groups[blank],
            val_size=0.0 if "val" in named else config.val_size,
            test_size=0.0 if "test" in named else config.test_size,
            seed=config.seed,
        )
    splits = given.copy()
    present = set(given.tolist())
    if "test" not in present:
        splits[given == "val"] = "test"  # the given val is the held-out test split
    if "test" not in present or "val" not in present:
        train = np.flatnonzero(given == "train")
        if not len(train):
            raise PhotoclassError(
                "The given splits have no training photos. HINT: mark some rows or folders "
                "train, or give no splits at all."
            )
        carve = config.val_size / (1.0 - config.test_size)
        splits[train] = grouped_split(
            labels[train], split_groups[train], val_size=carve, test_size=0.0, seed=config.seed
        )
    splits = splits.astype(str)
    return splits, leaked_test_photos(splits, groups)


def _summary(
    root, scan: ScanResult, rows, classes, duplicates, ok, splits, naive_leaks, given_leaks, config, timings, cache_info
) -> dict[str, Any]:
    usable = [r for r in rows if r.status == "ok"]
    skipped = [r for r in rows if r.status != "ok"]
    converted = [r for r in usable if r.reason]
    per_class = {c: {s: 0 for s in SPLITS} for c in classes}
    for r in usable:
        per_class[r.label][r.split] += 1
    for counts in per_class.values():
        counts["total"] = sum(counts[s] for s in SPLITS)
    conflicts = [
        sorted({ok[i][0].label for i in m}) for m in duplicates.members if len({ok[i][0].label for i in m}) > 1
    ]
    test_total = int(np.sum(np.asarray(splits) == "test"))
    return {
        "root": str(root),
        "layout": scan.layout,
        "notes": scan.notes,
        "usable": len(usable),
        "skipped": len(skipped),
        "ignored": sum(scan.ignored.values()),
        "classes": per_class,
        "splits": {s: int(np.sum(np.asarray(splits) == s)) for s in SPLITS},
        "split_mode": config.split,
        "seed": config.seed,
        "image_size": config.image_size,
        "skipped_files": [{"path": r.path, "reason": r.reason} for r in skipped[:MAX_LISTED]],
        "skip_reasons": dict(Counter(_reason_kind(r.reason) for r in skipped)),
        "converted": len(converted),
        "converted_files": [{"path": r.path, "reason": r.reason} for r in converted[:MAX_LISTED]],
        "ignored_reasons": dict(scan.ignored),
        "ignored_examples": scan.ignored_examples,
        "duplicates": {
            "groups": duplicates.count,
            "byte_identical_groups": duplicates.identical_groups,
            "near_identical_groups": duplicates.near_groups,
            "photos_in_groups": duplicates.photos_in_groups,
            "largest_group": duplicates.largest,
            "search": duplicates.search,
            "links_refused": duplicates.links_refused,
            "label_conflicts": len(conflicts),
            "label_conflict_examples": conflicts[:5],
        },
        "leaks": {
            "test_photos": test_total,
            "naive_split_test_with_twin_in_train": naive_leaks,
            "given_split_test_with_twin_in_train": given_leaks,
        },
        "cache": cache_info,  # byte-identical copies are decoded once and count as reused
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def _class_order(name: str) -> tuple:
    """Names in text order, but class numbers in number order ('2' before '10')."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split("(")[0].strip()


def _no_photos_message(root, scan, labelled, keys, entries) -> str:
    allowed = ", ".join(ALLOWED_FORMATS)
    if not scan.photos:
        return (
            f"No images found in {root} (layout {scan.layout!r}). Allowed formats: {allowed}. "
            f"Ignored: {dict(scan.ignored) or 'nothing'}. HINT: pass the folder that holds the photos or their "
            "class folders, a CSV of labels or an array file; `photoclass prepare --help` lists the layouts."
        )
    if not labelled:
        return (
            f"No labels found for the {len(scan.photos)} images in {root}: "
            f"{scan.photos[0].reason}. HINT: pass `label_regex` with one group, the label, or put the photos "
            "in one folder per class."
        )
    photo, key = labelled[0], keys[0]
    return f"None of the {len(labelled)} images in {root} could be read; e.g. {photo.relpath}: {entries[key].reason}"


def _pixel_format(choice: str, photos: int, size: int, arrays: bool) -> str:
    """`auto`: raw, exact and the fastest to read, unless the photo files' pixels would fill
    more than RAW_CACHE_LIMIT; then jpeg, 6-7x smaller (benchmarks/README.md, loading.py)."""
    if choice != "auto":
        return choice
    return "raw" if arrays or photos * size * size * 3 <= RAW_CACHE_LIMIT else "jpeg"
