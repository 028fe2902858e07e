"""What a new user meets in the first hour: tables that fit a terminal, quiet pipes,
arguments that take a name or a path, exit codes that say the same thing everywhere,
logs with times, and an emulator that says how to use it."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import tmpfs

from hstsync.cli.commands import main
from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.cli.report import print_status
from hstsync.config import for_directory
from hstsync.emulator import Emulator, run_in_thread
from hstsync.model import Product, Request, RequestState
from hstsync.service.daemon import run_once
from hstsync.store.db import Store

NO_PRODUCTS = (
    "proposal 7291 has no HST observations matching the request "
    "([filters] calib_level = [9] left no product; check [criteria] instrument_name)"
)


@pytest.fixture
def served() -> Iterator[Emulator]:
    with run_in_thread() as emulator:
        yield emulator


def make_config(root: Path, server: str, extra: str = "") -> Path:
    (root / "requests").mkdir(exist_ok=True)
    config = root / "config.toml"
    config.write_text(
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n{extra}'
        "[download]\nbackoff = 0.01\nbackoff_max = 0.02\nretries = 1\n"
    )
    return config


def seeded_store(path: Path) -> Store:
    """Two requests as a user sees them: a long-named one done, one with no products."""
    store = Store(path)
    long_name = "ngc1068-stis-echelle-2024"
    store.upsert_request(Request(long_name, ("7291",), {}, {}), "m.toml")
    store.replace_products(
        long_name,
        [Product("mast:HST/product/a.fits", "HST", "o1", "a.fits", 5760, "1", "SCIENCE", 2)],
    )
    store.mark(long_name, "mast:HST/product/a.fits", __import__("hstsync").model.ProductState.DONE)
    store.set_request_state(long_name, RequestState.DONE, resolved=True)
    store.upsert_request(Request("7291", ("7291",), {}, {}), "n.toml")
    store.set_request_state("7291", RequestState.INCOMPLETE, NO_PRODUCTS, resolved=True)
    return store


@pytest.mark.parametrize("width", [80, 100])
def test_status_table_fits_the_terminal_and_keeps_names_states_and_errors(
    tmp_path: Path, width: int
):
    with seeded_store(tmp_path / "db.sqlite") as store:
        summaries = store.summaries()
    out = io.StringIO()

    print_status(summaries, file=out, width=width)

    text = out.getvalue()
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), text
    assert "…" not in text
    assert any(line.startswith("ngc1068-stis-echelle-2024  done") for line in lines), text
    assert any(line.startswith("7291") and "incomplete" in line for line in lines), text
    # the whole reason, square brackets included, wrapped but complete
    assert " ".join(text.split()).count(NO_PRODUCTS) == 1, text


def test_status_table_off_a_terminal_is_one_line_per_request(tmp_path: Path):
    with seeded_store(tmp_path / "db.sqlite") as store:
        summaries = store.summaries()
    out = io.StringIO()

    print_status(summaries, file=out, width=None)

    [line] = [line for line in out.getvalue().splitlines() if line.startswith("7291")]
    assert line.endswith(NO_PRODUCTS)
    assert "LAST ERROR" in out.getvalue() and "NEW FILES" in out.getvalue()


def test_status_into_a_closed_pipe_exits_quietly(tmp_path: Path):
    seeded_store(tmp_path / "hstsync.db").close()
    config = make_config(tmp_path, "http://127.0.0.1:9")
    # `true` has exited before hstsync writes: every write meets a closed pipe.
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f"{sys.executable} -m hstsync status --config {config} | true; "
            'echo "exit=${PIPESTATUS[0]}" >&2',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "BrokenPipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "exit=1" in proc.stderr  # 7291 is incomplete; not 120


def test_status_into_head_starts_with_its_header(tmp_path: Path):
    seeded_store(tmp_path / "hstsync.db").close()
    config = make_config(tmp_path, "http://127.0.0.1:9")
    proc = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m hstsync status --config {config} | head -1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.startswith("REQUEST "), proc.stdout  # no blank line first


def status_after_a_pass(
    root: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    """``status --json`` once ``run --once`` has mirrored the tutorial's request."""
    config = make_config(root, served.url)
    (root / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    assert main(["run", "--once", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["status", "--json", "--config", str(config)]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def test_status_json_gives_the_heartbeat_as_an_iso_time_like_every_other(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    daemon = status_after_a_pass(tmp_path, served, capsys)["daemon"]
    assert daemon["running"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", daemon["heartbeat"])


def test_status_names_what_is_unfinished_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, "http://127.0.0.1:9")
    with Store(tmp_path / "hstsync.db") as store:
        store.upsert_request(Request("7291", ("7291",), {}, {}), "7291.toml")

    assert main(["status", "--config", str(config)]) == 1

    assert "hstsync: not all done: 7291 is queued" in capsys.readouterr().err


def test_verbose_after_the_command_and_a_manifest_path_for_status(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, served.url)
    manifest = tmp_path / "requests" / "7291.toml"
    manifest.write_text(TUTORIAL_MANIFEST)

    # plan by request name (its manifest in the request directory), -v after the command
    assert main(["plan", "7291", "-v", "--config", str(config)]) == 0
    assert "6 to fetch" in capsys.readouterr().out
    assert main(["run", "--once", "--config", str(config)]) == 0
    capsys.readouterr()
    # status, retry and export-curl by manifest path
    assert main(["status", str(manifest), "--config", str(config)]) == 0
    assert "o58701010_x2d.fits" in capsys.readouterr().out
    assert main(["retry", str(manifest), "--config", str(config)]) == 0
    assert main(["export-curl", str(manifest), "--config", str(config)]) == 0
    assert "o58701010_x2d.fits" in capsys.readouterr().out
    assert main(["plan", "no-such-request", "--config", str(config)]) == 2


def test_add_usage_errors_exit_2_and_an_existing_name_suggests_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, "http://127.0.0.1:9")

    assert main(["add", "abc", "--config", str(config)]) == 2
    assert main(["add", "7291", "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["add", "7291", "--config", str(config)]) == 2
    assert "--replace" in capsys.readouterr().err


def test_missing_token_file_is_a_warning_for_read_only_commands(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    gone = "/run/credentials/hstsync-nightly.service/mast-token"
    config = make_config(tmp_path, served.url, f'token_file = "{gone}"\n')
    manifest = tmp_path / "7291.toml"
    manifest.write_text(TUTORIAL_MANIFEST)

    assert main(["plan", str(manifest), "--config", str(config)]) == 0
    assert f"mast.token_file {gone} does not exist here" in capsys.readouterr().err
    assert main(["whoami", "--config", str(config)]) == 1  # no token: not a config error
    err = capsys.readouterr().err
    assert "does not exist here" in err and "no MAST token" in err


def test_rejected_token_from_the_environment_is_not_sent_to_login(
    tmp_path: Path,
    served: Emulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    config = make_config(tmp_path, served.url)
    monkeypatch.setenv("MAST_API_TOKEN", "not-a-known-token")

    assert main(["whoami", "--config", str(config)]) == 1

    err = capsys.readouterr().err
    assert "$MAST_API_TOKEN" in err
    assert "takes precedence over the keyring" in err


def test_no_token_on_a_machine_without_keyring_does_not_advise_login(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, served.url)  # HSTSYNC_NO_KEYRING=1 (conftest)

    assert main(["whoami", "--config", str(config)]) == 1

    err = capsys.readouterr().err
    assert "set MAST_API_TOKEN or point [mast] token_file" in err
    assert "run `hstsync login`" not in err


async def test_files_to_fetch_counts_only_files_not_on_disk(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
):
    config = for_directory(tmp_path, server=emulator.url)
    config.paths.requests.mkdir()
    (config.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST)
    assert await run_once(config) == 0
    # a fresh database over a mirror holding four of the six files
    config.paths.database.unlink()
    files = sorted(config.paths.mirror.rglob("*.fits"))
    for path in files[:2]:
        path.unlink()

    with caplog.at_level(logging.INFO):
        assert await run_once(config) == 0

    assert "request 7291: 2 files to fetch" in caplog.text


def test_plan_on_a_read_only_mirror_says_it_cannot_be_written(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    with tmpfs(tmp_path / "ro", "1m", "ro"):
        config = make_config(tmp_path, served.url)
        config.write_text(config.read_text().replace('mirror = "mirror"', 'mirror = "ro"'))
        manifest = tmp_path / "7291.toml"
        manifest.write_text(TUTORIAL_MANIFEST)

        assert main(["plan", str(manifest), "--config", str(config)]) == 1

        last = capsys.readouterr().out.splitlines()[-1]
        assert "CANNOT BE WRITTEN" in last and "read-only file system" in last


def test_logs_off_a_terminal_carry_timestamps(tmp_path: Path, served: Emulator):
    config = make_config(tmp_path, served.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)

    proc = subprocess.run(
        [sys.executable, "-m", "hstsync", "run", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line) for line in lines)
    assert "ignore_missing_simple" not in proc.stderr


def test_emulator_rounds_program_sizes_to_fits_and_prints_its_config_line():
    proc = subprocess.Popen(
        [sys.executable, "-m", "hstsync", "emulator", "--program", "9999:2:1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while len(lines) < 20 and "proposal 9999" not in "".join(lines):
            lines.append(proc.stdout.readline())
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    text = "".join(lines)
    url = re.search(r"listening on (\S+)", text)
    assert url is not None
    assert f'server = "{url.group(1)}"' in text
    assert "proposal 7291: 53 products" in text
    assert "proposal 9999: 2 products, 11520 bytes" in text
    assert "size 1000 rounded up to 5760" in err


def test_demo_keep_keeps_the_directory_it_names(capsys: pytest.CaptureFixture[str]):
    import shutil

    from hstsync.cli.demo import run_demo

    assert run_demo(keep=True) == 0

    last = capsys.readouterr().out.splitlines()[-1]
    found = re.search(r" in (\S+/mastDownload) \(kept\)$", last)
    assert found is not None, last
    kept = Path(found.group(1))
    try:
        assert len(list(kept.rglob("*.fits"))) == 6
    finally:
        shutil.rmtree(kept.parent.parent)


def test_status_json_has_last_new_files(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    [request] = status_after_a_pass(tmp_path, served, capsys)["requests"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", request["last_new_files"])


def test_connection_refused_says_so_and_names_the_key_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, "http://127.0.0.1:9")  # nothing listens on port 9
    manifest = tmp_path / "7291.toml"
    manifest.write_text(TUTORIAL_MANIFEST)

    assert main(["plan", str(manifest), "--config", str(config)]) == 1

    err = capsys.readouterr().err
    assert "connection refused" in err
    assert f"check [mast] server in {config}" in err
