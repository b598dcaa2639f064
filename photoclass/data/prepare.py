"""scan -> hash -> decode (cached) -> find duplicates -> split -> manifest."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import replace
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
from .copies import fold_folder_copies
from .corrections import CORRECTED, array_sha256, describe, files_sha256, match, read_corrections
from .dataset import ManifestRow, PreparedDataset
from .decode import ALLOWED_FORMATS
from .labelsets import (
    MULTI_LABEL,
    has_label,
    label_matrix,
    labels_of,
    multi_label_summary,
    note_missing_labels,
    resolve_labels,
)
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
    root, arrays, scan = _scan(Path(data).expanduser(), config)  # first: nothing is written for a bad folder
    label_format = resolve_labels(
        scan, task=config.task, label_sep=config.label_sep, multi_hot=arrays is not None and arrays.multi_hot
    )
    _check_destinations(data, out, config)
    labelled = [p for p in scan.photos if has_label(p, label_format)]
    timings["scan"] = time.perf_counter() - started

    workers = config.workers or os.cpu_count() or 1
    pixels = _keep_pixels(pixels, len(labelled), config.image_size)
    pixel_format = _pixel_format(config.pixel_cache, len(labelled), config.image_size, arrays is not None)
    cache, keys, entries, decoded = _hash_and_decode(
        labelled, arrays, config, pixel_format, workers, pixels and not ray, ray, progress, timings
    )
    ok = _decoded_photos(root, scan, labelled, keys, entries)
    ok, label_format, set_aside = fold_folder_copies(scan, ok, entries, task=config.task, label_format=label_format)
    classes, label_ids = _classes_and_ids(root, scan, ok, label_format)
    duplicates, splits, given_leaks, naive = _group_and_split(
        ok, entries, label_ids, config, timings, arrays is not None
    )
    groups, grouped = duplicates.group, ok  # the photos the duplicate groups index
    corrected, notes = None, {}
    if config.corrections:  # after the split, so that no unchanged photo changes split
        grouped, ok, splits, groups, set_aside, notes, corrected = _apply_corrections(
            ok, keys, splits, groups, set_aside, arrays, config, label_format, workers
        )
        classes, label_ids = _classes_and_ids(root, scan, ok, label_format)
    rows = _manifest_rows(
        scan, labelled, keys, entries, ok, splits, groups, set_aside, by_path=arrays is None, notes=notes
    )
    timings["total"] = time.perf_counter() - started

    streamed = (not pixels or bool(ray)) and arrays is None
    cache_info = {"dir": str(cache.root), "decoded": decoded, "reused": len(keys) - decoded}
    cache_info["pixels"] = "decoded when read" if streamed else f"kept ({pixel_format})"
    naive_leaks = leaked_test_photos(naive, duplicates.group)
    if label_format == MULTI_LABEL:
        note_missing_labels(scan.notes, label_ids, splits, groups, classes)
    summary = _summary(
        root, scan, rows, classes, duplicates, grouped, splits, naive_leaks, given_leaks, config, timings, cache_info
    )
    if corrected is not None:
        summary["corrections"] = corrected
    summary.update(_source_summary(data, arrays, ok, config))
    if label_format == MULTI_LABEL:
        summary.update(multi_label_summary(label_ids))
    # scan order is manifest order, so the cached images line up with the usable rows
    images = _streamed_images(ok, config, workers) if streamed else cache.images([entries[k] for _, k in ok])
    settings = {**config.to_dict(), "photoclass": __version__}
    dataset = PreparedDataset(
        root.resolve(), rows, classes, images, summary, settings, keys=[k for _, k in ok], task=label_format
    )
    if out is not None:
        summary["manifest"] = str(dataset.save(out))
    return dataset


def _scan(root: Path, config: PrepareConfig) -> tuple[Path, ArraySet | None, ScanResult]:
    """The photos at `root`: (the root their paths start from, its arrays if any, the scan)."""
    arrays = _arrays(root, config.layout)
    if arrays is not None:
        found = zip(arrays.names, arrays.labels, arrays.given_split)
        scan = ScanResult(arrays.root, arrays.layout, [FoundPhoto(arrays.root, *photo) for photo in found])
        return arrays.root, arrays, scan
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
    return root, None, scan


def _check_destinations(data: str | os.PathLike, out: str | os.PathLike | None, config: PrepareConfig) -> None:
    """Refuse an `out` or cache folder inside the data, or an `out` that cannot be written."""
    if out is not None:
        check_outside(out, data)
        check_writable(out, hint="pass another --out")
    if config.cache_dir is not None:
        check_outside(config.cache_dir, data, flag="--cache-dir")


def _keep_pixels(pixels: bool | str, photos: int, size: int) -> bool:
    """`pixels` as a bool: `auto` keeps them when they fill at most KEEP_PIXELS_LIMIT bytes."""
    if pixels == "auto":
        return photos * size**2 * 3 <= KEEP_PIXELS_LIMIT
    if not isinstance(pixels, bool):
        raise ValueError(f"pixels must be True, False or 'auto', not {pixels!r}")
    return pixels


def _hash_and_decode(
    labelled: list[FoundPhoto],
    arrays: ArraySet | None,
    config: PrepareConfig,
    pixel_format: str,
    workers: int,
    keep_pixels: bool,
    ray: str | None,
    progress: bool | None,
    timings: dict[str, float],
) -> tuple[ImageCache, list[str], dict, int]:
    """Fingerprint and decode into the cache what it lacks: (cache, keys, entries by key, decoded)."""
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
                    pixels=keep_pixels,
                    pool=RayPool(ray) if ray else None,
                )
        timings["decode"] = time.perf_counter() - t
    finally:
        cache.close()
    return cache, keys, entries, decoded


def _decoded_photos(root: Path, scan: ScanResult, labelled, keys, entries) -> list[tuple[FoundPhoto, str]]:
    """The (photo, key) pairs that decoded; refuses none."""
    ok = [(p, k) for p, k in zip(labelled, keys) if entries[k].status == "ok"]
    if not ok:
        raise PhotoclassError(_no_photos_message(root, scan, labelled, keys, entries))
    return ok


def _classes(root: Path, scan: ScanResult, ok, label_format: str) -> list[str]:
    """The classes (multi-label: the labels) of the usable photos; refuses fewer than 2 classes
    (multi-label: no label at all)."""
    if label_format == MULTI_LABEL:
        labels = sorted({label for p, _ in ok for label in labels_of(p.label)}, key=_class_order)
        if not labels:
            raise PhotoclassError(
                f"Multi-label training needs photos with labels, but none of the {len(ok)} photos in {root} "
                "has one (every label set is empty). HINT: check the label column, or --label-sep."
            )
        return labels
    classes = sorted({p.label for p, _ in ok}, key=_class_order)
    if len(classes) < 2:
        raise PhotoclassError(
            f"Training needs photos of at least 2 classes, but {root} contains only one "
            f"class: {classes[0]!r} ({len(ok)} photos). HINT: check the layout "
            f"(found {scan.layout!r}), or pass `label_regex` for labels in file names."
        )
    return classes


def _classes_and_ids(root: Path, scan: ScanResult, ok, label_format: str) -> tuple[list[str], np.ndarray]:
    classes = _classes(root, scan, ok, label_format)
    return classes, _label_ids(ok, classes, label_format)


def _label_ids(ok, classes: list[str], label_format: str) -> np.ndarray:
    """(N,) class indices, or for multi-label the (N, L) 0/1 label matrix, of the usable photos."""
    if label_format == MULTI_LABEL:
        return label_matrix([p.label for p, _ in ok], classes)
    return np.array([classes.index(p.label) for p, _ in ok])


def _group_and_split(
    ok, entries, label_ids: np.ndarray, config: PrepareConfig, timings: dict[str, float], from_arrays: bool
):
    """Group duplicates, then split by group: (duplicates, splits, given-split leaks, naive splits)."""
    ok_entries = [entries[k] for _, k in ok]
    t = time.perf_counter()
    duplicates = find_duplicates(
        [k for _, k in ok],
        np.array([e.phash for e in ok_entries], dtype=np.uint64),
        np.frombuffer(b"".join(e.thumb for e in ok_entries), dtype=np.uint8).reshape(len(ok), -1),
        **(
            {"max_hash_distance": ARRAY_MAX_HASH_DISTANCE, "max_thumb_difference": ARRAY_MAX_THUMB_DIFFERENCE}
            if from_arrays
            else {}
        ),
    )
    timings["dedupe"] = time.perf_counter() - t

    t = time.perf_counter()
    splits, given_leaks = _assign_splits([p for p, _ in ok], label_ids, duplicates.group, config)
    naive = naive_split(label_ids, val_size=config.val_size, test_size=config.test_size, seed=config.seed)
    timings["split"] = time.perf_counter() - t
    return duplicates, splits, given_leaks, naive


def _manifest_rows(
    scan, labelled, keys, entries, ok, splits, groups, set_aside: list[ManifestRow], *, by_path: bool, notes=None
) -> list[ManifestRow]:
    """One row per photo found: the usable ones with split and group, then the skipped (and
    `set_aside`: copies merged into another photo, left out, dropped or outsiders). `notes`: a
    correction applied to a usable photo, by path, added to its reason."""
    notes = notes or {}
    rows = [
        ManifestRow(
            p.relpath, p.label, s, int(g), "ok", "; ".join(filter(None, (entries[k].reason, notes.get(p.relpath))))
        )
        for (p, k), s, g in zip(ok, splits, groups)
    ]
    listed = {id(p) for p in labelled}
    rows += set_aside
    rows += [
        ManifestRow(p.relpath, p.label or "", "", -1, "skipped", p.reason) for p in scan.photos if id(p) not in listed
    ]
    rows += [
        ManifestRow(p.relpath, p.label, "", -1, "skipped", entries[k].reason)
        for p, k in zip(labelled, keys)
        if entries[k].status != "ok"
    ]
    if by_path:  # array images keep their order: file#10 after file#9
        rows.sort(key=lambda r: r.path)
    return rows


def _apply_corrections(ok, keys, splits, groups, set_aside, arrays, config, label_format, workers):
    """The corrections files over the split photos: (the photos relabelled, in the duplicate groups'
    order; those left for training with their splits and groups; `set_aside` plus the photos
    dropped or marked outsiders; the relabelled photos' notes by path; what was applied)."""
    wanted = read_corrections(config.corrections)
    if arrays is not None:
        index = {k: i for i, k in enumerate(keys)}
        shas = [array_sha256(arrays.images[index[k]]) for _, k in ok]
    else:
        shas = files_sha256([p.path for p, _ in ok], workers)
    overlay = match(shas, wanted)
    multi = label_format == MULTI_LABEL
    relabelled, kept, notes, changed = [], [], {}, []
    set_aside = list(set_aside)
    for i, (p, k) in enumerate(ok):
        c = overlay.found[i]
        photo = replace(p, label=overlay.label(i, p.label, multi_label=multi))
        relabelled.append((photo, k))
        removed = overlay.removed(i)
        if removed:
            status = "dropped" if removed == "drop" else "outsider"
            set_aside.append(ManifestRow(p.relpath, p.label, splits[i], int(groups[i]), status, describe(c, p.label)))
            continue
        kept.append(i)
        if c is not None and c.action == "relabel":
            notes[p.relpath] = describe(c, p.label)
            changed.append({"path": p.relpath, "from": p.label, "to": photo.label, "split": str(splits[i])})
    kept = np.array(kept, dtype=np.int64)
    kept_photos, kept_splits = [relabelled[i] for i in kept], np.asarray(splits)[kept]
    held = [(labels_of(p.label) if multi else [p.label], s) for (p, _), s in zip(kept_photos, kept_splits)]
    trained = {label for labels, s in held if s == "train" for label in labels}
    summary = {
        "files": list(config.corrections),
        "applied": overlay.counts(),
        "relabelled": changed,
        "unmatched": [{"row": c.where, "path": c.path, "action": c.action} for c in overlay.unmatched],
        "untrainable": sorted({label for labels, _ in held for label in labels} - trained, key=_class_order),
    }
    return relabelled, kept_photos, kept_splits, np.asarray(groups)[kept], set_aside, notes, summary


def _source_summary(data, arrays: ArraySet | None, ok, config: PrepareConfig) -> dict[str, Any]:
    """Where the photos came from: channels, source path, given splits, folds."""
    return {
        "channels": arrays.channels if arrays is not None else 3,
        "source": str(Path(data).expanduser().resolve()),  # a CSV's own path; the folder otherwise
        "given_splits": sorted({p.given_split for p, _ in ok if p.given_split}),
        "folds": config.folds,
        "fold": config.fold,
    }


def _streamed_images(ok, config: PrepareConfig, workers: int) -> StreamedImages:
    """The usable photos, decoded again each time they are read."""
    return StreamedImages(
        [p.path for p, _ in ok],
        config.image_size,
        max_pixels=config.max_pixels,
        min_side=config.min_side,
        threads=workers,
    )


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
        return _fold_splits(labels, split_groups, config), None
    if not given.any():
        return grouped_split(
            labels, split_groups, val_size=config.val_size, test_size=config.test_size, seed=config.seed
        ), None
    splits = _complete_given_splits(given.astype(object), labels, split_groups, config)
    return splits, leaked_test_photos(splits, groups)


def _fold_splits(labels: np.ndarray, split_groups: np.ndarray, config: PrepareConfig) -> np.ndarray:
    """Fold `config.fold` of `config.folds` is the test split; val is carved from the rest."""
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
    return splits.astype(str)


def _complete_given_splits(
    given: np.ndarray, labels: np.ndarray, split_groups: np.ndarray, config: PrepareConfig
) -> np.ndarray:
    """The given splits, with blank rows split and a missing val or test made from the others."""
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
    return splits.astype(str)


def _summary(
    root, scan: ScanResult, rows, classes, duplicates, ok, splits, naive_leaks, given_leaks, config, timings, cache_info
) -> dict[str, Any]:
    usable = [r for r in rows if r.status == "ok"]
    skipped = [r for r in rows if r.status == "skipped"]
    merged = sum(r.status == "merged" for r in rows)  # copies of a photo in several class folders
    converted = [r for r in usable if r.reason and not r.reason.startswith(CORRECTED)]
    per_class = {c: {s: 0 for s in SPLITS} for c in classes}
    for r in usable:
        for label in [r.label] if r.label in per_class else labels_of(r.label):  # a class, or a joined label set
            per_class[label][r.split] += 1
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
        **({"merged": merged} if merged else {}),
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
