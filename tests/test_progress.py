"""Every step over a few seconds shows a bar on stderr when stderr is a terminal (tqdm's rule),
and none when it is not: `evaluate` (its own test split, --data, --outsiders), `similar --html`,
`export`'s check and `audit`'s folds."""

import fcntl
import os
import struct
import subprocess
import sys
import termios
import threading

import numpy as np
import pytest

from conftest import make_flat, train_tiny_run


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("progress")
    return {
        "run": train_tiny_run(base),
        "outsiders": make_flat(base / "outsiders", per_class=4, start_seed=5000),
        "base": base,
    }


def on_a_terminal(*args, rows: int = 40, columns: int = 120) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `photoclass ARGS` with stderr on a pseudo-terminal of
    `rows` x `columns`, as in a shell window; stdout on a pipe."""
    master, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    chunks: list[bytes] = []

    def drain():  # the terminal's buffer is small: read while the command writes
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command closed its end
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    process = subprocess.Popen(
        [sys.executable, "-m", "photoclass", *map(str, args)], stdout=subprocess.PIPE, stderr=terminal, text=True
    )
    os.close(terminal)
    out, _ = process.communicate(timeout=300)
    reader.join(timeout=10)
    os.close(master)
    return process.returncode, out, b"".join(chunks).decode(errors="replace")


def bars(stderr: str) -> set[str]:
    """The descriptions of the bars tqdm drew: `test photos` of `test photos:  40%|###  | 2/5 ...`."""
    return {line.split(":")[0].strip() for line in stderr.replace("\r", "\n").splitlines() if "%|" in line}


@pytest.mark.trains
def test_evaluate_shows_a_bar_for_each_split_on_a_terminal_and_none_in_a_pipe(world):
    code, out, err = on_a_terminal("evaluate", world["run"])
    assert code == 0 and "test: accuracy" in out
    assert {"train photos", "val photos", "test photos"} <= bars(err), err
    piped = subprocess.run(
        [sys.executable, "-m", "photoclass", "evaluate", world["run"]], capture_output=True, text=True, timeout=300
    )
    assert piped.returncode == 0 and "%|" not in piped.stderr  # a log file gets no bars
    code, _, err = on_a_terminal("evaluate", world["run"], "--data", world["outsiders"])
    assert code == 0 and "evaluate" in bars(err), err


@pytest.mark.trains
def test_evaluate_outsiders_shows_the_outsiders_then_the_test_photos(world):
    code, out, err = on_a_terminal("evaluate", world["run"], "--outsiders", world["outsiders"])
    assert code == 0 and "AUROC" in out
    assert {"predict", "test photos"} <= bars(err), err


@pytest.mark.trains
def test_similar_shows_its_search_and_the_page_it_writes(world):
    page = world["base"] / "pages" / "similar.html"
    code, out, err = on_a_terminal("similar", world["run"], world["outsiders"], "--html", page)
    assert code == 0 and page.is_file()
    assert {"similar", "similar page"} <= bars(err), err


def test_the_export_check_and_the_audit_folds_draw_bars_when_asked(capsys):
    from photoclass.evaluation.label_errors import out_of_fold_probabilities
    from photoclass.inference.verify import Photos, compare

    from photoclass.tasks import SINGLE_LABEL

    class Engine:
        threshold = None
        task = SINGLE_LABEL

        def outputs(self, pixels):
            return pixels.reshape(len(pixels), -1)[:, :3].astype(np.float32), None

    photos = Photos(
        np.random.default_rng(0).integers(0, 255, (40, 4, 4, 3), dtype=np.uint8), np.zeros(40, dtype=int), "test"
    )
    assert compare(Engine(), Engine(), photos, fp32=True, progress=True)["kept"]
    assert "check" in bars(capsys.readouterr().err)
    compare(Engine(), Engine(), photos, fp32=True)  # the default: quiet, for callers with their own bars
    assert capsys.readouterr().err == ""
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 20)
    out_of_fold_probabilities(rng.normal(size=(40, 5)) + labels[:, None], labels, np.arange(40), progress=True)
    assert "folds" in bars(capsys.readouterr().err)
