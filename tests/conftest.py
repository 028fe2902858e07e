"""Shared fixtures: a real MAST emulator on a free port of 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
