"""The request directory when what lies in it is odd or hostile: names that are not
UTF-8 or too long, FIFOs and links where manifests go, two manifests for one request.

Real ``hstsync run`` processes (``--once`` and the daemon) against the emulator, the
directory watched from outside as an operator would.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from helpers import daemon, drop, request_state, run_hstsync, until, until_done, write_config

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator
from hstsync.model import RequestState
from hstsync.service.daemon import wake
from hstsync.store import Store

ENV = dict(os.environ, HSTSYNC_NO_KEYRING="1")


async def run_once(config: Path) -> tuple[int, str]:
    code, _, err = await run_hstsync("run", "--once", "--config", str(config), env=ENV)
    return code, err


def names_in(directory: Path) -> set[bytes]:
    return set(os.listdir(os.fsencode(directory)))


def invalid_row(root: Path, name: str) -> str:
    with Store.open_readonly(root / "hstsync.db") as store:
        row = store.get_request(name)
    assert row is not None and row.state is RequestState.INVALID, row
    assert row.last_error is not None
    return row.last_error


# -- names ------------------------------------------------------------------------------


async def test_manifest_name_not_utf8_is_set_aside_with_escaped_note(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    requests = os.fsencode(tmp_path / "requests")
    with open(os.path.join(requests, b"bad\xff.toml"), "w") as f:
        f.write("proposal_id = 9001\n")
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)

    code, err = await run_once(config)

    assert code == 1 and "Traceback" not in err, err
    assert request_state(tmp_path, "7291") is RequestState.DONE  # the others are mirrored
    failed = os.path.join(requests, b"failed")
    assert names_in(Path(os.fsdecode(failed))) == {b"bad\xff.toml", b"bad\xff.error.txt"}
    with open(os.path.join(failed, b"bad\xff.error.txt"), "rb") as f:
        note = f.read().decode("utf-8")  # the note itself is UTF-8 text
    assert note.startswith("bad\\xff.toml was not taken: ")
    assert "bad\\xff" in invalid_row(tmp_path, "bad\\xff")
    assert "bad\\xff.toml" in err  # the log line escapes it too


async def test_a_daemon_survives_a_manifest_name_not_utf8_and_takes_the_next(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        requests = os.fsencode(tmp_path / "requests")
        with open(os.path.join(requests, b"bad\xff.toml"), "w") as f:
            f.write("proposal_id = 9001\n")
        await until(
            lambda: os.path.exists(os.path.join(requests, b"failed", b"bad\xff.toml")),
            what="the name to be set aside",
            daemon=d,
        )
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, d)
        assert "Traceback" not in d.output()


async def test_a_name_near_the_file_name_limit_is_set_aside_without_an_error_each_pass(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    near = "é" * 120 + ".toml"  # 245 bytes: its note's temporary name would not fit
    at_limit = "é" * 125 + ".toml"  # 255 bytes: its note's own name would not fit
    for name in (near, at_limit):
        (tmp_path / "requests" / name).write_text("proposal_id = 9001\n")

    code, err = await run_once(config)

    assert code == 1 and "ERROR" not in err and "too long" not in err, err
    failed = tmp_path / "requests" / "failed"
    assert {near, at_limit} <= {p.name for p in failed.iterdir()}
    notes = [p for p in failed.iterdir() if p.name.endswith(".error.txt")]
    assert len(notes) == 2
    assert all(len(os.fsencode(p.name)) <= 255 for p in notes)
    assert any(note.read_text().startswith(f"{at_limit} was not taken") for note in notes)
    assert not [p for p in failed.iterdir() if p.name.endswith(".tmp")]
    code, err = await run_once(config)  # nothing left to set aside: a quiet pass
    assert "ERROR" not in err and "WARNING" not in err, err


# -- things that are not regular files ----------------------------------------------------


async def test_a_fifo_or_a_link_to_dev_zero_named_as_a_manifest_is_set_aside_with_a_reason(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    requests = tmp_path / "requests"
    os.mkfifo(requests / "pipe.toml")
    (requests / "zero.toml").symlink_to("/dev/zero")
    drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)

    code, err = await run_once(config)

    assert code == 1 and "Traceback" not in err, err
    assert request_state(tmp_path, "7291") is RequestState.DONE
    failed = requests / "failed"
    assert (failed / "pipe.toml").is_fifo()
    assert (failed / "zero.toml").is_symlink()  # the link moved, /dev/zero untouched
    assert "not a regular file (a FIFO)" in (failed / "pipe.error.txt").read_text()
    assert "a symbolic link" in (failed / "zero.error.txt").read_text()
    assert "not a regular file (a FIFO)" in invalid_row(tmp_path, "pipe")
    assert "pipe.toml" in err and "zero.toml" in err


async def test_a_link_to_a_good_manifest_is_refused_and_its_target_left_alone(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    target = tmp_path / "elsewhere.toml"
    target.write_text(TUTORIAL_MANIFEST)
    (tmp_path / "requests" / "linked.toml").symlink_to(target)

    code, err = await run_once(config)
    assert "Traceback" not in err

    assert code == 1
    assert target.read_text() == TUTORIAL_MANIFEST
    assert (tmp_path / "requests" / "failed" / "linked.toml").is_symlink()
    assert "a symbolic link" in invalid_row(tmp_path, "linked")


async def test_a_daemon_sets_a_fifo_manifest_aside_and_keeps_serving(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        os.mkfifo(tmp_path / "requests" / "pipe.toml")
        await until(
            lambda: (tmp_path / "requests" / "failed" / "pipe.error.txt").exists(),
            what="the FIFO to be set aside",
            daemon=d,
        )
        drop(tmp_path, "7291.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, d)
        assert "manifest pipe.toml set aside: " in d.output()


def test_the_wake_nudge_never_opens_or_touches_what_is_planted_in_its_place(tmp_path: Path):
    target = tmp_path / "database"
    target.write_bytes(b"data")
    os.utime(target, (1_000_000, 1_000_000))
    (tmp_path / f".hstsync-wake-{os.getpid()}").symlink_to(target)
    os.mkfifo(tmp_path / f".hstsync-wake-{os.getpid()}-fifo")
    woke = threading.Thread(target=wake, args=(tmp_path,), daemon=True)
    woke.start()
    woke.join(5)
    assert not woke.is_alive(), "wake() blocked on a FIFO"
    assert target.stat().st_mtime == 1_000_000  # not touched through the link
    assert target.read_bytes() == b"data"


# -- one request, two manifests ---------------------------------------------------------


async def test_two_manifests_for_one_request_are_both_refused_with_a_note(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    drop(tmp_path, "dup.toml", TUTORIAL_MANIFEST)
    drop(tmp_path, "dup.json", '{"proposal_id": 7291}')

    code, err = await run_once(config)

    assert code == 1 and "both name the request dup" in err
    failed = tmp_path / "requests" / "failed"
    assert {p.name for p in failed.iterdir()} == {"dup.toml", "dup.json", "dup.error.txt"}
    note = (failed / "dup.error.txt").read_text()
    assert "dup.json and dup.toml both name the request dup" in note
    assert "dup.json and dup.toml" in invalid_row(tmp_path, "dup")
    assert not (tmp_path / "mirror" / "mastDownload").exists()


async def test_a_second_manifest_for_a_running_request_stops_it_and_both_are_refused(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    async with daemon(tmp_path, config) as d:
        drop(tmp_path, "dup.toml", TUTORIAL_MANIFEST)
        await until_done(tmp_path, d, "dup", "dup to be mirrored")
        drop(tmp_path, "dup.json", '{"proposal_id": 7291}')
        await until(
            lambda: request_state(tmp_path, "dup") is RequestState.INVALID,
            what="dup to be refused",
            daemon=d,
        )
        failed = tmp_path / "requests" / "failed"
        assert {"dup.toml", "dup.json"} <= {p.name for p in failed.iterdir()}
        assert "both name the request dup" in d.output()
        await asyncio.sleep(0.5)
        assert d.proc.returncode is None


async def test_plan_reads_a_manifest_its_user_names_through_a_link_but_not_a_fifo(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    real = tmp_path / "mine.toml"
    real.write_text(TUTORIAL_MANIFEST)
    (tmp_path / "linked.toml").symlink_to(real)
    os.mkfifo(tmp_path / "pipe.toml")

    code, out, err = await run_hstsync(
        "plan", str(tmp_path / "linked.toml"), "--config", str(config)
    )
    assert code == 0 and "to fetch" in out, err
    code, _, err = await run_hstsync("plan", str(tmp_path / "pipe.toml"), "--config", str(config))
    assert code == 2 and "not a regular file (a FIFO)" in err
