"""Before and after corrected labels: two runs' test figures, on the whole test split and on the
test photos whose labels did not change.

A corrected test label changes the test itself: a run can gain on the whole split only because
its answers now count as right. The photos that kept their label in both runs are the one fair
ground, and on them the two runs are compared photo by photo (McNemar's exact test).
"""

from __future__ import annotations

from typing import Any

from ..evaluation.stats import mcnemar_p, wilson_interval
from ..runs.rundir import RunDir


def before_after(before: RunDir, after: RunDir) -> dict[str, Any]:
    """The test accuracy (exact-match for label sets) of `before` and `after`, each on its own
    whole test split and both on the test photos that carry the same label in both."""
    tests, right = [], []
    for run in (before, after):
        result = run.test_metrics()
        test = {r["path"]: r["label"] for r in run.split_rows() if r["split"] == "test" and r["status"] == "ok"}
        wrong = set(result.get("wrong_paths", []))
        tests.append(test)
        right.append({path: path not in wrong for path in test})
    same = sorted(p for p, label in tests[0].items() if tests[1].get(p) == label)
    only = [sum(right[0][p] and not right[1][p] for p in same), sum(right[1][p] and not right[0][p] for p in same)]
    return {
        "before": str(before.path),
        "whole_test": [_figure(right[0].values()), _figure(right[1].values())],
        "unchanged_test": [_figure(right[0][p] for p in same), _figure(right[1][p] for p in same)],
        "test_labels_changed": sum(1 for p, label in tests[0].items() if p in tests[1] and tests[1][p] != label),
        "test_photos_removed": sum(1 for p in tests[0] if p not in tests[1]),
        "test_photos_added": sum(1 for p in tests[1] if p not in tests[0]),
        "only_before_right": only[0],
        "only_after_right": only[1],
        "mcnemar_p": round(mcnemar_p(*only), 6),
    }


def _figure(right) -> dict[str, Any]:
    right = list(right)
    n, hits = len(right), sum(right)
    return {"accuracy": hits / n if n else float("nan"), "interval": wilson_interval(hits, n), "photos": n}


def format_before_after(c: dict[str, Any]) -> str:
    def line(name: str, pair) -> str:
        b, a = pair
        return (
            f"  {name:<26} before {b['accuracy']:.4f} ({b['interval'][0]:.4f}-{b['interval'][1]:.4f}, {b['photos']} photos)"
            f"  after {a['accuracy']:.4f} ({a['interval'][0]:.4f}-{a['interval'][1]:.4f}, {a['photos']} photos)"
        )

    changed = c["test_labels_changed"] + c["test_photos_removed"] + c["test_photos_added"]
    lines = [
        f"before and after, against {c['before']} (test accuracy, 95% intervals):",
        line("whole test split", c["whole_test"]),
        line("test photos, labels kept", c["unchanged_test"]),
        f"  on the photos that kept their label: {c['only_after_right']} right only after, "
        f"{c['only_before_right']} right only before (McNemar p = {c['mcnemar_p']:.3g})",
    ]
    if changed:
        lines.append(
            f"  NOTE: the test itself changed ({c['test_labels_changed']} labels corrected, "
            f"{c['test_photos_removed']} photos left out, {c['test_photos_added']} added): "
            "read the whole-split figures with that in mind"
        )
    return "\n".join(lines)
