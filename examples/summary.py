"""The text both example hooks send: a short summary of one pass, or of another event
worth a person's attention (a manifest set aside, lookups that keep failing, a MAST
token refused or about to expire). Stdlib only."""

from __future__ import annotations

from typing import Any


def size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


#: what each event that is not a pass's report says, for the subject line
EVENTS = {
    "manifest_set_aside": "manifest set aside",
    "lookups_failing": "lookups keep failing",
    "token_refused": "the archive refuses the MAST token",
    "token_expired": "the MAST token has expired",
    "token_expiring": "the MAST token expires soon",
}


#: the lists of files a pass found not as they were, and how the summary words each
REPLACED = (
    ("changed", "changed (a new version)"),
    ("damaged", "damaged (fetched again)"),
    ("withdrawn", "withdrawn (no longer listed)"),
)


def subject(doc: dict[str, Any]) -> str:
    event = doc.get("event", "pass")
    if event != "pass":
        what = EVENTS.get(event, event)
        about = f"request {doc['request']}: " if doc.get("request") else ""
        return f"hstsync: {about}{what}"
    new = doc.get("new_file_count", len(doc["new_files"]))
    failed = doc.get("failure_count", len(doc["failures"]))
    parts = []
    if new:
        parts.append(f"{new} new file(s)")
    for key, word in REPLACED:
        if doc.get(key):
            parts.append(f"{len(doc[key])} {word}")
    if failed:
        parts.append(f"{failed} failure(s)")
    return f"hstsync: request {doc['request']} ({doc['state']}): {', '.join(parts)}"


def body(doc: dict[str, Any], limit: int = 50) -> str:
    if doc.get("event", "pass") != "pass":
        return event_body(doc)
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
    for key, word in REPLACED:
        if doc.get(key):
            lines += ["", f"{word}:"]
            for f in doc[key][:limit]:
                where = f.get("path") or f.get("data_uri")
                sizes = ""
                if f.get("old_size") is not None and f.get("new_size") is not None:
                    sizes = f"  {size(f['old_size'])} -> {size(f['new_size'])}"
                lines.append(f"  {where}{sizes}")
                if f.get("attic"):
                    lines.append(f"    old copy: {f['attic']}")
            if len(doc[key]) > limit:
                lines.append(f"  ... and {len(doc[key]) - limit} more")
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


def event_body(doc: dict[str, Any]) -> str:
    lines = [subject(doc), "", doc.get("reason", "")]
    for key in ("manifest", "failures", "next_lookup", "expires", "source"):
        if doc.get(key) is not None:
            lines.append(f"{key.replace('_', ' ')}: {doc[key]}")
    lines += ["", f"at: {doc.get('at', '')}"]
    if doc.get("request"):
        lines.append(f"details: hstsync status {doc['request']}")
    return "\n".join(lines) + "\n"
