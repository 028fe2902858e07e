"""A body into its range: written at the range's offsets as it streams, until the range's
(moving) end, and every byte of it or a :class:`~hstsync.errors.TransferError` saying
where it stopped.

A range's end moves down while it streams when another connection takes its tail; a
range that runs to the file's end may not receive more than the length stated. A body
without a stated length ends the file where it ends, if the end is marked (chunked) or
is the catalogue's size; otherwise it cannot be told from a cut connection. The pace of
the bytes (first byte, then bytes/s) is fed to the work, which cuts by it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp

from hstsync.errors import TooSlow, TransferError
from hstsync.transfer.http import CHUNK_SIZE, is_chunked, network_error, speed_floor
from hstsync.transfer.outcome import Transfer
from hstsync.transfer.partfile import PartFile

if TYPE_CHECKING:
    from hstsync.transfer.fetch import Link
from hstsync.transfer.work import OPEN, Segment, Work

#: how long a connection must have been carrying bytes before its rate is believed
#: (seconds): a server's first chunk often comes in one burst
RATE_WINDOW = 0.05


async def receive(
    resp: aiohttp.ClientResponse,
    segment: Segment,
    part: PartFile,
    work: Work,
    transfer: Transfer,
    link: Link,
    tick: Callable[[], None],
) -> None:
    """Write ``resp``'s body at ``segment``'s offsets; ``tick()`` after each chunk. Each
    chunk's bytes are spent from the process's bandwidth before the next is read."""
    cfg, bandwidth = link.cfg, link.bandwidth
    loop = asyncio.get_running_loop()
    began: float | None = None  # when the first chunk came: the pace is timed after it
    carried = 0
    try:
        async with speed_floor(cfg) as count:
            async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
                now = loop.time()
                if began is None:
                    began = now
                else:
                    carried += len(chunk)
                    if now - began >= RATE_WINDOW:
                        work.observe_rate(carried / (now - began))
                # the end moves down when another connection takes the range's tail
                n = min(len(chunk), segment.end - segment.position)
                if n < len(chunk) and segment.end == work.size:
                    raise TransferError(
                        f"the server sent more than the {work.size} bytes it stated"
                    )
                part.write(segment.position, memoryview(chunk)[:n])
                segment.position += n
                count(n)
                if bandwidth.limited:
                    await bandwidth.spend(n)
                if segment.position >= segment.end:
                    break
                tick()
    except TooSlow as exc:
        raise TooSlow(f"{exc} {where(segment, work)}") from None
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        reason = network_error(exc, transfer.url, cfg)
        raise TransferError(f"{reason} {where(segment, work)}") from None
    if segment.end == OPEN:  # no length was stated: where did the body end?
        if not is_chunked(resp.headers) and segment.position != transfer.size:
            raise TransferError(
                f"the body ended after {segment.position} bytes with no length stated "
                "and not chunked: cannot tell it from a cut connection"
            )
        work.learn_size(segment.position)
    elif segment.position < segment.end:
        raise TransferError(f"the body ended {where(segment, work)}")


def where(segment: Segment, work: Work) -> str:
    """Where a body stopped, for its error: ``after N of M bytes`` for a whole file,
    ``at byte N of range A-B`` for a piece."""
    size = work.size
    if segment.start == 0 and segment.end in (OPEN, size):
        return f"after {segment.position}" + (f" of {size} bytes" if size else " bytes")
    return f"at byte {segment.position} of range {segment.start}-{segment.last}"
