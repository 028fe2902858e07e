"""What an operator who leaves hstsync alone for months relies on (issue #24): green only
when true, staleness to alert on, a hook for every event worth a person's attention,
lookups that say why they retry, and a unit systemd can restart safely.

Real ``hstsync`` processes against the emulator, read from outside as an operator
would: ``status``, ``/metrics``, the hook's documents, exit codes.
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers import daemon, drop, request_state, run_hstsync, until, write_config

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator
from hstsync.model import RequestState
from hstsync.service.daemon.requestdir import wake

ENV = dict(os.environ, HSTSYNC_NO_KEYRING="1")


async def hstsync(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await run_hstsync(*args, env=env or ENV)


# -- invalid requests can be cleared (bug 4) -------------------------------------------------


async def test_an_invalid_request_is_forgotten_once_its_set_aside_manifest_is_removed(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
    drop(tmp_path, "typo.toml", "proposal_id = [[[\n")
    assert (await hstsync("run", "--once", "--config", str(config)))[0] == 1
    assert (await hstsync("status", "--config", str(config)))[0] == 1  # typo is invalid

    for aside in ("typo.toml", "typo.error.txt"):
        (tmp_path / "requests" / "failed" / aside).unlink()

    assert (await hstsync("run", "--once", "--config", str(config)))[0] == 0
    assert request_state(tmp_path, "typo") is None
    code, out, _ = await hstsync("status", "--config", str(config))
    assert code == 0 and "typo" not in out


async def test_the_daemon_forgets_an_invalid_request_whose_set_aside_manifest_is_removed(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "typo.toml", "proposal_id = [[[\n")
        await until(
            lambda: request_state(tmp_path, "typo") is RequestState.INVALID,
            what="the manifest set aside",
            daemon=d,
        )

        for aside in ("typo.toml", "typo.error.txt"):
            (tmp_path / "requests" / "failed" / aside).unlink()
        wake(tmp_path / "requests")  # a removal in failed/ is seen at the next rescan

        await until(
            lambda: request_state(tmp_path, "typo") is None, what="typo forgotten", daemon=d
        )
        assert "typo.toml is gone; the invalid request is forgotten" in d.output()
    assert (await hstsync("status", "--config", str(config)))[0] == 0
