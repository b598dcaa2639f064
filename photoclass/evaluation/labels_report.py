"""The report's account of corrected labels and outsiders: what the corrections files changed,
the figures before and after them, and what the outsiders did to "none of these"."""

from __future__ import annotations

import html
from typing import Any


def corrections_section(summary: dict[str, Any] | None, compared: dict[str, Any] | None) -> str:
    """What the corrections changed and, against the run before them, the test figures; '' without either."""
    c = (summary or {}).get("corrections")
    if not c and not compared:
        return ""
    out = ""
    if c:
        n = c["applied"]
        facts = [
            f"{n['relabel']} labels corrected, {n['drop']} photos dropped from training, "
            f"{n['outsider']} marked outsiders (photos of no class), {n['keep']} confirmed",
            "from " + ", ".join(c["files"]),
        ]
        tested = sum(r["split"] == "test" for r in c["relabelled"])
        if tested:
            facts.append(f"{tested} of the corrected labels are test labels: the test itself changed")
        if c["unmatched"]:
            facts.append(f"{len(c['unmatched'])} rows match no photo here and were skipped")
        facts += [f"class {name!r} has no training photo after the corrections" for name in c.get("untrainable", [])]
        out += "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in facts) + "</ul>"
        if c["relabelled"]:
            out += (
                "<details><summary>relabelled photos</summary><table><tr><th>photo</th><th>split</th>"
                "<th>from</th><th>to</th></tr>"
                + "".join(
                    f"<tr><td>{html.escape(r['path'])}</td><td>{r['split']}</td><td>{html.escape(r['from'])}</td>"
                    f"<td>{html.escape(r['to'])}</td></tr>"
                    for r in c["relabelled"][:500]
                )
                + "</table></details>"
            )
    if compared:
        out += _before_after_table(compared)
    return out


def _before_after_table(c: dict[str, Any]) -> str:
    def cells(figure: dict[str, Any]) -> str:
        low, high = figure["interval"]
        return f"<td class=n>{figure['accuracy']:.2%}</td><td class=n>{low:.1%}-{high:.1%}</td><td class=n>{figure['photos']}</td>"

    head = (
        "<tr><th>test photos</th>" + "<th class=n>accuracy</th><th class=n>95% interval</th><th class=n>photos</th>" * 2
    )
    rows = [
        f"<tr><td>{name}</td>{cells(pair[0])}{cells(pair[1])}</tr>"
        for name, pair in (
            ("the whole test split", c["whole_test"]),
            ("those whose label did not change", c["unchanged_test"]),
        )
    ]
    changed = c["test_labels_changed"] + c["test_photos_removed"] + c["test_photos_added"]
    note = (
        f"<p>The test itself changed ({c['test_labels_changed']} labels corrected, {c['test_photos_removed']} photos "
        f"left out, {c['test_photos_added']} added): the whole-split figures do not measure the same thing; the "
        "photos whose label did not change do.</p>"
        if changed
        else ""
    )
    return (
        f"<p>Before: <code>{html.escape(c['before'])}</code>; after: this run.</p>"
        f"<table><tr><th></th><th colspan=3>before</th><th colspan=3>after</th></tr>{head}</tr>{''.join(rows)}</table>"
        f"<p>On the photos that kept their label, {c['only_after_right']} are right only after and "
        f"{c['only_before_right']} only before (McNemar's exact p = {c['mcnemar_p']:.3g}).</p>" + note
    )


def outsiders_text(check: dict[str, Any]) -> str:
    """One sentence on the outsiders that set the threshold; '' when none did."""
    s = check.get("sharpened")
    if not s:
        return ""
    return (
        f"<p>{s['outsiders']} photos of no class (outsiders) set this threshold, from {s['before']:.3f} to "
        f"{s['threshold']:.3f}: it flags {s['outsiders_flagged']} of them ({s['outsiders_flagged_before']} before) "
        f"and accepts {s['known_accepted']:.1%} of the known photos. These are the photos it was set with, so "
        "the share it flags of new outsiders will be lower; <code>photoclass evaluate RUN --outsiders DIR</code> "
        "measures it on others.</p>"
    )
