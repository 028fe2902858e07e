"""The retry policy, all of it: which failures, how many attempts, how long to wait.

Only :class:`~hstsync.errors.TransferError` is retried (a 403 for public data is one,
and so is running out of descriptors); a refusal (401/403/404) or a disk that cannot
be written ends the transfer at once. A file has one budget of ``retries + 1``
attempts, whole-file attempts and segment retries alike. The wait is exponential
backoff with jitter, raised to the server's ``Retry-After`` when it sent one (capped
at :data:`~hstsync.transfer.http.RETRY_AFTER_CAP`, not at ``backoff_max``). Each wait
is logged (one WARNING per failed attempt, naming the attempt that failed; nothing
else in the package logs a retried failure) and announced to the caller's ``on_retry``
hook first.
:func:`retrying` builds the tenacity object; nothing else in the package retries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from hstsync.config import DownloadConfig
from hstsync.errors import RetryLater, TransferError
from hstsync.transfer.outcome import Transfer

log = logging.getLogger(__name__)

#: called before each wait between two attempts: (transfer, attempts failed so far, error)
OnRetry = Callable[[Transfer, int, str], None]
T = TypeVar("T")


class Attempts:
    """A file's one budget of attempts: whole-file attempts and range retries alike."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: attempts made so far (the one under way included)
        self.count = 0


class Backoff:
    """Exponential backoff with jitter, raised to the server's Retry-After if it sent one."""

    def __init__(self, cfg: DownloadConfig) -> None:
        self._exponential = wait_exponential_jitter(
            multiplier=cfg.backoff, max=cfg.backoff_max, jitter=cfg.backoff
        )

    def __call__(self, state: RetryCallState) -> float:
        wait = self._exponential(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RetryLater) and exc.retry_after is not None:
            # a lower bound: the server's wish wins over a shorter backoff, and
            # backoff_max does not cut it short (RETRY_AFTER_CAP does).
            wait = max(wait, exc.retry_after)
        return wait


def retrying(
    cfg: DownloadConfig,
    transfer: Transfer,
    attempts: Attempts,
    *,
    sleep: Callable[[float], Awaitable[None]],
    on_retry: OnRetry | None = None,
    segment: bool = False,
) -> AsyncRetrying:
    """The retry policy's object for one transfer or one segment (a fresh one each).

    One budget of ``retries + 1`` attempts per file: a segment's retry (only that
    segment is fetched again) spends from the same count as a whole-file attempt,
    so a dead server costs a segmented file no more attempts than a plain one.
    A whole-file attempt counts itself (``attempts.count``); a segment's retry is
    counted here, when granted.
    """
    failed = 0  # the number of the attempt that just failed, for the log line

    def announce(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "%s: %s; retrying in %.1f s (attempt %d of %d failed)",
            transfer.label,
            exc,
            state.upcoming_sleep,
            failed,
            attempts.limit,
        )
        if on_retry is not None:
            try:
                on_retry(transfer, failed, str(exc))
            except Exception:  # a hook's bug must not end the transfer
                log.error("%s: on_retry failed", transfer.label, exc_info=True)

    def spent(_: RetryCallState) -> bool:
        nonlocal failed
        failed = attempts.count
        if attempts.count >= attempts.limit:
            return True
        if segment:  # counted when granted: segments failing together share the count
            attempts.count += 1
        return False

    return AsyncRetrying(
        sleep=sleep,
        stop=spent,
        wait=Backoff(cfg),
        retry=retry_if_exception_type(TransferError),
        before_sleep=announce,
        reraise=True,
    )


async def with_retries(once: Callable[[], Awaitable[T]], policy: Callable[[], AsyncRetrying]) -> T:
    """``once()``, and again under ``policy()`` if it fails with a TransferError.

    The first try runs outside the policy: building the policy costs more than a small
    file's whole transfer, and most first tries succeed. A first failure is handed to
    the policy as its first attempt's, so the waits, the log lines and ``on_retry`` are
    the same as if it had run there.
    """
    try:
        return await once()
    except TransferError as exc:
        failed: TransferError | None = exc

    async def attempt() -> T:
        nonlocal failed
        if failed is not None:
            exc, failed = failed, None
            raise exc
        return await once()

    return await policy()(attempt)
