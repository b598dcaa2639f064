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
from .leaderboard import RunSummary, select_run


def write_comparison(runs: list[str | os.PathLike], out: str | os.PathLike, *, tolerance: float = 0.01) -> Path:
    """One page comparing runs: learning curves overlaid, test metrics side by side."""
    check_outside(out, *(RunDir(r).data_source() for r in runs))
    summaries = [RunSummary.from_run(r) for r in runs]
    winner = select_run(summaries, tolerance=tolerance)
    histories = {s.name if sum(t.name == s.name for t in summaries) == 1 else str(s.path):
                 RunDir(s.path).read_csv("metrics.csv") for s in summaries}
    buffer = io.BytesIO()
    plots.overlaid_curves(histories, buffer)
    head = ["run", "model", "test acc", "test loss", "macro F1", "train acc", "gap", "seconds", "options"]
    body = []
    for s in summaries:
        options = s.options_text()
        cells = [html.escape(str(s.path)), html.escape(s.model), f"{s.test_accuracy:.4f}", f"{s.test_loss:.4f}",
                 f"{s.macro_f1:.4f}", f"{s.train_accuracy:.4f}", f"{s.gap:+.4f}", f"{s.seconds:.1f}",
                 html.escape(options)]
        row = "".join(f"<td{' class=n' if 1 < i < 8 else ''}>{c}</td>" for i, c in enumerate(cells))
        body.append(f"<tr{' class=win' if s is winner.winner else ''}>{row}</tr>")
    table = ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(body) + "</table>")
    content = (f"<h1>Comparing {len(summaries)} runs</h1><h2>Test metrics</h2>{table}"
               f"<p><b>Selected:</b> {html.escape(winner.reason)}</p>"
               f"<h2>Learning curves</h2><img class=plot alt='learning curves' src='{data_uri(buffer.getvalue(), 'png')}'>")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, page("photoclass: comparing runs", content))
    return out
