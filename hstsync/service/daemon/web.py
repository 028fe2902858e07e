"""The daemon's read-only status endpoint: JSON, Prometheus metrics and an HTML page.

Owns the aiohttp application and its listening socket (``[status] listen``). Routes:

- ``GET /status.json``: exactly ``hstsync status --json`` (the status document);
- ``GET /status/NAME.json``: ``hstsync status --json NAME``, that request and its products;
- ``GET /metrics``: Prometheus text, read from the database at scrape time
  (``metrics.StoreCollector``);
- ``GET /``: a plain HTML page (no script) with a table of requests and their progress.

Every HTTP request opens the database read-only in a worker thread and closes it before
answering: the event loop the daemon downloads on never waits for SQLite, and a reader
holds no lock the daemon's writer needs (WAL readers do not block the writer). Nothing
here writes, and only GET and HEAD are routed (anything else is 405).

Clients are not trusted to finish: the listening socket is :mod:`listener`'s (a deadline
for the first headers, a cap on connections, failed accepts said once a minute), headers
are bounded by aiohttp's own limits, and a request whose ``Host`` is a name other than
the listening host or ``localhost`` is refused (421): a web page whose domain an attacker
re-points at this machine (DNS rebinding) cannot read the status through a browser.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from hstsync.config import Config, ScheduleConfig, host_header_allowed, is_loopback
from hstsync.errors import ConfigError, StoreError
from hstsync.model import collection_label, human_bytes
from hstsync.service.daemon.listener import (
    HEADER_SECONDS,
    MAX_CONNECTIONS,
    Guard,
    quiet_accept_errors,
)
from hstsync.service.daemon.metrics import StoreCollector
from hstsync.service.daemon.status import status_document
from hstsync.store import RequestSummary, Store

log = logging.getLogger(__name__)

T = TypeVar("T")

DATABASE = web.AppKey("database", Path)
REGISTRY = web.AppKey("registry", CollectorRegistry)
RESYNC_EVERY = web.AppKey("resync_every", float)
LISTEN_HOST = web.AppKey("listen_host", str)

#: seconds the page waits before reloading itself
REFRESH_SECONDS = 5
#: seconds in-flight HTTP requests get to finish when the daemon stops
SHUTDOWN_SECONDS = 2.0
#: aiohttp's limits on a request line and a header (bytes: a status page needs little)
MAX_LINE_BYTES = 4096
MAX_HEADERS = 64
#: seconds an idle keep-alive connection is kept (aiohttp's default: an hour)
KEEPALIVE_SECONDS = 15.0

_dumps = partial(json.dumps, indent=2)


# -- the application -----------------------------------------------------------------------


def create_app(
    database: Path,
    resync_every: float = ScheduleConfig().resync_every,
    listen_host: str = "127.0.0.1",
) -> web.Application:
    """The status application over the database file at ``database``, answering
    requests addressed to ``listen_host`` (and ``localhost``, and IP literals); requests
    are stale (not ``ok``) two ``resync_every`` after they were last fully mirrored."""
    app = web.Application(middlewares=[_addressed_here])
    app[DATABASE] = database
    app[RESYNC_EVERY] = resync_every
    app[LISTEN_HOST] = listen_host
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(database, resync_every))
    app[REGISTRY] = registry
    app.router.add_get("/", page)
    app.router.add_get("/status.json", status_json)
    app.router.add_get("/status/{name}.json", request_json)
    app.router.add_get("/metrics", metrics)
    app.on_response_prepare.append(_common_headers)
    return app


@web.middleware
async def _addressed_here(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    host = request.headers.get("Host")
    if host is not None and not host_header_allowed(host, request.app[LISTEN_HOST]):
        return web.Response(
            status=421,
            text="this status endpoint answers requests addressed to this machine "
            "(its address or localhost), not to another name\n",
        )
    return await handler(request)


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # The page runs no script: forbid it outright, so escaped user data stays inert even
    # if an escape were ever missed.
    response.headers.setdefault(
        "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"
    )


async def _read(request: web.Request, read: Callable[[Store], T]) -> T:
    """Run ``read`` over a short-lived read-only connection, in a worker thread."""
    database = request.app[DATABASE]

    def work() -> T:
        with Store.open_readonly(database) as store:
            return read(store)

    try:
        return await asyncio.to_thread(work)
    except StoreError as exc:
        log.warning("status endpoint: %s", exc)
        raise web.HTTPServiceUnavailable(
            text="the database cannot be read right now; see the service log\n"
        ) from None


async def status_json(request: web.Request) -> web.Response:
    summaries = await _read(request, lambda store: store.summaries())
    doc = status_document(summaries, resync_every=request.app[RESYNC_EVERY])
    return web.json_response(doc, dumps=_dumps)


async def request_json(request: web.Request) -> web.Response:
    name = request.match_info["name"]

    def read(store: Store) -> dict[str, object] | None:
        summaries = store.summaries(name)
        if not summaries:
            return None
        return status_document(
            summaries, store.products(name), resync_every=request.app[RESYNC_EVERY]
        )

    doc = await _read(request, read)
    if doc is None:
        return web.json_response({"error": f"no request named {name!r}"}, status=404)
    return web.json_response(doc, dumps=_dumps)


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def page(request: web.Request) -> web.Response:
    summaries = await _read(request, lambda store: store.summaries())
    return web.Response(text=render_page(summaries), content_type="text/html", charset="utf-8")


# -- the page ----------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.error { color: #a00; max-width: 40em; }
td.when { white-space: nowrap; }
td.num { white-space: nowrap; }
.state-done { color: #060; } .state-incomplete, .state-invalid { color: #a00; }
"""


def render_page(summaries: Sequence[RequestSummary], now: datetime | None = None) -> str:
    """The HTML page: one row per request. Names and errors are user data: all escaped."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    empty = "no requests yet: drop a manifest into the request directory"
    rows = [_row(s) for s in summaries] or [f'<tr><td colspan="7">{empty}</td></tr>']
    body = "\n".join(rows)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>hstsync status</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>hstsync</h1>
<p>{len(summaries)} request(s) at {stamp} ·
<a href="status.json">JSON</a> · <a href="metrics">metrics</a></p>
<table id="requests">
<thead>
<tr><th>request</th><th>state</th><th>files</th><th>collection</th><th>bytes</th>
<th>new files</th><th>last error</th></tr>
</thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""


def _row(s: RequestSummary) -> str:
    name, state, c = s.request.name, str(s.request.state), s.counts
    files = f"{c.done}/{c.total}"
    notes = []
    if c.failed:
        notes.append(f"{c.failed} failed")
    if c.auth_required:
        notes.append(f"{c.auth_required} need a token")
    if notes:
        files += f" ({', '.join(notes)})"
    # <progress> wants max > 0; an unresolved request shows an empty bar
    value, top = (s.bytes_done, s.bytes_total) if s.bytes_total > 0 else (0, 1)
    percent = 100.0 * value / top
    link = f"status/{quote(name, safe='')}.json"
    return (
        f'<tr data-request="{_escape(name)}" class="state-{_escape(state)}">'
        f'<td><a href="{_escape(link)}">{_escape(name)}</a></td>'
        f"<td>{_escape(state)}</td>"
        f'<td class="num">{_escape(files)}</td>'
        f"<td>{_escape(collection_label(s.request.collection, s.request.planned))}</td>"
        f'<td class="num"><progress value="{value}" max="{top}">{percent:.0f}%</progress> '
        f"{_escape(human_bytes(s.bytes_done))} / {_escape(human_bytes(s.bytes_total))}</td>"
        f'<td class="when">{_escape(s.request.last_new_files or "-")}</td>'
        f'<td class="error">{_escape(s.request.last_error or "")}</td>'
        "</tr>"
    )


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


# -- serving -----------------------------------------------------------------------------------


@asynccontextmanager
async def serving_status(
    config: Config,
    *,
    header_seconds: float = HEADER_SECONDS,
    max_connections: int = MAX_CONNECTIONS,
) -> AsyncIterator[str | None]:
    """Serve the endpoint on ``[status] listen`` while the block runs; yields its URL.

    Yields None when the endpoint is off. An address that cannot be bound is a
    :class:`ConfigError` naming the key, raised before the block starts.
    ``header_seconds`` and ``max_connections`` bound slow clients (:mod:`listener`).
    """
    address = config.status.address
    if address is None:
        yield None
        return
    host, port = address
    runner = web.AppRunner(
        create_app(config.paths.database, config.schedule.resync_every, host),
        access_log=None,  # a scrape every few seconds is not an event worth a log line
        shutdown_timeout=SHUTDOWN_SECONDS,
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_LINE_BYTES,
        max_headers=MAX_HEADERS,
        keepalive_timeout=KEEPALIVE_SECONDS,
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    server: asyncio.Server | None = None
    try:
        assert runner.server is not None
        guard = Guard(runner.server, limit=max_connections, header_seconds=header_seconds)
        try:
            # our own listening socket rather than a TCPSite: every connection goes
            # through the guard first
            server = await loop.create_server(guard, host, port, backlog=128)
        except OSError as exc:
            raise ConfigError(
                f"status.listen: cannot listen on {config.status.listen}: {exc.strerror or exc}"
            ) from None
        url = _url([sock.getsockname() for sock in server.sockets])
        log.info("status endpoint on %s", url)
        if not is_loopback(host):
            log.warning(
                "status endpoint listens beyond this machine (%s): it shows request names "
                "and errors to anyone who can reach it",
                config.status.listen,
            )
        with quiet_accept_errors(loop):
            yield url
    finally:
        if server is not None:
            server.close()
        await runner.cleanup()


def _url(addresses: Sequence[object]) -> str:
    # the bound address, not the configured one: port 0 becomes the port chosen
    sockname = addresses[0]
    assert isinstance(sockname, tuple)
    host, port = str(sockname[0]), int(sockname[1])
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
