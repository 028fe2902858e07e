"""Resolution through astroquery.mast: a Request becomes a list of Products.

The steps are the tutorial's, unchanged: ``Observations.query_criteria`` →
``get_product_list`` (in batches of obsids) → ``filter_products``; then the rows
become Products at one boundary (:func:`hstsync.archive.rows.products_from_rows`),
which also collapses repeated dataURIs and gives each destination path one owner.
This module owns the astroquery side: the :class:`Resolver`, its calls and the
translation of their failures into our errors. astroquery is
synchronous (requests), so every :class:`Resolver` method blocks; the service calls
them one step at a time in worker threads, each under a deadline
(``service.sync.lookup``), and downloads never wait for them.

The trap this module exists to close: ``astroquery.mast`` computes its endpoint
URLs from ``conf.server`` when it is imported, so changing the config afterwards
changes nothing. We build a private ``ObservationsClass`` and rewrite every URL
attribute of its portal, service and auth objects to the configured server, then
check that none is left pointing anywhere else.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from hstsync.archive import paging
from hstsync.archive.auth import check_transport, token_domain
from hstsync.archive.cells import missing, unusable_sizes
from hstsync.archive.cloud import checked_key
from hstsync.archive.collection import query_ids
from hstsync.archive.paging import (
    Batcher,
    Listing,
    ObservationPage,
    batch_sizes,
    page_count,
    paging_of,
)
from hstsync.archive.rows import Claims, products_from_rows
from hstsync.archive.selection import Sieve, why_no_observation
from hstsync.errors import ArchiveUnavailable, ManifestError, ResolveError
from hstsync.model import Product, Request
from hstsync.text import printable

log = logging.getLogger(__name__)

_ENDPOINT_SUFFIX = "/api/v0/invoke"
#: MAST's path-lookup service (a product's key in the public bucket)
PATH_LOOKUP_PATH = "/api/v0.1/path_lookup/"
#: dataURIs asked for in one path lookup: astroquery's own chunk, which keeps the URL
#: under the length servers refuse (414)
PATH_LOOKUP_CHUNK = 50


def preload() -> float:
    """Import astroquery.mast (and astropy under it) now; the seconds it took. Blocking.

    About half a second of a request's first resolution otherwise: a daemon pays it at
    start instead. Nothing is asked of the archive.
    """
    started = time.monotonic()
    import astroquery.mast  # noqa: F401

    _quieten()
    return time.monotonic() - started


def _quieten() -> None:
    # astroquery narrates every request at INFO on its own handler; our log lines say
    # what happened once, per request and product. Only once imported: a logger made
    # before astropy's import breaks astropy's own logger setup.
    for name in ("astroquery", "astropy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # An empty page says where the list ends (Resolver.observations): not news. Set
    # once for the process: catch_warnings around each call is not thread-safe, and
    # lookups run in threads of their own.
    from astroquery.exceptions import NoResultsWarning

    warnings.filterwarnings("ignore", category=NoResultsWarning)


#: seconds an archive call may take when the configuration does not say ([mast] timeout)
DEFAULT_TIMEOUT = 120.0


class Resolver:
    """Resolves requests against one MAST server. Not thread-safe: one call at a time
    per instance (astroquery's session and table caches are shared state).

    Every HTTP request it makes carries ``timeout`` as its socket timeout: astroquery
    passes none, and a server that accepts and never answers would otherwise hold the
    calling thread for ever. Callers bound each call from outside as well
    (``service.sync.lookup``), since a server that drips bytes defeats a socket timeout.
    """

    def __init__(
        self, server: str, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        # Imported here: astroquery pulls in astropy (~0.5 s), which commands like
        # `status` never need.
        from astroquery.mast import ObservationsClass

        _quieten()
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._obs = ObservationsClass()
        #: dataURI -> why its catalogue size could not be used, for cells taken out of
        #: the portal's answer before astroquery parses it (:func:`unusable_sizes`)
        self._unusable: dict[str, str] = {}
        #: the ``paging`` block of the last portal answer, kept while a page of
        #: observations is asked for (:meth:`observations`)
        self._paging: dict[str, Any] | None = None
        self._listing = False
        self._repoint(self._obs)
        self._bound(self._obs)
        if token:
            self._set_token(token)

    def _bound(self, obs: Any) -> None:
        # One session serves the portal, the services and the auth helper; give each
        # of its requests a timeout unless astroquery chose one.
        session = obs._session
        unbounded = session.request
        timeout = self.timeout

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            response = unbounded(method, url, *args, **kwargs)
            if url.endswith("/invoke"):
                self._unusable |= unusable_sizes(response)
                if self._listing:
                    self._paging = paging_of(response)
            return response

        session.request = request
        # astroquery's own limit for EXECUTING polling, checked between replies
        obs._portal_api_connection.TIMEOUT = timeout

    # -- pointing astroquery at the configured server -------------------------------

    def _repoint(self, obs: Any) -> None:
        portal = obs._portal_api_connection
        import_time_server = type(portal).MAST_REQUEST_URL.removesuffix(_ENDPOINT_SUFFIX)
        for holder in self._url_holders(obs):
            for name in _url_attributes(holder):
                value: str = getattr(holder, name)
                if value.startswith(import_time_server):
                    setattr(holder, name, self.server + value[len(import_time_server) :])
        # The token page is only ever printed by astroquery, but it must not name
        # another host either.
        obs._auth_obj.AUTH_URL = self.server + "/token"
        stray = [
            f"{type(holder).__name__}.{name}={getattr(holder, name)}"
            for holder in self._url_holders(obs)
            for name in _url_attributes(holder)
            if not getattr(holder, name).startswith(self.server)
        ]
        if stray:
            # A newer astroquery grew an endpoint we do not know how to move.
            raise ResolveError(
                "astroquery has endpoints that hstsync cannot point at the configured "
                f"server: {', '.join(stray)}"
            )

    @staticmethod
    def _url_holders(obs: Any) -> list[Any]:
        return [obs._portal_api_connection, obs._service_api_connection, obs._auth_obj]

    def _set_token(self, token: str) -> None:
        # astroquery authenticates with a `mast_token` cookie. Scoping it to the
        # configured host keeps requests from sending it anywhere else, a redirect
        # included; `secure` keeps an https server's token off a redirect to http.
        # Cookies ignore ports unless told: an explicit port in the server URL scopes
        # it to that port too (another service on the same machine gets nothing).
        check_transport(self.server)
        parts = urlsplit(self.server)
        self._obs._session.cookies.set(
            "mast_token",
            token,
            domain=token_domain(self.server),
            path="/",
            secure=parts.scheme == "https",
            port=str(parts.port) if parts.port is not None else None,
        )

    # -- resolution -------------------------------------------------------------------
    #
    # In steps, so a caller can bound, retry and batch each archive call on its own:
    # ``observations`` (one page), ``product_table`` (one batch of obsids), then
    # ``select`` (filters and the row → Product boundary; no network).
    # ``resolve_batches`` runs them in order, blocking (``hstsync plan``).

    def resolve_batches(
        self, request: Request, sieve: Sieve | None = None
    ) -> Iterator[list[Product]]:
        """The products a request names today, one batch of observations at a time.
        Blocking (``hstsync plan``; the pass calls the steps itself, ``service.sync.lookup``).

        Each batch's table is asked for, selected and dropped before the next: a
        program of 100,000 products never holds more than one batch's table. Raises
        :class:`ManifestError` for what the user must fix (an unknown criterion, a
        proposal with no observations), :class:`ArchiveUnavailable` for trouble worth
        trying again soon and :class:`ResolveError` for other archive trouble.
        ``sieve`` follows what the filters let through (and why nothing, if so).
        """
        claims = Claims()
        batcher = Batcher(batch_sizes(request.collection))
        listing = Listing()

        def listed(batch: list[str]) -> Iterator[list[Product]]:
            if len(batch) > batcher.limit:  # a half made before the limit came down
                for run in batcher.fit(batch):
                    yield from listed(run)
                return
            try:
                table = self.product_table(batch)
            except ArchiveUnavailable as exc:
                halves = batcher.split(batch)
                if halves is None:
                    raise
                log.warning(halving(request.name, batch, exc))
                for half in halves:
                    yield from listed(half)
                return
            yield self.select(request, [table], claims, sieve)

        while not listing.done:
            found = self.observations(request, listing.page)
            if sieve is not None:
                sieve.observed(found.rows, len(found.planned))
            batches = batcher.add(found.obsids, found.planned)
            listing.took(found, batcher.fresh)
            for batch in batches:
                yield from listed(batch)
        for batch in batcher.rest():
            yield from listed(batch)

    def observations(self, request: Request, page: int = 1) -> ObservationPage:
        """One page of the request's observations (``query_criteria``,
        :data:`~hstsync.archive.paging.OBS_PAGE` a page), with the paging the archive
        says it used. Blocking.

        A page at a time because astroquery holds every page's JSON and table at once:
        25,000 observations cost 110 MB for the moment it parses them. Whether to ask
        for the next page is :class:`Listing`'s to say.
        """
        self._paging, self._listing = None, True
        try:
            with self._translated(), warnings.catch_warnings():
                # NoResultsWarning and friends: we report emptiness ourselves.
                warnings.simplefilter("ignore")
                observations = self._obs.query_criteria(
                    proposal_id=query_ids(request.collection, request.proposal_ids),
                    obs_collection=request.collection,
                    pagesize=paging.OBS_PAGE,
                    page=page,
                    **dict(request.criteria),
                )
                if len(observations) == 0 and page == 1:
                    raise ManifestError(self._why_no_observation(request))
                obsids = [str(o) for o in observations["obsid"] if not missing(o) and str(o)]
                planned = _planned(observations)
        finally:
            self._listing = False
        said: dict[str, Any] = self._paging or {}
        log.debug("request %s: %d observations on page %d", request.name, len(obsids), page)
        return ObservationPage(
            obsids,
            rows=len(observations),
            page_size=page_count(said.get("pageSize")) or paging.OBS_PAGE,
            pages=page_count(said.get("pagesFiltered")),
            planned=planned,
        )

    def _why_no_observation(self, request: Request) -> str:
        """Why a request's first page of observations is empty: its proposal has none,
        or its criteria match none of them (one more query, without the criteria, says
        which values there are)."""
        ids = ", ".join(request.proposal_ids)
        nothing = f"proposal {ids} has no {request.collection} observations"
        if not request.criteria:
            return nothing
        self._listing = False
        observations = self._obs.query_criteria(
            proposal_id=query_ids(request.collection, request.proposal_ids),
            obs_collection=request.collection,
            pagesize=paging.OBS_PAGE,
            page=1,
        )
        if len(observations) == 0:
            return nothing
        whole = len(observations) < paging.OBS_PAGE
        return why_no_observation(
            request.proposal_ids,
            request.criteria,
            observations,
            whole=whole,
            collection=request.collection,
        )

    def product_table(self, obsids: list[str]) -> Any:
        """The products table of one batch of obsids (``get_product_list``). Blocking."""
        with self._translated(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._obs.get_product_list(obsids)

    def select(
        self,
        request: Request,
        tables: Iterable[Any],
        claims: Claims | None = None,
        sieve: Sieve | None = None,
    ) -> list[Product]:
        """``filter_products`` over the batches' tables, then rows → products.

        ``claims``: the tables are part of a bigger list, resolved batch by batch
        (:class:`~hstsync.archive.rows.Claims`); what earlier batches gave out is left
        out. ``sieve`` is told what the filters kept.
        """
        from astropy.table import vstack

        filled = [t for t in tables if len(t)]
        if not filled:
            return []
        with self._translated(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            products = vstack(filled) if len(filled) > 1 else filled[0]
            filtered = self._obs.filter_products(products, **dict(request.filters))
            if sieve is not None:
                sieve.saw(products, len(filtered), self._obs.filter_products)
        result = products_from_rows(filtered, claims)
        if self._unusable:
            result = [
                replace(p, size=None, problem=p.problem or self._unusable[p.data_uri])
                if p.data_uri in self._unusable
                else p
                for p in result
            ]
        log.log(
            logging.INFO if claims is None else logging.DEBUG,
            "request %s: %d product rows, %d selected, %d products",
            request.name,
            len(products),
            len(filtered),
            len(result),
        )
        return result

    def cloud_keys(self, data_uris: list[str]) -> dict[str, str]:
        """The public bucket's keys of these products, as MAST's path-lookup service
        gives them (what astroquery's cloud module asks); a product the bucket does not
        hold is left out. Blocking; :data:`PATH_LOOKUP_CHUNK` dataURIs a request.

        Asked of the configured server: astroquery's own helper always asks
        ``https://mast.stsci.edu``. A key is kept only if it names the product's own
        file (:func:`~hstsync.archive.cloud.checked_key`).
        """
        keys: dict[str, str] = {}
        url = self.server + PATH_LOOKUP_PATH
        for start in range(0, len(data_uris), PATH_LOOKUP_CHUNK):
            chunk = data_uris[start : start + PATH_LOOKUP_CHUNK]
            with self._translated():
                response = self._obs._session.request(
                    "GET", url, params=[("uri", uri) for uri in chunk]
                )
                response.raise_for_status()
                answer = response.json()
            if not isinstance(answer, dict):
                raise ResolveError("unexpected answer from the archive's path lookup")
            for uri in chunk:
                entry = answer.get(uri)
                path = entry.get("path") if isinstance(entry, dict) else None
                key = checked_key(path, uri)
                if key is not None:
                    keys[uri] = key
        return keys

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """astroquery's and requests' exceptions → ours, with reasons a person reads."""
        from astroquery.exceptions import InvalidQueryError, RemoteServiceError
        from requests import ConnectionError as RequestsConnectionError
        from requests import RequestException, Timeout

        try:
            yield
        except InvalidQueryError as exc:
            raise ManifestError(f"the archive refused the query: {_said(exc)}") from None
        except RemoteServiceError as exc:
            raise ArchiveUnavailable(f"the archive answered with an error: {_said(exc)}") from None
        except Timeout:
            raise ArchiveUnavailable(
                f"the archive did not answer within {self.timeout:g} s"
            ) from None
        except RequestException as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            message = f"cannot reach the archive at {self.server}: {_reason(exc)}"
            transient = (
                status is None
                or status >= 500
                or status == 429
                or isinstance(exc, RequestsConnectionError)
            )
            raise (ArchiveUnavailable if transient else ResolveError)(message) from None
        except TimeoutError:
            # astroquery's own limit on EXECUTING polling
            raise ArchiveUnavailable(
                f"the archive did not finish the query within {self.timeout:g} s"
            ) from None
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise ResolveError(
                f"unexpected answer from the archive: {type(exc).__name__}"
            ) from None

    def session_info(self) -> dict[str, Any]:
        """The archive's view of the current token (``Observations.session_info``).

        Asked through astroquery's auth helper, whose session-info URL points at the
        configured server like every other endpoint. Blocking. Raises
        :class:`ResolveError` with a reason that never quotes the request.
        """
        from requests import RequestException, Timeout

        try:
            info = self._obs.session_info(verbose=False)
        except ValueError:  # not JSON (requests' JSONDecodeError is a ValueError too)
            raise ResolveError(
                f"the archive at {self.server} answered the session-info request "
                "with something other than JSON"
            ) from None
        except Timeout:
            raise ResolveError(
                f"the archive at {self.server} did not answer within {self.timeout:g} s "
                "([mast] timeout)"
            ) from None
        except RequestException as exc:
            raise ResolveError(
                f"cannot reach the archive at {self.server}: {_reason(exc)}"
            ) from None
        if not isinstance(info, dict):
            raise ResolveError(f"unexpected session info from the archive at {self.server}")
        return info


#: the calibration level of an observation planned, not yet executed (the JWST
#: pipeline's "Processing Levels": -1)
PLANNED_LEVEL = -1


def _planned(observations: Any) -> frozenset[str]:
    """The obsids of the observations planned, not yet executed (calib_level -1)."""
    if "calib_level" not in observations.colnames:
        return frozenset()
    pairs = zip(observations["obsid"], observations["calib_level"], strict=True)
    return frozenset(str(obsid) for obsid, level in pairs if _is_planned(obsid, level))


def _is_planned(obsid: Any, level: Any) -> bool:
    if missing(obsid) or missing(level):
        return False
    try:
        return int(level) == PLANNED_LEVEL
    except (TypeError, ValueError, OverflowError):
        return False


def halving(name: str, batch: list[str], exc: Exception) -> str:
    """The log line of a product list asked for again in halves."""
    return (
        f"request {name}: the product list of {len(batch)} observations failed ({exc}); "
        f"asking for it in halves of {(len(batch) + 1) // 2}"
    )


def _url_attributes(holder: Any) -> Iterator[str]:
    for name in dir(holder):
        if name.isupper() and name.endswith("_URL") and isinstance(getattr(holder, name), str):
            yield name


#: characters of an archive's own message kept in an error
SAID_CHARS = 500


def _said(exc: Exception) -> str:
    """The archive's own message: data, made printable (it reaches ``last_error``, the
    log and ``status``) and bounded."""
    text = printable(str(exc))
    return text if len(text) <= SAID_CHARS else text[: SAID_CHARS - 1] + "…"


def _reason(exc: Exception) -> str:
    # requests' messages can repeat the URL with its query; the class name and
    # HTTP status (if any) say enough without risking a token in a log.
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status:
        return f"HTTP {status}"
    return _network_reason(exc) or type(exc).__name__


def _network_reason(exc: BaseException) -> str | None:
    """Refused, name not found or timed out, read off the exception chain (never its
    text, which can carry the URL); with the configuration key to check."""
    import socket

    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or item in seen:
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__, *getattr(item, "args", ())[:1]]
        todo = [t for t in todo if isinstance(t, BaseException) or t is None]
    hint = "; check [mast] server in the configuration file"
    for item in seen:
        if isinstance(item, socket.gaierror):
            return f"the host name was not found (DNS){hint}"
        if isinstance(item, ConnectionRefusedError):
            return f"connection refused (nothing listens there){hint}"
        if isinstance(item, TimeoutError) or "Timeout" in type(item).__name__:
            return f"timed out{hint}"
    if "NameResolution" in repr(seen) or "Name or service not known" in repr(seen):
        return f"the host name was not found (DNS){hint}"
    if "Connection refused" in repr(seen):
        return f"connection refused (nothing listens there){hint}"
    return None
