"""The archive's failures, as ours: astroquery's and requests' exceptions -> our errors.

Every archive call runs inside :func:`translated`, which decides what a failure means
for the pass: :class:`ManifestError` for what the user must fix (the archive refused
the query), :class:`ArchiveUnavailable` for trouble worth trying again soon (5xx, 429,
no connection, a timeout) and :class:`ResolveError` for other archive trouble. The
reasons are for people and never quote a request: requests' own messages can repeat
the URL with its query, and so a token (:func:`reason`); the archive's own words are
data, made printable and bounded (:func:`said`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from hstsync.errors import ArchiveUnavailable, ManifestError, ResolveError
from hstsync.text import printable

#: characters of an archive's own message kept in an error
SAID_CHARS = 500


@contextlib.contextmanager
def translated(server: str, timeout: float) -> Iterator[None]:
    """astroquery's and requests' exceptions → ours, with reasons a person reads.

    ``server`` and ``timeout`` are the client's, named in the reasons."""
    from astroquery.exceptions import InvalidQueryError, RemoteServiceError
    from requests import ConnectionError as RequestsConnectionError
    from requests import RequestException, Timeout

    try:
        yield
    except InvalidQueryError as exc:
        raise ManifestError(f"the archive refused the query: {said(exc)}") from None
    except RemoteServiceError as exc:
        raise ArchiveUnavailable(f"the archive answered with an error: {said(exc)}") from None
    except Timeout:
        raise ArchiveUnavailable(f"the archive did not answer within {timeout:g} s") from None
    except RequestException as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        message = f"cannot reach the archive at {server}: {reason(exc)}"
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
            f"the archive did not finish the query within {timeout:g} s"
        ) from None
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise ResolveError(f"unexpected answer from the archive: {type(exc).__name__}") from None


def said(exc: Exception) -> str:
    """The archive's own message: data, made printable (it reaches ``last_error``, the
    log and ``status``) and bounded."""
    text = printable(str(exc))
    return text if len(text) <= SAID_CHARS else text[: SAID_CHARS - 1] + "…"


def reason(exc: Exception) -> str:
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
