"""``hstsync verify`` and ``hstsync prune``: is the mirror still the archive, and the
files it no longer lists moved to the attic."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from hstsync.cli.exits import EXIT_INCOMPLETE, EXIT_OK

if TYPE_CHECKING:
    from hstsync.config import Config
    from hstsync.service.sync import Report

#: how each verdict reads in the summary, as rclone check words its counts
_WORDS = {
    "same": "the same as the archive's",
    "changed": "changed on the archive",
    "missing": "missing here",
    "damaged": "damaged here",
    "withdrawn": "withdrawn: no longer listed; the file stays (`hstsync prune` moves it)",
    "unchecked": "could not be checked",
    "not mirrored": "listed but not mirrored (see `hstsync status`)",
}
_AGAIN = {"changed": "the old version", "damaged": "the damaged copy"}


def cmd_verify(config: Config, request: str | None, *, dry_run: bool, as_json: bool) -> int:
    from hstsync.service.daemon import stoppable, verify_once

    reports = asyncio.run(stoppable(lambda: verify_once(config, request, dry_run=dry_run)))
    true = all(report.true for report in reports.values())
    if as_json:
        doc = {
            "true": true,
            "dry_run": dry_run,
            "requests": [_document(name, report) for name, report in reports.items()],
        }
        print(json.dumps(doc, indent=2))
    else:
        for name, report in reports.items():
            _print_summary(name, report, dry_run=dry_run)
        verdict = (
            "every listed file is the archive's" if true else "some files are not the archive's"
        )
        print(f"verify: {verdict}")
    return EXIT_OK if true else EXIT_INCOMPLETE


def _document(name: str, report: Report) -> dict[str, Any]:
    return {
        "name": name,
        "true": report.true,
        "counts": dict(report.counts),
        "files": [
            {
                "path": f.path,
                "data_uri": f.data_uri,
                "verdict": str(f.found),
                "reason": f.reason,
                "refetched": f.refetched,
                "error": f.error,
            }
            for f in report.findings
        ],
    }


def _print_summary(name: str, report: Report, *, dry_run: bool) -> None:
    from hstsync.text import printable

    counts = report.counts
    print(f"request {printable(name)}: {len(report.findings)} file(s)")
    for verdict, words in _WORDS.items():
        n = counts.get(verdict, 0)
        if not n:
            continue
        again = ""
        if verdict in ("changed", "missing", "damaged"):
            fetched = sum(1 for f in report.findings if str(f.found) == verdict and f.refetched)
            if dry_run:
                again = " (not fetched: --dry-run)"
            elif verdict in _AGAIN:
                again = f" ({fetched} fetched again; {_AGAIN[verdict]} in the attic)"
            else:
                again = f" ({fetched} fetched again)"
        print(f"  {n:6d} {words}{again}")
    for f in report.findings:
        if not f.true:
            why = f.error or f.reason or str(f.found)
            print(f"  {printable(f.path or f.data_uri)}: {printable(why)}", file=sys.stderr)


def cmd_prune(config: Config, request: str | None, *, dry_run: bool) -> int:
    from hstsync.service.daemon import prune_once

    pruned = prune_once(config, request, dry_run=dry_run)
    verb = "would move" if dry_run else "moved"
    for source, target in pruned.moved:
        print(f"{verb} {source} -> {target}")
    for kept in pruned.kept:
        print(f"kept {kept}: another request lists it")
    print(f"prune: {len(pruned.moved)} file(s) {verb} to the attic")
    return EXIT_OK
