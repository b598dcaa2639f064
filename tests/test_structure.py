"""Checks on the code's shape that stay: rules of ../shared/DESIGN.md a reviewer should not
have to catch by eye."""

from __future__ import annotations

import ast
from pathlib import Path

from photoclass.runs.rundir import RunDir

PACKAGE = Path(__file__).resolve().parent.parent / "photoclass"

# Files of other formats that happen to share a run file's name.
NOT_RUN_FILES = {
    ("models/timm_models.py", "model.safetensors"): "a Hugging Face Hub repository's weights",
    ("models/timm_models.py", "config.json"): "a Hugging Face Hub repository's config",
}


def run_file_names() -> set[str]:
    """Every file name of a run folder RunDir spells: its files, the audit's, the plots."""
    names = {v for k, v in vars(RunDir).items() if k.isupper() and isinstance(v, str) and "." in v}
    return names | {f"{plot}.png" for plot in RunDir.PLOT_NAMES}


def test_run_file_names_cover_the_run_folder():
    names = run_file_names()
    assert {"config.json", "model.json", "test.json", "split.csv", "model.safetensors", "last.ckpt"} <= names
    assert {"report.html", "audit.json", "label_issues.csv", "confusion_matrix.png"} <= names


def test_only_the_run_folder_module_spells_the_run_folder_file_names():
    """A literal "model.json" (or test.json, last.ckpt, ...) outside photoclass/runs/ is a
    second owner of the layout: ask RunDir instead (RunDir.MODEL_META, run.model_meta())."""
    names = run_file_names()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith("runs/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names and (where, node.value) not in NOT_RUN_FILES:
                found.append(f"photoclass/{where}:{node.lineno}: {node.value!r}")
    assert not found, "run folder file names spelled outside photoclass/runs/ (ask RunDir):\n" + "\n".join(found)
