"""Worker threads that never hold the process up at exit.

asyncio's default executor is a ``ThreadPoolExecutor``: ``asyncio.run`` waits for it
at the end and the interpreter joins its threads at exit. A resolution stuck inside
astroquery (its portal calls have no socket timeout) then keeps a stopped daemon
alive until systemd kills it. :class:`WorkerThreads` runs ``asyncio.to_thread`` calls
on daemon threads and its ``shutdown`` does not wait: once the event loop is done,
the process exits whatever a worker is blocked on. Only work whose result nobody
awaits any more is abandoned; every file and row is settled by the loop's own
cleanup before that.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class WorkerThreads(ThreadPoolExecutor):
    """A pool of daemon threads, as many as ``ThreadPoolExecutor``'s default.

    A ``ThreadPoolExecutor`` only by type (asyncio accepts no other as its default);
    none of its own threads is ever started, so none is joined at exit.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)
        self._max = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._work: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._started = 0
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new work after shutdown")
            future: Future[T] = Future()
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and self._started < self._max:
                self._started += 1
                threading.Thread(
                    target=self._serve, name=f"hstsync-worker-{self._started}", daemon=True
                ).start()
            return future

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the idle threads; never wait for a busy one (see the module docstring)."""
        with self._lock:
            self._closed = True
            for _ in range(self._started):
                self._work.put(None)


def use_worker_threads(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop``'s ``asyncio.to_thread`` calls run on :class:`WorkerThreads`."""
    loop.set_default_executor(WorkerThreads())
