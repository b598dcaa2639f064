"""Batch prediction over a Ray cluster: Ray Data feeds photo paths to a pool of actors, each
holding one exported model (ONNX Runtime or OpenVINO) loaded once, with a few threads each.

`RayPredictor` has `iter_predict` as the predictors do, so `predict_to_file` writes and resumes
its rows as it does a local run's. The workers read the photos themselves: on several machines
the paths must be the same on each (a shared or synced folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..core.progress import progress_bar
from ..core.errors import PhotoclassError
from ..core.raycluster import cluster_cpus, connect
from .engines import engine_for_file, engines, get_engine
from .prediction import Prediction
from .predictor import file_for_run, open_predictor


class RayPredictor:
    """Predicts on a Ray cluster with `actors` copies of `model`'s export (`engine` "onnx" or
    "openvino"; a run folder is exported once, here), `threads` each (default: 1 each, and one
    actor per CPU of the cluster)."""

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        address: str = "local",
        engine: str = "onnx",
        actors: int = 0,
        threads: int = 1,
        batch_size: int = 16,
        unknown: bool = True,
    ):
        able = ray_engines()
        if engine not in (*able, "auto"):
            raise PhotoclassError(
                f"On Ray, photos are predicted by an exported model. Received: engine={engine!r}. "
                f"HINT: --engine {' or '.join(able)}."
            )
        path = Path(model)
        if engine_for_file(path) is None:  # a run folder: its export, made (and checked) once, here
            path, _ = file_for_run(path, able[0] if engine == "auto" else engine)
        local = open_predictor(path, batch_size=batch_size, unknown=unknown)  # fails here, not in every actor
        self.model_path = str(path)
        self.classes, self.engine, self.batch_size = local.classes, local.engine, batch_size
        self.task = local.task
        self.threads, self.unknown = threads, unknown
        self.ray = connect(address)
        self.actors = actors or max(1, cluster_cpus() // max(1, threads))

    def iter_predict(self, files: list, *, top_k: int = 3, progress: bool | None = None) -> Iterator[list[Prediction]]:
        if any(not isinstance(f, (str, os.PathLike)) for f in files):
            raise PhotoclassError(
                "On Ray, photos are predicted from files; image arrays are not sent. "
                "HINT: predict arrays without --ray."
            )
        if not files:
            return
        dataset = self.ray.data.from_items([{"path": str(f)} for f in files])
        rows = dataset.map_batches(
            _Actor,
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=self.ray.data.ActorPoolStrategy(size=self.actors),
            num_cpus=self.threads,
            fn_constructor_kwargs={
                "model": self.model_path,
                "threads": self.threads,
                "top_k": top_k,
                "batch_size": self.batch_size,
                "unknown": self.unknown,
            },
        )
        with progress_bar(total=len(files), desc="predict (ray)", unit="img", progress=progress) as bar:
            for batch in rows.iter_batches(batch_size=self.batch_size, batch_format="numpy"):
                found = [_from_dict(json.loads(row)) for row in batch["row"]]
                bar.update(len(found))
                yield found


def ray_engines() -> list[str]:
    """The engines whose predictors run as Ray actors, in the registry's order (ONNX's first)."""
    return [e.name for e in engines() if e.ray]


def ray_engine(engine: str) -> str:
    """The engine Ray runs for `predict --engine`: one that makes no export (PyTorch, the
    default) stands for the first of `ray_engines`."""
    return engine if engine == "auto" or get_engine(engine).exports else ray_engines()[0]


class _Actor:
    """One model, loaded once; called with batches of paths."""

    def __init__(self, model: str, threads: int, top_k: int, batch_size: int, unknown: bool):
        self.predictor = open_predictor(model, batch_size=batch_size, threads=threads, unknown=unknown)
        self.top_k = top_k

    def __call__(self, batch: dict) -> dict:
        paths = [Path(p) for p in batch["path"]]
        found = {
            p.path: p for part in self.predictor.iter_predict(paths, top_k=self.top_k, progress=False) for p in part
        }
        return {"row": np.array([json.dumps(found[str(p)].to_dict(), ensure_ascii=False) for p in paths])}


def _from_dict(row: dict) -> Prediction:
    if "error" in row:
        return Prediction(row["path"], error=row["error"])
    return Prediction(
        row["path"],
        top=[(t["label"], t["probability"]) for t in row["top"]],
        outlier_score=row.get("outlier_score"),
        unknown=row.get("unknown", False),
        labels=row.get("labels"),
        scores=row.get("scores"),
    )
