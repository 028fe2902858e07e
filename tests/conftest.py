"""Shared fixtures: a real MAST emulator on a free port of 127.0.0.1.

Helpers shared by several test files live in modules beside this one (``helpers``: a
real daemon process, a command run to its end, tmpfs mounts; ``tutorial``: what
proposal 7291 yields; ``file_keyring``: a keyring backend for tests); test files never
import each other.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator

import pytest

from hstsync.emulator import Emulator, default_catalogue


def permissions_bind() -> bool:
    """Whether this process gets EACCES from a file whose mode denies it: not as root,
    unless root's CAP_DAC_OVERRIDE is dropped (.ci/run does: ``setpriv``)."""
    fd, name = tempfile.mkstemp()
    os.close(fd)
    try:
        os.chmod(name, 0)
        try:
            with open(name, "rb"):
                return False
        except PermissionError:
            return True
    finally:
        os.unlink(name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@pytest.mark.unprivileged`` tests expect EACCES: skipped where it never comes."""
    marked = [item for item in items if item.get_closest_marker("unprivileged")]
    if not marked or permissions_bind():
        return
    skip = pytest.mark.skip(reason="unprivileged: file permissions do not bind this process")
    for item in marked:
        item.add_marker(skip)


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
