"""The emulator's lifecycle: :class:`Emulator` (its settings and state, its two
listeners started and closed as an async context manager) and :func:`run_in_thread`
for sync callers. The endpoints are :mod:`~hstsync.emulator.server.portal`'s and
:mod:`~hstsync.emulator.server.downloads`'."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import threading
from collections.abc import Iterator
from types import TracebackType

from aiohttp import web

from hstsync.emulator.catalogue import Catalogue, CatalogueProduct, default_catalogue
from hstsync.emulator.faults import Faults
from hstsync.emulator.fits import Bodies, Body
from hstsync.emulator.quirks import PortalQuirks
from hstsync.emulator.server.admin import add_admin_routes
from hstsync.emulator.server.downloads import cdn_file, cloud_object, download_file
from hstsync.emulator.server.portal import bundle, columnsconfig, invoke, path_lookup, whoami
from hstsync.emulator.server.protocol import (
    BUNDLE_PATH,
    CDN_PATH,
    CLOUD_BUCKET,
    COLUMNS_CONFIG_PATH,
    DOWNLOAD_PATH,
    EMULATOR,
    INVOKE_PATH,
    PATH_LOOKUP_PATH,
    SITE,
    WHOAMI_PATH,
    RecordedRequest,
    record_request,
)

log = logging.getLogger(__name__)


class Emulator:
    """An async context manager serving ``catalogue`` on ``host:port`` (0: a free port).

    ``validators=False`` serves every file without ETag and Last-Modified and ignores
    conditional requests (whether MAST's download service sends validators is not
    confirmed); it may change while running (``Emulator.validators``), and a product
    may have them off on its own (``validators=False`` of ``add_product``)."""

    def __init__(
        self,
        catalogue: Catalogue | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate: float | None = None,
        latency: float = 0.0,
        tokens: dict[str, str] | None = None,
        quirks: PortalQuirks | None = None,
        cdn_host: str = "localhost",
        validators: bool = True,
    ) -> None:
        self.catalogue = catalogue if catalogue is not None else default_catalogue()
        self.host = host
        self.port = port
        #: the portal's habits for every reply (a program's own are merged in);
        #: may change while running
        self.quirks = quirks or PortalQuirks()
        #: ETag and Last-Modified on every file, and 304 for conditional requests;
        #: may change while running
        self.validators = validators
        #: the host name redirected downloads name; the cdn listens on ``host``
        self.cdn_host = cdn_host
        self.cdn_port = 0
        #: bytes/second per response, None for as fast as possible; may change while running
        self.rate = rate
        #: seconds before the first byte of each response; may change while running
        self.latency = latency
        #: token -> user name, for exclusive-access data and ``whoami``
        self.tokens: dict[str, str] = dict(tokens or {})
        #: token -> when it expires (ISO 8601), shown by ``whoami`` as ``expires``
        self.token_expiry: dict[str, str] = {}
        #: product filename -> another server's base URL: downloads of that file answer
        #: 302 to the same path there (once: the redirected URL carries ``hop=1``)
        self.redirects: dict[str, str] = {}
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        #: body bytes written for downloads so far, over all requests
        self.bytes_sent = 0
        #: body bytes written so far per dataURI (the archive, the cdn and the bucket)
        self.bytes_served: dict[str, int] = {}
        #: the most download bodies ever being sent at once: each counts from its
        #: headers until its last byte is handed to the socket or the client hangs up
        self.peak_downloads = 0
        self._downloading: dict[int, web.Request] = {}
        self._bodies = Bodies()
        self._runner: web.AppRunner | None = None
        self._cdn_runner: web.AppRunner | None = None
        #: how often each distinct query has been asked (for ``executing_rounds``)
        self._asked: dict[str, int] = {}
        #: set on close, so hung handlers let go at once
        self._closing = asyncio.Event()
        self._secret = hashlib.sha256(f"{id(self)}".encode()).digest()

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def cloud_url(self) -> str:
        """The bucket's base URL, what ``[download] cloud_base`` points at in tests."""
        return f"{self.url}/{CLOUD_BUCKET}"

    @property
    def cdn_url(self) -> str:
        """The second listener's base URL, where ``redirect`` products' bytes come from."""
        if self._cdn_runner is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{self.cdn_host}:{self.cdn_port}"

    def signature(self, data_uri: str) -> str:
        """What the cdn expects in ``sig=`` for this product (the archive signs it)."""
        return hmac.new(self._secret, data_uri.encode(), "sha256").hexdigest()[:32]

    def body(self, data_uri: str, generation: int | None = None) -> bytes:
        """The exact bytes served (with no fault) for the product with this dataURI;
        with ``generation``, the bytes it had then (before a reprocessing)."""
        return self.body_file(data_uri, generation).all()

    def body_file(self, data_uri: str, generation: int | None = None) -> Body:
        """The product's body as a random-access :class:`~hstsync.emulator.fits.Body`
        (``read(offset, length)``): for files too large to hold in memory."""
        product = self.catalogue.product(data_uri)
        if product is None:
            raise KeyError(f"no product {data_uri!r}")
        return self.body_of(product, generation)

    def body_of(self, product: CatalogueProduct, generation: int | None = None) -> Body:
        """The body of ``product`` now (or at an earlier ``generation``)."""
        size, style, provenance = product.body_spec(generation)
        return self._bodies.get(product.data_uri, size, style, provenance)

    def served(self, data_uri: str | None = None) -> int:
        """Body bytes written so far for this product (all listeners), or in total."""
        return self.bytes_sent if data_uri is None else self.bytes_served.get(data_uri, 0)

    def user_for(self, token: str | None) -> str | None:
        return self.tokens.get(token) if token else None

    async def start(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[record_request])
        app[EMULATOR] = self
        app[SITE] = "archive"
        app.router.add_post(COLUMNS_CONFIG_PATH, columnsconfig)
        app.router.add_post(INVOKE_PATH, invoke)
        app.router.add_get(DOWNLOAD_PATH, download_file)  # aiohttp adds HEAD for GET routes
        app.router.add_post(BUNDLE_PATH + ".sh", bundle)
        app.router.add_get(WHOAMI_PATH, whoami)
        app.router.add_get(PATH_LOOKUP_PATH, path_lookup)
        app.router.add_get(f"/{CLOUD_BUCKET}/{{key:.+}}", cloud_object)
        add_admin_routes(app)  # the archive listener only, never the cdn
        # A stalled or rate-limited transfer must not hold up shutdown for a minute.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        cdn = web.Application(middlewares=[record_request])
        cdn[EMULATOR] = self
        cdn[SITE] = "cdn"
        cdn.router.add_get(CDN_PATH + "/{name}", cdn_file)
        cdn_runner = web.AppRunner(cdn, access_log=None, shutdown_timeout=0.5)
        await cdn_runner.setup()
        await web.TCPSite(cdn_runner, self.host, 0).start()
        self.cdn_port = int(cdn_runner.addresses[0][1])
        self._cdn_runner = cdn_runner
        log.info("MAST emulator listening on %s (cdn %s)", self.url, self.cdn_url)

    async def close(self) -> None:
        self._closing.set()
        runner, self._runner = self._runner, None
        cdn_runner, self._cdn_runner = self._cdn_runner, None
        if cdn_runner is not None:
            await cdn_runner.cleanup()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


# -- serving from a thread -------------------------------------------------------------------


@contextlib.contextmanager
def run_in_thread(
    catalogue: Catalogue | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    rate: float | None = None,
    latency: float = 0.0,
    tokens: dict[str, str] | None = None,
    validators: bool = True,
) -> Iterator[Emulator]:
    """The same :class:`Emulator`, served by a background thread's loop (for sync callers)."""
    emu = Emulator(
        catalogue,
        host=host,
        port=port,
        rate=rate,
        latency=latency,
        tokens=tokens,
        validators=validators,
    )
    ready = threading.Event()
    failure: list[BaseException] = []
    stopper: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stop = asyncio.Event()
        stopper.append((asyncio.get_running_loop(), stop))
        try:
            async with emu:
                ready.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            ready.set()

    def main() -> None:
        with contextlib.suppress(BaseException):
            asyncio.run(serve())

    thread = threading.Thread(target=main, name="mast-emulator", daemon=True)
    thread.start()
    ready.wait(30)
    if failure or not stopper:
        thread.join(5)
        raise RuntimeError("the MAST emulator did not start") from (failure[0] if failure else None)
    try:
        yield emu
    finally:
        loop, stop = stopper[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
