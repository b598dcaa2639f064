"""The same photo in several class folders.

Multi-label: byte-identical copies (one content key) in several class folders of one split are
one photo carrying every folder's label; the first copy is kept, the others are `merged` rows
of the manifest. With task auto, class folders are read that way only when a clear share of the
photos sits in several folders (MIN_SHARE of them and MIN_PHOTOS or more); a few stray copies
keep today's single-label reading (two photos in one duplicate group, a label-conflict warning).
A photo under the same name in two class folders whose copies differ but look alike (re-encoded
or edited) would deny each copy the other's label, so both are left out and listed.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

from .dataset import ManifestRow
from .dedupe import near_identical
from .labelsets import MULTI_LABEL, joined_set, join_labels, labels_of
from .scan import FoundPhoto, ScanResult

MIN_SHARE, MIN_PHOTOS = 0.10, 10  # with task auto: photos in several class folders that make label sets
FOLDER_LAYOUTS = ("folders", "split")  # layouts whose photos are labelled by their class folder


def fold_folder_copies(
    scan: ScanResult, ok: list[tuple[FoundPhoto, str]], entries: dict, *, task: str, label_format: str
) -> tuple[list[tuple[FoundPhoto, str]], str, list[ManifestRow]]:
    """(the usable (photo, key) pairs, the label format, the rows set aside) once copies in several
    class folders are merged, where the data is (or is now decided) multi-label; notes say what
    was done. Other layouts and single-label data come back unchanged."""
    if scan.layout not in FOLDER_LAYOUTS:
        return ok, label_format, []
    straddling = _straddling(ok)
    if label_format != MULTI_LABEL:
        if task != "auto" or not _reads_as_label_sets(straddling, len(ok)):
            return ok, label_format, []
        scan.notes.append(_decided_note(straddling, len(ok)))
        for p, _ in ok:
            p.label = joined_set([p.label], p.relpath)
    ok, merged = _merge(scan, ok, straddling)
    ok, differing = _leave_out_differing_copies(scan, ok, entries)
    return ok, MULTI_LABEL, merged + differing


def _straddling(ok: list[tuple[FoundPhoto, str]]) -> list[list[tuple[FoundPhoto, str]]]:
    """The copies of each photo (one content key, one given split) found in two class folders or more."""
    copies = defaultdict(list)
    for p, key in ok:
        if _in_class_folder(p):
            copies[key, p.given_split].append((p, key))
    return [members for members in copies.values() if len({p.label for p, _ in members}) > 1]


def _photos_after_merging(straddling, photos: int) -> int:
    return photos - sum(len(members) - 1 for members in straddling)


def _reads_as_label_sets(straddling, photos: int) -> bool:
    """Task auto: class folders are label sets when a clear share of the photos sits in several."""
    return len(straddling) >= MIN_PHOTOS and len(straddling) >= MIN_SHARE * _photos_after_merging(straddling, photos)


def _decided_note(straddling, photos: int) -> str:
    distinct = _photos_after_merging(straddling, photos)
    return (
        f"{len(straddling)} of {distinct} photos ({len(straddling) / distinct:.0%}) sit in several class folders "
        f"as byte-identical copies: read as multi-label, a photo carrying every folder it is in (from "
        f"{MIN_SHARE:.0%} of the photos and {MIN_PHOTOS} photos on, copies across folders are label sets, not "
        "mistakes). HINT: pass --task single-label to keep each copy as a photo of one class."
    )


def _merge(scan: ScanResult, ok, straddling) -> tuple[list[tuple[FoundPhoto, str]], list[ManifestRow]]:
    """Each photo's copies become its first copy, labelled with all their folders; the others are
    `merged` rows."""
    merged: list[ManifestRow] = []
    for members in straddling:
        (kept, _), *others = members  # `ok` is in path order
        kept.label = join_labels(label for p, _ in members for label in labels_of(p.label))
        reason = f"the same photo as {kept.relpath}, which carries its labels"
        merged += [ManifestRow(p.relpath, p.label, "", -1, "merged", reason) for p, _ in others]
    if straddling:
        scan.notes.append(
            f"merged {len(straddling)} photos found in several class folders ({len(straddling) + len(merged)} "
            "copies) into one photo each with all their labels"
        )
    away = {r.path for r in merged}
    return [(p, k) for p, k in ok if p.relpath not in away], merged


def _leave_out_differing_copies(scan: ScanResult, ok, entries: dict) -> tuple[list, list[ManifestRow]]:
    """Photos under one name in several class folders whose copies differ but look alike (the same
    photo re-encoded or edited): left out, as each copy would deny the other's label."""
    by_name = defaultdict(list)
    for p, key in ok:
        if _in_class_folder(p):
            by_name[p.given_split, _name_in_class_folder(p)].append((p, key))
    pairs = [
        (a, b)
        for copies in by_name.values()
        for (a, key_a), (b, key_b) in combinations(copies, 2)
        if key_a != key_b and near_identical(entries[key_a], entries[key_b])
    ]
    rows = list({r.path: r for a, b in pairs for r in (_differing_row(a, b), _differing_row(b, a))}.values())
    if pairs:
        scan.notes.append(
            f"left out {len(rows)} photos whose copies under one name in several class folders differ (e.g. "
            f"{pairs[0][0].relpath} and {pairs[0][1].relpath}: re-encoded or edited?), as neither copy can carry "
            "both labels. HINT: make the copies identical, or rename one if they are different photos."
        )
    away = {r.path for r in rows}
    return [(p, k) for p, k in ok if p.relpath not in away], rows


def _differing_row(photo: FoundPhoto, other: FoundPhoto) -> ManifestRow:
    reason = f"differs from its copy {other.relpath} (re-encoded or edited?); make the copies identical"
    return ManifestRow(photo.relpath, photo.label, "", -1, "skipped", reason)


def _class_depth(photo: FoundPhoto) -> int:
    """How many folders of a photo's path name its split and class: `train/cats/x.jpg` 2, `cats/x.jpg` 1."""
    return 2 if photo.given_split is not None else 1


def _in_class_folder(photo: FoundPhoto) -> bool:
    return photo.relpath.count("/") >= _class_depth(photo)  # not a flat split folder's photo


def _name_in_class_folder(photo: FoundPhoto) -> str:
    return photo.relpath.split("/", _class_depth(photo))[-1]
