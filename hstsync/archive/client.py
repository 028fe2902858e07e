"""astroquery's Observations client, pointed at the configured server and bounded.

The trap this module exists to close: ``astroquery.mast`` computes its endpoint
URLs from ``conf.server`` when it is imported, so changing the config afterwards
changes nothing. :class:`Client` builds a private ``ObservationsClass`` and rewrites
every URL attribute of its portal, service and auth objects to the configured server,
then checks that none is left pointing anywhere else. The token rides in a cookie
scoped to that server alone.

Every request of the client's one session goes through :class:`Client`, which makes
it the place to do what must happen to each: a socket timeout (astroquery passes
none), ``size`` cells astroquery cannot parse taken out of each portal answer before
it reads it (:func:`~hstsync.archive.cells.unusable_sizes`), and the ``paging`` block
astroquery drops kept while observations are listed. It asks one thing itself, the
archive's view of the token (:meth:`Client.session_info`); the rest is asked through
it by ``observations``, ``products`` and ``pathlookup``, and the
:class:`~hstsync.archive.resolve.Resolver` holds one client and offers their steps.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

from hstsync.archive.auth import check_transport, token_domain
from hstsync.archive.cells import unusable_sizes
from hstsync.archive.failures import reason, translated
from hstsync.archive.paging import paging_of
from hstsync.errors import ResolveError

_ENDPOINT_SUFFIX = "/api/v0/invoke"


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


class Client:
    """astroquery's ``ObservationsClass`` asking one MAST server, and what its answers
    said beside their tables. Not thread-safe: one call at a time per instance
    (astroquery's session and table caches are shared state).

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
        #: astroquery's client, every URL of it pointing at ``server``
        self.obs = ObservationsClass()
        #: dataURI -> why its catalogue size could not be used, for cells taken out of
        #: the portal's answer before astroquery parses it (:func:`unusable_sizes`)
        self.unusable: dict[str, str] = {}
        #: the ``paging`` block of the last portal answer, kept while :attr:`listing`
        self.paging: dict[str, Any] | None = None
        #: a page of observations is being asked for: keep its ``paging`` block
        self.listing = False
        self._repoint(self.obs)
        self._bound(self.obs)
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
                self.unusable |= unusable_sizes(response)
                if self.listing:
                    self.paging = paging_of(response)
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
        self.obs._session.cookies.set(
            "mast_token",
            token,
            domain=token_domain(self.server),
            path="/",
            secure=parts.scheme == "https",
            port=str(parts.port) if parts.port is not None else None,
        )

    def translated(self) -> AbstractContextManager[None]:
        """Around an archive call: its failures as ours
        (:func:`hstsync.archive.failures.translated`)."""
        return translated(self.server, self.timeout)

    def session_info(self) -> dict[str, Any]:
        """The archive's view of the current token (``Observations.session_info``).

        Asked through astroquery's auth helper, whose session-info URL points at the
        configured server like every other endpoint. Blocking. Raises
        :class:`ResolveError` with a reason that never quotes the request.
        """
        from requests import RequestException, Timeout

        try:
            info = self.obs.session_info(verbose=False)
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
                f"cannot reach the archive at {self.server}: {reason(exc)}"
            ) from None
        if not isinstance(info, dict):
            raise ResolveError(f"unexpected session info from the archive at {self.server}")
        return info


def _url_attributes(holder: Any) -> Iterator[str]:
    for name in dir(holder):
        if name.isupper() and name.endswith("_URL") and isinstance(getattr(holder, name), str):
            yield name
