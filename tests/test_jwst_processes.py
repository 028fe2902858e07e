"""JWST through real processes: ``hstsync run --once`` and ``hstsync status`` as users
run them, against the emulator's JWST program 01345 served from this test.

The issue's "done when": a manifest ``proposal_id = 1345`` naming JWST with the
filters ``calib_level = [2, 3]`` and ``productType = ["SCIENCE"]`` mirrors every
selected file byte-identical under ``mastDownload/JWST/``, no guide-star or uncal file,
each file asked for once although its row repeats; under both ways the archive may
match proposal ids. And a multi-hundred-MB level-3 mosaic, cut by a ``kill -9``
half-way, is finished by the next run from the bytes on disk, the memory its process
allocates well below the file's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import held_under, recording_hook, run_hstsync, write_config

from hstsync.emulator import (
    JWST_PROPOSAL,
    Catalogue,
    Emulator,
    add_jwst_program,
    default_catalogue,
    jwst_expected_products,
)

L3 = "jw01345-o001_t001_nircam_clear-f200w"
I2D = f"mast:JWST/product/{L3}_i2d.fits"
DONE_WHEN = (
    "proposal_id = 1345\n"
    '[criteria]\nobs_collection = "JWST"\n'
    '[filters]\ncalib_level = [2, 3]\nproductType = ["SCIENCE"]\n'
)


def configured(root: Path, emulator: Emulator, hook: Path | None = None) -> Path:
    config = write_config(root, emulator.url)
    if hook is not None:
        config.write_text(
            config.read_text() + f'[hooks]\non_change = "{recording_hook(root, hook)}"\n'
        )
    (root / "requests" / "jw1345.toml").write_text(DONE_WHEN)
    return config


@pytest.mark.parametrize("matching", ["exact", "numeric"])
async def test_done_when_a_jwst_manifest_mirrors_its_selection_once_each(
    tmp_path: Path, matching: str
):
    catalogue = default_catalogue()
    catalogue.proposal_id_match = matching
    async with Emulator(catalogue) as emulator:
        hook = tmp_path / "hook.jsonl"
        config = configured(tmp_path, emulator, hook)

        code, _, err = await run_hstsync("run", "--once", "--config", str(config))
        assert code == 0, err

        gets = Counter(r.data_uri for r in emulator.requests if r.method == "GET" and r.data_uri)
        _, status, _ = await run_hstsync("status", "--json", "--config", str(config))

    selected = {
        p.data_uri
        for p in catalogue.program_products(JWST_PROPOSAL)
        if p.product_type == "SCIENCE" and p.calib_level in (2, 3)
    }
    assert len(selected) == 8 * 2 + 3  # _rate and _cal of eight exposures; _i2d, _segm, _cat
    # each selected file asked for once, although the _i2d's row alone repeats 25 times
    assert gets == Counter(dict.fromkeys(selected, 1))
    assert not any("_gs-" in uri or uri.endswith("_uncal.fits") for uri in gets)
    expected = jwst_expected_products(catalogue)
    mirror = tmp_path / "mirror"
    landed = {
        p.relative_to(mirror).as_posix(): p.read_bytes()
        for p in (mirror / "mastDownload").rglob("*")
        if p.is_file()
    }
    assert landed == {expected[uri].relpath: expected[uri].body for uri in selected}
    assert all(rel.startswith("mastDownload/JWST/") for rel in landed)

    [request] = json.loads(status)["requests"]
    assert (request["state"], request["collection"], request["proposal_ids"]) == (
        "done",
        "JWST",
        ["01345"],
    )
    assert request["planned_observations"] == 1
    assert request["products"]["done"] == request["products"]["total"] == len(selected)
    [told] = [json.loads(line) for line in hook.read_text().splitlines()]
    assert (told["event"], told["collection"], told["new_file_count"]) == (
        "pass",
        "JWST",
        len(selected),
    )
    results = (mirror / "results" / "jw1345.ecsv").read_text()
    assert "{obs_collection: JWST}" in results


def anonymous_kib(pid: int) -> int:
    """The process's anonymous resident memory (``RssAnon``, KiB): what it allocated,
    not the pages of files it maps (the FITS check maps the file it sums)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:  # it has just ended
        pass
    return 0


async def test_a_large_jwst_mosaic_cut_by_a_kill_is_resumed_with_flat_memory(tmp_path: Path):
    size = 93_206 * 2880  # 268,433,280 bytes: a level-3 mosaic of 256 MiB
    catalogue = Catalogue()
    add_jwst_program(catalogue, i2d_size=size)
    async with Emulator(catalogue, rate=4e6) as emulator:
        config = write_config(tmp_path, emulator.url)
        (tmp_path / "requests" / "l3.toml").write_text(
            'proposal_id = 1345\n[criteria]\nobs_collection = "JWST"\n'
            f'[filters]\nproductFilename = "{L3}_i2d.fits"\n'
        )
        env = dict(os.environ, HSTSYNC_NO_KEYRING="1")
        first = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hstsync", "run", "--once", "--config", str(config), env=env
        )
        try:
            for _ in range(1200):  # a liveness bound, not a speed check
                if held_under(tmp_path / "mirror") > 48 << 20 or first.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            assert first.returncode is None, "the first run ended before it was cut"
            first.send_signal(signal.SIGKILL)  # no chance to tidy up
        finally:
            if first.returncode is None:
                first.kill()
            await first.wait()
        cut = emulator.served(I2D)
        held = held_under(tmp_path / "mirror")
        assert 48 << 20 < held < size

        emulator.rate = None
        if not Path(f"/proc/{os.getpid()}/status").exists():
            pytest.skip("needs /proc to read a process's memory")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hstsync", "run", "--once", "--config", str(config),
            env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        err = asyncio.ensure_future(proc.stderr.read())  # type: ignore[union-attr]
        peak_kib = 0
        while proc.returncode is None:
            peak_kib = max(peak_kib, anonymous_kib(proc.pid))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.02)
        assert proc.returncode == 0, (await err).decode(errors="replace")[-3000:]
        again = emulator.served(I2D) - cut
        body = emulator.body_file(I2D)

    # the second run fetched what the first had not, not the file again
    assert again <= size - held + (16 << 20)
    path = tmp_path / "mirror" / jwst_expected_products(catalogue)[I2D].relpath
    assert path.stat().st_size == size
    assert _sha256(path) == _sha256_of(body, size)
    # memory flat: the process allocates far less than the file it fetches and checks
    assert 0 < peak_kib < 160 << 10, f"{peak_kib >> 10} MiB for a {size >> 20} MiB file"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_of(body: Any, size: int) -> str:
    digest = hashlib.sha256()
    for offset in range(0, size, 1 << 22):
        digest.update(body.read(offset, min(1 << 22, size - offset)))
    return digest.hexdigest()
