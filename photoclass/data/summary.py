"""The human-readable summary of a prepared dataset."""

from __future__ import annotations

from typing import Any

from .copies import FOLDER_LAYOUTS
from .dedupe import MAX_GROUP
from .labelsets import MULTI_LABEL
from .split import SPLITS

MAX_UNMATCHED_LISTED = 10
SEVERAL_LABELS_HINT = (
    ". HINT: if a photo carries several labels, pass --task multi-label (byte-identical copies in several "
    "class folders become one photo with all their labels)"
)


def split_text(s: dict[str, Any]) -> str:
    """How the photos were split, in words: the data's own splits kept, folds, or a seeded split."""
    given = [name for name in SPLITS if name in s.get("given_splits", [])]
    seeded = f"{s['split_mode']}, seed {s['seed']}"
    if len(given) == len(SPLITS):
        return "the data's own train/val/test splits, kept"
    if given:
        carved = [name for name in SPLITS if name not in given]
        if "test" not in given and "val" in given:  # the given val is held out as the test split
            return f"given {'/'.join(given)} kept, val held out as the test split, val taken from train ({seeded})"
        return f"given {'/'.join(given)} kept, {'/'.join(carved)} taken from the rest ({seeded})"
    if s.get("folds"):
        return f"fold {s.get('fold', 0)} of {s['folds']} as the test split ({seeded})"
    return f"{s['split_mode']} split, seed {s['seed']}"


def task_text(s: dict[str, Any]) -> str | None:
    """The data's task in one line, where it is multi-label: `task: multi-label, 9 labels, 1.9 labels a photo`."""
    if s.get("task") != MULTI_LABEL:
        return None
    none = s.get("photos_without_labels", 0)
    return f"task: {MULTI_LABEL}, {len(s['classes'])} labels, {s['labels_per_photo']:.1f} labels a photo" + (
        f", {none:,} with none" if none else ""
    )


def format_summary(s: dict[str, Any]) -> str:
    task = task_text(s)
    lines = [
        f"{s['root']}: {s['usable']:,} usable photos in {len(s['classes'])} {'labels' if task else 'classes'}, "
        f"{s['skipped']:,} skipped, {s['ignored']:,} ignored (layout: {s['layout']}; {split_text(s)})",
        "",
        f"  {'label' if task else 'class':<16}" + "".join(f"{name:>8}" for name in (*SPLITS, "total")),
    ]
    lines[1:1] = [task] if task else []
    lines[1 + bool(task) : 1 + bool(task)] = [f"NOTE: {note}" for note in s.get("notes", [])]
    for name, counts in s["classes"].items():
        lines.append(f"  {name:<16}" + "".join(f"{counts[k]:>8,}" for k in (*SPLITS, "total")))
    lines.append(f"  {'all':<16}" + "".join(f"{s['splits'][k]:>8,}" for k in SPLITS) + f"{s['usable']:>8,}")
    d = s["duplicates"]
    if d["groups"]:
        lines += [
            "",
            f"duplicates: {d['groups']} groups ({d['byte_identical_groups']} byte-identical, "
            f"{d['near_identical_groups']} near-identical; {d['photos_in_groups']} photos, "
            f"largest {d['largest_group']})",
        ]
        if d.get("links_refused"):
            lines.append(
                f"  {d['links_refused']:,} look-alike pairs left apart: no group grows past "
                f"{MAX_GROUP} photos by a chain of look-alikes"
            )
    else:
        lines += ["", "duplicates: none found"]
    if d["groups"] and s["split_mode"] == "grouped":
        lines.append("  each group is kept in one split")
    leaks = s["leaks"]
    lines.append(
        f"  a naive split would put {leaks['naive_split_test_with_twin_in_train']} of "
        f"{leaks['test_photos']} test photos beside a twin in train"
    )
    if leaks["given_split_test_with_twin_in_train"]:
        lines.append(
            f"  WARNING: the given split has {leaks['given_split_test_with_twin_in_train']} "
            f"test photos with a twin in train; the test score will be inflated"
        )
    if d["label_conflicts"]:
        lines.append(
            f"  WARNING: {d['label_conflicts']} groups hold the same photo under different "
            f"labels, e.g. {d['label_conflict_examples'][0]}"
            + (SEVERAL_LABELS_HINT if s["layout"] in FOLDER_LAYOUTS and not task else "")
        )
    lines += corrections_lines(s.get("corrections"))
    lines += _listing("skipped", s["skipped"], s["skipped_files"])
    lines += _listing("converted", s["converted"], s["converted_files"])
    if s["ignored"]:
        lines += ["", "ignored: " + ", ".join(f"{n} {reason}" for reason, n in s["ignored_reasons"].items())]
    c, sec = s["cache"], s["seconds"]
    rate = f" ({c['decoded'] / sec['decode']:,.0f} images/s)" if c["decoded"] and sec["decode"] else ""
    lines += [
        "",
        f"cache: {c['decoded']:,} decoded{rate}, {c['reused']:,} reused, in {c['dir']}",
        f"done in {sec['total']:.1f} s",
    ]
    if "manifest" in s:
        lines.append(f"manifest: {s['manifest']}")
    return "\n".join(lines)


def _listing(title: str, count: int, files: list[dict[str, str]]) -> list[str]:
    if not count:
        return []
    lines = ["", f"{title} ({count}):"]
    lines += [f"  {f['path']}: {f['reason']}" for f in files]
    if count > len(files):
        lines.append(f"  ... and {count - len(files)} more (see manifest.csv)")
    return lines


def corrections_lines(c: dict[str, Any] | None) -> list[str]:
    """What the corrections files changed, and each row that matched no photo."""
    if not c:
        return []
    n = c["applied"]
    lines = [
        "",
        f"corrections ({', '.join(c['files'])}): {n['relabel']} relabelled, {n['drop']} dropped, "
        f"{n['outsider']} outsiders, {n['keep']} kept as labelled",
    ]
    moved = {r["split"] for r in c["relabelled"]}
    if "test" in moved:
        lines.append(
            "  NOTE: test labels were corrected, so the test itself changed: compare runs on the photos whose labels did not"
        )
    for name in c.get("untrainable", []):
        lines.append(
            f"  WARNING: class {name!r} has no training photo after the corrections: the model cannot learn it"
        )
    for row in c["unmatched"][:MAX_UNMATCHED_LISTED]:
        lines.append(f"  {row['row']}: no photo here has this SHA-256 ({row['action']} of {row['path']}): skipped")
    if len(c["unmatched"]) > MAX_UNMATCHED_LISTED:
        lines.append(f"  ... and {len(c['unmatched']) - MAX_UNMATCHED_LISTED} more rows that match no photo")
    return lines
