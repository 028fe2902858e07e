"""How the MAST token stands with the archive: asked for a new token and again every
:data:`TOKEN_CHECK_SECONDS` (a token may be revoked, and a daemon runs for months: a
week's warning of its expiry needs a look each day). The answer is recorded for
``status`` and ``/metrics``; a token refused or expiring soon is logged, and told
through the hook once per standing.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time

from hstsync.archive import standing_of
from hstsync.errors import HstsyncError, StoreError
from hstsync.model import TIME_FORMAT
from hstsync.service.sync.hooks import Notices
from hstsync.service.sync.lookup import Lookups
from hstsync.store import Store, utc_now

log = logging.getLogger(__name__)

#: how often the archive is asked again how the token stands
TOKEN_CHECK_SECONDS = 6 * 3600.0


class Keep(enum.Enum):
    """A field left as it is."""

    KEEP = enum.auto()


class TokenStanding:
    """The last look at the token's standing, and what it recorded and told."""

    def __init__(self, store: Store, notices: Notices, lookups: Lookups) -> None:
        self.store = store
        self._notices = notices
        self._lookups = lookups
        #: the token whose standing was last asked, and when (monotonic seconds; None:
        #: never)
        self._checked: str | None = None
        self._checked_at: float | None = None

    async def check(self, token: str | None, source: str | None) -> None:
        """Ask the archive how the token stands: for a new token, and again every
        :data:`TOKEN_CHECK_SECONDS`. Recorded for ``status`` and ``/metrics``; a token
        refused or expiring soon is logged, and told through the hook once."""
        now = time.monotonic()
        checked = self._checked_at
        if checked is not None and token == self._checked and now - checked < TOKEN_CHECK_SECONDS:
            return
        self._checked, self._checked_at = token, now
        if not token:
            self._record("none", "no MAST token: public data only")
            return
        try:
            info = await self._lookups.session_info()
        except HstsyncError as exc:
            log.warning("cannot check the MAST token: %s", exc)
            self._record("unknown", f"cannot check the MAST token: {exc}")
            return
        standing = standing_of(info, source=source)
        expires = standing.expires.strftime(TIME_FORMAT) if standing.expires else None
        if not standing.worrying:
            log.info("MAST token %s", standing.message)
            self._record(standing.state, standing.message, expires, told=None)
            return
        log.warning("%s", standing.message)
        told = f"{standing.state} {expires or ''}".strip()
        before = self._facts_told()
        self._record(standing.state, standing.message, expires, told=told)
        if before != told:
            self._notices.post(
                f"token_{standing.state}",
                None,
                standing.message,
                expires=expires,
                source=source,
            )

    def _facts_told(self) -> str | None:
        with contextlib.suppress(StoreError):
            return self.store.facts().token_told
        return None

    def _record(
        self,
        state: str,
        message: str,
        expires: str | None = None,
        *,
        told: str | Keep | None = Keep.KEEP,
    ) -> None:
        """How the token stands, for ``status`` and ``/metrics``; ``told``: the event
        told last through the hook, when that changes."""
        fields: dict[str, str | None] = {
            "token_state": state,
            "token_expires": expires,
            "token_checked": utc_now(),
            "token_message": message,
        }
        if not isinstance(told, Keep):
            fields["token_told"] = told
        with contextlib.suppress(StoreError):  # a fact for people, never the pass's end
            self.store.set_facts(**fields)
