"""The ``hstsync`` command as users meet it: what it prints and how it exits."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hstsync.cli.commands import main
from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator, Fault, FaultKind, run_in_thread


@pytest.fixture
def served() -> Iterator[Emulator]:
    with run_in_thread() as emulator:
        yield emulator


def make_config(root: Path, server: str) -> Path:
    (root / "requests").mkdir(exist_ok=True)
    config = root / "config.toml"
    config.write_text(
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n'
        "[download]\nbackoff = 0.01\nbackoff_max = 0.02\nretries = 1\n"
    )
    return config


def test_run_once_then_status_table_and_json(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, served.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)

    assert main(["run", "--once", "--config", str(config)]) == 0
    capsys.readouterr()

    assert main(["status", "--config", str(config)]) == 0
    table = capsys.readouterr().out
    assert "7291" in table and "done" in table
    assert "6/6 done" in table
    assert "50.18 MB / 50.18 MB" in table

    assert main(["status", "--json", "--config", str(config)]) == 0
    doc = json.loads(capsys.readouterr().out)
    [request] = doc["requests"]
    assert set(request) == {
        "name",
        "state",
        "proposal_ids",
        "collection",
        "planned_observations",
        "products",
        "bytes",
        "last_error",
        "updated",
        "last_new_files",
        "last_mirrored",
        "last_pass",
        "next_lookup",
        "lookup_failures",
        "last_verify",
        "ok",
    }
    assert request["ok"] is True and request["last_mirrored"] == request["last_pass"]["ended"]
    assert request["name"] == "7291"
    assert request["state"] == "done"
    assert request["proposal_ids"] == ["7291"]
    assert (request["collection"], request["planned_observations"]) == ("HST", 0)
    assert request["products"] == {
        "total": 6,
        "done": 6,
        "failed": 0,
        "pending": 0,
        "withdrawn": 0,
        "auth_required": 0,
    }
    assert request["bytes"] == {"total": 50_175_360, "done": 50_175_360}
    assert request["last_error"] is None

    assert main(["status", "7291", "--config", str(config)]) == 0
    detail = capsys.readouterr().out
    for name in ("o58701010_x1d.fits", "o58701010_x2d.fits", "o58701030_flt.fits"):
        assert name in detail
    assert "14.47 MB" in detail

    assert main(["status", "--json", "7291", "--config", str(config)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["products"]) == 6
    assert {p["state"] for p in doc["products"]} == {"done"}
    assert "mastDownload/HST/o58701010/o58701010_x2d.fits" in {p["path"] for p in doc["products"]}


def test_failed_product_shows_its_error_then_retry_fetches_it(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, served.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    served.faults.add(Fault(FaultKind.STATUS, match="o58701030_x1d.fits", status=404, times=None))

    assert main(["run", "--once", "--config", str(config)]) == 1
    capsys.readouterr()
    assert main(["status", "--config", str(config)]) == 1
    table = capsys.readouterr().out
    assert "incomplete" in table and "1 failed" in table
    assert main(["status", "7291", "--config", str(config)]) == 1
    assert "404" in capsys.readouterr().out

    served.faults.clear()
    assert main(["retry", "7291", "--config", str(config)]) == 0
    assert "1 product(s) put back" in capsys.readouterr().out
    assert main(["run", "--once", "--config", str(config)]) == 0


def test_status_for_unknown_request_is_usage_error(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, served.url)
    assert main(["run", "--once", "--config", str(config)]) == 0
    assert main(["status", "nope", "--config", str(config)]) == 2
    assert "no request named 'nope'" in capsys.readouterr().err


def test_status_before_any_run_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = make_config(tmp_path, "http://127.0.0.1:9")
    assert main(["status", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "hstsync run" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[paths]\nrequests = "r"\nmirror = "m"\n', "paths.database"),
        (
            '[paths]\nrequests = "r"\nmirror = "m"\ndatabase = "d"\n[download]\nconcurency = 4\n',
            "download.concurency",
        ),
        (
            '[paths]\nrequests = "r"\nmirror = "m"\ndatabase = "d"\n[download]\nretries = "5"\n',
            "download.retries",
        ),
    ],
)
def test_bad_configuration_exits_2_naming_the_key(
    tmp_path: Path, text: str, named: str, capsys: pytest.CaptureFixture[str]
):
    config = tmp_path / "config.toml"
    config.write_text(text)
    assert main(["run", "--once", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert named in err
    assert len(err.strip().splitlines()) == 1


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["status", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in capsys.readouterr().err


def test_demo_prints_the_tutorials_six_files_done():
    proc = subprocess.run(
        [sys.executable, "-m", "hstsync", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "6 files done, 50.18 MB" in proc.stdout
    for name in ("o58701010_x1d.fits", "o58701010_x2d.fits", "o58701010_flt.fits"):
        assert name in proc.stdout
    assert "Traceback" not in proc.stderr


def test_help_lists_the_commands():
    proc = subprocess.run(
        [sys.executable, "-m", "hstsync", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    for command in ("run", "status", "retry", "demo", "emulator"):
        assert command in proc.stdout


def test_plan_prints_the_tutorial_columns_and_room_without_downloading(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, served.url)
    manifest = tmp_path / "7291.toml"
    manifest.write_text(TUTORIAL_MANIFEST)

    assert main(["plan", str(manifest), "--config", str(config)]) == 0

    out = capsys.readouterr().out
    for column in ("obs_id", "productFilename", "productType", "calib_level", "size"):
        assert column in out
    assert "o58701010_x2d.fits" in out and "14474880" in out
    assert "6 products, 50.18 MB; 0 already mirrored; 6 to fetch, 50.18 MB" in out
    assert "fits" in out.splitlines()[-1]
    assert [r for r in served.requests if r.path.endswith("/Download/file")] == []
    assert not (tmp_path / "hstsync.db").exists()


def test_plan_counts_what_is_already_mirrored(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, served.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    assert main(["run", "--once", "--config", str(config)]) == 0
    capsys.readouterr()

    assert main(["plan", str(tmp_path / "requests" / "7291.toml"), "--config", str(config)]) == 0

    assert "6 already mirrored; 0 to fetch, 0 B" in capsys.readouterr().out


def test_add_writes_a_manifest_the_daemon_takes(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, served.url)
    argv = [
        "add", "7291", "--name", "tutorial", "--obs-id", "o58701010", "--obs-id", "o58701030",
        "--calib-level", "2", "--product-type", "SCIENCE", "--config", str(config),
    ]  # fmt: skip

    assert main(argv) == 0
    assert "tutorial.toml" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "requests").iterdir()) == ["tutorial.toml"]
    # a second add of the same name is refused rather than silently replacing it
    assert main(argv) == 2  # usage: exists already (--replace)
    assert "exists already" in capsys.readouterr().err

    assert main(["run", "--once", "--config", str(config)]) == 0
    assert main(["status", "--json", "--config", str(config)]) == 0
    [request] = json.loads(capsys.readouterr().out)["requests"]
    assert request["name"] == "tutorial"
    assert request["products"]["done"] == 6


def test_add_refuses_a_bad_proposal_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = make_config(tmp_path, "http://127.0.0.1:9")
    assert main(["add", "abc", "--config", str(config)]) == 2  # usage error
    assert "proposal_id" in capsys.readouterr().err
    assert list((tmp_path / "requests").iterdir()) == []


def test_export_curl_script_fetches_then_a_second_run_skips_complete_files(
    tmp_path: Path, served: Emulator, capsys: pytest.CaptureFixture[str]
):
    config = make_config(tmp_path, served.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    assert main(["run", "--once", "--config", str(config)]) == 0
    capsys.readouterr()

    assert main(["export-curl", "7291", "--config", str(config)]) == 0

    script = capsys.readouterr().out
    assert script.startswith("#!/bin/sh")
    lines = [line for line in script.splitlines() if line.startswith("fetch ")]
    assert len(lines) == 6
    assert "-C -" in script
    assert "mastDownload/HST/o58701010/o58701010_x2d.fits" in script
    assert f"{served.url}/api/v0.1/Download/file?uri=mast:HST/product/o58701010_x2d.fits" in script
    # Real curl, twice: the header promises "run it again to resume".
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "get.sh").write_text(script)
    x2d = elsewhere / "mastDownload/HST/o58701010/o58701010_x2d.fits"
    x2d.parent.mkdir(parents=True)
    x2d.write_bytes(served.body("mast:HST/product/o58701010_x2d.fits")[:1000])  # a partial file
    first = subprocess.run(["sh", "get.sh"], cwd=elsewhere, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "6 fetched, 0 already complete, 0 failed" in first.stderr
    second = subprocess.run(["sh", "get.sh"], cwd=elsewhere, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "0 fetched, 6 already complete, 0 failed" in second.stderr
    for path in (tmp_path / "mirror").rglob("*.fits"):
        assert (elsewhere / path.relative_to(tmp_path / "mirror")).read_bytes() == path.read_bytes()
