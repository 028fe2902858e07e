"""What an operator who leaves hstsync alone for months relies on (issue #24): green only
when true, staleness to alert on, a hook for every event worth a person's attention,
lookups that say why they retry, and a unit systemd can restart safely.

Real ``hstsync`` processes against the emulator, read from outside as an operator
would: ``status``, ``/metrics``, the hook's documents, exit codes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from helpers import (
    Daemon,
    daemon,
    drop,
    recording_hook,
    request_state,
    run_hstsync,
    told,
    until,
    until_done,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families
from tutorial import TUTORIAL_BYTES

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator, Fault, FaultKind, default_catalogue
from hstsync.model import RequestState
from hstsync.service.daemon.requestdir import wake
from hstsync.service.sync.resolution import LOOKUPS_FAILING

ENV = dict(os.environ, HSTSYNC_NO_KEYRING="1")
ROOT = Path(__file__).resolve().parent.parent
SECRET = "a-secret-mast-token-0123456789"


async def hstsync(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``python -m hstsync ARGS`` to its end, without the developer's keyring or token."""
    base = {k: v for k, v in ENV.items() if k != "MAST_API_TOKEN"}
    return await run_hstsync(*args, env=env or base)


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


# -- helpers -------------------------------------------------------------------------------


def configured(
    root: Path,
    server: str,
    *,
    hook: Path | None = None,
    listen: bool = False,
    backoff: float = 0.05,
    retries: int = 5,
    extra: str = "",
) -> Path:
    """A configuration under ``root``: ``hook`` records every document the hook is given
    (:func:`told`), ``listen`` serves the status endpoint on a free port."""
    (root / "requests").mkdir(exist_ok=True)
    text = (
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n'
        f"[download]\nbackoff = {backoff}\nbackoff_max = {backoff}\ntimeout = 10\n"
        f"retries = {retries}\n"
    )
    if listen:
        text += '[status]\nlisten = "127.0.0.1:0"\n'
    if hook is not None:
        text += f'[hooks]\non_change = "{recording_hook(root, hook)}"\n'
    config = root / "config.toml"
    config.write_text(text + extra)
    return config


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(url + "metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def endpoint(d: Daemon) -> str:
    found = re.search(r"status endpoint on (http://\S+/)", d.output())
    assert found is not None, d.output()
    return found.group(1)


async def status_json(config: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    _, out, err = await hstsync("status", "--json", "--config", str(config), env=env)
    assert out, err
    doc: dict[str, Any] = json.loads(out)
    return doc


# -- staleness in /metrics and status -----------------------------------------------------------


async def test_metrics_say_what_is_green_when_it_was_mirrored_and_what_was_fetched(
    tmp_path: Path, emulator: Emulator
):
    config = configured(tmp_path, emulator.url, listen=True)
    started = time.time()
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        drop(tmp_path, "none.toml", "proposal_id = 7291\n[filters]\ncalib_level = [7]\n")
        await until_done(tmp_path, d)
        await until(
            lambda: request_state(tmp_path, "none") is RequestState.INCOMPLETE,
            what="the request that selects nothing to settle",
            daemon=d,
        )
        samples = await scrape(endpoint(d))

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    ended = time.time() + 1
    assert value("hstsync_request_ok", request="7291") == 1
    assert value("hstsync_request_ok", request="none") == 0  # selects nothing: not green
    assert started - 1 <= value("hstsync_request_last_success_timestamp_seconds", request="7291")
    assert ("hstsync_request_last_success_timestamp_seconds", (("request", "none"),)) not in samples
    start = value("hstsync_request_last_pass_start_timestamp_seconds", request="7291")
    end = value("hstsync_request_last_pass_end_timestamp_seconds", request="7291")
    assert started - 1 <= start <= end <= ended
    assert value("hstsync_last_pass_end_timestamp_seconds") >= end
    assert started - 1 <= value("hstsync_heartbeat_timestamp_seconds") <= ended
    assert value("hstsync_fetched_files_total") == 6
    assert value("hstsync_fetched_bytes_total") == TUTORIAL_BYTES
    assert value("hstsync_token_state", state="none") == 1  # public data, no token
    assert value("hstsync_request_lookup_failures", request="7291") == 0

    # status says when each request was last fully mirrored, and whether it is green
    doc = await status_json(config)
    shown = {r["name"]: r for r in doc["requests"]}
    assert shown["7291"]["ok"] is True and shown["none"]["ok"] is False
    assert shown["7291"]["last_mirrored"] == shown["7291"]["last_pass"]["ended"]
    assert shown["none"]["last_mirrored"] is None
    assert doc["fetched"] == {"files": 6, "bytes": TUTORIAL_BYTES}
    code, out, _ = await hstsync("status", "--config", str(config), env=dict(ENV, COLUMNS="200"))
    assert code == 1 and "MIRRORED" in out
    [line] = [line for line in out.splitlines() if line.startswith("7291 ")]
    assert shown["7291"]["last_mirrored"] in line
    [line] = [line for line in out.splitlines() if line.startswith("none ")]
    assert " never " in line


# -- the hook on every event worth a person's attention -------------------------------------------


async def test_the_daemon_tells_the_hook_of_a_manifest_set_aside(
    tmp_path: Path, emulator: Emulator
):
    hook = tmp_path / "told.jsonl"
    config = configured(tmp_path, emulator.url, hook=hook)
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "typo.toml", "proposal_id = [[[\n")
        await until(lambda: told(hook), what="the hook to be told", daemon=d)

    [doc] = told(hook)
    assert doc["event"] == "manifest_set_aside" and doc["request"] == "typo"
    assert doc["manifest"] == str(tmp_path / "requests" / "failed" / "typo.toml")
    assert "typo.toml" in doc["reason"] or "TOML" in doc["reason"] or doc["reason"]


async def test_run_once_tells_the_hook_of_a_manifest_set_aside_once(
    tmp_path: Path, emulator: Emulator
):
    hook = tmp_path / "told.jsonl"
    config = configured(tmp_path, emulator.url, hook=hook)
    drop(tmp_path, "typo.toml", "proposal_id = [[[\n")

    assert (await hstsync("run", "--once", "--config", str(config)))[0] == 1
    assert (await hstsync("run", "--once", "--config", str(config)))[0] == 1

    [doc] = told(hook)
    assert (doc["event"], doc["request"]) == ("manifest_set_aside", "typo")


async def test_lookups_that_keep_failing_are_told_once_not_at_every_retry(
    tmp_path: Path, emulator: Emulator
):
    emulator.faults.add(
        Fault(FaultKind.INVOKE_ERROR, match="Mast.Caom.Filtered", times=None, message="down")
    )
    hook = tmp_path / "told.jsonl"
    config = configured(tmp_path, emulator.url, hook=hook, retries=0)
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)

    for run in range(1, LOOKUPS_FAILING + 2):  # a nightly pass that fails night after night
        assert (await hstsync("run", "--once", "--config", str(config)))[0] == 1
        assert len(told(hook)) == (0 if run < LOOKUPS_FAILING else 1), run

    [doc] = told(hook)
    assert doc["event"] == "lookups_failing" and doc["request"] == "7291"
    assert doc["failures"] == LOOKUPS_FAILING and "down" in doc["reason"]
    assert doc["next_lookup"] is not None and doc["proposal_ids"] == ["7291"]


async def test_a_token_near_expiry_is_told_once_and_shown_by_status_and_metrics(
    tmp_path: Path,
):
    expires = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hook = tmp_path / "told.jsonl"
    async with Emulator(default_catalogue(), tokens={SECRET: "alice"}) as emu:
        emu.token_expiry[SECRET] = expires
        config = configured(tmp_path, emu.url, hook=hook, listen=True)
        env = dict(ENV, MAST_API_TOKEN=SECRET)
        async with daemon(tmp_path, config, env={"MAST_API_TOKEN": SECRET}) as d:
            drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
            await until_done(tmp_path, d)
            samples = await scrape(endpoint(d))
        assert (await hstsync("run", "--once", "--config", str(config), env=env))[0] == 0

    [doc] = told(hook, "token_expiring")  # the daemon, then a pass: told once
    assert doc["request"] is None and doc["expires"] == expires
    assert "the MAST token of alice expires at" in doc["reason"]
    assert doc["source"] == "environment" and "MAST_API_TOKEN" in doc["reason"]
    assert samples[("hstsync_token_state", (("state", "expiring"),))] == 1
    assert samples[("hstsync_token_state", (("state", "accepted"),))] == 0
    expiry = datetime.fromisoformat(expires).timestamp()
    assert samples[("hstsync_token_expiry_timestamp_seconds", ())] == expiry
    doc = await status_json(config)
    assert doc["token"]["state"] == "expiring" and doc["token"]["expires"] == expires
    _, out, _ = await hstsync("status", "--config", str(config))
    assert "MAST token: expiring: the MAST token of alice expires at" in out


async def test_a_refused_token_is_told_to_the_hook(tmp_path: Path):
    hook = tmp_path / "told.jsonl"
    async with Emulator(default_catalogue(), tokens={SECRET: "alice"}) as emu:
        config = configured(tmp_path, emu.url, hook=hook)
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        env = dict(ENV, MAST_API_TOKEN="not-the-token")
        assert (await hstsync("run", "--once", "--config", str(config), env=env))[0] == 0

    [doc] = told(hook, "token_refused")
    assert "does not accept the MAST token" in doc["reason"]
    assert (await status_json(config))["token"]["state"] == "refused"


# -- lookups in status ----------------------------------------------------------------------


async def test_status_shows_a_retrying_lookups_error_and_its_next_try(
    tmp_path: Path, emulator: Emulator
):
    emulator.faults.add(
        Fault(FaultKind.INVOKE_ERROR, match="Mast.Caom.Filtered", times=2, message="busy")
    )
    config = configured(tmp_path, emulator.url, backoff=3, retries=3)
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
    run = asyncio.create_task(hstsync("run", "--once", "--config", str(config)))
    try:
        seen: dict[str, Any] = {}

        async def retrying() -> bool:
            _, out, _ = await hstsync("status", "--json", "--config", str(config))
            if not out:  # no database yet, or its schema not yet written: status says so
                return False
            requests = json.loads(out)["requests"]
            seen.update(requests[0] if requests else {})
            return "trying again at" in (seen.get("last_error") or "")

        for _ in range(300):
            if await retrying():
                break
            await asyncio.sleep(0.1)
        assert seen["state"] == "resolving"
        error = seen["last_error"]
        assert error.startswith("observations, page 1: the archive answered with an error: busy")
        at = re.search(r"trying again at (\S+Z) \(attempt 1 of 4 failed\)", error)
        assert at is not None, error
        left = datetime.fromisoformat(at.group(1)) - datetime.now(UTC)
        assert timedelta(seconds=-2) < left < timedelta(seconds=10)
    finally:
        code, _, err = await run
    assert code == 0, err
    assert (await status_json(config))["requests"][0]["last_error"] is None


# -- systemd ---------------------------------------------------------------------------------


async def test_a_port_taken_on_status_listen_is_exit_2_which_the_unit_does_not_restart(
    tmp_path: Path, emulator: Emulator
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = configured(
            tmp_path, emulator.url, extra=f'[status]\nlisten = "127.0.0.1:{port}"\n'
        )

        code, _, err = await hstsync("run", "--config", str(config))

    assert code == 2, err
    assert f"configuration error: status.listen: cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err
    unit = (ROOT / "systemd" / "hstsync.service").read_text()
    assert re.search(r"^Restart=on-failure$", unit, re.M)
    assert re.search(r"^RestartPreventExitStatus=2$", unit, re.M)


def test_the_units_state_directory_lets_submitters_reach_the_request_directory():
    # docs/deployment.md's shared submission: /var/lib/hstsync 0751, requests/ setgid 2775
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    assert "sudo chmod 0751 /var/lib/hstsync" in deployment
    for name in ("hstsync.service", "hstsync-nightly.service"):
        unit = (ROOT / "systemd" / name).read_text()
        modes = re.findall(r"^StateDirectoryMode=(\d+)$", unit, re.M)
        assert modes == ["0751"], name  # 0750 would hide requests/ from the group
