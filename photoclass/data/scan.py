"""Find the photos in a folder and their labels, in any of five layouts.

- csv: a CSV file of `path,label[,split]` rows (paths relative to the file, or absolute);
- jsonl: a JSON-lines file of `{"path": ..., "labels": [...], "split": ...}` objects (a set of
  labels a photo: multi-label);
- flat: `DATA/cloudy12.jpg`, the label taken from the file name by a regex;
- folders: `DATA/<class>/**/*.jpg`;
- split: `DATA/train/<class>/`, `DATA/val/<class>/`, `DATA/test/<class>/` (given splits), the
  folders named in any common way (`training_set`, `valid`, `dev`, ...), or named otherwise
  when each holds the same class folders (then what was assumed is noted).
Hidden files and folders, non-image files and symlinks are skipped and counted.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..config import LAYOUTS, compile_label_regex
from ..core.errors import PhotoclassError
from .decode import IMAGE_SUFFIXES

SPLIT_NAMES = {  # a split folder's name, lower-cased, without separators and a trailing set/data/images
    "train": "train",
    "training": "train",
    "trn": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "validate": "val",
    "dev": "val",
    "eval": "val",
    "evaluation": "val",
    "test": "test",
    "testing": "test",
    "tst": "test",
    "holdout": "test",
}
HIDDEN_NAMES = {"thumbs.db", "desktop.ini", "__macosx", "__pycache__", "@eadir", "$recycle.bin"}
MAX_EXAMPLES = 5
MIN_JUDGED, MIN_SHARED = 10, 3  # a flat folder of 10 photos or more, its labels shared by 3 photos or more


@dataclass
class FoundPhoto:
    path: Path  # absolute
    relpath: str  # posix, relative to the root
    label: str | None
    given_split: str | None = None
    reason: str = ""  # why it has no label
    label_set: tuple[str, ...] | None = None  # the labels a JSON-lines file lists for it
    line: int = 0  # its row (CSV) or line (JSON lines) in the listing file


@dataclass
class ScanResult:
    root: Path
    layout: str
    photos: list[FoundPhoto]
    ignored: Counter = field(default_factory=Counter)  # reason -> count
    ignored_examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was assumed, and how to override it
    listing: Path | None = None  # the CSV or JSON-lines file that names the photos

    def where(self, photo: FoundPhoto) -> str:
        """Where a photo's label was read: `labels.csv:5` (a listing's row), else its path."""
        return f"{self.listing}:{photo.line}" if self.listing is not None and photo.line else photo.relpath

    def ignore(self, reason: str, relpath: str) -> None:
        self.ignored[reason] += 1
        examples = self.ignored_examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(relpath)


def split_of(folder_name: str) -> str | None:
    """'train', 'val' or 'test' for a split folder's name (`training_set`, `Valid`, `test-data`)."""
    name = re.sub(r"[\s_.-]+", "", folder_name.lower())
    name = re.sub(r"(set|data|images|split)$", "", name) or name
    return SPLIT_NAMES.get(name)


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in HIDDEN_NAMES


def scan_folder(
    root: str | os.PathLike,
    *,
    layout: str = "auto",
    label_regex: str | None = None,
    follow_symlinks: bool = False,
    path_column: str = "path",
    label_column: str = "label",
) -> ScanResult:
    """List the photos under `root` with their labels (and given splits)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise PhotoclassError(f"Folder not found: {root}. HINT: check the path.")
    if layout == "csv" or (layout == "auto" and root.is_file() and root.suffix.lower() == ".csv"):
        return scan_csv(
            _the_csv(root), path_column=path_column, label_column=label_column, follow_symlinks=follow_symlinks
        )
    if layout == "jsonl" or (layout == "auto" and root.is_file() and root.suffix.lower() == ".jsonl"):
        return scan_jsonl(
            _the_listing(root, ".jsonl", "JSON-lines"),
            path_key=path_column,
            label_key=label_column,
            follow_symlinks=follow_symlinks,
        )
    if not root.is_dir():
        raise PhotoclassError(
            f"Expected a folder of photos, received a file: {root}. HINT: pass the folder "
            f"that holds the photos, e.g. {root.parent}"
        )
    if layout not in LAYOUTS:
        raise PhotoclassError(f"`layout` must be one of {LAYOUTS}. Received: layout={layout!r}")
    pattern = compile_label_regex(label_regex)
    root = root.resolve()
    result = ScanResult(root=root, layout=layout, photos=[])
    walker = _Walker(root, result, follow_symlinks)
    subdirs = walker.visible_subdirs(root)
    if layout == "auto":
        layout = _detect_layout(walker, root, subdirs)
    result.layout = layout

    if layout == "split":
        split_dirs = _split_folders(walker, root, subdirs)
        for d in subdirs:
            if d not in split_dirs:
                walker.ignore_tree(d, "folder that is not train/val/test")
        for f in walker.files(root):
            result.ignore("file outside the split folders", walker.rel(f))
        for d, split in sorted(split_dirs.items()):
            _scan_labelled(walker, d, pattern, split)
    elif layout == "folders":
        for f in walker.files(root):
            result.ignore("file outside the class folders", walker.rel(f))
        _scan_labelled(walker, root, pattern, None, force_folders=True)
    else:
        for d in subdirs:
            walker.ignore_tree(d, "subfolder of a flat folder")
        _scan_flat(walker, root, pattern, None)
        if label_regex is None and _names_share_no_label(result.photos):
            raise PhotoclassError(_one_class_message(root, result.photos))
    if layout == "folders":
        _note_nested_classes(walker, subdirs)
    result.photos.sort(key=lambda p: p.relpath)
    return result


def _the_csv(root: Path) -> Path:
    return _the_listing(root, ".csv", "CSV")


def _the_listing(root: Path, suffix: str, kind: str) -> Path:
    """`root` if a file, else the one `suffix` file in the folder `root`."""
    if root.is_file():
        return root
    found = sorted(p for p in root.glob(f"*{suffix}") if not is_hidden(p.name))
    if len(found) != 1:
        raise PhotoclassError(
            f"layout={suffix[1:]!r} needs one {kind} file in {root}; found {[p.name for p in found] or 'none'}. "
            f"HINT: pass the {kind} file itself."
        )
    return found[0]


def scan_csv(
    path: Path, *, path_column: str = "path", label_column: str = "label", follow_symlinks: bool = False
) -> ScanResult:
    """Photos listed in a CSV with a header row: `path_column`, `label_column` and, if present,
    `split` (train/val/test, named in any common way). Paths are relative to the CSV's folder
    or absolute (a note counts the rows outside its folder); rows whose file is missing, and
    rows reached through a symbolic link unless `follow_symlinks`, are counted and listed."""
    path = path.resolve()
    root = path.parent
    result = ScanResult(root=root, layout="csv", photos=[])
    rows, columns = _read_csv(path, path_column, label_column)
    splits = "split" in columns
    listing = _Listing(path, result, follow_symlinks)
    for line, row in enumerate(rows, start=2):
        label = (row[label_column] or "").strip() or None
        split = row["split"] if splits else None
        reason = "" if label else f"empty {label_column!r} in the CSV, row {line}"
        listing.add(row[path_column], line, split, label=label, reason=reason, missing_path="CSV row without a path")
    return listing.done()


def scan_jsonl(
    path: Path, *, path_key: str = "path", label_key: str = "label", follow_symlinks: bool = False
) -> ScanResult:
    """Photos listed in a JSON-lines file, an object a line: `path_key`, `labels` (a list: the
    photo's set of labels, [] for none) or `label_key` (one label), and optionally `split`.
    Paths, missing files and symbolic links are treated as in `scan_csv`."""
    path = path.resolve()
    listing = _Listing(path, ScanResult(root=path.parent, layout="jsonl", photos=[]), follow_symlinks)
    for line, text in enumerate(_read_lines(path), start=1):
        if not text.strip():
            continue
        item = _json_object(path, line, text)
        labels = item.get("labels", item.get(label_key))
        label_set = label = None
        if isinstance(labels, list):
            label_set = tuple(_label_text(path, line, v).strip() for v in labels)
            if label_set and not any(label_set):
                raise PhotoclassError(
                    f"{path}:{line}: labels {labels!r} name no label, only blanks. HINT: write "
                    '"labels": [] if the photo has none of the labels, or name them.'
                )
        elif labels is not None:
            label = _label_text(path, line, labels).strip() or None
        reason = "" if label_set is not None or label else f"no 'labels' in line {line}"
        listing.add(
            item.get(path_key),
            line,
            item.get("split"),
            label=label,
            reason=reason,
            label_set=label_set,
            missing_path=f"JSON line without {path_key!r}",
        )
    return listing.done()


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PhotoclassError(f"Cannot read {path}: {e}. HINT: save it as UTF-8 text.") from None


def _json_object(path: Path, line: int, text: str) -> dict:
    try:
        item = json.loads(text)
    except json.JSONDecodeError as e:
        item = e
    if not isinstance(item, dict):
        raise PhotoclassError(
            f"{path}:{line}: not a JSON object ({str(item)[:80]}). "
            'HINT: write one {"path": ..., "labels": [...]} object a line.'
        )
    return item


def _label_text(path: Path, line: int, value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PhotoclassError(
            f'{path}:{line}: label {value!r} is not a name. HINT: list labels as text, e.g. "labels": ["cat", "dog"].'
        )
    return str(value)


class _Listing:
    """The photos a listing file (CSV, JSON lines) names: paths relative to its folder or
    absolute, each file once; missing files and symbolic links counted."""

    def __init__(self, path: Path, result: ScanResult, follow_symlinks: bool):
        self.path, self.result, self.follow_symlinks = path, result, follow_symlinks
        result.listing = path
        self.root = result.root
        self.seen: set[str] = set()
        self.outside = 0

    def add(self, name, line: int, split, *, label, reason: str, missing_path: str, label_set=None) -> None:
        name = str(name or "").strip()
        if not name:
            self.result.ignore(missing_path, f"{self.path.name}:{line}")
            return
        listed = Path(os.path.abspath(self.root / name))  # '..' removed, links not followed
        file = listed.resolve()
        if file != listed and not self.follow_symlinks:
            self.result.ignore("reached through a symbolic link (followed only with --follow-symlinks)", name)
            return
        inside = file.is_relative_to(self.root)
        relpath = file.relative_to(self.root).as_posix() if inside else file.as_posix()
        if relpath in self.seen:
            self.result.ignore(f"listed twice in the {self._kind} (first row kept)", relpath)
            return
        self.seen.add(relpath)
        if not file.is_file():
            self.result.ignore(f"listed in the {self._kind} but not found", relpath)
            return
        given = split_of(str(split)) if str(split or "").strip() else None
        if str(split or "").strip() and given is None:
            raise PhotoclassError(
                f"{self.path}:{line}: split {split!r} is not train, val or test. "
                "HINT: fix the row, or leave the split empty to let photoclass choose."
            )
        self.outside += not inside
        self.result.photos.append(FoundPhoto(file, relpath, label, given, reason, label_set, line))

    @property
    def _kind(self) -> str:
        return "CSV" if self.result.layout == "csv" else "JSON lines"

    def done(self) -> ScanResult:
        self.result.photos.sort(key=lambda p: p.relpath)
        if self.outside:
            self.result.notes.append(
                f"{self.outside} row(s) of {self.path.name} name files outside its folder {self.root} (absolute "
                "paths or '..'); they are read as listed"
            )
        return self.result


def _read_csv(path: Path, path_column: str, label_column: str) -> tuple[list[dict[str, str]], list[str]]:
    """The CSV's rows and header; refuses one that cannot be read or lacks either column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            columns = list(rows[0]) if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PhotoclassError(f"Cannot read the CSV {path}: {e}. HINT: save it as UTF-8 text.") from None
    for column, flag in ((path_column, "--path-column"), (label_column, "--label-column")):
        if column not in columns:
            raise PhotoclassError(
                f"{path} has no {column!r} column; its header names {columns or 'nothing'}. "
                f"HINT: pass {flag} with the right column name."
            )
    return rows, columns


def _class_folders(walker: _Walker, folder: Path) -> frozenset[str]:
    return frozenset(d.name for d in walker.visible_subdirs(folder) if walker.has_images(d, recursive=True))


def _same_class_folders(walker: _Walker, subdirs: list[Path]) -> bool:
    """Every top-level folder holds the same (2 or more) class folders and no photos of its own."""
    if len(subdirs) < 2:
        return False
    first = _class_folders(walker, subdirs[0])
    return len(first) >= 2 and all(
        _class_folders(walker, d) == first and not walker.has_images(d, recursive=False) for d in subdirs
    )


def _split_folders(walker: _Walker, root: Path, subdirs: list[Path]) -> dict[Path, str]:
    """Split folders and their splits: by name, else (when each holds the same class folders)
    the largest is train and the others test, then val; what was assumed goes to the notes."""
    named = {d: split_of(d.name) for d in subdirs if split_of(d.name)}
    if "train" in named.values():
        return named
    if not _same_class_folders(walker, subdirs):
        raise PhotoclassError(
            f"layout='split' needs a training folder (train, training, train_set, ...) in {root}; found: "
            f"{sorted(d.name for d in subdirs) or 'no folders'}. HINT: use layout='folders'."
        )
    by_size = sorted(subdirs, key=lambda d: (-walker.count_images(d), d.name))
    assigned = {by_size[0]: "train"}
    for d in by_size[1:]:
        assigned[d] = named.get(d) or ("test" if "test" not in assigned.values() else "val")
    walker.result.notes.append(
        "assumed split folders, since each top folder holds the same class folders: "
        + ", ".join(f"{d.name}/ = {s}" for d, s in assigned.items())
        + ". HINT: rename them train/val/test to say so, or pass --layout folders to read them as classes."
    )
    return assigned


def _note_nested_classes(walker: _Walker, class_dirs: list[Path]) -> None:
    nested = [d.name for d in class_dirs if len(_class_folders(walker, d)) >= 2]
    if nested:
        walker.result.notes.append(
            f"class folder(s) {nested[:5]} hold class-like subfolders "
            f"({sorted(_class_folders(walker, walker.root / nested[0]))[:5]}); their photos are labelled "
            f"{nested[0]!r}. HINT: if the top folders are splits, name them train/val/test or pass --layout split."
        )


def _detect_layout(walker: _Walker, root: Path, subdirs: list[Path]) -> str:
    splits = {split_of(d.name) for d in subdirs} - {None}
    if "train" in splits and len(splits) > 1:
        return "split"
    if _same_class_folders(walker, subdirs):  # e.g. training_set/{cats,dogs} + test_set/{cats,dogs}
        return "split"
    if any(walker.has_images(d) for d in subdirs):
        return "folders"
    return "flat"


def _names_share_no_label(photos: list[FoundPhoto]) -> bool:
    """A flat folder whose file names carry no labels: of its MIN_JUDGED photos or more, fewer
    than half have a label that MIN_SHARED photos or more share (`0013035.jpg`, `Ant_1.jpg`,
    `army-ant.jpg`: one class's photos under their own names, not `cloudy12.jpg`, `cat.1.jpg`)."""
    counts = Counter(p.label for p in photos if p.label)
    shared = sum(n for n in counts.values() if n >= MIN_SHARED)
    return len(photos) >= MIN_JUDGED and shared < len(photos) / 2


def _one_class_message(root: Path, photos: list[FoundPhoto]) -> str:
    counts = Counter(p.label for p in photos if p.label)
    unlabelled = sum(1 for p in photos if not p.label)
    rare = sorted((label for label, n in counts.items() if n < MIN_SHARED), key=lambda label: -counts[label])
    parent = root.parent
    peek = _Walker(parent, ScanResult(parent, "folders", []), follow_symlinks=False)
    classes = [d.name for d in peek.visible_subdirs(parent) if peek.has_images(d, recursive=False)]
    hint = (
        f"point at its parent {parent}, whose subfolders ({', '.join(classes[:5])}"
        f"{', ...' if len(classes) > 5 else ''}) are the classes"
        if len(classes) >= 2
        else f"put each class's photos in a subfolder of {parent}, as {root.name}/ is, and point at {parent}"
    )
    return (
        f"{root} looks like one class's folder, not photos labelled by file name: of its {len(photos)} "
        f"photos, {unlabelled} have no label in their file name and {sum(counts[label] for label in rare)} carry "
        f"one that fewer than {MIN_SHARED} photos share ({', '.join(map(repr, rare[:4])) or 'none'}). "
        f"HINT: {hint}; or pass `label_regex` if the file names do hold the labels."
    )


def _scan_labelled(walker, folder: Path, pattern, split: str | None, force_folders: bool = False):
    """A folder of class subfolders; a split folder without subfolders is read as flat."""
    class_dirs = walker.visible_subdirs(folder)
    if not class_dirs and not force_folders:
        _scan_flat(walker, folder, pattern, split)
        return
    if split is not None:
        for f in walker.files(folder):
            walker.result.ignore("file outside the class folders", walker.rel(f))
    for class_dir in class_dirs:
        for f in walker.files(class_dir, recursive=True):
            walker.add(f, class_dir.name, split)


def _scan_flat(walker, folder: Path, pattern: re.Pattern, split: str | None):
    for f in walker.files(folder):
        match = pattern.search(Path(f).stem)
        label = match.group(1) if match else None
        reason = "" if label else f"no label in the file name (label_regex={pattern.pattern!r})"
        walker.add(f, label, split, reason)


class _Walker:
    """Directory walking with one policy for hidden names, suffixes and symlinks.

    With `quiet=True` nothing is counted: layout detection peeks before the real walk.
    """

    def __init__(self, root: Path, result: ScanResult, follow_symlinks: bool):
        self.root = root
        self._prefix = len(str(root).rstrip(os.sep)) + 1  # paths below are built from root
        self.result = result
        self.follow_symlinks = follow_symlinks
        self._seen_dirs: set[str] = set()

    def rel(self, path: Path | str) -> str:
        return str(path)[self._prefix :].replace(os.sep, "/")

    def _ignore(self, reason: str, path: str, quiet: bool) -> None:
        if not quiet:
            self.result.ignore(reason, self.rel(path))

    def _entries(self, folder: Path, quiet: bool = False):
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            self._ignore(f"unreadable folder ({e.strerror})", str(folder), quiet)
            return
        for entry in entries:
            if is_hidden(entry.name):
                self._ignore("hidden", entry.path, quiet)
            elif not entry.is_symlink() or self._symlink_allowed(entry, quiet):
                yield entry

    def _symlink_allowed(self, entry: os.DirEntry, quiet: bool) -> bool:
        if not self.follow_symlinks:
            self._ignore("symlink, not followed (follow_symlinks)", entry.path, quiet)
            return False
        target = Path(os.path.realpath(entry.path))
        if target != self.root and self.root not in target.parents:
            self._ignore("symlink pointing out of the folder", entry.path, quiet)
            return False
        if not target.exists():
            self._ignore("broken symlink", entry.path, quiet)
            return False
        return True

    def visible_subdirs(self, folder: Path) -> list[Path]:
        return [Path(e.path) for e in self._entries(folder, quiet=True) if e.is_dir()]

    def has_images(self, folder: Path, recursive: bool = True) -> bool:
        return any(True for _ in self._image_paths(folder, recursive=recursive, quiet=True))

    def count_images(self, folder: Path) -> int:
        return sum(1 for _ in self._image_paths(folder, recursive=True, quiet=True))

    def files(self, folder: Path, recursive: bool = False):
        yield from self._image_paths(folder, recursive, quiet=False)

    def _image_paths(self, folder: Path, recursive: bool, quiet: bool):
        if recursive and not quiet:
            real = os.path.realpath(folder)
            if real in self._seen_dirs:
                return  # a symlink loop, or a folder reached twice
            self._seen_dirs.add(real)
        for entry in self._entries(folder, quiet):
            if entry.is_dir():
                if recursive:
                    yield from self._image_paths(Path(entry.path), True, quiet)
            elif not entry.is_file():
                self._ignore("not a regular file", entry.path, quiet)
            elif Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                self._ignore("not an image file (by suffix)", entry.path, quiet)
            else:
                yield Path(entry.path)

    def ignore_tree(self, folder: Path, reason: str) -> None:
        self.result.ignore(reason, self.rel(folder))

    def add(self, path: Path, label: str | None, split: str | None, reason: str = "") -> None:
        self.result.photos.append(FoundPhoto(path, self.rel(path), label, split, reason))
