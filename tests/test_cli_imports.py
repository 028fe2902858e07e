"""``hstsync status`` answers fast because it loads little: what it imports, not how long it
takes (issue #14: a whole ``status`` process on 1,000,000 products within 0.1 s, where
numpy behind sqlite-utils alone took 90 ms). Each test runs the console script's
``main`` in a fresh interpreter against a real database and reads ``sys.modules``."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from hstsync.model import Product, ProductState, Request, RequestState
from hstsync.store import Store

#: what a status must never pay for: the archive client, the downloader, the writer's
#: sqlite-utils (and numpy), the retry policy, the event loop, and the terminal library
HEAVY = (
    "numpy",
    "sqlite_utils",
    "aiohttp",
    "astropy",
    "astroquery",
    "rich",
    "tenacity",
    "asyncio",
    "keyring",
    "platformdirs",
)

PROBE = """
import json, sys
from pathlib import Path
from hstsync.cli import main  # the console script's entry point
try:
    code = main(sys.argv[2:])
except SystemExit as exc:  # --version and --help end in argparse
    code = exc.code
Path(sys.argv[1]).write_text(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A database a pass left: one request done, one with a failed product."""
    with Store(tmp_path / "hstsync.db") as store:
        for name, state in (("7291", RequestState.DONE), ("11360", RequestState.INCOMPLETE)):
            store.upsert_request(Request(name, (name,)), f"requests/{name}.toml")
            products = [
                Product(f"mast:HST/product/{name}_{i}.fits", "HST", f"o{name}",
                        f"o{name}_{i}.fits", 2880 * (i + 1), str(i), "SCIENCE", 2, "PUBLIC")
                for i in range(3)
            ]  # fmt: skip
            store.replace_products(name, products)
            for p in products:
                store.mark(name, p.data_uri, ProductState.DONE)
            store.set_request_state(name, state, resolved=True)
        store.mark("11360", products[0].data_uri, ProductState.FAILED, error="HTTP 503")
    path = tmp_path / "config.toml"
    path.write_text('[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n')
    return path


def imported(tmp_path: Path, args: list[str], *, terminal: bool = False) -> tuple[int, set[str]]:
    """Run ``hstsync ARGS`` in a fresh interpreter: its exit code and every module it loaded.

    ``terminal``: its stdout is a pseudo-terminal, as when a person types the command.
    """
    report = tmp_path / "probe.json"
    if terminal:
        parent, child = pty.openpty()
        try:
            subprocess.run(
                [sys.executable, "-c", PROBE, str(report), *args],
                stdout=child,
                stderr=subprocess.DEVNULL,
                timeout=60,
            )
        finally:
            os.close(parent)
            os.close(child)
    else:
        subprocess.run(
            [sys.executable, "-c", PROBE, str(report), *args],
            capture_output=True,
            timeout=60,
        )
    doc = json.loads(report.read_text())
    return doc["code"], set(doc["modules"])


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize(
    "extra",
    [[], ["--json"], ["11360"], ["11360", "--json"]],
    ids=["table", "json", "one-request", "one-request-json"],
)
def test_status_imports_no_archive_client_downloader_sqlite_utils_numpy_or_rich(
    tmp_path: Path, config: Path, extra: list[str]
):
    code, modules = imported(tmp_path, ["status", "--config", str(config), *extra])

    assert code == 1  # 11360 is incomplete: the command ran to its end
    assert "hstsync.store.reads" in modules
    assert heavy_in(modules) == []
    assert "logging" not in modules  # status prints, never logs: no logging set up


def test_status_on_a_terminal_imports_no_rich_either(tmp_path: Path, config: Path):
    code, modules = imported(tmp_path, ["status", "--config", str(config)], terminal=True)

    assert code == 1
    assert heavy_in(modules) == []


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["status", "--help"]])
def test_version_and_help_import_nothing_heavy(tmp_path: Path, args: list[str]):
    code, modules = imported(tmp_path, args)

    assert code == 0
    assert heavy_in(modules) == []
    assert "hstsync.store" not in modules


def test_a_writing_store_still_uses_sqlite_utils(tmp_path: Path, config: Path):
    """The guard above is about status: ``retry`` writes, through sqlite-utils."""
    code, modules = imported(tmp_path, ["retry", "--config", str(config)])

    assert code == 0
    assert "sqlite_utils" in modules


def test_run_once_leaves_the_daemons_status_page_and_main_loop_unloaded(tmp_path: Path):
    """The nightly ``run --once`` serves no page: aiohttp's server, the Prometheus client
    and the daemon's main loop stay unloaded (20 ms of its start)."""
    (tmp_path / "requests").mkdir()
    config = tmp_path / "config.toml"
    config.write_text('[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "h.db"\n')
    code, modules = imported(tmp_path, ["run", "--once", "--config", str(config)])

    assert code == 0  # an empty request directory: nothing to do
    assert "hstsync.service.daemon.once" in modules and "aiohttp" in modules
    unloaded = ("hstsync.service.daemon.lifecycle", "hstsync.service.daemon.web")
    assert not [m for m in (*unloaded, "aiohttp.web", "prometheus_client") if m in modules]


def test_the_console_scripts_quick_exit_loses_no_output_and_keeps_the_exit_code(
    tmp_path: Path, config: Path
):
    """``hstsync`` leaves with ``os._exit`` once a command has returned: everything it
    printed into a pipe still arrives (a line still in the buffer, and far more than
    one buffer), and so does its exit code."""
    with Store(tmp_path / "hstsync.db") as store:
        products = [
            Product(f"mast:HST/product/big_{i}.fits", "HST", "obig", f"obig_{i}.fits",
                    2880, str(i), "SCIENCE", 2, "PUBLIC")
            for i in range(3000)
        ]  # fmt: skip
        store.upsert_request(Request("big", ("big",)), "requests/big.toml")
        store.replace_products("big", products)

    def hstsync(*args: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "hstsync", *args, "--config", str(config)]
        buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        return subprocess.run(command, capture_output=True, timeout=60, env=buffered)

    retried = hstsync("retry", "11360")
    assert (retried.returncode, retried.stdout) == (0, b"1 product(s) put back in the queue\n")
    status = hstsync("status", "big", "--json")
    assert len(status.stdout) > 256 * 1024 and status.stdout.endswith(b"}\n")
    assert len(json.loads(status.stdout)["products"]) == 3000
    assert status.returncode == 1  # nothing of "big" is mirrored yet
