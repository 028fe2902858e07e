"""``[hooks] on_change``: people are told when their data arrives, and a hook never
blocks or fails a pass."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import Config, HooksConfig, for_directory
from hstsync.emulator import Emulator, Fault, FaultKind
from hstsync.service.daemon import run_once
from hstsync.service.daemon.status import status_document
from hstsync.store.db import Store

X2D = "*o58701010_x2d.fits*"


def hooked(tmp_path: Path, emulator: Emulator, command: str, timeout: float = 60) -> Config:
    config = for_directory(tmp_path, server=emulator.url, backoff=0.01, backoff_max=0.02, retries=0)
    config = replace(config, hooks=HooksConfig(on_change=command, timeout=timeout))
    config.paths.requests.mkdir()
    (config.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST)
    return config


def recorder(tmp_path: Path) -> tuple[str, Path]:
    """A real hook script that appends each JSON document it reads to a file."""
    out = tmp_path / "calls.jsonl"
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, sys\n"
        "doc = json.load(sys.stdin)\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(json.dumps(doc) + '\\n')\n"
    )
    return f"{sys.executable} {script}", out


def calls(out: Path) -> list[dict[str, object]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines()]


async def test_hook_gets_the_new_files_then_is_not_called_when_nothing_is_new(
    tmp_path: Path, emulator: Emulator
):
    command, out = recorder(tmp_path)
    config = hooked(tmp_path, emulator, command)

    assert await run_once(config) == 0

    [doc] = calls(out)
    assert doc["request"] == "7291" and doc["state"] == "done"
    assert doc["proposal_ids"] == ["7291"]
    assert doc["failures"] == []
    files = {Path(f["path"]).name: f["size"] for f in doc["new_files"]}
    assert len(files) == 6 and files["o58701010_x2d.fits"] == 14_474_880
    assert (doc["new_file_count"], doc["new_bytes"]) == (6, sum(files.values()))
    assert doc["failure_count"] == 0
    for f in doc["new_files"]:
        assert Path(f["path"]).stat().st_size == f["size"]
    with Store.open_readonly(config.paths.database) as store:
        [summary] = store.summaries()
    stamped = summary.request.last_new_files
    assert stamped is not None
    assert status_document([summary])["requests"][0]["last_new_files"] == stamped

    assert await run_once(config) == 0  # nothing new, nothing failed

    assert len(calls(out)) == 1
    with Store.open_readonly(config.paths.database) as store:
        [summary] = store.summaries()
    assert summary.request.last_new_files == stamped


async def test_hook_gets_a_failure_with_its_reason(tmp_path: Path, emulator: Emulator):
    emulator.faults.add(Fault(FaultKind.STATUS, match=X2D, status=404, times=None))
    command, out = recorder(tmp_path)
    config = hooked(tmp_path, emulator, command)

    assert await run_once(config) == 1

    [doc] = calls(out)
    assert doc["state"] == "incomplete"
    [failure] = doc["failures"]
    assert failure["path"].endswith("o58701010_x2d.fits")
    assert failure["data_uri"] == "mast:HST/product/o58701010_x2d.fits"
    assert "404" in failure["reason"]
    assert len(doc["new_files"]) == 5


async def test_hook_that_hangs_is_killed_at_its_timeout_and_the_pass_ends(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
):
    marker = tmp_path / "survived"
    config = hooked(tmp_path, emulator, f"sleep 30; touch {marker}", timeout=0.5)

    with caplog.at_level(logging.INFO):
        assert await run_once(config) == 0

    assert "on_change hook did not finish within 0.5 s; killed" in caplog.text
    assert not marker.exists()


async def test_hook_exit_status_and_stderr_are_logged(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
):
    config = hooked(tmp_path, emulator, "cat > /dev/null; echo 'mail server down' >&2; exit 3")

    with caplog.at_level(logging.INFO):
        assert await run_once(config) == 0

    [record] = [r for r in caplog.records if "on_change hook" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "request 7291: on_change hook exited 3: mail server down"


async def test_hook_that_cannot_start_does_not_fail_the_pass(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
):
    config = hooked(tmp_path, emulator, str(tmp_path / "no-such-hook"))

    with caplog.at_level(logging.INFO):
        assert await run_once(config) == 0

    assert "on_change hook exited 127" in caplog.text


def test_example_hooks_read_the_document(tmp_path: Path):
    """The shipped examples read the documents a pass and an event send (dry run: no
    mail, no POST)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent / "examples"
    doc = {
        "request": "7291",
        "state": "incomplete",
        "proposal_ids": ["7291"],
        "mirror": "/srv/hst",
        "new_files": [{"path": "/srv/hst/a.fits", "size": 5760, "data_uri": "mast:a"}],
        "failures": [{"path": None, "data_uri": "mast:b", "reason": "HTTP 404"}],
        "finished": "2024-01-01T00:00:00Z",
    }
    replaced = {
        "request": "7291",
        "state": "done",
        "proposal_ids": ["7291"],
        "mirror": "/srv/hst",
        "new_files": [],
        "failures": [],
        "changed": [
            {
                "path": "/srv/hst/b.fits",
                "data_uri": "mast:b",
                "attic": "/srv/hst/attic/b.fits.20240101T000000Z",
                "old_size": 5760,
                "new_size": 8640,
            }
        ],
        "damaged": [],
        "withdrawn": [{"path": "/srv/hst/c.fits", "data_uri": "mast:c"}],
        "finished": "2024-01-01T00:00:00Z",
    }
    event = {
        "event": "token_expiring",
        "request": None,
        "reason": "the MAST token of alice expires at 2024-01-05 00:00 UTC: make a new one",
        "expires": "2024-01-05T00:00:00Z",
        "source": "keyring",
        "at": "2024-01-01T00:00:00Z",
    }

    def dry_run(script: str, document: dict[str, object]) -> str:
        proc = subprocess.run(
            [sys.executable, str(root / script), "--dry-run"],
            input=json.dumps(document),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    for script in ("hook-mail.py", "hook-webhook.py"):
        out = dry_run(script, doc)
        assert "7291" in out and "a.fits" in out and "HTTP 404" in out
        told = dry_run(script, event)
        assert "the MAST token expires soon" in told
        assert "expires at 2024-01-05 00:00 UTC" in told
        # a pass that only replaced files still says which, and where the old one went
        kept = dry_run(script, replaced)
        assert "1 changed" in kept and "1 withdrawn" in kept
        assert "b.fits" in kept and "c.fits" in kept
        assert "attic/b.fits.20240101T000000Z" in kept


async def test_hook_of_a_big_pass_names_the_first_files_and_counts_them_all(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
):
    from hstsync.service.sync import hooks

    monkeypatch.setattr(hooks, "LISTED", 4)
    command, out = recorder(tmp_path)
    config = hooked(tmp_path, emulator, command)

    assert await run_once(config) == 0

    [doc] = calls(out)
    assert len(doc["new_files"]) == 4
    assert doc["new_file_count"] == 6 and doc["new_bytes"] == 50_175_360
