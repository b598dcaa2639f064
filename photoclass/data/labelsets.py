"""Several labels a photo: whether the data is multi-label, and each photo's label set.

The format is decided from the data unless `task` names it: a CSV's label cells (parted by
';' or '|' in several cells, or by spaces when the words form a small vocabulary that recurs
in many combinations), a JSON-lines file's lists, an array's multi-hot `y`; a note says what
was decided and why. A photo's label set is kept as one text, its labels sorted and joined by
';' ("" for none, a negative for every label), so manifest.csv and split.csv keep one `label`
column.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import PhotoclassError
from .scan import FoundPhoto, ScanResult
from .split import SPLITS

SINGLE_LABEL, MULTI_LABEL = "single-label", "multi-label"  # the label formats (any other task reads one label)
JOIN = ";"  # joins a photo's labels in the manifest
MARKS = (";", "|")  # separators no single label is likely to hold
MIXABLE = (";", "|", ",")  # cells parted by one of these (or spaces) must not hold another
MIN_MARKED_CELLS = 2  # a mark in this many cells or more makes a CSV multi-label
MAX_WORD_SHARE = 0.5  # spaces part labels when words are at most this share of the distinct cells
MIN_RECURRING = 0.8  # ... and this share of the words appear in 2 combinations or more


def join_labels(labels) -> str:
    return JOIN.join(sorted(set(labels)))


def labels_of(joined: str) -> list[str]:
    return joined.split(JOIN) if joined else []


def label_matrix(joined: Sequence[str], classes: list[str]) -> np.ndarray:
    """(N, L) uint8, 1 where photo n carries label l; `joined` are the manifest's label texts."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(joined), len(classes)), dtype=np.uint8)
    for n, text in enumerate(joined):
        matrix[n, [index[label] for label in labels_of(text)]] = 1
    return matrix


def has_label(photo: FoundPhoto, label_format: str) -> bool:
    """Whether the photo is usable for training: an empty label set is a negative in multi-label."""
    return photo.label is not None if label_format == MULTI_LABEL else bool(photo.label)


def resolve_labels(scan: ScanResult, *, task: str, label_sep: str | None, multi_hot: bool = False) -> str:
    """The label format of the scanned photos (SINGLE_LABEL or MULTI_LABEL), with each photo's
    label rewritten in it; what was decided from the data goes to `scan.notes`. `multi_hot`:
    the photos come from arrays whose `y` already gave label sets."""
    forced = None if task == "auto" else (MULTI_LABEL if task == MULTI_LABEL else SINGLE_LABEL)
    if multi_hot:  # the arrays' label sets, already joined
        if forced == SINGLE_LABEL:
            raise PhotoclassError(
                f"{scan.root}: `y` is a multi-hot (N, L) matrix (rows with no 1 or several), but "
                f"task={task!r} needs one class a photo. HINT: pass --task multi-label (or auto), or save one-hot rows."
            )
        label_format = MULTI_LABEL
    elif any(p.label_set is not None for p in scan.photos):
        label_format = _resolve_listed(scan, forced)
    elif scan.layout == "csv":
        label_format = _resolve_cells(scan, forced, task, label_sep)
    else:
        label_format = forced or SINGLE_LABEL
        if label_format == MULTI_LABEL:  # one label a photo, read as one-label sets
            for p in scan.photos:
                p.label = None if p.label is None else joined_set([p.label], p.relpath)
    return label_format


def _resolve_listed(scan: ScanResult, forced: str | None) -> str:
    """JSON lines: multi-label when some photo lists no label or several, or when task says so."""
    sets = [p.label_set for p in scan.photos if p.label_set is not None]
    multi = forced == MULTI_LABEL or (forced is None and any(len(set(s)) != 1 for s in sets))
    if forced is None and not multi:
        scan.notes.append(
            "every photo lists exactly one label: read as single-label. HINT: pass --task multi-label "
            "to train one yes/no answer per label."
        )
    for p in scan.photos:
        if p.label_set is None:
            continue
        if multi:
            p.label, p.reason = joined_set(p.label_set, p.relpath), ""
        elif len(set(p.label_set)) == 1:
            p.label = p.label_set[0]
        else:
            p.label, p.reason = None, f"{len(set(p.label_set))} labels listed; single-label needs one"
    return MULTI_LABEL if multi else SINGLE_LABEL


def _resolve_cells(scan: ScanResult, forced: str | None, task: str, label_sep: str | None) -> str:
    """A CSV: its label cells parted into sets, or read whole, as decided from the cells."""
    cells = [p.label for p in scan.photos if p.label]
    if forced == SINGLE_LABEL:
        if label_sep is not None:
            scan.notes.append(f"label_sep={label_sep!r} not applied: task={task!r} reads each label cell as one label")
        return SINGLE_LABEL
    sep, note = (label_sep, f"label cells parted by {label_sep!r} (label_sep)") if label_sep else _separator(cells)
    multi = forced == MULTI_LABEL or sep is not None
    if multi and sep is None and any(c.split() != [c] for c in cells):
        sep, note = " ", "task='multi-label': label cells parted at spaces"
    if note:
        scan.notes.append(note)
    if not multi:
        return SINGLE_LABEL
    if sep is not None and not label_sep:
        _check_one_separator(scan, sep)
    for p in scan.photos:
        if p.label is None and p.reason.startswith("empty "):  # an empty cell: none of the labels
            p.label, p.reason = "", ""
        elif p.label is not None:
            words = p.label.split() if sep == " " else [w.strip() for w in p.label.split(sep)] if sep else [p.label]
            if not any(words):
                raise PhotoclassError(
                    f"{scan.where(p)}: the label cell {p.label!r} names no label, only separators. HINT: leave "
                    "the cell empty if the photo has none of the labels, or write its labels."
                )
            p.label = joined_set(words, p.relpath)
    return MULTI_LABEL


def _check_one_separator(scan: ScanResult, sep: str) -> None:
    """Refuses cells parted by `sep` (decided from the cells) beside cells holding another of
    MIXABLE: which one parts the labels, and which sits inside a label, cannot be told."""
    first: dict[str, FoundPhoto] = {}
    for p in scan.photos:
        for mark in (sep, *MIXABLE):
            if p.label and mark in p.label:
                first.setdefault(mark, p)
    other = next((mark for mark in MIXABLE if mark != sep and mark in first), None)
    if other is None or sep not in first:
        return
    a, b = first[sep], first[other]
    raise PhotoclassError(
        f"{scan.where(a)} ({a.label!r}) parts its labels by {sep!r}, but {scan.where(b)} ({b.label!r}) holds "
        f"{other!r}: the label cells mix separators. HINT: part every cell's labels by one separator, or pass "
        f"--label-sep to say which one does (the others then stay inside labels)."
    )


def _separator(cells: list[str]) -> tuple[str | None, str]:
    """(what parts the labels in the cells, or None for one label a cell; a note saying why)."""
    marked = {mark: sum(mark in c for c in cells) for mark in MARKS}
    mark = max(MARKS, key=lambda m: marked[m])
    if marked[mark] >= MIN_MARKED_CELLS:
        return mark, (
            f"{marked[mark]} of {len(cells)} label cells hold {mark!r}: read as sets of labels parted by it "
            "(multi-label). HINT: pass --task single-label to read each cell as one label."
        )
    if marked[mark]:
        return None, (
            f"1 label cell holds {mark!r}: read as one label (single-label). "
            f"HINT: pass --label-sep {mark!r} if it parts labels."
        )
    return _word_separator(cells)


def _word_separator(cells: list[str]) -> tuple[str | None, str]:
    """Spaces part labels ("haze primary water", fastai/Kaggle style) when the words form a small
    vocabulary whose words recur in many combinations, and cells hold different numbers of
    them; a few multi-word names ("red fox", "grey wolf") are read whole."""
    word_sets = [frozenset(c.split()) for c in cells]
    several = sum(len(words) >= 2 for words in word_sets)
    if not several:
        return None, ""
    combinations = set(word_sets)
    spread = Counter(word for combination in combinations for word in combination)  # combinations a word is in
    recurring = sum(n >= 2 for n in spread.values())
    examples = ", ".join(map(repr, list(dict.fromkeys(c for c in cells if len(c.split()) >= 2))[:2]))
    if several < MIN_MARKED_CELLS:
        why = "only one cell holds several words"
    elif len(spread) > MAX_WORD_SHARE * len(combinations):
        why = f"{len(spread)} words in {len(combinations)} distinct cells are names, not a small vocabulary of labels"
    elif recurring < MIN_RECURRING * len(spread):
        why = f"{len(spread) - recurring} of {len(spread)} words appear in one combination only"
    elif len({len(words) for words in word_sets}) < 2:
        why = f"every cell holds {len(word_sets[0])} words"
    else:
        return " ", (
            f"label cells read as sets of labels parted by spaces (multi-label): {len(spread)} words recur "
            f"in {len(combinations)} combinations, {several} cells hold 2 or more. "
            "HINT: pass --task single-label if each cell is one name."
        )
    return None, (
        f"label cells with spaces ({examples}) read as one label each (single-label): {why}. "
        "HINT: pass --label-sep ' ' if spaces part the labels."
    )


def multi_label_summary(matrix: np.ndarray) -> dict[str, Any]:
    """What the data summary says of label sets: the task, labels a photo, photos with none."""
    per_photo = matrix.sum(1)  # (N,)
    return {
        "task": MULTI_LABEL,
        "labels_per_photo": round(float(per_photo.mean()), 2),
        "photos_without_labels": int((per_photo == 0).sum()),
    }


def note_missing_labels(notes: list[str], matrix, splits, groups, classes: list[str]) -> None:
    """One note naming the labels that some split (of those holding photos) lacks."""
    splits = np.asarray(splits)
    present = [s for s in SPLITS if (splits == s).any()]
    missing = []
    for i, label in enumerate(classes):
        held = matrix[:, i] > 0
        lacking = [s for s in present if not (held & (splits == s)).any()]
        if lacking:
            count = len(np.unique(groups[held]))
            missing.append(f"{label!r} ({count} group{'s' * (count != 1)}: none in {'/'.join(lacking)})")
    if missing:
        notes.append(
            f"{len(missing)} label(s) missing from a split: {', '.join(missing[:10])}"
            f"{', ...' if len(missing) > 10 else ''}. A label reaches every split from 3 photos on (each group "
            "of duplicates counts once). HINT: add photos of these labels; their val and test figures are missing."
        )


def joined_set(labels, where: str) -> str:
    """The label set as the manifest keeps it; refuses a label holding JOIN, which would read
    back as two labels. `where` names the photo or row in the message."""
    labels = [label for label in labels if label]
    bad = next((label for label in labels if JOIN in label), None)
    if bad is not None:
        raise PhotoclassError(
            f"Label {bad!r} of {where} holds {JOIN!r}, which joins a photo's labels in manifest.csv when the "
            f"data is multi-label. HINT: rename the label, or pass --label-sep {JOIN!r} if {JOIN!r} parts the labels."
        )
    return join_labels(labels)
