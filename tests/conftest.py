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
