"""What reaches the user's log (issue #16): one line per failed attempt, error texts
that say what went wrong without counting attempts that never happened, and no
chatter from the libraries hstsync uses."""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from helpers import tmpfs

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import Config, for_directory
from hstsync.emulator import Emulator, Fault, FaultKind
from hstsync.errors import CorruptFileError
from hstsync.service.daemon import run_once
from hstsync.store import Store
from hstsync.transfer.verify import verify_file

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


async def test_read_only_mirror_says_it_cannot_be_written_without_counting_attempts(
    config: Config, caplog: pytest.LogCaptureFixture
):
    with tmpfs(config.paths.mirror, "1g", "ro"), caplog.at_level(logging.DEBUG, logger="hstsync"):
        await run_once(config)
        with Store.open_readonly(config.paths.database) as store:
            errors = [row.last_error or "" for row in store.products("7291")]
            request = store.get_request("7291")

    assert errors and all("read-only file system" in e for e in errors), errors
    assert request is not None and "read-only file system" in (request.last_error or "")
    said = [r.getMessage() for r in caplog.records if "read-only file system" in r.getMessage()]
    assert said and not any("attempt" in line for line in said), said
    assert not any("attempt" in e for e in [*errors, request.last_error or ""])


def test_watchfiles_change_batches_stay_out_of_the_log_even_verbose(tmp_path: Path):
    (tmp_path / "requests").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        '[mast]\nserver = "http://127.0.0.1:9"\n'
    )
    # logging configured as a fresh process's main() does it (pytest's own handlers
    # would make basicConfig a no-op here)
    probe = (
        "import logging, sys\n"
        "from hstsync.cli.commands import main\n"
        f"main(['status', '--config', {str(config)!r}, '-v'])\n"
        "sys.stderr.write('LEVEL=%d\\n' % logging.getLogger('watchfiles.main')"
        ".getEffectiveLevel())\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )

    # watchfiles says "N changes detected" at INFO on watchfiles.main for every batch
    [level] = re.findall(r"^LEVEL=(\d+)$", done.stderr, re.MULTILINE)
    assert int(level) >= logging.WARNING, done.stderr


def fits_without_simple() -> bytes:
    """A sound image whose first card is a COMMENT, not SIMPLE (non-compliant)."""
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.arange(2000, dtype=">i4")).writeto(buffer)
    data = buffer.getvalue()
    return b"COMMENT   first card is not SIMPLE".ljust(80) + data[80:]


@pytest.mark.parametrize("truncated", [False, True], ids=["sound", "truncated"])
def test_astropy_hint_to_ignore_missing_simple_never_reaches_users(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    recwarn: pytest.WarningsRecorder,
    truncated: bool,
):
    data = fits_without_simple()
    path = tmp_path / "x.fits.part"
    path.write_bytes(data[:-3000] if truncated else data)

    with caplog.at_level(logging.DEBUG):
        try:
            verify_file(path, "x.fits")
            said = ""
        except CorruptFileError as exc:
            said = str(exc)

    assert bool(said) is truncated, said
    assert "ignore_missing_simple" not in said
    assert "ignore_missing_simple" not in caplog.text
    assert not [w for w in recwarn if "ignore_missing_simple" in str(w.message)]
