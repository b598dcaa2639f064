"""Log finished runs to MLflow. The run directory stays the source of truth; MLflow mirrors it.

The store is, in order: the `uri` given (`--tracking-uri`), `MLFLOW_TRACKING_URI`, or
`sqlite:///mlflow.db` in the working directory; a SQLite store keeps its artifacts in `mlruns/`
beside it. Neither may be inside the run's data folder. `PHOTOCLASS_TRACKING=off` (or
`track=False`, `--no-track`) turns logging off.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..core.errors import PhotoclassError
from ..data.outside import check_outside
from ..runs.rundir import RunDir, summary_metrics

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "photoclass"
ARTIFACTS = (
    RunDir.CONFIG,
    RunDir.TEST_METRICS,
    RunDir.MODEL_META,
    RunDir.SPLIT,
    RunDir.METRICS,
    RunDir.REPORT,
    RunDir.WEIGHTS,
)


def tracking_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def tracking_enabled(track: bool | str | None) -> bool:
    if track is None:
        return os.environ.get("PHOTOCLASS_TRACKING", "on").lower() not in ("0", "off", "false", "no")
    return track is not False


def log_finished_run(run: RunDir, track: bool | str | None, *, verbose: bool = True) -> str | None:
    """`track_run` as training ends: a failure to log is reported, never fatal to the run."""
    if not tracking_enabled(track):
        return None
    uri = track if isinstance(track, str) else None
    try:
        run_id = track_run(run.path, uri=uri)
    except ImportError:
        if verbose:
            print(
                "tracking: MLflow is not installed (pip install 'photoclass[track]', or "
                "PHOTOCLASS_TRACKING=off to stop this note); run not logged"
            )
        return None
    except Exception as e:  # a broken or unreachable store must not lose a trained run
        why = str(e) if isinstance(e, PhotoclassError) else f"{type(e).__name__}: {str(e)[:200]}"
        print(
            f"tracking: could not log to {tracking_uri(uri)}: {why} "
            f"The run directory is complete; log it later with `photoclass track {run.path}`."
        )
        return None
    if verbose:
        print(f"tracked in {tracking_uri(uri)} (MLflow run {run_id})")
    return run_id


def track_run(run: str | os.PathLike, *, uri: str | None = None, experiment: str = EXPERIMENT) -> str:
    """Log a finished run (parameters, per-epoch and test metrics, artifacts); its MLflow id.

    Logging the same run directory again replaces its earlier MLflow run.
    """
    run = RunDir(run)
    if not run.exists(RunDir.TEST_METRICS):
        raise PhotoclassError(
            f"{run.path} is not a finished run (no test.json); only finished runs are tracked. "
            "HINT: `photoclass runs` lists the finished ones."
        )
    try:
        return _log_run(run, uri, experiment)
    except (PhotoclassError, ImportError):
        raise
    except Exception as e:  # MLflow's errors for bad URIs, unreachable servers, locked stores, ...
        message = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise PhotoclassError(
            f"Cannot log {run.path} to MLflow at {tracking_uri(uri)}: {message}. HINT: check "
            "--tracking-uri (a sqlite:/// path or a running server's http:// address)."
        ) from None


def _log_run(run: RunDir, uri: str | None, experiment: str) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    config, result = run.config(), run.test_metrics()
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):  # table creation chatter
        logging.getLogger(name).setLevel(logging.WARNING)
    store = _sqlite_path(tracking_uri(uri))
    _refuse_inside_data(run, store)
    client = MlflowClient(tracking_uri(uri))
    found = client.get_experiment_by_name(experiment)
    # artifacts beside a local store, not in the working directory where MLflow would put them
    artifacts = _local_path(found.artifact_location) if found else store.parent / "mlruns" if store else None
    _refuse_inside_data(run, artifacts)
    experiment_id = (
        found.experiment_id
        if found
        else client.create_experiment(experiment, artifact_location=artifacts.as_uri() if artifacts else None)
    )
    source = str(run.path.resolve())
    for old in client.search_runs([experiment_id], f"tags.`photoclass.run_dir` = '{_quote(source)}'"):
        client.delete_run(old.info.run_id)

    tags = {
        "photoclass.run_dir": source,
        "photoclass.data": Path(config["data"]).name,
        "photoclass.model": config["train"]["model"],
        "photoclass.version": config["versions"]["photoclass"],
    }
    mlrun = client.create_run(experiment_id, run_name=run.path.name, tags=tags)
    run_id = mlrun.info.run_id
    params = [
        Param(f"{section}.{k}", str(v)[:6000]) for section in ("train", "prepare") for k, v in config[section].items()
    ]
    now = int(time.time() * 1000)
    metrics = [
        Metric(k, float(row[k]), now, int(row["epoch"]))
        for row in run.metrics_rows()
        for k in row
        if k != "epoch" and row[k] != ""
    ]
    metrics += [Metric(k, float(v), now, 0) for k, v in summary_metrics(result).items()]
    for start in range(0, len(params), 90):  # MLflow's limits per batch
        client.log_batch(run_id, params=params[start : start + 90])
    for start in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[start : start + 900])
    for name in ARTIFACTS:
        if run.exists(name):
            client.log_artifact(run_id, str(run / name))
    if run.plots.is_dir():
        client.log_artifacts(run_id, str(run.plots), RunDir.PLOTS)
    client.set_terminated(run_id)
    run.write_tracking({"uri": tracking_uri(uri), "experiment_id": experiment_id, "run_id": run_id})
    return run_id


def _sqlite_path(uri: str) -> Path | None:
    """The file of a local SQLite store (`sqlite:///rel.db`, `sqlite:////abs.db`), else None."""
    return Path(uri.removeprefix("sqlite:///")).resolve() if uri.startswith("sqlite:///") else None


def _local_path(location: str) -> Path | None:
    """An artifact location on this machine (a path or a file: URI), else None."""
    if location.startswith("file:"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        return Path(url2pathname(urlparse(location).path))
    return None if ":/" in location else Path(location).resolve()  # a server's, or mlflow-artifacts:/


def _refuse_inside_data(run: RunDir, path: Path | None) -> None:
    if path is not None:
        check_outside(path, run.data_source(), flag="--tracking-uri")


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
