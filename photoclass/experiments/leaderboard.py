"""Compare finished runs and pick one: lowest test error, then the smallest generalization gap."""
from __future__ import annotations

import html
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.applies import unused_in_saved
from ..core.errors import PhotoclassError
from ..data.outside import check_outside
from ..evaluation.stats import mcnemar_p, t_interval
from ..runs.rundir import RunDir, summary_metrics

SORT_KEYS = ("select", "error", "gap", "loss", "seconds", "name")
KEY_OPTIONS = ("strategy", "epochs", "lr", "batch_size", "image_size", "augment", "dropout", "seed")


@dataclass
class RunSummary:
    """One finished run, as the leaderboard shows it (figures from its test.json)."""

    path: Path
    data: str
    model: str
    options: dict[str, Any]
    test_accuracy: float
    test_loss: float
    train_accuracy: float
    gap: float  # train accuracy - test accuracy = test error - train error
    seconds: float
    macro_f1: float = 0.0
    interval: tuple[float, float] | None = None  # 95% Wilson interval of the test accuracy
    test_photos: frozenset[str] | None = None  # data root + path of each test photo, for paired tests
    wrong: frozenset[str] | None = None  # those it got wrong
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def test_error(self) -> float:
        return 1.0 - self.test_accuracy

    @classmethod
    def from_run(cls, path: str | os.PathLike) -> RunSummary:
        run = RunDir(path)
        config, result = run.read_json("config.json"), run.read_json("test.json")
        figures, train = summary_metrics(result), config["train"]
        photos = wrong = None
        if "wrong_paths" in result and run.exists("split.csv"):
            root = config["data"]
            photos = frozenset(f"{root}/{r['path']}" for r in run.read_csv("split.csv") if r["split"] == "test")
            wrong = frozenset(f"{root}/{p}" for p in result["wrong_paths"])
        return cls(path=run.path, data=Path(config["data"]).name, model=train["model"], test_photos=photos, wrong=wrong,
                   options=_options_that_applied(config),
                   test_accuracy=figures["test_accuracy"], test_loss=figures["test_loss"],
                   train_accuracy=figures["train_accuracy"], gap=figures["generalization_gap"],
                   seconds=figures["seconds"], macro_f1=figures["test_macro_f1"],
                   interval=(figures["test_accuracy_low"], figures["test_accuracy_high"])
                   if "test_accuracy_low" in figures else None)

    @classmethod
    def from_summary(cls, path: str | os.PathLike) -> RunSummary:
        """A summary run (seeds or folds) as one entry: the means of its members as they are now
        (one resumed since stays current), the t-interval of their test accuracies."""
        run = RunDir(path)
        summary = run.read_json("summary.json")
        members = [cls.from_run(run.path / name) for name in summary["members"]]
        first = members[0]

        def mean(values) -> float:
            return float(sum(values) / len(values))

        accuracy = t_interval(m.test_accuracy for m in members)
        return cls(path=run.path, data=first.data, model=first.model,
                   options={**first.options, "seed": None, summary["kind"]: len(members)},
                   test_accuracy=accuracy["mean"], test_loss=mean([m.test_loss for m in members]),
                   train_accuracy=mean([m.train_accuracy for m in members]), gap=mean([m.gap for m in members]),
                   seconds=sum(m.seconds for m in members), macro_f1=mean([m.macro_f1 for m in members]),
                   interval=tuple(accuracy["interval"]), extra={"members": len(members)})

    def options_text(self, skip: tuple[str, ...] = ()) -> str:
        return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in self.options.items() if v is not None and k not in skip)

    def to_dict(self) -> dict[str, Any]:
        return {"run": str(self.path), "data": self.data, "model": self.model, **self.options,
                "test_accuracy": self.test_accuracy, "test_error": self.test_error,
                "test_loss": self.test_loss, "train_accuracy": self.train_accuracy, "gap": self.gap,
                "test_accuracy_interval": list(self.interval) if self.interval else None,
                "macro_f1": self.macro_f1, "seconds": self.seconds}


def _options_that_applied(config: dict[str, Any]) -> dict[str, Any]:
    """The key options of a run, None for those its strategy did not use, the augmentation as applied."""
    train, unused = config["train"], unused_in_saved(config["train"])
    options = {k: None if k in unused else train.get(k) for k in KEY_OPTIONS}
    if "augment" in options:
        options["augment"] = config.get("applied", {}).get("augment", train.get("augment"))
    return options


class Leaderboard(list):
    """Finished runs, best first; prints as a table and displays as one in Jupyter."""

    incomplete: int = 0  # run folders without test.json (interrupted, pruned, running)

    def to_text(self) -> str:
        if not self:
            return "no finished runs"
        width = max(len(str(r.path)) for r in self)
        model = max(len(r.model) for r in self) + 2
        lines = [f"{'run':<{width}}  {'model':<{model}}{'strategy':<10}{'test acc':>9}{'95% interval':>15}"
                 f"{'loss':>8}{'gap':>8}{'seconds':>9}  options"]
        for r in self:
            opts = r.options_text(skip=("strategy",))
            interval = f"{r.interval[0]:.3f}-{r.interval[1]:.3f}" if r.interval else "-"
            lines.append(f"{str(r.path):<{width}}  {r.model:<{model}}{str(r.options.get('strategy')):<10}"
                         f"{r.test_accuracy:>9.4f}{interval:>15}{r.test_loss:>8.4f}{r.gap:>+8.4f}{r.seconds:>9.1f}"
                         f"  {opts}")
        if self.incomplete:
            lines.append(f"({self.incomplete} unfinished run folder(s) not listed)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("run", "model", "test acc", "test loss", "gap", "seconds", "options"))
        rows = "".join(
            f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.model)}</td><td>{r.test_accuracy:.4f}</td>"
            f"<td>{r.test_loss:.4f}</td><td>{r.gap:+.4f}</td><td>{r.seconds:.1f}</td>"
            f"<td>{html.escape(r.options_text())}</td></tr>"
            for r in self)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def list_runs(*roots: str | os.PathLike, data: str | None = None, sort: str = "select",
              tolerance: float = 0.01) -> Leaderboard:
    """Every finished run under `roots` (default `runs`), optionally of one data set, sorted.

    `sort="select"` (the default) is the order `select_run` prefers, with `tolerance`.
    """
    if sort not in SORT_KEYS:
        raise PhotoclassError(f"Unknown sort key {sort!r}. HINT: use one of {', '.join(SORT_KEYS)}.")
    board = Leaderboard()
    for root in roots or ("runs",):
        root = Path(root)
        if not root.is_dir():
            raise PhotoclassError(f"No such folder of runs: {root}. HINT: pass the folder `photoclass train` wrote "
                                  "its runs into (runs/ by default).")
        summaries = []
        for folder in sorted(p.parent for p in root.rglob("summary.json")):
            try:
                summary = RunSummary.from_summary(folder)
            except (PhotoclassError, KeyError, TypeError, ValueError, IndexError):
                board.incomplete += 1  # a member gone or the file damaged: its runs are listed one by one
                continue
            summaries.append(folder)
            if data is None or summary.data == data:
                board.append(summary)
        for config in sorted(root.rglob("config.json")):
            if any(folder in config.parents for folder in summaries):
                continue  # a member of a summary run, listed as the summary
            if (config.parent / "test.json").is_file():
                summary = RunSummary.from_run(config.parent)
                if data is None or summary.data == data:
                    board.append(summary)
            elif (config.parent / "model.json").is_file():
                board.incomplete += 1
    if sort == "select":
        board[:] = rank_runs(board, tolerance=tolerance) if board else []
        return board
    key = {"error": _error_key, "gap": lambda r: (abs(r.gap), r.test_error),
           "loss": lambda r: r.test_loss, "seconds": lambda r: r.seconds, "name": lambda r: str(r.path)}[sort]
    board.sort(key=key)
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
    if not runs:
        raise PhotoclassError("No finished runs to select from. HINT: train some, or check the folder and --data.")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise PhotoclassError(f"`tolerance` must be a fraction from 0 to below 1, e.g. 0.01. Received: {tolerance!r}")
    best = min(runs, key=_error_key)
    candidates = sorted((r for r in runs if r.test_error <= best.test_error + tolerance + 1e-12
                         or tied_by_mcnemar(r, best)), key=_selection_key)
    return Selection(candidates[0], candidates, _reason(candidates, best, tolerance))


def tied_by_mcnemar(run: RunSummary, best: RunSummary, *, alpha: float = 0.05) -> bool:
    """On the same test photos, McNemar's exact test finds no difference at `alpha` (noise),
    and `run`'s accuracy is inside `best`'s 95% interval: on a few photos the test alone
    cannot tell 10 of 16 from 15 of 16, and that is no reason to call them even."""
    if run.wrong is None or best.wrong is None or run.test_photos != best.test_photos or run is best:
        return False
    if best.interval is not None and run.test_accuracy < best.interval[0]:
        return False
    return mcnemar_p(len(run.wrong - best.wrong), len(best.wrong - run.wrong)) >= alpha


def rank_runs(runs: list[RunSummary], *, tolerance: float = 0.01) -> list[RunSummary]:
    """Runs in the order `select_run` prefers them: its winner, then its winner among the rest, ..."""
    ranked, rest = [], list(runs)
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
        return (f"{winner.path} has the lowest test error ({winner.test_error:.2%}); no other run is within "
                f"{tolerance:.1%} of it or tied with it by McNemar's test.")
    runner = ranked[1]
    by_test = [r for r in ranked if r.test_error > best.test_error + tolerance + 1e-12]
    tied = (f" or tied with it by McNemar's test on the same test photos ({len(by_test)} of them: "
            f"{', '.join(r.name for r in by_test[:3])}{', ...' if len(by_test) > 3 else ''})" if by_test else "")
    lead = (f"{winner.path} wins among the {len(ranked)} runs within {tolerance:.1%} of the lowest test error "
            f"({best.test_error:.2%}, {best.path}){tied}")
    decided = next((name for name, a, b in zip(DECIDERS, _selection_key(winner), _selection_key(runner)) if a != b),
                   None)
    if decided == "gap":
        return f"{lead}: its gap {winner.gap:+.2%} is the smallest (next: {runner.path}, {runner.gap:+.2%})."
    if decided == "test error":
        return (f"{lead}: the gaps are equal ({winner.gap:+.2%}), so the lower test error decided "
                f"({winner.test_error:.2%} vs {runner.test_error:.2%}, {runner.path}).")
    if decided == "test loss":
        return (f"{lead}: gaps and test errors are equal, so the lower test loss decided "
                f"({winner.test_loss:.4f} vs {runner.test_loss:.4f}, {runner.path}).")
    if decided == "time":
        return (f"{lead}: gaps, test errors and losses are equal, so the faster run won "
                f"({winner.seconds:.1f} s vs {runner.seconds:.1f} s, {runner.path}).")
    return f"{lead}: it ties {runner.path} on every figure; the name decided."


def copy_run(run: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a run directory to `dest`, replacing what is there only once the copy is complete."""
    run, dest = Path(run), Path(dest)
    if dest.resolve() == run.resolve():
        return dest
    check_outside(dest, RunDir(run).data_source(), flag="--copy-to")
    if run.resolve() in dest.resolve().parents:
        raise PhotoclassError(f"Cannot copy {run} into itself ({dest}). HINT: choose a folder outside the run.")
    if dest.exists() and not any((dest / name).is_file() for name in ("config.json", "summary.json")):
        raise PhotoclassError(f"{dest} exists and is not a run; not replacing it. HINT: choose another folder.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(run, staging / "run", ignore=shutil.ignore_patterns("last.ckpt", "tracking.json"))
        old = staging / "old"
        if dest.exists():
            dest.rename(old)
        (staging / "run").rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
