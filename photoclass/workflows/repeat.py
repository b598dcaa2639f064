"""`train_repeated()`: one summary run over seeds or cross-validation folds, members inside it.

    OUT/summary.json           mean, sd and 95% t-interval of test accuracy and macro-F1 (and of
                               mAP with several labels a photo)
    OUT/seed-0/, OUT/seed-1/   (or OUT/fold-0/ ...) ordinary runs

The same command again continues an interrupted summary: finished members are kept,
interrupted ones resume, the rest train.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core import distributed
from ..core.atomic import check_writable
from ..core.errors import PhotoclassError
from ..evaluation.stats import t_interval
from ..runs.rundir import RunDir
from .train import TrainResult, train


def train_repeated(
    data: str | os.PathLike,
    *,
    seeds: Sequence[int] = (),
    folds: int = 0,
    out: str | os.PathLike | None = None,
    verbose: bool = True,
    **options: Any,
) -> dict[str, Any] | None:
    """Train once per seed, or once per grouped, stratified fold (each fold the test split
    once); write and return the summary (None in the processes other than the first under
    torchrun). An interrupted member raises KeyboardInterrupt once it is saved. Other options
    are `train`'s."""
    if bool(seeds) == bool(folds):
        raise PhotoclassError("Give either seeds (e.g. --seeds 0,1,2) or folds (e.g. --folds 5), not both or neither.")
    if folds and not (isinstance(folds, int) and 2 <= folds <= 100):
        raise PhotoclassError(f"`folds` must be an integer from 2 to 100. Received: folds={folds!r}")
    if seeds and len(seeds) < 2:
        raise PhotoclassError(
            f"One seed makes no spread: seeds={list(seeds)}. HINT: give two or more, e.g. "
            "--seeds 0,1,2, or drop --seeds and pass --seed."
        )
    if len(set(seeds)) != len(seeds):
        raise PhotoclassError(f"The seeds repeat: {list(seeds)}. HINT: give each once, e.g. --seeds 0,1,2")
    members = (
        [(f"seed-{s}", {"seed": s}) for s in seeds]
        if seeds
        else [(f"fold-{k}", {"folds": folds, "fold": k}) for k in range(folds)]
    )
    out = Path(
        out
        or Path("runs")
        / f"{options.get('model', 'default')}-{'seeds' if seeds else f'{folds}fold'}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if (out / RunDir.SUMMARY).exists():
        raise PhotoclassError(f"{out} already holds a summary run. HINT: pass another --out.")
    if (out / RunDir.CONFIG).exists():
        raise PhotoclassError(
            f"{out} is a run of its own; a summary run puts its members inside its folder. HINT: pass another --out."
        )
    check_writable(out, hint="pass another --out")
    results: list[TrainResult] = []
    for name, extra in members:
        if verbose:
            print(f"\n== {name} ({len(results) + 1} of {len(members)}) ==", flush=True)
        result = _member(data, out / name, verbose=verbose, **{**options, **extra})
        if result.interrupted:
            if verbose:
                print(
                    f"interrupted: {out} holds {len(results)} finished member(s); the same command again continues it",
                    flush=True,
                )
            raise KeyboardInterrupt
        results.append(result)
    if not distributed.processes().main:  # under torchrun the first process alone writes
        return None
    summary = {
        "kind": "seeds" if seeds else "folds",
        "members": [name for name, _ in members],
        "test_accuracy": t_interval(r.test["accuracy"] for r in results),
        "macro_f1": t_interval(r.test["macro_f1"] for r in results),
        "test_photos": [r.test["count"] for r in results],
        **({"test_mAP": t_interval(r.test["mAP"] for r in results)} if "mAP" in results[0].test else {}),
    }
    RunDir(out).write_summary(summary)
    if verbose:
        print(format_summary(summary, out))
    return summary


def _member(data, path: Path, *, verbose: bool, **options: Any) -> TrainResult:
    """A member run: kept when finished, resumed when interrupted, else trained."""
    run = RunDir(path)
    if run.exists(RunDir.TEST_METRICS) and run.exists(RunDir.MODEL_META):
        if verbose:
            print(f"kept: {path} is finished", flush=True)
        return TrainResult(run, run.test_metrics()["test"], [])
    if run.exists(RunDir.CHECKPOINT):
        return train(resume=path, verbose=verbose, track=options.get("track"), progress=options.get("progress"))
    return train(data, out=path, verbose=verbose, **options)


def format_summary(summary: dict[str, Any], out: Path) -> str:
    acc, f1 = summary["test_accuracy"], summary["macro_f1"]
    m_ap = summary.get("test_mAP")  # several labels a photo: the accuracy is the exact-match ratio
    accuracy = "exact" if m_ap else "test acc"
    lines = [
        "",
        f"{'member':<10}" + (f"{'test mAP':>10}" if m_ap else "") + f"{accuracy:>10}{'macro F1':>10}{'photos':>8}",
    ]
    per_member = m_ap["values"] if m_ap else [None] * len(summary["members"])
    for name, m, a, f, n in zip(summary["members"], per_member, acc["values"], f1["values"], summary["test_photos"]):
        lines.append(f"{name:<10}" + (f"{m:>10.4f}" if m_ap else "") + f"{a:>10.4f}{f:>10.4f}{n:>8}")
    if m_ap:
        lines.append(
            f"test mAP: mean {m_ap['mean']:.4f}, sd {m_ap['sd']:.4f}, 95% interval "
            f"{m_ap['interval'][0]:.4f}-{m_ap['interval'][1]:.4f} over {m_ap['n']} {summary['kind']}"
        )
    lines.append(
        f"{'exact match' if m_ap else 'test accuracy'}: mean {acc['mean']:.4f}, sd {acc['sd']:.4f}, 95% interval "
        f"{acc['interval'][0]:.4f}-{acc['interval'][1]:.4f} over {acc['n']} {summary['kind']}"
    )
    lines.append(f"macro F1: mean {f1['mean']:.4f}, 95% interval {f1['interval'][0]:.4f}-{f1['interval'][1]:.4f}")
    lines.append(f"summary: {out / RunDir.SUMMARY}")
    return "\n".join(lines)
