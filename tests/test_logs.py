"""What reaches the user's log (issue #16): one line per failed attempt, error texts
that say what went wrong without counting attempts that never happened, and no
chatter from the libraries hstsync uses."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import Config, for_directory
from hstsync.emulator import Emulator, Fault, FaultKind
from hstsync.service.daemon import run_once

X2D = "o58701010_x2d.fits"


@pytest.fixture
def config(tmp_path: Path, emulator: Emulator) -> Config:
    cfg = for_directory(tmp_path, server=emulator.url, retries=3, backoff=0.01, backoff_max=0.05)
    cfg.paths.requests.mkdir()
    (cfg.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST)
    return cfg


@pytest.mark.parametrize(
    ("fault", "segment_min", "reason"),
    [
        (Fault(FaultKind.RESET, match=X2D, after=1_000_000, times=1), 0, "connection closed"),
        (Fault(FaultKind.RESET, match=X2D, after=1_000_000, times=1), None, "connection closed"),
        (Fault(FaultKind.CORRUPT, match=X2D, after=5_000_000, times=1), 0, "checksum"),
    ],
    ids=["reset-one-stream", "reset-in-segments", "corrupt"],
)
async def test_one_failed_attempt_is_one_warning_naming_file_attempt_and_reason(
    config: Config,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
    segment_min: int | None,
    reason: str,
):
    if segment_min is not None:
        config = dataclasses.replace(
            config, download=dataclasses.replace(config.download, segment_min=segment_min)
        )
    emulator.faults.add(fault)

    with caplog.at_level(logging.DEBUG, logger="hstsync"):
        assert await run_once(config) == 0

    about = [r for r in caplog.records if X2D in r.getMessage()]
    warnings = [r.getMessage() for r in about if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "attempt 1 of 4 failed" in warnings[0] and reason in warnings[0], warnings
    [done] = [r for r in about if "done" in r.getMessage()]
    assert done.levelno == logging.INFO and "in 2 attempt(s)" in done.getMessage()
