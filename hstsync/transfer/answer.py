"""What a range's request asks (:func:`asked`) and what its answer means for the range
(:func:`judge`): pure, tested without a server.

:func:`judge` reads a response's status and headers against the range asked for and
the file's :class:`~hstsync.transfer.work.Work`: where the body goes, or that the range
is already complete, or why the answer cannot be used (:func:`body_start`'s failures:
refusals, retry-later, an HTML page; :class:`~hstsync.errors.RangesRefused` for an
answer that is not the range asked for or not of the same file; :class:`LengthDiffers`
for another length). It updates the work with what the answer says of the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

from hstsync.errors import RangesRefused, TransferError
from hstsync.transfer.http import body_start, html_instead, server_total, validator_of
from hstsync.transfer.work import OPEN, Segment, Work


class LengthDiffers(RangesRefused):
    """An answer states another length than the one the ranges were cut for: the file
    changed on the server, or (cut at the catalogue's size, before any answer) the
    catalogue was wrong."""

    def __init__(self, expected: int, total: int) -> None:
        super().__init__(f"the file's length changed on the server ({expected} bytes, now {total})")
        self.total = total


def asked(headers: Mapping[str, str], segment: Segment, work: Work) -> dict[str, str]:
    """The headers of a request for what is left of ``segment``: a plain GET for the
    whole file; a ``Range`` for anything else (open at the end when it runs to the
    file's end, as ``curl -C`` asks), and for every range of a file cut at its catalogue
    size before any answer; ``If-Range`` with the validator the bytes held came from
    (the server then sends the whole file, 200, if it changed since)."""
    sent = {**headers, "Accept-Encoding": "identity"}
    whole = segment.position == 0 and segment.end == (OPEN if work.size is None else work.size)
    if work.guessed or not whole:
        last = "" if segment.end == work.size else segment.last
        sent["Range"] = f"bytes={segment.position}-{last}"
        if work.validator:
            sent["If-Range"] = work.validator
    return sent


def judge(
    status: int,
    headers: Mapping[str, str],
    segment: Segment,
    work: Work,
    *,
    ranged: bool,
    filename: str,
    public: bool,
) -> int | None:
    """Where an answer's body goes in the file (None: the range is already complete).

    Raises for answers that end or delay the transfer (:func:`body_start`),
    :class:`RangesRefused` for one that is not the range asked for, of this file, and
    :class:`LengthDiffers` for another length than the work's. Updates the work with
    what the answer says of the file (length, validator, whether it takes ranges).
    """
    known = None if work.guessed else work.size
    start = body_start(status, headers, segment.position, known, public=public)
    if status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
        total = server_total(status, headers, segment.position)
        if start is None or segment.end not in (OPEN, start):
            raise RangesRefused(f"the server answered bytes {segment.position}- with 416")
        work.learn_size(start if total is None else total)
        return None
    if start is None or (status == HTTPStatus.OK and ranged):
        raise RangesRefused(
            f"the server answered a request for bytes {segment.position}-{segment.last} "
            f"with {status}"
        )
    why = html_instead(headers.get("Content-Type"), filename)
    if why is not None:
        raise TransferError(f"{why} (HTTP {status})")
    total = server_total(status, headers, start)
    if total is not None and work.size is not None and total != work.size:
        raise LengthDiffers(work.size, total)
    if work.validator and not _same_origin(work.validator, headers):
        raise RangesRefused("the file changed on the server during the transfer")
    work.validator = validator_of(headers) or work.validator
    work.etag = headers.get("ETag") or work.etag
    work.last_modified = headers.get("Last-Modified") or work.last_modified
    if status == HTTPStatus.PARTIAL_CONTENT or headers.get("Accept-Ranges", "").lower() == "bytes":
        work.ranges_taken = True
    if total is not None and (work.size is None or work.guessed):
        work.learn_size(total)
    return start


def _same_origin(validator: str, headers: Mapping[str, str]) -> bool:
    """Whether an answer comes from the file ``validator`` names: an ETag is compared with
    the answer's ETag, a date with its Last-Modified (an answer without one says nothing
    against it)."""
    kind = "ETag" if validator.startswith(('"', 'W/"')) else "Last-Modified"
    theirs = headers.get(kind)
    return theirs is None or theirs == validator
