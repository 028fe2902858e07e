"""The whole-file stream: one GET, from zero or from a Range offset, into a plain part.

:class:`Stream` sends one request for a file (``Range`` and ``If-Range`` when it
resumes a part whose origin is known), reads what the answer means
(:func:`~hstsync.transfer.http.body_start`: resume, start again, refusal, an HTML page
instead of the file) and writes the body after the bytes already held, saving the
answer's validator in the ``.part.meta`` sidecar before any byte of a fresh part. It
returns once the part holds every byte the server stated — or, when none was stated,
a chunked body that ended cleanly (or the catalogue's size) — and otherwise says why
to start from zero or raises a :class:`~hstsync.errors.TransferError` for the retry
policy. A fresh whole-file answer from a server that takes ranges, for a file larger
than ``segment_min``, is handed to the caller's ``to_segments`` as the first segment
of a segmented transfer. Resuming, retrying and finishing are the caller's.

A small file (a whole-file answer of at most :data:`SMALL_BODY` stated bytes) takes the
plainest way: its body is held in memory (``Progress.body``) and written, verified,
fsynced and renamed by :func:`~hstsync.transfer.finish.finish` in one go, so no part
of it exists before it is complete and no validator sidecar is needed. A body cut
short is written to the part with its validator as any other, so the next attempt
resumes it with ``Range``; the part an earlier run left stays, with its own
validator, until the new body is complete.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from pathlib import Path

import aiohttp

from hstsync.config import DownloadConfig
from hstsync.errors import Refused, TooSlow, TransferError
from hstsync.transfer.budget import ConnectionBudget, Expected, host_of
from hstsync.transfer.http import (
    CHUNK_SIZE,
    body_start,
    get,
    html_instead,
    is_chunked,
    network_error,
    server_total,
    speed_floor,
    validator_of,
)
from hstsync.transfer.outcome import OnProgress, Progress, Transfer
from hstsync.transfer.partfile import disk_error, open_part, write_meta
from hstsync.transfer.ranges import should_segment, worth_segmenting
from hstsync.transfer.work import Work

log = logging.getLogger(__name__)

#: a whole-file answer of at most this many stated bytes is received in memory
SMALL_BODY = 1 << 20

#: (transfer, part, progress, work, the open whole-file answer, bytes held, expected):
#: fetch the file as segments, the answer streaming the first one
ToSegments = Callable[
    [Transfer, Path, Progress, Work, aiohttp.ClientResponse, int, Expected],
    Awaitable[None],
]


class Stream:
    """Whole-file requests on a shared session, each holding a connection its caller took.

    ``report(transfer, delta)`` follows the bytes held in the part; ``to_segments``
    takes over a fresh answer worth segmenting; ``trusted`` are the host patterns
    credential headers may go to (None: each transfer's own host).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        cfg: DownloadConfig,
        budget: ConnectionBudget,
        *,
        report: OnProgress,
        to_segments: ToSegments,
        trusted: Sequence[str] | None = None,
    ) -> None:
        self._session = session
        self._cfg = cfg
        self._budget = budget
        self._report = report
        self._to_segments = to_segments
        self._trusted = trusted

    async def exchange(
        self,
        transfer: Transfer,
        part: Path,
        progress: Progress,
        offset: int,
        held: int,
        *,
        segments: bool = True,
    ) -> str | None:
        """One request. None when the part holds every byte; else why to start from zero.

        A fresh whole-file answer from a server that takes ranges, for a file larger
        than ``segment_min``, becomes the first segment of a segmented transfer.
        """
        headers = {**transfer.headers, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if progress.validator:
                # the server sends the whole file (200) if it changed since we saw it
                headers["If-Range"] = progress.validator
        # a file that may be segmented holds spare connections back for its answer;
        # of unknown size, it is one stream (no segmenting on a guess)
        expected = (
            self._budget.expect(host_of(transfer.url), transfer.size)
            if segments
            and offset == 0
            and transfer.size is not None
            and worth_segmenting(transfer.size, self._cfg.segment_min)
            else None
        )
        known = progress.total if progress.total is not None else transfer.size
        try:
            async with get(self._session, transfer.url, headers, self._trusted) as resp:
                start = body_start(resp.status, resp.headers, offset, known, public=transfer.public)
                if start == 0 and offset:
                    log.info("%s: the server sent the whole file", transfer.label)
                if start is None:
                    return f"the server answered a request from byte {offset} with {resp.status}"
                if resp.status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
                    # the part already holds every byte the server has
                    progress.total = offset
                    if progress.attempts == 1:
                        progress.resumed_from = offset
                    return None
                why = html_instead(resp.headers.get("Content-Type"), transfer.dest.name)
                if why is not None:
                    raise TransferError(f"{why} (HTTP {resp.status})")
                total = server_total(resp.status, resp.headers, start)
                if start == 0:
                    progress.total = total
                    progress.validator = validator_of(resp)
                else:
                    progress.total = total if total is not None else progress.total
                    progress.validator = validator_of(resp) or progress.validator
                progress.answered = True
                if (
                    expected is not None
                    and resp.status == HTTPStatus.OK
                    and progress.total is not None
                    and should_segment(
                        progress.total, self._cfg.segment_min, resp.headers.get("Accept-Ranges")
                    )
                ):
                    work = Work(progress.total, (), progress.validator)
                    await self._to_segments(transfer, part, progress, work, resp, held, expected)
                    return None
                if expected is not None:
                    expected.close()  # one stream: the spare connections are for others
                if start == 0 and progress.total is not None and progress.total <= SMALL_BODY:
                    await self._receive_small(resp, transfer, part, progress, held)
                else:
                    await self._receive(resp, transfer, part, progress, start, held)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise TransferError(network_error(exc, transfer.url, self._cfg)) from None
        finally:
            if expected is not None:
                expected.close()
        return None

    async def _receive(
        self,
        resp: aiohttp.ClientResponse,
        transfer: Transfer,
        part: Path,
        progress: Progress,
        start: int,
        held: int,
    ) -> None:
        """Stream the body into the part from ``start``; return once it holds every byte.

        Every byte: as many as the server stated (Content-Length, Content-Range), or,
        when it stated none, a chunked body that ended cleanly (aiohttp raises on a cut
        one). A body without a length and without chunking ends like a cut connection,
        so it is taken only at the catalogue's size.
        """
        if progress.attempts == 1 and start:
            progress.resumed_from = start
        position = start
        total = progress.total
        of = f" of {total}" if total is not None else ""
        try:
            # written synchronously: 1 MiB writes to a local disk do not stall the loop
            # long, and the file closes (holding exactly what was written) on cancel.
            with open_part(part, append=bool(start)) as fh:
                if not start:
                    # after the truncation, before any byte: the part and its origin
                    write_meta(part, progress.validator)
                if held > start:
                    self._report(transfer, start - held)
                try:
                    async with speed_floor(self._cfg) as count:
                        async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
                            if total is not None and position + len(chunk) > total:
                                raise TransferError(
                                    f"the server sent more than the {total} bytes it stated"
                                )
                            fh.write(chunk)
                            position += len(chunk)
                            progress.fetched += len(chunk)
                            self._report(transfer, len(chunk))
                            count(len(chunk))
                except TooSlow as exc:
                    raise TooSlow(f"{exc} after {position}{of} bytes") from None
                except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                    reason = network_error(exc, transfer.url, self._cfg)
                    raise TransferError(f"{reason} after {position}{of} bytes") from None
        except OSError as exc:
            raise Refused(disk_error(exc, "writing", part)) from None
        if total is not None:
            if position < total:
                raise TransferError(f"the body ended after {position} of {total} bytes")
            return
        if not is_chunked(resp.headers) and position != transfer.size:
            raise TransferError(
                f"the body ended after {position} bytes with no length stated and not "
                "chunked: cannot tell it from a cut connection"
            )
        progress.total = position

    async def _receive_small(
        self,
        resp: aiohttp.ClientResponse,
        transfer: Transfer,
        part: Path,
        progress: Progress,
        held: int,
    ) -> None:
        """A small file's whole body into ``progress.body``; every stated byte or a
        :class:`TransferError` (the bytes that came then written to the part, with their
        validator, for a resume)."""
        total = progress.total
        assert total is not None
        if held:
            self._report(transfer, -held)  # the part left before is replaced
        chunks: list[bytes] = []
        position = 0
        try:
            async with speed_floor(self._cfg) as count:
                async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
                    if position + len(chunk) > total:
                        raise TransferError(
                            f"the server sent more than the {total} bytes it stated"
                        )
                    chunks.append(chunk)
                    position += len(chunk)
                    progress.fetched += len(chunk)
                    self._report(transfer, len(chunk))
                    count(len(chunk))
            if position < total:
                raise TransferError(f"the body ended after {position} of {total} bytes")
        except TooSlow as exc:
            self._keep(part, progress, chunks)
            raise TooSlow(f"{exc} after {position} of {total} bytes") from None
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            self._keep(part, progress, chunks)
            reason = network_error(exc, transfer.url, self._cfg)
            raise TransferError(f"{reason} after {position} of {total} bytes") from None
        except TransferError:
            self._keep(part, progress, chunks)
            raise
        progress.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    def _keep(part: Path, progress: Progress, chunks: list[bytes]) -> None:
        """The bytes of a cut small body on disk, as :meth:`_receive` would hold them:
        the part from zero, its validator saved before any byte."""
        try:
            with open_part(part, append=False) as fh:
                write_meta(part, progress.validator)
                for chunk in chunks:
                    fh.write(chunk)
        except OSError as exc:
            raise Refused(disk_error(exc, "writing", part)) from None
