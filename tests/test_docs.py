"""The shell examples of the README and docs/ stay true: every `photoclass ...` line parses
with the flags the parser has, and the README's tour runs on the shipped example photos."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from photoclass.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# pages that serve until stopped (serve, review, label), long runs, and what needs a page's output first
EXPENSIVE = ("serve", "review", "label", "--corrections", "sweep", "audit", "--seeds", "--folds", "--nproc")
EXPENSIVE += ("--device cuda", "--strategy lpft")


def shell_examples(page: Path) -> list[list[str]]:
    """The `photoclass` commands of the page's ```bash blocks, as argument lists (comments and
    line continuations handled; `torchrun ... -m photoclass ARGS` counts as ARGS)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "-m" in words and "photoclass" in words:
                words = words[words.index("photoclass", words.index("-m")) :]
            if words[:1] == ["photoclass"]:
                commands.append(words[1:])
    return commands


EXAMPLES = [(page.relative_to(ROOT).as_posix(), words) for page in PAGES for words in shell_examples(page)]


def test_the_pages_have_examples_to_check():
    assert {page for page, _ in EXAMPLES} >= {
        "README.md",
        "docs/data.md",
        "docs/training.md",
        "docs/serving.md",
        "docs/scaling.md",
    }
    assert len(EXAMPLES) > 40


@pytest.mark.parametrize("page,words", EXAMPLES, ids=[f"{p}: {' '.join(w)[:60]}" for p, w in EXAMPLES])
def test_every_documented_command_parses(page, words, capsys):
    try:
        args, extra = build_parser().parse_known_args(words)
    except SystemExit:
        pytest.fail(f"{page}: `photoclass {' '.join(words)}` does not parse: {capsys.readouterr().err.strip()}")
    assert not extra, f"{page}: `photoclass {' '.join(words)}` has unknown arguments {extra}"


def test_the_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, f"the README's contents do not link docs/{page.name}"
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links {target}, which does not exist"


@pytest.mark.slow
@pytest.mark.trains
def test_the_readme_tour_runs_on_the_shipped_examples(tmp_path):
    """Each cheap command of the README (all but the pages, sweeps, audits and repeated runs), in
    order, in a fresh folder beside the shipped examples."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PHOTOCLASS_TRACKING": "off"}
    ran = []
    for words in shell_examples(ROOT / "README.md"):
        line = " ".join(words)
        if any(e in f" {line} " for e in (f" {x} " for x in EXPENSIVE)) or words[0] in EXPENSIVE:
            continue
        done = subprocess.run(
            [sys.executable, "-m", "photoclass", *words],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"`photoclass {line}` failed: {done.stderr.strip()[-800:]}"
        ran.append(words[0])
    assert {"prepare", "train", "evaluate", "predict", "export", "runs", "select", "compare"} <= set(ran)
    assert (tmp_path / "sorted").is_dir() and (tmp_path / "runs" / "weather" / "report.html").is_file()
    assert not any(p.name == "runs" for p in (ROOT / "examples").rglob("*")), "the tour wrote into examples/"
