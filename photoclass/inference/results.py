"""Predictions written as they are made, one row a photo, resumable: `predict --out FILE`.

CSV and JSON Lines files are appended to batch by batch and flushed, so a killed run loses at
most the batch it was on; run again, it reads the rows there, drops a half-written last line,
and predicts only the photos not in the file. A Parquet file cannot be appended to, so its rows
go to a JSON Lines journal beside it (`.NAME.partial.jsonl`) and the Parquet file is written,
atomically, when every photo is done.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic import check_writable, write_bytes_atomic
from ..core.errors import PhotoclassError
from ..data.outside import check_outside
from .prediction import BasePredictor, Prediction, expand_paths, with_array_items

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
CSV_COLUMNS = ["path", "label", "confidence", "unknown", "outlier_score", "top", "error"]


@dataclass
class Written:
    """What one `predict_to_file` call did."""

    path: Path
    total: int  # photos asked for
    before: int  # already in the file: skipped
    predicted: int  # rows added, failed photos included
    failed: int  # of those, unreadable photos (their rows say why)
    seconds: float


def predict_to_file(
    predictor: BasePredictor,
    paths: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    top_k: int = 3,
    progress: bool | None = None,
    on_batch: Callable[[list[Prediction]], None] | None = None,
) -> Written:
    """Predict `paths` into `out` (.csv, .jsonl or .parquet) as it goes, skipping photos it already holds."""
    out = Path(out)
    kind = FORMATS.get(out.suffix.lower())
    if kind is None:
        raise PhotoclassError(
            f"Cannot write predictions to {out}: unknown kind of file. HINT: end the name in {', '.join(FORMATS)}."
        )
    if kind == "parquet":
        _need_pyarrow()
    paths = list(paths)
    check_outside(out, *(p if Path(p).is_dir() else Path(p).parent for p in paths), flag="--out")
    check_writable(out.parent if str(out.parent) else Path("."), hint="pass another --out")
    started = time.perf_counter()
    files = with_array_items(expand_paths(paths))
    journal = out.with_name(f".{out.name}.partial.jsonl") if kind == "parquet" else out
    done = _finished_parquet(out) if kind == "parquet" and out.exists() else _rows_in(journal, kind)
    todo = [f for f in files if str(f) not in done]
    failed = predicted = 0
    if todo:
        with open(journal, "a", newline="", encoding="utf-8") as stream:
            sets = predictor.classes if predictor.task.sets else None
            csv_file = journal.suffix.lower() == ".csv"
            write = _csv_writer(stream, header=not done, sets=sets) if csv_file else _jsonl_writer(stream)
            for batch in predictor.iter_predict(todo, top_k=top_k, progress=progress):
                if on_batch:  # before the rows: a photo in the file has had everything done to it
                    on_batch(batch)
                write(batch)
                stream.flush()
                predicted += len(batch)
                failed += sum(1 for p in batch if p.error)
    if kind == "parquet" and journal.exists():
        _write_parquet(out, journal)
    return Written(out, len(files), len(files) - len(todo), predicted, failed, time.perf_counter() - started)


def _rows_in(path: Path, kind: str) -> set[str]:
    """The paths already written to `path`; a half-written last line (a killed run) is cut off first."""
    if not path.exists() or path.stat().st_size == 0:
        return set()
    with open(path, "r+b") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
            data = data[:end]
    text = data.decode("utf-8")
    try:
        if kind == "csv":
            rows = list(csv.DictReader(io.StringIO(text)))
            if rows and "path" not in rows[0]:
                raise ValueError("no path column")
            return {r["path"] for r in rows}
        return {json.loads(line)["path"] for line in text.splitlines() if line.strip()}
    except (ValueError, KeyError, TypeError) as e:
        raise PhotoclassError(
            f"{path} is not a predictions file this can resume ({e}). "
            "HINT: pass a new --out, or delete it to start over."
        ) from None


def _csv_writer(stream, *, header: bool, sets: list[str] | None = None):
    writer = csv.writer(stream, lineterminator="\n")
    if header:
        writer.writerow(csv_columns(sets))

    def write(batch: list[Prediction]) -> None:
        writer.writerows(csv_row(p, places=6, sets=sets) for p in batch)

    return write


def csv_columns(sets: list[str] | None = None) -> list[str]:
    """The columns of a predictions CSV; for a model answering label `sets` (its labels), also the
    labels decided (space-separated) and a score column per label."""
    if sets is None:
        return CSV_COLUMNS
    return [*CSV_COLUMNS[:2], "labels", *CSV_COLUMNS[2:], *(f"score:{label}" for label in sets)]


def csv_row(p: Prediction, *, places: int, sets: list[str] | None = None) -> list[str]:
    """A prediction as a row of `csv_columns(sets)`, probabilities to `places` decimals."""
    row = _csv_row(p, places)
    if sets is not None:
        row.insert(2, " ".join(p.labels or []))
        row += [f"{p.scores[label]:.{places}f}" if p.scores else "" for label in sets]
    return row


def _csv_row(p: Prediction, places: int) -> list[str]:
    checked = p.outlier_score is not None
    return [
        p.path,
        p.label,
        f"{p.confidence:.{places}f}" if not p.error else "",
        str(p.unknown).lower() if checked else "",
        f"{p.outlier_score:.{places}f}" if checked else "",
        ";".join(f"{c}:{v:.{places}f}" for c, v in p.top),
        p.error,
    ]


def _jsonl_writer(stream):
    def write(batch: list[Prediction]) -> None:
        stream.write("".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in batch))

    return write


def _need_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise PhotoclassError(
            "Writing Parquet needs pyarrow. HINT: pip install pyarrow, or pass --out results.csv or results.jsonl."
        ) from None


def _finished_parquet(path: Path) -> set[str]:
    import pyarrow.parquet as pq

    journal = path.with_name(f".{path.name}.partial.jsonl")
    try:
        done = set(pq.read_table(path, columns=["path"]).column("path").to_pylist())
    except Exception as e:
        raise PhotoclassError(
            f"{path} is not a predictions file this can resume ({e}). "
            "HINT: pass a new --out, or delete it to start over."
        ) from None
    return done | _rows_in(journal, "jsonl")


def _write_parquet(path: Path, journal: Path) -> None:
    """The finished file: the rows of an earlier finished file, if any, then the journal's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines() if line.strip()]
    # a multi-label model's rows carry its set and every label's score: two more columns
    labels = next((list(r["scores"]) for r in rows if r.get("scores")), None)
    if labels is None and path.exists() and "scores" in (before := pq.read_schema(path)).names:
        labels = [f.name for f in before.field("scores").type]  # this time, only unreadable photos
    schema = _schema(pa, labels)
    table = pa.Table.from_pylist([_flat(r, labels is not None) for r in rows], schema=schema)
    if path.exists():
        table = pa.concat_tables([pq.read_table(path).cast(schema), table])
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    journal.unlink()


def _schema(pa, labels: list[str] | None = None):
    """The Parquet columns; with a multi-label model's `labels`, its decided set and their scores too."""
    top = pa.list_(pa.struct([("label", pa.string()), ("probability", pa.float64())]))
    sets = [] if labels is None else [("labels", pa.list_(pa.string()))]
    scores = [] if labels is None else [("scores", pa.struct([(label, pa.float64()) for label in labels]))]
    return pa.schema(
        [
            ("path", pa.string()),
            ("label", pa.string()),
            *sets,
            ("confidence", pa.float64()),
            ("unknown", pa.bool_()),
            ("outlier_score", pa.float64()),
            ("top", top),
            ("error", pa.string()),
            *scores,
        ]
    )


def _flat(row: dict, sets: bool = False) -> dict:
    return {
        "path": row["path"],
        "label": row.get("label"),
        **({"labels": row.get("labels"), "scores": row.get("scores")} if sets else {}),
        "confidence": row.get("confidence"),
        "unknown": row.get("unknown"),
        "outlier_score": row.get("outlier_score"),
        "top": row.get("top", []),
        "error": row.get("error", ""),
    }
