"""Live progress for people at a terminal (``run --once`` on a TTY).

Only the CLI creates one, and only when stderr is a terminal: the daemon and
anything logged stay one line per event. :class:`Mirror` reports through the small
:class:`hstsync.service.sync.PassProgress` protocol, so it never knows how progress is
drawn.

While the bars are up the terminal shows them and warnings, not a log line per file
(``quiet_logs``), and does not echo ``^C``: an echo at the end of a full-width bar
wraps the cursor onto a line of its own, and the next redraw leaves the top bar behind.
The bars go when the pass ends; the command then prints where each request stands.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import (
    Progress as RichBar,
)


class TerminalProgress:
    """One bar per request and one overall: files, bytes, rate, ETA."""

    def __init__(self, console: Console | None = None, *, quiet_logs: bool = True) -> None:
        self._quiet_logs = quiet_logs
        self._bar = RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]}"),
            DownloadColumn(binary_units=False),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            # the bars say how far a pass got while it runs; once it has ended, the
            # summary says where it ended (an interrupted pass leaves no bar with an ETA)
            transient=True,
        )
        self._overall: TaskID | None = None
        self._tasks: dict[str, TaskID] = {}
        self._files: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> TerminalProgress:
        self._echo = _quiet_control_echo(self._bar.console.file)
        self._bar.start()
        # Log lines must go above the bars, not through them: rich now proxies
        # sys.stderr, but logging's handlers still hold the real stream.
        self._streams: list[tuple[logging.StreamHandler[Any], Any, int]] = []
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__:
                level = handler.level
                if self._quiet_logs:
                    handler.setLevel(max(level, logging.WARNING))
                self._streams.append((handler, handler.setStream(sys.stderr), level))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handler, stream, level in self._streams:
            handler.setStream(stream)
            handler.setLevel(level)
        try:
            self._bar.stop()
        finally:
            self._echo.close()

    def _label(self, key: str) -> str:
        done, total = self._files[key]
        return f"{done}/{total} files"

    def planned(self, request: str, files: int, size: int, held: int = 0) -> None:
        """``held``: bytes already on disk (complete files, parts to resume); the bars
        start there, so a resumed pass does not count from zero. A big program is
        planned a batch at a time: each batch adds to its request's bar."""
        if request in self._tasks:
            done, before = self._files[request]
            self._files[request] = (done, before + files)
            task = self._bar.tasks[self._tasks[request]]
            self._bar.update(
                self._tasks[request],
                total=(task.total or 0) + size,
                completed=task.completed + held,
                files=self._label(request),
            )
        else:
            self._files[request] = (0, files)
            self._tasks[request] = self._bar.add_task(
                request, total=size, completed=held, files=self._label(request)
            )
        if self._overall is None:
            self._files["all"] = (0, 0)
            self._overall = self._bar.add_task("all", total=0, files="")
        done, total = self._files["all"]
        self._files["all"] = (done, total + files)
        overall = self._bar.tasks[self._overall]
        self._bar.update(
            self._overall,
            total=(overall.total or 0) + size,
            completed=overall.completed + held,
            files=self._label("all"),
        )

    def advanced(self, request: str, delta: int) -> None:
        if request in self._tasks:
            self._bar.advance(self._tasks[request], delta)
        if self._overall is not None:
            self._bar.advance(self._overall, delta)

    def file_done(self, request: str) -> None:
        for key in (request, "all"):
            if key in self._files:
                done, total = self._files[key]
                self._files[key] = (done + 1, total)
        if request in self._tasks:
            self._bar.update(self._tasks[request], files=self._label(request))
        if self._overall is not None:
            self._bar.update(self._overall, files=self._label("all"))


def _quiet_control_echo(stream: Any) -> contextlib.ExitStack:
    """Stop the terminal behind ``stream`` echoing control characters (``^C``) until
    the returned stack is closed; nothing where ``stream`` is no terminal."""
    stack = contextlib.ExitStack()
    try:
        import termios
    except ImportError:  # not a POSIX terminal
        return stack
    try:
        fd = stream.fileno()
        before = termios.tcgetattr(fd)
    except (AttributeError, ValueError, OSError, termios.error):
        return stack
    quiet = list(before)
    quiet[3] &= ~termios.ECHOCTL
    with contextlib.suppress(termios.error):
        termios.tcsetattr(fd, termios.TCSADRAIN, quiet)
        stack.callback(_restore, fd, before)
    return stack


def _restore(fd: int, attributes: list[Any]) -> None:
    import termios

    with contextlib.suppress(termios.error, OSError):
        termios.tcsetattr(fd, termios.TCSADRAIN, attributes)
