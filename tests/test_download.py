"""One file's transfer against the bundled MAST emulator: resume, retries, verification.

Every test checks the bytes on disk against the exact body the emulator serves, and
what went over the wire against ``emu.requests``. Waits between attempts go through a
recording ``sleep``, so retry timing is asserted on the waits asked for, not the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import resource
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import Naps, small_disk

from hstsync.config import DownloadConfig
from hstsync.emulator import Emulator, Fault, FaultKind
from hstsync.errors import AuthRequiredError, HstsyncError, Refused, TransferError
from hstsync.model import ProductState
from hstsync.transfer import Downloader, Outcome, Transfer, open_session, part_path
from hstsync.transfer.control import Control, control_path, write_control
from hstsync.transfer.disk import disk_failure
from hstsync.transfer.http import (
    RETRY_AFTER_CAP,
    body_start,
    parse_content_range,
    retry_after_seconds,
)

X1D = "o58701010_x1d.fits"
X2D = "o58701010_x2d.fits"
FLT = "o58701010_flt.fits"
SIZES = {X1D: 77760, X2D: 14474880, FLT: 10535040}
SECRET = "s3cret-token-value"

# one request per file: these tests are about a single stream (segments: test_segments.py)
CFG = DownloadConfig(
    concurrency=4, retries=3, timeout=1.0, backoff=0.01, backoff_max=0.05, segment_min=0
)


class Harness:
    """The emulator, a session and a downloader writing under ``root``."""

    def __init__(self, emu: Emulator, session: aiohttp.ClientSession, root: Path) -> None:
        self.emu = emu
        self.session = session
        self.naps = Naps()
        self.root = root
        self.deltas: list[int] = []
        self.downloader = Downloader(
            session, CFG, sleep=self.naps, on_progress=lambda _, d: self.deltas.append(d)
        )

    def transfer(self, name: str, *, size: int | None = None, token: bool = False) -> Transfer:
        return Transfer(
            url=f"{self.emu.url}/api/v0.1/Download/file?uri=mast:HST/product/{name}",
            dest=self.root / "mastDownload" / "HST" / name[:9] / name,
            size=SIZES[name] if size is None else size,
            label=f"test:{name}",
            headers={"Authorization": f"token {SECRET}"} if token else {},
        )

    async def fetch(self, name: str, **kwargs: Any) -> Outcome:
        return await self.downloader.fetch(self.transfer(name, **kwargs))

    def body(self, name: str) -> bytes:
        return self.emu.body(f"mast:HST/product/{name}")

    def gets(self, name: str) -> list[Any]:
        return [r for r in self.emu.requests if r.method == "GET" and name in str(r.query)]


def header(request: Any, name: str) -> str | None:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return str(value)
    return None


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Emulator() as emu, open_session(CFG) as session:
        yield Harness(emu, session, tmp_path)


def write_part(
    h: Harness, name: str, data: bytes, *, validated: bool = True, legacy: bool = False
) -> Path:
    """A part left by an earlier run, with the validator of the answer it came from
    (the emulator's Last-Modified) in its control file, unless ``validated`` is False;
    ``legacy``: as the previous version left it, the validator in ``FILE.part.meta``."""
    part = part_path(h.transfer(name).dest)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data)
    if validated:
        product = h.emu.catalogue.product(f"mast:HST/product/{name}")
        assert product is not None
        validator = formatdate(product.modified, usegmt=True)
        if legacy:
            meta = part.with_name(part.name + ".meta")
            meta.write_text(json.dumps({"format": 1, "validator": validator}))
        else:
            write_control(part, Control(None, validator, ((0, len(data)),) if data else ()))
    return part


def counted(outcome: Outcome) -> Outcome:
    """The outcome's state and counters, without the hash and validators of the answer."""
    return dataclasses.replace(outcome, sha256=None, etag=None, last_modified=None)


# -- the plain cases --------------------------------------------------------------------


async def test_plain_download_is_byte_identical(h: Harness) -> None:
    outcome = await h.fetch(X2D)

    assert counted(outcome) == Outcome(ProductState.DONE, SIZES[X2D], 0, 1, None, SIZES[X2D])
    dest = h.transfer(X2D).dest
    assert dest.read_bytes() == h.body(X2D)
    # the hash of the bytes landed, taken as they streamed; the answer's validators
    assert outcome.sha256 == hashlib.sha256(h.body(X2D)).hexdigest()
    assert (outcome.etag or "").startswith('"') and outcome.last_modified
    assert not part_path(dest).exists()
    assert sum(h.deltas) == SIZES[X2D]
    [request] = h.gets(X2D)
    assert header(request, "Range") is None
    assert header(request, "Accept-Encoding") == "identity"


async def test_file_already_present_is_not_requested(h: Harness) -> None:
    dest = h.transfer(X1D).dest
    dest.parent.mkdir(parents=True)
    dest.write_bytes(h.body(X1D))

    outcome = await h.fetch(X1D)

    assert outcome == Outcome(ProductState.DONE, 0, 0, 0, None, SIZES[X1D])
    assert h.gets(X1D) == []


@pytest.mark.parametrize("legacy", [False, True], ids=["control", "previous-version"])
async def test_file_already_present_loses_a_control_file_left_by_a_kill(
    h: Harness, legacy: bool
) -> None:
    # killed after the part became the file and before its control file went (commit)
    dest = h.transfer(X1D).dest
    write_part(h, X1D, h.body(X1D), legacy=legacy).rename(dest)
    assert len(list(dest.parent.iterdir())) == 2

    outcome = await h.fetch(X1D)

    assert counted(outcome) == Outcome(ProductState.DONE, 0, 0, 0, None, SIZES[X1D])
    assert sorted(p.name for p in dest.parent.iterdir()) == [X1D]
    assert h.gets(X1D) == []


# -- resume -----------------------------------------------------------------------------


async def test_resume_after_reset_is_byte_identical(h: Harness) -> None:
    size = SIZES[X2D]
    h.emu.faults.add(Fault(FaultKind.RESET, match=X2D, after=5_000_000, times=1))

    outcome = await h.fetch(X2D)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    assert h.transfer(X2D).dest.read_bytes() == h.body(X2D)
    first, second = h.gets(X2D)
    assert header(first, "Range") is None
    # the resume is conditional on the file being the one the first answer came from
    # (the strong ETag of the first answer)
    assert (header(second, "If-Range") or "").startswith('"')
    resumed_at = int((header(second, "Range") or "").removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= 5_000_000
    assert outcome.fetched == size
    assert sum(r.body_bytes_sent for r in (first, second)) < 2 * size


@pytest.mark.parametrize("legacy", [False, True], ids=["control", "previous-version"])
async def test_existing_part_resumes_with_range(h: Harness, legacy: bool) -> None:
    size, half = SIZES[FLT], SIZES[FLT] // 2
    part = write_part(h, FLT, h.body(FLT)[:half], legacy=legacy)

    outcome = await h.fetch(FLT)

    assert counted(outcome) == Outcome(ProductState.DONE, size - half, half, 1, None, size)
    assert h.transfer(FLT).dest.read_bytes() == h.body(FLT)
    [request] = h.gets(FLT)
    assert header(request, "Range") == f"bytes={half}-"
    # the whole file's hash, although half of it came from the part
    assert outcome.sha256 == hashlib.sha256(h.body(FLT)).hexdigest()
    assert sorted(p.name for p in part.parent.iterdir()) == [FLT]


async def test_complete_part_of_the_previous_version_is_finished_without_a_body(
    h: Harness,
) -> None:
    write_part(h, X1D, h.body(X1D), legacy=True)

    outcome = await h.fetch(X1D)

    # Range: bytes=77760- is answered 416 with Content-Range: bytes */77760
    assert counted(outcome) == Outcome(ProductState.DONE, 0, SIZES[X1D], 1, None, SIZES[X1D])
    assert h.transfer(X1D).dest.read_bytes() == h.body(X1D)
    assert header(h.gets(X1D)[0], "Range") == f"bytes={SIZES[X1D]}-"


async def test_complete_part_is_finished_without_a_request(h: Harness) -> None:
    part = part_path(h.transfer(X1D).dest)
    part.parent.mkdir(parents=True)
    part.write_bytes(h.body(X1D))
    write_control(part, Control(SIZES[X1D], '"v"', ((0, SIZES[X1D]),)))

    outcome = await h.fetch(X1D)

    assert counted(outcome) == Outcome(ProductState.DONE, 0, SIZES[X1D], 1, None, SIZES[X1D])
    assert h.transfer(X1D).dest.read_bytes() == h.body(X1D)
    assert h.gets(X1D) == [] and not control_path(part).exists()


async def test_part_larger_than_the_file_starts_over(h: Harness) -> None:
    write_part(h, X1D, b"x" * (SIZES[X1D] + 10), validated=False)

    outcome = await h.fetch(X1D)

    assert outcome.state is ProductState.DONE and outcome.resumed_from == 0
    assert h.transfer(X1D).dest.read_bytes() == h.body(X1D)
    assert header(h.gets(X1D)[0], "Range") is None


async def test_server_ignoring_range_restarts_from_zero(h: Harness) -> None:
    size, half = SIZES[FLT], SIZES[FLT] // 2
    # garbage in the part: appending a whole body to it would show, so would keeping it
    write_part(h, FLT, b"\0" * half)
    h.emu.faults.add(Fault(FaultKind.IGNORE_RANGE, match=FLT, times=None))

    outcome = await h.fetch(FLT)

    assert outcome.state is ProductState.DONE
    assert (outcome.fetched, outcome.resumed_from) == (size, 0)
    assert h.transfer(FLT).dest.read_bytes() == h.body(FLT)
    # progress follows the part: the discarded half counts back down
    assert sum(h.deltas) == size - half


# -- retries ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_is_a_lower_bound_for_the_wait(h: Harness, status: int) -> None:
    h.emu.faults.add(Fault(FaultKind.STATUS, match=X1D, status=status, retry_after=1, times=1))

    outcome = await h.fetch(X1D)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    # the backoff alone would wait at most backoff_max (0.05 s)
    assert len(h.naps.waits) == 1 and h.naps.waits[0] >= 1.0
    assert h.transfer(X1D).dest.read_bytes() == h.body(X1D)


async def test_backoff_grows_and_is_capped(h: Harness) -> None:
    h.emu.faults.add(Fault(FaultKind.STATUS, match=X1D, status=500, times=None))

    await h.fetch(X1D)

    assert len(h.naps.waits) == CFG.retries
    assert all(0 < w <= CFG.backoff_max for w in h.naps.waits)


async def test_retries_exhausted_fail_without_a_final_file(h: Harness) -> None:
    h.emu.faults.add(Fault(FaultKind.STATUS, match=X1D, status=500, times=None))

    outcome = await h.fetch(X1D)

    assert outcome.state is ProductState.FAILED
    assert outcome.attempts == CFG.retries + 1 == len(h.gets(X1D))
    assert outcome.error is not None and "500" in outcome.error
    assert not h.transfer(X1D).dest.exists()


async def test_short_body_is_retried_and_completed(h: Harness) -> None:
    h.emu.faults.add(Fault(FaultKind.SHORT_BODY, match=X2D, after=5_000_000, times=1))

    outcome = await h.fetch(X2D)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    assert h.transfer(X2D).dest.read_bytes() == h.body(X2D)
    assert header(h.gets(X2D)[1], "Range") is not None


async def test_stall_longer_than_timeout_is_retried(h: Harness) -> None:
    h.emu.faults.add(
        Fault(FaultKind.STALL, match=X2D, after=2_000_000, delay=CFG.timeout * 3, times=1)
    )

    outcome = await h.fetch(X2D)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    assert h.transfer(X2D).dest.read_bytes() == h.body(X2D)


async def test_slow_first_byte_longer_than_timeout_is_retried(h: Harness) -> None:
    h.emu.faults.add(Fault(FaultKind.SLOW_FIRST_BYTE, match=X1D, delay=CFG.timeout * 3))

    outcome = await h.fetch(X1D)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    assert h.transfer(X1D).dest.read_bytes() == h.body(X1D)


# -- failures that are not retried ------------------------------------------------------


async def test_server_longer_than_the_catalogue_wins_and_the_difference_is_noted(
    h: Harness,
) -> None:
    h.emu.faults.add(Fault(FaultKind.WRONG_SIZE, match=X1D, after=10, times=None))
    # a part of unknown origin (no saved validator): fetched again from zero
    write_part(h, X1D, h.body(X1D)[:1000], validated=False)

    outcome = await h.fetch(X1D)

    served = SIZES[X1D] + 10
    assert outcome.state is ProductState.DONE and outcome.attempts == 1
    assert outcome.size == served
    assert outcome.size_note == f"catalogue says {SIZES[X1D]:,} bytes, the server sent {served:,}"
    data = h.transfer(X1D).dest.read_bytes()
    assert len(data) == served and data.startswith(h.body(X1D))
    [request] = h.gets(X1D)
    assert header(request, "Range") is None


async def test_catalogue_size_differing_from_the_server_is_fetched_once(h: Harness) -> None:
    outcome = await h.fetch(X1D, size=SIZES[X1D] - 10)

    assert outcome.state is ProductState.DONE and h.naps.waits == []
    assert outcome.size == SIZES[X1D] and outcome.fetched == SIZES[X1D]
    assert outcome.size_note == (
        f"catalogue says {SIZES[X1D] - 10:,} bytes, the server sent {SIZES[X1D]:,}"
    )
    assert h.transfer(X1D).dest.read_bytes() == h.body(X1D)
    assert len(h.gets(X1D)) == 1


async def test_401_is_auth_required_at_once(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hstsync.transfer")
    h.emu.faults.add(Fault(FaultKind.STATUS, match=X1D, status=401, times=None))

    outcome = await h.fetch(X1D, token=True)

    assert outcome.state is ProductState.AUTH_REQUIRED and outcome.attempts == 1
    assert outcome.error == ("the archive refused this file without a valid MAST token (HTTP 401)")
    assert len(h.gets(X1D)) == 1
    assert SECRET not in caplog.text


async def test_404_fails_without_retries(h: Harness) -> None:
    h.emu.faults.add(Fault(FaultKind.STATUS, match=X1D, status=404, times=None))

    outcome = await h.fetch(X1D)

    assert outcome.state is ProductState.FAILED and outcome.attempts == 1
    assert outcome.error == "not found on the server (HTTP 404)"
    assert h.naps.waits == []


async def test_network_errors_never_leak_the_token(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hstsync.transfer")
    h.emu.faults.add(Fault(FaultKind.RESET, match=X1D, after=1000, times=None))

    outcome = await h.fetch(X1D, token=True)

    assert outcome.state is ProductState.FAILED and outcome.error
    assert SECRET not in outcome.error and SECRET not in caplog.text


async def test_destination_under_a_file_fails_with_reason(h: Harness) -> None:
    (h.root / "mastDownload").write_text("not a directory")

    outcome = await h.fetch(X1D)

    assert outcome.state is ProductState.FAILED
    assert outcome.error is not None and "(ENOTDIR)" in outcome.error
    assert h.gets(X1D) == []


@pytest.mark.unprivileged
async def test_unwritable_directory_fails_with_reason(h: Harness) -> None:
    folder = h.transfer(X1D).dest.parent
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    try:
        outcome = await h.fetch(X1D)
    finally:
        folder.chmod(0o755)

    # refused before any request: no attempt counted, nothing asked of the archive
    assert outcome.state is ProductState.FAILED and outcome.attempts == 0
    assert outcome.error is not None and "permission denied (EACCES)" in outcome.error
    assert h.gets(X1D) == []


async def test_disk_full_fails_at_once_and_keeps_the_part(h: Harness) -> None:
    part = part_path(h.transfer(X1D).dest)
    with small_disk(part.parent):  # room for one page of the 77,760 bytes
        outcome = await h.fetch(X1D)

        assert outcome.state is ProductState.FAILED and outcome.attempts == 1
        assert outcome.error is not None and outcome.error.startswith("disk full (ENOSPC) writing")
        assert part.exists() and not h.transfer(X1D).dest.exists()


class Descriptors:
    """Every descriptor the process may open, taken until the first wait between two
    attempts (a ``sleep``): out of descriptors, as a daemon under a low ``ulimit -n``
    is while other transfers hold theirs."""

    def __init__(self) -> None:
        self.held: list[int] = []
        self.waits: list[float] = []
        self._limits = resource.getrlimit(resource.RLIMIT_NOFILE)

    def __enter__(self) -> Descriptors:
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 32, self._limits[1]))
        with contextlib.suppress(OSError):
            while True:
                self.held.append(os.open(os.devnull, os.O_RDONLY))
        return self

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.release()
        await asyncio.sleep(0)

    def release(self) -> None:
        for fd in self.held:
            os.close(fd)
        self.held.clear()

    def __exit__(self, *exc: object) -> None:
        self.release()
        resource.setrlimit(resource.RLIMIT_NOFILE, self._limits)


async def test_out_of_descriptors_is_a_failed_attempt_retried_after_a_wait(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hstsync.transfer")
    write_part(h, X1D, h.body(X1D)[:20_000])  # an earlier run's bytes, resumed all the same
    with Descriptors() as descriptors:
        downloader = Downloader(h.session, CFG, sleep=descriptors)
        with pytest.raises(OSError):
            os.open(os.devnull, os.O_RDONLY)  # none left
        outcome = await downloader.fetch(h.transfer(X1D))

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    assert outcome.resumed_from == 20_000
    assert len(descriptors.waits) == 1
    assert "too many open files (EMFILE) opening" in caplog.text
    assert "resuming, 20000 bytes held" in caplog.text  # said once the part is open
    assert h.transfer(X1D).dest.read_bytes() == h.body(X1D)


def test_a_shortage_that_passes_is_retried_and_a_full_disk_is_not() -> None:
    for code in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        failure = disk_failure(OSError(code, os.strerror(code)), "opening", Path("/m/f.part"))
        assert type(failure) is TransferError, code
    full = disk_failure(OSError(errno.ENOSPC, "No space"), "writing", Path("/m/f.part"))
    assert isinstance(full, Refused) and str(full) == "disk full (ENOSPC) writing /m/f.part"
    emfile = disk_failure(OSError(errno.EMFILE, "Too many"), "opening", Path("/m/f.part"))
    assert str(emfile) == "too many open files (EMFILE) opening /m/f.part"


# -- cancellation -----------------------------------------------------------------------


async def test_cancelled_transfer_leaves_a_resumable_prefix(h: Harness) -> None:
    h.emu.faults.add(Fault(FaultKind.STALL, match=X2D, after=3_000_000, delay=5.0, times=1))
    some_bytes = asyncio.Event()
    received = 0

    def progress(_: Transfer, delta: int) -> None:
        nonlocal received
        received += delta
        if received >= 1_000_000:
            some_bytes.set()

    downloader = Downloader(h.session, CFG, on_progress=progress, sleep=h.naps)
    task = asyncio.create_task(downloader.fetch(h.transfer(X2D)))
    await asyncio.wait_for(some_bytes.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    dest = h.transfer(X2D).dest
    held = part_path(dest).read_bytes()
    assert not dest.exists()
    assert len(held) == received >= 1_000_000
    assert held == h.body(X2D)[: len(held)]

    h.emu.faults.clear()
    outcome = await h.fetch(X2D)
    assert outcome.state is ProductState.DONE and outcome.resumed_from == len(held)
    assert dest.read_bytes() == h.body(X2D)


# -- the pure parts ---------------------------------------------------------------------


def test_content_range_parsing() -> None:
    assert parse_content_range("bytes 100-199/1000") == (100, 199, 1000)
    assert parse_content_range("bytes 0-0/*") == (0, 0, None)
    assert parse_content_range("bytes */1000") is None
    assert parse_content_range("items 0-1/2") is None
    assert parse_content_range(None) is None


def test_retry_after_takes_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("999999") == RETRY_AFTER_CAP
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("") is None


SIZE = 1000


@pytest.mark.parametrize(
    ("status", "headers", "offset", "start"),
    [
        (200, {"Content-Length": "1000"}, 0, 0),
        (200, {"Content-Length": "1000"}, 400, 0),  # Range ignored: start over
        (200, {}, 400, 0),
        (206, {"Content-Range": "bytes 400-999/1000"}, 400, 400),
        (206, {"Content-Range": "bytes 400-999/*"}, 400, 400),
        (206, {"Content-Range": "bytes 0-999/1000"}, 400, None),  # wrong start
        (206, {"Content-Range": "bytes 500-999/1000"}, 400, None),
        (206, {}, 400, None),
        (416, {"Content-Range": "bytes */1000"}, 1000, 1000),  # the part is complete
        (416, {"Content-Range": "bytes */1000"}, 400, None),
        (416, {}, 0, None),
    ],
)
def test_body_start_places_the_body_or_starts_over(
    status: int, headers: dict[str, str], offset: int, start: int | None
) -> None:
    assert body_start(status, headers, offset, SIZE) == start


@pytest.mark.parametrize(
    ("status", "headers", "offset", "error", "text"),
    [
        (401, {}, 0, AuthRequiredError, "HTTP 401"),
        (403, {}, 0, AuthRequiredError, "HTTP 403"),
        (404, {}, 0, HstsyncError, "HTTP 404"),
        (410, {}, 0, HstsyncError, "HTTP 410 Gone"),
        (500, {}, 0, TransferError, "HTTP 500 Internal Server Error"),
        (429, {"Retry-After": "3"}, 0, TransferError, "HTTP 429"),
        (200, {"Content-Encoding": "gzip"}, 0, HstsyncError, "gzip-encoded"),
    ],
)
def test_body_start_refuses_what_it_must(
    status: int, headers: dict[str, str], offset: int, error: type[Exception], text: str
) -> None:
    with pytest.raises(error) as raised:
        body_start(status, headers, offset, SIZE)
    assert text in str(raised.value)
    retried = isinstance(raised.value, TransferError)
    assert retried == (status == 429 or status >= 500)
