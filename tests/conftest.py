"""Shared fixtures: a real MAST emulator on a free port of 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hstsync.emulator import Emulator, default_catalogue


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """The tutorial's proposal 7291, served on this test's event loop."""
    async with Emulator(default_catalogue()) as emu:
        yield emu


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own MAST token or desktop keyring.

    Tests that exercise those sources set them up themselves (tests/test_auth.py
    uses a file-based keyring).
    """
    monkeypatch.setenv("HSTSYNC_NO_KEYRING", "1")
    monkeypatch.delenv("MAST_API_TOKEN", raising=False)


@contextlib.contextmanager
def small_disk(directory: Path, size: str = "4k") -> Iterator[Path]:
    """``directory`` on a tmpfs of ``size``: writes beyond it fail with ENOSPC.

    Needs to mount (root); skips otherwise. A symbolic link to /dev/full no longer
    serves: hstsync refuses to write a part through a link.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("needs mount(8) for a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("needs to mount a small tmpfs (root)")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)
