"""Helpers shared by the tests, most by those running a real daemon (``python -m hstsync run``).

``daemon(root, config)`` starts one against a config from :func:`write_config` and waits
until it watches; :func:`run_hstsync` runs one command to its end; :func:`until` polls
a condition with a generous deadline (a failure message, not a speed check);
:func:`request_state` reads the store as ``status`` would; :func:`drop` writes a
manifest as people are told to; :func:`assert_tree_identical` checks the tutorial's files.
:class:`Naps` is the recording ``sleep`` the in-process transfer tests hand a downloader;
:func:`notify_socket` is systemd's end of a daemon's ``NOTIFY_SOCKET``;
:func:`recording_hook` an ``on_change`` hook that keeps what it is told (:func:`told`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from hstsync.emulator import Emulator
from hstsync.errors import StoreError
from hstsync.model import RequestState
from hstsync.store.db import Store
from hstsync.transfer import held_bytes


async def run_hstsync(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 110,
) -> tuple[int, str, str]:
    """``python -m hstsync ARGS`` to its end: exit code, stdout, stderr. Without ``env``,
    this environment without the developer's keyring."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hstsync",
        *args,
        cwd=cwd,
        env=dict(env) if env is not None else dict(os.environ, HSTSYNC_NO_KEYRING="1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


class Naps:
    """A ``sleep`` that records what it was asked to wait, and does not wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def recording_hook(root: Path, into: Path) -> str:
    """The command of an ``on_change`` hook that appends every document it is given to
    ``into``, a JSON line each (:func:`told` reads them back); its script in ``root``."""
    script = root / "hook.py"
    script.write_text(
        "import json, sys\n"
        f"with open({str(into)!r}, 'a') as f:\n"
        "    f.write(json.dumps(json.load(sys.stdin)) + '\\n')\n"
    )
    return f"{sys.executable} {script}"


def told(hook: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The documents a :func:`recording_hook` was given (of ``event`` only, when named)."""
    if not hook.exists():
        return []
    docs = [json.loads(line) for line in hook.read_text().splitlines()]
    return [doc for doc in docs if event is None or doc.get("event") == event]


@contextlib.contextmanager
def notify_socket(directory: Path) -> Iterator[NotifySocket]:
    """systemd's notify socket, bound in ``directory`` (its :attr:`~NotifySocket.address`
    goes in a daemon's ``NOTIFY_SOCKET``) and closed after."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        address = str(directory / "notify.sock")
        sock.bind(address)
        sock.setblocking(False)
        yield NotifySocket(sock, address)
    finally:
        sock.close()


class NotifySocket:
    def __init__(self, sock: socket.socket, address: str) -> None:
        self._sock = sock
        self.address = address

    async def message(self, timeout: float = 10) -> list[bytes]:
        """The next message a daemon sent, line by line (``READY=1``, ``WATCHDOG=1``)."""
        loop = asyncio.get_running_loop()
        return (await asyncio.wait_for(loop.sock_recv(self._sock, 4096), timeout)).split(b"\n")


def write_config(
    root: Path, server: str, *, download: Mapping[str, object] | None = None, **schedule: str
) -> Path:
    """A daemon config under ``root``: quick retries, ``download`` keys added to
    ``[download]`` (written as given: numbers, or strings with their quotes),
    ``schedule`` keys to ``[schedule]`` (strings)."""
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


HST = Path("mastDownload/HST")


def held_under(mirror: Path) -> int:
    """Bytes fetched so far into the parts under ``mirror``."""
    parts = mirror.rglob("*.part")
    return sum(held_bytes(p.with_name(p.name.removesuffix(".part"))) for p in parts)


async def until_done(
    root: Path,
    d: Daemon,
    name: str = "7291",
    what: str = "7291 to be mirrored",
    timeout: float = 60,
) -> None:
    await until(
        lambda: request_state(root, name) is RequestState.DONE,
        what=what,
        daemon=d,
        timeout=timeout,
    )


async def until_transferring(root: Path, d: Daemon, held: int = 4_000_000) -> None:
    """Until ``held`` bytes sit in partial files: a moment to interrupt transfers."""
    await until(lambda: held_under(root / "mirror") > held, what="transfers under way", daemon=d)


def drop(root: Path, name: str, text: str) -> None:
    """The convention: write NAME.toml.tmp, then rename."""
    tmp = root / "requests" / f"{name}.tmp"
    tmp.write_text(text)
    tmp.rename(root / "requests" / name)


def assert_tree_identical(root: Path, emulator: Emulator, names: list[str]) -> None:
    for name in names:
        obs_id = name.split("_")[0]
        path = root / "mirror" / HST / obs_id / name
        assert path.read_bytes() == emulator.body(f"mast:HST/product/{name}"), name
    leftovers = list((root / "mirror").rglob("*.part"))
    assert leftovers == []


@contextlib.contextmanager
def tmpfs(directory: Path, size: str, *options: str) -> Iterator[Path]:
    """``directory`` as a tmpfs of ``size`` with mount ``options`` (``"ro"``): writes
    beyond its size fail with ENOSPC, on a read-only one with EROFS. Needs to mount
    (root); skips otherwise."""
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("needs mount(8) for a tmpfs")
    opts = ",".join([f"size={size}", *options])
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(directory)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def small_disk(directory: Path, size: str = "4k") -> contextlib.AbstractContextManager[Path]:
    """``directory`` on a tmpfs of ``size``: writes beyond it fail with ENOSPC.

    Needs to mount (root); skips otherwise. A symbolic link to /dev/full no longer
    serves: hstsync refuses to write a part through a link."""
    return tmpfs(directory, size)


def leave_part(dest: Path, data: bytes, validator: str | None, size: int | None = None) -> Path:
    """A ``.part`` of ``dest`` holding ``data`` (the file's first bytes) as a stopped
    transfer leaves it: beside it the control file naming those bytes and the answer
    they came from (``validator``, sent back as If-Range when it resumes)."""
    from hstsync.transfer.control import Control, write_control

    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data)
    write_control(part, Control(size, validator, ((0, len(data)),) if data else ()))
    return part


def emulator_validator(emulator: Emulator, data_uri: str) -> str:
    """The strong ETag the emulator sends with ``data_uri``'s body."""
    from hstsync.emulator.server.delivery import validators

    product = emulator.catalogue.product(data_uri)
    assert product is not None
    return validators(product, product.size)[0]
