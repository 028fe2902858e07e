"""The mirror's own files against a hostile or unlucky machine: FIFOs planted where a
part or its control file goes, two instances (two databases) over one mirror, umask 0.

Real processes against the emulator; each test names what it guards.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest
from helpers import assert_tree_identical, run_hstsync, write_config

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator
from hstsync.model import ProductState, RequestState
from hstsync.store import Store

X1D = "mastDownload/HST/o58701010/o58701010_x1d.fits"
SIX = [f"o5870{obs}_{kind}.fits" for obs in ("1010", "1030") for kind in ("x1d", "x2d", "flt")]


@pytest.mark.parametrize("planted", [".part", ".part.ctl", ".part.meta", ".part.segments"])
async def test_a_fifo_where_a_part_or_its_control_file_goes_fails_that_file_only(
    tmp_path: Path, emulator: Emulator, planted: str
) -> None:
    config = write_config(tmp_path, emulator.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    fifo = tmp_path / "mirror" / (X1D + planted)
    fifo.parent.mkdir(parents=True)
    if planted != ".part":  # a part beside it, so that its sidecar is read
        (tmp_path / "mirror" / (X1D + ".part")).write_bytes(b"x" * 100)
    os.mkfifo(fifo)

    # a FIFO opened for reading or writing blocks until a peer comes: the run would
    # never end. It ends, the other five files done, this one refused.
    code, _, err = await run_hstsync("run", "--once", "--config", str(config), timeout=60)

    assert code == 1, err
    with Store.open_readonly(tmp_path / "hstsync.db") as store:
        rows = {row.product.filename: row for row in store.products("7291")}
    x1d = rows.pop("o58701010_x1d.fits")
    assert x1d.state is ProductState.FAILED
    assert x1d.last_error is not None and "is not a regular file" in x1d.last_error
    assert all(row.state is ProductState.DONE for row in rows.values())
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # left where it was


async def test_two_instances_with_their_own_databases_over_one_mirror_both_finish(
    tmp_path: Path, emulator: Emulator
) -> None:
    # two configurations, two databases, one mirror: each file is written by one at a
    # time (the part is locked); the other waits, then finds it in place
    mirror = tmp_path / "mirror"
    configs = []
    for name in ("a", "b"):
        root = tmp_path / name
        root.mkdir()
        config = write_config(root, emulator.url, download={"concurrency": 3})
        config.write_text(config.read_text().replace('mirror = "mirror"', f'mirror = "{mirror}"'))
        (root / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
        configs.append((root, config))

    results = await asyncio.gather(
        *(run_hstsync("run", "--once", "--config", str(config)) for _, config in configs)
    )

    for code, _, err in results:
        assert code == 0, err
    for root, _ in configs:
        with Store.open_readonly(root / "hstsync.db") as store:
            assert store.get_request("7291").state is RequestState.DONE  # type: ignore[union-attr]
            assert {row.state for row in store.products("7291")} == {ProductState.DONE}
    assert_tree_identical(tmp_path, emulator, SIX)
    assert sorted(p.name for p in (mirror / X1D).parent.iterdir()) == sorted(SIX[:3])


async def test_umask_0_leaves_no_mirror_file_or_directory_writable_by_others(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = write_config(tmp_path, emulator.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import os, sys; os.umask(0); from hstsync.cli import main; sys.exit(main(sys.argv[1:]))",
        "run",
        "--once",
        "--config",
        str(config),
        env=dict(os.environ, HSTSYNC_NO_KEYRING="1"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode == 0, err.decode()

    for path in (tmp_path / "mirror").rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert not mode & 0o022, f"{path} is {oct(mode)}: writable by others"
        if path.is_file() and path.suffix == ".fits":
            assert mode == 0o644
        elif path.is_dir():
            assert mode == 0o755
