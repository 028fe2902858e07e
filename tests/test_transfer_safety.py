"""What a transfer must never do, against hostile local servers and the emulator.

The catalogue size is a hint (the server's stated length wins), an HTML page is never
data, a part of unknown origin is never appended to, nothing is written through a
symbolic link, a trickle is cut, the token stays on trusted hosts, a 403 for public
data is a rate limiter. Each test drives the real :class:`Downloader` over a real
socket; waits between attempts go through a recording ``sleep``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import Naps

from hstsync.config import DownloadConfig, MastConfig, token_allowed
from hstsync.emulator import Emulator, Fault, FaultKind
from hstsync.model import ProductState
from hstsync.transfer import Downloader, Transfer, open_session, part_path
from hstsync.transfer.control import (
    Control,
    has_control,
    read_control,
    write_control,
)
from hstsync.transfer.disk import check_dirs, fsync_dir, make_dirs, open_regular
from hstsync.transfer.http import RATE_LIMITED, body_start, retry_after_seconds
from hstsync.transfer.land import Landing, land_all

CFG = DownloadConfig(retries=3, timeout=2.0, backoff=0.01, backoff_max=0.05, segment_min=0)
X1D = "o58701010_x1d.fits"
X1D_SIZE = 77760
SECRET = "s3cret-token-value"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """A small hostile server: ``handler`` answers every GET; ``seen`` has each request."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.host = host
        self.seen: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({k.lower(): v for k, v in request.headers.items()})
        return await self.handler(request)

    async def __aenter__(self) -> Server:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def leave_part(part: Path, data: bytes, validator: str) -> None:
    """A part an earlier run left: ``data`` from byte 0, and the answer it came from."""
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data)
    write_control(part, Control(None, validator, ((0, len(data)),)))


def validator_of(part: Path) -> str | None:
    """The validator the part's control file names (None: there is none)."""
    control = read_control(part, part.stat().st_size)
    return control.validator if control is not None else None


def fits_bytes(n_blocks: int = 4, seed: int = 0) -> bytes:
    """A small valid FITS file (no checksum cards) whose data differ by ``seed``."""
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    1",
        f"NAXIS1  = {2880 * (n_blocks - 1):20d}",
        "END",
    ]
    header = b"".join(c.ljust(80).encode() for c in cards).ljust(2880, b" ")
    data = hashlib.sha256(str(seed).encode()).digest() * (2880 * (n_blocks - 1) // 32)
    return header + data


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with open_session(CFG) as s:
        yield s


def downloader(session: aiohttp.ClientSession, cfg: DownloadConfig = CFG, **kw: Any) -> Downloader:
    return Downloader(session, cfg, sleep=kw.pop("sleep", Naps()), **kw)


def transfer(  # type: ignore[no-untyped-def]
    url: str, base: Path, name: str = "f.fits", size: int | None = None, **kw: Any
):
    return Transfer(
        url=url, dest=base / "mastDownload" / "HST" / "obs" / name, size=size, label=name, **kw
    )


# -- A. the catalogue size is a hint -----------------------------------------------------


async def test_unknown_size_takes_a_chunked_answer_and_learns_its_length(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    body = fits_bytes(5)

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(body), 5000):
            await resp.write(body[i : i + 5000])
        await resp.write_eof()
        return resp

    async with Server(chunked) as srv:
        t = transfer(srv.url + "/f", tmp_path)
        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.DONE and outcome.size == len(body)
    assert outcome.size_note is None
    assert t.dest.read_bytes() == body
    assert "content-length" not in srv.seen[0]


async def test_unknown_size_cut_chunked_body_resumes_with_range(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    body = fits_bytes(6)
    cut = 7000

    async def handler(request: web.Request) -> web.StreamResponse:
        if "Range" not in request.headers:
            resp = web.StreamResponse(headers={"ETag": '"v1"'})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(body[:cut])
            await asyncio.sleep(0.05)  # the client has read the bytes sent by now
            assert request.transport is not None
            request.transport.close()  # the chunked body never ends
            return resp
        start = int(request.headers["Range"].removeprefix("bytes=").removesuffix("-"))
        assert request.headers.get("If-Range") == '"v1"'
        return web.Response(
            status=206,
            body=body[start:],
            headers={"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}", "ETag": '"v1"'},
        )

    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", tmp_path)
        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    assert t.dest.read_bytes() == body and outcome.size == len(body)
    assert srv.seen[1]["range"] == f"bytes={cut}-"
    assert not has_control(part_path(t.dest))


@pytest.mark.parametrize(
    "wrong_by",
    [
        5000,
        -5000,  # the catalogue short: the answers state a larger total
        8_000_000,  # pieces past the end: 416, not a refusal of ranges
    ],
)
async def test_segmented_transfer_uses_the_servers_length_not_the_catalogues(
    tmp_path: Path, wrong_by: int
) -> None:
    cfg = DownloadConfig(retries=2, timeout=2.0, backoff=0.01, segment_min=1 << 20)
    name = "o58701010_x2d.fits"
    async with Emulator(rate=40e6) as emu, open_session(cfg) as s:
        real = len(emu.body(f"mast:HST/product/{name}"))
        t = Transfer(
            url=f"{emu.url}/api/v0.1/Download/file?uri=mast:HST/product/{name}",
            dest=tmp_path / name,
            size=real + wrong_by,  # the catalogue is wrong
            label=name,
        )
        outcome = await Downloader(s, cfg, sleep=Naps()).fetch(t)
        ranged = [r for r in emu.requests if r.method == "GET" and "Range" in r.headers]

        assert outcome.state is ProductState.DONE, outcome.error
        assert t.dest.read_bytes() == emu.body(f"mast:HST/product/{name}")
    assert outcome.size == real
    assert (
        outcome.size_note == f"catalogue says {real + wrong_by:,} bytes, the server sent {real:,}"
    )
    # cut at the catalogue's size first; once the server stated its length, segments
    # cut at that (each conditional on the answer that stated it)
    after = [r for r in ranged if "If-Range" in r.headers]
    assert after, "the file was fetched in segments"
    # the last range runs to the end the server stated (asked open-ended or to its byte)
    ends = [r.headers["Range"].rsplit("-", 1)[1] for r in after]
    assert max(int(end) if end else real - 1 for end in ends) == real - 1


# -- C. never wrong bytes ------------------------------------------------------------------


async def test_html_page_with_200_is_never_written_and_is_retried(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    body = fits_bytes(3)
    page = b"<html><body>Service temporarily unavailable</body></html>"
    written: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if len(srv.seen) == 1:  # an error page, chunked, no Content-Length
            resp = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(page)
            await resp.write_eof()
            return resp
        return web.Response(body=body, content_type="application/fits")

    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(body))
        outcome = await downloader(session, on_progress=lambda _, d: written.append(d)).fetch(t)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    assert t.dest.read_bytes() == body
    assert sum(written) == len(body) and all(d > 0 for d in written)  # the page never counted


async def test_html_page_that_never_stops_fails_without_a_part(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"<html>maintenance</html>" * 200, content_type="text/html")

    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=4800)
        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.FAILED and outcome.attempts == CFG.retries + 1
    assert (
        outcome.error == "the server sent an HTML page (text/html) instead of the file (HTTP 200)"
    )
    assert not part_path(t.dest).exists() and not t.dest.exists()


def versioned(versions: dict[str, bytes], current: list[str]) -> Handler:
    """Serves ``versions[current[0]]`` with its ETag, honouring Range and If-Range."""

    async def handler(request: web.Request) -> web.StreamResponse:
        tag = current[0]
        body = versions[tag]
        etag = f'"{tag}"'
        rng = request.headers.get("Range")
        if rng and request.headers.get("If-Range", etag) == etag:
            start = int(rng.removeprefix("bytes=").removesuffix("-"))
            return web.Response(
                status=206,
                body=body[start:],
                headers={
                    "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}",
                    "ETag": etag,
                },
            )
        return web.Response(body=body, headers={"ETag": etag})

    return handler


async def test_part_of_version_1_is_not_completed_from_version_2(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    versions = {"v1": fits_bytes(4, seed=1), "v2": fits_bytes(4, seed=2)}
    current = ["v1"]
    async with Server(versioned(versions, current)) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(versions["v1"]))
        # an earlier run: the first 5000 bytes of version 1, and where they came from
        async with session.get(t.url) as resp:
            first = (await resp.read())[:5000]
        part = part_path(t.dest)
        leave_part(part, first, '"v1"')
        current[0] = "v2"

        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.DONE
    assert t.dest.read_bytes() == versions["v2"]
    assert srv.seen[-1]["if-range"] == '"v1"' and srv.seen[-1]["range"] == "bytes=5000-"
    assert not has_control(part)


async def test_part_of_the_same_version_is_resumed_with_if_range(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    versions = {"v1": fits_bytes(4, seed=1)}
    async with Server(versioned(versions, ["v1"])) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(versions["v1"]))
        part = part_path(t.dest)
        leave_part(part, versions["v1"][:5000], '"v1"')

        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.DONE and outcome.resumed_from == 5000
    assert outcome.fetched == len(versions["v1"]) - 5000
    assert t.dest.read_bytes() == versions["v1"]


async def test_part_without_a_saved_validator_starts_again_from_zero(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    versions = {"v1": fits_bytes(4, seed=1)}
    async with Server(versioned(versions, ["v1"])) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(versions["v1"]))
        part = part_path(t.dest)
        part.parent.mkdir(parents=True)
        part.write_bytes(b"\0" * 5000)  # bytes of unknown origin

        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.DONE and outcome.resumed_from == 0
    assert t.dest.read_bytes() == versions["v1"]
    assert "range" not in srv.seen[0]


async def test_first_answer_saves_its_validator_in_the_control_file(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    body = fits_bytes(6)

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"ETag": '"abc"'})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[:6000])
        assert request.transport is not None
        request.transport.close()
        return resp

    cfg = DownloadConfig(retries=0, timeout=2.0, segment_min=0)
    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(body))
        outcome = await downloader(session, cfg).fetch(t)

    assert outcome.state is ProductState.FAILED
    part = part_path(t.dest)
    assert part.stat().st_size == 6000
    assert read_control(part, 6000) == Control(len(body), '"abc"', ((0, 6000),))


# -- symbolic links ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["part", "dest", "directory"])
async def test_planted_symlink_is_refused_and_its_target_untouched(
    session: aiohttp.ClientSession, tmp_path: Path, where: str
) -> None:
    body = fits_bytes(3)

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body)

    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_bytes(b"precious")
    root = tmp_path / "mirror"
    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", root, size=len(body), root=root)
        t.dest.parent.parent.mkdir(parents=True)
        if where == "directory":
            t.dest.parent.symlink_to(outside, target_is_directory=True)
            link = t.dest.parent
        else:
            t.dest.parent.mkdir()
            link = part_path(t.dest) if where == "part" else t.dest
            link.symlink_to(victim)

        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.FAILED
    assert outcome.error == f"refused: {link} is a symbolic link"
    assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert link.is_symlink()
    assert srv.seen == []


def test_directories_below_the_root_are_made_and_walked_for_links(tmp_path: Path) -> None:
    root = tmp_path / "mirror"
    # what it made, outermost first (their names need their parents fsynced)
    assert make_dirs(root, root / "10202" / "j8pu") == [
        str(root / "10202"),
        str(root / "10202" / "j8pu"),
    ]
    assert (root / "10202" / "j8pu").is_dir()
    assert make_dirs(root, root / "10202" / "j8pu") == []
    make_dirs(root, root)  # the root alone: made if missing, nothing below it
    # a sibling whose name starts like the root's is not below it
    sibling = tmp_path / "mirror2"
    make_dirs(root, sibling / "x")
    assert (sibling / "x").is_dir()
    # the root itself may be a link (the user's choice); what is below it may not
    linked_root = tmp_path / "via-link"
    linked_root.symlink_to(root, target_is_directory=True)
    make_dirs(linked_root, linked_root / "10202" / "j8pu")
    check_dirs(linked_root, linked_root / "10202" / "j8pu")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "10202" / "planted").symlink_to(outside, target_is_directory=True)
    for walk in (make_dirs, check_dirs):
        with pytest.raises(OSError, match="symbolic link") as caught:
            walk(root, root / "10202" / "planted" / "deeper")
        assert caught.value.filename == str(root / "10202" / "planted")
    assert list(outside.iterdir()) == []
    (root / "10202" / "afile").write_bytes(b"")
    with pytest.raises(OSError, match="in the way"):
        make_dirs(root, root / "10202" / "afile" / "x")
    check_dirs(root, root / "10202" / "missing" / "x")  # not there yet: nothing to refuse


@pytest.mark.parametrize("blocks", [4, 500], ids=["small, landed in a batch", "large, committed"])
async def test_a_new_directory_is_named_durably_before_its_first_file_is_done(
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    blocks: int,
) -> None:
    # A file's rename is made durable by an fsync of its directory; a directory made
    # for it is named in its parent, which needs its own fsync, or a crash can take
    # a file the database calls done. Each parent once, before the file is done.
    import hstsync.transfer.land as land_module

    synced: list[str] = []

    def recording(directory: Path | str) -> None:
        synced.append(str(directory))
        fsync_dir(directory)

    monkeypatch.setattr(land_module, "fsync_dir", recording)
    bodies = {name: fits_bytes(blocks, seed=n) for n, name in enumerate(["a.fits", "b.fits"])}

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=bodies[request.path.rsplit("/", 1)[-1]])

    root = tmp_path / "mirror"
    cfg = DownloadConfig(retries=0, timeout=5.0, segment_min=1 << 30)
    async with Server(handler) as srv:
        get = downloader(session, cfg)
        first = transfer(f"{srv.url}/a.fits", root, "a.fits", size=len(bodies["a.fits"]), root=root)
        assert (await get.fetch(first)).state is ProductState.DONE
        parents = {str(p) for p in (root, root / "mastDownload", root / "mastDownload" / "HST")}
        assert parents <= set(synced)
        synced.clear()
        second = transfer(
            f"{srv.url}/b.fits", root, "b.fits", size=len(bodies["b.fits"]), root=root
        )
        assert (await get.fetch(second)).state is ProductState.DONE
    # the directories are named durably already: their parents are not synced again
    assert not parents & set(synced)
    assert second.dest.read_bytes() == bodies["b.fits"]


async def test_symlink_planted_at_the_final_name_during_the_transfer_is_not_replaced(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    body = fits_bytes(3)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    root = tmp_path / "mirror"

    async def handler(request: web.Request) -> web.StreamResponse:
        t.dest.symlink_to(victim)  # planted while the body is on its way
        return web.Response(body=body)

    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", root, size=len(body), root=root)
        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.FAILED
    assert outcome.error == f"refused: {t.dest} is a symbolic link"
    assert victim.read_bytes() == b"precious" and t.dest.is_symlink()


# -- min speed -----------------------------------------------------------------------------


async def test_trickling_server_is_cut_by_min_speed_and_resumed(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    body = fits_bytes(3)

    async def handler(request: web.Request) -> web.StreamResponse:
        rng = request.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").removesuffix("-"))
            return web.Response(
                status=206,
                body=body[start:],
                headers={
                    "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}",
                    "ETag": '"t"',
                },
            )
        resp = web.StreamResponse(headers={"ETag": '"t"'})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[:100])
        for i in range(100, len(body)):  # then one byte every 0.05 s
            await asyncio.sleep(0.05)
            await resp.write(body[i : i + 1])
        return resp

    cfg = DownloadConfig(
        retries=2, timeout=5.0, backoff=0.01, segment_min=0, min_speed=1000, min_speed_time=0.3
    )
    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(body))
        errors: list[str] = []
        d = downloader(session, cfg, on_retry=lambda _t, _n, e: errors.append(e))
        outcome = await d.fetch(t)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    assert t.dest.read_bytes() == body
    assert errors and errors[0].startswith("slower than 1,000 bytes/s for 0.3 s")
    resumed_at = int(srv.seen[1]["range"].removeprefix("bytes=").removesuffix("-"))
    assert resumed_at >= 100


# -- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["²", "-1", "1e9", "9" * 40, "9" * 5000, "1.5", " ", "Mon, 99 Foo"]
)
def test_retry_after_that_is_neither_seconds_nor_a_date_is_ignored(value: str) -> None:
    assert retry_after_seconds(value) is None


async def test_busy_server_with_a_strange_retry_after_is_retried_on_the_backoff(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    body = fits_bytes(2)

    async def handler(request: web.Request) -> web.StreamResponse:
        if len(srv.seen) < 3:
            return web.Response(
                status=503, headers={"Retry-After": "²" if len(srv.seen) == 1 else "1e9"}
            )
        return web.Response(body=body)

    naps = Naps()
    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(body))
        outcome = await downloader(session, sleep=naps).fetch(t)

    assert outcome.state is ProductState.DONE and outcome.attempts == 3
    assert len(naps.waits) == 2 and all(w <= CFG.backoff_max + CFG.backoff for w in naps.waits)


# -- D. the token and redirects ---------------------------------------------------------------


def test_token_goes_only_to_trusted_hosts_over_https_or_loopback() -> None:
    trusted = MastConfig(server="https://mast.stsci.edu").token_hosts
    assert trusted == ("mast.stsci.edu", "*.stsci.edu")
    assert token_allowed("https://mast.stsci.edu/api/x", trusted)
    assert token_allowed("https://archive.stsci.edu/x", trusted)
    assert not token_allowed("http://archive.stsci.edu/x", trusted)  # clear text
    assert not token_allowed("https://stsci.edu.evil.example/x", trusted)
    assert not token_allowed("https://evilstsci.edu/x", trusted)
    assert not token_allowed("https://stpubdata.s3.amazonaws.com/x", trusted)
    local = MastConfig(server="http://127.0.0.1:8080").token_hosts
    assert local == ("127.0.0.1:8080", "*.stsci.edu")
    assert token_allowed("http://127.0.0.1:8080/x", local)
    assert not token_allowed("http://127.0.0.1:9999/x", local)  # another service
    assert not token_allowed("http://127.0.0.2:8080/x", local)
    assert not token_allowed("https://mast.stsci.edu:8443/x", trusted)  # another port
    assert token_allowed("https://mast.stsci.edu:443/x", trusted)


def redirecting(target: list[str]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(target[0] + "/file")

    return handler


@pytest.mark.parametrize("trusted", [False, True])
async def test_redirect_to_another_host_gets_the_token_only_if_trusted(
    session: aiohttp.ClientSession, tmp_path: Path, trusted: bool
) -> None:
    body = fits_bytes(2)

    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body)

    target: list[str] = []
    async with Server(redirecting(target)) as origin, Server(serve, host="127.0.0.2") as other:
        target.append(other.url)
        origin_host = origin.url.removeprefix("http://")
        hosts = (origin_host, other.url.removeprefix("http://")) if trusted else (origin_host,)
        t = transfer(
            origin.url + "/f",
            tmp_path,
            size=len(body),
            headers={"Authorization": f"token {SECRET}"},
        )
        outcome = await downloader(session, trusted_hosts=hosts).fetch(t)

    assert outcome.state is ProductState.DONE
    assert t.dest.read_bytes() == body
    assert origin.seen[0]["authorization"] == f"token {SECRET}"
    if trusted:
        assert other.seen[0].get("authorization") == f"token {SECRET}"
    else:
        assert "authorization" not in other.seen[0]


# -- E. 403 for public data -------------------------------------------------------------------


async def test_403_for_public_data_is_retried_like_a_busy_server(tmp_path: Path) -> None:
    async with Emulator() as emu, open_session(CFG) as s:
        emu.faults.add(Fault(FaultKind.STATUS, match=X1D, status=403, times=2))
        t = Transfer(
            url=f"{emu.url}/api/v0.1/Download/file?uri=mast:HST/product/{X1D}",
            dest=tmp_path / X1D,
            size=X1D_SIZE,
            label=X1D,
            public=True,
        )
        outcome = await downloader(s).fetch(t)
        assert t.dest.read_bytes() == emu.body(f"mast:HST/product/{X1D}")
    assert outcome.state is ProductState.DONE and outcome.attempts == 3


async def test_403_for_public_data_that_persists_says_rate_limiting(tmp_path: Path) -> None:
    async with Emulator() as emu, open_session(CFG) as s:
        emu.faults.add(Fault(FaultKind.STATUS, match=X1D, status=403, times=None))
        url = f"{emu.url}/api/v0.1/Download/file?uri=mast:HST/product/{X1D}"
        public = await downloader(s).fetch(
            Transfer(url=url, dest=tmp_path / "a" / X1D, size=X1D_SIZE, label=X1D, public=True)
        )
        exclusive = await downloader(s).fetch(
            Transfer(url=url, dest=tmp_path / "b" / X1D, size=X1D_SIZE, label=X1D)
        )
    assert public.state is ProductState.FAILED and public.attempts == CFG.retries + 1
    assert public.error == RATE_LIMITED
    assert exclusive.state is ProductState.AUTH_REQUIRED and exclusive.attempts == 1


def test_body_start_reads_403_by_the_products_rights() -> None:
    from hstsync.errors import AuthRequiredError
    from hstsync.transfer.http import RetryLater

    with pytest.raises(RetryLater, match="possibly rate limiting"):
        body_start(403, {}, 0, None, public=True)
    with pytest.raises(AuthRequiredError):
        body_start(403, {}, 0, None, public=False)
    with pytest.raises(AuthRequiredError):
        body_start(401, {}, 0, None, public=True)


# -- F. live status of retries -----------------------------------------------------------------


async def test_on_retry_hears_each_failed_attempt_before_the_wait(tmp_path: Path) -> None:
    calls: list[tuple[str, int, str]] = []
    naps = Naps()
    async with Emulator() as emu, open_session(CFG) as s:
        emu.faults.add(Fault(FaultKind.STATUS, match=X1D, status=503, times=2))
        t = Transfer(
            url=f"{emu.url}/api/v0.1/Download/file?uri=mast:HST/product/{X1D}",
            dest=tmp_path / X1D,
            size=X1D_SIZE,
            label=X1D,
        )

        def heard(tr: Transfer, attempts: int, error: str) -> None:
            calls.append((tr.label, attempts, error))
            assert len(naps.waits) == attempts - 1  # called before the wait

        outcome = await downloader(s, sleep=naps, on_retry=heard).fetch(t)

    assert outcome.state is ProductState.DONE
    assert calls == [
        (X1D, 1, "the server answered HTTP 503 Service Unavailable"),
        (X1D, 2, "the server answered HTTP 503 Service Unavailable"),
    ]


async def test_on_retry_that_raises_does_not_end_the_transfer(tmp_path: Path) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("hook bug")

    async with Emulator() as emu, open_session(CFG) as s:
        emu.faults.add(Fault(FaultKind.STATUS, match=X1D, status=503, times=1))
        t = Transfer(
            url=f"{emu.url}/api/v0.1/Download/file?uri=mast:HST/product/{X1D}",
            dest=tmp_path / X1D,
            size=X1D_SIZE,
            label=X1D,
        )
        outcome = await downloader(s, on_retry=broken).fetch(t)
    assert outcome.state is ProductState.DONE and outcome.attempts == 2


# -- small files: the whole body in memory, the part written once complete ----------------


async def test_small_file_has_no_bytes_on_disk_until_its_body_is_complete(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    body = fits_bytes(6)
    seen_mid_body: list[bool] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"ETag": '"v1"'})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[:9000])
        await asyncio.sleep(0.05)  # the client has read the first bytes by now
        part = part_path(t.dest)
        # the part is the file's lock, empty; nothing says it holds anything
        seen_mid_body.append(part.stat().st_size > 0 or has_control(part))
        await resp.write(body[9000:])
        return resp

    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(body))
        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.DONE and outcome.attempts == 1
    assert seen_mid_body == [False]
    assert t.dest.read_bytes() == body
    assert sorted(p.name for p in t.dest.parent.iterdir()) == [t.dest.name]


async def test_small_file_cancelled_mid_body_leaves_an_earlier_part_and_its_validator(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    old, new = fits_bytes(4, seed=1), fits_bytes(4, seed=2)
    started, stop = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"ETag": '"v2"'})  # changed: the whole file
        resp.content_length = len(new)
        await resp.prepare(request)
        await resp.write(new[:6000])
        started.set()
        await stop.wait()  # the rest never comes
        return resp

    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(new))
        part = part_path(t.dest)
        leave_part(part, old[:5000], '"v1"')  # an earlier run's bytes, and where from
        task = asyncio.create_task(downloader(session).fetch(t))
        await started.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stop.set()

    # the pair still agrees: v1's bytes named by v1's validator, never v2's bytes
    assert part.read_bytes() == old[:5000] and validator_of(part) == '"v1"'
    assert not t.dest.exists()


async def test_small_file_replacing_an_earlier_part_drops_its_validator(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    versions = {"v1": fits_bytes(4, seed=1), "v2": fits_bytes(5, seed=2)}
    async with Server(versioned(versions, ["v2"])) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(versions["v2"]))
        part = part_path(t.dest)
        leave_part(part, versions["v1"][:5000], '"v1"')

        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.DONE
    assert t.dest.read_bytes() == versions["v2"]
    assert sorted(p.name for p in t.dest.parent.iterdir()) == [t.dest.name]


async def test_corrupt_small_file_is_never_given_its_name_and_is_fetched_again(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    good = fits_bytes(4)
    bad = good[:-1] + b"\x01"  # the data no longer match the DATASUM below
    at = good.index(b"END     ")
    datasum = sum(int.from_bytes(good[i : i + 4], "big") for i in range(2880, len(good), 4))
    while datasum >> 32:
        datasum = (datasum & 0xFFFFFFFF) + (datasum >> 32)
    card = f"DATASUM = '{datasum}'".ljust(80).encode()
    good, bad = (b[:at] + card + b[at : 2880 - 80] + b[2880:] for b in (good, bad))
    answers = [bad, good]

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=answers.pop(0) if len(answers) > 1 else answers[0])

    async with Server(handler) as srv:
        t = transfer(srv.url + "/f", tmp_path, size=len(good))
        outcome = await downloader(session).fetch(t)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    assert t.dest.read_bytes() == good
    assert sorted(p.name for p in t.dest.parent.iterdir()) == [t.dest.name]


def test_small_files_landed_together_each_get_their_own_verdict(tmp_path: Path) -> None:
    directory = tmp_path / "mastDownload" / "HST" / "obs"
    directory.mkdir(parents=True)
    good = [fits_bytes(4, seed=i) for i in range(3)]
    bad = b"<html>not FITS</html>".ljust(11520)
    names = ["a.fits", "b.fits", "c.fits", "d.fits"]
    bodies = [good[0], bad, good[1], good[2]]
    files = [
        Landing(
            tmp_path,
            part_path(directory / n),
            directory / n,
            open_regular(part_path(directory / n), os.O_RDWR | os.O_CREAT),
            body,
        )
        for n, body in zip(names, bodies, strict=True)
    ]

    results = land_all(files)

    assert [type(r).__name__ if isinstance(r, Exception) else None for r in results] == [
        None,
        "CorruptFileError",
        None,
        None,
    ]
    for name, body, result in zip(names, bodies, results, strict=True):
        if not isinstance(result, Exception):
            assert (directory / name).read_bytes() == body
            assert not part_path(directory / name).exists()
        else:  # never given its name; its part is the caller's to remove
            assert not (directory / name).exists()
