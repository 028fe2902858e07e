"""What a pass hands its fetcher: the jobs (a product, where it goes, what is held),
their bounded feed, where a product is downloaded from, and the progress protocol the
terminal draws."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from hstsync.model import Product

DOWNLOAD_PATH = "/api/v0.1/Download/file"


class PassProgress(Protocol):
    """What a pass reports as it goes; the CLI draws it (``cli.progress``), the daemon does not."""

    def planned(self, request: str, files: int, size: int, held: int = 0) -> None: ...

    def advanced(self, request: str, delta: int) -> None: ...

    def file_done(self, request: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Job:
    """A product row that needs a transfer in this pass, with where it goes."""

    request: str
    product: Product
    dest: Path
    #: the bytes its ``.part`` held when the pass planned it, where its progress starts
    #: (the plan has just looked; a second look per file was a good part of its cost)
    held: int = 0
    #: where the file now under its final name goes when the new one lands (the attic):
    #: a new version of it, or a damaged copy; None: a file in place is kept as it is
    old_to: Path | None = None
    #: why it is fetched again (``old_to``), for the hook
    why: str | None = None


class JobFeed:
    """The jobs of a pass on their way to :meth:`Fetcher.fetch_feed`'s workers: a
    bounded queue, closed by its filler when there will be no more."""

    def __init__(self, concurrency: int) -> None:
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue(max(2 * concurrency, 1))
        #: how many workers take from it (one end-of-feed mark each)
        self.workers = concurrency

    async def put(self, job: Job) -> None:
        await self._queue.put(job)

    async def get(self) -> Job | None:
        return await self._queue.get()

    async def close(self) -> None:
        """No more jobs: each worker finishes what it has and stops."""
        for _ in range(self.workers):
            await self._queue.put(None)


def download_url(server: str, data_uri: str) -> str:
    # astroquery's own form (download_file): quote everything but ':' and '/'.
    return f"{server}{DOWNLOAD_PATH}?uri={quote(data_uri, safe=':/')}"
