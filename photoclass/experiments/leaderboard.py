"""Compare finished runs and pick one: lowest test error, then the smallest generalization gap."""

from __future__ import annotations

import html
import os
import shlex
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.applies import unused_in_saved
from ..core.errors import PhotoclassError
from ..data.outside import check_outside, data_folder
from ..evaluation.stats import mcnemar_p, t_interval
from ..runs.rundir import RunDir, summary_metrics
from ..tasks import get_task

SORT_KEYS = ("select", "error", "gap", "loss", "seconds", "name")
KEY_OPTIONS = ("strategy", "epochs", "lr", "batch_size", "image_size", "augment", "dropout", "seed")


@dataclass
class RunSummary:
    """One finished run, as the leaderboard shows it (figures from its test.json)."""

    path: Path
    data: str  # the name of what it was trained on: a folder, a CSV or an array file
    model: str
    options: dict[str, Any]
    test_accuracy: float
    test_loss: float
    train_accuracy: float
    gap: float  # train accuracy - test accuracy = test error - train error
    seconds: float
    macro_f1: float = 0.0
    # 95% interval of the headline figure (Wilson for accuracy; mAP's bootstrap)
    interval: tuple[float, float] | None = None
    test_photos: frozenset[str] | None = None  # data root + path of each test photo, for paired tests
    wrong: frozenset[str] | None = None  # those it got wrong
    extra: dict[str, Any] = field(default_factory=dict)
    data_source: str = ""  # that folder or file, resolved: runs on the same one are on the same data set
    task: str = "single-label"  # runs of different tasks are never ranked together
    error: float | None = None  # 1 - the task's headline figure (mAP for several labels); None: 1 - accuracy

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def test_error(self) -> float:
        return 1.0 - self.test_accuracy if self.error is None else self.error

    @property
    def headline(self) -> float:
        """The test figure it is ranked by: accuracy, or its task's (mAP for several labels)."""
        return self.test_accuracy if self.error is None else 1.0 - self.error

    @classmethod
    def from_run(cls, path: str | os.PathLike) -> RunSummary:
        run = RunDir(path)
        config, result = run.config(), run.test_metrics()
        figures, train = summary_metrics(result), config["train"]
        photos = wrong = None
        if "wrong_paths" in result and run.exists(RunDir.SPLIT):
            root = config["data"]
            photos = frozenset(f"{root}/{r['path']}" for r in run.split_rows() if r["split"] == "test")
            wrong = frozenset(f"{root}/{p}" for p in result["wrong_paths"])
        source = run.data_source() or config["data"]
        task = config.get("model", {}).get("task") or "single-label"
        return cls(
            path=run.path,
            data=Path(source).name,
            data_source=source,
            task=task,
            error=figures["test_error"] if "mAP" in result["test"] else None,  # else 1 - accuracy, as computed
            model=train["model"],
            test_photos=photos,
            wrong=wrong,
            options=_options_that_applied(config),
            test_accuracy=figures["test_accuracy"],
            test_loss=figures["test_loss"],
            train_accuracy=figures["train_accuracy"],
            gap=figures["generalization_gap"],
            seconds=figures["seconds"],
            macro_f1=figures["test_macro_f1"],
            interval=_headline_interval(result["test"], task),
        )

    @classmethod
    def from_summary(cls, path: str | os.PathLike) -> RunSummary:
        """A summary run (seeds or folds) as one entry: the means of its members as they are now
        (one resumed since stays current), the t-interval of their test accuracies."""
        run = RunDir(path)
        summary = run.summary()
        members = [cls.from_run(run.path / name) for name in summary["members"]]
        first = members[0]

        def mean(values) -> float:
            return float(sum(values) / len(values))

        accuracy = t_interval(m.test_accuracy for m in members)
        headline = t_interval(m.headline for m in members)  # the accuracy's again, for single-label runs
        return cls(
            path=run.path,
            data=first.data,
            data_source=first.data_source,
            task=first.task,
            error=None if first.error is None else mean([m.test_error for m in members]),
            model=first.model,
            options={**first.options, "seed": None, summary["kind"]: len(members)},
            test_accuracy=accuracy["mean"],
            test_loss=mean([m.test_loss for m in members]),
            train_accuracy=mean([m.train_accuracy for m in members]),
            gap=mean([m.gap for m in members]),
            seconds=sum(m.seconds for m in members),
            macro_f1=mean([m.macro_f1 for m in members]),
            interval=tuple(headline["interval"]),
            extra={"members": len(members)},
        )

    def options_text(self, skip: tuple[str, ...] = ()) -> str:
        return " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in self.options.items()
            if v is not None and k not in skip
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": str(self.path),
            "data": self.data,
            "data_source": self.data_source,
            "model": self.model,
            **self.options,
            "test_accuracy": self.test_accuracy,
            "test_error": self.test_error,
            "test_loss": self.test_loss,
            "train_accuracy": self.train_accuracy,
            "gap": self.gap,
            "test_accuracy_interval": list(self.interval) if self.interval and self.error is None else None,
            "macro_f1": self.macro_f1,
            "seconds": self.seconds,
            **({} if self.error is None else self._headline_dict()),
        }

    def _headline_dict(self) -> dict[str, Any]:
        """A run of another task's figure (mAP), which its test error is 1 minus."""
        figure = figure_of(self.task)
        interval = list(self.interval) if self.interval else None
        return {"task": self.task, f"test_{figure}": self.headline, f"test_{figure}_interval": interval}

    @property
    def error_name(self) -> str:
        """What its test error is: 1 - accuracy, or 1 - its task's figure (said where not accuracy)."""
        return "test error" if self.error is None else f"test error (1 - {figure_of(self.task)})"


def figure_of(task: str) -> str:
    """The headline figure of a task, by its name: accuracy, mAP."""
    return get_task(task).headline


def _headline_interval(test: dict[str, Any], task: str) -> tuple[float, float] | None:
    """The 95% interval test.json gives the run's headline figure (accuracy's Wilson, mAP's bootstrap)."""
    found = test.get(f"{figure_of(task)}_interval")
    return tuple(found) if found else None


def _options_that_applied(config: dict[str, Any]) -> dict[str, Any]:
    """The key options of a run, None for those its strategy did not use, the augmentation as applied."""
    train, unused = config["train"], unused_in_saved(config["train"])
    options = {k: None if k in unused else train.get(k) for k in KEY_OPTIONS}
    if "augment" in options:
        options["augment"] = config.get("applied", {}).get("augment", train.get("augment"))
    return options


def data_sets(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    """The runs of each data set (one folder or file, and one task on it), by its label in sorted
    order: the folder's name, or its whole path where two data sets share a name, with the task
    where it is not single-label."""
    by_source: dict[tuple[str, str], list[RunSummary]] = {}
    for run in runs:
        by_source.setdefault((run.data_source, run.task), []).append(run)
    names = Counter(Path(source).name for source in {source for source, _ in by_source})

    def label(source: str, task: str) -> str:
        name = Path(source).name if names[Path(source).name] == 1 else source
        return name if task == "single-label" else f"{name} ({task}: {figure_of(task)})"

    return dict(sorted((label(*key), group) for key, group in by_source.items()))


def _data_of(label: str, group: list[RunSummary], sets: dict[str, list[RunSummary]]) -> str:
    """What --data takes for a data set's `label`: the label without its task, or the whole label
    where runs of another task are on the same data."""
    task = group[0].task
    shared = sum(g[0].data_source == group[0].data_source for g in sets.values()) > 1
    return label if shared or task == "single-label" else label.removesuffix(f" ({task}: {figure_of(task)})")


def data_sets_text(sets: dict[str, list[RunSummary]]) -> str:
    """E.g. "flowers (3 runs), hymenoptera (1 run)"."""
    return ", ".join(f"{label} ({len(group)} run{'' if len(group) == 1 else 's'})" for label, group in sets.items())


def across_data_message(sets: dict[str, list[RunSummary]]) -> str:
    return (
        f"Cannot select across data sets: runs on {len(sets)} data sets: {data_sets_text(sets)}; a test error "
        f"on one says nothing about another. HINT: pass --data FOLDER (or its name) to choose among one, "
        f"e.g. --data {shlex.quote(_data_of(*max(sets.items(), key=lambda item: len(item[1])), sets))}."
    )


class Leaderboard(list):
    """Finished runs, best first within each data set; prints as a table and displays as one in Jupyter."""

    incomplete: int = 0  # run folders without test.json (interrupted, pruned, running)
    data: str | None = None  # the data set asked for
    elsewhere: str = ""  # with `data`: the data sets of the runs left out, as text

    def ranked(self) -> list[tuple[str, int, RunSummary]]:
        """(data set, rank within it, run) for each run, in the board's order."""
        label_of = {id(r): label for label, group in data_sets(self).items() for r in group}
        seen: Counter[str] = Counter()
        rows = []
        for r in self:
            label = label_of[id(r)]
            seen[label] += 1
            rows.append((label, seen[label], r))
        return rows

    def to_dicts(self) -> list[dict[str, Any]]:
        return [{**r.to_dict(), "rank": rank} for _, rank, r in self.ranked()]

    def figure_head(self) -> str:
        """The head of the test figure's column: accuracy, or each task's figure where tasks differ."""
        return "test acc" if all(r.error is None for r in self) else "acc|mAP"

    def to_text(self) -> str:
        if not self:
            return (
                f"no finished runs on {self.data}; the runs found are on {self.elsewhere}"
                if self.elsewhere
                else "no finished runs"
            )
        rows = self.ranked()
        data = max(len(label) for label, _, _ in rows) + 2
        width = max(len(str(r.path)) for r in self)
        model = max(len(r.model) for r in self) + 2
        lines = [
            f"{'data':<{data}}{'#':>3}  {'run':<{width}}  {'model':<{model}}{'strategy':<10}{self.figure_head():>9}"
            f"{'95% interval':>15}{'loss':>8}{'gap':>8}{'seconds':>9}  options"
        ]
        for label, rank, r in rows:
            opts = r.options_text(skip=("strategy",))
            interval = f"{r.interval[0]:.3f}-{r.interval[1]:.3f}" if r.interval else "-"
            lines.append(
                f"{label:<{data}}{rank:>3}  {str(r.path):<{width}}  {r.model:<{model}}"
                f"{str(r.options.get('strategy')):<10}{r.headline:>9.4f}{interval:>15}"
                f"{r.test_loss:>8.4f}{r.gap:>+8.4f}{r.seconds:>9.1f}  {opts}"
            )
        if self.incomplete:
            lines.append(f"({self.incomplete} unfinished run folder(s) not listed)")
        sets = data_sets(self)
        if len(sets) > 1:
            lines.append(
                f"(runs on {len(sets)} data sets, each ranked on its own: {data_sets_text(sets)}; "
                "--data FOLDER lists one)"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{h}</th>"
            for h in ("data", "#", "run", "model", self.figure_head(), "test loss", "gap", "seconds", "options")
        )
        rows = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{rank}</td><td>{html.escape(r.name)}</td>"
            f"<td>{html.escape(r.model)}</td><td>{r.headline:.4f}</td>"
            f"<td>{r.test_loss:.4f}</td><td>{r.gap:+.4f}</td><td>{r.seconds:.1f}</td>"
            f"<td>{html.escape(r.options_text())}</td></tr>"
            for label, rank, r in self.ranked()
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def list_runs(
    *roots: str | os.PathLike, data: str | None = None, sort: str = "select", tolerance: float = 0.01
) -> Leaderboard:
    """Every finished run under `roots` (default `runs`), sorted within each data set.

    `data` keeps the runs on one data set: its folder (or CSV, array file) or that folder's
    name. `sort="select"` (the default) is the order `select_run` prefers, with `tolerance`.
    """
    if sort not in SORT_KEYS:
        raise PhotoclassError(f"Unknown sort key {sort!r}. HINT: use one of {', '.join(SORT_KEYS)}.")
    found = Leaderboard()
    for root in roots or ("runs",):
        root = Path(root)
        if not root.is_dir():
            raise PhotoclassError(
                f"No such folder of runs: {root}. HINT: pass the folder `photoclass train` wrote "
                "its runs into (runs/ by default)."
            )
        summaries = []
        for folder in sorted(p.parent for p in root.rglob(RunDir.SUMMARY)):
            try:
                summary = RunSummary.from_summary(folder)
            except (PhotoclassError, KeyError, TypeError, ValueError, IndexError):
                found.incomplete += 1  # a member gone or the file damaged: its runs are listed one by one
                continue
            summaries.append(folder)
            found.append(summary)
        for config in sorted(root.rglob(RunDir.CONFIG)):
            if any(folder in config.parents for folder in summaries):
                continue  # a member of a summary run, listed as the summary
            if RunDir(config.parent).exists(RunDir.TEST_METRICS):
                found.append(RunSummary.from_run(config.parent))
            elif RunDir(config.parent).exists(RunDir.MODEL_META):
                found.incomplete += 1
    board = _on_data(found, data)
    if sort == "select":
        board[:] = rank_runs(board, tolerance=tolerance)
        return board
    key = {
        "error": _error_key,
        "gap": lambda r: (abs(r.gap), r.test_error),
        "loss": lambda r: r.test_loss,
        "seconds": lambda r: r.seconds,
        "name": lambda r: str(r.path),
    }[sort]
    board[:] = [r for group in data_sets(board).values() for r in sorted(group, key=key)]
    return board


def _on_data(found: Leaderboard, data: str | os.PathLike | None) -> Leaderboard:
    """The runs of `found` on the data set `data` names (all where None), the others counted."""
    if data is None:
        return found
    folder = str(data_folder(data))
    label = {id(r): name for name, group in data_sets(found).items() for r in group}  # with its task
    if str(data) in label.values():  # a data set's whole label: one task's runs where several share the data
        board = Leaderboard(r for r in found if label[id(r)] == str(data))
    else:
        board = Leaderboard(r for r in found if str(data) in (r.data, r.data_source) or folder == r.data_source)
    board.incomplete, board.data = found.incomplete, str(data)
    kept = {id(r) for r in board}
    board.elsewhere = data_sets_text(data_sets([r for r in found if id(r) not in kept]))
    return board


@dataclass
class Selection:
    winner: RunSummary
    candidates: list[RunSummary]  # within the tolerance of the lowest test error
    reason: str

    def __str__(self) -> str:
        return self.reason

    def _repr_html_(self) -> str:
        return f"<p><b>{html.escape(self.winner.name)}</b>: {html.escape(self.reason)}</p>"


def select_run(runs: list[RunSummary], *, tolerance: float = 0.01) -> Selection:
    """The lowest test error wins, unless a run within `tolerance` of it has a smaller gap.

    Among the runs whose test error is at most the lowest + `tolerance`, the one with the
    smallest |gap| (train accuracy - test accuracy) wins; ties go to the lower test error,
    then the lower test loss, then the faster run. The reason names what decided.
    """
    if not runs and getattr(runs, "elsewhere", ""):
        raise PhotoclassError(
            f"No finished runs on {runs.data} to select from: the runs found are on "
            f"{runs.elsewhere}. HINT: pass --data one of those folders (or names)."
        )
    if not runs:
        raise PhotoclassError("No finished runs to select from. HINT: train some, or check the folder and --data.")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise PhotoclassError(f"`tolerance` must be a fraction from 0 to below 1, e.g. 0.01. Received: {tolerance!r}")
    if len(sets := data_sets(runs)) > 1:
        raise PhotoclassError(across_data_message(sets))
    best = min(runs, key=_error_key)
    candidates = sorted(
        (r for r in runs if r.test_error <= best.test_error + tolerance + 1e-12 or tied_by_mcnemar(r, best)),
        key=_selection_key,
    )
    return Selection(candidates[0], candidates, _reason(candidates, best, tolerance))


def tied_by_mcnemar(run: RunSummary, best: RunSummary, *, alpha: float = 0.05) -> bool:
    """On the same test photos, McNemar's exact test finds no difference at `alpha` (noise),
    and `run`'s headline figure (accuracy, mAP) is inside `best`'s 95% interval: on a few photos
    the test alone cannot tell 10 of 16 from 15 of 16, and that is no reason to call them even."""
    if run.wrong is None or best.wrong is None or run.test_photos != best.test_photos or run is best:
        return False
    if best.interval is not None and run.headline < best.interval[0]:
        return False
    return mcnemar_p(len(run.wrong - best.wrong), len(best.wrong - run.wrong)) >= alpha


def rank_runs(runs: list[RunSummary], *, tolerance: float = 0.01) -> list[RunSummary]:
    """Runs in the order `select_run` prefers them, data set by data set: its winner, then its
    winner among the rest, ..."""
    ranked = []
    for group in data_sets(runs).values():
        rest = list(group)
        while rest:
            winner = select_run(rest, tolerance=tolerance).winner
            ranked.append(winner)
            rest.remove(winner)
    return ranked


def _error_key(r: RunSummary):
    return (r.test_error, r.test_loss, str(r.path))


def _selection_key(r: RunSummary):
    return (round(abs(r.gap), 9), round(r.test_error, 9), round(r.test_loss, 9), r.seconds, str(r.path))


DECIDERS = ("gap", "test error", "test loss", "time")


def _reason(ranked: list[RunSummary], best: RunSummary, tolerance: float) -> str:
    winner = ranked[0]
    if len(ranked) == 1:
        return (
            f"{winner.path} has the lowest {winner.error_name} on {winner.data} ({winner.test_error:.2%}); no other "
            f"run is within {tolerance:.1%} of it or tied with it by McNemar's test."
        )
    runner = ranked[1]
    by_test = [r for r in ranked if r.test_error > best.test_error + tolerance + 1e-12]
    tied = (
        f" or tied with it by McNemar's test on the same test photos ({len(by_test)} of them: "
        f"{', '.join(r.name for r in by_test[:3])}{', ...' if len(by_test) > 3 else ''})"
        if by_test
        else ""
    )
    lead = (
        f"{winner.path} wins among the {len(ranked)} runs on {winner.data} within {tolerance:.1%} of the "
        f"lowest {best.error_name} ({best.test_error:.2%}, {best.path}){tied}"
    )
    decided = next(
        (name for name, a, b in zip(DECIDERS, _selection_key(winner), _selection_key(runner)) if a != b), None
    )
    if decided == "gap":
        return f"{lead}: its gap {winner.gap:+.2%} is the smallest (next: {runner.path}, {runner.gap:+.2%})."
    if decided == "test error":
        return (
            f"{lead}: the gaps are equal ({winner.gap:+.2%}), so the lower test error decided "
            f"({winner.test_error:.2%} vs {runner.test_error:.2%}, {runner.path})."
        )
    if decided == "test loss":
        return (
            f"{lead}: gaps and test errors are equal, so the lower test loss decided "
            f"({winner.test_loss:.4f} vs {runner.test_loss:.4f}, {runner.path})."
        )
    if decided == "time":
        return (
            f"{lead}: gaps, test errors and losses are equal, so the faster run won "
            f"({winner.seconds:.1f} s vs {runner.seconds:.1f} s, {runner.path})."
        )
    return f"{lead}: it ties {runner.path} on every figure; the name decided."


def copy_run(run: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a run directory to `dest`, replacing what is there only once the copy is complete."""
    run, dest = Path(run), Path(dest)
    if dest.resolve() == run.resolve():
        return dest
    check_outside(dest, RunDir(run).data_source(), flag="--copy-to")
    if run.resolve() in dest.resolve().parents:
        raise PhotoclassError(f"Cannot copy {run} into itself ({dest}). HINT: choose a folder outside the run.")
    if dest.exists() and not any((dest / name).is_file() for name in (RunDir.CONFIG, RunDir.SUMMARY)):
        raise PhotoclassError(f"{dest} exists and is not a run; not replacing it. HINT: choose another folder.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(run, staging / "run", ignore=shutil.ignore_patterns(RunDir.CHECKPOINT, RunDir.TRACKING))
        old = staging / "old"
        if dest.exists():
            dest.rename(old)
        (staging / "run").rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
