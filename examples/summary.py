"""The text both example hooks send: a short summary of one pass (stdlib only)."""

from __future__ import annotations

from typing import Any


def size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def subject(doc: dict[str, Any]) -> str:
    new = doc.get("new_file_count", len(doc["new_files"]))
    failed = doc.get("failure_count", len(doc["failures"]))
    parts = []
    if new:
        parts.append(f"{new} new file(s)")
    if failed:
        parts.append(f"{failed} failure(s)")
    return f"hstsync: request {doc['request']} ({doc['state']}): {', '.join(parts)}"


def body(doc: dict[str, Any], limit: int = 50) -> str:
    lines = [subject(doc), ""]
    lines.append(f"proposal(s): {', '.join(doc.get('proposal_ids', []))}")
    lines.append(f"mirror: {doc.get('mirror', '')}   pass finished: {doc.get('finished', '')}")
    if doc["new_files"]:
        total = doc.get("new_bytes", sum(f["size"] for f in doc["new_files"]))
        lines += ["", f"new files ({size(total)}):"]
        lines += [f"  {f['path']}  {size(f['size'])}" for f in doc["new_files"][:limit]]
        more = doc.get("new_file_count", len(doc["new_files"])) - limit
        if more > 0:
            lines.append(f"  ... and {more} more")
    if doc["failures"]:
        lines += ["", "failures:"]
        for f in doc["failures"][:limit]:
            what = f.get("path") or f.get("data_uri") or "the request"
            lines.append(f"  {what}: {f['reason']}")
        more = doc.get("failure_count", len(doc["failures"])) - limit
        if more > 0:
            lines.append(f"  ... and {more} more")
    lines += ["", f"details: hstsync status {doc['request']}"]
    return "\n".join(lines) + "\n"
