"""The engine registry: each way of running a model (PyTorch, or an export and its runtime) is an
`Engine` entry that says what it can do and does it; `export`, `open_predictor`, `--engine auto`
and the CLI's choices ask the registry, never compare a name.

An engine that exports (`precisions` not empty) converts a run's model into a file in a
temporary folder (`convert`), opens that file as a predictor (`open`) so `export` can check it
against PyTorch on the run's test photos, adds the check's figures to it (`stamp`) and puts it in
place (`keep`); `read_metadata` reads those figures back, and `recognizes` tells its files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...core.atomic import write_bytes_atomic
from ...core.errors import PhotoclassError
from ..prediction import BasePredictor
from ...runs.rundir import RunDir


def copy_into_place(made: Path, out: Path) -> None:
    """A one-file export to `out`, atomically."""
    write_bytes_atomic(out, made.read_bytes())


@dataclass(frozen=True)
class Engine:
    """One engine: its name (the word of `--engine` and `--format`), what it can do, and how."""

    name: str
    title: str  # in messages: "OpenVINO"
    # (path, *, batch_size, unknown, threads) -> a predictor; PyTorch's also takes device, precision
    open: Callable[..., BasePredictor]
    precisions: tuple[str, ...] = ()  # those it exports in; none: it runs the run itself, makes no file
    file_name: str = ""  # its export in the run folder; {tag} is "" for fp32, else "-int8", "-bf16"
    recognizes: Callable[[Path], bool] | None = None  # whether a path is a model file of its format
    # (run, temporary folder, *, precision, calibration photos or None, the PyTorch reference) -> made file
    convert: Callable[..., Path] | None = None
    read_metadata: Callable[[Path], dict[str, str]] | None = None  # photoclass's keys, without prefix
    stamp: Callable[[Path, dict], None] | None = None  # the check's figures into a made file, in place
    keep: Callable[[Path, Path], None] = copy_into_place  # (made, out): the checked file into its place
    check_precision: Callable[[str], None] | None = None  # raises where this machine cannot check it
    # a run folder's file for this engine, made once without `export`'s check; ImportError where its
    # runtime is missing. None: a verified export, made by `export` when missing
    for_run: Callable[[Path], Path] | None = None
    missing: str = ""  # the message for `for_run`'s ImportError, with the install HINT
    int8_weight_bits: int = 8  # 7: no pair of products saturates 16 bits, so INT8 answers hold on every CPU
    gpu: bool = False  # runs on a GPU device (exports run on the CPU)
    ray: bool = False  # its predictors can be Ray actors

    @property
    def exports(self) -> bool:
        return bool(self.precisions)

    @property
    def int8(self) -> bool:
        return "int8" in self.precisions

    def default_path(self, run: RunDir | Path, precision: str = "fp32") -> Path:
        """Where this engine's export in `precision` sits in a run folder."""
        return (run if isinstance(run, RunDir) else RunDir(run)).export_path(self.file_name, precision)


_ENGINES: dict[str, Engine] = {}  # in the order registered: the order of choices and of fallbacks


def register_engine(engine: Engine) -> Engine:
    if engine.name in (*_ENGINES, "auto"):  # "auto" chooses among the engines
        raise PhotoclassError(f"The engine name {engine.name!r} is taken. HINT: pick another name.")
    _ENGINES[engine.name] = engine
    return engine


def unregister_engine(name: str) -> None:
    get_engine(name)
    del _ENGINES[name]


def get_engine(name: str) -> Engine:
    if name not in _ENGINES:
        raise PhotoclassError(f"Unknown engine {name!r}. HINT: use one of {', '.join(_ENGINES)}.")
    return _ENGINES[name]


def engines() -> list[Engine]:
    return list(_ENGINES.values())


def engine_names(*, exports: bool | None = None) -> tuple[str, ...]:
    """The engines' names in the order registered; `exports`: only those that do (True) or do not."""
    return tuple(e.name for e in _ENGINES.values() if exports is None or e.exports == exports)


def engine_for_file(path: Path) -> Engine | None:
    """The engine whose exported file `path` is; None for anything else (a run folder)."""
    return next((e for e in _ENGINES.values() if e.recognizes is not None and e.recognizes(Path(path))), None)
