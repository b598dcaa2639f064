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


LONGEST_FUNCTION = 80  # lines, its decorators and docstring included

# A registry imports the modules that register into it, and they import it: that circle is its own.
REGISTRY_CIRCLES = [{"models/registry.py", "models/cnn.py", "models/efficientnet_lite.py", "models/small.py"}]


def test_no_function_is_longer_than_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - min([node.lineno, *(d.lineno for d in node.decorator_list)]) + 1
                if lines > LONGEST_FUNCTION:
                    long.append(f"photoclass/{path.relative_to(PACKAGE).as_posix()}:{node.lineno} {node.name}: {lines}")
    assert not long, f"functions over {LONGEST_FUNCTION} lines (split them):\n" + "\n".join(long)


def imports_between_files() -> dict[str, set[str]]:
    """file -> the files of photoclass it imports (at any depth of the code), as paths under photoclass/."""
    files = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}

    def module_file(parts: list[str]) -> str | None:
        for candidate in ("/".join(parts) + ".py", "/".join([*parts, "__init__.py"])):
            if candidate in files:
                return candidate
        return None

    graph: dict[str, set[str]] = {}
    for where in files:
        package = where.split("/")[:-1]
        found = graph.setdefault(where, set())
        for node in ast.walk(ast.parse((PACKAGE / where).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                parts = [*base, *(node.module.split(".") if node.module else [])]
                target = module_file(parts)
                for alias in node.names:  # `from . import mod` names a module
                    found.add(module_file([*parts, alias.name]) or target)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    if name.startswith("photoclass."):
                        found.add(module_file(name.split(".")[1:]))
        found.discard(None)
        found.discard(where)
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_between_files_but_a_registrys_own():
    """Files that import each other cannot be read, tested or replaced one at a time; a
    package's __init__.py handing names on is not counted."""
    graph = {f: {t for t in ts if not t.endswith("__init__.py")} for f, ts in imports_between_files().items()}
    found = [c for c in circles(graph) if not any(c <= allowed for allowed in REGISTRY_CIRCLES)]
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(sorted(c)) for c in found)


# What a model's outputs mean is the task's (photoclass/tasks/); these files compute with
# softmax or argmax for another reason, or are the single-label functions the task composes.
ANSWER_MATH = ("softmax", "log_softmax", "argmax", "cross_entropy", "CrossEntropyLoss")
ANSWER_MATH_ELSEWHERE = {
    "evaluation/metrics.py": "single-label metrics, called by tasks.SingleLabel.metrics",
    "evaluation/calibration.py": "temperature scaling, called by tasks.SingleLabel.calibrate",
    "evaluation/label_errors.py": "out-of-fold probabilities and cleanlab, called by SingleLabel.label_issues",
    "evaluation/gradcam.py": "the highest-scoring class is the one explained",
    "training/probe.py": "the best strength of the grid",
    "training/active.py": "the largest cluster, its most typical photo, the narrowest margin (classes through the task)",
    "data/split.py": "stratification",
    "data/arrays.py": "one-hot label arrays read as class indices",
}


def test_stages_ask_the_task_for_what_outputs_mean():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith("tasks/") or where in ANSWER_MATH_ELSEWHERE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node, "attr", None) or getattr(node, "id", None)
            if isinstance(node, (ast.Attribute, ast.Name)) and name in ANSWER_MATH:
                found.append(f"photoclass/{where}:{node.lineno}: {name}")
    assert not found, "softmax/argmax/cross-entropy outside photoclass/tasks/ (ask the task):\n" + "\n".join(found)
