"""``hstsync demo``: the whole pipeline against the bundled MAST emulator.

No network, no token: the emulator serves the tutorial's proposal 7291 on
127.0.0.1, a manifest equivalent to the tutorial's selection is dropped into a
request directory, one pass mirrors it, and the status table is printed.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from hstsync.cli.report import print_status
from hstsync.config import for_directory
from hstsync.emulator import Emulator
from hstsync.model import human_bytes
from hstsync.service.daemon import run_once
from hstsync.store import Store

#: The tutorial's selection as a manifest: the first two observations of
#: proposal 7291, calibrated (level 2) science products.
TUTORIAL_MANIFEST = """\
# The selection of MAST's "Downloading HST Data by Proposal" tutorial.
proposal_id = 7291

[criteria]
obs_id = ["o58701010", "o58701030"]

[filters]
calib_level = [2]
productType = ["SCIENCE"]
"""


async def _demo(root: Path) -> tuple[int, str]:
    """Mirror the tutorial's selection under ``root``; the exit code and a summary."""
    async with Emulator() as emulator:
        config = for_directory(root, server=emulator.url)
        config.paths.requests.mkdir(parents=True, exist_ok=True)
        manifest = config.paths.requests / "7291.toml"
        manifest.write_text(TUTORIAL_MANIFEST, encoding="utf-8")
        print(f"MAST emulator on {emulator.url}; request dropped at {manifest}")
        code = await run_once(config)
    with Store.open_readonly(config.paths.database) as store:
        summaries = store.summaries()
        products = store.products("7291")
    print_status(summaries, products)
    done = [row for row in products if row.state == "done"]
    total = sum(row.product.size or 0 for row in done)
    return code, f"{len(done)} files done, {human_bytes(total)}"


def run_demo(directory: Path | None = None, *, keep: bool = False) -> int:
    """``directory``: mirror there and keep it; otherwise a temporary directory, removed
    at the end unless ``keep``."""
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        code, summary = asyncio.run(_demo(directory))
        print(f"{summary} in {directory / 'mirror' / 'mastDownload'}")
        return code
    root = Path(tempfile.mkdtemp(prefix="hstsync-demo-"))
    try:
        code, summary = asyncio.run(_demo(root))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    if keep:
        print(f"{summary} in {root / 'mirror' / 'mastDownload'} (kept)")
    else:
        shutil.rmtree(root, ignore_errors=True)
        print(
            f"{summary}; the temporary directory {root} is removed again "
            "(`hstsync demo --keep` or `--dir DIR` keeps the files)"
        )
    return code
