"""One self-contained page comparing runs: curves overlaid, test figures side by side."""

from __future__ import annotations

import html
import io
import os
from pathlib import Path

from ..core.atomic import write_text_atomic
from ..data.outside import check_outside
from ..evaluation import plots
from ..evaluation.html_report import data_uri, page
from ..runs.rundir import RunDir
from .leaderboard import RunSummary, data_sets, data_sets_text, figure_of, select_run


def write_comparison(runs: list[str | os.PathLike], out: str | os.PathLike, *, tolerance: float = 0.01) -> Path:
    """One page comparing runs: learning curves overlaid, test metrics side by side. Runs on
    different data sets stand side by side, but one is selected only among runs on its data."""
    check_outside(out, *(RunDir(r).data_source() for r in runs))
    summaries = [RunSummary.from_run(r) for r in runs]
    sets = data_sets(summaries)
    selections = {
        label: select_run(group, tolerance=tolerance)
        for label, group in sets.items()
        if len(group) > 1 or len(sets) == 1
    }
    winners = {id(s.winner) for s in selections.values()}
    label_of = {id(r): label for label, group in sets.items() for r in group}
    histories = {
        s.name if sum(t.name == s.name for t in summaries) == 1 else str(s.path): RunDir(s.path).metrics_rows()
        for s in summaries
    }
    buffer = io.BytesIO()
    plots.overlaid_curves(histories, buffer)
    figures = sorted({figure_of(s.task) for s in summaries if s.error is not None})  # mAP: runs of label sets
    head = ["data", "run", "model", *(f"test {f}" for f in figures), "test acc", "test loss", "macro F1"]
    head += ["train acc", "gap", "seconds", "options"]
    body = []
    for s in summaries:
        options = s.options_text()
        cells = [
            html.escape(label_of[id(s)]),
            html.escape(str(s.path)),
            html.escape(s.model),
            *(f"{s.headline:.4f}" if s.error is not None and figure_of(s.task) == f else "-" for f in figures),
            f"{s.test_accuracy:.4f}",
            f"{s.test_loss:.4f}",
            f"{s.macro_f1:.4f}",
            f"{s.train_accuracy:.4f}",
            f"{s.gap:+.4f}",
            f"{s.seconds:.1f}",
            html.escape(options),
        ]
        row = "".join(f"<td{' class=n' if 2 < i < len(cells) - 1 else ''}>{c}</td>" for i, c in enumerate(cells))
        body.append(f"<tr{' class=win' if id(s) in winners else ''}>{row}</tr>")
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(body) + "</table>"
    note = mixed_data_note(summaries)
    if figures:  # the selection below ranks each task's runs by its own figure
        table += (
            f"<p>Runs of label sets are ranked by test {', '.join(figures)}; their test and train acc are the "
            "share of photos whose whole label set is right (exact match), and their gap is in their figure.</p>"
        )
    selected = "".join(
        f"<p><b>Selected{'' if len(sets) == 1 else ' on ' + html.escape(label)}:</b> "
        f"{html.escape(selection.reason)}</p>"
        for label, selection in selections.items()
    )
    content = (
        f"<h1>Comparing {len(summaries)} runs</h1><h2>Test metrics</h2>{table}"
        + (f"<p><b>NOTE:</b> {html.escape(note)}</p>" if note else "")
        + selected
        + f"<h2>Learning curves</h2><img class=plot alt='learning curves' "
        f"src='{data_uri(buffer.getvalue(), 'png')}'>"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, page("photoclass: comparing runs", content))
    return out


def mixed_data_note(runs: list[RunSummary] | list[str | os.PathLike]) -> str | None:
    """What to tell the reader when `runs` (summaries or run folders) are on more than one data set."""
    sets = data_sets([r if isinstance(r, RunSummary) else RunSummary.from_run(r) for r in runs])
    if len(sets) < 2:
        return None
    return (
        f"these runs are on {len(sets)} data sets: {data_sets_text(sets)}; a test error on one says nothing "
        "about another, so they stand side by side and a run is selected only among runs on its own data"
    )
