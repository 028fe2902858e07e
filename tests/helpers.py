"""Helpers shared by the tests, most by those running a real daemon (``python -m hstsync run``).

``daemon(root, config)`` starts one against a config from :func:`write_config` and waits
until it watches; :func:`until` polls a condition with a generous deadline (a failure
message, not a speed check); :func:`request_state` reads the store as ``status`` would.
:class:`Naps` is the recording ``sleep`` the in-process transfer tests hand a downloader.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from hstsync.errors import StoreError
from hstsync.model import RequestState
from hstsync.store.db import Store


class Naps:
    """A ``sleep`` that records what it was asked to wait, and does not wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def write_config(
    root: Path, server: str, *, download: Mapping[str, int] | None = None, **schedule: str
) -> Path:
    """A daemon config under ``root``: quick retries, ``download`` keys added to
    ``[download]`` (numbers), ``schedule`` keys to ``[schedule]`` (strings)."""
    (root / "requests").mkdir(exist_ok=True)
    config = root / "config.toml"
    text = (
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n'
        "[download]\nbackoff = 0.05\nbackoff_max = 0.5\ntimeout = 10\n"
        + "".join(f"{k} = {v}\n" for k, v in (download or {}).items())
    )
    if schedule:
        text += "[schedule]\n" + "".join(f'{k} = "{v}"\n' for k, v in schedule.items())
    config.write_text(text)
    return config


class Daemon:
    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@asynccontextmanager
async def daemon(
    root: Path, config: Path, env: dict[str, str] | None = None, *, verbose: bool = False
) -> AsyncIterator[Daemon]:
    log = root / f"daemon-{len(list(root.glob('daemon-*.log')))}.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hstsync",
            *(["--verbose"] if verbose else []),
            "run",
            "--config",
            str(config),
            stdout=sink,
            stderr=sink,
            env=dict(os.environ, HSTSYNC_NO_KEYRING="1", **(env or {})),
        )
    d = Daemon(proc, log)
    try:
        await until(lambda: "watching" in d.output(), what="the daemon to start", daemon=d)
        yield d
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def until(
    condition: Callable[[], bool], *, what: str, timeout: float = 60, daemon: Daemon | None = None
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if daemon is not None and daemon.proc.returncode is not None:
            raise AssertionError(f"daemon exited while waiting for {what}:\n{daemon.output()}")
        if loop.time() > deadline:
            tail = daemon.output()[-3000:] if daemon else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        await asyncio.sleep(0.1)


def request_state(root: Path, name: str) -> RequestState | None:
    try:
        with Store.open_readonly(root / "hstsync.db") as store:
            row = store.get_request(name)
    except StoreError:
        return None
    return row.state if row else None
