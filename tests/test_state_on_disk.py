"""What hstsync keeps beside the mirror when the machine around it is careless or
hostile: the results directory replaced by a link, temporary files left by a kill,
``umask 0``, the database deleted or replaced under a running daemon.

Real ``hstsync run`` processes against the emulator, their files looked at from outside.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from pathlib import Path

from helpers import daemon, drop, run_hstsync, until, until_done, write_config

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator

ENV = dict(os.environ, HSTSYNC_NO_KEYRING="1")


async def run_once(config: Path) -> tuple[int, str]:
    code, _, err = await run_hstsync("run", "--once", "--config", str(config), env=ENV)
    return code, err


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# -- the results directory --------------------------------------------------------------


async def test_a_results_directory_that_is_a_link_is_refused_and_nothing_written_through(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "results").symlink_to(elsewhere)
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)

    code, err = await run_once(config)

    assert code == 0, err  # every file is mirrored; only the table is refused
    assert list(elsewhere.iterdir()) == []
    assert "cannot write the results table" in err and "is not a directory" in err
    assert (tmp_path / "mirror" / "results").is_symlink()


async def test_a_temporary_results_table_left_by_a_kill_is_removed_at_the_next_pass(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    results = tmp_path / "mirror" / "results"
    results.mkdir(parents=True)
    stale = results / ".7291.ecsv.0123abcd.tmp"  # what a kill -9 mid-write leaves
    stale.write_text("# %ECSV 1.0\n")
    an_hour_ago = time.time() - 3700
    os.utime(stale, (an_hour_ago, an_hour_ago))
    fresh = results / ".7291.ecsv.89abcdef.tmp"  # another writer's, in flight
    fresh.write_text("# %ECSV 1.0\n")
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)

    assert (await run_once(config))[0] == 0

    assert not stale.exists()
    assert fresh.exists()
    assert (results / "7291.ecsv").exists()


# -- umask 0 ----------------------------------------------------------------------------


async def test_umask_0_leaves_nothing_hstsync_makes_writable_by_other_users(
    tmp_path: Path, emulator: Emulator
):
    (tmp_path / "requests").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        '[paths]\nrequests = "requests"\nmirror = "srv/mirror"\ndatabase = "state/db/hstsync.db"\n'
        f'[mast]\nserver = "{emulator.url}"\n[download]\nbackoff = 0.05\nbackoff_max = 0.5\n'
    )
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
    drop(tmp_path, "bad.toml", "proposal_id = [[[\n")
    shell = f'umask 0; exec "{sys.executable}" -m hstsync run --once --config "{config}"'

    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", shell, env=ENV, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 110)
    code, err = proc.returncode, stderr.decode(errors="replace")

    assert code == 1, err  # bad.toml is invalid
    made = {
        "state": tmp_path / "state",
        "state/db": tmp_path / "state" / "db",
        "database": tmp_path / "state" / "db" / "hstsync.db",
        "run lock": tmp_path / "state" / "db" / "hstsync.db.lock",
        "srv": tmp_path / "srv",
        "mirror": tmp_path / "srv" / "mirror",
        "results": tmp_path / "srv" / "mirror" / "results",
        "results table": tmp_path / "srv" / "mirror" / "results" / "7291.ecsv",
        "failed": tmp_path / "requests" / "failed",
        "note": tmp_path / "requests" / "failed" / "bad.error.txt",
    }
    writable_by_others = {name: oct(mode(p)) for name, p in made.items() if mode(p) & 0o002}
    assert writable_by_others == {}
    group_writable = {name for name, p in made.items() if mode(p) & 0o020}
    assert group_writable == {"failed"}  # the people who drop manifests take them back
    assert mode(made["state/db"]) == 0o755 and mode(made["database"]) == 0o600  # private


# -- the database under a running daemon -------------------------------------------------


async def test_a_database_deleted_under_the_daemon_stops_it_with_a_clear_error(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, d)
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"hstsync.db{suffix}").unlink(missing_ok=True)
        (tmp_path / "requests" / ".nudge").touch()  # a file event: the daemon looks now
        await until(lambda: d.proc.returncode is not None, what="the daemon to stop")
        log = d.output()
    assert d.proc.returncode == 1
    assert "the database" in log and "was deleted or replaced while hstsync ran" in log
    assert "Traceback" not in log


async def test_a_database_replaced_under_the_daemon_stops_it_so_a_restart_opens_the_new_one(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, d)
        copy = tmp_path / "restored.db"
        copy.write_bytes((tmp_path / "hstsync.db").read_bytes())
        copy.replace(tmp_path / "hstsync.db")  # a backup restored over it
        (tmp_path / "requests" / ".nudge").touch()
        await until(lambda: d.proc.returncode is not None, what="the daemon to stop")
        assert d.proc.returncode == 1
        assert "was deleted or replaced while hstsync ran" in d.output()
